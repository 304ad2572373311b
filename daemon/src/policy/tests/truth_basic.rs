//! Truth tables: isolation, selectors, policies adding up (80/TCP unless
//! a case says otherwise). Rows are sources, columns destinations.

use super::fixture::*;
use crate::policy::{Operator, Protocol};

const TCP: Protocol = Protocol::Tcp;

#[test]
fn default_allow_without_policies() {
    expect(&world(), 80, TCP, OPEN);
}

#[test]
fn deny_all_ingress() {
    let s = with(vec![policy("x", "deny", all(), None, vec![], vec![])]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  .  .  .  .  .  .
    xb  X  .  X  .  .  .  .  .  .
    xc  X  X  .  .  .  .  .  .  .
    ya  X  X  X  .  .  .  .  .  .
    yb  X  X  X  .  .  .  .  .  .
    yc  X  X  X  .  .  .  .  .  .
    za  X  X  X  .  .  .  .  .  .
    zb  X  X  X  .  .  .  .  .  .
    zc  X  X  X  .  .  .  .  .  .",
    );
}

#[test]
fn deny_all_egress() {
    let s = with(vec![policy(
        "x",
        "deny",
        all(),
        Some(EGRESS),
        vec![],
        vec![],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  X  X  X  X  X  X
    xb  X  .  X  X  X  X  X  X  X
    xc  X  X  .  X  X  X  X  X  X
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn deny_all_both_directions() {
    let s = with(vec![policy("x", "deny", all(), Some(BOTH), vec![], vec![])]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  X  X  X  X  X  X
    xb  X  .  X  X  X  X  X  X  X
    xc  X  X  .  X  X  X  X  X  X
    ya  X  X  X  .  .  .  .  .  .
    yb  X  X  X  .  .  .  .  .  .
    yc  X  X  X  .  .  .  .  .  .
    za  X  X  X  .  .  .  .  .  .
    zb  X  X  X  .  .  .  .  .  .
    zc  X  X  X  .  .  .  .  .  .",
    );
}

#[test]
fn allow_all_ingress_with_an_empty_rule() {
    let s = with(vec![
        policy("x", "deny", all(), None, vec![], vec![]),
        policy(
            "x",
            "allow-all",
            all(),
            None,
            vec![rule(vec![], vec![])],
            vec![],
        ),
    ]);
    expect(&s, 80, TCP, OPEN);
    expect(&s, 81, Protocol::Udp, OPEN);
}

#[test]
fn specific_pod_selector_isolates_only_that_pod() {
    let s = with(vec![policy(
        "x",
        "deny-a",
        sel(&[("pod", "a")]),
        Some(INGRESS),
        vec![],
        vec![],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  X  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  X  .  .  .  .  .  .  .  .
    yb  X  .  .  .  .  .  .  .  .
    yc  X  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .",
    );
}

/// Only the pods of y (and x/a itself) reach x/a.
const ONLY_Y_TO_XA: &str = "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  X  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .";

#[test]
fn allow_from_a_namespace() {
    let from_y = rule(vec![namespaces(sel(&[("ns", "y")]))], vec![]);
    let s = with(vec![policy(
        "x",
        "from-y",
        sel(&[("pod", "a")]),
        None,
        vec![from_y],
        vec![],
    )]);
    expect(&s, 80, TCP, ONLY_Y_TO_XA);
}

#[test]
fn allow_from_a_pod_of_the_same_namespace() {
    let from_b = rule(vec![pods(sel(&[("pod", "b")]))], vec![]);
    let s = with(vec![policy(
        "x",
        "from-b",
        sel(&[("pod", "a")]),
        None,
        vec![from_b],
        vec![],
    )]);
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
fn namespace_selector_and_pod_selector_in_one_peer() {
    let from_yb = rule(
        vec![pods_in(sel(&[("ns", "y")]), sel(&[("pod", "b")]))],
        vec![],
    );
    let s = with(vec![policy(
        "x",
        "and",
        sel(&[("pod", "a")]),
        None,
        vec![from_yb],
        vec![],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  X  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  X  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  X  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn namespace_selector_or_pod_selector_as_two_peers() {
    let either = rule(
        vec![namespaces(sel(&[("ns", "y")])), pods(sel(&[("pod", "b")]))],
        vec![],
    );
    let s = with(vec![policy(
        "x",
        "or",
        sel(&[("pod", "a")]),
        None,
        vec![either],
        vec![],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  .  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn empty_namespace_selector_is_every_namespace_absent_is_own() {
    let everyone = rule(vec![namespaces(all())], vec![]);
    let s = with(vec![policy(
        "x",
        "all-ns",
        sel(&[("pod", "a")]),
        None,
        vec![everyone],
        vec![],
    )]);
    expect(&s, 80, TCP, OPEN);

    let own = rule(vec![pods(all())], vec![]);
    let s = with(vec![policy(
        "x",
        "own-ns",
        sel(&[("pod", "a")]),
        None,
        vec![own],
        vec![],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  X  .  .  .  .  .  .  .  .
    yb  X  .  .  .  .  .  .  .  .
    yc  X  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn match_expressions_in() {
    let from = rule(
        vec![namespaces(expr("ns", Operator::In, &["y", "z"]))],
        vec![],
    );
    let s = with(vec![policy(
        "x",
        "in",
        sel(&[("pod", "a")]),
        None,
        vec![from],
        vec![],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  X  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn match_expressions_not_in_on_the_target() {
    // Protects x/b and x/c; only x's own pods may reach them.
    let target = expr("pod", Operator::NotIn, &["a"]);
    let s = with(vec![policy(
        "x",
        "not-in",
        target,
        None,
        vec![rule(vec![pods(all())], vec![])],
        vec![],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  X  X  .  .  .  .  .  .
    yb  .  X  X  .  .  .  .  .  .
    yc  .  X  X  .  .  .  .  .  .
    za  .  X  X  .  .  .  .  .  .
    zb  .  X  X  .  .  .  .  .  .
    zc  .  X  X  .  .  .  .  .  .",
    );
}

/// Namespace z labelled team=blue, and a policy on x/a with `from`.
fn team_world(from: crate::policy::Peer) -> crate::policy::Snapshot {
    let mut s = with(vec![policy(
        "x",
        "team",
        sel(&[("pod", "a")]),
        None,
        vec![rule(vec![from], vec![])],
        vec![],
    )]);
    let z = std::sync::Arc::make_mut(&mut s.namespaces)
        .iter_mut()
        .find(|n| n.name == "z")
        .unwrap();
    z.labels.insert("team".into(), "blue".into());
    s
}

#[test]
fn match_expressions_exists() {
    let s = team_world(namespaces(expr("team", Operator::Exists, &[])));
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  X  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  X  .  .  .  .  .  .  .  .
    yb  X  .  .  .  .  .  .  .  .
    yc  X  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn match_expressions_does_not_exist() {
    let s = team_world(namespaces(expr("team", Operator::DoesNotExist, &[])));
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn policies_add_up() {
    let s = with(vec![
        policy(
            "x",
            "from-b",
            sel(&[("pod", "a")]),
            None,
            vec![rule(vec![pods(sel(&[("pod", "b")]))], vec![])],
            vec![],
        ),
        policy(
            "x",
            "from-y",
            sel(&[("pod", "a")]),
            None,
            vec![rule(vec![namespaces(sel(&[("ns", "y")]))], vec![])],
            vec![],
        ),
    ]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  .  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn a_policy_affects_only_its_own_namespace() {
    // y denies all ingress; x's allow-all policy changes nothing for y.
    let s = with(vec![
        policy("y", "deny", all(), None, vec![], vec![]),
        policy(
            "x",
            "allow-all",
            all(),
            None,
            vec![rule(vec![], vec![])],
            vec![],
        ),
    ]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  X  X  X  .  .  .
    xb  .  .  .  X  X  X  .  .  .
    xc  .  .  .  X  X  X  .  .  .
    ya  .  .  .  .  X  X  .  .  .
    yb  .  .  .  X  .  X  .  .  .
    yc  .  .  .  X  X  .  .  .  .
    za  .  .  .  X  X  X  .  .  .
    zb  .  .  .  X  X  X  .  .  .
    zc  .  .  .  X  X  X  .  .  .",
    );
}
