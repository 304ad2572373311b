//! Cluster range -> node CIDRs: pure arithmetic, no store.
//!
//! A cluster is given one or more ranges (VPC-like, e.g. `10.244.0.0/16` plus an IPv6 `/48`). Each
//! node leases one node CIDR per address family from them; pod addresses are then node-local.

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::addr::{bits, from_u128, host_mask, normalise, overlaps, span};
use crate::error::IpamError;

/// The IPv6 node CIDR size when none is configured: a /64 is what SLAAC, and most IPv6 tooling,
/// assumes a link to be, and a /48 cluster range still holds 65536 nodes.
pub const DEFAULT_NODE_PREFIX_V6: u8 = 64;

/// Longest IPv4 node prefix: a /30 is the smallest block with a pod address left after the network,
/// gateway and broadcast addresses (a /31 or /32 has none).
pub const MAX_NODE_PREFIX_V4: u8 = 30;

/// Longest IPv6 node prefix: a /126 leaves two pod addresses after the subnet-router anycast
/// (network) address and the gateway; a /127 leaves none.
pub const MAX_NODE_PREFIX_V6: u8 = 126;

/// The IPv4 node prefix for `max_pods` pods per node, sized as GKE does it: the smallest block with
/// at least twice as many addresses as pods, so addresses freed by deleted pods can rest before they
/// are reused (110 -> /24, 32 -> /26, 8 -> /28, 256 -> /23).
///
/// Below 3 pods doubling no longer covers the three unusable addresses (network, gateway,
/// broadcast), so the block must also hold `max_pods + 3`: 1 -> /30, 2 -> /29. The result is thus
/// never longer than [`MAX_NODE_PREFIX_V4`]. 0 pods, and more than 2^31 (the block would exceed
/// the IPv4 space), are errors.
pub fn node_prefix_v4(max_pods: u32) -> Result<u8, IpamError> {
    if max_pods == 0 {
        return Err(IpamError::InvalidMaxPods {
            max_pods,
            reason: "a node must run at least one pod",
        });
    }
    let pods = u64::from(max_pods);
    let block = (2 * pods).max(pods + 3).next_power_of_two();
    if block > 1 << 32 {
        return Err(IpamError::InvalidMaxPods {
            max_pods,
            reason: "twice as many addresses do not fit in IPv4",
        });
    }
    // block <= 2^32, so trailing_zeros <= 32 and the subtraction cannot wrap.
    Ok(32 - block.trailing_zeros() as u8)
}

/// The validated cluster-level configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Normalised to their network address, pairwise disjoint.
    pub ranges: Vec<IpNetwork>,
    pub node_prefix_v4: u8,
    pub node_prefix_v6: u8,
}

impl ClusterConfig {
    /// Validates and normalises: at least one range, no two overlapping, each at least one node
    /// CIDR large. Host bits in a range (`10.244.1.7/16`) are cleared rather than refused, as
    /// `ip route` does. Both node prefixes are checked even when only one family is configured, so
    /// a bad value is reported when it is written, not when IPv6 is enabled months later.
    pub fn new(
        ranges: Vec<IpNetwork>,
        node_prefix_v4: u8,
        node_prefix_v6: u8,
    ) -> Result<Self, IpamError> {
        if node_prefix_v4 > MAX_NODE_PREFIX_V4 {
            return Err(IpamError::InvalidNodePrefix {
                prefix: node_prefix_v4,
                reason: "an IPv4 node CIDR must be /30 or larger to hold network, gateway, broadcast and a pod",
            });
        }
        if node_prefix_v6 > MAX_NODE_PREFIX_V6 {
            return Err(IpamError::InvalidNodePrefix {
                prefix: node_prefix_v6,
                reason: "an IPv6 node CIDR must be /126 or larger to hold the anycast, gateway and a pod",
            });
        }
        if ranges.is_empty() {
            return Err(IpamError::NoRanges);
        }
        let ranges: Vec<IpNetwork> = ranges.into_iter().map(normalise).collect();
        for range in &ranges {
            let node_prefix = if range.is_ipv4() {
                node_prefix_v4
            } else {
                node_prefix_v6
            };
            if range.prefix() > node_prefix {
                return Err(IpamError::InvalidRange {
                    range: *range,
                    reason: "smaller than one node CIDR",
                });
            }
        }
        // A handful of ranges: pairwise is clearer than a sweep.
        for (i, first) in ranges.iter().enumerate() {
            if let Some(second) = ranges[i + 1..].iter().find(|r| overlaps(first, r)) {
                return Err(IpamError::RangesOverlap {
                    first: *first,
                    second: *second,
                });
            }
        }
        Ok(Self {
            ranges,
            node_prefix_v4,
            node_prefix_v6,
        })
    }

    /// The node prefix for the family of `range`.
    pub fn node_prefix_for(&self, range: &IpNetwork) -> u8 {
        if range.is_ipv4() {
            self.node_prefix_v4
        } else {
            self.node_prefix_v6
        }
    }

    /// The configured families, in the order their first range appears (true = IPv4).
    fn families(&self) -> Vec<bool> {
        let mut families = Vec::with_capacity(2);
        for range in &self.ranges {
            if !families.contains(&range.is_ipv4()) {
                families.push(range.is_ipv4());
            }
        }
        families
    }
}

/// The node CIDRs leased to one node: one per configured address family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLease {
    pub node: String,
    pub cidrs: Vec<IpNetwork>,
}

/// Every `node_prefix` block of `range`, in address order, computed lazily (a v6 /32 split into
/// /64s has 2^32 of them). Empty when `node_prefix` is shorter than the range's own prefix or longer
/// than the family allows; host bits of `range` are ignored.
pub fn node_cidrs(range: IpNetwork, node_prefix: u8) -> impl Iterator<Item = IpNetwork> {
    let range = normalise(range);
    let v4 = range.is_ipv4();
    let (first, last) = span(&range);
    let fits = node_prefix >= range.prefix() && node_prefix <= bits(v4);
    NodeCidrs {
        next: fits.then_some(first),
        last,
        step: 1u128.checked_shl(u32::from(bits(v4).saturating_sub(node_prefix))),
        v4,
        prefix: node_prefix,
    }
}

struct NodeCidrs {
    next: Option<u128>,
    last: u128,
    /// `None` only for a v6 /0 node prefix, whose single block spans the whole space.
    step: Option<u128>,
    v4: bool,
    prefix: u8,
}

impl Iterator for NodeCidrs {
    type Item = IpNetwork;

    fn next(&mut self) -> Option<IpNetwork> {
        let current = self.next?;
        self.next = self
            .step
            .and_then(|step| current.checked_add(step))
            .filter(|next| *next <= self.last);
        IpNetwork::new(from_u128(current, self.v4), self.prefix).ok()
    }

    /// Jumps instead of stepping, so callers can index into a v6 range with 2^64 blocks.
    fn nth(&mut self, n: usize) -> Option<IpNetwork> {
        if n > 0 {
            let skip = self
                .step
                .and_then(|step| step.checked_mul(n as u128))
                .and_then(|skip| self.next?.checked_add(skip));
            self.next = skip.filter(|next| *next <= self.last);
        }
        self.next()
    }

    fn last(self) -> Option<IpNetwork> {
        let next = self.next?;
        // The last block starts at the range's last address with the block's host bits cleared.
        let start = self
            .step
            .map_or(next, |step| self.last & !(step - 1))
            .max(next);
        IpNetwork::new(from_u128(start, self.v4), self.prefix).ok()
    }
}

/// The node CIDRs for `node`, one per configured family.
///
/// A node that already holds a lease in `taken` gets exactly that lease back, so a restarted node
/// keeps its pods' addresses routable. Otherwise each family gets the lowest block of its first
/// range with room that overlaps nothing in `taken`; leases of any size are respected, so a /23 a
/// Kubernetes controller-manager assigned is never cut into.
///
/// Runs in O(n log n) for n taken CIDRs: the taken blocks are sorted and merged once, then the
/// search jumps over each busy interval instead of testing every block against every lease.
pub fn choose_node_cidrs(
    config: &ClusterConfig,
    node: &str,
    taken: &[NodeLease],
) -> Result<Vec<IpNetwork>, IpamError> {
    if let Some(lease) = taken.iter().find(|lease| lease.node == node) {
        return Ok(lease.cidrs.clone());
    }
    let mut chosen = Vec::with_capacity(2);
    for v4 in config.families() {
        let ranges: Vec<IpNetwork> = config
            .ranges
            .iter()
            .filter(|r| r.is_ipv4() == v4)
            .map(|r| normalise(*r))
            .collect();
        let node_prefix = if v4 {
            config.node_prefix_v4
        } else {
            config.node_prefix_v6
        };
        let busy = busy_intervals(taken, v4);
        match ranges
            .iter()
            .find_map(|range| lowest_free(range, node_prefix, &busy))
        {
            Some(cidr) => chosen.push(cidr),
            None => {
                let node_cidrs = ranges.iter().fold(0u128, |total, range| {
                    let count = 1u128
                        .checked_shl(u32::from(node_prefix.saturating_sub(range.prefix())))
                        .unwrap_or(u128::MAX);
                    total.saturating_add(count)
                });
                return Err(IpamError::ClusterExhausted {
                    ranges,
                    node_prefix,
                    node_cidrs,
                });
            }
        }
    }
    Ok(chosen)
}

/// The taken address intervals of one family, sorted, with overlapping and adjacent ones merged so
/// both their starts and their ends ascend.
fn busy_intervals(taken: &[NodeLease], v4: bool) -> Vec<(u128, u128)> {
    let mut spans: Vec<(u128, u128)> = taken
        .iter()
        .flat_map(|lease| lease.cidrs.iter())
        .filter(|cidr| cidr.is_ipv4() == v4)
        .map(span)
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

fn lowest_free(range: &IpNetwork, node_prefix: u8, busy: &[(u128, u128)]) -> Option<IpNetwork> {
    let v4 = range.is_ipv4();
    if node_prefix < range.prefix() || node_prefix > bits(v4) {
        return None;
    }
    let (first, last) = span(range);
    let block = host_mask(node_prefix, v4);
    // The range start is aligned to the range prefix, hence to the (longer) node prefix too.
    let mut candidate = first;
    let mut i = busy.partition_point(|&(_, end)| end < candidate);
    loop {
        let candidate_last = candidate | block;
        if candidate_last > last {
            return None;
        }
        match busy.get(i) {
            Some(&(start, end)) if start <= candidate_last => {
                // Overlap (busy[i] ends at or after candidate): resume at the first aligned block
                // past this interval.
                candidate = end.checked_add(1)?.checked_add(block)? & !block;
                while busy.get(i).is_some_and(|&(_, end)| end < candidate) {
                    i += 1;
                }
            }
            _ => return IpNetwork::new(from_u128(candidate, v4), node_prefix).ok(),
        }
    }
}

#[cfg(test)]
mod tests;
