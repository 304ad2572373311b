//! Interval sets: merging, carving holes, both families; peer set
//! definitions.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::fixture::{all, block, namespaces, pods, pods_in, sel};
use crate::policy::interval::{contains, merge, subtract};
use crate::policy::peers::{self, definition};
use crate::policy::ports::normalize;
use crate::policy::{PeerSet, PortMatch, Protocol};

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn r4(a: &str, b: &str) -> (Ipv4Addr, Ipv4Addr) {
    (v4(a), v4(b))
}

#[test]
fn merge_joins_overlapping_and_adjacent() {
    let got = merge(vec![
        r4("10.0.0.5", "10.0.0.9"),
        r4("10.0.0.1", "10.0.0.2"),
        r4("10.0.0.3", "10.0.0.4"),
        r4("10.0.0.8", "10.0.0.12"),
        r4("10.0.0.20", "10.0.0.20"),
    ]);
    assert_eq!(
        got,
        vec![r4("10.0.0.1", "10.0.0.12"), r4("10.0.0.20", "10.0.0.20")]
    );
}

#[test]
fn merge_at_the_top_of_the_space() {
    let got = merge(vec![
        r4("255.255.255.255", "255.255.255.255"),
        r4("255.255.255.0", "255.255.255.254"),
    ]);
    assert_eq!(got, vec![r4("255.255.255.0", "255.255.255.255")]);
}

#[test]
fn except_carves_holes() {
    let set = [r4("10.0.0.0", "10.0.0.255")];
    // A hole in the middle, one at each edge.
    let holes = [
        r4("10.0.0.0", "10.0.0.0"),
        r4("10.0.0.16", "10.0.0.31"),
        r4("10.0.0.255", "10.0.0.255"),
    ];
    assert_eq!(
        subtract(&set, &holes),
        vec![r4("10.0.0.1", "10.0.0.15"), r4("10.0.0.32", "10.0.0.254")]
    );
    // A hole larger than the set leaves nothing.
    assert_eq!(subtract(&set, &[r4("9.0.0.0", "11.0.0.0")]), vec![]);
    // Holes outside change nothing.
    assert_eq!(subtract(&set, &[r4("11.0.0.0", "11.0.0.9")]), set.to_vec());
}

#[test]
fn block_minus_except_whole_space() {
    let set = peers::block(
        "0.0.0.0/0".parse().unwrap(),
        &["10.0.0.0/8".parse().unwrap()],
    );
    assert_eq!(
        set.v4,
        vec![
            r4("0.0.0.0", "9.255.255.255"),
            r4("11.0.0.0", "255.255.255.255")
        ]
    );
    assert!(set.v6.is_empty());
    assert!(set.contains("9.9.9.9".parse().unwrap()));
    assert!(!set.contains("10.1.2.3".parse().unwrap()));
    assert!(!set.contains("::1".parse().unwrap()));
}

#[test]
fn ipv6_intervals() {
    let set = peers::block(
        "fd00::/64".parse().unwrap(),
        &["fd00::1:0/112".parse().unwrap()],
    );
    assert_eq!(
        set.v6,
        vec![
            (v6("fd00::"), v6("fd00::ffff")),
            (v6("fd00::2:0"), v6("fd00::ffff:ffff:ffff:ffff")),
        ]
    );
    assert!(set.contains("fd00::2:1".parse().unwrap()));
    assert!(!set.contains("fd00::1:1".parse().unwrap()));
    let top = merge(vec![
        (v6("ffff::"), v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
        (v6("fffe::"), v6("fffe::")),
    ]);
    assert_eq!(top.len(), 2);
}

#[test]
fn single_addresses_merge_into_ranges() {
    let mut set = PeerSet::default();
    for last in [3u8, 1, 2, 7] {
        set.push_addr(Ipv4Addr::new(10, 0, 0, last).into());
    }
    let set = set.merged();
    assert_eq!(
        set.v4,
        vec![r4("10.0.0.1", "10.0.0.3"), r4("10.0.0.7", "10.0.0.7")]
    );
    assert!(contains(&set.v4, v4("10.0.0.2")));
    assert!(!contains(&set.v4, v4("10.0.0.4")));
    assert!(!contains(&set.v4, v4("10.0.0.0")));
}

#[test]
fn port_ranges_normalize() {
    let m = |protocol, first, last| PortMatch {
        protocol,
        first,
        last,
    };
    let got = normalize(vec![
        m(Protocol::Udp, 53, 53),
        m(Protocol::Tcp, 81, 82),
        m(Protocol::Tcp, 80, 80),
        m(Protocol::Tcp, 84, 90),
        m(Protocol::Udp, 54, 60),
    ]);
    assert_eq!(
        got,
        vec![
            m(Protocol::Tcp, 80, 82),
            m(Protocol::Tcp, 84, 90),
            m(Protocol::Udp, 53, 60)
        ]
    );
}

#[test]
fn definitions_are_normal_forms() {
    let a = [
        namespaces(sel(&[("ns", "y")])),
        block("10.0.0.0/8", &["10.1.0.0/16", "10.2.0.0/16"]),
    ];
    let b = [
        block("10.0.0.0/8", &["10.2.0.0/16", "10.1.0.0/16"]),
        namespaces(sel(&[("ns", "y")])),
        a[0].clone(),
    ];
    assert_eq!(definition("x", &a), definition("x", &b));
    // A namespace selector does not depend on the policy's namespace...
    assert_eq!(definition("x", &a), definition("z", &a));
    // ...a bare pod selector does.
    let p = [pods(sel(&[("pod", "a")]))];
    assert_ne!(definition("x", &p), definition("z", &p));
    // An empty pod selector means every pod, as an absent one does.
    assert_eq!(
        definition("x", &[pods_in(all(), all())]),
        definition("x", &[namespaces(all())])
    );
    // Strings are length-prefixed: no two selectors collide by concatenation.
    assert_ne!(
        definition("x", &[pods(sel(&[("a b", "c")]))]),
        definition("x", &[pods(sel(&[("a", "b c")]))])
    );
}
