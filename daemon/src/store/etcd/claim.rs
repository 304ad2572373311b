//! Claiming a node's CIDRs: choose around what the store holds, then one
//! transaction that succeeds only if no other node took them meanwhile
//! (see the module docs of `etcd`).

use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use ipnetwork::IpNetwork;
use podnet_ipam::cidr::{choose_node_cidrs, NodeLease};
use podnet_ipam::error::IpamError;

use super::snapshot::Snapshot;
use super::{Inner, MAX_CLAIM_ATTEMPTS};
use crate::retry::AttemptJitter;
use crate::store::{NodeRecord, StoreError};

/// The random delay before choosing again, growing with the attempt (10 ms
/// more each time, at most 250 ms): nodes that lost the same race do not
/// all read and choose the same free CIDR again at the same instant.
const CLAIM_JITTER: AttemptJitter = AttemptJitter {
    base: Duration::ZERO,
    step: Duration::from_millis(10),
    max: Duration::from_millis(250),
};

impl Inner {
    /// Chooses and claims the node's CIDRs, then publishes the record, all
    /// attached to `lease`. `preferred` (a record being re-registered)
    /// takes precedence over what the store holds for the node; either is
    /// kept when no other node has taken it meanwhile.
    pub(super) async fn claim(
        &self,
        mut record: NodeRecord,
        lease: i64,
        preferred: &[IpNetwork],
    ) -> Result<NodeRecord, StoreError> {
        let node = record.node.clone();
        for attempt in 1..=MAX_CLAIM_ATTEMPTS {
            let snapshot = self.snapshot().await?;
            record.cidrs = self.choose(&snapshot, &node, preferred)?;
            let txn = self.claim_txn(&snapshot, &record, lease)?;
            let mut client = self.client.clone();
            if self.call(client.txn(txn)).await?.succeeded() {
                return Ok(record);
            }
            tracing::debug!(%node, attempt, cidrs = ?record.cidrs, "lost a race for a node CIDR; choosing again");
            tokio::time::sleep(CLAIM_JITTER.delay(attempt, &node)).await;
        }
        Err(StoreError::Contended {
            node,
            attempts: MAX_CLAIM_ATTEMPTS,
        })
    }

    /// The CIDRs `node` should claim: the ones it held (`preferred`, else
    /// the store's) while no other node has them, otherwise new ones.
    fn choose(
        &self,
        snapshot: &Snapshot,
        node: &str,
        preferred: &[IpNetwork],
    ) -> Result<Vec<IpNetwork>, StoreError> {
        let held = if preferred.is_empty() {
            snapshot.held_by(node)
        } else {
            preferred.to_vec()
        };
        let held_free = snapshot.all_free_for(&held, node);
        if !held.is_empty() && !held_free {
            tracing::error!(
                %node,
                cidrs = ?held,
                "this node's previous CIDRs were taken by another node while its lease was gone; choosing new ones"
            );
        }
        let mut taken = snapshot.others(node);
        if held_free && !held.is_empty() {
            taken.push(NodeLease {
                node: node.to_string(),
                cidrs: held,
            });
        }
        Ok(choose_node_cidrs(&self.config, node, &taken)?)
    }

    /// "Each of the record's CIDR keys is absent or already names this
    /// node" then "put the record and every CIDR key with `lease`". A key
    /// the snapshot saw is compared by value: it may be this node's from
    /// before a restart, and must still be when the transaction runs.
    fn claim_txn(
        &self,
        snapshot: &Snapshot,
        record: &NodeRecord,
        lease: i64,
    ) -> Result<Txn, StoreError> {
        let node = &record.node;
        let value = serde_json::to_vec(record).map_err(|source| {
            StoreError::Ipam(IpamError::Encode {
                what: "node record",
                source,
            })
        })?;
        let compares: Vec<Compare> = record
            .cidrs
            .iter()
            .map(|cidr| {
                let key = self.cidr_key(cidr);
                if snapshot.owners.contains_key(cidr) {
                    Compare::value(key, CompareOp::Equal, node.as_bytes())
                } else {
                    Compare::create_revision(key, CompareOp::Equal, 0)
                }
            })
            .collect();
        let with_lease = || Some(PutOptions::new().with_lease(lease));
        let mut puts = vec![TxnOp::put(self.node_key(node), value, with_lease())];
        puts.extend(
            record
                .cidrs
                .iter()
                .map(|cidr| TxnOp::put(self.cidr_key(cidr), node.as_bytes(), with_lease())),
        );
        Ok(Txn::new().when(compares).and_then(puts))
    }
}
