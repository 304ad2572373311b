//! The NetworkPolicy engine: a pure function from a cluster snapshot to the
//! rules one node enforces (issue 14). No IO, no async, no Kubernetes types
//! in the core; [`convert`] is the only door from `k8s-openapi`.
//!
//! [`compile`] turns a [`Snapshot`] into a [`Ruleset`] for the pods of one
//! node. A [`Compiler`] does the same again and again, keeping what it
//! worked out, so a change costs what it touches; it says which entries
//! changed ([`Changes`]), which the kernel side applies alone. Each node enforces the ingress *and* the egress of its own pods, so
//! traffic between nodes is checked at both ends and no node needs another
//! node's rules. [`explain`] answers "may this pod reach that one, and
//! why", evaluating the model directly; the tests hold it to agree with
//! what the compiled rules of both nodes say.
//!
//! # Semantics (upstream Kubernetes, exactly)
//! - A pod is isolated for ingress iff some policy in its namespace selects
//!   it and has `Ingress` in its effective `policyTypes`; the same for
//!   egress. Without `policyTypes` a policy is Ingress, plus Egress iff it
//!   has egress rules (the API server's defaulting; an empty list counts
//!   as not given, as there).
//! - Allows add up: a connection is allowed in a direction when any rule of
//!   any selecting policy allows it. A rule without peers allows every
//!   peer, a rule without ports every port of every protocol.
//! - In one peer, `namespaceSelector` and `podSelector` must both match;
//!   separate peers are alternatives. A peer without `namespaceSelector`
//!   means the policy's own namespace.
//! - Named ports resolve against the *destination* pod's container ports,
//!   name and protocol both: for ingress the protected pod itself, for
//!   egress each peer pod, so an egress rule with a named port becomes one
//!   peer set per resolved port number. A name that resolves nowhere allows
//!   nothing (never "any port"). Addresses that belong to no pod (ipBlocks
//!   outside the cluster) have no named ports.
//! - `endPort` makes a range; `ipBlock.except` carves holes; IPv4 and IPv6
//!   alike, each a set of its own.
//!
//! # What selectors never see
//! - **hostNetwork pods** are never peers of a pod or namespace selector,
//!   nor targets: their traffic is the node's, with the node's address
//!   (which an `ipBlock` may still match), and they have no interface of
//!   their own to police.
//! - **Pods without an address** yet (pending, or finished: [`convert`]
//!   drops a finished pod's addresses, which may already be another pod's)
//!   are neither peers nor targets: there is nothing to match.
//!
//! # Left to the kernel layer
//! - Traffic from the node itself to its own pods is always allowed (the
//!   upstream rule that keeps kubelet's probes working); it is not in the
//!   [`Ruleset`].
//! - Replies to allowed connections are allowed by connection tracking
//!   (`ct state established,related accept` before any set lookup); the
//!   rules describe new connections only.
//! - A pod's traffic to its own address never leaves its network namespace,
//!   so no rule sees it ([`explain`] reports it as loopback).
//!
//! # Shaped for nftables
//! The [`Ruleset`] maps each local pod address to its allows, and each
//! allow names a shared [`PeerSet`] of address intervals, so the kernel
//! side can use one verdict map keyed by pod address and interval sets for
//! peers: the cost per packet does not grow with the number of policies.
//! Peer set ids are derived from the peer *definition* (the selectors and
//! blocks, normalised), not from the addresses they hold: identical
//! definitions share one set, and pods coming and going change a set's
//! elements, never the rules that name it.

mod compiler;
pub mod convert;
mod explain;
mod index;
mod interval;
pub mod model;
mod peers;
mod ports;
pub mod ruleset;
mod selector;

pub use compiler::{compile, Changes, Compiler};
pub use explain::{explain, Decision, ExplainError, Explanation, Verdict};
pub use model::{
    ContainerPort, LabelSelector, Namespace, NetworkPolicy, Operator, Peer, Pod, PolicyType,
    PortRef, PortSpec, Protocol, Requirement, Rule, Snapshot,
};
pub use ruleset::{
    Allow, PeerSet, PeerSetId, Peers, PodRef, PodRules, PolicyRef, PortMatch, Ruleset,
};

// The kernel side's tests drive the compiler with the random snapshots.
#[cfg(test)]
pub(crate) mod tests;
