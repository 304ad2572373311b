//! bench-cri: pod sandbox creation through containerd's CRI, podnet against
//! the reference `bridge` + `host-local`, in the same harness and run.
//!
//! ```text
//! cargo build --release --workspace
//! export PODNET_BIN_DIR=$(scripts/build-static)
//! cargo run --release -p podnet-tests --bin bench-cri -- [--pods 30] [--out FILE] [--quick]
//! ```
//!
//! Two simulated nodes (network namespaces), each with a real containerd
//! (`TestContainerd`, metrics on 127.0.0.1 inside the node):
//! - podnet: a node of a one-node `TestCluster` (etcd, podnetd), containerd
//!   loading the conflist podnetd wrote (podnet + podnet-ipam, one plugin
//!   that serves hostPort itself);
//! - reference: `bridge` (cni0, isGateway) + `host-local` (10.88.0.0/16),
//!   chained with `portmap` for hostPort;
//! - the reference list again without `portmap` (a node namespace of its
//!   own), to show how much of its setup the chained Go plugin costs;
//! - the floor: a no-op static C plugin alone (tests/assets/null-cni.c),
//!   so its setup is containerd's and the loopback plugin's own cost, which
//!   every other subject pays too.
//!
//! containerd 1.6 cannot take a CNI 1.1.0 result: if podnetd's conflist
//! says `cniVersion: 1.1.0`, the bench runs a copy at 1.0.0 and says so.
//!
//! After a warm-up (2 sandboxes each, created and removed), `--pods`
//! RunPodSandbox calls rotate between the subjects, sequentially,
//! each timed from request to answer; then every sandbox is stopped and
//! removed (timed per sandbox). containerd's own histogram
//! `containerd_cri_network_plugin_operations_duration_seconds` (CNI setup:
//! `set_up_pod`, teardown: `tear_down_pod`) is scraped before and after, and
//! its mean over the measured operations reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use podnet_tests::bench::cli::count;
use podnet_tests::bench::facts;
use podnet_tests::bench::stats::{fmt_ratio, ms, ratio};
use podnet_tests::bench::{self, BenchOpts, Common, Markdown, Session, Summary, Table};
use podnet_tests::bins;
use podnet_tests::cleanup;
use podnet_tests::cluster::TestCluster;
use podnet_tests::containerd::{shim_pids, sigkill, ContainerdOpts, TestContainerd};
use podnet_tests::netns::TestNetns;
use podnet_tests::null_cni;
use serde_json::{json, Value};
use tempfile::TempDir;

/// containerd sockets, for the emergency cleanup: their shims (and the
/// pods they run) outlive containerd's pid, so they are found and killed
/// by socket.
static SOCKETS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

const METRIC: &str = "containerd_cri_network_plugin_operations_duration_seconds";
const WARM_UP: usize = 2;

#[derive(Parser)]
#[command(
    about = "RunPodSandbox through containerd's CRI, podnet vs bridge + host-local (needs root)"
)]
struct Opts {
    /// Sequential RunPodSandbox calls per subject, after 2 warm-up ones
    /// [--quick: 3].
    #[arg(long, default_value_t = 30, default_value_if("quick", "true", "3"),
          value_parser = count(2..=10_000))]
    pods: usize,
    #[command(flatten)]
    common: Common,
}

impl BenchOpts for Opts {
    fn common(&self) -> &Common {
        &self.common
    }
}

fn kill_shims() {
    for socket in SOCKETS.lock().map(|s| s.clone()).unwrap_or_default() {
        for pid in shim_pids(&socket) {
            sigkill(pid);
        }
    }
}

/// (sum, count) per operation_type of the CNI operations histogram.
type Histogram = BTreeMap<String, (f64, f64)>;

fn cni_histogram(metrics: &str) -> Histogram {
    let mut out = Histogram::new();
    for line in metrics.lines().filter(|l| l.starts_with(METRIC)) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or("");
        let op = name_labels
            .split("operation_type=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        let e = out.entry(op).or_default();
        if name.ends_with("_sum") {
            e.0 = value;
        } else if name.ends_with("_count") {
            e.1 = value;
        }
    }
    out
}

/// Mean time of `op` between two scrapes, and how many.
fn mean_between(before: &Histogram, after: &Histogram, op: &str) -> (Duration, u64) {
    let (s0, c0) = before.get(op).copied().unwrap_or_default();
    let (s1, c1) = after.get(op).copied().unwrap_or_default();
    let n = c1 - c0;
    if n <= 0.0 {
        return (Duration::ZERO, 0);
    }
    (Duration::from_secs_f64((s1 - s0) / n), n as u64)
}

/// One decimal, in ms.
fn ms1(d: Duration) -> String {
    format!("{:.1}", ms(d))
}

struct Subject {
    label: &'static str,
    runtime: TestContainerd,
    run: Vec<Duration>,
    teardown: Vec<Duration>,
    ids: Vec<String>,
    before: Histogram,
    after: Histogram,
    note: String,
}

impl Subject {
    fn new(label: &'static str, netns: &Path, conf_dir: PathBuf, note: &str) -> Self {
        let runtime = TestContainerd::start(
            netns,
            ContainerdOpts {
                cni_conf_dir: conf_dir,
                metrics: true,
                snapshotter: None,
            },
        );
        SOCKETS.lock().unwrap().push(runtime.socket());
        Self {
            label,
            runtime,
            run: Vec::new(),
            teardown: Vec::new(),
            ids: Vec::new(),
            before: Histogram::new(),
            after: Histogram::new(),
            note: note.to_string(),
        }
    }

    fn run_one(&mut self, name: &str) -> Duration {
        let t = Instant::now();
        let id = self
            .runtime
            .cri()
            .run_pod_sandbox(name, "bench", &format!("uid-{name}"))
            .unwrap_or_else(|e| {
                panic!("{}: {name}: {e}\n{}", self.label, self.runtime.log_tail(10))
            });
        let took = t.elapsed();
        self.ids.push(id);
        took
    }

    fn teardown_all(&mut self) -> Vec<Duration> {
        let cri = self.runtime.cri().clone();
        std::mem::take(&mut self.ids)
            .into_iter()
            .map(|id| {
                let t = Instant::now();
                cri.stop_pod_sandbox(&id).expect("stop");
                cri.remove_pod_sandbox(&id).expect("remove");
                t.elapsed()
            })
            .collect()
    }

    /// Mean CNI setup and teardown over the measured sandboxes, and how many.
    fn cni_means(&self) -> [(Duration, u64); 2] {
        ["set_up_pod", "tear_down_pod"].map(|op| mean_between(&self.before, &self.after, op))
    }
}

/// The subjects, in the order the report's ratios index them.
const PODNET: usize = 0;
const REFERENCE: usize = 1;
const REFERENCE_BARE: usize = 2;
const FLOOR: usize = 3;

/// What the subjects run on; outlives them (fields drop in this order:
/// namespaces, then etcd and podnetd, then the configuration files).
struct Nodes {
    reference: TestNetns,
    reference_bare: TestNetns,
    floor: TestNetns,
    cluster: TestCluster,
    scratch: TempDir,
}

impl Nodes {
    fn start() -> Self {
        let mut cluster = TestCluster::new(1, 15);
        cluster.daemon_log = podnet_tests::daemon::BENCH_LOG.into();
        cluster.add_node(0);
        Self {
            reference: TestNetns::new("ref"),
            reference_bare: TestNetns::new("refb"),
            floor: TestNetns::new("floor"),
            cluster,
            scratch: TempDir::new().expect("tempdir"),
        }
    }
}

/// Writes `doc` as the one conflist of a new directory `dir` in `scratch`.
fn conf_dir(scratch: &Path, dir: &str, file: &str, doc: &Value) -> PathBuf {
    let dir = scratch.join(dir);
    std::fs::create_dir_all(&dir).expect("conf dir");
    std::fs::write(dir.join(file), doc.to_string()).expect("conflist");
    dir
}

/// podnetd's conflist, or a copy at cniVersion 1.0.0 when it names a
/// version containerd 1.6's libcni cannot take (with a note saying so).
fn podnet_conf_dir(written: &Path, scratch: &Path) -> (PathBuf, String) {
    let path = written.join("10-podnet.conflist");
    let text = std::fs::read_to_string(&path).expect("podnetd's conflist");
    let mut doc: Value = serde_json::from_str(&text).expect("conflist JSON");
    let version = doc["cniVersion"].as_str().unwrap_or("").to_string();
    if ["0.3.1", "0.4.0", "1.0.0"].contains(&version.as_str()) {
        return (written.to_path_buf(), "the conflist podnetd wrote".into());
    }
    doc["cniVersion"] = json!("1.0.0");
    let dir = conf_dir(scratch, "podnet-net.d", "10-podnet.conflist", &doc);
    let note = format!(
        "podnetd's conflist with cniVersion {version} rewritten to 1.0.0 (containerd 1.6 \
         rejects {version} results: `unsupported CNI result version`)"
    );
    (dir, note)
}

fn reference_conf_dir(scratch: &Path) -> PathBuf {
    let doc = json!({
        "cniVersion": "1.0.0",
        "name": "reference",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.88.0.0/16"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": scratch.join("host-local"),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    conf_dir(scratch, "ref-net.d", "10-reference.conflist", &doc)
}

/// The list in `dir` without portmap: how much of each setup is the
/// chained (Go) portmap plugin's.
fn without_portmap(dir: &Path, scratch: &Path, name: &str) -> PathBuf {
    let src = std::fs::read_dir(dir)
        .expect("conf dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "conflist"))
        .expect("a conflist");
    let text = std::fs::read_to_string(&src).expect("conflist");
    let mut doc: Value = serde_json::from_str(&text).expect("JSON");
    if let Some(list) = doc["plugins"].as_array_mut() {
        list.retain(|p| p["type"] != "portmap");
    }
    let file = src.file_name().expect("file name").to_string_lossy();
    conf_dir(scratch, name, &file, &doc)
}

/// The floor: containerd and the loopback plugin it always runs, with a
/// plugin that does no work at all.
fn floor_conf_dir(scratch: &Path) -> PathBuf {
    let doc =
        json!({"cniVersion": "1.0.0", "name": "floor", "plugins": [{"type": null_cni::NULL_CNI}]});
    conf_dir(scratch, "floor.d", "10-floor.conflist", &doc)
}

/// A containerd per subject, indexed by PODNET .. FLOOR.
fn start_subjects(nodes: &Nodes) -> Vec<Subject> {
    let scratch = nodes.scratch.path();
    let node = nodes.cluster.node(0);
    let (podnet_dir, podnet_note) = podnet_conf_dir(&node.daemon.cni_conf_dir(), scratch);
    let ref_dir = reference_conf_dir(scratch);
    let ref_bare = without_portmap(&ref_dir, scratch, "ref-bare.d");
    let subjects = vec![
        Subject::new("podnet", node.ns.path(), podnet_dir, &podnet_note),
        Subject::new(
            "bridge + host-local",
            nodes.reference.path(),
            ref_dir,
            "bridge (cni0, isGateway) + host-local 10.88.0.0/16, portmap chained",
        ),
        Subject::new(
            "bridge + host-local, no portmap",
            nodes.reference_bare.path(),
            ref_bare,
            "the reference list without portmap, in a node namespace of its own",
        ),
        Subject::new(
            "floor: containerd + loopback + a no-op plugin",
            nodes.floor.path(),
            floor_conf_dir(scratch),
            "a no-op static C plugin (tests/assets/null-cni.c) alone: containerd's and the \
             loopback plugin's own cost, the floor under any plugin's CNI setup",
        ),
    ];
    std::os::unix::fs::symlink(
        null_cni::binary(),
        subjects[FLOOR]
            .runtime
            .cni_bin_dir()
            .join(null_cni::NULL_CNI),
    )
    .expect("null-cni in the floor's CNI bin dir");
    subjects
}

/// Sandboxes not counted (first use of the snapshot, the shim, the CNI
/// plugins); containerd's histogram is read once they are gone.
fn warm_up(subjects: &mut [Subject]) {
    eprintln!("bench-cri: warm-up");
    for s in subjects.iter_mut() {
        for k in 0..WARM_UP {
            s.run_one(&format!("warm-{k}"));
        }
        s.teardown_all();
        s.before = cni_histogram(&s.runtime.metrics());
    }
}

/// `pods` sandboxes per subject, one at a time, rotating which subject goes
/// first; then every one stopped and removed.
fn measure(subjects: &mut [Subject], pods: usize) {
    eprintln!("bench-cri: {pods} sequential RunPodSandbox each, alternating");
    let n = subjects.len();
    for k in 0..pods {
        for j in 0..n {
            let s = &mut subjects[(j + k) % n];
            let took = s.run_one(&format!("pod-{k}"));
            s.run.push(took);
        }
    }
    eprintln!("bench-cri: stop + remove");
    for s in subjects.iter_mut() {
        s.teardown = s.teardown_all();
        s.after = cni_histogram(&s.runtime.metrics());
    }
}

fn report(session: &Session, opts: &Opts, subjects: &[Subject]) -> String {
    let mut md = session
        .report("bench-cri: RunPodSandbox through containerd, podnet vs bridge + host-local");
    inputs(&mut md, opts, subjects);
    md.table(&results_table(subjects));
    ratios(&mut md, subjects);
    md.para(format_args!(
        "CNI setup/teardown: containerd's `{METRIC}` histogram, (sum after - sum before) / \
         (count after - count before) for operation_type `set_up_pod` / `tear_down_pod` (teardown \
         counts both DELs: Stop's and Remove's, the second with an empty CNI_NETNS)."
    ));
    md.finish()
}

fn inputs(md: &mut Markdown, opts: &Opts, subjects: &[Subject]) {
    let runtime = &subjects[PODNET].runtime;
    let (rt_name, rt_version) = runtime.cri().version().expect("version");
    let runc = facts::shell("runc", &["--version"]);
    md.item(format_args!(
        "runtime: {rt_name} {rt_version} ({} snapshotter), runc {}",
        runtime.snapshotter,
        runc.lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("runc version "),
    ));
    md.item(format_args!(
        "podnet: {} ({})",
        bins::podnet().display(),
        bins::linkage(&bins::podnet())
    ));
    md.item(format_args!(
        "{} sandboxes per subject, sequential, subjects in rotating order; {WARM_UP} warm-up \
         sandboxes each, not counted",
        opts.pods
    ));
    for s in subjects {
        md.item(format_args!("{}: {}", s.label, s.note));
    }
}

fn results_table(subjects: &[Subject]) -> Table {
    let mut t = Table::new(&[
        "subject",
        "RunPodSandbox p50",
        "p99",
        "CNI setup (containerd, mean)",
        "Stop+Remove p50",
        "CNI teardown (containerd, mean)",
    ]);
    for s in subjects {
        let run = Summary::of(&s.run).expect("measured sandboxes");
        let teardown = Summary::of(&s.teardown).expect("removed sandboxes");
        let [(setup, setup_n), (down, down_n)] = s.cni_means();
        t.row([
            s.label.to_string(),
            format!("{} ms", ms1(run.p50)),
            format!("{} ms", ms1(run.p99)),
            format!("{} ms (n={setup_n})", ms1(setup)),
            format!("{} ms", ms1(teardown.p50)),
            format!("{} ms (n={down_n})", ms1(down)),
        ]);
    }
    t
}

/// podnet against the reference (which chains portmap for hostPort, as
/// podnet serves it itself), and each setup above the floor (issue 15's
/// targets).
fn ratios(md: &mut Markdown, subjects: &[Subject]) {
    let p50 = |i: usize| ms(Summary::of(&subjects[i].run).expect("measured").p50);
    let [setup, teardown]: [Vec<Duration>; 2] =
        [0, 1].map(|k| subjects.iter().map(|s| s.cni_means()[k].0).collect());
    let q = |a: Duration, b: Duration| fmt_ratio(ratio(ms(a), ms(b)));
    md.para(format_args!(
        "podnet / bridge + host-local + portmap: RunPodSandbox p50 {}, CNI setup {} (the \
         floor alone is {}), CNI teardown {}",
        fmt_ratio(ratio(p50(PODNET), p50(REFERENCE))),
        q(setup[PODNET], setup[REFERENCE]),
        q(setup[FLOOR], setup[REFERENCE]),
        q(teardown[PODNET], teardown[REFERENCE]),
    ));
    let above = |i: usize| setup[i].saturating_sub(setup[FLOOR]);
    let mut t = Table::new(&["issue 15 target", "measured", "target", "met"]);
    let met = |ok: bool| if ok { "met" } else { "**not met**" }.to_string();
    let over_ref = ratio(ms(above(PODNET)), ms(above(REFERENCE)));
    t.row([
        format!(
            "podnet's CNI setup above the floor / the reference's ({} ms / {} ms)",
            ms1(above(PODNET)),
            ms1(above(REFERENCE))
        ),
        fmt_ratio(over_ref),
        "≤ 0.10".into(),
        met(over_ref.is_some_and(|r| r <= 0.10)),
    ]);
    let over_floor = ratio(ms(setup[PODNET]), ms(setup[FLOOR]));
    t.row([
        format!(
            "podnet's CNI setup / the floor's ({} ms / {} ms)",
            ms1(setup[PODNET]),
            ms1(setup[FLOOR])
        ),
        fmt_ratio(over_floor),
        "≤ 1.30".into(),
        met(over_floor.is_some_and(|r| r <= 1.30)),
    ]);
    md.table(&t);
    md.para(format_args!(
        "The reference's setup above the floor is {} ms with portmap, {} ms without: the \
         chained Go plugin is {} ms of it.",
        ms1(above(REFERENCE)),
        ms1(above(REFERENCE_BARE)),
        ms1(setup[REFERENCE].saturating_sub(setup[REFERENCE_BARE])),
    ));
}

fn run(opts: &Opts, session: &Session) -> Result<String, String> {
    cleanup::before_emergency(kill_shims);
    eprintln!("bench-cri: starting etcd, podnetd and four containerds");
    let nodes = Nodes::start();
    let mut subjects = start_subjects(&nodes);
    warm_up(&mut subjects);
    measure(&mut subjects, opts.pods);
    let text = report(session, opts, &subjects);
    eprintln!("bench-cri: stopping containerds, podnetd, etcd");
    drop(subjects);
    drop(nodes);
    Ok(text)
}

fn main() -> ExitCode {
    bench::main::<Opts>("bench-cri", run)
}
