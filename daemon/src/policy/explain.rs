//! [`explain`]: may this pod open a connection to that one, and which
//! policies say so. It reads the model directly rather than a compiled
//! ruleset, so the tests can hold the two to agreeing.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::index::Index;
use super::model::{NetworkPolicy, Peer, Pod, PolicyType, Protocol, Rule, Snapshot};
use super::peers;
use super::ports;
use super::ruleset::PolicyRef;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub verdict: Verdict,
    /// The addresses the answer is for: the destination's first address
    /// and the source's first address of the same family.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The source pod's side.
    pub egress: Decision,
    /// The destination pod's side.
    pub ingress: Decision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Allow,
    Deny,
}

/// What one side (the source's egress, the destination's ingress) says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// No policy isolates the pod in this direction: allowed.
    NotIsolated,
    /// Isolated, and these policies allow the connection.
    Allowed { by: Vec<PolicyRef> },
    /// Isolated by these policies, and none of them allows it.
    Denied { isolated_by: Vec<PolicyRef> },
    /// This side is a hostNetwork pod: its traffic is the node's, which no
    /// policy polices.
    HostNetwork,
    /// The source is a hostNetwork pod of the destination's own node: the
    /// node may always reach its pods.
    FromOwnNode,
    /// A pod's connection to itself never leaves its network namespace.
    Loopback,
}

impl Decision {
    pub fn allows(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }

    pub fn is_isolated(&self) -> bool {
        matches!(self, Self::Allowed { .. } | Self::Denied { .. })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    #[error("pod {namespace}/{name} is not in the snapshot")]
    UnknownPod { namespace: String, name: String },
    #[error("pod {namespace}/{name} has no address yet")]
    NoAddress { namespace: String, name: String },
    #[error("pods {from} and {to} have no address family in common")]
    NoCommonFamily { from: String, to: String },
}

/// Whether pod `from` may open a connection to pod `to` on `port` and
/// `protocol`, and why: the source's egress and the destination's
/// ingress must both allow it.
pub fn explain(
    snapshot: &Snapshot,
    from: (&str, &str),
    to: (&str, &str),
    port: u16,
    protocol: Protocol,
) -> Result<Explanation, ExplainError> {
    let index = Index::new(snapshot);
    let src_pod = find(&index, from)?;
    let dst_pod = find(&index, to)?;
    let dst = *dst_pod.ips.first().ok_or_else(|| no_address(dst_pod))?;
    let src = *src_pod
        .ips
        .iter()
        .find(|ip| ip.is_ipv4() == dst.is_ipv4())
        .ok_or_else(|| ExplainError::NoCommonFamily {
            from: format!("{}/{}", from.0, from.1),
            to: format!("{}/{}", to.0, to.1),
        })?;

    let (egress, ingress) = if from == to {
        (Decision::Loopback, Decision::Loopback)
    } else {
        let side = Side {
            index: &index,
            port,
            protocol,
        };
        (
            side.egress(src_pod, dst, dst_pod),
            side.ingress(src, src_pod, dst_pod),
        )
    };
    let verdict = if egress.allows() && ingress.allows() {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    Ok(Explanation {
        verdict,
        src,
        dst,
        egress,
        ingress,
    })
}

fn find<'a>(index: &Index<'a>, (namespace, name): (&str, &str)) -> Result<&'a Pod, ExplainError> {
    let pod = index
        .pod(namespace, name)
        .ok_or_else(|| ExplainError::UnknownPod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    if pod.ips.is_empty() {
        return Err(no_address(pod));
    }
    Ok(pod)
}

fn no_address(pod: &Pod) -> ExplainError {
    ExplainError::NoAddress {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
    }
}

/// The connection being explained.
struct Side<'i, 'a> {
    index: &'i Index<'a>,
    port: u16,
    protocol: Protocol,
}

impl Side<'_, '_> {
    fn egress(&self, src_pod: &Pod, dst: IpAddr, dst_pod: &Pod) -> Decision {
        if src_pod.host_network {
            return Decision::HostNetwork;
        }
        // A hostNetwork destination is only its node's address: no pod for
        // selectors, no named ports.
        let dst_pod = dst_pod.is_selectable().then_some(dst_pod);
        self.decide(src_pod, PolicyType::Egress, dst, dst_pod, dst_pod)
    }

    fn ingress(&self, src: IpAddr, src_pod: &Pod, dst_pod: &Pod) -> Decision {
        if dst_pod.host_network {
            return Decision::HostNetwork;
        }
        if src_pod.host_network && !src_pod.node.is_empty() && src_pod.node == dst_pod.node {
            return Decision::FromOwnNode;
        }
        let src_pod = src_pod.is_selectable().then_some(src_pod);
        self.decide(dst_pod, PolicyType::Ingress, src, src_pod, Some(dst_pod))
    }

    /// `subject`'s policies in `direction`, for a connection with `peer`
    /// (`peer_pod` when it is a selectable pod), named ports resolved
    /// against `destination`.
    fn decide(
        &self,
        subject: &Pod,
        direction: PolicyType,
        peer: IpAddr,
        peer_pod: Option<&Pod>,
        destination: Option<&Pod>,
    ) -> Decision {
        let isolating: Vec<&NetworkPolicy> = self
            .index
            .selecting(subject)
            .map(|(_, p)| p)
            .filter(|p| p.applies_to(direction))
            .collect();
        if isolating.is_empty() {
            return Decision::NotIsolated;
        }
        let allowing: Vec<PolicyRef> = isolating
            .iter()
            .filter(|p| {
                p.rules(direction)
                    .iter()
                    .any(|rule| self.rule_allows(p, rule, peer, peer_pod, destination))
            })
            .map(|p| policy_ref(p))
            .collect();
        if allowing.is_empty() {
            Decision::Denied {
                isolated_by: sorted(isolating.iter().map(|p| policy_ref(p)).collect()),
            }
        } else {
            Decision::Allowed {
                by: sorted(allowing),
            }
        }
    }

    fn rule_allows(
        &self,
        policy: &NetworkPolicy,
        rule: &Rule,
        peer: IpAddr,
        peer_pod: Option<&Pod>,
        destination: Option<&Pod>,
    ) -> bool {
        let peer_ok = rule.peers.is_empty()
            || rule
                .peers
                .iter()
                .any(|p| self.peer_matches(&policy.namespace, p, peer, peer_pod));
        let port_ok = rule.ports.is_empty()
            || rule
                .ports
                .iter()
                .any(|s| ports::allows(s, destination, self.port, self.protocol));
        peer_ok && port_ok
    }

    fn peer_matches(&self, policy_ns: &str, peer: &Peer, ip: IpAddr, pod: Option<&Pod>) -> bool {
        match peer {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => pod.is_some_and(|pod| {
                self.index.peer_matches(
                    policy_ns,
                    namespace_selector.as_ref(),
                    pod_selector.as_ref(),
                    pod,
                )
            }),
            Peer::IpBlock { cidr, except } => peers::block(*cidr, except).contains(ip),
        }
    }
}

fn policy_ref(policy: &NetworkPolicy) -> PolicyRef {
    PolicyRef {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
    }
}

fn sorted(mut refs: Vec<PolicyRef>) -> Vec<PolicyRef> {
    refs.sort();
    refs.dedup();
    refs
}
