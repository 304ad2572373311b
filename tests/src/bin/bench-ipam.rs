//! bench-ipam: allocations and releases per second of podnet's IPAM alone,
//! without any CNI plugin or netlink work.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p podnet-tests --bin bench-ipam -- \
//!     [--n 20000] [--concurrency 8] [--dir /var/tmp] [--out FILE]
//! ```
//!
//! Method (see also bench/README.md):
//! - in process: `podnet_ipam::pool::Pool` on one IPv4 /16 node CIDR, over
//!   `SledPoolStore` (a fresh sled database in a tempdir under `--dir`, on
//!   real disk: every allocation and release flushes, which sled 0.34 does
//!   with `sync_file_range`) and over
//!   `MemoryPoolStore` (no storage: the allocator's own ceiling); N
//!   allocations, then N releases, from one thread and from `--concurrency`
//!   threads, each (store, threads) pair on a fresh pool;
//! - through the daemon: a podnetd (TestDaemon) in a node network
//!   namespace, `--max-pods 30000` so its node CIDR is the whole
//!   `10.244.0.0/16`; N `Request::Add` over its unix socket with
//!   `podnet_ipam::client::Client` (one connection per request, as the
//!   plugin does), then N `Request::Del`, from one client thread and from
//!   `--concurrency` client threads, each on a fresh daemon;
//! - every request must succeed; after the allocations the store holds N
//!   allocations with N distinct addresses, after the releases none.
//!
//! A failure (or Ctrl-C) still kills the podnetd this process started (by
//! its pid), removes its namespace and its directories: the release profile
//! aborts on panic, so drops would not run; a panic hook and a signal
//! thread clean up instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::client::Client;
use podnet_ipam::pool::{
    AllocateRequest, MemoryPoolStore, Pool, PoolConfig, PoolStore, SledPoolStore,
};
use podnet_ipam::proto::{Request, Response};
use podnet_tests::bins;
use podnet_tests::cleanup;
use podnet_tests::daemon::{DaemonOpts, TestDaemon, BENCH_LOG};
use podnet_tests::machine;
use podnet_tests::netns::TestNetns;
use podnet_tests::report;
use tempfile::TempDir;

/// The node CIDR: a /16 holds any N this bench is meant for.
const RANGE: &str = "10.244.0.0/16";
/// Usable addresses in RANGE: all but network, gateway and broadcast.
const CAPACITY: usize = 65_536 - 3;
/// podnetd sizes its node CIDR from max pods: 30000 -> /16 (node_prefix_v4).
const DAEMON_MAX_PODS: u32 = 30_000;
const IFNAME: &str = "eth0";

struct Opts {
    n: usize,
    concurrency: usize,
    dir: PathBuf,
    out: Option<PathBuf>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut opts = Opts {
        n: 20_000,
        concurrency: 8,
        dir: PathBuf::from("/var/tmp"),
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
            "--n" => opts.n = number(value("--n")?, "--n")?,
            "--concurrency" => opts.concurrency = number(value("--concurrency")?, "--concurrency")?,
            "--dir" => opts.dir = PathBuf::from(value("--dir")?),
            "--out" => opts.out = Some(PathBuf::from(value("--out")?)),
            "-h" | "--help" => {
                println!(
                    "bench-ipam [--n 20000] [--concurrency 8] [--dir /var/tmp] [--out FILE]\n\
                     allocations/s of podnet's IPAM, in process and through podnetd (needs root)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if opts.n > CAPACITY {
        return Err(format!("--n {}: at most {CAPACITY} fit in {RANGE}", opts.n));
    }
    Ok(opts)
}

fn key(i: usize) -> AttachmentKey {
    AttachmentKey {
        container_id: format!("bench-{i:06}"),
        ifname: IFNAME.into(),
    }
}

/// Runs `op(i)` for i in 0..n on `threads` threads (1: the calling thread's
/// order), each thread first running `enter` around its loop (to enter a
/// namespace); returns each op's duration and the wall time.
fn drive<R: Send>(
    n: usize,
    threads: usize,
    enter: &(dyn Fn(&mut (dyn FnMut() + Send)) + Sync),
    op: &(dyn Fn(usize) -> Result<R, String> + Sync),
) -> Result<(Vec<(Duration, R)>, Duration), String> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let (wall, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Ok(Vec::new());
                    enter(&mut || {
                        let mut mine = Vec::new();
                        barrier.wait();
                        while !failed.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= n || cleanup::aborting() {
                                break;
                            }
                            let start = Instant::now();
                            match op(i) {
                                Ok(r) => mine.push((start.elapsed(), r)),
                                Err(e) => {
                                    failed.store(true, Ordering::Relaxed);
                                    out = Err(e);
                                    return;
                                }
                            }
                        }
                        out = Ok(mine);
                    });
                    out
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<Result<Vec<(Duration, R)>, String>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        (start.elapsed(), results)
    });
    let mut all = Vec::with_capacity(n);
    for r in results {
        all.extend(r?);
    }
    Ok((all, wall))
}

fn here(f: &mut (dyn FnMut() + Send)) {
    f()
}

#[derive(Clone, Copy)]
struct Stats {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
}

impl Stats {
    /// Percentiles by nearest rank; throughput from the wall time.
    fn of(ops: &[Duration], wall: Duration) -> Self {
        let mut us: Vec<f64> = ops.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let rank = |p: f64| us[((p * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1];
        Self {
            per_sec: ops.len() as f64 / wall.as_secs_f64(),
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
        }
    }
}

struct Row {
    path: &'static str,
    store: &'static str,
    threads: usize,
    alloc: Stats,
    release: Stats,
}

/// N distinct addresses, or why not.
fn check_distinct(who: &str, ips: impl Iterator<Item = IpAddr>, n: usize) -> Result<(), String> {
    let distinct: HashSet<IpAddr> = ips.collect();
    if distinct.len() == n {
        Ok(())
    } else {
        Err(format!(
            "{who}: {} distinct addresses for {n} allocations",
            distinct.len()
        ))
    }
}

fn bench_pool<S: PoolStore>(
    store: S,
    name: &'static str,
    threads: usize,
    opts: &Opts,
) -> Result<Row, String> {
    let who = format!("in process, {name}, {threads} thread(s)");
    eprintln!("bench-ipam: {who}");
    let pool = Pool::new(
        PoolConfig {
            ranges: vec![RANGE.parse().unwrap()],
            reserved: Vec::new(),
        },
        store,
    )
    .map_err(|e| e.to_string())?;
    let n = opts.n;
    let (allocs, wall) = drive(n, threads, &here, &|i| {
        let req = AllocateRequest {
            key: key(i),
            netns: Some(format!("/var/run/netns/bench-{i:06}")),
            requested: Vec::new(),
        };
        pool.allocate(&req)
            .map(|a| a.ips[0].ip())
            .map_err(|e| format!("{who}: allocate {i}: {e}"))
    })?;
    check_distinct(&who, allocs.iter().map(|(_, ip)| *ip), n)?;
    let held = pool.list().map_err(|e| e.to_string())?.len();
    if held != n {
        return Err(format!(
            "{who}: the store holds {held} allocations, not {n}"
        ));
    }
    let alloc = Stats::of(&allocs.iter().map(|(d, _)| *d).collect::<Vec<_>>(), wall);
    let (releases, wall) = drive(n, threads, &here, &|i| match pool.release(&key(i)) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{who}: release {i}: not allocated")),
        Err(e) => Err(format!("{who}: release {i}: {e}")),
    })?;
    let held = pool.list().map_err(|e| e.to_string())?.len();
    if held != 0 {
        return Err(format!(
            "{who}: {held} allocations left after releasing all"
        ));
    }
    let release = Stats::of(&releases.iter().map(|(d, _)| *d).collect::<Vec<_>>(), wall);
    Ok(Row {
        path: "in process (Pool)",
        store: name,
        threads,
        alloc,
        release,
    })
}

fn bench_sled(threads: usize, opts: &Opts) -> Result<Row, String> {
    let dir = TempDir::with_prefix_in("bench-ipam-", &opts.dir)
        .map_err(|e| format!("tempdir in {}: {e}", opts.dir.display()))?;
    cleanup::register_dir(dir.path());
    let db = sled::open(dir.path().join("ipam.db")).map_err(|e| e.to_string())?;
    let store = SledPoolStore::open(&db).map_err(|e| e.to_string())?;
    let row = bench_pool(store, "sled", threads, opts);
    drop(db);
    row
}

/// A podnetd with its pid and directory registered for the emergency cleanup.
struct Daemon(TestDaemon);

impl Daemon {
    fn start(node: &TestNetns) -> Self {
        let daemon = TestDaemon::start(
            node,
            DaemonOpts {
                cluster_cidr: RANGE.into(),
                max_pods: DAEMON_MAX_PODS,
                log: BENCH_LOG.into(),
                ..DaemonOpts::default()
            },
        );
        Self(daemon)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.0.kill9();
    }
}

fn bench_daemon(node: &TestNetns, threads: usize, opts: &Opts) -> Result<(Row, String), String> {
    let who = format!("through podnetd, {threads} client(s)");
    eprintln!("bench-ipam: {who}");
    let daemon = Daemon::start(node);
    let cidrs: Vec<String> = daemon
        .0
        .allocations_cidrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let socket = daemon.0.socket();
    let netns = node.path().display().to_string();
    let enter = |f: &mut (dyn FnMut() + Send)| node.run(f);
    let n = opts.n;
    let (allocs, wall) = drive(n, threads, &enter, &|i| {
        let req = Request::Add {
            key: key(i),
            netns: Some(netns.clone()),
            requested: Vec::new(),
        };
        match Client::new(&socket).call(&req) {
            Ok(Response::Allocated { allocation }) => Ok(allocation.ips[0].ip()),
            Ok(other) => Err(format!("{who}: add {i}: unexpected {other:?}")),
            Err(e) => Err(format!("{who}: add {i}: {e}")),
        }
    })?;
    check_distinct(&who, allocs.iter().map(|(_, ip)| *ip), n)?;
    let held = daemon.0.allocations();
    if held.len() != n {
        return Err(format!(
            "{who}: podnetd holds {} allocations, not {n}",
            held.len()
        ));
    }
    check_distinct(&who, held.iter().map(|a| a.ips[0].ip()), n)?;
    let alloc = Stats::of(&allocs.iter().map(|(d, _)| *d).collect::<Vec<_>>(), wall);
    let (releases, wall) = drive(n, threads, &enter, &|i| match Client::new(&socket)
        .call(&Request::Del { key: key(i) })
    {
        Ok(Response::Released { found: true }) => Ok(()),
        Ok(other) => Err(format!("{who}: del {i}: unexpected {other:?}")),
        Err(e) => Err(format!("{who}: del {i}: {e}")),
    })?;
    let held = daemon.0.allocations().len();
    if held != 0 {
        return Err(format!(
            "{who}: {held} allocations left after releasing all"
        ));
    }
    let release = Stats::of(&releases.iter().map(|(d, _)| *d).collect::<Vec<_>>(), wall);
    Ok((
        Row {
            path: "through podnetd (socket)",
            store: "sled",
            threads,
            alloc,
            release,
        },
        cidrs.join(", "),
    ))
}
/// Filesystem type and device holding `path`.
fn filesystem(path: &Path) -> String {
    machine::shell(
        "findmnt",
        &[
            "-n",
            "-o",
            "FSTYPE,SOURCE",
            "--target",
            &path.display().to_string(),
        ],
    )
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" on ")
}

struct Facts {
    load_start: String,
    load_end: String,
    daemon_dir: PathBuf,
    node_cidr: String,
}

fn report(opts: &Opts, rows: &[Row], facts: &Facts) -> String {
    let cpu = machine::cpu_model();
    let (rev, dirty) = machine::git_revision();
    let mut out = String::new();
    let _ = writeln!(out, "# IPAM alone: allocations and releases per second\n");
    let _ = writeln!(
        out,
        "Generated by `cargo run --release -p podnet-tests --bin bench-ipam` (see bench/README.md).\n"
    );
    let _ = writeln!(out, "## Machine and inputs\n");
    let _ = writeln!(
        out,
        "- date: {}",
        machine::shell("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
    );
    let _ = writeln!(out, "- nproc: {}", machine::shell("nproc", &[]));
    let _ = writeln!(
        out,
        "- load average (1/5/15 min): {} at start, {} at end",
        facts.load_start, facts.load_end
    );
    let _ = writeln!(
        out,
        "- nice value of the bench (inherited by podnetd): {}",
        machine::niceness()
    );
    let _ = writeln!(out, "- kernel: {}", machine::shell("uname", &["-r"]));
    let _ = writeln!(out, "- cpu: {cpu}");
    let _ = writeln!(
        out,
        "- podnet-ipam, podnetd: git {rev}{}, release build ({})",
        if dirty { ", uncommitted changes" } else { "" },
        bins::workspace_bin("podnetd").display()
    );
    let _ = writeln!(
        out,
        "- in-process sled database: a fresh tempdir under {} ({})",
        opts.dir.display(),
        filesystem(&opts.dir)
    );
    let _ = writeln!(
        out,
        "- podnetd: `--cluster-cidr {RANGE} --max-pods {DAEMON_MAX_PODS}` -> node CIDR {}, \
         state in a fresh tempdir under {} ({}), started in a node network namespace, \
         `PODNET_LOG={BENCH_LOG}` (podnetd's default level)",
        facts.node_cidr,
        facts.daemon_dir.display(),
        filesystem(&facts.daemon_dir)
    );
    let _ = writeln!(
        out,
        "- N: {} allocations then {} releases per row; concurrency: {}",
        opts.n, opts.n, opts.concurrency
    );
    let _ = writeln!(
        out,
        "\nPool: one IPv4 range {RANGE}, no reservations; keys `bench-NNNNNN/eth0`, each \
         allocation records a netns path. Each row starts on a fresh, empty store (and a fresh \
         daemon). The pool flushes sled before every allocation or release returns (sled 0.34 on \
         Linux: `pwrite` + `sync_file_range`, not `fsync`); `Pool::allocate` flushes outside its \
         lock, so concurrent callers may share a flush. \
         Through podnetd every request is one connection: connect, one JSON line each way, as \
         `podnet` and `podnet-ipam` do. Latency is per request, from the caller's side; \
         throughput is N over the phase's wall time.\n"
    );
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(
        out,
        "| path | store | threads | allocations/s | alloc p50 µs | alloc p99 µs | alloc mean µs \
         | releases/s | release p50 µs | release p99 µs | release mean µs |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} |",
            r.path,
            r.store,
            r.threads,
            r.alloc.per_sec,
            r.alloc.p50_us,
            r.alloc.p99_us,
            r.alloc.mean_us,
            r.release.per_sec,
            r.release.p50_us,
            r.release.p99_us,
            r.release.mean_us
        );
    }
    out
}

fn run(opts: &Opts) -> Result<String, String> {
    podnet_tests::require_root();
    // Fails early, before any work, when the binary is missing.
    let _ = bins::workspace_bin("podnetd");
    let load_start = machine::loadavg();
    eprintln!(
        "bench-ipam: load average {load_start}; N = {}, concurrency {}",
        opts.n, opts.concurrency
    );
    let mut rows = Vec::new();
    for threads in [1, opts.concurrency] {
        rows.push(bench_sled(threads, opts)?);
    }
    for threads in [1, opts.concurrency] {
        rows.push(bench_pool(
            MemoryPoolStore::default(),
            "memory",
            threads,
            opts,
        )?);
    }
    let node = TestNetns::new("node");
    let mut node_cidr = String::new();
    for threads in [1, opts.concurrency] {
        let (row, cidr) = bench_daemon(&node, threads, opts)?;
        rows.push(row);
        node_cidr = cidr;
    }
    drop(node);
    let facts = Facts {
        load_start,
        load_end: machine::loadavg(),
        daemon_dir: std::env::temp_dir(),
        node_cidr,
    };
    Ok(report(opts, &rows, &facts))
}

fn main() -> ExitCode {
    cleanup::on_signal_or_panic_clean_up("bench-ipam");
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-ipam: {e}");
            return ExitCode::from(2);
        }
    };
    report::finish("bench-ipam", run(&opts), opts.out.as_deref())
}
