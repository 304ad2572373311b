//! podnet IPAM (see issue 3): cluster range -> node CIDRs ([`cidr`], [`cluster`]) and node CIDR ->
//! pod addresses ([`pool`]). Pure library code: no netlink, no CNI types, no async; the daemon owns
//! the sled database and serves these types over its socket.

mod addr;
pub mod attachment;
pub mod cidr;
pub mod client;
pub mod cluster;
pub mod error;
pub mod ident;
pub mod pool;
pub mod proto;
pub mod spool;

pub use addr::first_host;
pub use attachment::{Allocation, AttachmentKey, RangeUsage};
pub use cidr::{choose_node_cidrs, node_cidrs, node_prefix_v4, ClusterConfig, NodeLease};
#[cfg(feature = "sled")]
pub use cluster::SledClusterStore;
pub use cluster::{ClusterStore, MemoryClusterStore, NodeCidrAllocator};
pub use error::IpamError;
#[cfg(feature = "sled")]
pub use pool::SledPoolStore;
pub use pool::{AllocateRequest, MemoryPoolStore, Pool, PoolConfig, PoolStore};

/// A poisoned lock only means another thread panicked; no update in this
/// crate can stop halfway (maps change only after every check passed, one
/// operation at a time), so the data behind it is still consistent.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Helpers for this crate's tests.
#[cfg(test)]
#[cfg(feature = "sled")]
mod test_util {
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// Opens a sled database again after the test dropped it. sled 0.34
    /// releases its file lock only when its background flusher thread
    /// notices the drop, so an immediate reopen can meet `WouldBlock`;
    /// a new process (a restarted podnetd) never does.
    pub(crate) fn reopen_sled(path: &Path) -> sled::Db {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match sled::open(path) {
                Ok(db) => return db,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("reopening {}: {e}", path.display()),
            }
        }
    }
}
