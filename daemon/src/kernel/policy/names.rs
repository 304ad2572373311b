//! The names of podnet's objects in its policy table: what an operator
//! reads in `nft list ruleset`, so they say whose they are.

use std::net::IpAddr;

use crate::policy::{PeerSetId, PodRef, PolicyType};

/// The table, family inet, so one set of rules sees IPv4 and IPv6.
pub const TABLE: &str = "podnet-policy";
/// Base chain of routed and (with bridge netfilter) bridged pod traffic.
pub const FORWARD: &str = "forward";
/// Base chain of a local pod's traffic to the node's own addresses.
pub const INPUT: &str = "input";

/// Longest per-pod chain name. The kernel takes 255 bytes, but a
/// namespace and a pod name together may be longer (63 + 253), and
/// listings stay readable well below that.
const MAX_CHAIN: usize = 96;
/// `~` and 16 hex digits: what a shortened or sanitised name ends with.
const HASH_SUFFIX: usize = 17;

/// The verdict map of one direction and IP version, keyed by the address
/// of a local pod isolated in that direction.
pub fn vmap(direction: PolicyType, v6: bool) -> &'static str {
    match (direction, v6) {
        (PolicyType::Ingress, false) => "ingress-v4",
        (PolicyType::Ingress, true) => "ingress-v6",
        (PolicyType::Egress, false) => "egress-v4",
        (PolicyType::Egress, true) => "egress-v6",
    }
}

/// `peers-<id>-v4`: the IPv4 addresses of one peer set.
pub fn peer_set(id: PeerSetId, v6: bool) -> String {
    format!("peers-{id}-{}", if v6 { "v6" } else { "v4" })
}

fn direction_word(direction: PolicyType) -> &'static str {
    match direction {
        PolicyType::Ingress => "ingress",
        PolicyType::Egress => "egress",
    }
}

/// `ingress/NAMESPACE/NAME`: the pod's chain of one direction. `/` is in
/// neither a namespace nor a pod name, so no two pods share a name.
pub fn pod_chain(direction: PolicyType, pod: &PodRef) -> String {
    let parts = [direction_word(direction), &pod.namespace, &pod.name];
    bounded(&parts)
}

/// The chain of one address of a pod whose addresses were given
/// different rules (which the engine never does): it must not take the
/// pod's shared chain from the others.
pub fn address_chain(direction: PolicyType, pod: &PodRef, ip: IpAddr) -> String {
    let ip = ip.to_string();
    let parts = [direction_word(direction), &pod.namespace, &pod.name, &ip];
    bounded(&parts)
}

/// The parts joined by `/`, each kept to the characters of a Kubernetes
/// name (others become `_`); a name that had to change, or that is too
/// long, is cut and ends with a hash of the parts as given, so it stays
/// unique.
fn bounded(parts: &[&str]) -> String {
    let mut changed = false;
    let clean: Vec<String> = parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| match c {
                    'a'..='z' | '0'..='9' | '-' | '.' => c,
                    _ => {
                        changed = true;
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    let mut name = clean.join("/");
    if !changed && name.len() <= MAX_CHAIN {
        return name;
    }
    // Length-prefixed: no two lists of parts hash the same text.
    let identity: String = parts.iter().map(|p| format!("{}:{p}", p.len())).collect();
    // The clean name is ASCII, so any byte offset is a char boundary.
    name.truncate(MAX_CHAIN - HASH_SUFFIX);
    format!("{name}~{:016x}", fnv1a(identity.as_bytes()))
}

/// FNV-1a, as peer set ids use: stable across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
