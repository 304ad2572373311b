//! Cluster-level allocation: a node's CIDRs, leased in a store shared by all nodes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::lock;

use crate::addr::overlaps;
use crate::cidr::{choose_node_cidrs, ClusterConfig, NodeLease};
use crate::error::IpamError;

/// Where node leases live. The daemon has backends for etcd and Kubernetes; this crate ships an
/// in-memory one (tests) and a sled one (the single-node `local` backend).
pub trait ClusterStore: Send + Sync {
    fn leases(&self) -> Result<Vec<NodeLease>, IpamError>;

    /// Compare-and-swap: records `lease` unless another node holds a CIDR overlapping any of its
    /// CIDRs, or `lease.node` already holds a different lease; then returns `Ok(false)` and changes
    /// nothing. Claiming the exact lease a node already holds is `Ok(true)`.
    fn try_claim(&self, lease: &NodeLease) -> Result<bool, IpamError>;

    /// Forgets the node's lease; an unknown node is success.
    fn release(&self, node: &str) -> Result<(), IpamError>;
}

/// The claim rule shared by the embedded stores, over the current leases.
fn may_claim<'a>(lease: &NodeLease, mut current: impl Iterator<Item = &'a NodeLease>) -> Claim {
    let mut same = false;
    for held in current.by_ref() {
        if held.node == lease.node {
            if held.cidrs != lease.cidrs {
                return Claim::Refused;
            }
            same = true;
        } else if held
            .cidrs
            .iter()
            .any(|h| lease.cidrs.iter().any(|c| overlaps(h, c)))
        {
            return Claim::Refused;
        }
    }
    if same {
        Claim::AlreadyHeld
    } else {
        Claim::Free
    }
}

enum Claim {
    Free,
    AlreadyHeld,
    Refused,
}

/// Leases in process memory, for tests and tools.
#[derive(Debug, Default)]
pub struct MemoryClusterStore {
    leases: Mutex<BTreeMap<String, NodeLease>>,
}

impl ClusterStore for MemoryClusterStore {
    fn leases(&self) -> Result<Vec<NodeLease>, IpamError> {
        Ok(lock(&self.leases).values().cloned().collect())
    }

    fn try_claim(&self, lease: &NodeLease) -> Result<bool, IpamError> {
        let mut leases = lock(&self.leases);
        match may_claim(lease, leases.values()) {
            Claim::Refused => Ok(false),
            Claim::AlreadyHeld => Ok(true),
            Claim::Free => {
                leases.insert(lease.node.clone(), lease.clone());
                Ok(true)
            }
        }
    }

    fn release(&self, node: &str) -> Result<(), IpamError> {
        lock(&self.leases).remove(node);
        Ok(())
    }
}

/// Leases in a sled tree of the daemon's database: key = node name, value = the lease as JSON.
///
/// sled locks its database to one process, so an in-process mutex is enough to make the
/// read-check-write of `try_claim` atomic (sled transactions cannot scan a tree).
#[cfg(feature = "sled")]
#[derive(Debug)]
pub struct SledClusterStore {
    tree: sled::Tree,
    claim: Mutex<()>,
}

#[cfg(feature = "sled")]
impl SledClusterStore {
    pub fn open(tree: sled::Tree) -> Self {
        Self {
            tree,
            claim: Mutex::new(()),
        }
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<NodeLease, IpamError> {
        serde_json::from_slice(value).map_err(|e| IpamError::Corrupt {
            key: format!("node lease {}", String::from_utf8_lossy(key)),
            reason: e.to_string(),
        })
    }
}

#[cfg(feature = "sled")]
impl ClusterStore for SledClusterStore {
    fn leases(&self) -> Result<Vec<NodeLease>, IpamError> {
        self.tree
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Self::decode(&key, &value)
            })
            .collect()
    }

    fn try_claim(&self, lease: &NodeLease) -> Result<bool, IpamError> {
        let _claim = lock(&self.claim);
        let current = self.leases()?;
        match may_claim(lease, current.iter()) {
            Claim::Refused => Ok(false),
            Claim::AlreadyHeld => Ok(true),
            Claim::Free => {
                let value = serde_json::to_vec(lease).map_err(|source| IpamError::Encode {
                    what: "node lease",
                    source,
                })?;
                self.tree.insert(lease.node.as_bytes(), value)?;
                // A lease handed out and then forgotten in a crash could be given to a second node.
                self.tree.flush()?;
                Ok(true)
            }
        }
    }

    fn release(&self, node: &str) -> Result<(), IpamError> {
        let _claim = lock(&self.claim);
        if self.tree.remove(node.as_bytes())?.is_some() {
            self.tree.flush()?;
        }
        Ok(())
    }
}

/// How often `allocate` re-reads the leases after losing a claim to another node before giving up.
/// Each loss means some other node succeeded, so this only runs out under a burst of joins.
const MAX_CLAIM_ATTEMPTS: u32 = 16;

/// Gives each node its node CIDRs from the cluster ranges, through a [`ClusterStore`].
#[derive(Debug)]
pub struct NodeCidrAllocator<S: ClusterStore> {
    config: ClusterConfig,
    store: S,
}

impl<S: ClusterStore> NodeCidrAllocator<S> {
    pub fn new(config: ClusterConfig, store: S) -> Self {
        Self { config, store }
    }

    /// The node's lease: the one it already holds, or the lowest free CIDRs, claimed with
    /// compare-and-swap and retried when another node claimed them first.
    pub fn allocate(&self, node: &str) -> Result<NodeLease, IpamError> {
        for attempt in 1..=MAX_CLAIM_ATTEMPTS {
            let taken = self.store.leases()?;
            let lease = NodeLease {
                node: node.to_string(),
                cidrs: choose_node_cidrs(&self.config, node, &taken)?,
            };
            if self.store.try_claim(&lease)? {
                tracing::debug!(node, cidrs = ?lease.cidrs, attempt, "node CIDRs leased");
                return Ok(lease);
            }
            tracing::debug!(node, attempt, "lost a node CIDR claim, retrying");
        }
        Err(IpamError::ClaimContended {
            node: node.to_string(),
            attempts: MAX_CLAIM_ATTEMPTS,
        })
    }

    pub fn release(&self, node: &str) -> Result<(), IpamError> {
        self.store.release(node)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }
}

#[cfg(test)]
#[cfg(feature = "sled")]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use ipnetwork::IpNetwork;

    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn config() -> ClusterConfig {
        ClusterConfig::new(vec![net("10.244.0.0/16"), net("fd00:10::/48")], 24, 64).unwrap()
    }

    fn sled_store() -> SledClusterStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        SledClusterStore::open(db.open_tree("cluster.leases").unwrap())
    }

    fn distinct_nodes_get_disjoint_cidrs<S: ClusterStore>(store: S) {
        let alloc = NodeCidrAllocator::new(config(), store);
        let a = alloc.allocate("a").unwrap();
        let b = alloc.allocate("b").unwrap();
        assert_eq!(a.cidrs, vec![net("10.244.0.0/24"), net("fd00:10::/64")]);
        assert_eq!(b.cidrs, vec![net("10.244.1.0/24"), net("fd00:10:0:1::/64")]);
        // Restart: the same node asks again and keeps its CIDRs.
        assert_eq!(alloc.allocate("a").unwrap(), a);
        assert_eq!(alloc.store().leases().unwrap().len(), 2);
        // Release frees them for the next node.
        alloc.release("a").unwrap();
        alloc.release("a").unwrap();
        assert_eq!(alloc.allocate("c").unwrap().cidrs, a.cidrs);
        assert_eq!(alloc.allocate("b").unwrap(), b);
    }

    fn claims_are_compare_and_swap<S: ClusterStore>(store: S) {
        let a = NodeLease {
            node: "a".into(),
            cidrs: vec![net("10.244.0.0/23")],
        };
        assert!(store.try_claim(&a).unwrap());
        assert!(store.try_claim(&a).unwrap());
        // Another node on an overlapping CIDR.
        let b = NodeLease {
            node: "b".into(),
            cidrs: vec![net("10.244.1.0/24")],
        };
        assert!(!store.try_claim(&b).unwrap());
        // The same node asking for something else.
        let a2 = NodeLease {
            node: "a".into(),
            cidrs: vec![net("10.244.2.0/24")],
        };
        assert!(!store.try_claim(&a2).unwrap());
        assert_eq!(store.leases().unwrap(), vec![a]);
        store.release("a").unwrap();
        assert!(store.try_claim(&b).unwrap());
    }

    fn racing_nodes_never_share<S: ClusterStore + 'static>(store: S) {
        let alloc = Arc::new(NodeCidrAllocator::new(config(), store));
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let alloc = Arc::clone(&alloc);
                std::thread::spawn(move || alloc.allocate(&format!("node-{i}")).unwrap())
            })
            .collect();
        let leases: Vec<NodeLease> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let cidrs: HashSet<IpNetwork> = leases.iter().flat_map(|l| l.cidrs.clone()).collect();
        assert_eq!(cidrs.len(), 64);
        let mut stored = alloc.store().leases().unwrap();
        stored.sort_by(|a, b| a.node.cmp(&b.node));
        let mut returned = leases;
        returned.sort_by(|a, b| a.node.cmp(&b.node));
        assert_eq!(stored, returned);
    }

    /// A store that loses every claim, as if another node always got there first.
    struct Contended;

    impl ClusterStore for Contended {
        fn leases(&self) -> Result<Vec<NodeLease>, IpamError> {
            Ok(Vec::new())
        }
        fn try_claim(&self, _: &NodeLease) -> Result<bool, IpamError> {
            Ok(false)
        }
        fn release(&self, _: &str) -> Result<(), IpamError> {
            Ok(())
        }
    }

    #[test]
    fn memory_store_disjoint_and_restart() {
        distinct_nodes_get_disjoint_cidrs(MemoryClusterStore::default());
    }

    #[test]
    fn sled_store_disjoint_and_restart() {
        distinct_nodes_get_disjoint_cidrs(sled_store());
    }

    #[test]
    fn memory_store_compare_and_swap() {
        claims_are_compare_and_swap(MemoryClusterStore::default());
    }

    #[test]
    fn sled_store_compare_and_swap() {
        claims_are_compare_and_swap(sled_store());
    }

    #[test]
    fn memory_store_races() {
        racing_nodes_never_share(MemoryClusterStore::default());
    }

    #[test]
    fn sled_store_races() {
        racing_nodes_never_share(sled_store());
    }

    #[test]
    fn two_allocators_on_one_store_race_safely() {
        // Two "daemons" sharing a store, as nodes share etcd: the CAS, not the allocator, decides.
        let store = Arc::new(MemoryClusterStore::default());
        struct Shared(Arc<MemoryClusterStore>);
        impl ClusterStore for Shared {
            fn leases(&self) -> Result<Vec<NodeLease>, IpamError> {
                self.0.leases()
            }
            fn try_claim(&self, lease: &NodeLease) -> Result<bool, IpamError> {
                self.0.try_claim(lease)
            }
            fn release(&self, node: &str) -> Result<(), IpamError> {
                self.0.release(node)
            }
        }
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let alloc = NodeCidrAllocator::new(config(), Shared(Arc::clone(&store)));
                std::thread::spawn(move || alloc.allocate(&format!("n{i}")).unwrap())
            })
            .collect();
        let cidrs: HashSet<IpNetwork> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap().cidrs)
            .collect();
        assert_eq!(cidrs.len(), 32);
    }

    #[test]
    fn sled_leases_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let lease = {
            let db = sled::open(dir.path()).unwrap();
            let alloc = NodeCidrAllocator::new(
                config(),
                SledClusterStore::open(db.open_tree("l").unwrap()),
            );
            alloc.allocate("a").unwrap()
        };
        let db = crate::test_util::reopen_sled(dir.path());
        let alloc =
            NodeCidrAllocator::new(config(), SledClusterStore::open(db.open_tree("l").unwrap()));
        assert_eq!(alloc.store().leases().unwrap(), vec![lease.clone()]);
        assert_eq!(alloc.allocate("a").unwrap(), lease);
        assert_ne!(alloc.allocate("b").unwrap().cidrs, lease.cidrs);
    }

    #[test]
    fn lost_races_are_bounded() {
        let alloc = NodeCidrAllocator::new(config(), Contended);
        assert!(matches!(
            alloc.allocate("a"),
            Err(IpamError::ClaimContended {
                attempts: MAX_CLAIM_ATTEMPTS,
                ..
            })
        ));
    }

    #[test]
    fn exhaustion_is_reported() {
        let config = ClusterConfig::new(vec![net("10.0.0.0/23")], 24, 64).unwrap();
        let alloc = NodeCidrAllocator::new(config, MemoryClusterStore::default());
        alloc.allocate("a").unwrap();
        alloc.allocate("b").unwrap();
        let err = alloc.allocate("c").unwrap_err();
        assert!(err.is_exhausted(), "{err}");
    }

    #[test]
    fn corrupt_sled_lease_is_an_error() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("l").unwrap();
        tree.insert("a", "not json").unwrap();
        let store = SledClusterStore::open(tree);
        assert!(matches!(store.leases(), Err(IpamError::Corrupt { .. })));
    }
}
