//! The table a ruleset becomes, message by message, without a kernel; in
//! a kernel, with real packets: tests/tests/policy_kernel.rs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::names;
use super::tests_ops as ops;
use super::*;
use crate::policy::{
    Allow, PeerSet, PeerSetId, Peers, PodRef, PodRules, PolicyRef, PolicyType, PortMatch, Protocol,
    Ruleset,
};

pub(super) const SET1: PeerSetId = PeerSetId(1);
pub(super) const SET2: PeerSetId = PeerSetId(2);
pub(super) const T: &str = "inet podnet-policy";

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn pod(ns: &str, name: &str) -> PodRef {
    PodRef {
        namespace: ns.into(),
        name: name.into(),
    }
}

pub(super) fn allow(peers: Peers, ports: &[(Protocol, u16, u16)], policy: &str) -> Allow {
    let (namespace, name) = policy.split_once('/').unwrap();
    Allow {
        peers,
        ports: ports
            .iter()
            .map(|&(protocol, first, last)| PortMatch {
                protocol,
                first,
                last,
            })
            .collect(),
        policies: vec![PolicyRef {
            namespace: namespace.into(),
            name: name.into(),
        }],
    }
}

pub(super) fn set(v4: &[(&str, &str)], v6: &[(&str, &str)]) -> PeerSet {
    PeerSet {
        v4: v4
            .iter()
            .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
            .collect(),
        v6: v6
            .iter()
            .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
            .collect(),
    }
}

pub(super) fn rules(
    p: PodRef,
    ingress: Option<Vec<Allow>>,
    egress: Option<Vec<Allow>>,
) -> PodRules {
    PodRules {
        pod: p,
        ingress,
        egress,
    }
}

/// x/a (10.244.1.2) isolated for ingress, open to y/a on TCP 80; y/a
/// (10.244.1.4, fd00:1::4) isolated for egress, open to anyone on UDP 53.
pub(super) fn base() -> Ruleset {
    let from_ya = allow(Peers::Set(SET1), &[(Protocol::Tcp, 80, 80)], "x/allow");
    let dns = allow(Peers::Any, &[(Protocol::Udp, 53, 53)], "y/dns");
    let ya = rules(pod("y", "a"), None, Some(vec![dns]));
    let mut pods = BTreeMap::new();
    pods.insert(
        ip("10.244.1.2"),
        rules(pod("x", "a"), Some(vec![from_ya]), None),
    );
    pods.insert(ip("10.244.1.4"), ya.clone());
    pods.insert(ip("fd00:1::4"), ya);
    Ruleset {
        peer_sets: [(
            SET1,
            set(
                &[("10.244.1.4", "10.244.1.4")],
                &[("fd00:1::4", "fd00:1::4")],
            ),
        )]
        .into(),
        pods,
    }
}

#[test]
fn the_whole_table_sets_then_pod_chains_then_maps_then_base_chains() {
    let s1 = "peers-0000000000000001";
    let expected = [
        format!("nft add table {T}"),
        format!("nft delete table {T}"),
        format!("nft create table {T}"),
        format!("nft add set {T} {s1}-v4 {{ type ipv4_addr; flags interval; }}"),
        format!("nft add element {T} {s1}-v4 {{ 10.244.1.4 }}"),
        format!("nft add set {T} {s1}-v6 {{ type ipv6_addr; flags interval; }}"),
        format!("nft add element {T} {s1}-v6 {{ fd00:1::4 }}"),
        format!("nft create chain {T} egress/y/a"),
        format!("nft add rule {T} egress/y/a meta l4proto udp th dport 53 counter return comment \"y/dns\""),
        format!("nft add rule {T} egress/y/a counter drop comment \"egress of y/a not allowed\""),
        format!("nft create chain {T} ingress/x/a"),
        format!("nft add rule {T} ingress/x/a ip saddr @{s1}-v4 meta l4proto tcp th dport 80 counter accept comment \"x/allow\""),
        format!("nft add rule {T} ingress/x/a counter drop comment \"ingress of x/a not allowed\""),
        format!("nft add map {T} egress-v4 {{ type ipv4_addr : verdict; }}"),
        format!("nft add element {T} egress-v4 {{ 10.244.1.4 : jump egress/y/a }}"),
        format!("nft add map {T} egress-v6 {{ type ipv6_addr : verdict; }}"),
        format!("nft add element {T} egress-v6 {{ fd00:1::4 : jump egress/y/a }}"),
        format!("nft add map {T} ingress-v4 {{ type ipv4_addr : verdict; }}"),
        format!("nft add element {T} ingress-v4 {{ 10.244.1.2 : jump ingress/x/a }}"),
        format!("nft add map {T} ingress-v6 {{ type ipv6_addr : verdict; }}"),
        format!("nft create chain {T} forward {{ type filter hook forward priority 0; policy accept; }}"),
        format!("nft add rule {T} forward ct state established,related accept"),
        format!("nft add rule {T} forward ct state invalid drop"),
        format!("nft add rule {T} forward meta nfproto ipv6 meta l4proto 58 [payload] [cmp] [cmp] accept comment \"IPv6 neighbour discovery\""),
        format!("nft add rule {T} forward ip saddr vmap @egress-v4"),
        format!("nft add rule {T} forward ip6 saddr vmap @egress-v6"),
        format!("nft add rule {T} forward ip daddr vmap @ingress-v4"),
        format!("nft add rule {T} forward ip6 daddr vmap @ingress-v6"),
        format!("nft create chain {T} input {{ type filter hook input priority 0; policy accept; }}"),
        format!("nft add rule {T} input ct state established,related accept"),
        format!("nft add rule {T} input meta nfproto ipv6 meta l4proto 58 [payload] [cmp] [cmp] accept comment \"IPv6 neighbour discovery\""),
        format!("nft add rule {T} input ip saddr vmap @egress-v4"),
        format!("nft add rule {T} input ip6 saddr vmap @egress-v6"),
    ];
    assert_eq!(ops(full(&base())), expected);
}

#[test]
fn an_empty_ruleset_still_has_its_maps_and_base_chains() {
    let got = ops(full(&Ruleset::default()));
    assert_eq!(got.len(), 3 + 4 + 2 + 7 + 4);
    assert!(got.iter().all(|op| !op.contains("element")));
}

/// The chain of x/a's ingress in a ruleset where x/a has these allows.
fn ingress_chain_of(allows: Vec<Allow>, addrs: &[&str]) -> Vec<String> {
    let mut r = Ruleset::default();
    for a in addrs {
        r.pods
            .insert(ip(a), rules(pod("x", "a"), Some(allows.clone()), None));
    }
    r.peer_sets.insert(SET1, PeerSet::default());
    ops(full(&r))
        .into_iter()
        .filter_map(|op| {
            op.strip_prefix(&format!("nft add rule {T} ingress/x/a "))
                .map(String::from)
        })
        .collect()
}

#[test]
fn port_ranges_compare_both_ends_and_any_port_is_no_match() {
    let allows = vec![
        allow(Peers::Any, &[(Protocol::Sctp, 8000, 8080)], "x/range"),
        allow(Peers::Any, &[], "x/all"),
    ];
    assert_eq!(
        ingress_chain_of(allows, &["10.244.1.2"]),
        [
            "meta l4proto 132 th dport >= 8000 th dport <= 8080 counter accept comment \"x/range\"",
            "counter accept comment \"x/all\"",
            "counter drop comment \"ingress of x/a not allowed\"",
        ]
    );
}

#[test]
fn a_pod_tests_peers_of_its_own_ip_versions_one_rule_per_port() {
    let ports = [(Protocol::Tcp, 80, 80), (Protocol::Udp, 53, 53)];
    let allows = vec![allow(Peers::Set(SET1), &ports, "x/p")];
    let s = "@peers-0000000000000001";
    assert_eq!(
        ingress_chain_of(allows.clone(), &["10.244.1.2"]),
        [
            format!("ip saddr {s}-v4 meta l4proto tcp th dport 80 counter accept comment \"x/p\""),
            format!("ip saddr {s}-v4 meta l4proto udp th dport 53 counter accept comment \"x/p\""),
            "counter drop comment \"ingress of x/a not allowed\"".into(),
        ]
    );
    let dual = ingress_chain_of(allows, &["10.244.1.2", "fd00:1::2"]);
    assert_eq!(dual.len(), 5, "{dual:#?}");
    assert!(dual[2].starts_with(&format!("ip6 saddr {s}-v6 meta l4proto tcp")));
}

#[test]
fn a_dual_stack_pod_shares_one_chain_between_both_maps() {
    let got = ops(full(&base()));
    let chains: Vec<_> = got
        .iter()
        .filter(|op| op.contains("create chain"))
        .collect();
    assert_eq!(chains.len(), 4, "{chains:#?}");
    assert!(got.contains(&format!(
        "nft add element {T} egress-v6 {{ fd00:1::4 : jump egress/y/a }}"
    )));
}

#[test]
fn addresses_of_one_pod_with_different_rules_get_chains_of_their_own() {
    let mut r = base();
    let other = allow(Peers::Any, &[], "y/other");
    r.pods.get_mut(&ip("fd00:1::4")).unwrap().egress = Some(vec![other]);
    let got = ops(full(&r));
    assert!(got.contains(&format!("nft create chain {T} egress/y/a")));
    let own = got
        .iter()
        .find(|op| op.starts_with(&format!("nft create chain {T} egress/y/a/fd00_")))
        .expect("a chain of fd00:1::4's own");
    let name = own.rsplit(' ').next().unwrap();
    assert!(got.contains(&format!(
        "nft add element {T} egress-v6 {{ fd00:1::4 : jump {name} }}"
    )));
}

#[test]
fn chain_names_are_the_pod_sanitised_and_bounded() {
    assert_eq!(
        names::pod_chain(PolicyType::Ingress, &pod("x", "a")),
        "ingress/x/a"
    );
    assert_eq!(
        names::pod_chain(PolicyType::Egress, &pod("kube-system", "coredns-5d.7")),
        "egress/kube-system/coredns-5d.7"
    );
    let long = |tail: &str| {
        let name = format!("{}{tail}", "p".repeat(240));
        names::pod_chain(PolicyType::Ingress, &pod(&"n".repeat(63), &name))
    };
    let (one, two) = (long("1"), long("2"));
    assert_eq!(one.len(), 96);
    assert_ne!(one, two, "cut names keep a hash of the whole");
    assert!(one.contains('~'));
    let odd = names::pod_chain(PolicyType::Ingress, &pod("x", "A b"));
    assert!(odd.starts_with("ingress/x/__b~"), "{odd}");
    assert_ne!(odd, names::pod_chain(PolicyType::Ingress, &pod("x", "a_b")));
}
