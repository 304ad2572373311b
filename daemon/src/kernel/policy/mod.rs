//! NetworkPolicy in the kernel (issue 14): a [`Ruleset`] from the policy
//! engine rendered into podnet's own nf_tables table, and kept in step
//! with it by diffs, through `kernel::nft` (netlink, never a binary).
//!
//! # Layout
//! ```text
//! table inet podnet-policy {
//!     set peers-<id>-v4 { type ipv4_addr; flags interval; }   # per peer set
//!     set peers-<id>-v6 { type ipv6_addr; flags interval; }
//!     map egress-v4  { type ipv4_addr : verdict; }  # pod address : jump its chain
//!     map egress-v6  { type ipv6_addr : verdict; }
//!     map ingress-v4 { type ipv4_addr : verdict; }
//!     map ingress-v6 { type ipv6_addr : verdict; }
//!
//!     chain egress/x/a {                     # one per pod isolated for egress
//!         ip daddr @peers-<id>-v4 meta l4proto tcp th dport 80 counter return comment "x/p"
//!         counter drop comment "egress of x/a not allowed"
//!     }
//!     chain ingress/x/a {                    # one per pod isolated for ingress
//!         ip saddr @peers-<id>-v4 meta l4proto tcp th dport 80 counter accept comment "x/p"
//!         counter drop comment "ingress of x/a not allowed"
//!     }
//!     chain forward {
//!         type filter hook forward priority 0; policy accept;
//!         ct state established,related accept
//!         ct state invalid drop
//!         meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-137 accept
//!         ip saddr vmap @egress-v4
//!         ip6 saddr vmap @egress-v6
//!         ip daddr vmap @ingress-v4
//!         ip6 daddr vmap @ingress-v6
//!     }
//!     chain input {
//!         type filter hook input priority 0; policy accept;
//!         ct state established,related accept
//!         meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-137 accept
//!         ip saddr vmap @egress-v4
//!         ip6 saddr vmap @egress-v6
//!     }
//! }
//! ```
//! - Only isolated directions are in the maps: a pod isolated for ingress
//!   only costs nothing on its way out. A packet costs one map lookup per
//!   direction plus the rules of the one pod it belongs to, whatever the
//!   number of pods and policies.
//! - An egress allow `return`s rather than accepting, so the destination's
//!   ingress check still runs after it (both pods may be on this node).
//! - Replies to allowed connections pass on their conntrack state; the
//!   rules judge new connections only. A connection already established
//!   when a policy begins to deny it keeps flowing until it ends.
//! - Traffic from the node itself to its pods (kubelet's probes) passes the
//!   output hook, which has no chain here: never policed. Its replies are
//!   established on the input hook.
//! - Pod chains are named `ingress/NAMESPACE/NAME` (see `names.rs`): pods
//!   coming and going add and delete their own chain and map elements and
//!   change peer sets' elements, never another pod's chain.
//! - IPv6 neighbour discovery is untracked by conntrack and carries the
//!   pods' own addresses; it is let through before any map lookup.
//!
//! # Bridge netfilter
//! Pods of one node talk across the node's bridge at layer 2: without
//! bridge netfilter their packets never reach an IP hook, so the forward
//! chain would not see them. A full replace therefore sets
//! `net/bridge/bridge-nf-call-iptables` and `-ip6tables` to 1 in the
//! node's namespace (per network namespace on current kernels; the kernel
//! needs `br_netfilter`). With it, bridged traffic also passes every
//! other forward chain of the node (a Docker-style `policy drop` there
//! would drop pod-to-pod traffic too) and its conntrack.
//!
//! # Keeping it in step
//! [`full`] replaces the table whole in one transaction (start, periodic
//! resync; anything stale goes with it). [`diff`] sends only the changes,
//! in one transaction. [`PolicyTable`] holds the ruleset last applied and
//! its layout, and picks between them. A change is laid out again only for
//! the pods whose entries differ (their chains and map elements) and the
//! sets that differ: with thousands of pods, laying out and comparing the
//! whole table took far longer than the change. [`PolicyTable::apply`]
//! finds those entries by comparing the rulesets;
//! [`PolicyTable::apply_changes`] is told them by the policy
//! [`crate::policy::Compiler`], so a change costs what it touches.
//!
//! Everything works in the calling thread's network namespace.

mod layout;
mod names;
mod render;
mod table;

#[cfg(test)]
mod tests;
/// Each message of a transaction as its `nft` command.
#[cfg(test)]
fn tests_ops(tx: crate::kernel::nft::Transaction) -> Vec<String> {
    crate::kernel::nft::tests_support::ops(tx).unwrap()
}
#[cfg(test)]
mod tests_diff;
#[cfg(test)]
mod tests_patch;

pub use names::{FORWARD, INPUT, TABLE};
pub use table::{ensure_bridge_netfilter, Applied, Counter, PodCounters, PolicyTable, TableSize};

use crate::kernel::nft::{Family, Table, Transaction};
use crate::policy::Ruleset;
use layout::Layout;

/// The sysctls that show bridged IPv4 and IPv6 to the IP hooks.
pub const BRIDGE_NF_KEYS: [&str; 2] = [
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

/// podnet's policy table, `inet podnet-policy`.
pub fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

/// The whole table for `ruleset`, replacing whatever is there, in one
/// transaction.
///
/// Equivalent to `nft -f -` of `add table inet podnet-policy; delete table
/// inet podnet-policy; table inet podnet-policy { ... }`.
pub fn full(ruleset: &Ruleset) -> Transaction {
    let t = table();
    render::full(&Layout::new(ruleset, &t), &t)
}

/// The changes that make a table holding `old` hold `new`, in one
/// transaction; `None` when there are none.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Option<Transaction> {
    let t = table();
    render::diff(&Layout::new(old, &t), &Layout::new(new, &t), &t)
}
