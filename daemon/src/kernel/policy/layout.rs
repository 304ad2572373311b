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
    /// Each pod's addresses in the ruleset, ascending: what a change to
    /// one of them lays out again.
    pub pods: BTreeMap<PodRef, Vec<IpAddr>>,
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
            pods: BTreeMap::new(),
        };
        for (pod, ips) in pods_of(ruleset) {
            layout.add_pod(table, ruleset, pod, &ips);
        }
        layout
    }

    /// The layout of `new`, from this one (the layout of `old`) and the
    /// entries and sets that may differ between them; returns the parts
    /// that changed, as they were and as they are, for [`super::render::diff`].
    pub fn patch(
        &mut self,
        table: &Table,
        old: &Ruleset,
        new: &Ruleset,
        pods: &BTreeSet<IpAddr>,
        sets: &BTreeSet<PeerSetId>,
    ) -> (Layout, Layout) {
        let mut affected: BTreeSet<&PodRef> = BTreeSet::new();
        for ip in pods {
            affected.extend(old.pods.get(ip).map(|r| &r.pod));
            affected.extend(new.pods.get(ip).map(|r| &r.pod));
        }
        let mut before = Layout::default();
        let mut after = Layout::default();
        let mut gained: BTreeMap<&PodRef, Vec<IpAddr>> = BTreeMap::new();
        for pod in &affected {
            let ips = self.pods.remove(*pod).unwrap_or_default();
            for ip in &ips {
                self.move_address(&mut before, *ip);
            }
            for direction in [PolicyType::Ingress, PolicyType::Egress] {
                let names = std::iter::once(names::pod_chain(direction, pod)).chain(
                    ips.iter()
                        .map(|ip| names::address_chain(direction, pod, *ip)),
                );
                for name in names {
                    if let Some(chain) = self.chains.remove(&name) {
                        before.chains.insert(name, chain);
                    }
                }
            }
            // What the pod keeps: its addresses whose entries did not change.
            let kept = ips.into_iter().filter(|ip| !pods.contains(ip));
            gained.entry(*pod).or_default().extend(kept);
        }
        for ip in pods {
            if let Some(rules) = new.pods.get(ip) {
                gained.entry(&rules.pod).or_default().push(*ip);
            }
        }
        for (pod, mut ips) in gained {
            ips.sort_unstable();
            ips.dedup();
            self.add_pod(table, new, pod, &ips);
            for ip in &ips {
                after.copy_address(self, *ip);
            }
            for direction in [PolicyType::Ingress, PolicyType::Egress] {
                let names = std::iter::once(names::pod_chain(direction, pod)).chain(
                    ips.iter()
                        .map(|ip| names::address_chain(direction, pod, *ip)),
                );
                for name in names {
                    if let Some(chain) = self.chains.get(&name) {
                        after.chains.insert(name, chain.clone());
                    }
                }
            }
        }
        for id in sets {
            if let Some(set) = self.sets.remove(id) {
                before.sets.insert(*id, set);
            }
            if let Some(set) = new.peer_sets.get(id) {
                self.sets.insert(*id, set.clone());
                after.sets.insert(*id, set.clone());
            }
        }
        (before, after)
    }

    /// Lays out one pod's entries, `ips` ascending (all its addresses in
    /// `ruleset`).
    fn add_pod(&mut self, table: &Table, ruleset: &Ruleset, pod: &PodRef, ips: &[IpAddr]) {
        let versions = Versions {
            v4: ips.iter().any(IpAddr::is_ipv4),
            v6: ips.iter().any(IpAddr::is_ipv6),
        };
        for ip in ips {
            let Some(rules) = ruleset.pods.get(ip) else {
                continue;
            };
            let both = [
                (PolicyType::Ingress, &rules.ingress),
                (PolicyType::Egress, &rules.egress),
            ];
            for (direction, allows) in both {
                let Some(allows) = allows else { continue };
                self.isolate(table, *ip, pod, direction, allows, versions);
            }
        }
        if !ips.is_empty() {
            self.pods.insert(pod.clone(), ips.to_vec());
        }
    }

    /// Moves `ip`'s map elements from this layout to `to`.
    fn move_address(&mut self, to: &mut Layout, ip: IpAddr) {
        for (map, elems) in &mut self.maps {
            if let Some(chain) = elems.remove(&ip) {
                to.maps.entry(*map).or_default().insert(ip, chain);
            }
        }
    }

    /// Copies `ip`'s map elements from `from`.
    fn copy_address(&mut self, from: &Layout, ip: IpAddr) {
        for (map, elems) in &from.maps {
            if let Some(chain) = elems.get(&ip) {
                self.maps.entry(*map).or_default().insert(ip, chain.clone());
            }
        }
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

/// Each pod of the ruleset with its addresses, ascending.
fn pods_of(ruleset: &Ruleset) -> BTreeMap<&PodRef, Vec<IpAddr>> {
    let mut out: BTreeMap<&PodRef, Vec<IpAddr>> = BTreeMap::new();
    for (ip, rules) in &ruleset.pods {
        out.entry(&rules.pod).or_default().push(*ip);
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
