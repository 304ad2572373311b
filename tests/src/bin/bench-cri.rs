//! bench-cri: pod sandbox creation through containerd's CRI, podnet against
//! the reference `bridge` + `host-local`, in the same harness and run.
//!
//! ```text
//! cargo build --release --workspace
//! export PODNET_BIN_DIR=$(scripts/build-static)
//! cargo run --release -p podnet-tests --bin bench-cri -- [--pods 30] [--out FILE]
//! ```
//!
//! Two simulated nodes (network namespaces), each with a real containerd
//! (`TestContainerd`, metrics on 127.0.0.1 inside the node):
//! - podnet: a node of a one-node `TestCluster` (etcd, podnetd), containerd
//!   loading the conflist podnetd wrote (podnet + podnet-ipam, portmap);
//! - reference: `bridge` (cni0, isGateway) + `host-local` (10.88.0.0/16),
//!   chained with `portmap` like podnet's list;
//! - both lists again without `portmap` (a second containerd on podnet's
//!   node; a third node namespace for the reference), to show how much of
//!   each setup the chained Go plugin costs;
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
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podnet_tests::bins;
use podnet_tests::cluster::TestCluster;
use podnet_tests::containerd::{shim_pids, sigkill, ContainerdOpts, TestContainerd};
use podnet_tests::machine;
use podnet_tests::netns::TestNetns;
use podnet_tests::null_cni;
use podnet_tests::report;
use serde_json::json;

/// containerd sockets, for the panic hook (the release profile aborts, so
/// no `Drop` runs): their shims and pods are killed by pid.
static SOCKETS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

const METRIC: &str = "containerd_cri_network_plugin_operations_duration_seconds";

struct Opts {
    pods: usize,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        pods: 30,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--pods" => opts.pods = val()?.parse().map_err(|e| format!("--pods: {e}"))?,
            "--out" => opts.out = Some(PathBuf::from(val()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if opts.pods < 2 {
        return Err("--pods must be at least 2".into());
    }
    Ok(opts)
}

/// (sum, count) per operation_type of the CNI operations histogram.
fn cni_histogram(metrics: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in metrics.lines() {
        if !line.starts_with(METRIC) {
            continue;
        }
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

/// Mean seconds of `op` between two scrapes, and how many.
fn mean_between(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
    op: &str,
) -> (Duration, u64) {
    let (s0, c0) = before.get(op).copied().unwrap_or_default();
    let (s1, c1) = after.get(op).copied().unwrap_or_default();
    let n = c1 - c0;
    if n <= 0.0 {
        return (Duration::ZERO, 0);
    }
    (Duration::from_secs_f64((s1 - s0) / n), n as u64)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

struct Subject {
    label: &'static str,
    runtime: TestContainerd,
    run: Vec<Duration>,
    teardown: Vec<Duration>,
    ids: Vec<String>,
    before: BTreeMap<String, (f64, f64)>,
    after: BTreeMap<String, (f64, f64)>,
    note: String,
}

impl Subject {
    fn new(label: &'static str, netns: &Path, conf_dir: PathBuf, note: String) -> Self {
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
            before: BTreeMap::new(),
            after: BTreeMap::new(),
            note,
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
}
/// podnetd's conflist, or a copy at cniVersion 1.0.0 when it names a
/// version containerd 1.6's libcni cannot take (with a note saying so).
fn podnet_conf_dir(written: &Path, scratch: &Path) -> (PathBuf, String) {
    let path = written.join("10-podnet.conflist");
    let text = std::fs::read_to_string(&path).expect("podnetd's conflist");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("conflist JSON");
    let version = doc["cniVersion"].as_str().unwrap_or("").to_string();
    if ["0.3.1", "0.4.0", "1.0.0"].contains(&version.as_str()) {
        return (written.to_path_buf(), "the conflist podnetd wrote".into());
    }
    doc["cniVersion"] = json!("1.0.0");
    let dir = scratch.join("podnet-net.d");
    std::fs::create_dir_all(&dir).expect("conf dir");
    std::fs::write(dir.join("10-podnet.conflist"), doc.to_string()).expect("conflist copy");
    (
        dir,
        format!(
            "podnetd's conflist with cniVersion {version} rewritten to 1.0.0 (containerd 1.6 \
             rejects {version} results: `unsupported CNI result version`)"
        ),
    )
}

/// The one conflist in `dir`.
fn read_dir_one(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("conf dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "conflist"))
        .expect("a conflist")
}

/// The subject that measures containerd's own cost.
const FLOOR: &str = "floor: containerd + loopback + a no-op plugin";

fn bench(opts: &Opts) -> String {
    let load_start = machine::loadavg();
    let scratch = tempfile::TempDir::new().expect("tempdir");
    eprintln!("bench-cri: load {load_start}; starting etcd, podnetd and two containerds");
    let mut cluster = TestCluster::new(1, 15);
    cluster.daemon_log = podnet_tests::daemon::BENCH_LOG.into();
    cluster.add_node(0);
    let node = cluster.node(0);
    let (podnet_dir, podnet_note) = podnet_conf_dir(&node.daemon.cni_conf_dir(), scratch.path());
    let ref_ns = TestNetns::new("ref");
    let ref_dir = scratch.path().join("ref-net.d");
    std::fs::create_dir_all(&ref_dir).expect("ref conf dir");
    let ref_conf = json!({
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
                    "dataDir": scratch.path().join("host-local"),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(ref_dir.join("10-reference.conflist"), ref_conf.to_string())
        .expect("reference conflist");
    // The same lists without portmap: how much of each setup is the
    // chained (Go) portmap plugin's.
    let strip_portmap = |dir: &Path, name: &str| -> PathBuf {
        let src = read_dir_one(dir);
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&src).expect("conflist")).expect("JSON");
        if let Some(list) = doc["plugins"].as_array_mut() {
            list.retain(|p| p["type"] != "portmap");
        }
        let out = scratch.path().join(name);
        std::fs::create_dir_all(&out).expect("conf dir");
        std::fs::write(
            out.join(src.file_name().expect("file name")),
            doc.to_string(),
        )
        .expect("conflist");
        out
    };
    let podnet_bare = strip_portmap(&podnet_dir, "podnet-bare.d");
    let ref_bare = strip_portmap(&ref_dir, "ref-bare.d");
    let ref_bare_ns = TestNetns::new("refb");
    // The floor: containerd and the loopback plugin it always runs, with a
    // plugin that does no work at all.
    let floor_ns = TestNetns::new("floor");
    let floor_dir = scratch.path().join("floor.d");
    std::fs::create_dir_all(&floor_dir).expect("floor conf dir");
    std::fs::write(
        floor_dir.join("10-floor.conflist"),
        json!({"cniVersion": "1.0.0", "name": "floor", "plugins": [{"type": null_cni::NULL_CNI}]})
            .to_string(),
    )
    .expect("floor conflist");
    let mut subjects = [
        Subject::new("podnet", node.ns.path(), podnet_dir, podnet_note),
        Subject::new(
            "bridge + host-local",
            ref_ns.path(),
            ref_dir,
            "bridge (cni0, isGateway) + host-local 10.88.0.0/16, portmap chained".into(),
        ),
        Subject::new(
            "podnet, no portmap",
            node.ns.path(),
            podnet_bare,
            "podnet's list without portmap (a second containerd on the same node and podnetd)"
                .into(),
        ),
        Subject::new(
            "bridge + host-local, no portmap",
            ref_bare_ns.path(),
            ref_bare,
            "the reference list without portmap, in a node namespace of its own".into(),
        ),
        Subject::new(
            FLOOR,
            floor_ns.path(),
            floor_dir,
            "a no-op static C plugin (tests/assets/null-cni.c) alone: containerd's and the \
             loopback plugin's own cost, the floor under any plugin's CNI setup"
                .into(),
        ),
    ];
    std::os::unix::fs::symlink(
        null_cni::binary(),
        subjects[4].runtime.cni_bin_dir().join(null_cni::NULL_CNI),
    )
    .expect("null-cni in the floor's CNI bin dir");
    eprintln!("bench-cri: warm-up");
    for s in subjects.iter_mut() {
        for k in 0..2 {
            s.run_one(&format!("warm-{k}"));
        }
        s.teardown_all();
        s.before = cni_histogram(&s.runtime.metrics());
    }
    eprintln!(
        "bench-cri: {} sequential RunPodSandbox each, alternating",
        opts.pods
    );
    for k in 0..opts.pods {
        // Rotate which subject goes first.
        let n = subjects.len();
        for j in 0..n {
            let i = (j + k) % n;
            let took = subjects[i].run_one(&format!("pod-{k}"));
            subjects[i].run.push(took);
        }
    }
    eprintln!("bench-cri: stop + remove");
    for s in subjects.iter_mut() {
        s.teardown = s.teardown_all();
        s.after = cni_histogram(&s.runtime.metrics());
        s.run.sort();
        s.teardown.sort();
    }
    let load_end = machine::loadavg();

    let mut t = String::new();
    let (rev, _) = machine::git_revision();
    let cpu = machine::cpu_model();
    let (rt_name, rt_version) = subjects[0].runtime.cri().version().expect("version");
    let _ = writeln!(
        t,
        "# bench-cri: RunPodSandbox through containerd, podnet vs bridge + host-local\n"
    );
    let _ = writeln!(
        t,
        "- machine: {} CPUs ({cpu}), kernel {}; {rt_name} {rt_version} ({} snapshotter), runc {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        machine::shell("uname", &["-r"]),
        subjects[0].runtime.snapshotter,
        machine::shell("runc", &["--version"])
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("runc version "),
    );
    let _ = writeln!(
        t,
        "- git {rev}; podnet {} ({}); load average {load_start} at start, {load_end} at end",
        bins::podnet().display(),
        bins::linkage(&bins::podnet())
    );
    let _ = writeln!(
        t,
        "- {} sandboxes per subject, sequential, subjects in rotating order; 2 warm-up sandboxes \
         each, not counted",
        opts.pods
    );
    for s in &subjects {
        let _ = writeln!(t, "- {}: {}", s.label, s.note);
    }
    let _ = writeln!(
        t,
        "\n| subject | RunPodSandbox p50 | p99 | CNI setup (containerd, mean) | Stop+Remove p50 | CNI teardown (containerd, mean) |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|");
    let mut setup = Vec::new();
    let mut teardown = Vec::new();
    for s in &subjects {
        let (su, su_n) = mean_between(&s.before, &s.after, "set_up_pod");
        let (td, td_n) = mean_between(&s.before, &s.after, "tear_down_pod");
        setup.push(su);
        teardown.push(td);
        let _ = writeln!(
            t,
            "| {} | {} ms | {} ms | {} ms (n={su_n}) | {} ms | {} ms (n={td_n}) |",
            s.label,
            ms(pct(&s.run, 0.5)),
            ms(pct(&s.run, 0.99)),
            ms(su),
            ms(pct(&s.teardown, 0.5)),
            ms(td),
        );
    }
    let ratio = |a: Duration, b: Duration| {
        if b.is_zero() {
            f64::NAN
        } else {
            a.as_secs_f64() / b.as_secs_f64()
        }
    };
    for (a, b, what) in [(0, 1, "with portmap"), (2, 3, "without portmap")] {
        let _ = writeln!(
            t,
            "\npodnet / reference, {what}: RunPodSandbox p50 {:.2}, CNI setup {:.2} (target: under \
             0.33; the floor alone is {:.2}), CNI teardown {:.2}",
            ratio(pct(&subjects[a].run, 0.5), pct(&subjects[b].run, 0.5)),
            ratio(setup[a], setup[b]),
            ratio(setup[4], setup[b]),
            ratio(teardown[a], teardown[b]),
        );
    }
    let _ = writeln!(
        t,
        "\npodnet's own share of its setup, above the floor: {} ms with portmap, {} ms without \
         (the reference's: {} ms and {} ms)",
        ms(setup[0].saturating_sub(setup[4])),
        ms(setup[2].saturating_sub(setup[4])),
        ms(setup[1].saturating_sub(setup[4])),
        ms(setup[3].saturating_sub(setup[4])),
    );
    let _ = writeln!(
        t,
        "\nCNI setup/teardown: containerd's `{METRIC}` histogram, (sum after - sum before) / \
         (count after - count before) for operation_type `set_up_pod` / `tear_down_pod` (teardown \
         counts both DELs: Stop's and Remove's, the second with an empty CNI_NETNS)."
    );
    eprintln!("bench-cri: stopping containerds, podnetd, etcd");
    drop(subjects);
    drop(ref_ns);
    drop(ref_bare_ns);
    drop(floor_ns);
    drop(cluster);
    t
}

fn main() -> ExitCode {
    podnet_tests::cleanup::on_signal_clean_up("bench-cri");
    std::panic::set_hook(Box::new(|info| {
        eprintln!("bench-cri: {info}");
        for socket in SOCKETS.lock().map(|s| s.clone()).unwrap_or_default() {
            for pid in shim_pids(&socket) {
                sigkill(pid);
            }
        }
        podnet_tests::cleanup::emergency_cleanup();
    }));
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-cri: {e}");
            return ExitCode::from(2);
        }
    };
    podnet_tests::require_root();
    report::finish("bench-cri", Ok(bench(&opts)), opts.out.as_deref())
}
