//! Truth tables: egress, policyTypes, ipBlocks.

use super::fixture::*;
use crate::policy::{compile, Peers, PortMatch, Protocol};

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;

/// x/a reaches nothing but itself.
const XA_SILENT: &str = "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  X  X  X  X  X  X
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .";

#[test]
fn egress_to_a_single_pod() {
    let to_b = rule(vec![pods(sel(&[("pod", "b")]))], vec![]);
    let s = with(vec![policy(
        "x",
        "to-b",
        sel(&[("pod", "a")]),
        Some(EGRESS),
        vec![],
        vec![to_b],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  X  X  X  X  X  X  X
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn egress_to_a_namespace() {
    let to_y = rule(vec![namespaces(sel(&[("ns", "y")]))], vec![]);
    let s = with(vec![policy(
        "x",
        "to-y",
        all(),
        Some(EGRESS),
        vec![],
        vec![to_y],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  .  .  .  X  X  X
    xb  X  .  X  .  .  .  X  X  X
    xc  X  X  .  .  .  .  X  X  X
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn egress_deny_all_but_dns() {
    let dns = rule(vec![], vec![port(UDP, 53)]);
    let s = with(vec![policy(
        "x",
        "dns-only",
        all(),
        Some(EGRESS),
        vec![],
        vec![dns],
    )]);
    expect(&s, 53, UDP, OPEN);
    expect(
        &s,
        53,
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
fn named_port_egress() {
    let web = rule(vec![], vec![named(TCP, "serve-80-tcp")]);
    let s = with(vec![policy(
        "x",
        "web",
        sel(&[("pod", "a")]),
        Some(EGRESS),
        vec![],
        vec![web],
    )]);
    expect(&s, 80, TCP, OPEN);
    expect(&s, 81, TCP, XA_SILENT);
    expect(&s, 80, UDP, XA_SILENT);
}

#[test]
fn named_port_egress_resolves_per_destination() {
    // In y, serve-80-tcp is port 81: x/a may reach y's pods on 81 and the
    // others on 80, one peer set per resolved number.
    let web = rule(vec![namespaces(all())], vec![named(TCP, "serve-80-tcp")]);
    let mut s = with(vec![policy(
        "x",
        "web",
        sel(&[("pod", "a")]),
        Some(EGRESS),
        vec![],
        vec![web],
    )]);
    for name in PODS {
        for p in &mut pod_mut(&mut s, "y", name).ports {
            match p.name.as_deref() {
                Some("serve-80-tcp") => p.port = 81,
                Some("serve-81-tcp") => p.port = 80,
                _ => {}
            }
        }
    }
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  X  X  X  .  .  .
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
    expect(
        &s,
        81,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  .  .  .  X  X  X
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
    let xa = ip_of(&s, "x", "a", false);
    let rs = compile(&s, "node-1");
    let egress = rs.pods[&xa].egress.clone().unwrap();
    let mut ports: Vec<_> = egress.iter().map(|a| a.ports.clone()).collect();
    ports.sort();
    let single = |n| {
        vec![PortMatch {
            protocol: TCP,
            first: n,
            last: n,
        }]
    };
    assert_eq!(ports, vec![single(80), single(81)]);
    for a in &egress {
        let Peers::Set(id) = a.peers else {
            panic!("named groups are sets")
        };
        // Three pods of y on 81; six of x and z on 80; both families.
        let expected = if a.ports == single(81) { 3 } else { 6 };
        assert_eq!(rs.peer_sets[&id].v4.len(), expected);
        assert_eq!(rs.peer_sets[&id].v6.len(), expected);
    }
}

#[test]
fn policy_types_inferred_from_egress_rules() {
    // No policyTypes and an egress rule: Ingress and Egress both, so x/a
    // takes no connection and opens only those to x/b.
    let to_b = rule(vec![pods(sel(&[("pod", "b")]))], vec![]);
    let s = with(vec![policy(
        "x",
        "inferred",
        sel(&[("pod", "a")]),
        None,
        vec![],
        vec![to_b],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  X  X  X  X  X  X  X
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

#[test]
fn policy_types_egress_only_leaves_ingress_open() {
    // The ingress rule is ignored: policyTypes says Egress only.
    let from_b = rule(vec![pods(sel(&[("pod", "b")]))], vec![]);
    let to_c = rule(vec![pods(sel(&[("pod", "c")]))], vec![]);
    let s = with(vec![policy(
        "x",
        "egress-only",
        sel(&[("pod", "a")]),
        Some(EGRESS),
        vec![from_b],
        vec![to_c],
    )]);
    expect(
        &s,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  X  .  X  X  X  X  X  X
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
}

#[test]
fn ip_block_with_except_egress() {
    // node-2's pod CIDR holds x/b, y/a, y/c, z/b; x/b is carved out.
    let to_node2 = rule(vec![block("10.244.2.0/24", &["10.244.2.11/32"])], vec![]);
    let s = with(vec![policy(
        "x",
        "cidr",
        sel(&[("pod", "a")]),
        Some(EGRESS),
        vec![],
        vec![to_node2],
    )]);
    expect_family(
        &s,
        false,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  X  X  .  X  .  X  .  X
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
    // An IPv4 block says nothing of IPv6: x/a reaches no one there.
    expect_family(&s, true, 80, TCP, XA_SILENT);
    agrees_with_explain(&s, 80, TCP);
}

#[test]
fn ip_block_with_except_ingress_ipv6() {
    let from_node2 = rule(vec![block("fd00:2::/64", &["fd00:2::17/128"])], vec![]);
    let s = with(vec![policy(
        "x",
        "cidr6",
        sel(&[("pod", "a")]),
        None,
        vec![from_node2],
        vec![],
    )]);
    // z/b (fd00:2::17) is carved out; node-1's pods are outside.
    expect_family(
        &s,
        true,
        80,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  .  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  X  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .",
    );
    expect_family(
        &s,
        false,
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

#[test]
fn named_port_egress_to_an_ip_block() {
    // Named ports resolve on the pods inside the block.
    let web = rule(
        vec![block("10.244.2.0/24", &[])],
        vec![named(TCP, "serve-81-tcp")],
    );
    let s = with(vec![policy(
        "x",
        "cidr-web",
        sel(&[("pod", "a")]),
        Some(EGRESS),
        vec![],
        vec![web],
    )]);
    expect_family(
        &s,
        false,
        81,
        TCP,
        "
        xa xb xc ya yb yc za zb zc
    xa  .  .  X  .  X  .  X  .  X
    xb  .  .  .  .  .  .  .  .  .
    xc  .  .  .  .  .  .  .  .  .
    ya  .  .  .  .  .  .  .  .  .
    yb  .  .  .  .  .  .  .  .  .
    yc  .  .  .  .  .  .  .  .  .
    za  .  .  .  .  .  .  .  .  .
    zb  .  .  .  .  .  .  .  .  .
    zc  .  .  .  .  .  .  .  .  .",
    );
    expect_family(&s, false, 80, TCP, XA_SILENT);
    agrees_with_explain(&s, 81, TCP);
}
