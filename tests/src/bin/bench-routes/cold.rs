//! Phase 2, the cold start: a fresh etcd already holding every fake peer,
//! a fresh node, then podnetd spawned and timed until the routes are all in
//! the kernel; then joins on top of those peers, and the kernel's own share.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use ipnetwork::IpNetwork;
use podnet_cni::netlink::route::{self, RouteEntry};
use podnet_cni::netlink::Netlink;
use podnet_tests::bench::stats::ms;
use podnetd::routes::ROUTE_PROTOCOL;

use crate::joins::{join_leave, JoinSamples};
use crate::observe::{log_times, memory, scrape, watch_routes, LogTimes, Memory, Scrape, Watched};
use crate::peers::{fake_peers, Fake};
use crate::setup::{free_port, ours, Daemon, Etcd, Node, Store};
use crate::{COLD_TIMEOUT, NODE_NAME, PREFIX, SETTLE, WARMUP};

/// podnet's routes against the fake peers: each peer's /24 via its address
/// on eth0, and nothing else.
#[derive(Clone, Copy)]
pub struct RouteCheck {
    pub missing: usize,
    pub wrong: usize,
    pub extra: usize,
}

impl RouteCheck {
    pub fn correct(&self) -> bool {
        self.missing + self.wrong + self.extra == 0
    }
}

pub struct ColdResult {
    pub peers: usize,
    pub write: Duration,
    pub ready: Duration,
    /// From podnetd's spawn, as the route dumps saw them.
    pub first: Option<Duration>,
    pub all: Option<Duration>,
    pub installed: usize,
    pub check: RouteCheck,
    pub last_dump: Duration,
    pub max_dump: Duration,
    pub log: LogTimes,
    pub node_cidrs: Vec<IpNetwork>,
    pub memory: Memory,
    /// podnetd's metrics once converged, and after the joins at this size.
    pub scrape: Scrape,
    pub scrape_after_joins: Scrape,
    pub joins: JoinSamples,
    /// The same routes added by the bench itself, one netlink request each,
    /// into a fresh namespace: the kernel's share (not in the control run).
    pub kernel_alone: Option<Duration>,
    pub observed: bool,
}

/// A fresh etcd holding the fake peers, and a fresh node with no route.
struct Fresh {
    etcd: Etcd,
    store: Store,
    node: Node,
    peers: Vec<Fake>,
    /// Writing the peers to etcd.
    write: Duration,
}

fn fresh(peers_n: usize) -> Fresh {
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
    assert!(
        ours(&mut node.netlink()).is_empty(),
        "a fresh node has podnet routes"
    );
    Fresh {
        etcd,
        store,
        node,
        peers,
        write,
    }
}

/// podnetd spawned on a fresh node, and what was seen until it converged.
struct Started {
    daemon: Daemon,
    spawned_wall: SystemTime,
    ready: Duration,
    /// Times relative to the spawn; empty when not observed.
    first: Option<Duration>,
    all: Option<Duration>,
    watched: Watched,
}

/// `observe`: a thread dumps the routes every millisecond meanwhile;
/// otherwise only podnetd's log says when it is done.
fn start(f: &Fresh, observe: bool) -> Started {
    let watcher_nl = f.node.netlink();
    let want = f.peers.len();
    let port = free_port();
    let spawned_wall = SystemTime::now();
    let spawned = Instant::now();
    let watcher = observe.then(|| {
        std::thread::spawn(move || watch_routes(watcher_nl, want, Instant::now() + COLD_TIMEOUT))
    });
    let daemon = Daemon::start(&f.node, &f.etcd, port);
    let ready = spawned.elapsed();
    let watched = match watcher {
        Some(w) => w.join().expect("route watcher"),
        None => {
            // podnetd's log, read every 100 ms.
            while spawned.elapsed() < COLD_TIMEOUT
                && log_times(&daemon.inner.log_text(), spawned_wall)
                    .reconcile_added
                    .is_none()
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Watched::default()
        }
    };
    Started {
        daemon,
        spawned_wall,
        ready,
        first: watched.first.map(|t| t - spawned),
        all: watched.all.map(|t| t - spawned),
        watched,
    }
}

/// Every route, exactly: each fake node's /24 via its address on eth0.
fn check_routes(nl: &mut Netlink, peers: &[Fake], eth0: u32) -> RouteCheck {
    let have: BTreeMap<IpNetwork, RouteEntry> = ours(nl).into_iter().map(|r| (r.dst, r)).collect();
    let (mut missing, mut wrong) = (0, 0);
    for p in peers {
        match have.get(&p.cidr) {
            None => missing += 1,
            Some(r) if r.gw != Some(IpAddr::V4(p.addr)) || r.oif != Some(eth0) => wrong += 1,
            Some(_) => {}
        }
    }
    RouteCheck {
        missing,
        wrong,
        extra: have.len() + missing - peers.len(),
    }
}

/// Joins and leaves on top of the converged peers: each event is a full
/// reconcile against all of them.
fn joins_on_top(f: &mut Fresh, nl: &mut Netlink, joins: usize, avoid: &[IpNetwork]) -> JoinSamples {
    if joins == 0 {
        return JoinSamples::default();
    }
    let n = f.peers.len();
    eprintln!("bench-routes:   {joins} joins and leaves at {n} peers");
    let peers: Vec<Fake> = fake_peers("join", n + WARMUP + joins, avoid)
        .into_iter()
        .skip(n)
        .collect();
    join_leave(&mut f.store, nl, f.node.eth0, &peers, WARMUP)
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
pub fn bench_cold(peers_n: usize, joins: usize, observe: bool) -> ColdResult {
    let control = if observe { "" } else { " (control run)" };
    eprintln!(
        "bench-routes: 2. cold start with {peers_n} peers{control}: fresh etcd, node and podnetd"
    );
    let mut f = fresh(peers_n);
    let mut nl = f.node.netlink();
    let s = start(&f, observe);
    std::thread::sleep(SETTLE);
    let check = check_routes(&mut nl, &f.peers, f.node.eth0);
    let node_cidrs = f.store.node_cidrs(NODE_NAME);
    let when = format!("after the cold start converged{control}");
    let memory = memory(s.daemon.pid(), peers_n, &when);
    let log = log_times(&s.daemon.inner.log_text(), s.spawned_wall);
    let scrape_converged = scrape(s.daemon.metrics_port());
    let joins = if observe {
        joins_on_top(&mut f, &mut nl, joins, &node_cidrs)
    } else {
        JoinSamples::default()
    };
    let scrape_after_joins = scrape(s.daemon.metrics_port());
    drop(s.daemon);
    let Fresh {
        etcd,
        node,
        peers,
        write,
        ..
    } = f;
    drop(etcd);
    drop(node);
    let kernel_alone = observe.then(|| {
        eprintln!("bench-routes:   the same {peers_n} routes added by the bench alone");
        kernel_alone(&peers)
    });
    ColdResult {
        peers: peers_n,
        write,
        ready: s.ready,
        first: s.first,
        all: s.all,
        installed: s.watched.count,
        check,
        last_dump: s.watched.last_dump,
        max_dump: s.watched.max_dump,
        log,
        node_cidrs,
        memory,
        scrape: scrape_converged,
        scrape_after_joins,
        joins,
        kernel_alone,
        observed: observe,
    }
}
