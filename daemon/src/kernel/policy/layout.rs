//! A [`Ruleset`] lowered to the objects of podnet's table: the peer
//! sets, one chain per isolated pod and direction with its rules, and the
//! verdict maps' elements. Both the full replace and the diff work from
//! this form, so they cannot disagree on what a ruleset means.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::names;
use crate::kernel::nft::{Atom, CmpOp, Field, Rule, Table, Verdict};
use crate::policy::{
    Allow, PeerSet, PeerSetId, Peers, PodRef, PolicyRef, PolicyType, PortMatch, Protocol, Ruleset,
};

/// What podnet's table holds for one ruleset, apart from the base chains,
/// which never change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Layout {
    /// Each id is two sets in the kernel, `-v4` and `-v6`.
    pub sets: BTreeMap<PeerSetId, PeerSet>,
    pub chains: BTreeMap<String, PodChain>,
    /// Per verdict map (see [`MAPS`]): each isolated address and the chain
    /// its packets jump to.
    pub maps: BTreeMap<&'static str, BTreeMap<IpAddr, String>>,
}

/// The four verdict maps: direction, and whether keyed by IPv6.
pub(super) const MAPS: [(PolicyType, bool); 4] = [
    (PolicyType::Egress, false),
    (PolicyType::Egress, true),
    (PolicyType::Ingress, false),
    (PolicyType::Ingress, true),
];

/// The chain of one pod (all its addresses) in one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PodChain {
    pub pod: PodRef,
    pub direction: PolicyType,
    pub rules: Vec<PodRule>,
}

/// A rule of a pod's chain, and whose it is: the policies of an allow,
/// none for the counted drop that ends the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PodRule {
    pub rule: Rule,
    pub policies: Vec<PolicyRef>,
}

impl Layout {
    pub fn new(ruleset: &Ruleset, table: &Table) -> Self {
        let mut layout = Layout {
            sets: ruleset.peer_sets.clone(),
            chains: BTreeMap::new(),
            maps: MAPS
                .iter()
                .map(|&(d, v6)| (names::vmap(d, v6), BTreeMap::new()))
                .collect(),
        };
        let versions = versions_by_pod(ruleset);
        for (ip, pod) in &ruleset.pods {
            let both = [
                (PolicyType::Ingress, &pod.ingress),
                (PolicyType::Egress, &pod.egress),
            ];
            for (direction, allows) in both {
                let Some(allows) = allows else { continue };
                let v = versions.get(&pod.pod).copied().unwrap_or_default();
                layout.isolate(table, *ip, &pod.pod, direction, allows, v);
            }
        }
        layout
    }

    /// Gives `ip` (of `pod`) a chain of `allows` in `direction`: the pod's
    /// shared one, or, should its addresses disagree, one of its own.
    fn isolate(
        &mut self,
        table: &Table,
        ip: IpAddr,
        pod: &PodRef,
        direction: PolicyType,
        allows: &[Allow],
        versions: Versions,
    ) {
        let mut name = names::pod_chain(direction, pod);
        let mut chain = pod_chain(table, &name, pod, direction, allows, versions);
        if self.chains.get(&name).is_some_and(|c| *c != chain) {
            name = names::address_chain(direction, pod, ip);
            let only = Versions::of(ip);
            chain = pod_chain(table, &name, pod, direction, allows, only);
        }
        let map = names::vmap(direction, ip.is_ipv6());
        self.maps.entry(map).or_default().insert(ip, name.clone());
        self.chains.insert(name, chain);
    }
}

/// The IP versions of a pod's addresses: its chains only test peers of
/// those.
#[derive(Clone, Copy, Debug, Default)]
struct Versions {
    v4: bool,
    v6: bool,
}

impl Versions {
    fn of(ip: IpAddr) -> Self {
        Self {
            v4: ip.is_ipv4(),
            v6: ip.is_ipv6(),
        }
    }
}

fn versions_by_pod(ruleset: &Ruleset) -> BTreeMap<&PodRef, Versions> {
    let mut out: BTreeMap<&PodRef, Versions> = BTreeMap::new();
    for (ip, rules) in &ruleset.pods {
        let v = out.entry(&rules.pod).or_default();
        v.v4 |= ip.is_ipv4();
        v.v6 |= ip.is_ipv6();
    }
    out
}

/// Every allow's rules, in order, then the counted drop. Ingress allows
/// accept; egress allows return, so the destination's ingress check
/// (later in the base chain) still runs.
fn pod_chain(
    table: &Table,
    name: &str,
    pod: &PodRef,
    direction: PolicyType,
    allows: &[Allow],
    versions: Versions,
) -> PodChain {
    let mut rules = Vec::new();
    for allow in allows {
        let comment = allow
            .policies
            .iter()
            .map(PolicyRef::to_string)
            .collect::<Vec<_>>()
            .join(",");
        for rule in allow_rules(table, name, direction, allow, versions) {
            rules.push(PodRule {
                rule: rule.comment(comment.clone()),
                policies: allow.policies.clone(),
            });
        }
    }
    let word = match direction {
        PolicyType::Ingress => "ingress",
        PolicyType::Egress => "egress",
    };
    let drop = Rule::new(table, name).counter().drop().comment(format!(
        "{word} of {}/{} not allowed",
        pod.namespace, pod.name
    ));
    rules.push(PodRule {
        rule: drop,
        policies: Vec::new(),
    });
    PodChain {
        pod: pod.clone(),
        direction,
        rules,
    }
}

/// One rule per port match (any port: one rule), and for a peer set one
/// per IP version of the pod: `ip saddr @peers-ID-v4 meta l4proto tcp th
/// dport 80 counter accept`.
fn allow_rules(
    table: &Table,
    chain: &str,
    direction: PolicyType,
    allow: &Allow,
    versions: Versions,
) -> Vec<Rule> {
    let verdict = match direction {
        PolicyType::Ingress => Verdict::Accept,
        PolicyType::Egress => Verdict::Return,
    };
    let peers: Vec<Rule> = match allow.peers {
        Peers::Any => vec![Rule::new(table, chain)],
        Peers::Set(id) => [(false, versions.v4), (true, versions.v6)]
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(v6, _)| {
                let field = peer_field(direction, v6);
                Rule::new(table, chain).in_set(&[field], &names::peer_set(id, v6))
            })
            .collect(),
    };
    let ports: Vec<Option<&PortMatch>> = if allow.ports.is_empty() {
        vec![None]
    } else {
        allow.ports.iter().map(Some).collect()
    };
    let mut out = Vec::with_capacity(peers.len() * ports.len());
    for base in &peers {
        for port in &ports {
            let rule = match port {
                Some(p) => port_match(base.clone(), p),
                None => base.clone(),
            };
            out.push(rule.counter().verdict(verdict.clone()));
        }
    }
    out
}

/// The peer's address: the source of what comes in, the destination of
/// what goes out.
fn peer_field(direction: PolicyType, v6: bool) -> Field {
    match (direction, v6) {
        (PolicyType::Ingress, false) => Field::Ip4Saddr,
        (PolicyType::Ingress, true) => Field::Ip6Saddr,
        (PolicyType::Egress, false) => Field::Ip4Daddr,
        (PolicyType::Egress, true) => Field::Ip6Daddr,
    }
}

/// `meta l4proto P th dport N`, or a range as `>= first` and `<= last`
/// (nf_tables compares ports as big-endian bytes, so byte order is
/// numeric order).
fn port_match(rule: Rule, p: &PortMatch) -> Rule {
    let rule = rule.l4proto(protocol_number(p.protocol));
    if p.first == p.last {
        return rule.cmp(Field::Dport, CmpOp::Eq, Atom::Port(p.first));
    }
    rule.cmp(Field::Dport, CmpOp::Gte, Atom::Port(p.first)).cmp(
        Field::Dport,
        CmpOp::Lte,
        Atom::Port(p.last),
    )
}

pub(super) fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// A peer set's intervals of one IP version, as set elements compare.
pub(super) fn intervals(set: &PeerSet, v6: bool) -> BTreeSet<(IpAddr, IpAddr)> {
    if v6 {
        set.v6
            .iter()
            .map(|&(a, b)| (IpAddr::V6(a), IpAddr::V6(b)))
            .collect()
    } else {
        set.v4
            .iter()
            .map(|&(a, b)| (IpAddr::V4(a), IpAddr::V4(b)))
            .collect()
    }
}
