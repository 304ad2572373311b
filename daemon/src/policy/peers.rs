//! Peer sets: a rule's peers resolved to addresses, named by their
//! definition and shared by every rule (of any pod, policy or direction)
//! that defines the same peers.

use super::index::Index;
use super::model::{LabelSelector, Peer};
use super::ruleset::PeerSet;

/// FNV-1a: stable across builds and platforms (std's hasher is not), and
/// ample for naming sets.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A text naming exactly the addresses `peers` select for a policy of
/// `policy_ns`, the same for peers that mean the same: selectors
/// normalised, peers sorted and deduplicated, the namespace written only
/// where a peer depends on it. Strings are length-prefixed, so no two
/// definitions share one text.
pub(crate) fn definition(policy_ns: &str, peers: &[Peer]) -> String {
    let mut parts: Vec<String> = peers
        .iter()
        .map(|peer| {
            let mut out = String::new();
            match peer {
                Peer::Pods {
                    namespace_selector,
                    pod_selector,
                } => {
                    out.push_str("pods ");
                    match namespace_selector {
                        None => push_str(&mut out, policy_ns),
                        Some(sel) => push_selector(&mut out, &sel.normalized()),
                    }
                    // Absent and empty both mean every pod.
                    match pod_selector
                        .as_ref()
                        .filter(|s| **s != LabelSelector::default())
                    {
                        None => out.push_str(" all"),
                        Some(sel) => push_selector(&mut out, &sel.normalized()),
                    }
                }
                Peer::IpBlock { cidr, except } => {
                    let mut except = except.clone();
                    except.sort_unstable();
                    except.dedup();
                    out.push_str("block ");
                    out.push_str(&cidr.to_string());
                    for hole in except {
                        out.push_str(" -");
                        out.push_str(&hole.to_string());
                    }
                }
            }
            out
        })
        .collect();
    parts.sort_unstable();
    parts.dedup();
    parts.join("\n")
}

fn push_str(out: &mut String, s: &str) {
    out.push(' ');
    out.push_str(&s.len().to_string());
    out.push(':');
    out.push_str(s);
}

fn push_selector(out: &mut String, sel: &LabelSelector) {
    out.push_str(" {");
    for (k, v) in &sel.match_labels {
        push_str(out, k);
        push_str(out, v);
    }
    for r in &sel.match_expressions {
        out.push(' ');
        out.push_str(r.op.as_str());
        push_str(out, &r.key);
        out.push(' ');
        out.push_str(&r.values.len().to_string());
        for v in &r.values {
            push_str(out, v);
        }
    }
    out.push_str(" }");
}

/// The addresses `peers` select for a policy of `policy_ns`: the
/// selectable pods of pod peers, and each block without its own holes.
pub(crate) fn resolve(index: &Index<'_>, policy_ns: &str, peers: &[Peer]) -> PeerSet {
    let mut set = PeerSet::default();
    for peer in peers {
        match peer {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                let pods = index.peer_pods(
                    policy_ns,
                    namespace_selector.as_ref(),
                    pod_selector.as_ref(),
                );
                for pod in pods {
                    for ip in &pod.ips {
                        set.push_addr(*ip);
                    }
                }
            }
            Peer::IpBlock { cidr, except } => set.extend(block(*cidr, except)),
        }
    }
    set.merged()
}

/// A block's addresses, merged, without its holes.
pub(crate) fn block(cidr: ipnetwork::IpNetwork, except: &[ipnetwork::IpNetwork]) -> PeerSet {
    let mut whole = PeerSet::default();
    whole.push_network(cidr);
    let mut holes = PeerSet::default();
    for hole in except {
        holes.push_network(*hole);
    }
    whole.without(holes)
}
