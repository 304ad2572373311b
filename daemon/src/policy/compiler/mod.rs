//! [`compile`] and [`Compiler`]: the snapshot to the rules of one node's
//! pods.
//!
//! A [`Compiler`] keeps what it worked out between compiles (each policy
//! compiled, each peer set resolved, each local pod's selecting policies)
//! and, given the next snapshot, works out again only what the changes
//! reach:
//! - a pod that changed (or came, or went) resolves again the sets that
//!   may hold it, as it was or as it is, and the named-port groups it may
//!   be a destination of;
//! - a policy that changed is compiled again, as is one whose named-port
//!   groups now name other ports;
//! - a local pod's rules are built again when the pod changed or one of
//!   the policies selecting it (before or after) did; its selecting
//!   policies are looked up again when it changed or a policy of its
//!   namespace came, went or changed its pod selector;
//! - a change of any namespace starts everything afresh (rare, and what a
//!   namespace's labels reach is everything a selector of them reaches).
//!
//! The ruleset is changed in place, and [`Changes`] says which entries may
//! differ from the previous compile's, so the kernel side touches only
//! those. [`compile`] is a fresh compiler's first compile: the result is
//! the same whatever the compiler saw before (the tests hold both to it).

mod output;
mod pods;
mod policies;
mod sets;

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::net::IpAddr;
use std::sync::Arc;

use super::index::Index;
use super::model::{ContainerPort, Labels, Pod, Snapshot};
use super::ruleset::{PeerSetId, PodRules, Ruleset};
use output::Output;
use policies::Compiled;
use sets::SetCache;

/// The rules that enforce every policy on the pods of `node`: their
/// ingress and their egress both, so the node needs no other node's rules.
/// Deterministic: the same snapshot gives the same ruleset, whatever the
/// order of its lists.
///
/// hostNetwork pods and pods without an address get no rules (see the
/// module docs); should two pods claim one address, the first by
/// namespace and name keeps it.
pub fn compile(snapshot: &Snapshot, node: &str) -> Ruleset {
    let mut compiler = Compiler::new(node);
    compiler.once = true;
    compiler.compile(snapshot);
    compiler.into_ruleset()
}

/// A namespace, a name, and which of the objects of that name the snapshot
/// lists (0 but for a snapshot that names two alike): what a pod or a
/// policy is known by between compiles, in the order that decides which
/// of two pods keeps an address they both claim. Shared, as several maps
/// hold it.
pub(crate) type Key = Arc<(String, String, u32)>;

/// Which entries of the ruleset may differ from the previous compile's
/// (any that do are listed; some listed may not differ).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Everything may differ: the first compile, or a namespace changed.
    pub all: bool,
    /// Pod entries (by address) added, removed or changed.
    pub pods: BTreeSet<IpAddr>,
    /// Peer sets added, removed or changed.
    pub sets: BTreeSet<PeerSetId>,
}

/// [`compile`] for one node, again and again, at the cost of what changed.
pub struct Compiler {
    node: String,
    /// No compile follows ([`compile`]): nothing is kept only for the next
    /// one.
    once: bool,
    /// Compiles so far: what was seen in this one is marked with it.
    compiles: u64,
    generations: u64,
    namespaces: BTreeMap<String, Labels>,
    /// Every pod of the previous snapshot.
    pods: HashMap<Key, Seen<Pod>>,
    policies: HashMap<Key, Seen<Arc<Compiled>>>,
    sets: SetCache,
    /// The local selectable pods: their addresses and selecting policies.
    local: HashMap<Key, Local>,
    out: Output,
    changes: Changes,
}

/// The policies selecting the pods of one namespace, as [`Compiler::read_local`]
/// asks for them.
enum Selections {
    /// Looked up pod by pod so far, this many.
    OneByOne(usize),
    /// Worked out for every selectable pod of the namespace, by slot.
    All(Vec<Vec<usize>>),
}

impl Default for Selections {
    fn default() -> Self {
        Selections::OneByOne(0)
    }
}

impl Selections {
    /// Pods looked up one by one before the whole namespace is worked out:
    /// one lookup tries every policy of the namespace on the pod, the
    /// whole namespace costs about as much as this many.
    const ONE_BY_ONE: usize = 8;

    /// The places of the policies selecting `pod` (at `slot` among its
    /// namespace's selectable pods), ascending.
    fn of(&mut self, index: &Index<'_>, pod: &Pod, slot: Option<usize>) -> Vec<usize> {
        let looked_up = match self {
            Selections::All(table) => {
                return slot.and_then(|s| table.get(s)).cloned().unwrap_or_default();
            }
            Selections::OneByOne(n) => *n,
        };
        if looked_up < Self::ONE_BY_ONE {
            *self = Selections::OneByOne(looked_up + 1);
            return match slot {
                Some(_) => index.selecting(pod).map(|(place, _)| place).collect(),
                None => Vec::new(),
            };
        }
        *self = Selections::All(index.selecting_all(&pod.namespace));
        self.of(index, pod, slot)
    }
}

struct Seen<T> {
    value: T,
    compile: u64,
}

struct Local {
    ips: Vec<IpAddr>,
    /// In the order of the snapshot.
    selecting: Vec<Arc<Compiled>>,
    /// Its place in the snapshot last compiled.
    place: usize,
    compile: u64,
}

impl Compiler {
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            once: false,
            compiles: 0,
            generations: 0,
            namespaces: BTreeMap::new(),
            pods: HashMap::new(),
            policies: HashMap::new(),
            sets: SetCache::default(),
            local: HashMap::new(),
            out: Output::default(),
            changes: Changes::default(),
        }
    }

    /// The rules for `snapshot`, as [`compile`] gives them; what differs
    /// from the previous compile's is in [`Self::changes`].
    pub fn compile(&mut self, snapshot: &Snapshot) -> &Ruleset {
        self.compiles += 1;
        self.changes = Changes {
            all: self.compiles == 1,
            ..Changes::default()
        };
        let index = Index::new(snapshot);
        if self.namespaces_changed(snapshot) {
            self.restart();
        }
        let keys: Vec<Key> = keyed(snapshot.pods.iter().map(|p| (&p.namespace, &p.name)));
        let changed = self.read_pods(snapshot, &keys);
        {
            let versions: Vec<&Pod> = (changed.iter())
                .flat_map(|(_, old, new)| old.iter().chain(new.map(|i| &snapshot.pods[i])))
                .collect();
            self.sets.invalidate(&index, &versions);
        }
        let reshaped = self.sets.refresh(&index);
        let policies = self.read_policies(snapshot, &index, &reshaped);
        let changed: HashSet<&Key> = changed.iter().map(|(k, _, _)| k).collect();
        let dirty = self.read_local(snapshot, &keys, &index, &policies, &changed);
        self.write(snapshot, dirty);
        if policies.changed {
            self.forget_unused_sets();
        }
        let changed_sets = self.sets.take_changed();
        self.out
            .sync_sets(&self.sets, changed_sets, &mut self.changes);
        &self.out.ruleset
    }

    /// What the last compile changed.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// The ruleset of the last compile.
    pub fn ruleset(&self) -> &Ruleset {
        &self.out.ruleset
    }

    pub fn into_ruleset(self) -> Ruleset {
        self.out.into_ruleset()
    }

    /// Compares the namespaces with the previous snapshot's, keeping the
    /// new ones (the last of a name counts, as in the index).
    fn namespaces_changed(&mut self, snapshot: &Snapshot) -> bool {
        let mut now: BTreeMap<&str, &Labels> = BTreeMap::new();
        for ns in snapshot.namespaces.iter() {
            now.insert(&ns.name, &ns.labels);
        }
        let same = now.len() == self.namespaces.len()
            && (now.iter().zip(&self.namespaces)).all(|((n, l), (m, k))| *n == m && *l == k);
        if !same {
            self.namespaces = (now.into_iter())
                .map(|(n, l)| (n.to_owned(), l.clone()))
                .collect();
        }
        !same
    }

    /// Forgets all it worked out but the ruleset: every pod then counts as
    /// changed and every policy as new, so the entries are all written again.
    fn restart(&mut self) {
        self.pods.clear();
        self.policies.clear();
        self.sets = SetCache::default();
        self.changes.all = true;
    }

    /// Takes the pods in, returning those that came, went or changed: each
    /// as it was, and its place in the snapshot now.
    fn read_pods(&mut self, snapshot: &Snapshot, keys: &[Key]) -> Vec<PodChange> {
        let now = self.compiles;
        if self.once {
            // What changed matters only against a previous compile's sets
            // and pods, and there are none.
            return Vec::new();
        }
        let mut changed = Vec::new();
        for (i, (key, pod)) in keys.iter().zip(&snapshot.pods).enumerate() {
            match self.pods.get_mut(key) {
                Some(seen) if seen.value == *pod => seen.compile = now,
                Some(seen) => {
                    let old = std::mem::replace(&mut seen.value, pod.clone());
                    seen.compile = now;
                    changed.push((key.clone(), Some(old), Some(i)));
                }
                None => {
                    let seen = Seen {
                        value: pod.clone(),
                        compile: now,
                    };
                    self.pods.insert(key.clone(), seen);
                    changed.push((key.clone(), None, Some(i)));
                }
            }
        }
        let gone: Vec<Key> = (self.pods.iter())
            .filter(|(_, s)| s.compile != now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(seen) = self.pods.remove(&key) {
                changed.push((key, Some(seen.value), None));
            }
        }
        changed
    }

    /// Each policy of the snapshot compiled (again only if it changed or
    /// its named-port groups did), by its place in the snapshot.
    fn read_policies(
        &mut self,
        snapshot: &Snapshot,
        index: &Index<'_>,
        reshaped: &BTreeSet<String>,
    ) -> Policies {
        let now = self.compiles;
        let mut out = Policies {
            by_place: Vec::with_capacity(snapshot.policies.len()),
            successors: HashMap::new(),
            reselect: HashSet::new(),
            changed: false,
        };
        let keys = keyed(snapshot.policies.iter().map(|p| (&p.namespace, &p.name)));
        for (key, policy) in keys.into_iter().zip(snapshot.policies.iter()) {
            let before = match self.policies.get_mut(&key) {
                Some(seen)
                    if seen.value.policy == *policy
                        && !seen.value.groups.iter().any(|g| reshaped.contains(g)) =>
                {
                    seen.compile = now;
                    out.by_place.push(seen.value.clone());
                    continue;
                }
                Some(seen) => Some(seen.value.clone()),
                None => None,
            };
            self.generations += 1;
            out.changed = true;
            let compiled = Arc::new(Compiled::new(
                self.generations,
                policy,
                index,
                &mut self.sets,
            ));
            match before {
                Some(old) if old.policy.pod_selector == policy.pod_selector => {
                    out.successors.insert(old.generation, compiled.clone());
                }
                _ => {
                    out.reselect.insert(policy.namespace.clone());
                }
            }
            out.by_place.push(compiled.clone());
            let seen = Seen {
                value: compiled,
                compile: now,
            };
            self.policies.insert(key, seen);
        }
        self.policies.retain(|_, seen| {
            let kept = seen.compile == now;
            if !kept {
                out.reselect.insert(seen.value.policy.namespace.clone());
                out.changed = true;
            }
            kept
        });
        out
    }

    /// The local selectable pods with their selecting policies; returns
    /// those whose rules must be built again, and those gone.
    fn read_local(
        &mut self,
        snapshot: &Snapshot,
        keys: &[Key],
        index: &Index<'_>,
        policies: &Policies,
        changed: &HashSet<&Key>,
    ) -> Vec<Dirty> {
        let now = self.compiles;
        let mut dirty = Vec::new();
        // Each namespace's selections: a few pods' (a pod's admission) one
        // by one, against each policy of the namespace; past that, all its
        // pods' at once, from each policy's candidates.
        let mut tables: HashMap<&str, Selections> = HashMap::new();
        for (i, (key, pod)) in keys.iter().zip(&snapshot.pods).enumerate() {
            if pod.node != self.node || !pod.is_selectable() {
                continue;
            }
            let changed = changed.contains(key);
            match self.local.get_mut(key) {
                Some(local) if !changed && !policies.reselect.contains(&pod.namespace) => {
                    local.compile = now;
                    local.place = i;
                    let mut same = true;
                    for c in &mut local.selecting {
                        if let Some(next) = policies.successors.get(&c.generation) {
                            *c = next.clone();
                            same = false;
                        }
                    }
                    if !same {
                        let before = Some(local.ips.clone());
                        dirty.push((key.clone(), true, before));
                    }
                }
                known => {
                    let table = tables.entry(pod.namespace.as_str()).or_default();
                    let places = table.of(index, pod, index.slot(i));
                    let selecting: Vec<Arc<Compiled>> = (places.iter())
                        .filter_map(|i| policies.by_place.get(*i).cloned())
                        .collect();
                    let same = !changed
                        && known.as_ref().is_some_and(|local| {
                            local.selecting.len() == selecting.len()
                                && (local.selecting.iter().zip(&selecting))
                                    .all(|(a, b)| Arc::ptr_eq(a, b))
                        });
                    let before = known.as_ref().map(|l| l.ips.clone());
                    let local = Local {
                        ips: pod.ips.clone(),
                        selecting,
                        place: i,
                        compile: now,
                    };
                    match known {
                        Some(known) => *known = local,
                        None => {
                            self.local.insert(key.clone(), local);
                        }
                    }
                    if !same {
                        dirty.push((key.clone(), true, before));
                    }
                }
            }
        }
        let gone: Vec<Key> = (self.local.iter())
            .filter(|(_, l)| l.compile != now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(local) = self.local.remove(&key) {
                dirty.push((key, false, Some(local.ips)));
            }
        }
        dirty
    }

    /// The entries of the addresses the dirty pods had or have, from their
    /// holders' rules, built once per holder.
    fn write(&mut self, snapshot: &Snapshot, dirty: Vec<Dirty>) {
        let mut touched: BTreeSet<IpAddr> = BTreeSet::new();
        for (key, present, before) in &dirty {
            if let Some(before) = before {
                self.out.release(key, before);
                touched.extend(before);
            }
            if let (true, Some(local)) = (*present, self.local.get(key)) {
                self.out.claim(key, &local.ips);
                touched.extend(&local.ips);
            }
        }
        let mut holders: BTreeMap<Key, Vec<IpAddr>> = BTreeMap::new();
        for ip in touched {
            match self.out.holder(ip) {
                Some(key) => holders.entry(key.clone()).or_default().push(ip),
                None => self.out.set(ip, None, &mut self.changes),
            }
        }
        let mut shared = Shared::default();
        for (holder, ips) in holders {
            let Some(local) = self.local.get(&holder) else {
                continue;
            };
            let Some(pod) = snapshot.pods.get(local.place) else {
                continue;
            };
            let rules = shared.rules(pod, &local.selecting);
            let (last, rest) = match ips.split_last() {
                Some(split) => split,
                None => continue,
            };
            for ip in rest {
                self.out.set(*ip, Some(rules.clone()), &mut self.changes);
            }
            self.out.set(*last, Some(rules), &mut self.changes);
        }
    }

    /// Drops the sets and groups no compiled policy names any more.
    fn forget_unused_sets(&mut self) {
        let mut sets = BTreeSet::new();
        let mut groups = BTreeSet::new();
        for seen in self.policies.values() {
            sets.extend(seen.value.sets());
            groups.extend(seen.value.groups.iter().map(String::as_str));
        }
        self.sets.retain(&sets, &groups);
    }
}

/// A pod that came, went or changed: its key, itself as it was, and its
/// place in the snapshot now.
type PodChange = (Key, Option<Pod>, Option<usize>);

/// A local pod whose rules are to be built again (`true`) or that is no
/// longer a local selectable pod (`false`), with its addresses in the
/// previous compile if it was one then.
type Dirty = (Key, bool, Option<Vec<IpAddr>>);

struct Policies {
    /// The compiled policies, by their place in the snapshot.
    by_place: Vec<Arc<Compiled>>,
    /// A policy compiled again with the same pod selector: the new form of
    /// each former generation.
    successors: HashMap<u64, Arc<Compiled>>,
    /// Namespaces where a policy came, went or selects other pods.
    reselect: HashSet<String>,
    /// Whether any policy was compiled or went: sets may have fallen out
    /// of use.
    changed: bool,
}

/// Pods selected by the same compiled policies, with the same container
/// ports, have the same rules but for their name: built once.
#[derive(Default)]
struct Shared {
    built: HashMap<(Vec<u64>, Vec<ContainerPort>), PodRules>,
}

impl Shared {
    fn rules(&mut self, pod: &Pod, selecting: &[Arc<Compiled>]) -> PodRules {
        let generations: Vec<u64> = selecting.iter().map(|c| c.generation).collect();
        let key = (generations, pod.ports.clone());
        let mut rules = match self.built.get(&key) {
            Some(rules) => rules.clone(),
            None => {
                let refs: Vec<&Compiled> = selecting.iter().map(|c| c.as_ref()).collect();
                let rules = pods::pod_rules(pod, &refs);
                self.built.insert(key, rules.clone());
                rules
            }
        };
        rules.pod.namespace.clone_from(&pod.namespace);
        rules.pod.name.clone_from(&pod.name);
        rules
    }
}

/// Each name's key: its namespace and name, and how many of that name came
/// before it.
fn keyed<'a>(names: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<Key> {
    let mut seen: HashMap<(&'a String, &'a String), u32> = HashMap::new();
    names
        .map(|(ns, name)| {
            let count = seen.entry((ns, name)).or_default();
            let key = Arc::new((ns.clone(), name.clone(), *count));
            *count += 1;
            key
        })
        .collect()
}
