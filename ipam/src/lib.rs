//! podnet IPAM (see issue 3): cluster range -> node CIDRs ([`cidr`], [`cluster`]) and node CIDR ->
//! pod addresses ([`pool`]). Pure library code: no netlink, no CNI types, no async; the daemon owns
//! the sled database and serves these types over its socket.

mod addr;
pub mod cidr;
pub mod client;
pub mod cluster;
pub mod error;
pub mod pool;
pub mod proto;
pub mod spool;

pub use cidr::{choose_node_cidrs, node_cidrs, node_prefix_v4, ClusterConfig, NodeLease};
pub use cluster::{ClusterStore, MemoryClusterStore, NodeCidrAllocator, SledClusterStore};
pub use error::IpamError;
pub use pool::{
    AllocateRequest, Allocation, AttachmentKey, MemoryPoolStore, Pool, PoolConfig, PoolStore,
    RangeUsage, SledPoolStore,
};
