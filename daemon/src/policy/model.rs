//! The snapshot the engine reads: the engine's own types, plain and
//! serde-friendly, already validated ([`super::convert`] is where Kubernetes
//! objects become these, and where values the engine cannot accept are
//! reported).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// Labels, ordered so everything built from them is deterministic.
pub type Labels = BTreeMap<String, String>;

/// Everything the engine decides from. Namespaces and policies are
/// shared: a sync whose watch saw no change copies only the pods, over
/// which it lays the pods admitted since.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub namespaces: Arc<Vec<Namespace>>,
    pub pods: Vec<Pod>,
    pub policies: Arc<Vec<NetworkPolicy>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// The node the pod runs on; empty while unscheduled.
    pub node: String,
    /// Empty until the pod has an address (and again once it has finished).
    pub ips: Vec<IpAddr>,
    pub labels: Labels,
    /// What named ports resolve against.
    pub ports: Vec<ContainerPort>,
    pub host_network: bool,
}

impl Pod {
    /// Whether pod and namespace selectors may match this pod: it has an
    /// address of its own to match.
    pub fn is_selectable(&self) -> bool {
        !self.host_network && !self.ips.is_empty()
    }

    /// The number a named port means on this pod, for this protocol.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The name Kubernetes and nftables both use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

/// A Kubernetes label selector: every label and every requirement must
/// match, so the empty selector matches everything. Where the API lets a
/// selector be absent, the model says `Option<LabelSelector>`, and absent
/// means something else (see [`Peer::Pods`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
    /// Only for `In` and `NotIn`.
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Operator {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    /// The pods of `namespace` the policy applies to.
    pub pod_selector: LabelSelector,
    /// `None`: not given, inferred as the API server does
    /// ([`NetworkPolicy::applies_to`]).
    pub policy_types: Option<Vec<PolicyType>>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

impl NetworkPolicy {
    /// Whether the policy isolates its pods in this direction: its
    /// `policyTypes`, or when they are not given (or empty, which the API
    /// server's defaulting treats alike) Ingress always and Egress iff
    /// there are egress rules.
    pub fn applies_to(&self, direction: PolicyType) -> bool {
        match self.policy_types.as_deref() {
            Some(types) if !types.is_empty() => types.contains(&direction),
            _ => match direction {
                PolicyType::Ingress => true,
                PolicyType::Egress => !self.egress.is_empty(),
            },
        }
    }

    /// The rules of one direction.
    pub fn rules(&self, direction: PolicyType) -> &[Rule] {
        match direction {
            PolicyType::Ingress => &self.ingress,
            PolicyType::Egress => &self.egress,
        }
    }
}

/// One ingress or egress rule: traffic from (to) any of `peers` on any of
/// `ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Empty: every peer, inside the cluster or not.
    pub peers: Vec<Peer>,
    /// Empty: every port of every protocol.
    pub ports: Vec<PortSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Peer {
    /// Pods matched by both selectors.
    Pods {
        /// `None`: the policy's own namespace; `Some` (even empty): every
        /// namespace it matches.
        namespace_selector: Option<LabelSelector>,
        /// `None`: every pod of the selected namespaces.
        pod_selector: Option<LabelSelector>,
    },
    /// Addresses in `cidr` but in none of `except`.
    IpBlock {
        cidr: IpNetwork,
        except: Vec<IpNetwork>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortSpec {
    pub protocol: Protocol,
    /// `None`: every port of `protocol`.
    pub port: Option<PortRef>,
    /// With a numeric `port`: the last port of the range, inclusive.
    pub end_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortRef {
    Number(u16),
    /// A container port's name, resolved against the destination pod.
    Name(String),
}
