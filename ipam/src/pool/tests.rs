//! The allocator over every store: the store contract, reopening, properties.

use std::collections::HashSet;
use std::time::Instant;

use super::sled_store::{decode_ip, decode_key, encode_ip, encode_key};
use super::*;

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(id: &str) -> AttachmentKey {
    AttachmentKey {
        container_id: id.to_string(),
        ifname: "eth0".to_string(),
    }
}

fn req(id: &str) -> AllocateRequest {
    AllocateRequest {
        key: key(id),
        netns: Some(format!("/var/run/netns/{id}")),
        requested: Vec::new(),
    }
}

fn static_req(id: &str, ips: &[&str]) -> AllocateRequest {
    AllocateRequest {
        requested: ips.iter().map(|s| ip(s)).collect(),
        ..req(id)
    }
}

fn pool<S: PoolStore>(store: S, ranges: &[&str], reserved: &[&str]) -> Pool<S> {
    Pool::new(
        PoolConfig {
            ranges: ranges.iter().map(|r| net(r)).collect(),
            reserved: reserved.iter().map(|r| ip(r)).collect(),
        },
        store,
    )
    .unwrap()
}

fn v4(alloc: &Allocation) -> IpAddr {
    alloc.ips[0].ip()
}

// ---- The contract, written once, run against every store (see `contract!` below). ----

fn idempotent_repeat<S: PoolStore>(store: S) {
    let pool = pool(store, &["10.244.1.0/24", "fd00:1::/64"], &[]);
    let first = pool.allocate(&req("a")).unwrap();
    assert_eq!(first.ips, vec![net("10.244.1.2/24"), net("fd00:1::2/64")]);
    assert_eq!(first.gateways, vec![ip("10.244.1.1"), ip("fd00:1::1")]);
    assert_eq!(first.netns.as_deref(), Some("/var/run/netns/a"));
    // A different netns on the repeat changes nothing: the key decides.
    let again = pool
        .allocate(&AllocateRequest {
            netns: None,
            ..req("a")
        })
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(pool.list().unwrap(), vec![first.clone()]);
    // A repeat asking for the address it holds is fine, for another one is an error.
    assert_eq!(
        pool.allocate(&static_req("a", &["10.244.1.2"])).unwrap(),
        first
    );
    assert!(matches!(
        pool.allocate(&static_req("a", &["10.244.1.9"])),
        Err(IpamError::RequestMismatch { .. })
    ));
    // Another interface of the same container is another attachment.
    let eth1 = pool
        .allocate(&AllocateRequest {
            key: AttachmentKey {
                container_id: "a".into(),
                ifname: "eth1".into(),
            },
            netns: None,
            requested: vec![],
        })
        .unwrap();
    assert_eq!(v4(&eth1), ip("10.244.1.3"));
}

fn never_special_addresses<S: PoolStore>(store: S) {
    let pool = pool(
        store,
        &["10.0.0.0/28", "fd00::/124"],
        &["10.0.0.5", "fd00::3", "192.168.0.1"],
    );
    let mut seen = HashSet::new();
    while let Ok(alloc) = pool.allocate(&req(&format!("c{}", seen.len()))) {
        for n in &alloc.ips {
            assert!(seen.insert(n.ip()), "{} handed out twice", n.ip());
        }
    }
    let forbidden = [
        "10.0.0.0",
        "10.0.0.1",
        "10.0.0.15",
        "10.0.0.5",
        "fd00::",
        "fd00::1",
        "fd00::3",
    ];
    for f in forbidden {
        assert!(!seen.contains(&ip(f)), "{f} handed out");
    }
    // v4: 16 - network, gateway, broadcast, one reserved = 12; v6: 16 - anycast, gateway,
    // one reserved = 13, so v4 ran out first and v6 kept one address free.
    assert_eq!(seen.len(), 24);
    assert!(seen.contains(&ip("10.0.0.14")));
    assert!(seen.contains(&ip("fd00::f")) || seen.contains(&ip("fd00::e")));
}

fn freed_address_rests<S: PoolStore>(store: S) {
    let pool = pool(store, &["10.0.0.0/24"], &[]);
    let a = pool.allocate(&req("a")).unwrap();
    let b = pool.allocate(&req("b")).unwrap();
    assert_eq!((v4(&a), v4(&b)), (ip("10.0.0.2"), ip("10.0.0.3")));
    assert_eq!(pool.release(&key("a")).unwrap(), Some(a.clone()));
    let c = pool.allocate(&req("c")).unwrap();
    assert_eq!(v4(&c), ip("10.0.0.4"));
    // The same key coming back after release also gets a fresh address.
    assert_eq!(v4(&pool.allocate(&req("a")).unwrap()), ip("10.0.0.5"));
}

fn wraps_around<S: PoolStore>(store: S) {
    // /29: .0 network, .1 gateway, .7 broadcast, .2-.6 usable.
    let pool = pool(store, &["10.0.0.0/29"], &[]);
    for i in 0..5 {
        pool.allocate(&req(&format!("c{i}"))).unwrap();
    }
    pool.release(&key("c0")).unwrap();
    pool.release(&key("c2")).unwrap();
    // The cursor is at .6, the end: the next ones wrap to .2, then .4.
    assert_eq!(v4(&pool.allocate(&req("x")).unwrap()), ip("10.0.0.2"));
    assert_eq!(v4(&pool.allocate(&req("y")).unwrap()), ip("10.0.0.4"));
    let err = pool.allocate(&req("z")).unwrap_err();
    assert!(err.is_exhausted());
}

fn exhaustion_is_clear_and_all_or_nothing<S: PoolStore>(store: S) {
    // v4 /28 has 13 usable, v6 /125 only 6: v6 runs out first.
    let pool = pool(store, &["10.0.0.0/28", "fd00::/125"], &[]);
    for i in 0..6 {
        pool.allocate(&req(&format!("c{i}"))).unwrap();
    }
    let err = pool.allocate(&req("late")).unwrap_err();
    assert!(err.is_exhausted());
    match &err {
        IpamError::PoolExhausted { range, capacity } => {
            assert_eq!((*range, *capacity), (net("fd00::/125"), 6));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("fd00::/125"), "{err}");
    // No v4 address was kept for the failed request.
    assert_eq!(pool.get(&key("late")).unwrap(), None);
    assert_eq!(pool.store().owner_of(ip("10.0.0.8")).unwrap(), None);
    let usage = pool.usage().unwrap();
    assert_eq!((usage[0].used, usage[1].used), (6, 6));
    // Nor did the failure move the v4 cursor: after a release the next v4 address is .8.
    pool.release(&key("c0")).unwrap();
    let next = pool.allocate(&req("late")).unwrap();
    assert_eq!(next.ips, vec![net("10.0.0.8/28"), net("fd00::2/125")]);
}

fn static_requests<S: PoolStore>(store: S) {
    let pool = pool(store, &["10.0.0.0/24", "fd00::/64"], &["10.0.0.100"]);
    let a = pool.allocate(&static_req("a", &["10.0.0.50"])).unwrap();
    assert_eq!(a.ips, vec![net("10.0.0.50/24"), net("fd00::2/64")]);
    let b = pool
        .allocate(&static_req("b", &["fd00::abcd", "10.0.0.51"]))
        .unwrap();
    assert_eq!(b.ips, vec![net("10.0.0.51/24"), net("fd00::abcd/64")]);
    // A static request does not move the cursor.
    assert_eq!(v4(&pool.allocate(&req("c")).unwrap()), ip("10.0.0.2"));
    match pool.allocate(&static_req("d", &["10.0.0.50"])) {
        Err(IpamError::AddressInUse { ip: taken, owner }) => {
            assert_eq!((taken, owner), (ip("10.0.0.50"), key("a")));
        }
        other => panic!("unexpected {other:?}"),
    }
    for (bad, reason) in [
        ("10.0.0.0", "network"),
        ("10.0.0.1", "gateway"),
        ("10.0.0.255", "broadcast"),
        ("10.0.0.100", "reserved"),
        ("fd00::", "anycast"),
        ("fd00::1", "gateway"),
    ] {
        match pool.allocate(&static_req("d", &[bad])) {
            Err(IpamError::AddressReserved { reason: r, .. }) => {
                assert!(r.contains(reason), "{bad}: {r}");
            }
            other => panic!("{bad}: unexpected {other:?}"),
        }
    }
    assert!(matches!(
        pool.allocate(&static_req("d", &["10.0.1.5"])),
        Err(IpamError::AddressOutsidePool { .. })
    ));
    assert!(matches!(
        pool.allocate(&static_req("d", &["10.0.0.7", "10.0.0.8"])),
        Err(IpamError::RequestedFamilyTwice { .. })
    ));
    // None of the failures stored anything.
    assert_eq!(pool.get(&key("d")).unwrap(), None);
    assert_eq!(pool.list().unwrap().len(), 3);
}

fn release_unknown_is_none<S: PoolStore>(store: S) {
    let pool = pool(store, &["10.0.0.0/24"], &[]);
    assert_eq!(pool.release(&key("nope")).unwrap(), None);
    let a = pool.allocate(&req("a")).unwrap();
    assert_eq!(pool.release(&key("a")).unwrap(), Some(a));
    assert_eq!(pool.release(&key("a")).unwrap(), None);
    assert_eq!(pool.store().owner_of(ip("10.0.0.2")).unwrap(), None);
    assert!(pool.list().unwrap().is_empty());
}

fn list_and_usage<S: PoolStore>(store: S) {
    let pool = pool(
        store,
        &["10.0.0.0/24", "fd00::/64"],
        &["10.0.0.10", "10.0.0.1", "10.0.1.1"],
    );
    for i in 0..5 {
        pool.allocate(&req(&format!("c{i}"))).unwrap();
    }
    pool.release(&key("c3")).unwrap();
    let mut listed: Vec<String> = pool
        .list()
        .unwrap()
        .into_iter()
        .map(|a| a.key.container_id)
        .collect();
    listed.sort();
    assert_eq!(listed, ["c0", "c1", "c2", "c4"]);
    assert_eq!(
        pool.usage().unwrap(),
        vec![
            RangeUsage {
                range: net("10.0.0.0/24"),
                // 256 - network, gateway, broadcast - 10.0.0.10 (the other two do not count).
                capacity: 252,
                used: 4,
            },
            RangeUsage {
                range: net("fd00::/64"),
                capacity: (1u128 << 64) - 2,
                used: 4,
            },
        ]
    );
}

fn concurrent_allocations_are_distinct<S: PoolStore + 'static>(store: S) {
    let pool = Arc::new(pool(store, &["10.0.0.0/24", "fd00::/64"], &[]));
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || pool.allocate(&req(&format!("c{i}"))).unwrap())
        })
        .collect();
    let allocs: Vec<Allocation> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let addrs: HashSet<IpAddr> = allocs
        .iter()
        .flat_map(|a| a.ips.iter().map(IpNetwork::ip))
        .collect();
    assert_eq!(addrs.len(), 400);
    assert_eq!(pool.list().unwrap().len(), 200);
    for a in &allocs {
        for n in &a.ips {
            assert_eq!(
                pool.store().owner_of(n.ip()).unwrap().as_ref(),
                Some(&a.key)
            );
        }
    }
}

fn commit_refuses_a_stolen_address<S: PoolStore>(store: S) {
    // The store's own check, below the pool's lock: a second writer cannot take an address.
    let a = Allocation {
        key: key("a"),
        ips: vec![net("10.0.0.2/24")],
        gateways: vec![ip("10.0.0.1")],
        netns: None,
        created_unix: 0,
    };
    store.commit(&a, &[]).unwrap();
    let b = Allocation {
        key: key("b"),
        ..a.clone()
    };
    assert!(matches!(
        store.commit(&b, &[(net("10.0.0.0/24"), ip("10.0.0.2"))]),
        Err(IpamError::AddressInUse { .. })
    ));
    assert_eq!(store.get(&key("b")).unwrap(), None);
    assert_eq!(store.cursor(&net("10.0.0.0/24")).unwrap(), None);
    // Re-committing a key replaces its addresses and frees the old ones.
    let moved = Allocation {
        ips: vec![net("10.0.0.3/24")],
        ..a
    };
    store.commit(&moved, &[]).unwrap();
    assert_eq!(store.owner_of(ip("10.0.0.2")).unwrap(), None);
    assert_eq!(store.owner_of(ip("10.0.0.3")).unwrap(), Some(key("a")));
}

fn sled_store() -> SledPoolStore {
    let db = sled::Config::new().temporary(true).open().unwrap();
    SledPoolStore::open(&db).unwrap()
}

macro_rules! contract {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[test]
            fn idempotent_repeat() {
                super::idempotent_repeat($make);
            }
            #[test]
            fn never_special_addresses() {
                super::never_special_addresses($make);
            }
            #[test]
            fn freed_address_rests() {
                super::freed_address_rests($make);
            }
            #[test]
            fn wraps_around() {
                super::wraps_around($make);
            }
            #[test]
            fn exhaustion_is_clear_and_all_or_nothing() {
                super::exhaustion_is_clear_and_all_or_nothing($make);
            }
            #[test]
            fn static_requests() {
                super::static_requests($make);
            }
            #[test]
            fn release_unknown_is_none() {
                super::release_unknown_is_none($make);
            }
            #[test]
            fn list_and_usage() {
                super::list_and_usage($make);
            }
            #[test]
            fn concurrent_allocations_are_distinct() {
                super::concurrent_allocations_are_distinct($make);
            }
            #[test]
            fn commit_refuses_a_stolen_address() {
                super::commit_refuses_a_stolen_address($make);
            }
        }
    };
}

contract!(memory, MemoryPoolStore::default());
contract!(sled_temp, sled_store());

// ---- Configuration ----

#[test]
fn config_is_validated() {
    let new = |ranges: &[&str]| {
        Pool::new(
            PoolConfig {
                ranges: ranges.iter().map(|r| net(r)).collect(),
                reserved: vec![],
            },
            MemoryPoolStore::default(),
        )
    };
    assert!(matches!(new(&[]), Err(IpamError::NoRanges)));
    for tiny in ["10.0.0.0/31", "10.0.0.0/32", "fd00::/127", "fd00::/128"] {
        assert!(
            matches!(new(&[tiny]), Err(IpamError::InvalidRange { .. })),
            "{tiny}"
        );
    }
    assert!(matches!(
        new(&["10.0.0.0/24", "10.0.1.0/24"]),
        Err(IpamError::InvalidRange { .. })
    ));
    // The smallest pools: one v4 address, two v6 addresses.
    let p = new(&["10.0.0.0/30", "fd00::/126"]).unwrap();
    let a = p.allocate(&req("a")).unwrap();
    assert_eq!(a.ips, vec![net("10.0.0.2/30"), net("fd00::2/126")]);
    assert!(p.allocate(&req("b")).unwrap_err().is_exhausted());
    // Host bits are cleared.
    assert_eq!(
        new(&["10.0.0.9/24"]).unwrap().config().ranges,
        vec![net("10.0.0.0/24")]
    );
}

#[test]
fn gateway_is_first_host() {
    assert_eq!(
        crate::first_host(&net("10.244.3.0/24")),
        Some(ip("10.244.3.1"))
    );
    assert_eq!(
        crate::first_host(&net("fd00:1:2:3::/64")),
        Some(ip("fd00:1:2:3::1"))
    );
    assert_eq!(
        crate::first_host(&net("10.244.3.0/30")),
        Some(ip("10.244.3.1"))
    );
    for none in [
        "10.244.3.0/31",
        "10.244.3.4/32",
        "fd00::/127",
        "fd00::1/128",
    ] {
        assert_eq!(crate::first_host(&net(none)), None, "{none}");
    }
}

#[test]
fn key_encoding_round_trips_and_rejects_garbage() {
    for k in [
        key("abc"),
        AttachmentKey {
            container_id: "with\0nul".into(),
            ifname: "".into(),
        },
        AttachmentKey {
            container_id: "".into(),
            ifname: "eth0".into(),
        },
    ] {
        assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
    }
    assert!(decode_key(b"short").is_err());
    assert!(decode_key(&[0, 0, 0, 0, 0, 0, 0, 9, b'x']).is_err());
    assert!(decode_ip("x", &[1, 2, 3]).is_err());
}

// ---- sled persistence ----

#[test]
fn sled_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = ["10.0.0.0/24", "fd00::/64"];
    let (a, b) = {
        let db = sled::open(dir.path()).unwrap();
        let pool = pool(SledPoolStore::open(&db).unwrap(), &ranges, &[]);
        let a = pool.allocate(&req("a")).unwrap();
        let b = pool.allocate(&req("b")).unwrap();
        pool.release(&key("a")).unwrap();
        (a, b)
    };
    let db = crate::test_util::reopen_sled(dir.path());
    let pool = pool(SledPoolStore::open(&db).unwrap(), &ranges, &[]);
    assert_eq!(pool.list().unwrap(), vec![b.clone()]);
    assert_eq!(pool.get(&key("b")).unwrap(), Some(b.clone()));
    assert_eq!(pool.store().owner_of(v4(&b)).unwrap(), Some(key("b")));
    assert_eq!(pool.store().owner_of(v4(&a)).unwrap(), None);
    assert_eq!(
        pool.store().cursor(&net("10.0.0.0/24")).unwrap(),
        Some(ip("10.0.0.3"))
    );
    // Continues after the cursor: not a's freed .2.
    let c = pool.allocate(&req("c")).unwrap();
    assert_eq!(c.ips, vec![net("10.0.0.4/24"), net("fd00::4/64")]);
    assert_eq!(pool.allocate(&req("b")).unwrap(), b);
}

#[test]
fn corrupt_sled_records_are_errors() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let store = SledPoolStore::open(&db).unwrap();
    db.open_tree(TREE_ALLOC)
        .unwrap()
        .insert(encode_key(&key("a")), &b"{"[..])
        .unwrap();
    db.open_tree(TREE_OWNER)
        .unwrap()
        .insert(encode_ip(ip("10.0.0.2")), &b"xx"[..])
        .unwrap();
    assert!(matches!(
        store.get(&key("a")),
        Err(IpamError::Corrupt { .. })
    ));
    assert!(matches!(store.list(), Err(IpamError::Corrupt { .. })));
    assert!(matches!(
        store.owner_of(ip("10.0.0.2")),
        Err(IpamError::Corrupt { .. })
    ));
}

/// Not a pass/fail test: prints what flushing costs per allocation on this machine's disk.
/// `PODNET_BENCH_DIR=/var/lib/x cargo test -p podnet-ipam --release -- --ignored --nocapture
/// flush_cost` (the default, the system temp dir, may be a tmpfs where fsync is free).
#[test]
fn a_change_of_ranges_moves_new_allocations_and_keeps_running_pods() {
    let pool = pool(MemoryPoolStore::default(), &["10.244.2.0/24"], &[]);
    let old = pool.allocate(&req("old")).unwrap();
    assert_eq!(v4(&old), ip("10.244.2.2"));
    assert!(pool.outside_ranges().unwrap().is_empty());

    pool.set_ranges(vec![net("10.244.3.0/24")]).unwrap();
    let new = pool.allocate(&req("new")).unwrap();
    assert_eq!(v4(&new), ip("10.244.3.2"));
    assert_eq!(new.gateways, vec![ip("10.244.3.1")]);
    // The old pod keeps its address (a repeated ADD too) and is reported.
    assert_eq!(pool.allocate(&req("old")).unwrap(), old);
    assert_eq!(pool.outside_ranges().unwrap(), vec![old.clone()]);
    assert_eq!(pool.usage().unwrap()[0].range, net("10.244.3.0/24"));
    // An invalid change leaves the ranges as they were.
    assert!(pool
        .set_ranges(vec![net("10.0.0.0/24"), net("10.1.0.0/24")])
        .is_err());
    assert_eq!(pool.config().ranges, vec![net("10.244.3.0/24")]);
    assert!(pool.release(&key("old")).unwrap().is_some());
    assert!(pool.outside_ranges().unwrap().is_empty());
}

#[test]
fn keys_are_checked_as_cni_and_the_kernel_would() {
    let k = |c: &str, i: &str| AttachmentKey {
        container_id: c.into(),
        ifname: i.into(),
    };
    assert!(k("c1", "eth0").validate().is_ok());
    assert!(k(&"a".repeat(300), "net1").validate().is_ok());
    for bad in [
        k("../../x", "eth0"),
        k("", "eth0"),
        k("a\0b", "eth0"),
        k(&"a".repeat(100_000), "eth0"),
        k("c1", ""),
        k("c1", ".."),
        k("c1", "a/b"),
        k("c1", "e\u{e0}"),
        k("c1", "toolongname12345"),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
#[ignore]
fn flush_cost() {
    let base = std::env::var_os("PODNET_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let db = sled::open(dir.path()).unwrap();
    let pool = Arc::new(pool(
        SledPoolStore::open(&db).unwrap(),
        &["10.0.0.0/16"],
        &[],
    ));
    let n = 1000;
    let start = Instant::now();
    for i in 0..n {
        pool.allocate(&req(&format!("s{i}"))).unwrap();
    }
    let sequential = start.elapsed() / n;
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for i in 0..n / 8 {
                    pool.allocate(&req(&format!("p{t}-{i}"))).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let parallel = start.elapsed() / n;
    let store = MemoryPoolStore::default();
    let mem = pool_of(store);
    let start = Instant::now();
    for i in 0..n {
        mem.allocate(&req(&format!("m{i}"))).unwrap();
    }
    let memory = start.elapsed() / n;
    println!("per allocation: sled+flush sequential {sequential:?}, 8 threads {parallel:?}, memory {memory:?}");
}

fn pool_of(store: MemoryPoolStore) -> Pool<MemoryPoolStore> {
    pool(store, &["10.0.0.0/16"], &[])
}

// ---- Properties over random sequences of allocations and releases. ----

mod properties {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    /// One step of a random run: allocate or release one of a few keys.
    #[derive(Clone, Debug)]
    enum Op {
        Allocate(u8),
        Release(u8),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (0u8..40).prop_map(Op::Allocate),
                (0u8..40).prop_map(Op::Release),
            ],
            1..200,
        )
    }

    /// A /27: 29 addresses to hand out, fewer than the 40 keys, so runs
    /// also meet exhaustion.
    const RANGE: &str = "10.9.0.0/27";
    const CAPACITY: usize = 29;

    /// Applies `ops`, checking every step against a model (key ->
    /// address); returns the model.
    fn run<S: PoolStore>(pool: &Pool<S>, ops: &[Op]) -> BTreeMap<String, IpNetwork> {
        let mut model: BTreeMap<String, IpNetwork> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Allocate(k) => {
                    let id = format!("k{k}");
                    match pool.allocate(&req(&id)) {
                        Ok(a) => {
                            if let Some(held) = model.get(&id) {
                                assert_eq!(a.ips[0], *held, "a repeated ADD moved {id}");
                            }
                            model.insert(id, a.ips[0]);
                        }
                        Err(e) => {
                            assert!(e.is_exhausted(), "{e}");
                            assert_eq!(model.len(), CAPACITY, "exhausted with free addresses");
                        }
                    }
                }
                Op::Release(k) => {
                    let id = format!("k{k}");
                    let freed = pool.release(&key(&id)).unwrap();
                    assert_eq!(freed.is_some(), model.remove(&id).is_some());
                    assert!(
                        pool.get(&key(&id)).unwrap().is_none(),
                        "a release left {id}"
                    );
                }
            }
            let live = pool.list().unwrap();
            let distinct: HashSet<IpAddr> = live.iter().map(|a| a.ips[0].ip()).collect();
            assert_eq!(distinct.len(), live.len(), "an address held twice");
            assert_eq!(live.len(), model.len());
        }
        model
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn never_a_duplicate_and_a_release_always_frees(ops in ops()) {
            let pool = pool(MemoryPoolStore::default(), &[RANGE], &[]);
            run(&pool, &ops);
        }

        #[test]
        fn a_reopened_store_holds_exactly_what_was_acknowledged(ops in ops()) {
            let dir = tempfile::tempdir().unwrap();
            let model = {
                let db = sled::open(dir.path()).unwrap();
                let pool = pool(SledPoolStore::open(&db).unwrap(), &[RANGE], &[]);
                run(&pool, &ops)
            };
            let db = crate::test_util::reopen_sled(dir.path());
            let pool = pool(SledPoolStore::open(&db).unwrap(), &[RANGE], &[]);
            let got: BTreeMap<String, IpNetwork> = pool
                .list()
                .unwrap()
                .into_iter()
                .map(|a| (a.key.container_id, a.ips[0]))
                .collect();
            prop_assert_eq!(got, model);
        }
    }
}
