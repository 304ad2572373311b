//! The rules of one pod from the compiled policies that select it.

use std::borrow::Cow;

use super::policies::Compiled;
use crate::policy::model::{Pod, PortSpec};
use crate::policy::ports;
use crate::policy::ruleset::{Allow, Peers, PodRef, PodRules, PolicyRef, PortMatch};

/// One allow per peers and ports, naming every policy that makes it;
/// sorted (the order of [`Allow`]: by peers, then ports).
pub(super) fn pod_rules(pod: &Pod, selecting: &[&Compiled]) -> PodRules {
    let mut ingress: Option<Vec<Part<'_>>> = None;
    let mut egress: Option<Vec<Part<'_>>> = None;
    for compiled in selecting {
        if let Some(rules) = &compiled.ingress {
            let parts = ingress.get_or_insert_with(Vec::new);
            for (peers, specs) in rules {
                if let Some(ports) = ports_on(specs, pod) {
                    parts.push((*peers, Cow::Owned(ports), &compiled.name));
                }
            }
        }
        if let Some(rules) = &compiled.egress {
            let parts = egress.get_or_insert_with(Vec::new);
            for (peers, ports) in rules {
                parts.push((*peers, Cow::Borrowed(ports.as_slice()), &compiled.name));
            }
        }
    }
    PodRules {
        pod: PodRef {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        },
        ingress: ingress.map(merge),
        egress: egress.map(merge),
    }
}

/// An allow before merging: peers, ports, and the policy that makes it.
type Part<'a> = (Peers, Cow<'a, [PortMatch]>, &'a PolicyRef);

/// The ports a rule allows on `pod` as destination: `Some(empty)` for a
/// rule without ports (every port), `None` when it has ports but none
/// means anything on this pod (it then allows nothing).
fn ports_on(specs: &[PortSpec], pod: &Pod) -> Option<Vec<PortMatch>> {
    if specs.is_empty() {
        return Some(Vec::new());
    }
    let matched: Vec<PortMatch> = specs.iter().filter_map(|s| ports::on_pod(s, pod)).collect();
    (!matched.is_empty()).then(|| ports::normalize(matched))
}

/// Parts with the same peers and ports become one allow naming each of
/// their policies once, sorted.
fn merge(mut parts: Vec<Part<'_>>) -> Vec<Allow> {
    parts.sort_unstable();
    let mut out: Vec<Allow> = Vec::with_capacity(parts.len());
    for (peers, ports, policy) in parts {
        match out.last_mut() {
            Some(prev) if prev.peers == peers && prev.ports[..] == ports[..] => {
                if prev.policies.last() != Some(policy) {
                    prev.policies.push(policy.clone());
                }
            }
            _ => out.push(Allow {
                peers,
                ports: ports.into_owned(),
                policies: vec![policy.clone()],
            }),
        }
    }
    out
}
