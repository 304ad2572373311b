//! The snapshot, indexed for the questions both [`super::compile`] and
//! [`super::explain`] ask: which policies select a pod, which pods a peer
//! selects.

use std::collections::BTreeMap;

use super::model::{LabelSelector, Labels, Namespace, NetworkPolicy, Pod, Snapshot};

pub(crate) struct Index<'a> {
    namespaces: BTreeMap<&'a str, &'a Namespace>,
    /// Only pods selectors may match ([`Pod::is_selectable`]).
    selectable: BTreeMap<&'a str, Vec<&'a Pod>>,
    /// With their place in the snapshot, which names them while compiling.
    policies: BTreeMap<&'a str, Vec<(usize, &'a NetworkPolicy)>>,
    pods: BTreeMap<(&'a str, &'a str), &'a Pod>,
}

impl<'a> Index<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let mut index = Self {
            namespaces: BTreeMap::new(),
            selectable: BTreeMap::new(),
            policies: BTreeMap::new(),
            pods: BTreeMap::new(),
        };
        for ns in &snapshot.namespaces {
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

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&'a Pod> {
        self.pods.get(&(namespace, name)).copied()
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

    pub fn all_selectable(&self) -> impl Iterator<Item = &'a Pod> + '_ {
        self.selectable.values().flatten().copied()
    }

    /// The selectable pods of a `Pods` peer of a policy in `policy_ns`.
    pub fn peer_pods(
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
