//! The etcd store's pure parts; against a real etcd: tests/tests/etcd_store.rs.

use std::time::Duration;

use ipnetwork::IpNetwork;

use super::lease::refresh_interval;
use super::read::prefix_end;
use super::snapshot::Snapshot;
use crate::store::NodeRecord;

#[test]
fn prefix_end_increments_the_last_byte() {
    assert_eq!(prefix_end(b"/podnet/nodes/"), b"/podnet/nodes0".to_vec());
    assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
}

#[test]
fn refresh_is_a_third_of_the_ttl() {
    assert_eq!(refresh_interval(15), Duration::from_secs(5));
    assert_eq!(refresh_interval(2), Duration::from_millis(666));
    assert_eq!(refresh_interval(0), Duration::from_millis(100));
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

#[test]
fn snapshot_keeps_a_nodes_cidrs_only_while_free() {
    let mut snapshot = Snapshot::default();
    snapshot.owners.insert(net("10.0.0.0/24"), "a".into());
    snapshot.owners.insert(net("10.0.1.0/24"), "b".into());
    snapshot.records.insert(
        "c".into(),
        NodeRecord {
            node: "c".into(),
            cidrs: vec![net("10.0.2.0/24")],
            addresses: vec![],
            vtep_mac: None,
        },
    );
    assert_eq!(snapshot.held_by("a"), vec![net("10.0.0.0/24")]);
    assert_eq!(snapshot.held_by("c"), vec![net("10.0.2.0/24")]);
    assert!(snapshot.all_free_for(&[net("10.0.0.0/24"), net("10.0.3.0/24")], "a"));
    assert!(!snapshot.all_free_for(&[net("10.0.1.0/24")], "a"));
    let others: Vec<String> = snapshot.others("a").into_iter().map(|l| l.node).collect();
    assert_eq!(others, vec!["b".to_string(), "c".to_string()]);
}
