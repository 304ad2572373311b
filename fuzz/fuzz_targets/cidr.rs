//! Cluster-range arithmetic: any ranges and node prefixes, any leases
//! already taken (any size, either family, overlapping or not). Whatever
//! podnet accepts, each node CIDR it hands out lies inside a configured
//! range, has the node prefix of its family and overlaps no lease; a
//! restarted node gets its own lease back; blocks of a range come in
//! address order without gaps.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use ipnetwork::IpNetwork;
use libfuzzer_sys::fuzz_target;
use podnet_ipam::{choose_node_cidrs, node_cidrs, ClusterConfig, NodeLease};

#[derive(Arbitrary, Debug)]
struct Net {
    v4: bool,
    addr: u128,
    prefix: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    ranges: Vec<Net>,
    prefix_v4: u8,
    prefix_v6: u8,
    taken: Vec<Net>,
    nodes: u8,
}

fn net(n: &Net) -> Option<IpNetwork> {
    let ip = if n.v4 {
        IpAddr::V4(Ipv4Addr::from(n.addr as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n.addr))
    };
    IpNetwork::new(ip, n.prefix).ok()
}

fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

fuzz_target!(|input: Input| {
    let ranges: Vec<IpNetwork> = input.ranges.iter().take(4).filter_map(net).collect();
    let Ok(config) = ClusterConfig::new(ranges, input.prefix_v4, input.prefix_v6) else {
        return;
    };
    let mut leases: Vec<NodeLease> = input
        .taken
        .iter()
        .take(8)
        .filter_map(net)
        .enumerate()
        .map(|(i, c)| NodeLease {
            node: format!("old-{i}"),
            cidrs: vec![c],
        })
        .collect();
    for n in 0..input.nodes.min(16) {
        let node = format!("node-{n}");
        let Ok(cidrs) = choose_node_cidrs(&config, &node, &leases) else {
            break;
        };
        for c in &cidrs {
            assert!(
                config
                    .ranges
                    .iter()
                    .any(|r| r.contains(c.network()) && r.prefix() <= c.prefix()),
                "{c} outside {:?}",
                config.ranges
            );
            assert_eq!(c.prefix(), config.node_prefix_for(c));
            assert_eq!(c.network(), c.ip(), "{c} has host bits");
            for l in &leases {
                assert!(
                    !l.cidrs.iter().any(|t| overlaps(t, c)),
                    "{c} overlaps {l:?}"
                );
            }
        }
        leases.push(NodeLease {
            node: node.clone(),
            cidrs: cidrs.clone(),
        });
        assert_eq!(choose_node_cidrs(&config, &node, &leases).ok(), Some(cidrs));
    }
    for range in &config.ranges {
        let prefix = config.node_prefix_for(range);
        let blocks: Vec<IpNetwork> = node_cidrs(*range, prefix).take(4).collect();
        for pair in blocks.windows(2) {
            assert!(pair[0].broadcast_or_last() < pair[1].network(), "{pair:?}");
        }
        for b in &blocks {
            assert!(
                range.contains(b.network()) && b.prefix() == prefix,
                "{b} of {range}"
            );
        }
    }
});

trait Last {
    fn broadcast_or_last(&self) -> IpAddr;
}

impl Last for IpNetwork {
    fn broadcast_or_last(&self) -> IpAddr {
        match self {
            IpNetwork::V4(n) => IpAddr::V4(n.broadcast()),
            IpNetwork::V6(n) => {
                let host = u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
            }
        }
    }
}
