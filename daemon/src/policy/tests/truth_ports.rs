//! Truth tables: ports, protocols, ranges and named ports.

use super::fixture::*;
use crate::policy::{compile, Peers, PortMatch, Protocol, Snapshot};

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const SCTP: Protocol = Protocol::Sctp;

/// Nothing but x/a itself reaches x/a.
const XA_CLOSED: &str = "
        xa xb xc ya yb yc za zb zc
    xa  .  .  .  .  .  .  .  .  .
    xb  X  .  .  .  .  .  .  .  .
    xc  X  .  .  .  .  .  .  .  .
    ya  X  .  .  .  .  .  .  .  .
    yb  X  .  .  .  .  .  .  .  .
    yc  X  .  .  .  .  .  .  .  .
    za  X  .  .  .  .  .  .  .  .
    zb  X  .  .  .  .  .  .  .  .
    zc  X  .  .  .  .  .  .  .  .";

/// x/a protected by one ingress rule with these ports and no peers.
fn xa_ingress_ports(ports: Vec<crate::policy::PortSpec>) -> Snapshot {
    with(vec![policy(
        "x",
        "ports",
        sel(&[("pod", "a")]),
        None,
        vec![rule(vec![], ports)],
        vec![],
    )])
}

#[test]
fn numeric_port() {
    let s = xa_ingress_ports(vec![tcp(80)]);
    expect(&s, 80, TCP, OPEN);
    expect(&s, 81, TCP, XA_CLOSED);
    expect(&s, 80, UDP, XA_CLOSED);
}

#[test]
fn port_and_protocol_udp() {
    let s = xa_ingress_ports(vec![port(UDP, 80)]);
    expect(&s, 80, UDP, OPEN);
    expect(&s, 80, TCP, XA_CLOSED);
    expect(&s, 81, UDP, XA_CLOSED);
}

#[test]
fn end_port_range() {
    let s = xa_ingress_ports(vec![range(TCP, 81, 82)]);
    expect(&s, 80, TCP, XA_CLOSED);
    expect(&s, 81, TCP, OPEN);
    expect(&s, 82, TCP, OPEN);
    expect(&s, 83, TCP, XA_CLOSED);
    let xa = ip_of(&s, "x", "a", false);
    let rules = &compile(&s, "node-1").pods[&xa];
    let ports = &rules.ingress.as_ref().unwrap()[0].ports;
    assert_eq!(
        ports,
        &[PortMatch {
            protocol: TCP,
            first: 81,
            last: 82
        }]
    );
}

#[test]
fn protocol_without_port_is_every_port_of_it() {
    let s = xa_ingress_ports(vec![crate::policy::PortSpec {
        protocol: UDP,
        port: None,
        end_port: None,
    }]);
    expect(&s, 80, UDP, OPEN);
    expect(&s, 4242, UDP, OPEN);
    expect(&s, 80, TCP, XA_CLOSED);
}

#[test]
fn sctp_port_rule() {
    let s = xa_ingress_ports(vec![port(SCTP, 80)]);
    expect(&s, 80, SCTP, OPEN);
    expect(&s, 80, TCP, XA_CLOSED);
    let xa = ip_of(&s, "x", "a", false);
    let allows = compile(&s, "node-1").pods[&xa].ingress.clone().unwrap();
    assert_eq!(allows.len(), 1);
    assert_eq!(allows[0].peers, Peers::Any);
    assert_eq!(
        allows[0].ports,
        vec![PortMatch {
            protocol: SCTP,
            first: 80,
            last: 80
        }]
    );
}

#[test]
fn named_port_ingress() {
    let s = xa_ingress_ports(vec![named(TCP, "serve-80-tcp")]);
    expect(&s, 80, TCP, OPEN);
    expect(&s, 81, TCP, XA_CLOSED);
    expect(&s, 80, UDP, XA_CLOSED);
}

#[test]
fn named_port_resolves_against_the_protected_pod() {
    // On x/a only, serve-80-tcp is 8080: ingress to x/a opens 8080, not 80.
    let mut s = xa_ingress_ports(vec![named(TCP, "serve-80-tcp")]);
    for p in &mut pod_mut(&mut s, "x", "a").ports {
        if p.name.as_deref() == Some("serve-80-tcp") {
            p.port = 8080;
        }
    }
    expect(&s, 80, TCP, XA_CLOSED);
    expect(&s, 8080, TCP, OPEN);
}

#[test]
fn named_port_with_the_wrong_protocol_allows_nothing() {
    // serve-80-tcp is a TCP port: as UDP it names nothing, and a rule
    // whose ports all name nothing allows nothing (not every port).
    let s = xa_ingress_ports(vec![named(UDP, "serve-80-tcp")]);
    expect(&s, 80, TCP, XA_CLOSED);
    expect(&s, 80, UDP, XA_CLOSED);
    let xa = ip_of(&s, "x", "a", false);
    assert_eq!(compile(&s, "node-1").pods[&xa].ingress, Some(vec![]));
}

#[test]
fn several_ports_in_one_rule() {
    let s = xa_ingress_ports(vec![tcp(81), named(UDP, "serve-80-udp")]);
    expect(&s, 80, TCP, XA_CLOSED);
    expect(&s, 81, TCP, OPEN);
    expect(&s, 80, UDP, OPEN);
    expect(&s, 81, UDP, XA_CLOSED);
}

#[test]
fn peers_and_ports_in_one_rule() {
    let from_b_on_81 = rule(vec![pods(sel(&[("pod", "b")]))], vec![tcp(81)]);
    let s = with(vec![policy(
        "x",
        "b-81",
        sel(&[("pod", "a")]),
        None,
        vec![from_b_on_81],
        vec![],
    )]);
    expect(&s, 80, TCP, XA_CLOSED);
    expect(
        &s,
        81,
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
