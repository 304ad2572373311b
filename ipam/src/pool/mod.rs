//! Node level: pod addresses inside the node CIDR(s), keyed by attachment.
//!
//! One [`Pool`] per node, owned by podnetd (sled locks its database to one process). Every CNI ADD
//! of the node goes through [`Pool::allocate`], every DEL through [`Pool::release`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::addr::{first_host, from_u128, normalise, same_family, span, to_u128};
use crate::error::IpamError;
use crate::lock;

#[cfg(feature = "sled")]
mod sled_store;
mod store;

use crate::attachment::{Allocation, AttachmentKey, RangeUsage};
#[cfg(feature = "sled")]
pub use sled_store::{SledPoolStore, TREE_ALLOC, TREE_CURSOR, TREE_OWNER};
pub use store::{MemoryPoolStore, PoolStore};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateRequest {
    pub key: AttachmentKey,
    pub netns: Option<String>,
    /// Static addresses asked for (CNI `ips` capability or args), at most one per family. A
    /// family without one gets the next free address.
    pub requested: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    /// The node CIDR(s), at most one per family.
    pub ranges: Vec<IpNetwork>,
    /// Never handed out (e.g. addresses used by the node itself). Those outside every range are
    /// ignored.
    pub reserved: Vec<IpAddr>,
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
        let Some(gateway) = first_host(&net) else {
            return Err(IpamError::InvalidRange {
                range: net,
                reason: "too small: no pod address left after network, gateway and broadcast",
            });
        };
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
            gateway: to_u128(gateway),
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
    /// Releases so far: while it stays the same, every attachment held is still held.
    releases: AtomicU64,
}

impl<S: PoolStore> Pool<S> {
    /// See [`Layout::new`] for what is checked.
    pub fn new(config: PoolConfig, store: S) -> Result<Self, IpamError> {
        Ok(Self {
            layout: RwLock::new(Arc::new(Layout::new(config)?)),
            store,
            lock: Mutex::new(()),
            releases: AtomicU64::new(0),
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

    /// Gives `req.key` one address per range, or returns the allocation it already holds.
    ///
    /// Dynamic addresses come after the range's cursor (the last one handed out), wrapping at the
    /// end, so a just-freed address rests while unused ones remain and a stale peer cannot reach a
    /// new pod. Static requests must be inside a range, assignable and free; they do not move the
    /// cursor. Nothing is stored unless every range got an address. The store is flushed before
    /// returning, outside the lock, so concurrent requests do not queue on the lock while flushing.
    pub fn allocate(&self, req: &AllocateRequest) -> Result<Allocation, IpamError> {
        self.allocate_then(req, |_| ())
    }

    /// [`Self::allocate`], calling `chosen` with the allocation once it is committed, before the
    /// flush: work that needs the addresses goes on while the disk writes.
    pub fn allocate_then(
        &self,
        req: &AllocateRequest,
        chosen: impl FnOnce(&Allocation),
    ) -> Result<Allocation, IpamError> {
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
        chosen(&alloc);
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
            self.releases.fetch_add(1, Ordering::SeqCst);
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

    /// How many attachments were released so far (by this process).
    pub fn releases(&self) -> u64 {
        self.releases.load(Ordering::SeqCst)
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
#[cfg(feature = "sled")]
mod tests;
