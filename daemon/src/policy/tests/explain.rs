//! `explain`'s decisions, beyond the verdicts the truth tables check.

use super::fixture::*;
use crate::policy::{explain, Decision, ExplainError, PolicyRef, Protocol, Verdict};

const TCP: Protocol = Protocol::Tcp;

fn policy_ref(ns: &str, name: &str) -> PolicyRef {
    PolicyRef {
        namespace: ns.into(),
        name: name.into(),
    }
}

#[test]
fn names_the_policies_that_allow() {
    let s = with(vec![
        policy("x", "deny", all(), None, vec![], vec![]),
        policy(
            "x",
            "from-y",
            sel(&[("pod", "a")]),
            None,
            vec![rule(vec![namespaces(sel(&[("ns", "y")]))], vec![])],
            vec![],
        ),
        policy(
            "x",
            "from-y-80",
            all(),
            None,
            vec![rule(vec![namespaces(sel(&[("ns", "y")]))], vec![tcp(80)])],
            vec![],
        ),
    ]);
    let e = explain(&s, ("y", "b"), ("x", "a"), 80, TCP).unwrap();
    assert_eq!(e.verdict, Verdict::Allow);
    assert_eq!(e.egress, Decision::NotIsolated);
    assert_eq!(
        e.ingress,
        Decision::Allowed {
            by: vec![policy_ref("x", "from-y"), policy_ref("x", "from-y-80")]
        }
    );
    assert_eq!(e.src, ip_of(&s, "y", "b", false));
    assert_eq!(e.dst, ip_of(&s, "x", "a", false));

    let e = explain(&s, ("y", "b"), ("x", "a"), 81, TCP).unwrap();
    assert_eq!(
        e.ingress,
        Decision::Allowed {
            by: vec![policy_ref("x", "from-y")]
        }
    );

    let e = explain(&s, ("z", "b"), ("x", "a"), 80, TCP).unwrap();
    assert_eq!(e.verdict, Verdict::Deny);
    assert_eq!(
        e.ingress,
        Decision::Denied {
            isolated_by: vec![
                policy_ref("x", "deny"),
                policy_ref("x", "from-y"),
                policy_ref("x", "from-y-80")
            ]
        }
    );
    assert!(e.ingress.is_isolated() && !e.ingress.allows());
}

#[test]
fn egress_side_is_the_source_pods() {
    let s = with(vec![policy(
        "x",
        "deny-out",
        all(),
        Some(EGRESS),
        vec![],
        vec![],
    )]);
    let e = explain(&s, ("x", "a"), ("y", "a"), 80, TCP).unwrap();
    assert_eq!(e.verdict, Verdict::Deny);
    assert_eq!(
        e.egress,
        Decision::Denied {
            isolated_by: vec![policy_ref("x", "deny-out")]
        }
    );
    assert_eq!(e.ingress, Decision::NotIsolated);
}

#[test]
fn a_pod_reaches_itself() {
    let s = with(vec![policy("x", "deny", all(), Some(BOTH), vec![], vec![])]);
    let e = explain(&s, ("x", "a"), ("x", "a"), 80, TCP).unwrap();
    assert_eq!(e.verdict, Verdict::Allow);
    assert_eq!(
        (e.egress, e.ingress),
        (Decision::Loopback, Decision::Loopback)
    );
}

#[test]
fn ipv6_only_destination_uses_the_sources_ipv6_address() {
    let mut s = world();
    pod_mut(&mut s, "y", "a").ips.retain(|ip| ip.is_ipv6());
    let e = explain(&s, ("x", "a"), ("y", "a"), 80, TCP).unwrap();
    assert!(e.src.is_ipv6() && e.dst.is_ipv6());

    pod_mut(&mut s, "x", "a").ips.retain(|ip| ip.is_ipv4());
    assert!(matches!(
        explain(&s, ("x", "a"), ("y", "a"), 80, TCP),
        Err(ExplainError::NoCommonFamily { .. })
    ));
}

#[test]
fn unknown_pod() {
    assert_eq!(
        explain(&world(), ("x", "a"), ("w", "a"), 80, TCP),
        Err(ExplainError::UnknownPod {
            namespace: "w".into(),
            name: "a".into()
        })
    );
}
