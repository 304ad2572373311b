//! The one error type of the IPAM crate.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::attachment::AttachmentKey;

/// Everything that can go wrong in cluster- or node-level address management.
///
/// Callers map these to protocol codes (CNI, the daemon's wire protocol) in one exhaustive match, so
/// each condition a caller may want to treat differently has its own variant.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no address range configured")]
    NoRanges,

    #[error("ranges {first} and {second} overlap")]
    RangesOverlap { first: IpNetwork, second: IpNetwork },

    #[error("invalid range {range}: {reason}")]
    InvalidRange {
        range: IpNetwork,
        reason: &'static str,
    },

    #[error("invalid node prefix /{prefix}: {reason}")]
    InvalidNodePrefix { prefix: u8, reason: &'static str },

    #[error("invalid max pods per node {max_pods}: {reason}")]
    InvalidMaxPods { max_pods: u32, reason: &'static str },

    #[error(
        "cluster range exhausted: all {node_cidrs} node CIDRs (/{node_prefix}) of {} are leased",
        list(ranges)
    )]
    ClusterExhausted {
        ranges: Vec<IpNetwork>,
        node_prefix: u8,
        node_cidrs: u128,
    },

    #[error("node {node} lost the race for a node CIDR {attempts} times in a row")]
    ClaimContended { node: String, attempts: u32 },

    #[error("node pool {range} exhausted: all {capacity} usable addresses are allocated")]
    PoolExhausted { range: IpNetwork, capacity: u128 },

    #[error("requested address {ip} is outside the node pool ({})", list(ranges))]
    AddressOutsidePool { ip: IpAddr, ranges: Vec<IpNetwork> },

    #[error("requested address {ip} is not assignable: it is {reason}")]
    AddressReserved { ip: IpAddr, reason: &'static str },

    #[error("requested address {ip} is already allocated to {owner}")]
    AddressInUse { ip: IpAddr, owner: AttachmentKey },

    #[error(
        "requested addresses {first} and {second} are of the same family; at most one per family"
    )]
    RequestedFamilyTwice { first: IpAddr, second: IpAddr },

    #[error(
        "{key} already holds {}, which differs from the requested {}",
        list(existing),
        list(requested)
    )]
    RequestMismatch {
        key: AttachmentKey,
        existing: Vec<IpNetwork>,
        requested: Vec<IpAddr>,
    },

    #[cfg(feature = "sled")]
    // The daemon logs messages, not source chains: the cause is shown.
    #[error("state database: {0}")]
    Store(#[from] sled::Error),

    #[error("cannot encode {what} for the store: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("corrupt stored record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl IpamError {
    /// True when no address (or node CIDR) is left: retrying will not help until something is
    /// released, unlike a store error or a lost race.
    pub fn is_exhausted(&self) -> bool {
        matches!(
            self,
            IpamError::ClusterExhausted { .. } | IpamError::PoolExhausted { .. }
        )
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
