//! Pods placed under policy at their ADD, before the API server knows
//! their addresses: laid over the watched snapshot until their DEL.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use podnet_ipam::attachment::AttachmentKey;

use crate::policy::{Pod, Snapshot};

/// Each attachment this node's IPAM answered with a pod's addresses, and
/// the pod as it was read then (labels, ports: from the watch or a GET).
#[derive(Debug, Default)]
pub(super) struct Admitted {
    by_key: BTreeMap<AttachmentKey, Pod>,
    /// Attachments added since [`Self::take_fresh`], which lays them over
    /// a snapshot that has the others already.
    fresh: Vec<AttachmentKey>,
    /// Counts the removals and replacements: while it stays the same, a
    /// snapshot overlaid before needs only the fresh attachments.
    removals: u64,
}

impl Admitted {
    pub fn insert(&mut self, key: AttachmentKey, pod: Pod) {
        if self.by_key.insert(key.clone(), pod).is_some() {
            self.removals += 1;
        }
        self.fresh.push(key);
    }

    pub fn remove(&mut self, key: &AttachmentKey) -> bool {
        let removed = self.by_key.remove(key).is_some();
        self.removals += u64::from(removed);
        removed
    }

    /// Keeps the attachments `keep` says are still allocated.
    pub fn retain(&mut self, mut keep: impl FnMut(&AttachmentKey) -> bool) {
        let before = self.by_key.len();
        self.by_key.retain(|k, _| keep(k));
        self.removals += (before - self.by_key.len()) as u64;
    }

    pub fn removals(&self) -> u64 {
        self.removals
    }

    /// `snapshot`, overlaid when [`Self::removals`] was what it is now,
    /// with the attachments added since: the same as [`Self::overlay`] of
    /// the watched snapshot (but for the order of the pods, which the
    /// engine does not depend on).
    pub fn overlay_fresh(&mut self, snapshot: &mut Snapshot, node: &str) {
        for key in std::mem::take(&mut self.fresh) {
            let Some(admitted) = self.by_key.get(&key) else {
                continue;
            };
            let me = (admitted.namespace.as_str(), admitted.name.as_str());
            let mut found = None;
            for (i, pod) in snapshot.pods.iter_mut().enumerate() {
                if (pod.namespace.as_str(), pod.name.as_str()) == me {
                    found = Some(i);
                } else {
                    pod.ips.retain(|ip| !admitted.ips.contains(ip));
                }
            }
            let at = found.unwrap_or_else(|| {
                snapshot.pods.push(Pod {
                    ips: Vec::new(),
                    ..admitted.clone()
                });
                snapshot.pods.len() - 1
            });
            place(&mut snapshot.pods[at], &[admitted], node);
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// `snapshot` with the admitted pods' addresses: this node's IPAM is
    /// the truth about whose an address of the node's is, so an address
    /// an admitted pod holds is taken from any other pod still showing it
    /// (a finished pod whose status the API has not updated yet). A pod
    /// the watch shows keeps the labels the watch shows (they may have
    /// changed since its ADD); one it does not show yet is added as read
    /// at its ADD.
    pub fn overlay(&mut self, snapshot: &mut Snapshot, node: &str) {
        self.fresh.clear();
        let mut owner: HashMap<IpAddr, (&str, &str)> = HashMap::new();
        // Two attachments may be one pod's (a sandbox made again before
        // the old one's DEL): their addresses go together.
        // By namespace, then name: looked up by `str`, whose lifetime
        // does not tie the map to the snapshot.
        let mut wanted: BTreeMap<&str, BTreeMap<&str, Vec<&Pod>>> = BTreeMap::new();
        for pod in self.by_key.values() {
            for ip in &pod.ips {
                owner.insert(*ip, (&pod.namespace, &pod.name));
            }
            let names = wanted.entry(&pod.namespace).or_default();
            names.entry(&pod.name).or_default().push(pod);
        }
        for pod in &mut snapshot.pods {
            let me = (pod.namespace.as_str(), pod.name.as_str());
            pod.ips.retain(|ip| owner.get(ip).is_none_or(|o| *o == me));
            let admitted = wanted
                .get_mut(pod.namespace.as_str())
                .and_then(|names| names.remove(pod.name.as_str()));
            if let Some(admitted) = admitted {
                place(pod, &admitted, node);
            }
        }
        for admitted in wanted.into_values().flat_map(BTreeMap::into_values) {
            let mut pod = Pod {
                ips: Vec::new(),
                ..admitted[0].clone()
            };
            place(&mut pod, &admitted, node);
            snapshot.pods.push(pod);
        }
    }
}

/// `pod` on this node with the addresses of its `admitted` attachments.
fn place(pod: &mut Pod, admitted: &[&Pod], node: &str) {
    if pod.node != node {
        node.clone_into(&mut pod.node);
    }
    for ip in admitted.iter().flat_map(|a| &a.ips) {
        if !pod.ips.contains(ip) {
            pod.ips.push(*ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::Labels;

    fn key(id: &str) -> AttachmentKey {
        AttachmentKey {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn pod(ns: &str, name: &str, ips: &[&str], app: &str) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            node: String::new(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            labels: Labels::from([("app".to_owned(), app.to_owned())]),
            ports: Vec::new(),
            host_network: false,
        }
    }

    #[test]
    fn a_pod_the_watch_has_not_shown_is_added_as_read_at_add() {
        let mut a = Admitted::default();
        a.insert(key("c1"), pod("x", "a", &["10.244.1.5"], "web"));
        let mut s = Snapshot::default();
        a.overlay(&mut s, "n1");
        assert_eq!(s.pods.len(), 1);
        assert_eq!(s.pods[0].node, "n1");
        assert_eq!(s.pods[0].ips, vec!["10.244.1.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.pods[0].labels["app"], "web");
    }

    #[test]
    fn the_watch_keeps_its_labels_and_gains_the_address() {
        let mut a = Admitted::default();
        a.insert(key("c1"), pod("x", "a", &["10.244.1.5"], "old"));
        let mut s = Snapshot {
            pods: vec![pod("x", "a", &[], "new")],
            ..Default::default()
        };
        a.overlay(&mut s, "n1");
        assert_eq!(s.pods.len(), 1);
        assert_eq!(s.pods[0].labels["app"], "new");
        assert_eq!(s.pods[0].ips.len(), 1);
    }

    #[test]
    fn an_address_reused_on_this_node_is_the_new_pods_only() {
        let mut a = Admitted::default();
        a.insert(key("c2"), pod("x", "new", &["10.244.1.5"], "web"));
        let mut s = Snapshot {
            pods: vec![pod("y", "gone", &["10.244.1.5", "fd00::5"], "db")],
            ..Default::default()
        };
        a.overlay(&mut s, "n1");
        let gone = s.pods.iter().find(|p| p.name == "gone").unwrap();
        assert_eq!(gone.ips, vec!["fd00::5".parse::<IpAddr>().unwrap()]);
        let new = s.pods.iter().find(|p| p.name == "new").unwrap();
        assert_eq!(new.ips.len(), 1);
    }

    #[test]
    fn a_second_attachment_of_a_pod_adds_its_addresses() {
        let mut a = Admitted::default();
        a.insert(key("c1"), pod("x", "a", &["10.244.1.5"], "web"));
        a.insert(
            AttachmentKey {
                container_id: "c1".into(),
                ifname: "net1".into(),
            },
            pod("x", "a", &["10.244.1.6"], "web"),
        );
        let mut s = Snapshot::default();
        a.overlay(&mut s, "n1");
        assert_eq!(s.pods.len(), 1);
        assert_eq!(s.pods[0].ips.len(), 2);
        assert!(a.remove(&key("c1")));
        assert!(!a.remove(&key("c1")));
        a.retain(|_| false);
        assert_eq!(a.len(), 0);
    }

    #[test]
    fn additions_laid_over_the_last_overlay_give_the_whole_overlay() {
        let watched = Snapshot {
            pods: vec![
                pod("y", "gone", &["10.244.1.7"], "db"),
                pod("x", "b", &[], "api"),
                pod("x", "c", &["10.244.1.9"], "web"),
            ],
            ..Default::default()
        };
        let mut a = Admitted::default();
        a.insert(key("c1"), pod("x", "a", &["10.244.1.5"], "web"));
        let mut last = watched.clone();
        a.overlay(&mut last, "n1");
        let removals = a.removals();
        // A pod the watch shows, one it does not, a second attachment of
        // an admitted pod, and an address taken over from a finished pod.
        a.insert(key("c2"), pod("x", "b", &["10.244.1.6"], "old"));
        a.insert(key("c3"), pod("z", "d", &["10.244.1.7"], "web"));
        a.insert(
            AttachmentKey {
                container_id: "c1".into(),
                ifname: "net1".into(),
            },
            pod("x", "a", &["10.244.1.8"], "web"),
        );
        assert_eq!(a.removals(), removals);
        a.overlay_fresh(&mut last, "n1");
        let mut whole = watched;
        a.overlay(&mut whole, "n1");
        let sorted = |s: &Snapshot| {
            let mut pods = s.pods.clone();
            pods.sort_by(|p, q| (&p.namespace, &p.name).cmp(&(&q.namespace, &q.name)));
            pods.iter_mut().for_each(|p| p.ips.sort());
            pods
        };
        assert_eq!(sorted(&last), sorted(&whole));
        assert_eq!(whole.pods.len(), 5);
    }

    #[test]
    fn a_removal_or_a_replacement_is_counted() {
        let mut a = Admitted::default();
        a.insert(key("c1"), pod("x", "a", &["10.244.1.5"], "web"));
        assert_eq!(a.removals(), 0);
        a.insert(key("c1"), pod("x", "a", &["10.244.1.5"], "api"));
        assert_eq!(a.removals(), 1);
        a.insert(key("c2"), pod("x", "b", &["10.244.1.6"], "web"));
        a.retain(|k| k.container_id != "c2");
        assert_eq!(a.removals(), 2);
        assert!(a.remove(&key("c1")));
        assert!(!a.remove(&key("c1")));
        assert_eq!(a.removals(), 3);
    }
}
