//! Phase 1, join -> route: one fake node at a time put into etcd until its
//! route is in the node's kernel, then deleted until the route is gone.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use podnet_cni::netlink::Netlink;

use crate::observe::{memory, poll_until, scrape, Memory, Scrape};
use crate::peers::{fake_peers, Fake};
use crate::setup::{free_port, ours, Daemon, Etcd, Node, Store};
use crate::{EVENT_TIMEOUT, GAP, NODE_NAME, SETTLE, WARMUP};

/// Joins and leaves, one fake node at a time.
#[derive(Default)]
pub struct JoinSamples {
    pub join: Vec<Duration>,
    pub leave: Vec<Duration>,
    pub put: Vec<Duration>,
    pub failed_joins: usize,
    pub failed_leaves: usize,
    pub wrong_routes: usize,
    /// The largest route dump seen while polling.
    pub max_dump: Duration,
}

pub struct JoinResult {
    pub samples: JoinSamples,
    pub node_cidrs: Vec<IpNetwork>,
    pub memory: Vec<Memory>,
    pub scrape: Scrape,
}

/// One peer's join and leave.
struct Event {
    /// The etcd transaction's own round trip.
    put: Duration,
    joined: Option<Duration>,
    left: Option<Duration>,
    /// Its route came with the wrong gateway or device.
    wrong: bool,
}

fn join_and_leave(
    store: &mut Store,
    nl: &mut Netlink,
    eth0: u32,
    peer: &Fake,
    max_dump: &mut Duration,
) -> Event {
    let gw = IpAddr::V4(peer.addr);
    let mut wrong = false;
    let lease = store.lease;
    let t0 = Instant::now();
    store.txn(peer.puts(lease).to_vec());
    let put = t0.elapsed();
    let joined = poll_until(nl, t0, EVENT_TIMEOUT, max_dump, |routes| {
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
    let left = poll_until(nl, t1, EVENT_TIMEOUT, max_dump, |routes| {
        routes.iter().all(|r| r.dst != peer.cidr)
    });
    Event {
        put,
        joined,
        left,
        wrong,
    }
}

/// For each peer: put it, time until its route is in the kernel; delete
/// it, time until the route is gone. The first `warmup` are not recorded.
pub fn join_leave(
    store: &mut Store,
    nl: &mut Netlink,
    eth0: u32,
    peers: &[Fake],
    warmup: usize,
) -> JoinSamples {
    let mut out = JoinSamples::default();
    for (i, peer) in peers.iter().enumerate() {
        let e = join_and_leave(store, nl, eth0, peer, &mut out.max_dump);
        if i >= warmup {
            out.put.push(e.put);
            match e.joined {
                Some(d) => out.join.push(d),
                None => out.failed_joins += 1,
            }
            match e.left {
                Some(d) => out.leave.push(d),
                None => out.failed_leaves += 1,
            }
            out.wrong_routes += usize::from(e.wrong);
        }
        if (i + 1) % 50 == 0 {
            eprintln!("bench-routes:   {} joins and leaves", i + 1);
        }
        std::thread::sleep(GAP);
    }
    out
}

/// `joins` joins and leaves (after WARMUP) on a node with no other peer.
pub fn bench_joins(joins: usize) -> JoinResult {
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
    let peers = fake_peers("join", WARMUP + joins, &node_cidrs);
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
