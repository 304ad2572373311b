//! Node level: pod addresses inside the node CIDR(s), keyed by attachment.
//!
//! One [`Pool`] per node, owned by podnetd (sled locks its database to one process). Every CNI ADD
//! of the node goes through [`Pool::allocate`], every DEL through [`Pool::release`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::addr::{from_u128, normalise, same_family, span, to_u128};
use crate::error::IpamError;

/// One pod interface, the unit of allocation (CNI's "attachment"): a repeated ADD or DEL with the
/// same key is idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

impl fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub key: AttachmentKey,
    /// Each address with its node CIDR's prefix (`10.244.1.5/24`), one per pool range, in the
    /// order of [`PoolConfig::ranges`].
    pub ips: Vec<IpNetwork>,
    /// The gateway of each address's range, in the same order as `ips`.
    pub gateways: Vec<IpAddr>,
    /// The pod's netns path recorded at ADD, so the leak reclaimer can tell a dead pod.
    pub netns: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateRequest {
    pub key: AttachmentKey,
    pub netns: Option<String>,
    /// Static addresses asked for (CNI `ips` capability or args), at most one per family. A
    /// family without one gets the next free address.
    pub requested: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeUsage {
    pub range: IpNetwork,
    /// Addresses that can be handed out: the range minus network, gateway, IPv4 broadcast and
    /// reserved addresses.
    pub capacity: u128,
    pub used: u128,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    /// The node CIDR(s), at most one per family.
    pub ranges: Vec<IpNetwork>,
    /// Never handed out (e.g. addresses used by the node itself). Those outside every range are
    /// ignored.
    pub reserved: Vec<IpAddr>,
}

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
    /// Durable on return (sled: flush and fsync). Called before an allocation is acknowledged.
    fn flush(&self) -> Result<(), IpamError>;
}

/// A poisoned lock only means another thread panicked; no update here can stop halfway (the maps
/// are changed only after every check passed), so the data is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Tree holding attachment key -> allocation (JSON).
pub const TREE_ALLOC: &str = "pool.alloc";
/// Tree holding address (4 or 16 octets) -> attachment key.
pub const TREE_OWNER: &str = "pool.owner";
/// Tree holding range (`10.244.1.0/24`) -> last address handed out (4 or 16 octets).
pub const TREE_CURSOR: &str = "pool.cursor";

/// Allocations in the daemon's sled database, in three trees ([`TREE_ALLOC`], [`TREE_OWNER`],
/// [`TREE_CURSOR`]) changed together in one transaction, so a crash never leaves an address owned
/// without its allocation or the reverse.
///
/// Attachment keys are stored as an 8-byte big-endian length of the container id, the container
/// id, then the interface name: unambiguous whatever bytes either holds.
#[derive(Debug)]
pub struct SledPoolStore {
    db: sled::Db,
    allocs: sled::Tree,
    owners: sled::Tree,
    cursors: sled::Tree,
}

type TxResult<T> = Result<T, ConflictableTransactionError<IpamError>>;

impl SledPoolStore {
    pub fn open(db: &sled::Db) -> Result<Self, IpamError> {
        Ok(Self {
            db: db.clone(),
            allocs: db.open_tree(TREE_ALLOC)?,
            owners: db.open_tree(TREE_OWNER)?,
            cursors: db.open_tree(TREE_CURSOR)?,
        })
    }

    fn from_tx<T>(result: Result<T, TransactionError<IpamError>>) -> Result<T, IpamError> {
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => IpamError::Store(e),
        })
    }

    /// Drops the owner entries of `key`'s current allocation, if any.
    fn tx_forget(
        allocs: &TransactionalTree,
        owners: &TransactionalTree,
        key: &AttachmentKey,
        key_bytes: &[u8],
    ) -> TxResult<Option<Allocation>> {
        let Some(old) = allocs.remove(key_bytes)? else {
            return Ok(None);
        };
        let old = decode_alloc(key, &old).map_err(ConflictableTransactionError::Abort)?;
        for ip in old.ips.iter().map(IpNetwork::ip) {
            let ip_bytes = encode_ip(ip);
            if owners.get(&ip_bytes)?.as_deref() == Some(key_bytes) {
                owners.remove(ip_bytes)?;
            }
        }
        Ok(Some(old))
    }
}

fn encode_key(key: &AttachmentKey) -> Vec<u8> {
    let id = key.container_id.as_bytes();
    let mut out = Vec::with_capacity(8 + id.len() + key.ifname.len());
    out.extend_from_slice(&(id.len() as u64).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(key.ifname.as_bytes());
    out
}

fn decode_key(bytes: &[u8]) -> Result<AttachmentKey, IpamError> {
    let corrupt = |reason: &str| IpamError::Corrupt {
        key: format!("attachment key {}", String::from_utf8_lossy(bytes)),
        reason: reason.to_string(),
    };
    let (len, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("shorter than its length prefix"))?;
    let len = usize::try_from(u64::from_be_bytes(*len))
        .map_err(|_| corrupt("container id length overflows"))?;
    let (id, ifname) = rest
        .split_at_checked(len)
        .ok_or_else(|| corrupt("container id longer than the record"))?;
    Ok(AttachmentKey {
        container_id: String::from_utf8(id.to_vec())
            .map_err(|_| corrupt("container id is not UTF-8"))?,
        ifname: String::from_utf8(ifname.to_vec()).map_err(|_| corrupt("ifname is not UTF-8"))?,
    })
}

fn encode_ip(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn decode_ip(what: &str, bytes: &[u8]) -> Result<IpAddr, IpamError> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::from(octets))
    } else if let Ok(octets) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::from(octets))
    } else {
        Err(IpamError::Corrupt {
            key: what.to_string(),
            reason: format!("an address of {} bytes", bytes.len()),
        })
    }
}

fn decode_alloc(key: &AttachmentKey, bytes: &[u8]) -> Result<Allocation, IpamError> {
    serde_json::from_slice(bytes).map_err(|e| IpamError::Corrupt {
        key: format!("allocation {key}"),
        reason: e.to_string(),
    })
}

impl PoolStore for SledPoolStore {
    fn get(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError> {
        self.allocs
            .get(encode_key(key))?
            .map(|v| decode_alloc(key, &v))
            .transpose()
    }

    fn owner_of(&self, ip: IpAddr) -> Result<Option<AttachmentKey>, IpamError> {
        self.owners
            .get(encode_ip(ip))?
            .map(|v| decode_key(&v))
            .transpose()
    }

    fn cursor(&self, range: &IpNetwork) -> Result<Option<IpAddr>, IpamError> {
        self.cursors
            .get(range.to_string())?
            .map(|v| decode_ip(&format!("cursor of {range}"), &v))
            .transpose()
    }

    fn commit(&self, alloc: &Allocation, cursors: &[(IpNetwork, IpAddr)]) -> Result<(), IpamError> {
        let key_bytes = encode_key(&alloc.key);
        let value = serde_json::to_vec(alloc).map_err(|source| IpamError::Encode {
            what: "allocation",
            source,
        })?;
        let ips: Vec<(IpAddr, Vec<u8>)> = alloc
            .ips
            .iter()
            .map(|n| (n.ip(), encode_ip(n.ip())))
            .collect();
        let cursors: Vec<(String, Vec<u8>)> = cursors
            .iter()
            .map(|(range, ip)| (range.to_string(), encode_ip(*ip)))
            .collect();
        let result = (&self.allocs, &self.owners, &self.cursors).transaction(
            |(tx_allocs, tx_owners, tx_cursors)| {
                for (ip, ip_bytes) in &ips {
                    if let Some(owner) = tx_owners.get(ip_bytes)? {
                        if *owner != *key_bytes {
                            let owner =
                                decode_key(&owner).map_err(ConflictableTransactionError::Abort)?;
                            return Err(ConflictableTransactionError::Abort(
                                IpamError::AddressInUse { ip: *ip, owner },
                            ));
                        }
                    }
                }
                Self::tx_forget(tx_allocs, tx_owners, &alloc.key, &key_bytes)?;
                for (_, ip_bytes) in &ips {
                    tx_owners.insert(ip_bytes.as_slice(), key_bytes.as_slice())?;
                }
                tx_allocs.insert(key_bytes.as_slice(), value.as_slice())?;
                for (range, ip_bytes) in &cursors {
                    tx_cursors.insert(range.as_bytes(), ip_bytes.as_slice())?;
                }
                Ok(())
            },
        );
        Self::from_tx(result)
    }

    fn remove(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError> {
        let key_bytes = encode_key(key);
        let result = (&self.allocs, &self.owners).transaction(|(tx_allocs, tx_owners)| {
            Self::tx_forget(tx_allocs, tx_owners, key, &key_bytes)
        });
        Self::from_tx(result)
    }

    fn list(&self) -> Result<Vec<Allocation>, IpamError> {
        self.allocs
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                decode_alloc(&decode_key(&k)?, &v)
            })
            .collect()
    }

    fn flush(&self) -> Result<(), IpamError> {
        self.db.flush()?;
        Ok(())
    }
}

/// One node CIDR with its derived bounds, as integers.
#[derive(Debug)]
struct Range {
    net: IpNetwork,
    v4: bool,
    network: u128,
    gateway: u128,
    /// IPv4 only; IPv6 has no broadcast and hands out its last address.
    broadcast: Option<u128>,
    first_usable: u128,
    last_usable: u128,
    /// Configured reservations inside `first_usable..=last_usable`.
    reserved: BTreeSet<u128>,
}

impl Range {
    fn new(net: IpNetwork, reserved: &[IpAddr]) -> Result<Self, IpamError> {
        let v4 = net.is_ipv4();
        // A /31 (RFC 3021 point-to-point) or /32 has no room for a gateway on the node's bridge
        // and a pod besides; the same holds for an IPv6 /127 or /128 once the subnet-router
        // anycast address is left out.
        if (v4 && net.prefix() > 30) || (!v4 && net.prefix() > 126) {
            return Err(IpamError::InvalidRange {
                range: net,
                reason: "too small: no pod address left after network, gateway and broadcast",
            });
        }
        let (network, last) = span(&net);
        let broadcast = v4.then_some(last);
        let first_usable = network + 2;
        let last_usable = if v4 { last - 1 } else { last };
        let reserved = reserved
            .iter()
            .filter(|ip| net.contains(**ip))
            .map(|ip| to_u128(*ip))
            .filter(|ip| (first_usable..=last_usable).contains(ip))
            .collect();
        Ok(Self {
            net,
            v4,
            network,
            gateway: network + 1,
            broadcast,
            first_usable,
            last_usable,
            reserved,
        })
    }

    fn ip(&self, value: u128) -> IpAddr {
        from_u128(value, self.v4)
    }

    /// Why `ip` (inside this range) can never be handed out, if it cannot.
    fn unassignable(&self, ip: IpAddr) -> Option<&'static str> {
        let value = to_u128(ip);
        if value == self.network {
            Some(if self.v4 {
                "the network address"
            } else {
                "the subnet-router anycast address"
            })
        } else if value == self.gateway {
            Some("the gateway address")
        } else if Some(value) == self.broadcast {
            Some("the broadcast address")
        } else if self.reserved.contains(&value) {
            Some("reserved in the pool configuration")
        } else {
            None
        }
    }

    fn usable(&self) -> u128 {
        self.last_usable - self.first_usable + 1
    }

    fn capacity(&self) -> u128 {
        self.usable() - self.reserved.len() as u128
    }

    fn after(&self, value: u128) -> u128 {
        if value >= self.last_usable || value < self.first_usable {
            self.first_usable
        } else {
            value + 1
        }
    }

    fn with_prefix(&self, ip: IpAddr) -> Result<IpNetwork, IpamError> {
        IpNetwork::new(ip, self.net.prefix()).map_err(|_| IpamError::InvalidRange {
            range: self.net,
            reason: "prefix longer than the address family",
        })
    }
}

/// The address allocator of one node.
#[derive(Debug)]
pub struct Pool<S: PoolStore> {
    config: PoolConfig,
    ranges: Vec<Range>,
    store: S,
    /// Serialises the read-choose-commit of allocate and release: this process is the only
    /// writer, so a mutex is cheaper than store-level retries.
    lock: Mutex<()>,
}

impl<S: PoolStore> Pool<S> {
    /// Validates the ranges: at least one, at most one per family, each leaving a pod address after
    /// the unusable ones. Host bits of a range are cleared.
    pub fn new(config: PoolConfig, store: S) -> Result<Self, IpamError> {
        if config.ranges.is_empty() {
            return Err(IpamError::NoRanges);
        }
        let config = PoolConfig {
            ranges: config.ranges.into_iter().map(normalise).collect(),
            reserved: config.reserved,
        };
        let mut ranges: Vec<Range> = Vec::with_capacity(config.ranges.len());
        for net in &config.ranges {
            if ranges.iter().any(|r| r.v4 == net.is_ipv4()) {
                return Err(IpamError::InvalidRange {
                    range: *net,
                    reason: "a second range of the same family: a node pool has one per family",
                });
            }
            ranges.push(Range::new(*net, &config.reserved)?);
        }
        Ok(Self {
            config,
            ranges,
            store,
            lock: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The gateway of a node CIDR (the node's bridge address): its first host, network + 1.
    pub fn gateway(range: &IpNetwork) -> IpAddr {
        let (network, _) = span(range);
        from_u128(network.wrapping_add(1), range.is_ipv4())
    }

    /// Gives `req.key` one address per range, or returns the allocation it already holds.
    ///
    /// Dynamic addresses come after the range's cursor (the last one handed out), wrapping at the
    /// end, so a just-freed address rests while unused ones remain and a stale peer cannot reach a
    /// new pod. Static requests must be inside a range, assignable and free; they do not move the
    /// cursor. Nothing is stored unless every range got an address. The store is flushed before
    /// returning, outside the lock, so concurrent requests share fsyncs instead of queueing on them.
    pub fn allocate(&self, req: &AllocateRequest) -> Result<Allocation, IpamError> {
        let wanted = self.check_requested(&req.requested)?;
        let alloc = {
            let _guard = lock(&self.lock);
            match self.store.get(&req.key)? {
                Some(existing) => {
                    let held = |ip: &IpAddr| existing.ips.iter().any(|n| n.ip() == *ip);
                    if !req.requested.iter().all(held) {
                        return Err(IpamError::RequestMismatch {
                            key: req.key.clone(),
                            existing: existing.ips,
                            requested: req.requested.clone(),
                        });
                    }
                    existing
                }
                None => self.allocate_new(req, &wanted)?,
            }
        };
        // Also on the idempotent path: the first attempt may have committed and then failed (or
        // crashed the caller) before its flush.
        self.store.flush()?;
        Ok(alloc)
    }

    /// The static request for each range, in range order, checked against the configuration.
    fn check_requested(&self, requested: &[IpAddr]) -> Result<Vec<Option<IpAddr>>, IpamError> {
        let mut wanted = vec![None; self.ranges.len()];
        for ip in requested {
            let Some(i) = self.ranges.iter().position(|r| r.net.contains(*ip)) else {
                return Err(IpamError::AddressOutsidePool {
                    ip: *ip,
                    ranges: self.config.ranges.clone(),
                });
            };
            if let Some(first) = requested
                .iter()
                .find(|other| *other != ip && same_family(**other, *ip))
            {
                return Err(IpamError::RequestedFamilyTwice {
                    first: *first,
                    second: *ip,
                });
            }
            if let Some(reason) = self.ranges[i].unassignable(*ip) {
                return Err(IpamError::AddressReserved { ip: *ip, reason });
            }
            wanted[i] = Some(*ip);
        }
        Ok(wanted)
    }

    fn allocate_new(
        &self,
        req: &AllocateRequest,
        wanted: &[Option<IpAddr>],
    ) -> Result<Allocation, IpamError> {
        let mut ips = Vec::with_capacity(self.ranges.len());
        let mut gateways = Vec::with_capacity(self.ranges.len());
        let mut cursors = Vec::with_capacity(self.ranges.len());
        for (range, wanted) in self.ranges.iter().zip(wanted) {
            let ip = match wanted {
                Some(ip) => {
                    if let Some(owner) = self.store.owner_of(*ip)? {
                        return Err(IpamError::AddressInUse { ip: *ip, owner });
                    }
                    *ip
                }
                None => {
                    let ip = self.next_free(range)?;
                    cursors.push((range.net, ip));
                    ip
                }
            };
            ips.push(range.with_prefix(ip)?);
            gateways.push(range.ip(range.gateway));
        }
        let alloc = Allocation {
            key: req.key.clone(),
            ips,
            gateways,
            netns: req.netns.clone(),
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        self.store.commit(&alloc, &cursors)?;
        tracing::debug!(
            container_id = %req.key.container_id,
            ifname = %req.key.ifname,
            ips = ?alloc.ips,
            "allocated"
        );
        Ok(alloc)
    }

    /// The first free address after the cursor, wrapping once around the usable addresses.
    ///
    /// Each step skips one owned or reserved address, so a free address is found within
    /// (allocated + reserved + 1) steps: a handful for an IPv6 /64, however large the range.
    /// Only a truly full range walks it entirely, which for a v4 node CIDR is at most a few
    /// thousand lookups.
    fn next_free(&self, range: &Range) -> Result<IpAddr, IpamError> {
        let mut candidate = match self.store.cursor(&range.net)? {
            Some(cursor) if range.net.contains(cursor) => range.after(to_u128(cursor)),
            _ => range.first_usable,
        };
        for _ in 0..range.usable() {
            let ip = range.ip(candidate);
            if !range.reserved.contains(&candidate) && self.store.owner_of(ip)?.is_none() {
                return Ok(ip);
            }
            candidate = range.after(candidate);
        }
        Err(IpamError::PoolExhausted {
            range: range.net,
            capacity: range.capacity(),
        })
    }

    /// Frees the key's addresses; `Ok(None)` for an unknown key, which is success for DEL. Flushed
    /// before returning so an acknowledged DEL is not undone by a crash (the address would leak
    /// until the reclaimer noticed).
    pub fn release(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError> {
        let removed = {
            let _guard = lock(&self.lock);
            self.store.remove(key)?
        };
        if let Some(alloc) = &removed {
            self.store.flush()?;
            tracing::debug!(
                container_id = %key.container_id,
                ifname = %key.ifname,
                ips = ?alloc.ips,
                "released"
            );
        }
        Ok(removed)
    }

    pub fn get(&self, key: &AttachmentKey) -> Result<Option<Allocation>, IpamError> {
        self.store.get(key)
    }

    pub fn list(&self) -> Result<Vec<Allocation>, IpamError> {
        self.store.list()
    }

    /// Capacity and use per range, in range order.
    pub fn usage(&self) -> Result<Vec<RangeUsage>, IpamError> {
        let allocs = self.store.list()?;
        Ok(self
            .ranges
            .iter()
            .map(|range| RangeUsage {
                range: range.net,
                capacity: range.capacity(),
                used: allocs
                    .iter()
                    .flat_map(|a| a.ips.iter())
                    .filter(|n| range.net.contains(n.ip()))
                    .count() as u128,
            })
            .collect())
    }

    pub fn store(&self) -> &S {
        &self.store
    }
}
