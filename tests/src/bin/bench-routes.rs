//! bench-routes: how fast podnetd turns the cluster store into kernel
//! routes, and what it costs in memory (issue 4's benchmarks).
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p podnet-tests --bin bench-routes -- \
//!     [--joins 200] [--sizes 1000,5000] [--out FILE]
//! ```
//!
//! Method (see also bench/README.md):
//! - a real etcd on loopback (`TestEtcd`) and ONE real node: a network
//!   namespace whose underlay `eth0` holds 172.20.0.10/16 (the other end of
//!   the veth sits in a namespace of its own), with its podnetd
//!   (`--store etcd --netns`, cluster range 10.0.0.0/8, max pods 110, so
//!   /24 node CIDRs);
//! - every other node is fake: the bench writes its record
//!   (`/podnet/nodes/NAME`, NodeRecord JSON) and its CIDR key
//!   (`/podnet/cidrs/10.x.y.0_24` -> NAME) in one transaction, on a lease,
//!   as a real claim does; the fake nodes' addresses are 172.20.a.b, on the
//!   node's segment, so each gets a host-gw route;
//! - routes are observed with a netlink dump of the node namespace's routes
//!   (protocol 157 only), every millisecond;
//! 1. join -> route: with podnetd running and no peer, one fake node is put
//!    and timed (from issuing the etcd transaction) until its route is in
//!    the kernel, then deleted and timed until the route is gone;
//! 2. cold start: for each size, a FRESH etcd, node namespace and podnetd
//!    state (the kernel keeps podnet's routes across a restart by design,
//!    so a restart on the same node would not be cold): the fake nodes are
//!    written first, then podnetd is spawned and timed until the first and
//!    until the last route is installed; every route is then checked;
//! 3. memory: podnetd's VmRSS and VmHWM after convergence at 0 peers and at
//!    each size;
//! 4. podnetd's own `podnet_reconcile_duration_seconds` from its metrics.
//!
//! Nothing is sent on any network but loopback (etcd, the metrics scrape).
//! A failure (or Ctrl-C) still kills etcd and podnetd by pid and removes the
//! namespaces (`pnt<pid>-*`): the release profile aborts on panic, so drops
//! would not run; a panic hook and the harness's signal thread clean up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnetwork::{IpNetwork, Ipv4Network};
use podnet_cni::netlink::netns::NetNs;
use podnet_cni::netlink::route::{self, RouteEntry};
use podnet_cni::netlink::Netlink;
use podnet_tests::bins;
use podnet_tests::cleanup;
use podnet_tests::daemon::{DaemonOpts, TestDaemon};
use podnet_tests::etcd::{TestEtcd, ETCD_BIN};
use podnet_tests::machine;
use podnet_tests::netns::TestNetns;
use podnet_tests::report;
use podnetd::routes::ROUTE_PROTOCOL;
use podnetd::store::etcd::etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use podnetd::store::NodeRecord;

const PREFIX: &str = "/podnet";
const CLUSTER_CIDR: &str = "10.0.0.0/8";
const MAX_PODS: u32 = 110;
const NODE_NAME: &str = "bench-node";
const NODE_IP: &str = "172.20.0.10";
const UNDERLAY: &str = "172.20.0.10/16";
/// The fake nodes' keys live on one lease of this TTL (longer than any run).
const FAKE_LEASE_TTL: i64 = 3600;
/// Fake nodes per etcd transaction when writing many (two keys each; etcd
/// allows 128 operations per transaction by default).
const BATCH: usize = 50;
const POLL: Duration = Duration::from_millis(1);
/// Joins and leaves before the measured ones (first watch event, caches).
const WARMUP: usize = 3;
/// A join or leave not seen by then counts as failed.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A cold start not converged by then counts as failed.
const COLD_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two measured events, so each is a lone event.
const GAP: Duration = Duration::from_millis(10);
/// Time given to a converged podnetd before reading its memory.
const SETTLE: Duration = Duration::from_millis(500);

const TARGET_JOIN_P99_MS: f64 = 100.0;
const TARGET_COLD_SIZE: usize = 5000;
const TARGET_COLD_MS: f64 = 2000.0;
const TARGET_MEM_BYTES: u64 = 50_000_000;

struct Opts {
    joins: usize,
    sizes: Vec<usize>,
    size_joins: usize,
    out: Option<PathBuf>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut opts = Opts {
        joins: 200,
        sizes: vec![1000, 5000],
        size_joins: 50,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--joins" => {
                opts.joins = value()?
                    .parse()
                    .map_err(|e| format!("--joins: {e}"))
                    .and_then(|n: usize| {
                        if n == 0 {
                            Err("--joins must be > 0".into())
                        } else {
                            Ok(n)
                        }
                    })?;
            }
            "--sizes" => {
                opts.sizes = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--sizes {s}: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
                if opts.sizes.iter().any(|n| *n == 0 || *n > 60_000) {
                    return Err("--sizes: each size must be 1..=60000".into());
                }
            }
            "--size-joins" => {
                opts.size_joins = value()?.parse().map_err(|e| format!("--size-joins: {e}"))?;
            }
            "--out" => opts.out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                return Err(
                    "usage: bench-routes [--joins N] [--sizes N,N] [--size-joins N] [--out FILE]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(opts)
}

/// etcd (TestEtcd registers its pid and directory for the emergency
/// cleanup), stopped by pid when dropped.
struct Etcd {
    inner: TestEtcd,
}

impl Etcd {
    fn start() -> Self {
        Self {
            inner: TestEtcd::start(),
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

/// podnetd (TestDaemon registers its pid and directory for the emergency
/// cleanup), stopped by SIGTERM when dropped.
struct Daemon {
    inner: TestDaemon,
}

impl Daemon {
    fn start(node: &Node, etcd: &Etcd, metrics_port: u16) -> Self {
        let opts = DaemonOpts {
            node_name: NODE_NAME.into(),
            cluster_cidr: CLUSTER_CIDR.into(),
            max_pods: MAX_PODS,
            metrics_addr: Some(format!("127.0.0.1:{metrics_port}")),
            manage_netns: Some(node.ns.path().to_path_buf()),
            etcd_endpoint: Some(etcd.inner.endpoint()),
            node_ip: Some(NODE_IP.into()),
            ..Default::default()
        };
        Self {
            inner: TestDaemon::start(&node.ns, opts),
        }
    }

    fn pid(&self) -> u32 {
        self.inner.pid().expect("podnetd running")
    }

    fn metrics_port(&self) -> u16 {
        self.inner
            .opts
            .metrics_addr
            .as_deref()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("metrics port")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM by pid (TestDaemon::stop), then its own drop.
        self.inner.stop();
    }
}

// ---------------------------------------------------------------- the node

/// The real node: its namespace, the far end of its underlay, and eth0.
struct Node {
    ns: TestNetns,
    _switch: TestNetns,
    eth0: u32,
}

impl Node {
    fn new() -> Self {
        let ns = TestNetns::new("rn");
        let switch = TestNetns::new("rsw");
        ns.veth_to("eth0", &switch, "u0");
        switch.ip(&["link", "set", "dev", "u0", "up"]);
        ns.ip(&["addr", "add", UNDERLAY, "dev", "eth0"]);
        ns.ip(&["link", "set", "dev", "eth0", "up"]);
        let eth0 = ns.ip_json(&["link", "show", "dev", "eth0"])[0]["ifindex"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .expect("eth0 ifindex");
        Self {
            ns,
            _switch: switch,
            eth0,
        }
    }

    fn netlink(&self) -> Netlink {
        NetNs::open(self.ns.path())
            .and_then(|ns| ns.netlink())
            .unwrap_or_else(|e| panic!("netlink in {}: {e}", self.ns.name()))
    }
}

/// podnet's IPv4 routes in the namespace of `nl`.
fn ours(nl: &mut Netlink) -> Vec<RouteEntry> {
    let mut all = route::list_routes(nl, false).expect("route dump");
    all.retain(|r| r.protocol == ROUTE_PROTOCOL);
    all
}

// ---------------------------------------------------------------- fake peers

#[derive(Clone)]
struct Fake {
    name: String,
    cidr: IpNetwork,
    addr: Ipv4Addr,
}

impl Fake {
    fn record(&self) -> String {
        let octets = self.addr.octets();
        let record = NodeRecord {
            node: self.name.clone(),
            cidrs: vec![self.cidr],
            addresses: vec![IpAddr::V4(self.addr)],
            vtep_mac: Some(format!(
                "02:fa:{:02x}:{:02x}:{:02x}:{:02x}",
                octets[0], octets[1], octets[2], octets[3]
            )),
        };
        serde_json::to_string(&record).expect("record JSON")
    }

    fn node_key(&self) -> String {
        format!("{PREFIX}/nodes/{}", self.name)
    }

    fn cidr_key(&self) -> String {
        format!("{PREFIX}/cidrs/{}", self.cidr.to_string().replace('/', "_"))
    }

    fn puts(&self, lease: i64) -> [TxnOp; 2] {
        let opts = || Some(PutOptions::new().with_lease(lease));
        [
            TxnOp::put(self.node_key(), self.record(), opts()),
            TxnOp::put(self.cidr_key(), self.name.as_bytes(), opts()),
        ]
    }

    fn deletes(&self) -> [TxnOp; 2] {
        [
            TxnOp::delete(self.node_key(), None),
            TxnOp::delete(self.cidr_key(), None),
        ]
    }
}

/// `n` fake nodes named `{stem}-{i}`: /24s from 10.1.0.0 upward, skipping
/// any that overlaps `avoid`; addresses 172.20.1.1 upward (250 per /24).
fn fake_peers(stem: &str, n: usize, avoid: &[IpNetwork]) -> Vec<Fake> {
    let mut peers = Vec::with_capacity(n);
    let mut block: u32 = 256; // 10.1.0.0/24
    while peers.len() < n {
        let net = Ipv4Network::new(Ipv4Addr::from(0x0a00_0000 | (block << 8)), 24).expect("/24");
        block += 1;
        let cidr = IpNetwork::V4(net);
        if avoid
            .iter()
            .any(|a| a.contains(cidr.network()) || cidr.contains(a.network()))
        {
            continue;
        }
        let i = u32::try_from(peers.len()).expect("size");
        let addr = Ipv4Addr::new(
            172,
            20,
            u8::try_from(1 + i / 250).expect("<= 60000 peers"),
            u8::try_from(1 + i % 250).expect("octet"),
        );
        peers.push(Fake {
            name: format!("{stem}-{i}"),
            cidr,
            addr,
        });
    }
    peers
}

/// The bench's etcd client and the lease its fake nodes live on.
struct Store {
    rt: tokio::runtime::Runtime,
    client: Client,
    lease: i64,
}

impl Store {
    fn connect(etcd: &Etcd) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let endpoint = etcd.inner.endpoint();
        let (client, lease) = rt.block_on(async {
            let mut client = Client::connect([endpoint.as_str()], None)
                .await
                .expect("etcd client");
            let lease = client
                .lease_grant(FAKE_LEASE_TTL, None)
                .await
                .expect("lease grant")
                .id();
            (client, lease)
        });
        Self { rt, client, lease }
    }

    fn txn(&mut self, ops: Vec<TxnOp>) {
        let client = &mut self.client;
        let response = self
            .rt
            .block_on(client.txn(Txn::new().and_then(ops)))
            .expect("etcd txn");
        assert!(response.succeeded(), "etcd txn failed");
    }

    fn put_all(&mut self, peers: &[Fake]) {
        for chunk in peers.chunks(BATCH) {
            let lease = self.lease;
            let ops: Vec<TxnOp> = chunk.iter().flat_map(|p| p.puts(lease)).collect();
            self.txn(ops);
        }
    }

    fn count(&mut self, prefix: &str) -> i64 {
        let client = &mut self.client;
        self.rt
            .block_on(client.get(
                prefix,
                Some(GetOptions::new().with_prefix().with_count_only()),
            ))
            .expect("etcd count")
            .count()
    }

    fn node_cidrs(&mut self, node: &str) -> Vec<IpNetwork> {
        let client = &mut self.client;
        let key = format!("{PREFIX}/nodes/{node}");
        let response = self
            .rt
            .block_on(client.get(key.as_str(), None))
            .expect("etcd get");
        let kv = response
            .kvs()
            .first()
            .unwrap_or_else(|| panic!("{key} is not in etcd"));
        let record: NodeRecord = serde_json::from_slice(kv.value()).expect("node record");
        record.cidrs
    }
}

// ---------------------------------------------------------------- figures

/// Nearest-rank percentiles, in ms.
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let r = (p / 100.0 * ms.len() as f64).ceil() as usize;
            ms[r.clamp(1, ms.len()) - 1]
        };
        Some(Self {
            n: ms.len(),
            p50: rank(50.0),
            p99: rank(99.0),
            max: ms[ms.len() - 1],
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
        })
    }

    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.n, self.p50, self.p99, self.max, self.mean
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Memory {
    when: String,
    peers: usize,
    rss_kib: u64,
    hwm_kib: u64,
}

fn memory(pid: u32, peers: usize, when: &str) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Memory {
        when: when.to_string(),
        peers,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// A few of podnetd's metrics, scraped from its loopback port.
#[derive(Default)]
struct Scrape {
    values: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(f64::NAN)
    }
}

fn scrape(port: u16) -> Scrape {
    let wanted = [
        "podnet_reconcile_duration_seconds_sum",
        "podnet_reconcile_duration_seconds_count",
        "podnet_reconcile_errors_total",
        "podnet_routes",
        "podnet_peers",
        "podnet_route_changes_total",
    ];
    let mut text = String::new();
    let fetched = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        s.read_to_string(&mut text)
    });
    let mut out = Scrape::default();
    if let Err(e) = fetched {
        eprintln!("bench-routes: scraping 127.0.0.1:{port}/metrics: {e}");
        return out;
    }
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
            if wanted.contains(&name) {
                if let Ok(v) = value.parse() {
                    out.values.insert(name.to_string(), v);
                }
            }
        }
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

// ---------------------------------------------------------------- podnetd's log

/// Seconds since midnight UTC of a tracing timestamp at the start of `line`
/// (`2025-01-01T12:34:56.123456Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut hms = time.split(':');
    let h: f64 = hms.next()?.parse().ok()?;
    let m: f64 = hms.next()?.parse().ok()?;
    let s: f64 = hms.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// What podnetd's own log says about a cold start, relative to `spawned`.
#[derive(Default)]
struct LogTimes {
    registered_ms: Option<f64>,
    ready_ms: Option<f64>,
    reconciled_ms: Option<f64>,
    reconcile_took_ms: Option<f64>,
    reconcile_added: Option<usize>,
}

fn log_times(log: &str, spawned: SystemTime) -> LogTimes {
    let since = spawned
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let spawn_of_day = since % 86_400.0;
    let rel = |line: &str| {
        log_time(line).map(|t| {
            let mut d = t - spawn_of_day;
            if d < -43_200.0 {
                d += 86_400.0; // midnight passed
            }
            d * 1e3
        })
    };
    let mut out = LogTimes::default();
    for line in log.lines() {
        if out.registered_ms.is_none() && line.contains("registered in etcd") {
            out.registered_ms = rel(line);
        }
        if out.ready_ms.is_none() && line.contains("ready: CNI configuration written") {
            out.ready_ms = rel(line);
        }
        if out.reconciled_ms.is_none()
            && line.contains("routes reconciled")
            && field(line, "added").is_some_and(|a| a != "0")
        {
            out.reconciled_ms = rel(line);
            out.reconcile_took_ms = field(line, "took_ms").and_then(|v| v.parse().ok());
            out.reconcile_added = field(line, "added").and_then(|v| v.parse().ok());
        }
    }
    out
}

// ---------------------------------------------------------------- 1. join -> route

/// Joins and leaves, one fake node at a time.
#[derive(Default)]
struct JoinSamples {
    join: Vec<Duration>,
    leave: Vec<Duration>,
    put: Vec<Duration>,
    failed_joins: usize,
    failed_leaves: usize,
    wrong_routes: usize,
    /// The largest route dump seen while polling.
    max_dump: Duration,
}

struct JoinResult {
    samples: JoinSamples,
    node_cidrs: Vec<IpNetwork>,
    memory: Vec<Memory>,
    scrape: Scrape,
}

/// Polls until `done` holds for podnet's routes; `None` after `timeout`.
fn poll_until(
    nl: &mut Netlink,
    from: Instant,
    timeout: Duration,
    max_dump: &mut Duration,
    mut done: impl FnMut(&[RouteEntry]) -> bool,
) -> Option<Duration> {
    loop {
        let dumped = Instant::now();
        let routes = ours(nl);
        *max_dump = (*max_dump).max(dumped.elapsed());
        let at = from.elapsed();
        if done(&routes) {
            return Some(at);
        }
        if at > timeout {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// For each peer: put it, time until its route is in the kernel; delete
/// it, time until the route is gone. The first `warmup` are not recorded.
fn join_leave(
    store: &mut Store,
    nl: &mut Netlink,
    eth0: u32,
    peers: &[Fake],
    warmup: usize,
) -> JoinSamples {
    let mut out = JoinSamples::default();
    for (i, peer) in peers.iter().enumerate() {
        let gw = IpAddr::V4(peer.addr);
        let mut wrong = false;
        let lease = store.lease;
        let t0 = Instant::now();
        store.txn(peer.puts(lease).to_vec());
        let put = t0.elapsed();
        let joined = poll_until(nl, t0, EVENT_TIMEOUT, &mut out.max_dump, |routes| {
            routes.iter().any(|r| {
                let hit = r.dst == peer.cidr;
                if hit && (r.gw != Some(gw) || r.oif != Some(eth0)) {
                    wrong = true;
                }
                hit
            })
        });
        std::thread::sleep(GAP);
        let t1 = Instant::now();
        store.txn(peer.deletes().to_vec());
        let left = poll_until(nl, t1, EVENT_TIMEOUT, &mut out.max_dump, |routes| {
            routes.iter().all(|r| r.dst != peer.cidr)
        });
        if i >= warmup {
            out.put.push(put);
            match joined {
                Some(d) => out.join.push(d),
                None => out.failed_joins += 1,
            }
            match left {
                Some(d) => out.leave.push(d),
                None => out.failed_leaves += 1,
            }
            out.wrong_routes += usize::from(wrong);
        }
        if (i + 1) % 50 == 0 {
            eprintln!("bench-routes:   {} joins and leaves", i + 1);
        }
        std::thread::sleep(GAP);
    }
    out
}

fn bench_joins(opts: &Opts) -> JoinResult {
    eprintln!("bench-routes: 1. join -> route: etcd, one node, podnetd");
    let etcd = Etcd::start();
    let mut store = Store::connect(&etcd);
    let node = Node::new();
    let daemon = Daemon::start(&node, &etcd, free_port());
    let node_cidrs = store.node_cidrs(NODE_NAME);
    let mut nl = node.netlink();
    // Converged at 0 peers: the initial resync reconciled nothing.
    std::thread::sleep(SETTLE);
    assert!(ours(&mut nl).is_empty(), "podnet routes with no peer");
    let mut memory_seen = vec![memory(
        daemon.pid(),
        0,
        "running, no peer (before the joins)",
    )];
    let peers = fake_peers("join", WARMUP + opts.joins, &node_cidrs);
    let samples = join_leave(&mut store, &mut nl, node.eth0, &peers, WARMUP);
    std::thread::sleep(SETTLE);
    assert!(
        ours(&mut nl).is_empty(),
        "podnet routes left after every peer left"
    );
    memory_seen.push(memory(daemon.pid(), 0, "after the joins and leaves"));
    let scrape = scrape(daemon.metrics_port());
    drop(daemon);
    drop(etcd);
    JoinResult {
        samples,
        node_cidrs,
        memory: memory_seen,
        scrape,
    }
}

// ---------------------------------------------------------------- 2. cold start

struct ColdResult {
    peers: usize,
    write: Duration,
    ready: Duration,
    first: Option<Duration>,
    all: Option<Duration>,
    installed: usize,
    missing: usize,
    wrong: usize,
    extra: usize,
    last_dump: Duration,
    max_dump: Duration,
    log: LogTimes,
    node_cidrs: Vec<IpNetwork>,
    memory: Memory,
    /// podnetd's metrics once converged, and after the joins at this size.
    scrape: Scrape,
    scrape_after_joins: Scrape,
    joins: JoinSamples,
    /// The same routes added by the bench itself, one netlink request each,
    /// into a fresh namespace: the kernel's share (not in the control run).
    kernel_alone: Option<Duration>,
    observed: bool,
}

struct Watched {
    first: Option<Instant>,
    all: Option<Instant>,
    count: usize,
    last_dump: Duration,
    max_dump: Duration,
}

/// Dumps podnet's routes every millisecond until there are `want` of them.
fn watch_routes(mut nl: Netlink, want: usize, deadline: Instant) -> Watched {
    let mut w = Watched {
        first: None,
        all: None,
        count: 0,
        last_dump: Duration::ZERO,
        max_dump: Duration::ZERO,
    };
    loop {
        let started = Instant::now();
        w.count = ours(&mut nl).len();
        let now = Instant::now();
        w.last_dump = now - started;
        w.max_dump = w.max_dump.max(w.last_dump);
        if w.count > 0 && w.first.is_none() {
            w.first = Some(now);
        }
        if w.count >= want {
            w.all = Some(now);
            return w;
        }
        if now > deadline {
            return w;
        }
        std::thread::sleep(POLL);
    }
}

/// What the kernel alone takes for these routes: the bench adds them itself
/// (`ip route replace`, one netlink request each, as podnetd does) into a
/// fresh node namespace, with nobody dumping meanwhile.
fn kernel_alone(peers: &[Fake]) -> Duration {
    let node = Node::new();
    let mut nl = node.netlink();
    let routes: Vec<RouteEntry> = peers
        .iter()
        .map(|p| {
            let mut r = RouteEntry::new(p.cidr, Some(IpAddr::V4(p.addr)), Some(node.eth0));
            r.protocol = ROUTE_PROTOCOL;
            r
        })
        .collect();
    let t = Instant::now();
    for r in &routes {
        route::replace_route(&mut nl, r).expect("ip route replace");
    }
    let took = t.elapsed();
    assert_eq!(
        ours(&mut nl).len(),
        peers.len(),
        "routes added by the bench"
    );
    took
}

/// `observe`: false for the control run, where nothing dumps routes while
/// podnetd starts (its own log gives the times), and no joins follow.
fn bench_cold(peers_n: usize, joins: usize, observe: bool) -> ColdResult {
    eprintln!(
        "bench-routes: 2. cold start with {peers_n} peers{}: fresh etcd, node and podnetd",
        if observe {
            ""
        } else {
            ", unobserved (control)"
        }
    );
    let etcd = Etcd::start();
    let mut store = Store::connect(&etcd);
    let node = Node::new();
    // The node has no CIDR yet: it will choose around the fake nodes'.
    let peers = fake_peers("fake", peers_n, &[]);
    let t = Instant::now();
    store.put_all(&peers);
    let write = t.elapsed();
    let stored = store.count(&format!("{PREFIX}/nodes/"));
    assert_eq!(
        stored,
        i64::try_from(peers_n).unwrap(),
        "fake records in etcd"
    );
    eprintln!(
        "bench-routes:   wrote {peers_n} fake nodes in {:.0} ms; starting podnetd",
        ms(write)
    );
    let mut nl = node.netlink();
    assert!(ours(&mut nl).is_empty(), "a fresh node has podnet routes");

    let watcher_nl = node.netlink();
    let port = free_port();
    let spawned_wall = SystemTime::now();
    let spawned = Instant::now();
    let watcher = observe.then(|| {
        std::thread::spawn(move || watch_routes(watcher_nl, peers_n, Instant::now() + COLD_TIMEOUT))
    });
    let daemon = Daemon::start(&node, &etcd, port);
    let ready = spawned.elapsed();
    let watched = match watcher {
        Some(w) => w.join().expect("route watcher"),
        None => {
            // Only podnetd's log, read every 100 ms, says when it is done.
            while spawned.elapsed() < COLD_TIMEOUT
                && log_times(&daemon.inner.log_text(), spawned_wall)
                    .reconcile_added
                    .is_none()
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Watched {
                first: None,
                all: None,
                count: 0,
                last_dump: Duration::ZERO,
                max_dump: Duration::ZERO,
            }
        }
    };

    // Every route, exactly: each fake node's /24 via its address on eth0.
    std::thread::sleep(SETTLE);
    let have: BTreeMap<IpNetwork, RouteEntry> =
        ours(&mut nl).into_iter().map(|r| (r.dst, r)).collect();
    let mut missing = 0;
    let mut wrong = 0;
    for p in &peers {
        match have.get(&p.cidr) {
            None => missing += 1,
            Some(r) if r.gw != Some(IpAddr::V4(p.addr)) || r.oif != Some(node.eth0) => wrong += 1,
            Some(_) => {}
        }
    }
    let extra = have.len() + missing - peers.len();
    let node_cidrs = store.node_cidrs(NODE_NAME);
    let memory = memory(
        daemon.pid(),
        peers_n,
        if observe {
            "after the cold start converged"
        } else {
            "after the cold start converged (control run)"
        },
    );
    let log = log_times(&daemon.inner.log_text(), spawned_wall);
    let scrape_converged = scrape(daemon.metrics_port());

    // Joins and leaves on top of these peers: each event is a full
    // reconcile against all of them.
    if observe && joins > 0 {
        eprintln!("bench-routes:   {joins} joins and leaves at {peers_n} peers");
    }
    let join_peers: Vec<Fake> = if observe && joins > 0 {
        fake_peers("join", peers_n + WARMUP + joins, &node_cidrs)
            .into_iter()
            .skip(peers_n)
            .collect()
    } else {
        Vec::new()
    };
    let samples = join_leave(&mut store, &mut nl, node.eth0, &join_peers, WARMUP);
    let scrape_after_joins = scrape(daemon.metrics_port());
    drop(daemon);
    drop(etcd);
    drop(node);
    let kernel_alone = observe.then(|| {
        eprintln!("bench-routes:   the same {peers_n} routes added by the bench alone");
        kernel_alone(&peers)
    });
    ColdResult {
        peers: peers_n,
        write,
        ready,
        first: watched.first.map(|t| t - spawned),
        all: watched.all.map(|t| t - spawned),
        installed: watched.count,
        missing,
        wrong,
        extra,
        last_dump: watched.last_dump,
        max_dump: watched.max_dump,
        log,
        node_cidrs,
        memory,
        scrape: scrape_converged,
        scrape_after_joins,
        joins: samples,
        kernel_alone,
        observed: observe,
    }
}

// ---------------------------------------------------------------- report
fn yes(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**not met**"
    }
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("never".to_string(), |d| format!("{:.0}", ms(d)))
}

fn opt_f(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.0}"))
}

fn cidrs(c: &[IpNetwork]) -> String {
    c.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

struct Run {
    joins: JoinResult,
    cold: Vec<ColdResult>,
    /// The largest size again, with no route dump while podnetd starts.
    control: Option<ColdResult>,
    load_start: String,
    load_end: String,
    date: String,
}

fn report(opts: &Opts, run: &Run) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# podnetd routes: join -> route, cold start, memory\n");
    let sizes: Vec<String> = opts.sizes.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        w,
        "`cargo run --release -p podnet-tests --bin bench-routes -- --joins {} --sizes {} \
         --size-joins {} --out bench/results/routes.md` (method: \
         [bench/README.md](../README.md#podnetd-routes-join---route-cold-start-memory)).\n",
        opts.joins,
        sizes.join(","),
        opts.size_joins
    );
    machine(w, run);
    targets(w, run);
    section_joins(w, opts, run);
    section_cold(w, run);
    section_memory(w, run);
    section_metrics(w, opts, run);
    s
}

fn machine(w: &mut String, run: &Run) {
    let cpu = machine::cpu_model();
    let (rev, dirty) = machine::git_revision();
    let etcd_version = machine::shell(ETCD_BIN, &["--version"]);
    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(w, "- date: {}", run.date);
    let _ = writeln!(w, "- nproc: {}", machine::shell("nproc", &[]));
    let _ = writeln!(
        w,
        "- load average (1/5/15 min): {} at start, {} at end",
        run.load_start, run.load_end
    );
    let _ = writeln!(w, "- kernel: {}", machine::shell("uname", &["-r"]));
    let _ = writeln!(w, "- cpu: {cpu}");
    let _ = writeln!(
        w,
        "- podnetd: {} (git {rev}{}, release build)",
        bins::workspace_bin("podnetd").display(),
        if dirty { ", uncommitted changes" } else { "" }
    );
    let _ = writeln!(
        w,
        "- etcd: {} ({}), one member on loopback",
        ETCD_BIN,
        etcd_version.lines().next().unwrap_or("unknown")
    );
    let _ = writeln!(
        w,
        "- node: one network namespace, underlay eth0 {UNDERLAY}; podnetd `--store etcd --netns`, \
         cluster range {CLUSTER_CIDR}, max pods {MAX_PODS} (a /24 per node), resync 30 s; fake \
         peers 172.20.a.b on the same /16 (host-gw routes), a 10.x.y.0/24 each\n"
    );
}

fn targets(w: &mut String, run: &Run) {
    let j = &run.joins.samples;
    let join_stats = Stats::of(&j.join);
    let join_ok = j.failed_joins == 0
        && j.wrong_routes == 0
        && join_stats
            .as_ref()
            .is_some_and(|s| s.p99 < TARGET_JOIN_P99_MS);
    let big = run
        .cold
        .iter()
        .find(|c| c.peers == TARGET_COLD_SIZE)
        .or(run.cold.iter().max_by_key(|c| c.peers));
    let _ = writeln!(w, "## Targets\n");
    let _ = writeln!(w, "| target | measured | |");
    let _ = writeln!(w, "|---|---|---|");
    let _ = writeln!(
        w,
        "| join -> route p99 < {TARGET_JOIN_P99_MS:.0} ms | {} | {} |",
        join_stats
            .as_ref()
            .map_or("no sample".to_string(), |s| format!(
                "p99 {:.1} ms (p50 {:.1}, max {:.1}; {} joins, {} not seen, {} wrong)",
                s.p99, s.p50, s.max, s.n, j.failed_joins, j.wrong_routes
            )),
        yes(join_ok)
    );
    if let Some(c) = big {
        let ok = c.peers >= TARGET_COLD_SIZE
            && c.all.is_some_and(|d| ms(d) < TARGET_COLD_MS)
            && c.missing + c.wrong + c.extra == 0;
        let _ = writeln!(
            w,
            "| {TARGET_COLD_SIZE} peers programmed < {TARGET_COLD_MS:.0} ms (podnetd spawn -> last \
             route) | {} peers: {} ms ({} missing, {} wrong){} | {} |",
            c.peers,
            opt_ms(c.all),
            c.missing,
            c.wrong,
            run.control
                .as_ref()
                .map_or(String::new(), |k| format!(
                    "; control run with no route dump meanwhile: {} ms to podnetd's \
                     *routes reconciled* log line ({} missing, {} wrong)",
                    opt_f(k.log.reconciled_ms),
                    k.missing,
                    k.wrong
                )),
            yes(ok)
        );
        let ok = c.peers >= TARGET_COLD_SIZE && c.memory.hwm_kib * 1024 < TARGET_MEM_BYTES;
        let _ = writeln!(
            w,
            "| memory < 50 MB at {TARGET_COLD_SIZE} peers (peak, VmHWM) | {} peers: VmHWM {:.1} \
             MB, VmRSS {:.1} MB | {} |",
            c.peers,
            mb(c.memory.hwm_kib),
            mb(c.memory.rss_kib),
            yes(ok)
        );
    }
    let _ = writeln!(w);
}

fn section_joins(w: &mut String, opts: &Opts, run: &Run) {
    let j = &run.joins;
    let _ = writeln!(w, "## 1. Join -> route latency\n");
    let _ = writeln!(
        w,
        "podnetd running with no peer (its own CIDR {}); {} times (after {WARMUP} unmeasured): one \
         fake node's record and CIDR key put in one etcd transaction, timed from issuing it until \
         its route (right gateway, right device) is in the node's kernel; then both keys deleted, \
         timed until the route is gone. A netlink dump of the node's routes every {} ms (the \
         largest took {:.2} ms); {} ms between events. ms:\n",
        cidrs(&j.node_cidrs),
        opts.joins,
        POLL.as_millis(),
        ms(j.samples.max_dump),
        GAP.as_millis()
    );
    join_table(w, &j.samples);
    if run.cold.iter().any(|c| !c.joins.join.is_empty()) {
        let _ = writeln!(
            w,
            "The same, {} times per size, on the node of each cold start below once its routes \
             had converged (so each event is a reconcile against all those peers). The dump that \
             observes it costs more there (see *largest dump*): the figures include up to that \
             much observation delay. ms:\n",
            opts.size_joins
        );
        let _ = writeln!(
            w,
            "| peers | event | n | p50 | p99 | max | mean | not seen | wrong | largest dump |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
        for c in &run.cold {
            let js = &c.joins;
            for (what, samples, failed) in [
                ("join -> route", &js.join, js.failed_joins),
                ("leave -> gone", &js.leave, js.failed_leaves),
            ] {
                if let Some(st) = Stats::of(samples) {
                    let _ = writeln!(
                        w,
                        "| {} | {what} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {failed} | {} | {:.1} |",
                        c.peers,
                        st.n,
                        st.p50,
                        st.p99,
                        st.max,
                        st.mean,
                        js.wrong_routes,
                        ms(js.max_dump)
                    );
                }
            }
        }
        let _ = writeln!(w);
    }
}

fn join_table(w: &mut String, j: &JoinSamples) {
    let _ = writeln!(w, "| event | n | p50 | p99 | max | mean |");
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    if let Some(s) = Stats::of(&j.join) {
        let _ = writeln!(w, "{}", s.row("join: etcd put -> route installed"));
    }
    if let Some(s) = Stats::of(&j.leave) {
        let _ = writeln!(w, "{}", s.row("leave: etcd delete -> route removed"));
    }
    if let Some(s) = Stats::of(&j.put) {
        let _ = writeln!(
            w,
            "{}",
            s.row("(the etcd put transaction's own round trip)")
        );
    }
    let _ = writeln!(
        w,
        "\nJoins never seen within {} s: {}; leaves never seen: {}; routes with a wrong gateway or \
         device: {}.\n",
        EVENT_TIMEOUT.as_secs(),
        j.failed_joins,
        j.failed_leaves,
        j.wrong_routes
    );
}

fn section_cold(w: &mut String, run: &Run) {
    let _ = writeln!(w, "## 2. Cold start\n");
    let _ = writeln!(
        w,
        "For each size a fresh etcd, node namespace and podnetd state: the fake nodes are written \
         first, then podnetd is spawned (`TestDaemon::start`). Times in ms from the spawn; *ready* \
         is when its IPAM socket first answered (polled every 20 ms by the harness); *registered* \
         and *reconciled* are podnetd's own log lines (their timestamps), *pass* the reconcile \
         pass's own `took_ms`; *first/all routes* are seen by a route dump every {} ms. *Kernel \
         alone*: the bench adding the same routes itself afterwards (one `ip route replace` \
         netlink request each, as podnetd does) into a fresh namespace, with nobody dumping.\n",
        POLL.as_millis()
    );
    let _ = writeln!(
        w,
        "| peers | -> registered (log) | -> ready | -> reconciled (log) | pass | -> first route | -> all routes | routes correct | kernel alone |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
    for c in run.cold.iter().chain(&run.control) {
        let _ = writeln!(
            w,
            "| {}{} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            c.peers,
            if c.observed { "" } else { " (control)" },
            opt_f(c.log.registered_ms),
            ms(c.ready),
            opt_f(c.log.reconciled_ms),
            c.log.reconcile_took_ms.map_or("-".to_string(), |t| format!(
                "{t:.0} ({} added)",
                c.log.reconcile_added.unwrap_or(0)
            )),
            if c.observed {
                opt_ms(c.first)
            } else {
                "-".to_string()
            },
            if c.observed {
                opt_ms(c.all)
            } else {
                "-".to_string()
            },
            if c.missing + c.wrong + c.extra == 0 {
                format!("all {}", c.peers)
            } else {
                format!(
                    "{} missing, {} wrong, {} extra",
                    c.missing, c.wrong, c.extra
                )
            },
            c.kernel_alone
                .map_or("-".to_string(), |d| format!("{:.0}", ms(d)))
        );
    }
    let _ = writeln!(w);
    if let Some(k) = &run.control {
        let _ = writeln!(
            w,
            "*Control*: the largest size once more, on a fresh etcd, node and podnetd, with \
             nothing dumping routes while podnetd starts (the poller's dumps cost CPU on this \
             {}-CPU machine); its times are podnetd's log lines only, and its routes were \
             checked afterwards ({} missing, {} wrong, {} extra).\n",
            machine::shell("nproc", &[]),
            k.missing,
            k.wrong,
            k.extra
        );
    }
    for c in &run.cold {
        let _ = writeln!(
            w,
            "- {} peers: written to etcd in {:.0} ms ({BATCH} per transaction, before the spawn); \
             the node chose {}; the watcher saw {} routes at its last dump; one dump of podnet's \
             routes took {:.2} ms at the end (max {:.2} ms), so *first/all routes* may lag the \
             kernel by up to about {:.0} ms.",
            c.peers,
            ms(c.write),
            cidrs(&c.node_cidrs),
            c.installed,
            ms(c.last_dump),
            ms(c.max_dump),
            ms(c.max_dump + POLL).ceil()
        );
    }
    let _ = writeln!(w);
}

fn section_memory(w: &mut String, run: &Run) {
    let _ = writeln!(w, "## 3. Memory\n");
    let _ = writeln!(
        w,
        "podnetd's `/proc/PID/status`, {} ms after convergence; MB = 10^6 bytes; VmHWM is the \
         peak since the process started.\n",
        SETTLE.as_millis()
    );
    let _ = writeln!(w, "| peers | VmRSS MB | VmHWM MB | when |");
    let _ = writeln!(w, "|---|---|---|---|");
    let all = run
        .joins
        .memory
        .iter()
        .chain(run.cold.iter().chain(&run.control).map(|c| &c.memory));
    for m in all {
        let _ = writeln!(
            w,
            "| {} | {:.1} | {:.1} | {} |",
            m.peers,
            mb(m.rss_kib),
            mb(m.hwm_kib),
            m.when
        );
    }
    let _ = writeln!(w);
}

fn metrics_row(w: &mut String, phase: &str, m: &Scrape, before: Option<&Scrape>) {
    let delta = |name: &str| m.get(name) - before.map_or(0.0, |b| b.get(name));
    let sum = delta("podnet_reconcile_duration_seconds_sum");
    let count = delta("podnet_reconcile_duration_seconds_count");
    let _ = writeln!(
        w,
        "| {phase} | {count:.0} | {sum:.3} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |",
        sum / count * 1e3,
        delta("podnet_route_changes_total"),
        delta("podnet_reconcile_errors_total"),
        m.get("podnet_routes"),
        m.get("podnet_peers")
    );
}

fn section_metrics(w: &mut String, opts: &Opts, run: &Run) {
    let _ = writeln!(w, "## 4. podnetd's reconcile metrics\n");
    let _ = writeln!(
        w,
        "`podnet_reconcile_duration_seconds` (sum, count) and friends, scraped from podnetd's \
         `--metrics-addr` on loopback (each phase has its own podnetd); counters are for the \
         phase named, the gauges as at its end.\n"
    );
    let _ = writeln!(
        w,
        "| phase | passes | sum s | mean ms | route changes | errors | podnet_routes | podnet_peers |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    metrics_row(
        w,
        &format!(
            "start + {} joins and leaves, no other peer",
            WARMUP + opts.joins
        ),
        &run.joins.scrape,
        None,
    );
    for c in run.cold.iter().chain(&run.control) {
        metrics_row(
            w,
            &format!(
                "cold start, {} peers{}",
                c.peers,
                if c.observed { "" } else { " (control)" }
            ),
            &c.scrape,
            None,
        );
        if !c.joins.join.is_empty() {
            metrics_row(
                w,
                &format!(
                    "then {} joins and leaves at {} peers",
                    WARMUP + opts.size_joins,
                    c.peers
                ),
                &c.scrape_after_joins,
                Some(&c.scrape),
            );
        }
    }
}

fn run(opts: &Opts) -> String {
    podnet_tests::require_root();
    let _ = bins::workspace_bin("podnetd");
    let load_start = machine::loadavg();
    let date = machine::shell("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    eprintln!("bench-routes: load average {load_start}");
    let joins = bench_joins(opts);
    let cold = opts
        .sizes
        .iter()
        .map(|n| bench_cold(*n, opts.size_joins, true))
        .collect();
    let control = opts.sizes.iter().max().map(|n| bench_cold(*n, 0, false));
    let load_end = machine::loadavg();
    report(
        opts,
        &Run {
            joins,
            cold,
            control,
            load_start,
            load_end,
            date,
        },
    )
}

fn main() -> ExitCode {
    cleanup::on_signal_or_panic_clean_up("bench-routes");
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-routes: {e}");
            return ExitCode::from(2);
        }
    };
    report::finish("bench-routes", Ok(run(&opts)), opts.out.as_deref())
}
