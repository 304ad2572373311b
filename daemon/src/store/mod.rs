//! Cluster store backends: where node CIDR leases and node records live.
//!
//! `local` (embedded sled, one node, the demo and single-node default),
//! `etcd` (many hosts; a real etcd) and `kube` (the Kubernetes API: Nodes
//! and their `spec.podCIDRs`, as on kind). Each gives the same three
//! things: claim this node's CIDRs and publish its record, list every
//! node, and a watch of changes. An enum rather than a trait object: the set is closed and
//! async methods need no boxing this way.

pub mod etcd;
pub mod kube;
pub mod local;
pub mod reach;

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use self::reach::StoreReach;

/// What every node publishes about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    /// The node's pod CIDRs (one per address family).
    pub cidrs: Vec<IpNetwork>,
    /// The node's underlay addresses, which peers route pod traffic to.
    pub addresses: Vec<IpAddr>,
    /// The MAC of the node's VXLAN device, for peers on other L2 segments.
    pub vtep_mac: Option<String>,
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    /// A node joined or changed its record.
    Upsert(NodeRecord),
    /// A node left: deleted, or its lease expired.
    Removed(String),
    /// The whole set, sent first and after every reconnect (events may
    /// have been missed meanwhile).
    Resync(Vec<NodeRecord>),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Ipam(#[from] podnet_ipam::error::IpamError),
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("record under {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Kube(#[from] kube::KubeError),
    #[error("could not claim a node CIDR for {node} after {attempts} attempts (lost every race)")]
    Contended { node: String, attempts: u32 },
}

pub enum Backend {
    Local(local::LocalBackend),
    Etcd(etcd::EtcdBackend),
    Kube(kube::KubeBackend),
}

impl Backend {
    /// Claims this node's CIDRs (the same ones it held before, if any) and
    /// publishes `record` with them; the etcd backend keeps the record
    /// alive with a lease until the process ends. Returns the record as
    /// stored, CIDRs filled in.
    pub async fn register(&self, record: NodeRecord) -> Result<NodeRecord, StoreError> {
        match self {
            Self::Local(b) => b.register(record).await,
            Self::Etcd(b) => b.register(record).await,
            Self::Kube(b) => b.register(record).await,
        }
    }

    /// Every node's record, this node's included.
    pub async fn list(&self) -> Result<Vec<NodeRecord>, StoreError> {
        match self {
            Self::Local(b) => b.list().await,
            Self::Etcd(b) => b.list().await,
            Self::Kube(b) => b.list().await,
        }
    }

    /// Whether the store answers, as last seen (see [`StoreReach`]).
    pub fn reach(&self) -> &StoreReach {
        match self {
            Self::Local(b) => &b.reach,
            Self::Etcd(b) => &b.reach,
            Self::Kube(b) => &b.reach,
        }
    }

    /// A cheap request, to learn that a store marked lost answers again.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Local(_) => Ok(()),
            // Node records are a few hundred bytes: listing them is cheap.
            Self::Etcd(b) => b.list().await.map(drop),
            Self::Kube(b) => b.ping().await,
        }
    }

    /// Sends events to `tx` until it is closed, starting with a Resync;
    /// reconnects by itself (with backoff) when the store is unreachable,
    /// never reporting a node as removed just because the store is down.
    pub async fn watch(&self, tx: mpsc::Sender<StoreEvent>) {
        match self {
            Self::Local(b) => b.watch(tx).await,
            Self::Etcd(b) => b.watch(tx).await,
            Self::Kube(b) => b.watch(tx).await,
        }
    }
}
