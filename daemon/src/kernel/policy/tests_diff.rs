//! What changes between two rulesets, and in which order: pod churn
//! touches set and map elements and that pod's own chain, nothing else.

use super::tests::{allow, base, ip, pod, rules, set, SET1, SET2, T};
use super::tests_ops as ops;
use super::*;
use crate::policy::{Peers, Protocol, Ruleset};

const S1: &str = "peers-0000000000000001";
const S2: &str = "peers-0000000000000002";

fn changes(old: &Ruleset, new: &Ruleset) -> Vec<String> {
    diff(old, new).map(ops).unwrap_or_default()
}

fn position(ops: &[String], prefix: &str) -> usize {
    ops.iter()
        .position(|op| op.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {ops:#?}"))
}

#[test]
fn the_same_ruleset_needs_no_transaction() {
    assert!(diff(&base(), &base()).is_none());
    assert!(diff(&Ruleset::default(), &Ruleset::default()).is_none());
}

#[test]
fn a_peer_joining_a_set_is_one_element() {
    let mut new = base();
    new.peer_sets.insert(
        SET1,
        set(
            &[("10.244.1.4", "10.244.1.4"), ("10.244.1.9", "10.244.1.9")],
            &[("fd00:1::4", "fd00:1::4")],
        ),
    );
    assert_eq!(
        changes(&base(), &new),
        [format!("nft add element {T} {S1}-v4 {{ 10.244.1.9 }}")]
    );
}

#[test]
fn merged_intervals_delete_their_pieces_before_adding_the_whole() {
    let mut new = base();
    let v6 = [("fd00:1::4", "fd00:1::4")];
    new.peer_sets
        .insert(SET1, set(&[("10.244.1.4", "10.244.1.5")], &v6));
    assert_eq!(
        changes(&base(), &new),
        [
            format!("nft delete element {T} {S1}-v4 {{ 10.244.1.4 }}"),
            format!("nft add element {T} {S1}-v4 {{ 10.244.1.4-10.244.1.5 }}"),
        ]
    );
}

#[test]
fn a_new_isolated_pod_gets_its_chain_before_its_map_element() {
    let mut new = base();
    let from_ya = allow(Peers::Set(SET1), &[(Protocol::Tcp, 80, 80)], "x/allow");
    new.pods.insert(
        ip("10.244.1.3"),
        rules(pod("x", "b"), Some(vec![from_ya]), None),
    );
    assert_eq!(
        changes(&base(), &new),
        [
            format!("nft create chain {T} ingress/x/b"),
            format!("nft add rule {T} ingress/x/b ip saddr @{S1}-v4 meta l4proto tcp th dport 80 counter accept comment \"x/allow\""),
            format!("nft add rule {T} ingress/x/b counter drop comment \"ingress of x/b not allowed\""),
            format!("nft add element {T} ingress-v4 {{ 10.244.1.3 : jump ingress/x/b }}"),
        ]
    );
}

#[test]
fn a_pod_not_isolated_changes_nothing() {
    let mut new = base();
    new.pods
        .insert(ip("10.244.1.7"), rules(pod("z", "c"), None, None));
    assert!(diff(&base(), &new).is_none());
}

#[test]
fn a_pod_gone_loses_its_elements_then_its_chain_then_unused_sets() {
    let mut new = base();
    new.pods.remove(&ip("10.244.1.2"));
    new.peer_sets.clear();
    assert_eq!(
        changes(&base(), &new),
        [
            format!("nft delete element {T} ingress-v4 {{ 10.244.1.2 : jump ingress/x/a }}"),
            format!("nft delete chain {T} ingress/x/a"),
            format!("nft delete set {T} {S1}-v4"),
            format!("nft delete set {T} {S1}-v6"),
        ]
    );
}

#[test]
fn a_pod_no_longer_isolated_for_egress_leaves_both_maps() {
    let mut new = base();
    for a in ["10.244.1.4", "fd00:1::4"] {
        new.pods.get_mut(&ip(a)).unwrap().egress = None;
    }
    assert_eq!(
        changes(&base(), &new),
        [
            format!("nft delete element {T} egress-v4 {{ 10.244.1.4 : jump egress/y/a }}"),
            format!("nft delete element {T} egress-v6 {{ fd00:1::4 : jump egress/y/a }}"),
            format!("nft delete chain {T} egress/y/a"),
        ]
    );
}

#[test]
fn changed_allows_rewrite_that_pods_chain_only() {
    let mut new = base();
    let ports = [(Protocol::Tcp, 80, 80), (Protocol::Tcp, 443, 443)];
    new.pods.get_mut(&ip("10.244.1.2")).unwrap().ingress =
        Some(vec![allow(Peers::Set(SET1), &ports, "x/allow")]);
    let got = changes(&base(), &new);
    assert_eq!(got[0], format!("nft flush chain {T} ingress/x/a"));
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[1..].iter().all(|op| op.contains(" ingress/x/a ")));
}

#[test]
fn a_new_peer_set_exists_before_rules_name_it_and_the_old_goes_after() {
    let mut new = base();
    new.peer_sets.clear();
    new.peer_sets
        .insert(SET2, set(&[("10.0.0.0", "10.0.255.255")], &[]));
    new.pods.get_mut(&ip("10.244.1.2")).unwrap().ingress =
        Some(vec![allow(Peers::Set(SET2), &[], "x/block")]);
    let got = changes(&base(), &new);
    let made = position(&got, &format!("nft add set {T} {S2}-v4"));
    let filled = position(
        &got,
        &format!("nft add element {T} {S2}-v4 {{ 10.0.0.0-10.0.255.255 }}"),
    );
    let flushed = position(&got, &format!("nft flush chain {T} ingress/x/a"));
    let named = position(
        &got,
        &format!("nft add rule {T} ingress/x/a ip saddr @{S2}-v4"),
    );
    let gone = position(&got, &format!("nft delete set {T} {S1}-v4"));
    assert!(
        made < filled && filled < named && flushed < named && named < gone,
        "{got:#?}"
    );
    assert!(got.contains(&format!(
        "nft add set {T} {S2}-v6 {{ type ipv6_addr; flags interval; }}"
    )));
    assert!(!got.iter().any(|op| op.contains("egress")), "{got:#?}");
}

#[test]
fn a_map_element_leading_elsewhere_is_replaced_after_the_new_chain_exists() {
    let old = base();
    let mut new = base();
    // x/a's address now belongs to another pod (x/a gone, x/n new).
    let mut moved = new.pods.remove(&ip("10.244.1.2")).unwrap();
    moved.pod = pod("x", "n");
    new.pods.insert(ip("10.244.1.2"), moved);
    let got = changes(&old, &new);
    let created = position(&got, &format!("nft create chain {T} ingress/x/n"));
    let removed = position(
        &got,
        &format!("nft delete element {T} ingress-v4 {{ 10.244.1.2 : jump ingress/x/a }}"),
    );
    let added = position(
        &got,
        &format!("nft add element {T} ingress-v4 {{ 10.244.1.2 : jump ingress/x/n }}"),
    );
    let deleted = position(&got, &format!("nft delete chain {T} ingress/x/a"));
    assert!(
        created < added && removed < added && removed < deleted,
        "{got:#?}"
    );
}
