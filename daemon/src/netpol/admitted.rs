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
}

impl Admitted {
    pub fn insert(&mut self, key: AttachmentKey, pod: Pod) {
        self.by_key.insert(key, pod);
    }

    pub fn remove(&mut self, key: &AttachmentKey) -> bool {
        self.by_key.remove(key).is_some()
    }

    /// Keeps the attachments `keep` says are still allocated.
    pub fn retain(&mut self, mut keep: impl FnMut(&AttachmentKey) -> bool) {
        self.by_key.retain(|k, _| keep(k));
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
    pub fn overlay(&self, snapshot: &mut Snapshot, node: &str) {
        let mut owner: HashMap<IpAddr, (&str, &str)> = HashMap::new();
        for pod in self.by_key.values() {
            for ip in &pod.ips {
                owner.insert(*ip, (&pod.namespace, &pod.name));
            }
        }
        for pod in &mut snapshot.pods {
            let me = (pod.namespace.as_str(), pod.name.as_str());
            pod.ips.retain(|ip| owner.get(ip).is_none_or(|o| *o == me));
        }
        let mut index: HashMap<(String, String), usize> = snapshot
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.namespace.clone(), p.name.clone()), i))
            .collect();
        for admitted in self.by_key.values() {
            let id = (admitted.namespace.clone(), admitted.name.clone());
            let at = *index.entry(id).or_insert_with(|| {
                snapshot.pods.push(Pod {
                    ips: Vec::new(),
                    ..admitted.clone()
                });
                snapshot.pods.len() - 1
            });
            let pod = &mut snapshot.pods[at];
            pod.node = node.to_owned();
            for ip in &admitted.ips {
                if !pod.ips.contains(ip) {
                    pod.ips.push(*ip);
                }
            }
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
}
