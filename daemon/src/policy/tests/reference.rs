//! The engine as it was first written (a scan of every pod and policy,
//! nothing kept between compiles), kept as the oracle the compiler is held
//! to on random snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::policy::model::{
    LabelSelector, Labels, Namespace, NetworkPolicy, Peer, Pod, PolicyType, PortSpec, Protocol,
    Rule, Snapshot,
};
use crate::policy::peers::{self, fnv1a};
use crate::policy::ports;
use crate::policy::ruleset::{
    Allow, PeerSet, PeerSetId, Peers, PodRef, PodRules, PolicyRef, PortMatch, Ruleset,
};

#[derive(Default)]
struct PeerSets {
    by_definition: BTreeMap<String, PeerSetId>,
    sets: BTreeMap<PeerSetId, PeerSet>,
}

impl PeerSets {
    fn intern(&mut self, definition: String, resolve: impl FnOnce() -> PeerSet) -> PeerSetId {
        if let Some(id) = self.by_definition.get(&definition) {
            return *id;
        }
        let mut id = PeerSetId(fnv1a(definition.as_bytes()));
        while self.sets.contains_key(&id) {
            id = PeerSetId(id.0.wrapping_add(1));
        }
        self.sets.insert(id, resolve());
        self.by_definition.insert(definition, id);
        id
    }
}

fn resolve(index: &Index<'_>, policy_ns: &str, peers: &[Peer]) -> PeerSet {
    let mut set = PeerSet::default();
    for peer in peers {
        match peer {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                let pods = index.peer_pods(
                    policy_ns,
                    namespace_selector.as_ref(),
                    pod_selector.as_ref(),
                );
                for pod in pods {
                    for ip in &pod.ips {
                        set.push_addr(*ip);
                    }
                }
            }
            Peer::IpBlock { cidr, except } => set.extend(peers::block(*cidr, except)),
        }
    }
    set.merged()
}

struct Index<'a> {
    namespaces: BTreeMap<&'a str, &'a Namespace>,
    /// Only pods selectors may match ([`Pod::is_selectable`]).
    selectable: BTreeMap<&'a str, Vec<&'a Pod>>,
    /// With their place in the snapshot, which names them while compiling.
    policies: BTreeMap<&'a str, Vec<(usize, &'a NetworkPolicy)>>,
    pods: BTreeMap<(&'a str, &'a str), &'a Pod>,
}

impl<'a> Index<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        let mut index = Self {
            namespaces: BTreeMap::new(),
            selectable: BTreeMap::new(),
            policies: BTreeMap::new(),
            pods: BTreeMap::new(),
        };
        for ns in snapshot.namespaces.iter() {
            index.namespaces.insert(&ns.name, ns);
        }
        for pod in &snapshot.pods {
            index.pods.insert((&pod.namespace, &pod.name), pod);
            if pod.is_selectable() {
                index
                    .selectable
                    .entry(&pod.namespace)
                    .or_default()
                    .push(pod);
            }
        }
        for (i, policy) in snapshot.policies.iter().enumerate() {
            index
                .policies
                .entry(&policy.namespace)
                .or_default()
                .push((i, policy));
        }
        index
    }

    /// The policies of the pod's namespace whose pod selector matches it.
    fn selecting<'s>(
        &'s self,
        pod: &'s Pod,
    ) -> impl Iterator<Item = (usize, &'a NetworkPolicy)> + 's {
        self.policies
            .get(pod.namespace.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|(_, p)| p.pod_selector.matches(&pod.labels))
    }

    fn all_selectable(&self) -> impl Iterator<Item = &'a Pod> + '_ {
        self.selectable.values().flatten().copied()
    }

    /// The selectable pods of a `Pods` peer of a policy in `policy_ns`.
    fn peer_pods(
        &self,
        policy_ns: &str,
        namespace_selector: Option<&LabelSelector>,
        pod_selector: Option<&LabelSelector>,
    ) -> Vec<&'a Pod> {
        let in_scope: Vec<&Vec<&'a Pod>> = match namespace_selector {
            None => self.selectable.get(policy_ns).into_iter().collect(),
            Some(sel) => self
                .selectable
                .iter()
                .filter(|(ns, _)| self.namespace_matches(ns, sel))
                .map(|(_, pods)| pods)
                .collect(),
        };
        in_scope
            .into_iter()
            .flatten()
            .copied()
            .filter(|pod| pod_selector.is_none_or(|sel| sel.matches(&pod.labels)))
            .collect()
    }

    /// Whether a `Pods` peer of a policy in `policy_ns` matches `pod`.
    fn peer_matches(
        &self,
        policy_ns: &str,
        namespace_selector: Option<&LabelSelector>,
        pod_selector: Option<&LabelSelector>,
        pod: &Pod,
    ) -> bool {
        let namespace_ok = match namespace_selector {
            None => pod.namespace == policy_ns,
            Some(sel) => self.namespace_matches(&pod.namespace, sel),
        };
        pod.is_selectable()
            && namespace_ok
            && pod_selector.is_none_or(|sel| sel.matches(&pod.labels))
    }

    /// A namespace the snapshot does not hold (yet) has no labels to match
    /// and is matched by no selector, not even the empty one: the peer
    /// then allows less until it arrives, never more.
    fn namespace_matches(&self, name: &str, selector: &LabelSelector) -> bool {
        self.labels(name)
            .is_some_and(|labels| selector.matches(labels))
    }

    fn labels(&self, namespace: &str) -> Option<&'a Labels> {
        self.namespaces.get(namespace).map(|ns| &ns.labels)
    }
}
pub(crate) fn compile(snapshot: &Snapshot, node: &str) -> Ruleset {
    let mut local: Vec<&Pod> = snapshot
        .pods
        .iter()
        .filter(|p| p.node == node && p.is_selectable())
        .collect();
    local.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut compiler = Compiler {
        index: Index::new(snapshot),
        sets: PeerSets::default(),
        compiled: BTreeMap::new(),
        named: BTreeMap::new(),
    };
    let mut pods = BTreeMap::new();
    for pod in local {
        let rules = compiler.pod_rules(pod);
        for ip in &pod.ips {
            pods.entry(*ip).or_insert_with(|| rules.clone());
        }
    }
    Ruleset {
        peer_sets: used_sets(compiler.sets, &pods),
        pods,
    }
}

/// Only the sets some allow names: an ingress rule whose named ports mean
/// nothing on the pods it protects resolved its peers for nothing.
fn used_sets(sets: PeerSets, pods: &BTreeMap<IpAddr, PodRules>) -> BTreeMap<PeerSetId, PeerSet> {
    let used: BTreeSet<_> = pods
        .values()
        .flat_map(|r| r.ingress.iter().chain(r.egress.iter()).flatten())
        .filter_map(|a| match a.peers {
            Peers::Any => None,
            Peers::Set(id) => Some(id),
        })
        .collect();
    let mut sets = sets.sets;
    sets.retain(|id, _| used.contains(id));
    sets
}

/// What several pods share while one node's rules are compiled.
struct Compiler<'a> {
    index: Index<'a>,
    sets: PeerSets,
    /// Each policy (by its place in the snapshot) compiled as far as it
    /// does not depend on the pod it protects, the first time one needs it.
    compiled: BTreeMap<usize, Compiled<'a>>,
    /// Egress named-port groups, by peers and names: a scan of every
    /// destination pod, done once.
    named: BTreeMap<String, Vec<(Peers, Vec<PortMatch>)>>,
}

struct Compiled<'a> {
    policy: PolicyRef,
    /// Peers resolved; named ports still to be resolved against each pod
    /// the policy protects. `None`: the policy does not isolate ingress.
    ingress: Option<Vec<(Peers, &'a [PortSpec])>>,
    /// Fully resolved, named ports split into groups of peers.
    egress: Option<Vec<(Peers, Vec<PortMatch>)>>,
}

impl<'a> Compiler<'a> {
    fn pod_rules(&mut self, pod: &'a Pod) -> PodRules {
        let mut ingress: Option<Vec<Allow>> = None;
        let mut egress: Option<Vec<Allow>> = None;
        let selecting: Vec<(usize, &'a NetworkPolicy)> = self.index.selecting(pod).collect();
        for (i, policy) in selecting {
            // Out of the cache while borrowed beside `self`, then back.
            let compiled = match self.compiled.remove(&i) {
                Some(c) => c,
                None => self.compile_policy(policy),
            };
            if let Some(rules) = &compiled.ingress {
                let allows = ingress.get_or_insert_with(Vec::new);
                for (peers, specs) in rules {
                    if let Some(ports) = ports_on(specs, pod) {
                        allows.push(allow(*peers, ports, &compiled.policy));
                    }
                }
            }
            if let Some(rules) = &compiled.egress {
                let allows = egress.get_or_insert_with(Vec::new);
                for (peers, ports) in rules {
                    allows.push(allow(*peers, ports.clone(), &compiled.policy));
                }
            }
            self.compiled.insert(i, compiled);
        }
        PodRules {
            pod: PodRef {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            },
            ingress: ingress.map(merge_allows),
            egress: egress.map(merge_allows),
        }
    }

    fn compile_policy(&mut self, policy: &'a NetworkPolicy) -> Compiled<'a> {
        let ns = policy.namespace.as_str();
        let ingress = policy.applies_to(PolicyType::Ingress).then(|| {
            policy
                .ingress
                .iter()
                .map(|rule| (self.peers(ns, &rule.peers), rule.ports.as_slice()))
                .collect()
        });
        let egress = policy.applies_to(PolicyType::Egress).then(|| {
            policy
                .egress
                .iter()
                .flat_map(|rule| self.egress_rule(ns, rule))
                .collect()
        });
        Compiled {
            policy: PolicyRef {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
            },
            ingress,
            egress,
        }
    }

    fn peers(&mut self, ns: &str, peers: &[Peer]) -> Peers {
        if peers.is_empty() {
            return Peers::Any;
        }
        let index = &self.index;
        Peers::Set(
            self.sets
                .intern(peers::definition(ns, peers), || resolve(index, ns, peers)),
        )
    }

    /// Numeric ports against the rule's peers; each named port against
    /// the peer pods it names a port of, one group per port number.
    fn egress_rule(&mut self, ns: &str, rule: &Rule) -> Vec<(Peers, Vec<PortMatch>)> {
        if rule.ports.is_empty() {
            return vec![(self.peers(ns, &rule.peers), Vec::new())];
        }
        let mut out = Vec::new();
        let numeric: Vec<PortMatch> = rule.ports.iter().filter_map(ports::numeric).collect();
        if !numeric.is_empty() {
            out.push((self.peers(ns, &rule.peers), ports::normalize(numeric)));
        }
        let names: BTreeSet<(Protocol, &str)> = rule.ports.iter().filter_map(ports::name).collect();
        if !names.is_empty() {
            out.extend(self.named_groups(ns, &rule.peers, &names));
        }
        out
    }

    fn named_groups(
        &mut self,
        ns: &str,
        peers: &[Peer],
        names: &BTreeSet<(Protocol, &str)>,
    ) -> Vec<(Peers, Vec<PortMatch>)> {
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
        if let Some(groups) = self.named.get(&key) {
            return groups.clone();
        }
        let mut groups: BTreeMap<(Protocol, u16), PeerSet> = BTreeMap::new();
        for (pod, ips) in destinations(&self.index, ns, peers) {
            for (protocol, name) in names {
                if let Some(port) = pod.named_port(name, *protocol) {
                    let set = groups.entry((*protocol, port)).or_default();
                    ips.iter().for_each(|ip| set.push_addr(*ip));
                }
            }
        }
        let resolved: Vec<(Peers, Vec<PortMatch>)> = groups
            .into_iter()
            .map(|((protocol, port), set)| {
                let definition = format!("{key}\nport {} {port}", protocol.as_str());
                let id = self.sets.intern(definition, || set.merged());
                let ports = vec![PortMatch {
                    protocol,
                    first: port,
                    last: port,
                }];
                (Peers::Set(id), ports)
            })
            .collect();
        self.named.insert(key, resolved.clone());
        resolved
    }
}

/// The pods a rule's peers reach, each with the addresses of it they
/// reach: every address of a pod a pod peer selects, and the addresses of
/// any selectable pod that fall in a block. Only these have named ports.
fn destinations<'a>(index: &Index<'a>, ns: &str, peers: &[Peer]) -> Vec<(&'a Pod, Vec<IpAddr>)> {
    if peers.is_empty() {
        return index.all_selectable().map(|p| (p, p.ips.clone())).collect();
    }
    let mut blocks = PeerSet::default();
    for peer in peers {
        if let Peer::IpBlock { cidr, except } = peer {
            blocks.extend(peers::block(*cidr, except));
        }
    }
    let blocks = blocks.merged();
    let pod_peers = peers.iter().filter_map(|peer| match peer {
        Peer::Pods {
            namespace_selector,
            pod_selector,
        } => Some((namespace_selector.as_ref(), pod_selector.as_ref())),
        Peer::IpBlock { .. } => None,
    });
    if blocks.is_empty() {
        let mut selected: BTreeMap<(&str, &str), &'a Pod> = BTreeMap::new();
        for (nss, pods) in pod_peers {
            for pod in index.peer_pods(ns, nss, pods) {
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
                .any(|(nss, pods)| index.peer_matches(ns, *nss, *pods, pod));
            let ips: Vec<IpAddr> = if whole {
                pod.ips.clone()
            } else {
                pod.ips
                    .iter()
                    .copied()
                    .filter(|ip| blocks.contains(*ip))
                    .collect()
            };
            (!ips.is_empty()).then_some((pod, ips))
        })
        .collect()
}

/// The ports a rule allows on `pod` as destination: `Some(empty)` for a
/// rule without ports (every port), `None` when it has ports but none
/// means anything on this pod (it then allows nothing).
fn ports_on(specs: &[PortSpec], pod: &Pod) -> Option<Vec<PortMatch>> {
    if specs.is_empty() {
        return Some(Vec::new());
    }
    let matched: Vec<PortMatch> = specs.iter().filter_map(|s| ports::on_pod(s, pod)).collect();
    (!matched.is_empty()).then(|| ports::normalize(matched))
}

fn allow(peers: Peers, ports: Vec<PortMatch>, policy: &PolicyRef) -> Allow {
    Allow {
        peers,
        ports,
        policies: vec![policy.clone()],
    }
}

/// One allow per peers and ports, naming every policy that makes it.
fn merge_allows(mut allows: Vec<Allow>) -> Vec<Allow> {
    allows.sort();
    let mut out: Vec<Allow> = Vec::with_capacity(allows.len());
    for a in allows {
        match out.last_mut() {
            Some(prev) if prev.peers == a.peers && prev.ports == a.ports => {
                prev.policies.extend(a.policies);
            }
            _ => out.push(a),
        }
    }
    for a in &mut out {
        a.policies.sort();
        a.policies.dedup();
    }
    out
}
