//! What the engine produces for one node: kernel-agnostic, but shaped for
//! nftables (a verdict map keyed by pod address, interval sets of peers),
//! so the cost per packet does not grow with the number of policies.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::interval;
use super::model::Protocol;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    /// Every set some allow of this node names, and no other.
    pub peer_sets: BTreeMap<PeerSetId, PeerSet>,
    /// Every address of every pod of the node, selectable or isolated or
    /// not; a dual-stack pod appears once per address, with the same rules.
    pub pods: BTreeMap<IpAddr, PodRules>,
}

/// A peer set's name: a hash of the peers' definition (normalised
/// selectors and blocks, the namespace they are read in, the resolved port
/// for a named-port group), so it is the same on every node and at every
/// compile while the definition stands, whatever pods come and go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerSetId(pub u64);

impl fmt::Display for PeerSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Addresses as sorted, merged, inclusive intervals (pod addresses are
/// one-address intervals, blocks minus their holes the rest). A set may be
/// empty while no pod matches: the allows naming it stay, so the first pod
/// to match adds an element and changes no rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSet {
    pub v4: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub v6: Vec<(Ipv6Addr, Ipv6Addr)>,
}

impl PeerSet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => interval::contains(&self.v4, a),
            IpAddr::V6(a) => interval::contains(&self.v6, a),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// One more address; the set is no longer merged.
    pub(crate) fn push_addr(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.v4.push((a, a)),
            IpAddr::V6(a) => self.v6.push((a, a)),
        }
    }

    /// One more network, all of it; the set is no longer merged.
    pub(crate) fn push_network(&mut self, net: IpNetwork) {
        match net {
            IpNetwork::V4(n) => self.v4.push((n.network(), n.broadcast())),
            IpNetwork::V6(n) => self.v6.push((n.network(), n.broadcast())),
        }
    }

    pub(crate) fn extend(&mut self, other: PeerSet) {
        self.v4.extend(other.v4);
        self.v6.extend(other.v6);
    }

    /// Sorted, overlapping and adjacent intervals joined: the form every
    /// set the engine hands out has.
    pub(crate) fn merged(self) -> Self {
        Self {
            v4: interval::merge(self.v4),
            v6: interval::merge(self.v6),
        }
    }

    /// Merged, and without the addresses of `holes`.
    pub(crate) fn without(self, holes: PeerSet) -> Self {
        let (set, holes) = (self.merged(), holes.merged());
        Self {
            v4: interval::subtract(&set.v4, &holes.v4),
            v6: interval::subtract(&set.v6, &holes.v6),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRules {
    pub pod: PodRef,
    /// `None`: not isolated for ingress, everything may connect. `Some`:
    /// only what one of these allows (none: nothing).
    pub ingress: Option<Vec<Allow>>,
    /// As `ingress`, for the pod's own new connections.
    pub egress: Option<Vec<Allow>>,
}

/// Connections with a peer in `peers` on one of `ports` are allowed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Allow {
    pub peers: Peers,
    /// Sorted and merged; empty: every port of every protocol.
    pub ports: Vec<PortMatch>,
    /// The policies whose rules make this allow, sorted.
    pub policies: Vec<PolicyRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Peers {
    /// Any address, in the cluster or not.
    Any,
    Set(PeerSetId),
}

/// Destination ports `first..=last` of `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMatch {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl PortMatch {
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && self.first <= port && port <= self.last
    }
}
