//! Splitting cluster ranges and choosing node CIDRs.

use std::net::IpAddr;
use std::time::Instant;

use super::*;

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn lease(node: &str, cidrs: &[&str]) -> NodeLease {
    NodeLease {
        node: node.to_string(),
        cidrs: cidrs.iter().map(|c| net(c)).collect(),
    }
}

fn v4_config(ranges: &[&str], prefix: u8) -> ClusterConfig {
    ClusterConfig::new(
        ranges.iter().map(|r| net(r)).collect(),
        prefix,
        DEFAULT_NODE_PREFIX_V6,
    )
    .unwrap()
}

#[test]
fn node_prefix_follows_gke_sizing() {
    let table = [
        (1, 30),
        (2, 29),
        (3, 29),
        (4, 29),
        (5, 28),
        (8, 28),
        (9, 27),
        (16, 27),
        (17, 26),
        (32, 26),
        (33, 25),
        (64, 25),
        (65, 24),
        (110, 24),
        (128, 24),
        (129, 23),
        (256, 23),
        (257, 22),
        (1 << 31, 0),
    ];
    for (pods, prefix) in table {
        assert_eq!(node_prefix_v4(pods).unwrap(), prefix, "max_pods {pods}");
        // The block must hold the pods besides network, gateway and broadcast.
        let usable = (1u64 << (32 - prefix)) - 3;
        assert!(usable >= u64::from(pods), "max_pods {pods}");
    }
    assert!(matches!(
        node_prefix_v4(0),
        Err(IpamError::InvalidMaxPods { max_pods: 0, .. })
    ));
    assert!(node_prefix_v4((1 << 31) + 1).is_err());
    assert!(node_prefix_v4(u32::MAX).is_err());
}

#[test]
fn splits_v4_ranges() {
    let all: Vec<_> = node_cidrs(net("10.244.0.0/22"), 24).collect();
    assert_eq!(
        all,
        vec![
            net("10.244.0.0/24"),
            net("10.244.1.0/24"),
            net("10.244.2.0/24"),
            net("10.244.3.0/24")
        ]
    );
    // Not aligned to anything larger than its own prefix.
    assert_eq!(node_cidrs(net("10.244.0.0/15"), 24).count(), 512);
    assert_eq!(
        node_cidrs(net("10.244.0.0/15"), 24).last(),
        Some(net("10.245.255.0/24"))
    );
    // Host bits are ignored.
    assert_eq!(
        node_cidrs(net("10.244.1.7/16"), 24).next(),
        Some(net("10.244.0.0/24"))
    );
    assert_eq!(node_cidrs(net("10.0.0.0/8"), 24).count(), 65536);
    // The whole IPv4 space, and the top block, do not overflow.
    assert_eq!(node_cidrs(net("0.0.0.0/0"), 2).count(), 4);
    assert_eq!(
        node_cidrs(net("255.255.255.0/24"), 26).last(),
        Some(net("255.255.255.192/26"))
    );
}

#[test]
fn splits_tiny_v4_ranges() {
    assert_eq!(
        node_cidrs(net("10.0.0.0/31"), 31).collect::<Vec<_>>(),
        vec![net("10.0.0.0/31")]
    );
    assert_eq!(
        node_cidrs(net("10.0.0.0/31"), 32).collect::<Vec<_>>(),
        vec![net("10.0.0.0/32"), net("10.0.0.1/32")]
    );
    assert_eq!(node_cidrs(net("10.0.0.5/32"), 32).count(), 1);
    // A node CIDR larger than the range, or longer than the family: nothing.
    assert_eq!(node_cidrs(net("10.0.0.0/31"), 30).count(), 0);
    assert_eq!(node_cidrs(net("10.0.0.0/24"), 33).count(), 0);
}

#[test]
fn tiny_v4_ranges_and_prefixes_are_rejected() {
    // A /31 or /32 node CIDR has no pod address left.
    for prefix in [31, 32] {
        assert!(matches!(
            ClusterConfig::new(vec![net("10.0.0.0/32")], prefix, 64),
            Err(IpamError::InvalidNodePrefix { .. })
        ));
    }
    // A /31 or /32 range is smaller than the smallest node CIDR.
    for range in ["10.0.0.0/31", "10.0.0.0/32"] {
        assert!(matches!(
            ClusterConfig::new(vec![net(range)], 30, 64),
            Err(IpamError::InvalidRange { .. })
        ));
    }
    assert!(matches!(
        ClusterConfig::new(vec![net("10.0.0.0/25")], 24, 64),
        Err(IpamError::InvalidRange { .. })
    ));
    assert!(matches!(
        ClusterConfig::new(vec![net("fd00::/48")], 24, 127),
        Err(IpamError::InvalidNodePrefix { prefix: 127, .. })
    ));
    assert!(matches!(
        ClusterConfig::new(vec![], 24, 64),
        Err(IpamError::NoRanges)
    ));
}

#[test]
fn splits_v6_ranges_lazily() {
    let mut it = node_cidrs(net("fd00:10::/48"), 64);
    assert_eq!(it.next(), Some(net("fd00:10::/64")));
    assert_eq!(it.next(), Some(net("fd00:10:0:1::/64")));
    assert_eq!(node_cidrs(net("fd00:10::/48"), 64).count(), 65536);
    assert_eq!(
        node_cidrs(net("fd00:10::/48"), 64).last(),
        Some(net("fd00:10:0:ffff::/64"))
    );
    assert_eq!(
        node_cidrs(net("fd00:10::/48"), 80).nth(65537),
        Some(net("fd00:10:0:1:1::/80"))
    );
    // 2^32 blocks: only laziness makes this instant.
    assert_eq!(
        node_cidrs(net("2001:db8::/32"), 64).nth(1 << 31),
        Some(net("2001:db8:8000::/64"))
    );
    // The whole space split in two, and as one block (the step overflows u128).
    assert_eq!(node_cidrs(net("::/0"), 1).count(), 2);
    assert_eq!(node_cidrs(net("::/0"), 0).count(), 1);
    assert_eq!(
        node_cidrs(net("ffff:ffff:ffff:ffff::/64"), 128).last(),
        Some(net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
    );
}

#[test]
fn config_normalises_and_accepts_unaligned_ranges() {
    let config = ClusterConfig::new(
        vec![net("10.244.1.7/15"), net("172.16.0.0/16"), net("fd00::/48")],
        24,
        64,
    )
    .unwrap();
    assert_eq!(config.ranges[0], net("10.244.0.0/15"));
    ClusterConfig::new(vec![net("10.0.0.0/8"), net("172.16.0.0/16")], 24, 64).unwrap();
}

#[test]
fn overlapping_ranges_are_rejected() {
    let err = ClusterConfig::new(
        vec![
            net("10.0.0.0/8"),
            net("172.16.0.0/16"),
            net("10.244.0.0/16"),
        ],
        24,
        64,
    )
    .unwrap_err();
    match err {
        IpamError::RangesOverlap { first, second } => {
            assert_eq!((first, second), (net("10.0.0.0/8"), net("10.244.0.0/16")));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(ClusterConfig::new(vec![net("fd00::/48"), net("fd00:0:0:1::/64")], 24, 64).is_err());
    // Same range twice.
    assert!(ClusterConfig::new(vec![net("10.0.0.0/16"), net("10.0.0.0/16")], 24, 64).is_err());
    // Different families never overlap, even with equal bits.
    ClusterConfig::new(vec![net("0.0.0.0/8"), net("::/8")], 24, 64).unwrap();
}

#[test]
fn chooses_lowest_free_and_same_node_keeps_its_cidr() {
    let config = v4_config(&["10.244.0.0/16"], 24);
    let taken = vec![
        lease("a", &["10.244.0.0/24"]),
        lease("b", &["10.244.2.0/24"]),
    ];
    assert_eq!(
        choose_node_cidrs(&config, "c", &taken).unwrap(),
        vec![net("10.244.1.0/24")]
    );
    assert_eq!(
        choose_node_cidrs(&config, "b", &taken).unwrap(),
        vec![net("10.244.2.0/24")]
    );
    // Even a lease the current config would not produce is given back unchanged.
    let odd = vec![lease("x", &["192.168.0.0/23"])];
    assert_eq!(
        choose_node_cidrs(&config, "x", &odd).unwrap(),
        vec![net("192.168.0.0/23")]
    );
}

#[test]
fn taken_cidrs_of_other_sizes_are_avoided() {
    let config = v4_config(&["10.244.0.0/16"], 24);
    // A /23 from a controller-manager, a /25 and a single host, none aligned to our /24 grid
    // in the same way.
    let taken = vec![
        lease("cm", &["10.244.0.0/23"]),
        lease("half", &["10.244.2.128/25"]),
        lease("host", &["10.244.3.9/32"]),
        lease("big", &["10.244.4.0/22"]),
    ];
    assert_eq!(
        choose_node_cidrs(&config, "n", &taken).unwrap(),
        vec![net("10.244.8.0/24")]
    );
    // A lease covering the whole range and more exhausts it.
    let covering = vec![lease("all", &["10.0.0.0/8"])];
    assert!(choose_node_cidrs(&config, "n", &covering)
        .unwrap_err()
        .is_exhausted());
    // Leases of the other family do not matter.
    let v6 = vec![lease("v6", &["::/0"])];
    assert_eq!(
        choose_node_cidrs(&config, "n", &v6).unwrap(),
        vec![net("10.244.0.0/24")]
    );
}

#[test]
fn falls_through_to_the_next_range_and_then_exhausts() {
    let config = v4_config(&["10.0.0.0/23", "172.16.0.0/24"], 24);
    let mut taken = Vec::new();
    let mut got = Vec::new();
    for i in 0..3 {
        let node = format!("n{i}");
        let cidrs = choose_node_cidrs(&config, &node, &taken).unwrap();
        got.push(cidrs[0]);
        taken.push(NodeLease { node, cidrs });
    }
    assert_eq!(
        got,
        vec![net("10.0.0.0/24"), net("10.0.1.0/24"), net("172.16.0.0/24")]
    );
    let err = choose_node_cidrs(&config, "n3", &taken).unwrap_err();
    assert!(err.is_exhausted());
    match &err {
        IpamError::ClusterExhausted {
            ranges,
            node_cidrs,
            node_prefix,
        } => {
            assert_eq!(ranges.len(), 2);
            assert_eq!((*node_cidrs, *node_prefix), (3, 24));
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("10.0.0.0/23") && msg.contains("172.16.0.0/24") && msg.contains('3'));
}

#[test]
fn dual_stack_gives_one_cidr_per_family() {
    let config = ClusterConfig::new(
        vec![
            net("fd00:10::/48"),
            net("10.244.0.0/16"),
            net("10.245.0.0/16"),
        ],
        24,
        64,
    )
    .unwrap();
    let taken = vec![lease("a", &["10.244.0.0/24", "fd00:10::/64"])];
    assert_eq!(
        choose_node_cidrs(&config, "b", &taken).unwrap(),
        vec![net("fd00:10:0:1::/64"), net("10.244.1.0/24")]
    );
    // One family exhausted fails the whole choice.
    let config = ClusterConfig::new(vec![net("10.0.0.0/24"), net("fd00::/64")], 24, 64).unwrap();
    let taken = vec![lease("a", &["10.0.0.0/24", "fd00::/64"])];
    assert!(choose_node_cidrs(&config, "b", &taken)
        .unwrap_err()
        .is_exhausted());
}

#[test]
fn choosing_with_5000_leases_is_fast() {
    let config = ClusterConfig::new(vec![net("10.0.0.0/8"), net("fd00::/48")], 24, 64).unwrap();
    // Leases in scrambled order with a hole at index 4321, to defeat any sorted-input luck.
    let mut taken: Vec<NodeLease> = (0u32..5001)
        .filter(|i| *i != 4321)
        .map(|i| {
            let v4 = IpNetwork::new(
                IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000u32 + (i << 8))),
                24,
            )
            .unwrap();
            let v6 = IpNetwork::new(
                IpAddr::from(std::net::Ipv6Addr::from(
                    0xfd00_0000_0000_0000_0000_0000_0000_0000u128 + (u128::from(i) << 64),
                )),
                64,
            )
            .unwrap();
            NodeLease {
                node: format!("node-{i}"),
                cidrs: vec![v4, v6],
            }
        })
        .collect();
    taken.reverse();
    taken.swap(17, 3000);
    let start = Instant::now();
    let got = choose_node_cidrs(&config, "new", &taken).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(got, vec![net("10.16.225.0/24"), net("fd00:0:0:10e1::/64")]);
    assert!(elapsed.as_millis() < 50, "took {elapsed:?}");
}
