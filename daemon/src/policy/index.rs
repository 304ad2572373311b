//! The snapshot, indexed for the questions both [`super::compile`] and
//! [`super::explain`] ask: which policies select a pod, which pods a peer
//! selects. Pods are indexed by label per namespace, so a selector looks
//! at the pods that carry one of its required labels rather than at every
//! pod: with thousands of pods and policies, scanning was most of a
//! compile.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use super::model::{LabelSelector, Labels, Namespace, NetworkPolicy, Operator, Pod, Snapshot};

pub(crate) struct Index<'a> {
    namespaces: HashMap<&'a str, &'a Namespace>,
    /// Only pods selectors may match ([`Pod::is_selectable`]).
    selectable: BTreeMap<&'a str, Pods<'a>>,
    /// With their place in the snapshot, which names them while compiling.
    policies: HashMap<&'a str, Vec<(usize, &'a NetworkPolicy)>>,
    /// Every pod by namespace and name, built when first asked (only
    /// `explain` asks).
    pods: OnceCell<HashMap<(&'a str, &'a str), &'a Pod>>,
    /// All the snapshot's pods, for that.
    every: &'a [Pod],
    /// Each pod of the snapshot (by its place) that is selectable: its
    /// place among its namespace's selectable pods.
    slots: Vec<Option<u32>>,
}

/// Pods with their labels indexed, so that a selector finds its
/// candidates without a scan.
#[derive(Default)]
pub(crate) struct Pods<'a> {
    pub all: Vec<&'a Pod>,
    /// Built when a selector first asks: a compile after a small change
    /// asks few selectors, of few namespaces.
    labels: OnceCell<Postings<'a>>,
}

/// Which pods (by their place in [`Pods::all`]) carry each label, and
/// each label key.
#[derive(Default)]
struct Postings<'a> {
    by_label: HashMap<(&'a str, &'a str), Vec<u32>>,
    by_key: HashMap<&'a str, Vec<u32>>,
}

impl<'a> Postings<'a> {
    fn of(pods: &[&'a Pod]) -> Self {
        let mut out = Self::default();
        for (i, pod) in pods.iter().enumerate() {
            // A namespace of more than 4 billion pods is not a concern here.
            let i = i as u32;
            for (k, v) in &pod.labels {
                out.by_label.entry((k, v)).or_default().push(i);
                out.by_key.entry(k).or_default().push(i);
            }
        }
        out
    }
}

impl<'a> Pods<'a> {
    pub fn push(&mut self, pod: &'a Pod) {
        self.all.push(pod);
    }

    /// The pods `selector` matches (`None`: every pod), in the order they
    /// were pushed.
    pub fn matching<'s>(
        &'s self,
        selector: Option<&'s LabelSelector>,
    ) -> impl Iterator<Item = &'a Pod> + 's {
        (self.matching_ids(selector)).filter_map(|i| self.all.get(i as usize).copied())
    }

    /// [`Self::matching`], as places in [`Self::all`].
    fn matching_ids<'s>(
        &'s self,
        selector: Option<&'s LabelSelector>,
    ) -> impl Iterator<Item = u32> + use<'s, 'a> {
        let candidates: Box<dyn Iterator<Item = u32> + 's> =
            match selector.and_then(|s| self.narrowest(s)) {
                Some(ids) => Box::new(ids.iter().copied()),
                None => Box::new(0..self.all.len() as u32),
            };
        candidates.filter(move |i| {
            let pod = self.all.get(*i as usize);
            pod.is_some_and(|p| selector.is_none_or(|s| s.matches(&p.labels)))
        })
    }

    /// The shortest list of pods that holds every pod `selector` matches:
    /// those with one of its required labels, or its `Exists` key. `None`
    /// when the selector requires no label (every pod is a candidate).
    fn narrowest<'s>(&'s self, selector: &'s LabelSelector) -> Option<&'s [u32]> {
        const NONE: &[u32] = &[];
        let postings = self.labels.get_or_init(|| Postings::of(&self.all));
        let labels = selector
            .match_labels
            .iter()
            .map(|(k, v)| postings.by_label.get(&(k.as_str(), v.as_str())));
        let expressions = selector
            .match_expressions
            .iter()
            .filter_map(|r| match r.op {
                Operator::In if r.values.len() == 1 => {
                    let v = r.values.first()?;
                    Some(postings.by_label.get(&(r.key.as_str(), v.as_str())))
                }
                Operator::Exists => Some(postings.by_key.get(r.key.as_str())),
                _ => None,
            });
        labels
            .chain(expressions)
            .map(|ids| ids.map_or(NONE, Vec::as_slice))
            .min_by_key(|ids| ids.len())
    }
}

impl<'a> Index<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let mut index = Self {
            namespaces: HashMap::new(),
            selectable: BTreeMap::new(),
            policies: HashMap::new(),
            pods: OnceCell::new(),
            every: &snapshot.pods,
            slots: Vec::with_capacity(snapshot.pods.len()),
        };
        for ns in snapshot.namespaces.iter() {
            index.namespaces.insert(&ns.name, ns);
        }
        for pod in &snapshot.pods {
            let slot = pod.is_selectable().then(|| {
                let pods = index.selectable.entry(&pod.namespace).or_default();
                pods.push(pod);
                pods.all.len() as u32 - 1
            });
            index.slots.push(slot);
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

    /// The pod of that name (the last, should the snapshot list two).
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&'a Pod> {
        let every = self.every;
        let pods = self.pods.get_or_init(|| {
            (every.iter())
                .map(|p| ((p.namespace.as_str(), p.name.as_str()), p))
                .collect()
        });
        pods.get(&(namespace, name)).copied()
    }

    /// The policies of the pod's namespace whose pod selector matches it.
    pub fn selecting<'s>(
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

    /// For each selectable pod of `namespace` (as [`Self::slot`] places
    /// them), the places in the snapshot of the policies selecting it,
    /// ascending: [`Self::selecting`] for a whole namespace, from each
    /// policy's candidates rather than every pod against every policy.
    pub fn selecting_all(&self, namespace: &str) -> Vec<Vec<usize>> {
        let Some(pods) = self.selectable.get(namespace) else {
            return Vec::new();
        };
        let mut out = vec![Vec::new(); pods.all.len()];
        for (place, policy) in self.policies.get(namespace).into_iter().flatten() {
            for i in pods.matching_ids(Some(&policy.pod_selector)) {
                if let Some(places) = out.get_mut(i as usize) {
                    places.push(*place);
                }
            }
        }
        out
    }

    /// The place of the snapshot's pod at `place` among its namespace's
    /// selectable pods; `None` when it is not selectable.
    pub fn slot(&self, place: usize) -> Option<usize> {
        self.slots.get(place).copied().flatten().map(|s| s as usize)
    }

    pub fn all_selectable(&self) -> impl Iterator<Item = &'a Pod> + '_ {
        self.selectable
            .values()
            .flat_map(|pods| pods.all.iter().copied())
    }

    /// The selectable pods of a `Pods` peer of a policy in `policy_ns`.
    pub fn peer_pods(
        &self,
        policy_ns: &str,
        namespace_selector: Option<&LabelSelector>,
        pod_selector: Option<&LabelSelector>,
    ) -> Vec<&'a Pod> {
        let in_scope: Vec<&Pods<'a>> = match namespace_selector {
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
            .flat_map(|pods| pods.matching(pod_selector))
            .collect()
    }

    /// Whether a `Pods` peer of a policy in `policy_ns` matches `pod`.
    pub fn peer_matches(
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
