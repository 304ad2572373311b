//! Peer sets and egress named-port groups, kept between compiles by
//! definition: a set is resolved again only when a pod it may hold (before
//! or after the change) changed, and its id never changes while its
//! definition stands.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use std::net::IpAddr;

use crate::policy::index::Index;
use crate::policy::model::{Peer, Pod, Protocol};
use crate::policy::peers::{self, fnv1a};
use crate::policy::ruleset::{PeerSet, PeerSetId, Peers, PortMatch};

/// More changed pods than this in one compile, and every set is resolved
/// again rather than each tested against each pod.
const TESTED_CHANGES: usize = 32;

/// One egress rule's named ports resolved: a peer set per port number.
pub(super) type Groups = Vec<(Peers, Vec<PortMatch>)>;

#[derive(Default)]
pub(super) struct SetCache {
    ids: HashMap<String, PeerSetId>,
    sets: HashMap<PeerSetId, Entry>,
    named: HashMap<String, Named>,
    /// Sets whose addresses changed since [`Self::take_changed`].
    changed: BTreeSet<PeerSetId>,
}

struct Entry {
    definition: String,
    /// `None`: a named-port group's set, which its [`Named`] fills.
    peers: Option<Rule>,
    set: PeerSet,
    stale: bool,
}

/// The peers of a rule, as a policy of `ns` wrote them.
struct Rule {
    ns: String,
    peers: Vec<Peer>,
    /// The blocks' addresses, merged, holes taken out.
    blocks: PeerSet,
}

struct Named {
    rule: Rule,
    names: BTreeSet<(Protocol, String)>,
    groups: Groups,
    stale: bool,
}

impl Rule {
    fn new(ns: &str, peers: &[Peer]) -> Self {
        let mut blocks = PeerSet::default();
        for peer in peers {
            if let Peer::IpBlock { cidr, except } = peer {
                blocks.extend(peers::block(*cidr, except));
            }
        }
        Self {
            ns: ns.to_owned(),
            peers: peers.to_vec(),
            blocks: blocks.merged(),
        }
    }

    /// Whether a pod peer of the rule selects `pod`.
    fn selects(&self, index: &Index<'_>, pod: &Pod) -> bool {
        self.peers.iter().any(|peer| match peer {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => index.peer_matches(
                &self.ns,
                namespace_selector.as_ref(),
                pod_selector.as_ref(),
                pod,
            ),
            Peer::IpBlock { .. } => false,
        })
    }

    /// Whether `pod` is a destination of the rule ([`destinations`]).
    fn reaches(&self, index: &Index<'_>, pod: &Pod) -> bool {
        pod.is_selectable()
            && (self.peers.is_empty()
                || self.selects(index, pod)
                || pod.ips.iter().any(|ip| self.blocks.contains(*ip)))
    }
}

impl SetCache {
    /// The id of the set of `peers` (a rule of a policy of `ns`, at least
    /// one peer), resolved now if no policy named it before.
    pub fn peers(&mut self, index: &Index<'_>, ns: &str, peers: &[Peer]) -> PeerSetId {
        let definition = peers::definition(ns, peers);
        if let Some(id) = self.ids.get(&definition) {
            return *id;
        }
        let set = peers::resolve(index, ns, peers);
        self.insert(definition, Some(Rule::new(ns, peers)), set)
    }

    /// Numeric ports against the rule's peers are not here: this is each
    /// named port against the peer pods it names a port of, one group per
    /// port number. Returns the groups' key (what the policy depends on)
    /// and the groups.
    pub fn named(
        &mut self,
        index: &Index<'_>,
        ns: &str,
        peers: &[Peer],
        names: &BTreeSet<(Protocol, &str)>,
    ) -> (String, Groups) {
        let mut key = if peers.is_empty() {
            "any".to_owned()
        } else {
            peers::definition(ns, peers)
        };
        for (protocol, name) in names {
            key.push_str(&format!(
                "\nnamed {} {}:{name}",
                protocol.as_str(),
                name.len()
            ));
        }
        if let Some(named) = self.named.get(&key) {
            return (key, named.groups.clone());
        }
        let named = Named {
            rule: Rule::new(ns, peers),
            names: names.iter().map(|(p, n)| (*p, (*n).to_owned())).collect(),
            groups: Vec::new(),
            stale: true,
        };
        self.named.insert(key.clone(), named);
        let groups = self.resolve_named(index, &key);
        (key, groups)
    }

    /// The addresses of set `id`.
    pub fn get(&self, id: PeerSetId) -> Option<&PeerSet> {
        self.sets.get(&id).map(|e| &e.set)
    }

    /// Marks what pods `changed` (each as it was and as it is) may have
    /// changed: sets that may hold them, groups they may be a destination of.
    pub fn invalidate(&mut self, index: &Index<'_>, changed: &[&Pod]) {
        let all = changed.len() > TESTED_CHANGES;
        let changed: Vec<&Pod> = changed
            .iter()
            .copied()
            .filter(|p| p.is_selectable())
            .collect();
        for entry in self.sets.values_mut() {
            if let Some(rule) = &entry.peers {
                entry.stale |= all || changed.iter().any(|p| rule.selects(index, p));
            }
        }
        for named in self.named.values_mut() {
            named.stale |= all || changed.iter().any(|p| named.rule.reaches(index, p));
        }
    }

    /// Resolves again what [`Self::invalidate`] marked. Returns the
    /// named-port groups that now name other sets or ports: the policies
    /// using them must be compiled again.
    pub fn refresh(&mut self, index: &Index<'_>) -> BTreeSet<String> {
        let mut reshaped = BTreeSet::new();
        for (id, entry) in &mut self.sets {
            if !std::mem::take(&mut entry.stale) {
                continue;
            }
            let Some(rule) = &entry.peers else { continue };
            let set = peers::resolve(index, &rule.ns, &rule.peers);
            if set != entry.set {
                entry.set = set;
                self.changed.insert(*id);
            }
        }
        let stale: Vec<String> = (self.named.iter())
            .filter(|(_, n)| n.stale)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            let before = self.named.get(&key).map(|n| n.groups.clone());
            let after = self.resolve_named(index, &key);
            if before.as_ref() != Some(&after) {
                reshaped.insert(key);
            }
        }
        reshaped
    }

    /// The sets whose addresses changed since the last call.
    pub fn take_changed(&mut self) -> BTreeSet<PeerSetId> {
        std::mem::take(&mut self.changed)
    }

    /// Forgets every set and group that none of `used` (the sets and group
    /// keys of the policies compiled now) names.
    pub fn retain(&mut self, used_sets: &BTreeSet<PeerSetId>, used_groups: &BTreeSet<&str>) {
        self.named.retain(|k, _| used_groups.contains(k.as_str()));
        let ids = &mut self.ids;
        self.sets.retain(|id, entry| {
            let keep = used_sets.contains(id);
            if !keep {
                ids.remove(&entry.definition);
            }
            keep
        });
    }

    fn insert(&mut self, definition: String, peers: Option<Rule>, set: PeerSet) -> PeerSetId {
        // Two definitions with one hash: the later one takes the next free
        // id. Ids then depend on what else the node holds, but only after
        // a 64-bit collision.
        let mut id = PeerSetId(fnv1a(definition.as_bytes()));
        while self.sets.contains_key(&id) {
            id = PeerSetId(id.0.wrapping_add(1));
        }
        self.ids.insert(definition.clone(), id);
        // New to the cache, perhaps not to the ruleset (after a restart).
        self.changed.insert(id);
        self.sets.insert(
            id,
            Entry {
                definition,
                peers,
                set,
                stale: false,
            },
        );
        id
    }

    /// The groups of named group `key` from the pods as they are now.
    fn resolve_named(&mut self, index: &Index<'_>, key: &str) -> Groups {
        let Some(named) = self.named.get_mut(key) else {
            return Vec::new();
        };
        named.stale = false;
        let mut by_port: BTreeMap<(Protocol, u16), PeerSet> = BTreeMap::new();
        for (pod, ips) in destinations(index, &named.rule) {
            for (protocol, name) in &named.names {
                if let Some(port) = pod.named_port(name, *protocol) {
                    let set = by_port.entry((*protocol, port)).or_default();
                    ips.iter().for_each(|ip| set.push_addr(*ip));
                }
            }
        }
        let mut groups = Vec::with_capacity(by_port.len());
        for ((protocol, port), set) in by_port {
            let definition = format!("{key}\nport {} {port}", protocol.as_str());
            let set = set.merged();
            let id = match self.ids.get(&definition) {
                Some(id) => {
                    if let Some(entry) = self.sets.get_mut(id) {
                        if entry.set != set {
                            entry.set = set;
                            self.changed.insert(*id);
                        }
                    }
                    *id
                }
                None => self.insert(definition, None, set),
            };
            let ports = vec![PortMatch {
                protocol,
                first: port,
                last: port,
            }];
            groups.push((Peers::Set(id), ports));
        }
        if let Some(named) = self.named.get_mut(key) {
            named.groups = groups.clone();
        }
        groups
    }
}

/// The pods a rule's peers reach, each with the addresses of it they
/// reach: every address of a pod a pod peer selects, and the addresses of
/// any selectable pod that fall in a block. Only these have named ports.
fn destinations<'a>(index: &Index<'a>, rule: &Rule) -> Vec<(&'a Pod, Vec<IpAddr>)> {
    if rule.peers.is_empty() {
        return index.all_selectable().map(|p| (p, p.ips.clone())).collect();
    }
    let pod_peers = rule.peers.iter().filter_map(|peer| match peer {
        Peer::Pods {
            namespace_selector,
            pod_selector,
        } => Some((namespace_selector.as_ref(), pod_selector.as_ref())),
        Peer::IpBlock { .. } => None,
    });
    if rule.blocks.is_empty() {
        let mut selected: BTreeMap<(&str, &str), &'a Pod> = BTreeMap::new();
        for (nss, pods) in pod_peers {
            for pod in index.peer_pods(&rule.ns, nss, pods) {
                selected.insert((&pod.namespace, &pod.name), pod);
            }
        }
        return selected.into_values().map(|p| (p, p.ips.clone())).collect();
    }
    let pod_peers: Vec<_> = pod_peers.collect();
    index
        .all_selectable()
        .filter_map(|pod| {
            let whole = pod_peers
                .iter()
                .any(|(nss, pods)| index.peer_matches(&rule.ns, *nss, *pods, pod));
            let ips: Vec<IpAddr> = if whole {
                pod.ips.clone()
            } else {
                pod.ips
                    .iter()
                    .copied()
                    .filter(|ip| rule.blocks.contains(*ip))
                    .collect()
            };
            (!ips.is_empty()).then_some((pod, ips))
        })
        .collect()
}
