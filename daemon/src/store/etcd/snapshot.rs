//! What the store holds when a node chooses its CIDRs: the node records
//! and the CIDR keys' owners, read at one revision.

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::IpNetwork;
use podnet_ipam::cidr::NodeLease;

use super::{warn_corrupt, Inner};
use crate::store::{NodeRecord, StoreError};

impl Inner {
    /// Node records and CIDR owners, at one revision.
    pub(super) async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let nodes_prefix = self.nodes_prefix();
        let (node_kvs, revision) = self.get_prefix(&nodes_prefix, None).await?;
        let cidrs_prefix = self.cidrs_prefix();
        let (cidr_kvs, _) = self.get_prefix(&cidrs_prefix, Some(revision)).await?;
        let mut snapshot = Snapshot::default();
        for kv in &node_kvs {
            match self.parse_node(&nodes_prefix, kv) {
                Some(Ok(record)) => {
                    snapshot.records.insert(record.node.clone(), record);
                }
                Some(Err(err)) => warn_corrupt(err),
                None => {}
            }
        }
        for kv in &cidr_kvs {
            let key = String::from_utf8_lossy(kv.key());
            let parsed = key
                .strip_prefix(&cidrs_prefix)
                .map(|c| c.replace('_', "/"))
                .and_then(|c| c.parse::<IpNetwork>().ok());
            match (parsed, std::str::from_utf8(kv.value())) {
                (Some(cidr), Ok(owner)) => {
                    snapshot.owners.insert(cidr, owner.to_string());
                }
                _ => warn_corrupt(StoreError::Corrupt {
                    key: key.to_string(),
                    reason: "not a CIDR key naming a node".to_string(),
                }),
            }
        }
        Ok(snapshot)
    }
}

/// What the store holds, for choosing a CIDR.
#[derive(Default)]
pub(super) struct Snapshot {
    pub(super) records: BTreeMap<String, NodeRecord>,
    /// CIDR key -> the node named in it.
    pub(super) owners: BTreeMap<IpNetwork, String>,
}

impl Snapshot {
    /// The CIDRs `node` holds: its record's, else (record unreadable) the
    /// CIDR keys naming it.
    pub(super) fn held_by(&self, node: &str) -> Vec<IpNetwork> {
        match self.records.get(node) {
            Some(record) => record.cidrs.clone(),
            None => self
                .owners
                .iter()
                .filter(|(_, owner)| *owner == node)
                .map(|(cidr, _)| *cidr)
                .collect(),
        }
    }

    pub(super) fn all_free_for(&self, cidrs: &[IpNetwork], node: &str) -> bool {
        cidrs
            .iter()
            .all(|cidr| self.owners.get(cidr).is_none_or(|owner| owner == node))
    }

    /// Every other node's CIDRs, from both the CIDR keys and the records.
    pub(super) fn others(&self, node: &str) -> Vec<NodeLease> {
        let mut by_node: BTreeMap<&str, BTreeSet<IpNetwork>> = BTreeMap::new();
        for (cidr, owner) in &self.owners {
            if owner != node {
                by_node.entry(owner).or_default().insert(*cidr);
            }
        }
        for record in self.records.values().filter(|r| r.node != node) {
            by_node
                .entry(&record.node)
                .or_default()
                .extend(record.cidrs.iter().copied());
        }
        by_node
            .into_iter()
            .map(|(node, cidrs)| NodeLease {
                node: node.to_string(),
                cidrs: cidrs.into_iter().collect(),
            })
            .collect()
    }
}
