//! The etcd cluster-store backend against a real etcd on loopback: CIDR
//! claims under races, restarts, the watch, and etcd going away. Every test
//! starts its own etcd (killed by `Drop` even when the test fails).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use podnet_ipam::cidr::ClusterConfig;
use podnet_tests::etcd::TestEtcd;
use podnetd::store::etcd::{EtcdBackend, EtcdOptions};
use podnetd::store::{NodeRecord, StoreEvent};
use tokio::sync::mpsc;

const RANGE: &str = "10.244.0.0/16";

fn config() -> ClusterConfig {
    ClusterConfig::new(vec![RANGE.parse().unwrap()], 24, 64).unwrap()
}

async fn backend(etcd: &TestEtcd, prefix: &str, ttl: i64) -> EtcdBackend {
    let mut opts = EtcdOptions::new(vec![etcd.endpoint()], config());
    opts.prefix = prefix.to_string();
    opts.lease_ttl_secs = ttl;
    EtcdBackend::connect(opts).await.unwrap()
}

fn record(node: &str, host: u8) -> NodeRecord {
    NodeRecord {
        node: node.to_string(),
        cidrs: Vec::new(),
        addresses: vec![format!("192.168.50.{host}").parse().unwrap()],
        vtep_mac: None,
    }
}

fn names(records: &[NodeRecord]) -> Vec<String> {
    let mut names: Vec<String> = records.iter().map(|r| r.node.clone()).collect();
    names.sort();
    names
}

/// Watches through `watcher` on a task of its own; every event arrives
/// stamped with the instant it was received.
fn watch(watcher: EtcdBackend) -> mpsc::UnboundedReceiver<(Instant, StoreEvent)> {
    let (tx, mut rx) = mpsc::channel(1024);
    let (stamped_tx, stamped_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move { watcher.watch(tx).await });
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if stamped_tx.send((Instant::now(), event)).is_err() {
                return;
            }
        }
    });
    stamped_rx
}

/// Events until `done` accepts one (returned last); panics after `within`.
async fn until(
    rx: &mut mpsc::UnboundedReceiver<(Instant, StoreEvent)>,
    within: Duration,
    what: &str,
    done: impl Fn(&StoreEvent) -> bool,
) -> Vec<(Instant, StoreEvent)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(stamped)) => {
                let matched = done(&stamped.1);
                seen.push(stamped);
                if matched {
                    return seen;
                }
            }
            Ok(None) => panic!("watch ended while waiting for {what}; saw {seen:?}"),
            Err(_) => panic!("no {what} within {within:?}; saw {seen:?}"),
        }
    }
}

/// Every event that arrives within `window`.
async fn drain_for(
    rx: &mut mpsc::UnboundedReceiver<(Instant, StoreEvent)>,
    window: Duration,
) -> Vec<StoreEvent> {
    let deadline = tokio::time::Instant::now() + window;
    let mut seen = Vec::new();
    while let Ok(Some((_, event))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        seen.push(event);
    }
    seen
}

/// A Removed, or a Resync lacking one of `alive`: what an unreachable store
/// must never cause.
fn wrong_events(events: &[StoreEvent], alive: &[&str]) -> Vec<StoreEvent> {
    events
        .iter()
        .filter(|event| match event {
            StoreEvent::Removed(_) => true,
            StoreEvent::Resync(all) => {
                let present = names(all);
                alive.iter().any(|n| !present.contains(&n.to_string()))
            }
            StoreEvent::Upsert(_) => false,
        })
        .cloned()
        .collect()
}

fn v4(record: &NodeRecord) -> IpNetwork {
    record.cidrs[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_nodes_never_share_a_cidr() {
    let etcd = TestEtcd::start();
    let range: IpNetwork = RANGE.parse().unwrap();
    const NODES: usize = 20;
    const ROUNDS: usize = 5;
    let started = Instant::now();
    for round in 0..ROUNDS {
        // A fresh prefix per round: every round is a race from an empty store.
        let prefix = format!("/race{round}");
        let mut backends = Vec::new();
        for _ in 0..NODES {
            backends.push(backend(&etcd, &prefix, 15).await);
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(NODES));
        let tasks: Vec<_> = backends
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let got = b.register(record(&format!("node-{i}"), i as u8)).await;
                    (b, got)
                })
            })
            .collect();
        let mut kept = Vec::new();
        let mut cidrs = Vec::new();
        for task in tasks {
            let (b, got) = task.await.unwrap();
            let got = got.unwrap_or_else(|e| panic!("round {round}: register failed: {e}"));
            assert_eq!(got.cidrs.len(), 1, "{got:?}");
            let cidr = v4(&got);
            assert_eq!(cidr.prefix(), 24, "{got:?}");
            assert!(
                range.contains(cidr.network()) && range.contains(cidr.broadcast()),
                "{cidr} outside {range}"
            );
            cidrs.push(cidr);
            kept.push(b);
        }
        let distinct: HashSet<IpNetwork> = cidrs.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            NODES,
            "round {round}: shared CIDRs: {cidrs:?}"
        );
        // What the store holds agrees with what each node was told.
        let listed = kept[0].list().await.unwrap();
        assert_eq!(listed.len(), NODES);
        let listed: HashSet<IpNetwork> = listed.iter().map(v4).collect();
        assert_eq!(listed, distinct, "round {round}");
    }
    println!(
        "{ROUNDS} rounds of {NODES} nodes racing: all CIDRs distinct, {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_node_keeps_its_cidr() {
    let etcd = TestEtcd::start();
    const TTL: i64 = 2;
    let a = backend(&etcd, "/podnet", TTL).await;
    let b = backend(&etcd, "/podnet", TTL).await;
    let c = backend(&etcd, "/podnet", TTL).await;
    let a_cidr = v4(&a.register(record("a", 1)).await.unwrap());
    let b_cidr = v4(&b.register(record("b", 2)).await.unwrap());
    let c_cidr = v4(&c.register(record("c", 3)).await.unwrap());
    assert_eq!(HashSet::from([a_cidr, b_cidr, c_cidr]).len(), 3);
    // a leaves for good: its CIDR, the lowest, is free at once, so a
    // restarted b that chose afresh would take it.
    a.deregister().await.unwrap();
    assert_eq!(names(&c.list().await.unwrap()), vec!["b", "c"]);

    // b's process ends (keep-alive stops, the lease is left to expire) and
    // a new one registers within the TTL, with a new underlay address.
    drop(b);
    let b = backend(&etcd, "/podnet", TTL).await;
    let again = b.register(record("b", 22)).await.unwrap();
    assert_eq!(v4(&again), b_cidr, "a restarted node must keep its CIDR");
    assert_eq!(again.addresses, record("b", 22).addresses);

    // The old lease expires; the record and CIDR live on under the new one.
    tokio::time::sleep(Duration::from_secs(TTL as u64 * 2)).await;
    let listed = c.list().await.unwrap();
    assert_eq!(names(&listed), vec!["b", "c"]);
    assert!(listed.contains(&again), "{listed:?}");

    // A new node gets the free CIDR, never b's.
    let d = backend(&etcd, "/podnet", TTL).await;
    assert_eq!(v4(&d.register(record("d", 4)).await.unwrap()), a_cidr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_reports_joins_and_expired_leases() {
    let etcd = TestEtcd::start();
    const TTL: i64 = 2;
    let a = backend(&etcd, "/podnet", TTL).await;
    let a_record = a.register(record("a", 1)).await.unwrap();
    let mut events = watch(backend(&etcd, "/podnet", TTL).await);

    let first = until(
        &mut events,
        Duration::from_secs(5),
        "the first event",
        |_| true,
    )
    .await;
    assert_eq!(
        first[0].1,
        StoreEvent::Resync(vec![a_record]),
        "Resync must come first"
    );

    // Joins: register -> Upsert on the watcher.
    let mut joined = Vec::new();
    let mut after_return = Vec::new();
    let mut after_call = Vec::new();
    for i in 0..10u8 {
        let node = format!("j{i}");
        let b = backend(&etcd, "/podnet", TTL).await;
        let called = Instant::now();
        let registered = b.register(record(&node, 10 + i)).await.unwrap();
        let returned = Instant::now();
        let seen = until(
            &mut events,
            Duration::from_secs(3),
            "the join's Upsert",
            |e| matches!(e, StoreEvent::Upsert(r) if r.node == node),
        )
        .await;
        let (at, event) = seen.last().unwrap();
        assert_eq!(*event, StoreEvent::Upsert(registered));
        after_call.push(at.duration_since(called));
        after_return.push(at.saturating_duration_since(returned));
        joined.push(b);
    }
    after_call.sort();
    after_return.sort();
    println!(
        "register -> Upsert on a peer's watch, 10 joins: from the call p50 {:?} max {:?}; \
         after register returned p50 {:?} max {:?}",
        after_call[4], after_call[9], after_return[4], after_return[9]
    );

    // a's process is gone: keep-alive stops, etcd expires the lease.
    let gone = Instant::now();
    drop(a);
    let seen = until(
        &mut events,
        Duration::from_secs(TTL as u64 + 4),
        "a's Removed",
        |e| matches!(e, StoreEvent::Removed(n) if n == "a"),
    )
    .await;
    let after = seen.last().unwrap().0.duration_since(gone);
    println!("a Removed {after:?} after its process went away (TTL {TTL} s)");
    assert!(
        after >= Duration::from_millis(TTL as u64 * 1000 / 2),
        "removed before its lease could have expired: {after:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|(_, e)| matches!(e, StoreEvent::Removed(n) if n != "a")),
        "{seen:?}"
    );

    // Live nodes, refreshed every TTL/3, are never removed.
    let later = drain_for(&mut events, Duration::from_secs(TTL as u64 * 2)).await;
    assert!(wrong_events(&later, &[]).is_empty(), "{later:?}");
    let listed = joined[0].list().await.unwrap();
    assert_eq!(listed.len(), 10, "{:?}", names(&listed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_stopped_changes_nothing_and_resyncs_after() {
    let mut etcd = TestEtcd::start();
    const TTL: i64 = 3;
    let a = backend(&etcd, "/podnet", TTL).await;
    let b = backend(&etcd, "/podnet", TTL).await;
    let a_record = a.register(record("a", 1)).await.unwrap();
    let b_record = b.register(record("b", 2)).await.unwrap();
    let lister = backend(&etcd, "/podnet", TTL).await;
    let mut events = watch(backend(&etcd, "/podnet", TTL).await);
    until(
        &mut events,
        Duration::from_secs(5),
        "the first Resync",
        |e| matches!(e, StoreEvent::Resync(all) if all.len() == 2),
    )
    .await;

    // Down for twice the TTL.
    let outage = Duration::from_secs(TTL as u64 * 2);
    etcd.stop();
    let stopped = Instant::now();
    let listed = lister.list().await;
    assert!(
        listed.is_err(),
        "a list with etcd down must fail, not be empty: {listed:?}"
    );
    println!("list with etcd down failed after {:?}", stopped.elapsed());
    let during = drain_for(&mut events, outage.saturating_sub(stopped.elapsed())).await;
    assert!(
        during.is_empty(),
        "the watch sent events while etcd was down: {during:?}"
    );

    etcd.restart();
    let back = Instant::now();
    let seen = until(
        &mut events,
        Duration::from_secs(10),
        "a Resync after etcd returned",
        |e| matches!(e, StoreEvent::Resync(_)),
    )
    .await;
    println!(
        "etcd down {:?}; Resync {:?} after it was back",
        back.duration_since(stopped),
        back.elapsed()
    );
    let events_seen: Vec<StoreEvent> = seen.into_iter().map(|(_, e)| e).collect();
    assert!(
        wrong_events(&events_seen, &["a", "b"]).is_empty(),
        "{events_seen:?}"
    );

    // New events flow again.
    let c = backend(&etcd, "/podnet", TTL).await;
    let c_record = c.register(record("c", 3)).await.unwrap();
    let seen = until(
        &mut events,
        Duration::from_secs(3),
        "c's Upsert",
        |e| matches!(e, StoreEvent::Upsert(r) if r.node == "c"),
    )
    .await;
    let events_seen: Vec<StoreEvent> = seen.into_iter().map(|(_, e)| e).collect();
    assert!(
        wrong_events(&events_seen, &["a", "b"]).is_empty(),
        "{events_seen:?}"
    );

    // Keep-alive recovered: a and b outlive two more TTLs, with their CIDRs,
    // on their old leases (etcd renews every lease when it restarts), so
    // they were never registered again either.
    let later = drain_for(&mut events, Duration::from_secs(TTL as u64 * 2)).await;
    assert!(wrong_events(&later, &["a", "b"]).is_empty(), "{later:?}");
    let reregistered = events_seen
        .iter()
        .chain(&later)
        .any(|e| matches!(e, StoreEvent::Upsert(r) if r.node != "c"));
    assert!(!reregistered, "{events_seen:?} {later:?}");
    let listed = lister.list().await.unwrap();
    assert_eq!(names(&listed), vec!["a", "b", "c"]);
    for r in [&a_record, &b_record, &c_record] {
        assert!(listed.contains(r), "{r:?} not in {listed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_frozen_briefly_changes_nothing() {
    let mut etcd = TestEtcd::start();
    const TTL: i64 = 5;
    let a = backend(&etcd, "/podnet", TTL).await;
    let a_record = a.register(record("a", 1)).await.unwrap();
    let mut events = watch(backend(&etcd, "/podnet", TTL).await);
    until(
        &mut events,
        Duration::from_secs(5),
        "the first Resync",
        |e| matches!(e, StoreEvent::Resync(all) if all.len() == 1),
    )
    .await;

    // SIGSTOP: sockets stay open, nothing answers (a frozen host).
    etcd.pause();
    let during = drain_for(&mut events, Duration::from_secs(2)).await;
    etcd.resume();
    assert!(
        during.is_empty(),
        "events while etcd was frozen: {during:?}"
    );

    let b = backend(&etcd, "/podnet", TTL).await;
    b.register(record("b", 2)).await.unwrap();
    let seen = until(
        &mut events,
        Duration::from_secs(5),
        "b's Upsert",
        |e| matches!(e, StoreEvent::Upsert(r) if r.node == "b"),
    )
    .await;
    let events_seen: Vec<StoreEvent> = seen.into_iter().map(|(_, e)| e).collect();
    assert!(
        wrong_events(&events_seen, &["a"]).is_empty(),
        "{events_seen:?}"
    );
    let later = drain_for(&mut events, Duration::from_secs(TTL as u64)).await;
    assert!(wrong_events(&later, &["a"]).is_empty(), "{later:?}");
    assert!(b.list().await.unwrap().contains(&a_record));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_lost_while_etcd_frozen_is_registered_again_with_the_same_cidr() {
    let mut etcd = TestEtcd::start();
    const TTL: i64 = 2;
    let a = backend(&etcd, "/podnet", TTL).await;
    let a_record = a.register(record("a", 1)).await.unwrap();
    let mut events = watch(backend(&etcd, "/podnet", TTL).await);
    until(
        &mut events,
        Duration::from_secs(5),
        "the first Resync",
        |e| matches!(e, StoreEvent::Resync(all) if all.len() == 1),
    )
    .await;

    // Frozen for longer than the TTL: when etcd wakes up the lease has
    // expired (etcd deletes a's keys: a true Removed). a's keep-alive learns
    // the lease is gone and registers again, with the same CIDR.
    etcd.pause();
    let during = drain_for(&mut events, Duration::from_secs(TTL as u64 * 2)).await;
    etcd.resume();
    let resumed = Instant::now();
    assert!(
        during.is_empty(),
        "events while etcd was frozen: {during:?}"
    );
    let seen = until(
        &mut events,
        Duration::from_secs(10),
        "a registered again",
        |e| matches!(e, StoreEvent::Upsert(r) if r.node == "a"),
    )
    .await;
    println!(
        "lease lost during a {} s freeze; a back {:?} after etcd resumed; events {:?}",
        TTL * 2,
        resumed.elapsed(),
        seen.iter().map(|(_, e)| e).collect::<Vec<_>>()
    );
    assert_eq!(seen.last().unwrap().1, StoreEvent::Upsert(a_record.clone()));
    assert_eq!(a.current().await, Some(a_record.clone()));
    // And it stays.
    let later = drain_for(&mut events, Duration::from_secs(TTL as u64 * 2)).await;
    assert!(wrong_events(&later, &["a"]).is_empty(), "{later:?}");
    let listed: BTreeMap<String, NodeRecord> = a
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.node.clone(), r))
        .collect();
    assert_eq!(listed.get("a"), Some(&a_record));
}
