//! bench-ipam: allocations and releases per second of podnet's IPAM alone,
//! without any CNI plugin or netlink work.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p podnet-tests --bin bench-ipam -- \
//!     [--n 20000] [--concurrency 8] [--dir /var/tmp] [--out FILE] [--quick]
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
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::client::Client;
use podnet_ipam::pool::{
    AllocateRequest, MemoryPoolStore, Pool, PoolConfig, PoolStore, SledPoolStore,
};
use podnet_ipam::proto::{Request, Response};
use podnet_tests::bench::cli::count;
use podnet_tests::bench::facts;
use podnet_tests::bench::stats::{per_sec, us};
use podnet_tests::bench::work::{run_phase, Phase};
use podnet_tests::bench::{self, BenchOpts, Common, Concurrency, Session, Summary, Table};
use podnet_tests::bins;
use podnet_tests::cleanup;
use podnet_tests::daemon::{DaemonOpts, TestDaemon, BENCH_LOG};
use podnet_tests::netns::TestNetns;
use tempfile::TempDir;

/// The node CIDR: a /16 holds any N this bench is meant for.
const RANGE: &str = "10.244.0.0/16";
/// Usable addresses in RANGE: all but network, gateway and broadcast.
const CAPACITY: u64 = 65_536 - 3;
/// podnetd sizes its node CIDR from max pods: 30000 -> /16 (node_prefix_v4).
const DAEMON_MAX_PODS: u32 = 30_000;
const IFNAME: &str = "eth0";

#[derive(Parser)]
#[command(
    about = "Allocations and releases per second of podnet's IPAM, in process and through \
             podnetd (needs root)"
)]
struct Opts {
    /// Allocations, then as many releases, per row (all in one IPv4 /16)
    /// [--quick: 1000].
    #[arg(long, default_value_t = 20_000, default_value_if("quick", "true", "1000"),
          value_parser = count(1..=CAPACITY))]
    n: usize,
    #[command(flatten)]
    concurrency: Concurrency,
    /// Where the in-process sled databases go (a fresh tempdir each): on
    /// disk, where /tmp may be a tmpfs.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    #[command(flatten)]
    common: Common,
}

impl BenchOpts for Opts {
    fn common(&self) -> &Common {
        &self.common
    }
}

fn key(i: usize) -> AttachmentKey {
    AttachmentKey {
        container_id: format!("bench-{i:06}"),
        ifname: IFNAME.into(),
    }
}

/// One direction of a row: throughput over the phase's wall time, and the
/// requests' latencies.
struct Rate {
    per_sec: f64,
    latency: Summary,
}

impl Rate {
    fn of<R>(phase: &Phase<R>) -> Result<Self, String> {
        Ok(Self {
            per_sec: per_sec(phase.ops.len(), phase.wall),
            latency: Summary::of(&phase.times()).ok_or("a phase without operations")?,
        })
    }
}

struct Row {
    path: &'static str,
    store: &'static str,
    threads: usize,
    alloc: Rate,
    release: Rate,
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

/// `held` allocations where `want` were expected, or why not.
fn check_held(who: &str, held: usize, want: usize) -> Result<(), String> {
    if held == want {
        Ok(())
    } else {
        Err(format!(
            "{who}: the store holds {held} allocations, expected {want}"
        ))
    }
}

fn bench_pool<S: PoolStore>(
    store: S,
    name: &'static str,
    threads: usize,
    n: usize,
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
    let allocs = run_phase(n, threads, None, &|i| {
        let req = AllocateRequest {
            key: key(i),
            netns: Some(format!("/var/run/netns/bench-{i:06}")),
            requested: Vec::new(),
        };
        pool.allocate(&req)
            .map(|a| a.ips[0].ip())
            .map_err(|e| format!("{who}: allocate {i}: {e}"))
    })?;
    check_distinct(&who, allocs.ops.iter().map(|(_, ip)| *ip), n)?;
    check_held(&who, pool.list().map_err(|e| e.to_string())?.len(), n)?;
    let releases = run_phase(n, threads, None, &|i| match pool.release(&key(i)) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{who}: release {i}: not allocated")),
        Err(e) => Err(format!("{who}: release {i}: {e}")),
    })?;
    check_held(&who, pool.list().map_err(|e| e.to_string())?.len(), 0)?;
    Ok(Row {
        path: "in process (Pool)",
        store: name,
        threads,
        alloc: Rate::of(&allocs)?,
        release: Rate::of(&releases)?,
    })
}

fn bench_sled(threads: usize, opts: &Opts) -> Result<Row, String> {
    let dir = TempDir::with_prefix_in("bench-ipam-", &opts.dir)
        .map_err(|e| format!("tempdir in {}: {e}", opts.dir.display()))?;
    cleanup::register_dir(dir.path());
    let db = sled::open(dir.path().join("ipam.db")).map_err(|e| e.to_string())?;
    let store = SledPoolStore::open(&db).map_err(|e| e.to_string())?;
    let row = bench_pool(store, "sled", threads, opts.n);
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

/// One request to podnetd, one connection, as the plugins make it.
fn call(socket: &std::path::Path, req: &Request) -> Result<Response, String> {
    Client::new(socket).call(req).map_err(|e| e.to_string())
}

/// A row through a fresh podnetd; also the node CIDR it chose.
fn bench_daemon(node: &TestNetns, threads: usize, n: usize) -> Result<(Row, String), String> {
    let who = format!("through podnetd, {threads} client(s)");
    eprintln!("bench-ipam: {who}");
    let daemon = Daemon::start(node);
    let cidrs: Vec<String> = (daemon.0.allocations_cidrs().iter())
        .map(ToString::to_string)
        .collect();
    let socket = daemon.0.socket();
    let netns = node.path().display().to_string();
    let allocs = run_phase(n, threads, Some(node), &|i| {
        let req = Request::Add {
            key: key(i),
            netns: Some(netns.clone()),
            requested: Vec::new(),
            pod: None,
            confirm_policy: false,
        };
        match call(&socket, &req) {
            Ok(Response::Allocated { allocation }) => Ok(allocation.ips[0].ip()),
            other => Err(format!("{who}: add {i}: {other:?}")),
        }
    })?;
    check_distinct(&who, allocs.ops.iter().map(|(_, ip)| *ip), n)?;
    let held = daemon.0.allocations();
    check_held(&who, held.len(), n)?;
    check_distinct(&who, held.iter().map(|a| a.ips[0].ip()), n)?;
    let releases = run_phase(n, threads, Some(node), &|i| match call(
        &socket,
        &Request::Del { key: key(i) },
    ) {
        Ok(Response::Released { found: true }) => Ok(()),
        other => Err(format!("{who}: del {i}: {other:?}")),
    })?;
    check_held(&who, daemon.0.allocations().len(), 0)?;
    let row = Row {
        path: "through podnetd (socket)",
        store: "sled",
        threads,
        alloc: Rate::of(&allocs)?,
        release: Rate::of(&releases)?,
    };
    Ok((row, cidrs.join(", ")))
}

fn report(session: &Session, opts: &Opts, rows: &[Row], node_cidr: &str) -> String {
    let mut md = session.report("IPAM alone: allocations and releases per second");
    let daemon_dir = std::env::temp_dir();
    md.item(format_args!(
        "podnetd: {}",
        bins::workspace_bin("podnetd").display()
    ));
    md.item(format_args!(
        "in-process sled database: a fresh tempdir under {} ({})",
        opts.dir.display(),
        facts::filesystem(&opts.dir)
    ));
    md.item(format_args!(
        "podnetd: `--cluster-cidr {RANGE} --max-pods {DAEMON_MAX_PODS}` -> node CIDR \
         {node_cidr}, state in a fresh tempdir under {} ({}), started in a node network \
         namespace, `PODNET_LOG={BENCH_LOG}` (podnetd's default level)",
        daemon_dir.display(),
        facts::filesystem(&daemon_dir)
    ));
    md.item(format_args!(
        "N: {} allocations then {} releases per row; concurrency: {}",
        opts.n, opts.n, opts.concurrency.concurrency
    ));
    md.para(format_args!(
        "Pool: one IPv4 range {RANGE}, no reservations; keys `bench-NNNNNN/eth0`, each \
         allocation records a netns path. Each row starts on a fresh, empty store (and a fresh \
         daemon). The pool flushes sled before every allocation or release returns (sled 0.34 on \
         Linux: `pwrite` + `sync_file_range`, not `fsync`); `Pool::allocate` flushes outside its \
         lock, so concurrent callers may share a flush. \
         Through podnetd every request is one connection: connect, one JSON line each way, as \
         `podnet` and `podnet-ipam` do. Latency is per request, from the caller's side; \
         throughput is N over the phase's wall time."
    ));
    md.heading(2, "Results");
    md.table(&results_table(rows));
    md.finish()
}

fn results_table(rows: &[Row]) -> Table {
    let mut t = Table::new(&[
        "path",
        "store",
        "threads",
        "allocations/s",
        "alloc p50 µs",
        "alloc p99 µs",
        "alloc mean µs",
        "releases/s",
        "release p50 µs",
        "release p99 µs",
        "release mean µs",
    ])
    .align("llrrrrrrrrr");
    for r in rows {
        let rate = |x: &Rate| {
            let l = &x.latency;
            [
                format!("{:.0}", x.per_sec),
                format!("{:.1}", us(l.p50)),
                format!("{:.1}", us(l.p99)),
                format!("{:.1}", us(l.mean)),
            ]
        };
        let mut cells = vec![
            r.path.to_string(),
            r.store.to_string(),
            r.threads.to_string(),
        ];
        cells.extend(rate(&r.alloc));
        cells.extend(rate(&r.release));
        t.row(cells);
    }
    t
}

fn run(opts: &Opts, session: &Session) -> Result<String, String> {
    // Fails early, before any work, when the binary is missing.
    let _ = bins::workspace_bin("podnetd");
    let threads = [1, opts.concurrency.concurrency];
    let mut rows = Vec::new();
    for t in threads {
        rows.push(bench_sled(t, opts)?);
    }
    for t in threads {
        rows.push(bench_pool(MemoryPoolStore::default(), "memory", t, opts.n)?);
    }
    let node = TestNetns::new("node");
    let mut node_cidr = String::new();
    for t in threads {
        let (row, cidr) = bench_daemon(&node, t, opts.n)?;
        rows.push(row);
        node_cidr = cidr;
    }
    drop(node);
    Ok(report(session, opts, &rows, &node_cidr))
}

fn main() -> ExitCode {
    bench::main::<Opts>("bench-ipam", run)
}
