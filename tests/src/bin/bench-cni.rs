//! bench-cni: ADD and DEL latency of podnet side by side with the reference
//! `bridge` plugin, both on the same host-local IPAM configuration, plus
//! host-local run alone, so that each plugin's own part (its total minus
//! the IPAM plugin it execs) can be compared; and podnet on its own IPAM
//! (`podnet-ipam`, served by a podnetd in its node namespace, which podnet
//! asks over the daemon's socket in process), whose total is compared with
//! bridge + host-local's (issue 3's target).
//!
//! ```text
//! cargo build --release --workspace
//! export PODNET_BIN_DIR=$(scripts/build-static)   # as shipped: static-pie
//! cargo run --release -p podnet-tests --bin bench-cni -- \
//!     [--pods 200] [--concurrency 8] [--rounds 2] [--out FILE]
//! ```
//!
//! Method (see also bench/README.md):
//! - each plugin gets a node network namespace of its own (plus a host-local
//!   data directory) and, for podnet and bridge, one pod namespace per pod;
//!   all namespaces exist before any timing starts, nothing runs in the
//!   machine's own namespace and no packet is sent;
//! - one operation is timed from spawning the plugin process to its exit
//!   (stdin written, stdout/stderr read), on a thread that already entered
//!   the node namespace, as a runtime would run it there;
//! - phases: sequential ADD of every pod, sequential DEL, then the same with
//!   `--concurrency` worker threads; a phase runs for each plugin in turn,
//!   with the order rotated per phase and per round, and the whole sequence
//!   runs `--rounds` times; the last round is the headline, earlier rounds
//!   are printed too (round 1 includes first-use costs such as creating the
//!   bridge);
//! - every operation must succeed; after each DEL phase no pod interface or
//!   host veth may remain and host-local (or podnetd) must hold no
//!   reservation.
//!
//! A failure (or Ctrl-C) still removes every namespace this process created
//! and kills the podnetd it started (by its pid): the release profile aborts
//! on panic, so drops would not run; a panic hook and a signal thread clean
//! up instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use podnet_cni::netlink::link;
use podnet_cni::netlink::netns::NetNs;
use podnet_tests::bins;
use podnet_tests::cleanup;
use podnet_tests::daemon::{DaemonOpts, TestDaemon, BENCH_LOG};
use podnet_tests::machine;
use podnet_tests::netns::TestNetns;
use podnet_tests::node::TestNode;
use podnet_tests::plugin::{exec_here, Invocation};
use podnet_tests::report;
use serde_json::{json, Value};

/// The network name: host-local keeps its reservations in `dataDir/NAME`.
const NETWORK: &str = "bench";
/// A /16 holds any `--pods` this bench is meant for; every plugin has a node
/// namespace of its own, so they can all use the same range.
const RANGE: &str = "10.88.0.0/16";
/// Debian's host-local 1.1.1 speaks CNI up to 1.0.0.
const CNI_VERSION: &str = "1.0.0";
const IFNAME: &str = "eth0";
/// podnetd's cluster range for podnet + podnet-ipam: IPv4 only, like the
/// host-local configuration (the harness default is dual-stack).
const DAEMON_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The bridge podnetd creates at start (its default `--bridge`, which
/// TestDaemon keeps), with the node CIDR's gateway address: podnet +
/// podnet-ipam attaches pods to it, as podnetd's own conflist says; another
/// bridge would carry the same gateway address a second time.
const DAEMON_BRIDGE: &str = "podnet0";
/// The most pods podnetd's node CIDR can take inside DAEMON_CLUSTER_CIDR
/// (30000 max pods -> a /16 node CIDR).
const DAEMON_MAX_PODS: usize = 30_000;
/// Targets, for podnet's own part relative to bridge's own part (both on
/// host-local) and for podnet + podnet-ipam's total relative to bridge +
/// host-local's total.
const ADD_TARGET: f64 = 0.33;
const DEL_TARGET: f64 = 1.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Podnet,
    PodnetIpam,
    Bridge,
    HostLocal,
}

const KINDS: usize = 4;

impl Kind {
    const ALL: [Kind; KINDS] = [
        Kind::Podnet,
        Kind::PodnetIpam,
        Kind::Bridge,
        Kind::HostLocal,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::Podnet => "podnet + host-local",
            Kind::PodnetIpam => "podnet + podnet-ipam",
            Kind::Bridge => "bridge + host-local",
            Kind::HostLocal => "host-local alone",
        }
    }

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    SeqAdd,
    SeqDel,
    ConcAdd,
    ConcDel,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::SeqAdd, Phase::SeqDel, Phase::ConcAdd, Phase::ConcDel];

    fn verb(self) -> &'static str {
        match self {
            Phase::SeqAdd | Phase::ConcAdd => "ADD",
            Phase::SeqDel | Phase::ConcDel => "DEL",
        }
    }

    fn concurrent(self) -> bool {
        matches!(self, Phase::ConcAdd | Phase::ConcDel)
    }

    fn title(self, opts: &Opts) -> String {
        if self.concurrent() {
            format!(
                "Concurrent {} ({} pods, {} workers)",
                self.verb(),
                opts.pods,
                opts.concurrency
            )
        } else {
            format!("Sequential {} ({} pods)", self.verb(), opts.pods)
        }
    }
}

struct Opts {
    pods: usize,
    concurrency: usize,
    rounds: usize,
    out: Option<PathBuf>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut opts = Opts {
        pods: 200,
        concurrency: 8,
        rounds: 2,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |text: String, name: &str| -> Result<usize, String> {
            match text.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name}: a positive integer, not {text:?}")),
            }
        };
        match arg.as_str() {
            "--pods" => opts.pods = number(value("--pods")?, "--pods")?,
            "--concurrency" => opts.concurrency = number(value("--concurrency")?, "--concurrency")?,
            "--rounds" => opts.rounds = number(value("--rounds")?, "--rounds")?,
            "--out" => opts.out = Some(PathBuf::from(value("--out")?)),
            "-h" | "--help" => {
                println!(
                    "bench-cni [--pods 200] [--concurrency 8] [--rounds 2] [--out FILE]\n\
                     ADD/DEL latency of podnet vs the reference bridge plugin (needs root)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if opts.pods > DAEMON_MAX_PODS {
        return Err(format!(
            "--pods {}: at most {DAEMON_MAX_PODS} (podnetd's node CIDR in {DAEMON_CLUSTER_CIDR})",
            opts.pods
        ));
    }
    Ok(opts)
}

/// One plugin under test with the node it runs in.
struct Subject {
    kind: Kind,
    plugin: PathBuf,
    /// podnet + podnet-ipam only; stopped (by `Drop`) before the node goes.
    daemon: Option<TestDaemon>,
    node: TestNode,
    conf: Value,
    stdin: Vec<u8>,
    /// Empty for host-local alone, which never enters a pod namespace.
    pods: Vec<TestNetns>,
    /// podnet + podnet-ipam: whether DAEMON_BRIDGE existed before any ADD.
    daemon_made_bridge: bool,
}

/// podnetd in `node`, IPv4 only (TestDaemon registers its pid and directory
/// for the emergency cleanup).
fn start_daemon(node: &TestNode, pods: usize) -> TestDaemon {
    let opts = DaemonOpts {
        cluster_cidr: DAEMON_CLUSTER_CIDR.into(),
        // The production default, or enough for --pods.
        max_pods: u32::try_from(pods.max(110)).unwrap(),
        log: BENCH_LOG.into(),
        ..DaemonOpts::default()
    };
    TestDaemon::start(&node.ns, opts)
}

impl Drop for Subject {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.as_mut() {
            daemon.kill9();
        }
    }
}

impl Subject {
    fn new(kind: Kind, pods: usize) -> Self {
        let node = TestNode::new(0);
        cleanup::register_dir(node.data_dir.path());
        let daemon = (kind == Kind::PodnetIpam).then(|| start_daemon(&node, pods));
        let ipam = json!({
            "type": "host-local",
            "ranges": [[{ "subnet": RANGE }]],
            "routes": [{ "dst": "0.0.0.0/0" }],
            "dataDir": node.data_dir.path(),
        });
        let (plugin, conf) = match kind {
            Kind::PodnetIpam => {
                let mut ipam = daemon.as_ref().unwrap().ipam_conf();
                // As host-local is configured: podnet adds a default route
                // per family anyway, so this only keeps the documents alike.
                ipam["routes"] = json!([{ "dst": "0.0.0.0/0" }]);
                (
                    bins::podnet(),
                    json!({
                        "cniVersion": CNI_VERSION, "name": NETWORK, "type": "podnet",
                        "bridge": DAEMON_BRIDGE, "ipam": ipam,
                    }),
                )
            }
            Kind::Podnet => (
                bins::podnet(),
                json!({
                    "cniVersion": CNI_VERSION, "name": NETWORK, "type": "podnet",
                    "bridge": "pnbench0", "ipam": ipam,
                }),
            ),
            Kind::Bridge => (
                bins::reference("bridge"),
                json!({
                    "cniVersion": CNI_VERSION, "name": NETWORK, "type": "bridge",
                    "bridge": "cni0", "isGateway": true, "ipam": ipam,
                }),
            ),
            // The document podnet and bridge pass on to host-local: their
            // whole configuration; host-local reads only name and ipam.
            Kind::HostLocal => (
                bins::reference("host-local"),
                json!({
                    "cniVersion": CNI_VERSION, "name": NETWORK, "type": "host-local",
                    "ipam": ipam,
                }),
            ),
        };
        let pods = if kind == Kind::HostLocal {
            Vec::new()
        } else {
            create_namespaces("pod", pods)
        };
        let daemon_made_bridge = daemon.is_some()
            && Self::links(node.ns.path())
                .is_ok_and(|links| links.iter().any(|l| l.name == DAEMON_BRIDGE));
        Self {
            kind,
            plugin,
            daemon_made_bridge,
            daemon,
            stdin: conf.to_string().into_bytes(),
            conf,
            node,
            pods,
        }
    }

    /// The configuration as the report shows it, without tempdir paths.
    fn shown_conf(&self) -> Value {
        let mut conf = self.conf.clone();
        if let Some(d) = &self.daemon {
            let root = d.dir.path().display().to_string();
            for key in ["socket", "spoolDir"] {
                if let Some(path) = conf["ipam"][key].as_str() {
                    conf["ipam"][key] = json!(path.replacen(&root, "<tempdir>", 1));
                }
            }
        } else {
            conf["ipam"]["dataDir"] = json!("<tempdir>");
        }
        conf
    }

    fn netns_for(&self, i: usize) -> &Path {
        match self.pods.get(i) {
            Some(pod) => pod.path(),
            // host-local ignores CNI_NETNS but a runtime always sets it.
            None => self.node.ns.path(),
        }
    }

    /// One timed invocation; runs on a thread inside the node namespace.
    fn op(&self, verb: &str, container_id: &str, i: usize) -> Result<Duration, String> {
        if cleanup::aborting() {
            return Err("aborting: no new operation".into());
        }
        let netns = self.netns_for(i).display().to_string();
        let inv = Invocation {
            plugin: &self.plugin,
            command: verb,
            container_id,
            netns: Some(&netns),
            ifname: IFNAME,
            cni_path: self.node.cni_path(),
            stdin: &self.stdin,
            env: &[],
        };
        let start = Instant::now();
        let out = exec_here(&inv);
        let took = start.elapsed();
        if out.code != Some(0) {
            return Err(format!(
                "{} {verb} {container_id} failed (exit {:?})\nstdout: {}\nstderr: {}",
                self.kind.label(),
                out.code,
                out.stdout.trim(),
                out.stderr.trim()
            ));
        }
        if verb == "ADD" {
            let doc: Value = serde_json::from_str(&out.stdout).map_err(|e| {
                format!(
                    "{} ADD {container_id}: result is not JSON ({e}): {:?}\nstderr: {}",
                    self.kind.label(),
                    out.stdout,
                    out.stderr.trim()
                )
            })?;
            if doc["ips"].as_array().is_none_or(|ips| ips.is_empty()) {
                return Err(format!(
                    "{} ADD {container_id}: result without ips: {doc}",
                    self.kind.label()
                ));
            }
        }
        Ok(took)
    }

    /// Links in `ns`, through a netlink socket opened inside it.
    fn links(ns: &Path) -> Result<Vec<link::Link>, String> {
        let ns = NetNs::open(ns).map_err(|e| e.to_string())?;
        let mut nl = ns.netlink().map_err(|e| e.to_string())?;
        link::list_links(&mut nl).map_err(|e| e.to_string())
    }

    /// What the node and pods must look like after ADD (`attached`) or DEL.
    fn check_state(&self, attached: bool, pods: usize) -> Result<(), String> {
        let who = self.kind.label();
        let want = if attached { pods } else { 0 };
        if let Some(daemon) = &self.daemon {
            let allocs = daemon.allocations();
            let distinct: std::collections::HashSet<_> =
                allocs.iter().flat_map(|a| a.ips.iter().copied()).collect();
            if allocs.len() != want || distinct.len() != want {
                return Err(format!(
                    "{who}: podnetd holds {} allocations ({} distinct addresses), expected {want}: {:?}",
                    allocs.len(),
                    distinct.len(),
                    &allocs[..allocs.len().min(5)]
                ));
            }
        } else {
            let reserved = self.node.reserved(NETWORK);
            if reserved.len() != want {
                return Err(format!(
                    "{who}: host-local holds {} reservations, expected {want}: {:?}",
                    reserved.len(),
                    &reserved[..reserved.len().min(10)]
                ));
            }
        }
        if self.kind == Kind::HostLocal {
            return Ok(());
        }
        let veths = Self::links(self.node.ns.path())?
            .into_iter()
            .filter(|l| l.kind.as_deref() == Some("veth"))
            .count();
        if veths != want {
            return Err(format!(
                "{who}: {veths} host veths in the node namespace, expected {want}"
            ));
        }
        for pod in &self.pods {
            let names: Vec<String> = Self::links(pod.path())?
                .into_iter()
                .map(|l| l.name)
                .filter(|n| n != "lo")
                .collect();
            let ok = if attached {
                names == [IFNAME]
            } else {
                names.is_empty()
            };
            if !ok {
                return Err(format!(
                    "{who}: pod namespace {} has interfaces {names:?} after {}",
                    pod.name(),
                    if attached { "ADD" } else { "DEL" }
                ));
            }
        }
        Ok(())
    }
}

/// Namespaces created a few at a time (each costs two `ip` processes).
fn create_namespaces(role: &str, n: usize) -> Vec<TestNetns> {
    let workers = 8.min(n);
    let per = n.div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let count = per.min(n.saturating_sub(w * per));
                scope.spawn(move || (0..count).map(|_| TestNetns::new(role)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn container_id(round: usize, phase: Phase, i: usize) -> String {
    let mode = if phase.concurrent() { "c" } else { "s" };
    format!("bench-r{round}-{mode}-{i:05}")
}

/// Per-operation durations of one phase, and the phase's wall time.
struct Sample {
    ops: Vec<Duration>,
    wall: Duration,
}

fn run_phase(s: &Subject, phase: Phase, round: usize, opts: &Opts) -> Result<Sample, String> {
    let n = opts.pods;
    let verb = phase.verb();
    if !phase.concurrent() {
        return s.node.ns.run(|| {
            let start = Instant::now();
            let ops = (0..n)
                .map(|i| s.op(verb, &container_id(round, phase, i), i))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Sample {
                ops,
                wall: start.elapsed(),
            })
        });
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let barrier = Barrier::new(opts.concurrency + 1);
    let (wall, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..opts.concurrency)
            .map(|_| {
                scope.spawn(|| {
                    s.node.ns.run(|| {
                        let mut mine = Vec::new();
                        barrier.wait();
                        while !failed.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= n {
                                break;
                            }
                            match s.op(verb, &container_id(round, phase, i), i) {
                                Ok(d) => mine.push(d),
                                Err(e) => {
                                    failed.store(true, Ordering::Relaxed);
                                    return Err(e);
                                }
                            }
                        }
                        Ok(mine)
                    })
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<Result<Vec<Duration>, String>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        (start.elapsed(), results)
    });
    let mut ops = Vec::with_capacity(n);
    for r in results {
        ops.extend(r?);
    }
    Ok(Sample { ops, wall })
}

#[derive(Clone, Copy)]
struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
}

impl Stats {
    /// Milliseconds; percentiles by nearest rank.
    fn of(ops: &[Duration]) -> Self {
        let mut ms: Vec<f64> = ops.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }

    fn get(&self, stat: Stat) -> f64 {
        match stat {
            Stat::P50 => self.p50,
            Stat::P99 => self.p99,
            Stat::Mean => self.mean,
        }
    }

    /// Total minus host-local's figure at the same statistic, never below 0.
    fn own(&self, ipam: &Stats) -> Stats {
        Stats {
            p50: (self.p50 - ipam.p50).max(0.0),
            p99: (self.p99 - ipam.p99).max(0.0),
            mean: (self.mean - ipam.mean).max(0.0),
        }
    }
}

#[derive(Clone, Copy)]
enum Stat {
    P50,
    P99,
    Mean,
}

impl Stat {
    fn label(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P99 => "p99",
            Stat::Mean => "mean",
        }
    }
}

struct PhaseResult {
    phase: Phase,
    order: Vec<Kind>,
    /// Indexed like `Kind::ALL`.
    stats: [Stats; KINDS],
    walls: [Duration; KINDS],
}

impl PhaseResult {
    fn of(&self, kind: Kind) -> Stats {
        self.stats[kind.index()]
    }

    fn own(&self, kind: Kind) -> Stats {
        self.of(kind).own(&self.of(Kind::HostLocal))
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then_some(a / b)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".to_string(), |r| format!("{r:.2}"))
}

/// Rotates the plugin order per phase and round, so no plugin always runs
/// first (cold caches) or last (warm caches, thermal drift).
fn order(round: usize, phase_index: usize) -> Vec<Kind> {
    let mut kinds = Kind::ALL.to_vec();
    kinds.rotate_left((round + phase_index) % Kind::ALL.len());
    kinds
}
/// Load averages at the start and the end of the run.
struct Loads {
    start: String,
    end: String,
}

fn machine_facts(opts: &Opts, subjects: &[Subject], loads: &Loads) -> String {
    let cpu = machine::cpu_model();
    let (rev, dirty) = machine::git_revision();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- date: {}",
        machine::shell("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
    );
    let _ = writeln!(s, "- nproc: {}", machine::shell("nproc", &[]));
    let _ = writeln!(
        s,
        "- load average (1/5/15 min): {} at start, {} at end",
        loads.start, loads.end
    );
    let _ = writeln!(
        s,
        "- nice value of the bench (inherited by the plugins and podnetd): {}",
        machine::niceness()
    );
    let _ = writeln!(s, "- kernel: {}", machine::shell("uname", &["-r"]));
    let _ = writeln!(s, "- cpu: {cpu}");
    let _ = writeln!(
        s,
        "- podnet, podnetd: {}, {} (git {rev}{}, release build, podnet {})",
        subjects[0].plugin.display(),
        bins::workspace_bin("podnetd").display(),
        if dirty { ", uncommitted changes" } else { "" },
        bins::linkage(&subjects[0].plugin)
    );
    let _ = writeln!(
        s,
        "- bridge, host-local: {} (Debian containernetworking-plugins {})",
        bins::REFERENCE_PLUGINS,
        machine::shell(
            "dpkg-query",
            &["-W", "-f", "${Version}", "containernetworking-plugins"]
        )
    );
    if let Some(d) = subjects.iter().find_map(|s| s.daemon.as_ref()) {
        let cidrs: Vec<String> = d
            .allocations_cidrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(
            s,
            "- podnetd: `--cluster-cidr {} --max-pods {}` (IPv4 only, like the host-local \
             configuration), node CIDR {}; bridge `{DAEMON_BRIDGE}` {} by podnetd before the \
             first ADD; sled state in a tempdir on {} (`{}`); `PODNET_LOG={BENCH_LOG}` \
             (podnetd's default level)",
            d.opts.cluster_cidr,
            d.opts.max_pods,
            cidrs.join(", "),
            if subjects.iter().any(|s| s.daemon_made_bridge) {
                "created"
            } else {
                "not created"
            },
            machine::shell(
                "findmnt",
                &[
                    "-n",
                    "-o",
                    "FSTYPE",
                    "--target",
                    &d.dir.path().display().to_string()
                ]
            ),
            d.dir
                .path()
                .parent()
                .map_or(String::new(), |p| p.display().to_string()),
        );
    }
    let _ = writeln!(
        s,
        "- pods: {}, concurrency: {}, rounds: {}",
        opts.pods, opts.concurrency, opts.rounds
    );
    s
}

fn phase_table(out: &mut String, r: &PhaseResult, opts: &Opts) {
    let _ = writeln!(out, "### {}\n", r.phase.title(opts));
    let order: Vec<&str> = r.order.iter().map(|k| k.label()).collect();
    let _ = writeln!(out, "Run order: {}.\n", order.join(", "));
    let _ = writeln!(
        out,
        "| plugin | p50 ms | p99 ms | mean ms | phase wall s | ops/s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for kind in Kind::ALL {
        let st = r.of(kind);
        let wall = r.walls[kind.index()].as_secs_f64();
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            kind.label(),
            st.p50,
            st.p99,
            st.mean,
            wall,
            opts.pods as f64 / wall
        );
    }
    for kind in [Kind::Podnet, Kind::Bridge] {
        let own = r.own(kind);
        let _ = writeln!(
            out,
            "| {} own part (− host-local) | {:.2} | {:.2} | {:.2} | | |",
            kind.label(),
            own.p50,
            own.p99,
            own.mean
        );
    }
    let _ = writeln!(out, "\n| ratio | p50 | p99 | mean |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let row = |name: &str, f: &dyn Fn(Stat) -> Option<f64>| {
        format!(
            "| {name} | {} | {} | {} |",
            fmt_ratio(f(Stat::P50)),
            fmt_ratio(f(Stat::P99)),
            fmt_ratio(f(Stat::Mean))
        )
    };
    let total = |kind: Kind| move |s: Stat| ratio(r.of(kind).get(s), r.of(Kind::Bridge).get(s));
    let own = |s: Stat| ratio(r.own(Kind::Podnet).get(s), r.own(Kind::Bridge).get(s));
    let _ = writeln!(
        out,
        "{}",
        row(
            "podnet + podnet-ipam / bridge + host-local, total",
            &total(Kind::PodnetIpam)
        )
    );
    let _ = writeln!(
        out,
        "{}",
        row(
            "podnet + host-local / bridge + host-local, total",
            &total(Kind::Podnet)
        )
    );
    let _ = writeln!(
        out,
        "{}",
        row("podnet own / bridge own (both on host-local)", &own)
    );
    let _ = writeln!(out);
}

fn target_for(phase: Phase) -> f64 {
    if phase.verb() == "ADD" {
        ADD_TARGET
    } else {
        DEL_TARGET
    }
}

fn verdict(q: Option<f64>, target: f64, zero: &str) -> String {
    match q {
        Some(q) if q <= target => "met".to_string(),
        Some(_) => "**not met**".to_string(),
        None => format!("n/a ({zero} is 0)"),
    }
}

/// One target table: podnet's figure against bridge's, per phase, at p50
/// and p99. `figures` picks what is compared (whole operations, or own
/// parts); `columns` names podnet's, bridge's and the ratio's columns, and
/// bridge's figure where a zero makes the ratio meaningless.
fn targets_table(
    out: &mut String,
    round: &[PhaseResult],
    opts: &Opts,
    columns: [&str; 4],
    figures: impl Fn(&PhaseResult) -> (Stats, Stats),
) {
    let [podnet, bridge, ratio_name, zero] = columns;
    let _ = writeln!(
        out,
        "| phase | stat | {podnet} | {bridge} | {ratio_name} | target | met |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|");
    for r in round {
        let target = target_for(r.phase);
        let (podnet_stats, bridge_stats) = figures(r);
        for stat in [Stat::P50, Stat::P99] {
            let (p, b) = (podnet_stats.get(stat), bridge_stats.get(stat));
            let q = ratio(p, b);
            let _ = writeln!(
                out,
                "| {} | {} | {p:.2} | {b:.2} | {} | ≤ {target:.2} | {} |",
                r.phase.title(opts),
                stat.label(),
                fmt_ratio(q),
                verdict(q, target, zero)
            );
        }
    }
    let _ = writeln!(out);
}

fn report(opts: &Opts, subjects: &[Subject], rounds: &[Vec<PhaseResult>], loads: &Loads) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# CNI ADD/DEL latency: podnet (on host-local and on podnet-ipam) vs reference bridge\n"
    );
    let _ = writeln!(
        out,
        "Generated by `cargo run --release -p podnet-tests --bin bench-cni` (see bench/README.md).\n"
    );
    let _ = writeln!(out, "## Machine and inputs\n");
    out.push_str(&machine_facts(opts, subjects, loads));
    let _ = writeln!(
        out,
        "\nConfigurations (dataDir, podnetd's directories: a fresh tempdir per subject):\n"
    );
    for s in subjects {
        let _ = writeln!(out, "- {}: `{}`", s.kind.label(), s.shown_conf());
    }
    let _ = writeln!(
        out,
        "\nOne operation = wall clock from spawning the plugin process to its exit, from a thread \
         inside the plugin's own node namespace. podnet + podnet-ipam asks podnetd (running in \
         that node namespace, flushing sled before it answers) over its unix socket, in process; \
         the others exec host-local. host-local alone is the IPAM plugin exec'd directly with the \
         same configuration; a plugin's *own part* is its figure minus host-local's at the same \
         statistic (clamped at 0). Concurrent phases keep {} worker threads busy, so their \
         latencies include queueing on {} CPUs. The order rotates per phase and round; the last \
         round is the headline, round 1 includes first-use costs (bridge creation, cold page \
         cache).\n",
        opts.concurrency,
        machine::shell("nproc", &[])
    );
    let last = rounds.len();
    let _ = writeln!(out, "## Targets (round {last} of {last})\n");
    let _ = writeln!(
        out,
        "Issue 3: podnet + podnet-ipam total over bridge + host-local total: ADD ≤ {ADD_TARGET:.2} \
         (judged on p50; p99 shown as the tail), DEL ≤ {DEL_TARGET:.2}.\n"
    );
    // Issue 3's target: podnet on its own IPAM, whole operation, against
    // the reference bridge on host-local, whole operation.
    targets_table(
        &mut out,
        &rounds[last - 1],
        opts,
        [
            "podnet + podnet-ipam ms",
            "bridge + host-local ms",
            "ratio",
            "bridge's figure",
        ],
        |r| (r.of(Kind::PodnetIpam), r.of(Kind::Bridge)),
    );
    let _ = writeln!(
        out,
        "podnet's own part over bridge's own part, both on host-local: ADD ≤ {ADD_TARGET:.2}, \
         DEL ≤ {DEL_TARGET:.2}.\n"
    );
    // The plugins' own parts, both on host-local.
    targets_table(
        &mut out,
        &rounds[last - 1],
        opts,
        [
            "podnet own ms",
            "bridge own ms",
            "own ratio",
            "bridge own part",
        ],
        |r| (r.own(Kind::Podnet), r.own(Kind::Bridge)),
    );
    for (i, round) in rounds.iter().enumerate().rev() {
        let _ = writeln!(
            out,
            "## Round {} of {last}{}\n",
            i + 1,
            if i + 1 == last { " (headline)" } else { "" }
        );
        for r in round {
            phase_table(&mut out, r, opts);
        }
    }
    out
}

fn run(opts: &Opts) -> Result<String, String> {
    podnet_tests::require_root();
    // Fails early, before any work, when the binary is missing.
    let _ = bins::workspace_bin("podnetd");
    let load_start = machine::loadavg();
    eprintln!(
        "bench-cni: load average {load_start}; creating {KINDS} node namespaces, {} pod \
         namespaces and a podnetd",
        (KINDS - 1) * opts.pods
    );
    let subjects: Vec<Subject> = Kind::ALL
        .iter()
        .map(|k| Subject::new(*k, opts.pods))
        .collect();
    let mut rounds = Vec::new();
    for round in 1..=opts.rounds {
        let mut results = Vec::new();
        for (p, phase) in Phase::ALL.into_iter().enumerate() {
            let order = order(round - 1, p);
            let mut samples: [Option<Sample>; KINDS] = [const { None }; KINDS];
            for kind in &order {
                let i = kind.index();
                let s = &subjects[i];
                eprintln!(
                    "bench-cni: round {round}: {} {}",
                    phase.title(opts),
                    kind.label()
                );
                let sample = run_phase(s, phase, round, opts)?;
                s.check_state(phase.verb() == "ADD", opts.pods)?;
                samples[i] = Some(sample);
            }
            let samples = samples.map(|s| s.unwrap());
            results.push(PhaseResult {
                phase,
                order,
                stats: std::array::from_fn(|i| Stats::of(&samples[i].ops)),
                walls: std::array::from_fn(|i| samples[i].wall),
            });
        }
        rounds.push(results);
    }
    let loads = Loads {
        start: load_start,
        end: machine::loadavg(),
    };
    let text = report(opts, &subjects, &rounds, &loads);
    eprintln!("bench-cni: stopping podnetd, removing namespaces");
    drop(subjects);
    Ok(text)
}

fn main() -> ExitCode {
    cleanup::on_signal_or_panic_clean_up("bench-cni");
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-cni: {e}");
            return ExitCode::from(2);
        }
    };
    report::finish("bench-cni", run(&opts), opts.out.as_deref())
}
