//! Truth tables across changes, and pods selectors never see.

use super::fixture::*;
use crate::policy::{
    compile, explain, Decision, ExplainError, Peers, Pod, PolicyType, Protocol, Verdict,
};

const TCP: Protocol = Protocol::Tcp;

const X_CLOSED: &str = "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  .  .  .  .  .  .
    xb  X  .  X  .  .  .  .  .  .
    xc  X  X  .  .  .  .  .  .  .
    ya  X  X  X  .  .  .  .  .  .
    yb  X  X  X  .  .  .  .  .  .
    yc  X  X  X  .  .  .  .  .  .
    za  X  X  X  .  .  .  .  .  .
    zb  X  X  X  .  .  .  .  .  .
    zc  X  X  X  .  .  .  .  .  .";

#[test]
fn policy_update_then_deletion() {
    let mut s = with(vec![policy("x", "p", all(), None, vec![], vec![])]);
    expect(&s, 80, TCP, X_CLOSED);

    std::sync::Arc::make_mut(&mut s.policies)[0].ingress =
        vec![rule(vec![namespaces(sel(&[("ns", "y")]))], vec![])];
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  .  .  .  .  .  .
    xb  X  .  X  .  .  .  .  .  .
    xc  X  X  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  X  X  X  .  .  .  .  .  .
    zb  X  X  X  .  .  .  .  .  .
    zc  X  X  X  .  .  .  .  .  .",
    );

    std::sync::Arc::make_mut(&mut s.policies).clear();
    expect(&s, 80, TCP, OPEN);
    assert!(compile(&s, "node-1")
        .pods
        .values()
        .all(|r| r.ingress.is_none() && r.egress.is_none()));
}

#[test]
fn pod_churn_changes_set_elements_not_rules() {
    let from_y = rule(vec![namespaces(sel(&[("ns", "y")]))], vec![]);
    let mut s = with(vec![policy(
        "x",
        "from-y",
        all(),
        None,
        vec![from_y],
        vec![],
    )]);
    let before = compile(&s, "node-1");

    let mut newcomer = s.pods.iter().find(|p| p.namespace == "y").cloned().unwrap();
    newcomer.name = "d".into();
    newcomer.ips = vec!["10.244.2.99".parse().unwrap()];
    s.pods.push(newcomer);
    let after = compile(&s, "node-1");

    let rules = |rs: &crate::policy::Ruleset| rs.pods.clone();
    assert_eq!(rules(&before), rules(&after), "the allows are unchanged");
    let ids: Vec<_> = before.peer_sets.keys().collect();
    assert_eq!(
        ids,
        after.peer_sets.keys().collect::<Vec<_>>(),
        "one set, same id"
    );
    let id = *ids[0];
    assert!(!before.peer_sets[&id].contains("10.244.2.99".parse().unwrap()));
    assert!(after.peer_sets[&id].contains("10.244.2.99".parse().unwrap()));
}

#[test]
fn identical_peers_share_one_set_across_policies_and_directions() {
    let y = || rule(vec![namespaces(sel(&[("ns", "y")]))], vec![]);
    let s = with(vec![
        policy("x", "in", sel(&[("pod", "a")]), None, vec![y()], vec![]),
        policy(
            "x",
            "out",
            sel(&[("pod", "c")]),
            Some(EGRESS),
            vec![],
            vec![y()],
        ),
        // Same peers, other port: another allow, the same set.
        policy(
            "z",
            "in-81",
            all(),
            None,
            vec![rule(vec![namespaces(sel(&[("ns", "y")]))], vec![tcp(81)])],
            vec![],
        ),
    ]);
    let rs = compile(&s, "node-1");
    assert_eq!(rs.peer_sets.len(), 1);
    let id = *rs.peer_sets.keys().next().unwrap();
    let xa = &rs.pods[&ip_of(&s, "x", "a", false)];
    let xc = &rs.pods[&ip_of(&s, "x", "c", false)];
    let za = &rs.pods[&ip_of(&s, "z", "a", false)];
    assert_eq!(xa.ingress.as_ref().unwrap()[0].peers, Peers::Set(id));
    assert_eq!(xc.egress.as_ref().unwrap()[0].peers, Peers::Set(id));
    assert_eq!(za.ingress.as_ref().unwrap()[0].peers, Peers::Set(id));
    // Pods of node-2 are not in node-1's rules.
    assert!(!rs.pods.contains_key(&ip_of(&s, "x", "b", false)));
}

/// A hostNetwork pod x/h labelled pod=b with its node's address, and a
/// pod x/n labelled pod=b without an address yet.
fn with_unselectable(node_of_h: &str) -> crate::policy::Snapshot {
    let from_b = rule(vec![pods(sel(&[("pod", "b")]))], vec![]);
    let mut s = with(vec![policy(
        "x",
        "from-b",
        sel(&[("pod", "a")]),
        None,
        vec![from_b],
        vec![],
    )]);
    let b = s
        .pods
        .iter()
        .find(|p| p.namespace == "x" && p.name == "b")
        .cloned()
        .unwrap();
    s.pods.push(Pod {
        name: "h".into(),
        node: node_of_h.into(),
        ips: vec!["172.18.0.2".parse().unwrap()],
        host_network: true,
        ..b.clone()
    });
    s.pods.push(Pod {
        name: "n".into(),
        node: "node-1".into(),
        ips: vec![],
        ..b
    });
    s
}

#[test]
fn host_network_pod_is_not_a_peer() {
    let s = with_unselectable("node-2");
    // Only x/b (both families) is in the set; x/h's node address is not.
    let rs = compile(&s, "node-1");
    assert_eq!(rs.peer_sets.len(), 1);
    let set = rs.peer_sets.values().next().unwrap();
    assert_eq!(set.v4.len() + set.v6.len(), 2);
    assert!(!set.contains("172.18.0.2".parse().unwrap()));
    // x/h gets no rules of its own on its node.
    assert!(!compile(&s, "node-2")
        .pods
        .contains_key(&"172.18.0.2".parse().unwrap()));

    let e = explain(&s, ("x", "h"), ("x", "a"), 80, TCP).unwrap();
    assert_eq!(e.verdict, Verdict::Deny);
    assert_eq!(e.egress, Decision::HostNetwork);
    assert!(matches!(e.ingress, Decision::Denied { .. }));
    assert!(!allowed_by_ruleset(
        &rs,
        e.dst,
        PolicyType::Ingress,
        e.src,
        80,
        TCP
    ));
    // The table of the selectable pods is unchanged by them.
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  .  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  X  .  .  .  .  .  .  .  .
    yb  X  .  .  .  .  .  .  .  .
    yc  X  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn host_network_pod_on_the_same_node_is_the_node() {
    let s = with_unselectable("node-1");
    let e = explain(&s, ("x", "h"), ("x", "a"), 80, TCP).unwrap();
    assert_eq!(e.verdict, Verdict::Allow);
    assert_eq!(e.ingress, Decision::FromOwnNode);
}

#[test]
fn pod_without_an_address_is_ignored() {
    let s = with_unselectable("node-2");
    let rs = compile(&s, "node-1");
    // x/n is on node-1 but has nothing to key rules by, and is in no set.
    assert_eq!(rs.pods.len(), 10, "x/a x/c y/b z/a z/c, two addresses each");
    assert!(rs.pods.values().all(|r| r.pod.name != "n"));
    assert_eq!(
        explain(&s, ("x", "n"), ("x", "a"), 80, TCP),
        Err(ExplainError::NoAddress {
            namespace: "x".into(),
            name: "n".into()
        })
    );
}
