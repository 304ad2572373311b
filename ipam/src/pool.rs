//! Node level: pod addresses inside the node CIDR(s), keyed by attachment.
//!
//! One [`Pool`] per node, owned by podnetd (sled locks its database to one process). Every CNI ADD
//! of the node goes through [`Pool::allocate`], every DEL through [`Pool::release`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::addr::{from_u128, normalise, same_family, span, to_u128};
use crate::error::IpamError;
use crate::ident::{check_ifname, is_cni_identifier, MAX_CONTAINER_ID};

/// One pod interface, the unit of allocation (CNI's "attachment"): a repeated ADD or DEL with the
/// same key is idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentKey {
    /// The key as a plugin can send it: the container id by CNI's pattern
    /// (at most [`MAX_CONTAINER_ID`] bytes), the ifname one the kernel
    /// takes ([`check_ifname`]). The daemon checks every key it is sent.
    pub fn validate(&self) -> Result<(), String> {
        if self.container_id.len() > MAX_CONTAINER_ID || !is_cni_identifier(&self.container_id) {
            return Err(format!(
                "container id {:?} is not ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ of at most {MAX_CONTAINER_ID} bytes",
                self.container_id.chars().take(64).collect::<String>()
            ));
        }
        check_ifname(&self.ifname)
    }
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

impl Allocation {
    /// Every address inside one of `cidrs` (the node's): false for a pod
    /// left on a former node CIDR, which peers no longer route to.
    pub fn within(&self, cidrs: &[IpNetwork]) -> bool {
        self.ips
            .iter()
            .all(|ip| cidrs.iter().any(|c| c.contains(ip.ip())))
    }
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
    /// Durable on return against a crash of the process (sled 0.34: its log written
    /// and `sync_file_range`d, not a full fsync). Called before an allocation is acknowledged.
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

/// The ranges a pool hands out from, validated, replaced whole when the
/// node's CIDRs change.
#[derive(Debug)]
struct Layout {
    config: PoolConfig,
    ranges: Vec<Range>,
}

impl Layout {
    /// Validates the ranges: at least one, at most one per family, each leaving a pod address after
    /// the unusable ones. Host bits of a range are cleared.
    fn new(config: PoolConfig) -> Result<Self, IpamError> {
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
        Ok(Self { config, ranges })
    }
}

/// The address allocator of one node.
#[derive(Debug)]
pub struct Pool<S: PoolStore> {
    layout: RwLock<Arc<Layout>>,
    store: S,
    /// Serialises the read-choose-commit of allocate and release, and a change of ranges: this
    /// process is the only writer, so a mutex is cheaper than store-level retries.
    lock: Mutex<()>,
}

impl<S: PoolStore> Pool<S> {
    /// See [`Layout::new`] for what is checked.
    pub fn new(config: PoolConfig, store: S) -> Result<Self, IpamError> {
        Ok(Self {
            layout: RwLock::new(Arc::new(Layout::new(config)?)),
            store,
            lock: Mutex::new(()),
        })
    }

    fn layout(&self) -> Arc<Layout> {
        self.layout
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn config(&self) -> PoolConfig {
        self.layout().config.clone()
    }

    /// Hands out from `ranges` from now on (the node's CIDRs changed). Existing allocations stay
    /// where they are, in or out of the new ranges ([`Pool::outside_ranges`]): a running pod keeps
    /// its address until it is deleted. Nothing changes if `ranges` is invalid.
    pub fn set_ranges(&self, ranges: Vec<IpNetwork>) -> Result<(), IpamError> {
        let _guard = lock(&self.lock);
        let layout = Layout::new(PoolConfig {
            ranges,
            reserved: self.layout().config.reserved.clone(),
        })?;
        *self.layout.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(layout);
        Ok(())
    }

    /// Allocations holding an address outside the current ranges: pods from before the node's
    /// CIDRs changed, which peers no longer route to and must be recreated.
    pub fn outside_ranges(&self) -> Result<Vec<Allocation>, IpamError> {
        let cidrs = self.layout().config.ranges.clone();
        Ok(self
            .store
            .list()?
            .into_iter()
            .filter(|a| !a.within(&cidrs))
            .collect())
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
    /// returning, outside the lock, so concurrent requests do not queue on the lock while flushing.
    pub fn allocate(&self, req: &AllocateRequest) -> Result<Allocation, IpamError> {
        let alloc = {
            let _guard = lock(&self.lock);
            // Read under the lock: a change of ranges never meets half an allocation.
            let layout = self.layout();
            let wanted = check_requested(&layout, &req.requested)?;
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
                None => self.allocate_new(&layout, req, &wanted)?,
            }
        };
        // Also on the idempotent path: the first attempt may have committed and then failed (or
        // crashed the caller) before its flush.
        self.store.flush()?;
        Ok(alloc)
    }

    fn allocate_new(
        &self,
        layout: &Layout,
        req: &AllocateRequest,
        wanted: &[Option<IpAddr>],
    ) -> Result<Allocation, IpamError> {
        let mut ips = Vec::with_capacity(layout.ranges.len());
        let mut gateways = Vec::with_capacity(layout.ranges.len());
        let mut cursors = Vec::with_capacity(layout.ranges.len());
        for (range, wanted) in layout.ranges.iter().zip(wanted) {
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
            .layout()
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

/// The static request for each range, in range order, checked against the configuration.
fn check_requested(
    layout: &Layout,
    requested: &[IpAddr],
) -> Result<Vec<Option<IpAddr>>, IpamError> {
    let mut wanted = vec![None; layout.ranges.len()];
    for ip in requested {
        let Some(i) = layout.ranges.iter().position(|r| r.net.contains(*ip)) else {
            return Err(IpamError::AddressOutsidePool {
                ip: *ip,
                ranges: layout.config.ranges.clone(),
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
        if let Some(reason) = layout.ranges[i].unassignable(*ip) {
            return Err(IpamError::AddressReserved { ip: *ip, reason });
        }
        wanted[i] = Some(*ip);
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(id: &str) -> AttachmentKey {
        AttachmentKey {
            container_id: id.to_string(),
            ifname: "eth0".to_string(),
        }
    }

    fn req(id: &str) -> AllocateRequest {
        AllocateRequest {
            key: key(id),
            netns: Some(format!("/var/run/netns/{id}")),
            requested: Vec::new(),
        }
    }

    fn static_req(id: &str, ips: &[&str]) -> AllocateRequest {
        AllocateRequest {
            requested: ips.iter().map(|s| ip(s)).collect(),
            ..req(id)
        }
    }

    fn pool<S: PoolStore>(store: S, ranges: &[&str], reserved: &[&str]) -> Pool<S> {
        Pool::new(
            PoolConfig {
                ranges: ranges.iter().map(|r| net(r)).collect(),
                reserved: reserved.iter().map(|r| ip(r)).collect(),
            },
            store,
        )
        .unwrap()
    }

    fn v4(alloc: &Allocation) -> IpAddr {
        alloc.ips[0].ip()
    }

    // ---- The contract, written once, run against every store (see `contract!` below). ----

    fn idempotent_repeat<S: PoolStore>(store: S) {
        let pool = pool(store, &["10.244.1.0/24", "fd00:1::/64"], &[]);
        let first = pool.allocate(&req("a")).unwrap();
        assert_eq!(first.ips, vec![net("10.244.1.2/24"), net("fd00:1::2/64")]);
        assert_eq!(first.gateways, vec![ip("10.244.1.1"), ip("fd00:1::1")]);
        assert_eq!(first.netns.as_deref(), Some("/var/run/netns/a"));
        // A different netns on the repeat changes nothing: the key decides.
        let again = pool
            .allocate(&AllocateRequest {
                netns: None,
                ..req("a")
            })
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(pool.list().unwrap(), vec![first.clone()]);
        // A repeat asking for the address it holds is fine, for another one is an error.
        assert_eq!(
            pool.allocate(&static_req("a", &["10.244.1.2"])).unwrap(),
            first
        );
        assert!(matches!(
            pool.allocate(&static_req("a", &["10.244.1.9"])),
            Err(IpamError::RequestMismatch { .. })
        ));
        // Another interface of the same container is another attachment.
        let eth1 = pool
            .allocate(&AllocateRequest {
                key: AttachmentKey {
                    container_id: "a".into(),
                    ifname: "eth1".into(),
                },
                netns: None,
                requested: vec![],
            })
            .unwrap();
        assert_eq!(v4(&eth1), ip("10.244.1.3"));
    }

    fn never_special_addresses<S: PoolStore>(store: S) {
        let pool = pool(
            store,
            &["10.0.0.0/28", "fd00::/124"],
            &["10.0.0.5", "fd00::3", "192.168.0.1"],
        );
        let mut seen = HashSet::new();
        while let Ok(alloc) = pool.allocate(&req(&format!("c{}", seen.len()))) {
            for n in &alloc.ips {
                assert!(seen.insert(n.ip()), "{} handed out twice", n.ip());
            }
        }
        let forbidden = [
            "10.0.0.0",
            "10.0.0.1",
            "10.0.0.15",
            "10.0.0.5",
            "fd00::",
            "fd00::1",
            "fd00::3",
        ];
        for f in forbidden {
            assert!(!seen.contains(&ip(f)), "{f} handed out");
        }
        // v4: 16 - network, gateway, broadcast, one reserved = 12; v6: 16 - anycast, gateway,
        // one reserved = 13, so v4 ran out first and v6 kept one address free.
        assert_eq!(seen.len(), 24);
        assert!(seen.contains(&ip("10.0.0.14")));
        assert!(seen.contains(&ip("fd00::f")) || seen.contains(&ip("fd00::e")));
    }

    fn freed_address_rests<S: PoolStore>(store: S) {
        let pool = pool(store, &["10.0.0.0/24"], &[]);
        let a = pool.allocate(&req("a")).unwrap();
        let b = pool.allocate(&req("b")).unwrap();
        assert_eq!((v4(&a), v4(&b)), (ip("10.0.0.2"), ip("10.0.0.3")));
        assert_eq!(pool.release(&key("a")).unwrap(), Some(a.clone()));
        let c = pool.allocate(&req("c")).unwrap();
        assert_eq!(v4(&c), ip("10.0.0.4"));
        // The same key coming back after release also gets a fresh address.
        assert_eq!(v4(&pool.allocate(&req("a")).unwrap()), ip("10.0.0.5"));
    }

    fn wraps_around<S: PoolStore>(store: S) {
        // /29: .0 network, .1 gateway, .7 broadcast, .2-.6 usable.
        let pool = pool(store, &["10.0.0.0/29"], &[]);
        for i in 0..5 {
            pool.allocate(&req(&format!("c{i}"))).unwrap();
        }
        pool.release(&key("c0")).unwrap();
        pool.release(&key("c2")).unwrap();
        // The cursor is at .6, the end: the next ones wrap to .2, then .4.
        assert_eq!(v4(&pool.allocate(&req("x")).unwrap()), ip("10.0.0.2"));
        assert_eq!(v4(&pool.allocate(&req("y")).unwrap()), ip("10.0.0.4"));
        let err = pool.allocate(&req("z")).unwrap_err();
        assert!(err.is_exhausted());
    }

    fn exhaustion_is_clear_and_all_or_nothing<S: PoolStore>(store: S) {
        // v4 /28 has 13 usable, v6 /125 only 6: v6 runs out first.
        let pool = pool(store, &["10.0.0.0/28", "fd00::/125"], &[]);
        for i in 0..6 {
            pool.allocate(&req(&format!("c{i}"))).unwrap();
        }
        let err = pool.allocate(&req("late")).unwrap_err();
        assert!(err.is_exhausted());
        match &err {
            IpamError::PoolExhausted { range, capacity } => {
                assert_eq!((*range, *capacity), (net("fd00::/125"), 6));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("fd00::/125"), "{err}");
        // No v4 address was kept for the failed request.
        assert_eq!(pool.get(&key("late")).unwrap(), None);
        assert_eq!(pool.store().owner_of(ip("10.0.0.8")).unwrap(), None);
        let usage = pool.usage().unwrap();
        assert_eq!((usage[0].used, usage[1].used), (6, 6));
        // Nor did the failure move the v4 cursor: after a release the next v4 address is .8.
        pool.release(&key("c0")).unwrap();
        let next = pool.allocate(&req("late")).unwrap();
        assert_eq!(next.ips, vec![net("10.0.0.8/28"), net("fd00::2/125")]);
    }

    fn static_requests<S: PoolStore>(store: S) {
        let pool = pool(store, &["10.0.0.0/24", "fd00::/64"], &["10.0.0.100"]);
        let a = pool.allocate(&static_req("a", &["10.0.0.50"])).unwrap();
        assert_eq!(a.ips, vec![net("10.0.0.50/24"), net("fd00::2/64")]);
        let b = pool
            .allocate(&static_req("b", &["fd00::abcd", "10.0.0.51"]))
            .unwrap();
        assert_eq!(b.ips, vec![net("10.0.0.51/24"), net("fd00::abcd/64")]);
        // A static request does not move the cursor.
        assert_eq!(v4(&pool.allocate(&req("c")).unwrap()), ip("10.0.0.2"));
        match pool.allocate(&static_req("d", &["10.0.0.50"])) {
            Err(IpamError::AddressInUse { ip: taken, owner }) => {
                assert_eq!((taken, owner), (ip("10.0.0.50"), key("a")));
            }
            other => panic!("unexpected {other:?}"),
        }
        for (bad, reason) in [
            ("10.0.0.0", "network"),
            ("10.0.0.1", "gateway"),
            ("10.0.0.255", "broadcast"),
            ("10.0.0.100", "reserved"),
            ("fd00::", "anycast"),
            ("fd00::1", "gateway"),
        ] {
            match pool.allocate(&static_req("d", &[bad])) {
                Err(IpamError::AddressReserved { reason: r, .. }) => {
                    assert!(r.contains(reason), "{bad}: {r}");
                }
                other => panic!("{bad}: unexpected {other:?}"),
            }
        }
        assert!(matches!(
            pool.allocate(&static_req("d", &["10.0.1.5"])),
            Err(IpamError::AddressOutsidePool { .. })
        ));
        assert!(matches!(
            pool.allocate(&static_req("d", &["10.0.0.7", "10.0.0.8"])),
            Err(IpamError::RequestedFamilyTwice { .. })
        ));
        // None of the failures stored anything.
        assert_eq!(pool.get(&key("d")).unwrap(), None);
        assert_eq!(pool.list().unwrap().len(), 3);
    }

    fn release_unknown_is_none<S: PoolStore>(store: S) {
        let pool = pool(store, &["10.0.0.0/24"], &[]);
        assert_eq!(pool.release(&key("nope")).unwrap(), None);
        let a = pool.allocate(&req("a")).unwrap();
        assert_eq!(pool.release(&key("a")).unwrap(), Some(a));
        assert_eq!(pool.release(&key("a")).unwrap(), None);
        assert_eq!(pool.store().owner_of(ip("10.0.0.2")).unwrap(), None);
        assert!(pool.list().unwrap().is_empty());
    }

    fn list_and_usage<S: PoolStore>(store: S) {
        let pool = pool(
            store,
            &["10.0.0.0/24", "fd00::/64"],
            &["10.0.0.10", "10.0.0.1", "10.0.1.1"],
        );
        for i in 0..5 {
            pool.allocate(&req(&format!("c{i}"))).unwrap();
        }
        pool.release(&key("c3")).unwrap();
        let mut listed: Vec<String> = pool
            .list()
            .unwrap()
            .into_iter()
            .map(|a| a.key.container_id)
            .collect();
        listed.sort();
        assert_eq!(listed, ["c0", "c1", "c2", "c4"]);
        assert_eq!(
            pool.usage().unwrap(),
            vec![
                RangeUsage {
                    range: net("10.0.0.0/24"),
                    // 256 - network, gateway, broadcast - 10.0.0.10 (the other two do not count).
                    capacity: 252,
                    used: 4,
                },
                RangeUsage {
                    range: net("fd00::/64"),
                    capacity: (1u128 << 64) - 2,
                    used: 4,
                },
            ]
        );
    }

    fn concurrent_allocations_are_distinct<S: PoolStore + 'static>(store: S) {
        let pool = Arc::new(pool(store, &["10.0.0.0/24", "fd00::/64"], &[]));
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || pool.allocate(&req(&format!("c{i}"))).unwrap())
            })
            .collect();
        let allocs: Vec<Allocation> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let addrs: HashSet<IpAddr> = allocs
            .iter()
            .flat_map(|a| a.ips.iter().map(IpNetwork::ip))
            .collect();
        assert_eq!(addrs.len(), 400);
        assert_eq!(pool.list().unwrap().len(), 200);
        for a in &allocs {
            for n in &a.ips {
                assert_eq!(
                    pool.store().owner_of(n.ip()).unwrap().as_ref(),
                    Some(&a.key)
                );
            }
        }
    }

    fn commit_refuses_a_stolen_address<S: PoolStore>(store: S) {
        // The store's own check, below the pool's lock: a second writer cannot take an address.
        let a = Allocation {
            key: key("a"),
            ips: vec![net("10.0.0.2/24")],
            gateways: vec![ip("10.0.0.1")],
            netns: None,
            created_unix: 0,
        };
        store.commit(&a, &[]).unwrap();
        let b = Allocation {
            key: key("b"),
            ..a.clone()
        };
        assert!(matches!(
            store.commit(&b, &[(net("10.0.0.0/24"), ip("10.0.0.2"))]),
            Err(IpamError::AddressInUse { .. })
        ));
        assert_eq!(store.get(&key("b")).unwrap(), None);
        assert_eq!(store.cursor(&net("10.0.0.0/24")).unwrap(), None);
        // Re-committing a key replaces its addresses and frees the old ones.
        let moved = Allocation {
            ips: vec![net("10.0.0.3/24")],
            ..a
        };
        store.commit(&moved, &[]).unwrap();
        assert_eq!(store.owner_of(ip("10.0.0.2")).unwrap(), None);
        assert_eq!(store.owner_of(ip("10.0.0.3")).unwrap(), Some(key("a")));
    }

    fn sled_store() -> SledPoolStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        SledPoolStore::open(&db).unwrap()
    }

    macro_rules! contract {
        ($store:ident, $make:expr) => {
            mod $store {
                use super::*;

                #[test]
                fn idempotent_repeat() {
                    super::idempotent_repeat($make);
                }
                #[test]
                fn never_special_addresses() {
                    super::never_special_addresses($make);
                }
                #[test]
                fn freed_address_rests() {
                    super::freed_address_rests($make);
                }
                #[test]
                fn wraps_around() {
                    super::wraps_around($make);
                }
                #[test]
                fn exhaustion_is_clear_and_all_or_nothing() {
                    super::exhaustion_is_clear_and_all_or_nothing($make);
                }
                #[test]
                fn static_requests() {
                    super::static_requests($make);
                }
                #[test]
                fn release_unknown_is_none() {
                    super::release_unknown_is_none($make);
                }
                #[test]
                fn list_and_usage() {
                    super::list_and_usage($make);
                }
                #[test]
                fn concurrent_allocations_are_distinct() {
                    super::concurrent_allocations_are_distinct($make);
                }
                #[test]
                fn commit_refuses_a_stolen_address() {
                    super::commit_refuses_a_stolen_address($make);
                }
            }
        };
    }

    contract!(memory, MemoryPoolStore::default());
    contract!(sled_temp, sled_store());

    // ---- Configuration ----

    #[test]
    fn config_is_validated() {
        let new = |ranges: &[&str]| {
            Pool::new(
                PoolConfig {
                    ranges: ranges.iter().map(|r| net(r)).collect(),
                    reserved: vec![],
                },
                MemoryPoolStore::default(),
            )
        };
        assert!(matches!(new(&[]), Err(IpamError::NoRanges)));
        for tiny in ["10.0.0.0/31", "10.0.0.0/32", "fd00::/127", "fd00::/128"] {
            assert!(
                matches!(new(&[tiny]), Err(IpamError::InvalidRange { .. })),
                "{tiny}"
            );
        }
        assert!(matches!(
            new(&["10.0.0.0/24", "10.0.1.0/24"]),
            Err(IpamError::InvalidRange { .. })
        ));
        // The smallest pools: one v4 address, two v6 addresses.
        let p = new(&["10.0.0.0/30", "fd00::/126"]).unwrap();
        let a = p.allocate(&req("a")).unwrap();
        assert_eq!(a.ips, vec![net("10.0.0.2/30"), net("fd00::2/126")]);
        assert!(p.allocate(&req("b")).unwrap_err().is_exhausted());
        // Host bits are cleared.
        assert_eq!(
            new(&["10.0.0.9/24"]).unwrap().config().ranges,
            vec![net("10.0.0.0/24")]
        );
    }

    #[test]
    fn gateway_is_first_host() {
        assert_eq!(
            Pool::<MemoryPoolStore>::gateway(&net("10.244.3.0/24")),
            ip("10.244.3.1")
        );
        assert_eq!(
            Pool::<MemoryPoolStore>::gateway(&net("fd00:1:2:3::/64")),
            ip("fd00:1:2:3::1")
        );
    }

    #[test]
    fn key_encoding_round_trips_and_rejects_garbage() {
        for k in [
            key("abc"),
            AttachmentKey {
                container_id: "with\0nul".into(),
                ifname: "".into(),
            },
            AttachmentKey {
                container_id: "".into(),
                ifname: "eth0".into(),
            },
        ] {
            assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        }
        assert!(decode_key(b"short").is_err());
        assert!(decode_key(&[0, 0, 0, 0, 0, 0, 0, 9, b'x']).is_err());
        assert!(decode_ip("x", &[1, 2, 3]).is_err());
    }

    // ---- sled persistence ----

    #[test]
    fn sled_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ranges = ["10.0.0.0/24", "fd00::/64"];
        let (a, b) = {
            let db = sled::open(dir.path()).unwrap();
            let pool = pool(SledPoolStore::open(&db).unwrap(), &ranges, &[]);
            let a = pool.allocate(&req("a")).unwrap();
            let b = pool.allocate(&req("b")).unwrap();
            pool.release(&key("a")).unwrap();
            (a, b)
        };
        let db = crate::test_util::reopen_sled(dir.path());
        let pool = pool(SledPoolStore::open(&db).unwrap(), &ranges, &[]);
        assert_eq!(pool.list().unwrap(), vec![b.clone()]);
        assert_eq!(pool.get(&key("b")).unwrap(), Some(b.clone()));
        assert_eq!(pool.store().owner_of(v4(&b)).unwrap(), Some(key("b")));
        assert_eq!(pool.store().owner_of(v4(&a)).unwrap(), None);
        assert_eq!(
            pool.store().cursor(&net("10.0.0.0/24")).unwrap(),
            Some(ip("10.0.0.3"))
        );
        // Continues after the cursor: not a's freed .2.
        let c = pool.allocate(&req("c")).unwrap();
        assert_eq!(c.ips, vec![net("10.0.0.4/24"), net("fd00::4/64")]);
        assert_eq!(pool.allocate(&req("b")).unwrap(), b);
    }

    #[test]
    fn corrupt_sled_records_are_errors() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledPoolStore::open(&db).unwrap();
        db.open_tree(TREE_ALLOC)
            .unwrap()
            .insert(encode_key(&key("a")), &b"{"[..])
            .unwrap();
        db.open_tree(TREE_OWNER)
            .unwrap()
            .insert(encode_ip(ip("10.0.0.2")), &b"xx"[..])
            .unwrap();
        assert!(matches!(
            store.get(&key("a")),
            Err(IpamError::Corrupt { .. })
        ));
        assert!(matches!(store.list(), Err(IpamError::Corrupt { .. })));
        assert!(matches!(
            store.owner_of(ip("10.0.0.2")),
            Err(IpamError::Corrupt { .. })
        ));
    }

    /// Not a pass/fail test: prints what flushing costs per allocation on this machine's disk.
    /// `PODNET_BENCH_DIR=/var/lib/x cargo test -p podnet-ipam --release -- --ignored --nocapture
    /// flush_cost` (the default, the system temp dir, may be a tmpfs where fsync is free).
    #[test]
    fn a_change_of_ranges_moves_new_allocations_and_keeps_running_pods() {
        let pool = pool(MemoryPoolStore::default(), &["10.244.2.0/24"], &[]);
        let old = pool.allocate(&req("old")).unwrap();
        assert_eq!(v4(&old), ip("10.244.2.2"));
        assert!(pool.outside_ranges().unwrap().is_empty());

        pool.set_ranges(vec![net("10.244.3.0/24")]).unwrap();
        let new = pool.allocate(&req("new")).unwrap();
        assert_eq!(v4(&new), ip("10.244.3.2"));
        assert_eq!(new.gateways, vec![ip("10.244.3.1")]);
        // The old pod keeps its address (a repeated ADD too) and is reported.
        assert_eq!(pool.allocate(&req("old")).unwrap(), old);
        assert_eq!(pool.outside_ranges().unwrap(), vec![old.clone()]);
        assert_eq!(pool.usage().unwrap()[0].range, net("10.244.3.0/24"));
        // An invalid change leaves the ranges as they were.
        assert!(pool
            .set_ranges(vec![net("10.0.0.0/24"), net("10.1.0.0/24")])
            .is_err());
        assert_eq!(pool.config().ranges, vec![net("10.244.3.0/24")]);
        assert!(pool.release(&key("old")).unwrap().is_some());
        assert!(pool.outside_ranges().unwrap().is_empty());
    }

    #[test]
    fn keys_are_checked_as_cni_and_the_kernel_would() {
        let k = |c: &str, i: &str| AttachmentKey {
            container_id: c.into(),
            ifname: i.into(),
        };
        assert!(k("c1", "eth0").validate().is_ok());
        assert!(k(&"a".repeat(300), "net1").validate().is_ok());
        for bad in [
            k("../../x", "eth0"),
            k("", "eth0"),
            k("a\0b", "eth0"),
            k(&"a".repeat(100_000), "eth0"),
            k("c1", ""),
            k("c1", ".."),
            k("c1", "a/b"),
            k("c1", "e\u{e0}"),
            k("c1", "toolongname12345"),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    #[ignore]
    fn flush_cost() {
        let base = std::env::var_os("PODNET_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
        let dir = tempfile::tempdir_in(base).unwrap();
        let db = sled::open(dir.path()).unwrap();
        let pool = Arc::new(pool(
            SledPoolStore::open(&db).unwrap(),
            &["10.0.0.0/16"],
            &[],
        ));
        let n = 1000;
        let start = Instant::now();
        for i in 0..n {
            pool.allocate(&req(&format!("s{i}"))).unwrap();
        }
        let sequential = start.elapsed() / n;
        let start = Instant::now();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    for i in 0..n / 8 {
                        pool.allocate(&req(&format!("p{t}-{i}"))).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let parallel = start.elapsed() / n;
        let store = MemoryPoolStore::default();
        let mem = pool_of(store);
        let start = Instant::now();
        for i in 0..n {
            mem.allocate(&req(&format!("m{i}"))).unwrap();
        }
        let memory = start.elapsed() / n;
        println!("per allocation: sled+flush sequential {sequential:?}, 8 threads {parallel:?}, memory {memory:?}");
    }

    fn pool_of(store: MemoryPoolStore) -> Pool<MemoryPoolStore> {
        pool(store, &["10.0.0.0/16"], &[])
    }

    // ---- Properties over random sequences of allocations and releases. ----

    mod properties {
        use std::collections::{BTreeMap, HashSet};

        use proptest::prelude::*;

        use super::*;

        /// One step of a random run: allocate or release one of a few keys.
        #[derive(Clone, Debug)]
        enum Op {
            Allocate(u8),
            Release(u8),
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            prop::collection::vec(
                prop_oneof![
                    (0u8..40).prop_map(Op::Allocate),
                    (0u8..40).prop_map(Op::Release),
                ],
                1..200,
            )
        }

        /// A /27: 29 addresses to hand out, fewer than the 40 keys, so runs
        /// also meet exhaustion.
        const RANGE: &str = "10.9.0.0/27";
        const CAPACITY: usize = 29;

        /// Applies `ops`, checking every step against a model (key ->
        /// address); returns the model.
        fn run<S: PoolStore>(pool: &Pool<S>, ops: &[Op]) -> BTreeMap<String, IpNetwork> {
            let mut model: BTreeMap<String, IpNetwork> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Allocate(k) => {
                        let id = format!("k{k}");
                        match pool.allocate(&req(&id)) {
                            Ok(a) => {
                                if let Some(held) = model.get(&id) {
                                    assert_eq!(a.ips[0], *held, "a repeated ADD moved {id}");
                                }
                                model.insert(id, a.ips[0]);
                            }
                            Err(e) => {
                                assert!(e.is_exhausted(), "{e}");
                                assert_eq!(model.len(), CAPACITY, "exhausted with free addresses");
                            }
                        }
                    }
                    Op::Release(k) => {
                        let id = format!("k{k}");
                        let freed = pool.release(&key(&id)).unwrap();
                        assert_eq!(freed.is_some(), model.remove(&id).is_some());
                        assert!(
                            pool.get(&key(&id)).unwrap().is_none(),
                            "a release left {id}"
                        );
                    }
                }
                let live = pool.list().unwrap();
                let distinct: HashSet<IpAddr> = live.iter().map(|a| a.ips[0].ip()).collect();
                assert_eq!(distinct.len(), live.len(), "an address held twice");
                assert_eq!(live.len(), model.len());
            }
            model
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn never_a_duplicate_and_a_release_always_frees(ops in ops()) {
                let pool = pool(MemoryPoolStore::default(), &[RANGE], &[]);
                run(&pool, &ops);
            }

            #[test]
            fn a_reopened_store_holds_exactly_what_was_acknowledged(ops in ops()) {
                let dir = tempfile::tempdir().unwrap();
                let model = {
                    let db = sled::open(dir.path()).unwrap();
                    let pool = pool(SledPoolStore::open(&db).unwrap(), &[RANGE], &[]);
                    run(&pool, &ops)
                };
                let db = crate::test_util::reopen_sled(dir.path());
                let pool = pool(SledPoolStore::open(&db).unwrap(), &[RANGE], &[]);
                let got: BTreeMap<String, IpNetwork> = pool
                    .list()
                    .unwrap()
                    .into_iter()
                    .map(|a| (a.key.container_id, a.ips[0]))
                    .collect();
                prop_assert_eq!(got, model);
            }
        }
    }
}
