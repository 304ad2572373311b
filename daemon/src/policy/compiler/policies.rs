//! One policy compiled as far as it does not depend on the pod it
//! protects: its peers named by set, its egress named ports resolved.

use std::collections::BTreeSet;

use super::sets::{Groups, SetCache};
use crate::policy::index::Index;
use crate::policy::model::{NetworkPolicy, Peer, PolicyType, PortSpec, Protocol, Rule};
use crate::policy::ports;
use crate::policy::ruleset::{PeerSetId, Peers, PolicyRef, PortMatch};

pub(super) struct Compiled {
    /// Tells this compiled form from any other, before or after: pods
    /// compare the generations of the policies selecting them.
    pub generation: u64,
    /// What it was compiled from, to tell a change.
    pub policy: NetworkPolicy,
    pub name: PolicyRef,
    /// Peers resolved; named ports still to be resolved against each pod
    /// the policy protects. `None`: the policy does not isolate ingress.
    pub ingress: Option<Vec<(Peers, Vec<PortSpec>)>>,
    /// Fully resolved, named ports split into groups of peers.
    pub egress: Option<Vec<(Peers, Vec<PortMatch>)>>,
    /// The named-port groups it depends on, by key.
    pub groups: Vec<String>,
}

impl Compiled {
    pub fn new(
        generation: u64,
        policy: &NetworkPolicy,
        index: &Index<'_>,
        sets: &mut SetCache,
    ) -> Self {
        let ns = policy.namespace.as_str();
        let mut groups = Vec::new();
        let ingress = policy.applies_to(PolicyType::Ingress).then(|| {
            policy
                .ingress
                .iter()
                .map(|rule| (peers(index, sets, ns, &rule.peers), rule.ports.clone()))
                .collect()
        });
        let egress = policy.applies_to(PolicyType::Egress).then(|| {
            let mut out = Vec::new();
            for rule in &policy.egress {
                out.extend(egress_rule(index, sets, ns, rule, &mut groups));
            }
            out
        });
        Self {
            generation,
            policy: policy.clone(),
            name: PolicyRef {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
            },
            ingress,
            egress,
            groups,
        }
    }

    /// Every set the compiled policy names.
    pub fn sets(&self) -> impl Iterator<Item = PeerSetId> + '_ {
        let ingress = self.ingress.iter().flatten().map(|(p, _)| *p);
        let egress = self.egress.iter().flatten().map(|(p, _)| *p);
        ingress.chain(egress).filter_map(|p| match p {
            Peers::Any => None,
            Peers::Set(id) => Some(id),
        })
    }
}

fn peers(index: &Index<'_>, sets: &mut SetCache, ns: &str, peers: &[Peer]) -> Peers {
    if peers.is_empty() {
        return Peers::Any;
    }
    Peers::Set(sets.peers(index, ns, peers))
}

/// Numeric ports against the rule's peers; each named port against the
/// peer pods it names a port of, one group per port number.
fn egress_rule(
    index: &Index<'_>,
    sets: &mut SetCache,
    ns: &str,
    rule: &Rule,
    groups: &mut Vec<String>,
) -> Groups {
    if rule.ports.is_empty() {
        return vec![(peers(index, sets, ns, &rule.peers), Vec::new())];
    }
    let mut out = Vec::new();
    let numeric: Vec<PortMatch> = rule.ports.iter().filter_map(ports::numeric).collect();
    if !numeric.is_empty() {
        out.push((
            peers(index, sets, ns, &rule.peers),
            ports::normalize(numeric),
        ));
    }
    let names: BTreeSet<(Protocol, &str)> = rule.ports.iter().filter_map(ports::name).collect();
    if !names.is_empty() {
        let (key, named) = sets.named(index, ns, &rule.peers, &names);
        groups.push(key);
        out.extend(named);
    }
    out
}
