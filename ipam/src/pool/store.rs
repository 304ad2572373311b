//! Where a node's allocations live: the store contract the allocator
//! relies on, and the in-memory store.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use ipnetwork::IpNetwork;

use crate::attachment::{Allocation, AttachmentKey};
use crate::error::IpamError;
use crate::lock;

/// Where allocations live. Implementations must make `commit` and `remove` atomic: an address is
/// owned exactly when its allocation exists.
pub trait PoolStore: Send + Sync {
    fn get(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError>;
    fn owner_of(&self, ip: IpAddr) -> Result<Option<AttachmentKey>, IpamError>;
    /// The last address handed out from `range`.
    fn cursor(&self, range: &IpNetwork) -> Result<Option<IpAddr>, IpamError>;
    /// Records the allocation and the new cursors in one atomic step. Replaces an existing
    /// allocation of the same key; fails with [`IpamError::AddressInUse`] (changing nothing) if
    /// another key owns one of its addresses.
    fn commit(&self, alloc: &Allocation, cursors: &[(IpNetwork, IpAddr)]) -> Result<(), IpamError>;
    fn remove(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError>;
    fn list(&self) -> Result<Vec<Allocation>, IpamError>;
    /// Durable on return against a crash of the process (sled 0.34: its log written
    /// and `sync_file_range`d, not a full fsync). Called before an allocation is acknowledged.
    fn flush(&self) -> Result<(), IpamError>;
}

/// Allocations in process memory, for tests and tools.
#[derive(Debug, Default)]
pub struct MemoryPoolStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    allocs: BTreeMap<AttachmentKey, Allocation>,
    owners: HashMap<IpAddr, AttachmentKey>,
    cursors: HashMap<IpNetwork, IpAddr>,
}

impl PoolStore for MemoryPoolStore {
    fn get(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError> {
        Ok(lock(&self.inner).allocs.get(key).cloned())
    }

    fn owner_of(&self, ip: IpAddr) -> Result<Option<AttachmentKey>, IpamError> {
        Ok(lock(&self.inner).owners.get(&ip).cloned())
    }

    fn cursor(&self, range: &IpNetwork) -> Result<Option<IpAddr>, IpamError> {
        Ok(lock(&self.inner).cursors.get(range).copied())
    }

    fn commit(&self, alloc: &Allocation, cursors: &[(IpNetwork, IpAddr)]) -> Result<(), IpamError> {
        let mut inner = lock(&self.inner);
        for ip in alloc.ips.iter().map(IpNetwork::ip) {
            if let Some(owner) = inner.owners.get(&ip).filter(|o| **o != alloc.key) {
                return Err(IpamError::AddressInUse {
                    ip,
                    owner: owner.clone(),
                });
            }
        }
        if let Some(old) = inner.allocs.remove(&alloc.key) {
            for ip in old.ips.iter().map(IpNetwork::ip) {
                inner.owners.remove(&ip);
            }
        }
        for ip in alloc.ips.iter().map(IpNetwork::ip) {
            inner.owners.insert(ip, alloc.key.clone());
        }
        inner.allocs.insert(alloc.key.clone(), alloc.clone());
        for (range, ip) in cursors {
            inner.cursors.insert(*range, *ip);
        }
        Ok(())
    }

    fn remove(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError> {
        let mut inner = lock(&self.inner);
        let removed = inner.allocs.remove(key);
        for ip in removed.iter().flat_map(|a| a.ips.iter().map(IpNetwork::ip)) {
            if inner.owners.get(&ip) == Some(key) {
                inner.owners.remove(&ip);
            }
        }
        Ok(removed)
    }

    fn list(&self) -> Result<Vec<Allocation>, IpamError> {
        Ok(lock(&self.inner).allocs.values().cloned().collect())
    }

    fn flush(&self) -> Result<(), IpamError> {
        Ok(())
    }
}
