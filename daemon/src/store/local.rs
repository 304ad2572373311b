//! The embedded store: one node, its CIDR lease kept in the daemon's own
//! sled database. No peers, so the watch only ever sends this node.

use podnet_ipam::cidr::ClusterConfig;
use podnet_ipam::cluster::{NodeCidrAllocator, SledClusterStore};
use tokio::sync::{mpsc, Mutex};

use super::{NodeRecord, StoreError, StoreEvent};

pub struct LocalBackend {
    allocator: NodeCidrAllocator<SledClusterStore>,
    me: Mutex<Option<NodeRecord>>,
    pub(crate) reach: super::StoreReach,
}

impl LocalBackend {
    pub fn new(config: ClusterConfig, tree: sled::Tree) -> Self {
        Self {
            allocator: NodeCidrAllocator::new(config, SledClusterStore::open(tree)),
            me: Mutex::new(None),
            reach: Default::default(),
        }
    }

    pub async fn register(&self, mut record: NodeRecord) -> Result<NodeRecord, StoreError> {
        let lease = self.allocator.allocate(&record.node)?;
        record.cidrs = lease.cidrs;
        *self.me.lock().await = Some(record.clone());
        Ok(record)
    }

    pub async fn list(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.me.lock().await.iter().cloned().collect())
    }

    pub async fn watch(&self, tx: mpsc::Sender<StoreEvent>) {
        let all = self.list().await.unwrap_or_default();
        if tx.send(StoreEvent::Resync(all)).await.is_ok() {
            tx.closed().await;
        }
    }
}
