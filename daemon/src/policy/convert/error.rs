//! What `convert` refuses, and where.

use std::fmt;

use crate::policy::model::PolicyType;

/// A value the engine cannot accept, with the object (and rule or
/// container port) it is in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{kind} {namespace}/{name}{}: {problem}", .at.as_ref().map(|a| format!(", {a}")).unwrap_or_default())]
pub struct ConvertError {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub at: Option<At>,
    /// Boxed: refusals travel in `Result`s and lists, the common case small.
    pub problem: Box<Problem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Namespace,
    Pod,
    NetworkPolicy,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Namespace => "Namespace",
            Self::Pod => "Pod",
            Self::NetworkPolicy => "NetworkPolicy",
        })
    }
}

/// Where in the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// The rule, counted from 0 in its direction's list.
    Rule(PolicyType, usize),
    /// A container port of the container with this name.
    ContainerPort(String),
    PodIp,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule(PolicyType::Ingress, i) => write!(f, "ingress rule {i}"),
            Self::Rule(PolicyType::Egress, i) => write!(f, "egress rule {i}"),
            Self::ContainerPort(container) => write!(f, "a port of container {container}"),
            Self::PodIp => f.write_str("status.podIPs"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    #[error("no metadata.name")]
    MissingName,
    #[error("no metadata.namespace")]
    MissingNamespace,
    #[error("no spec")]
    MissingSpec,
    #[error("{value:?} is not a CIDR")]
    BadCidr {
        value: String,
        #[source]
        source: ipnetwork::IpNetworkError,
    },
    #[error("{value:?} is not an address")]
    BadAddress {
        value: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("port {value} is outside 1-65535")]
    BadPort { value: i32 },
    #[error("{value:?} is not a port name (IANA_SVC_NAME)")]
    BadPortName { value: String },
    #[error("endPort {end_port} without a numeric port")]
    EndPortWithoutNumber { end_port: i32 },
    #[error("endPort {end_port} is not in {port}-65535")]
    BadEndPort { port: u16, end_port: i32 },
    #[error("unknown protocol {value:?} (TCP, UDP or SCTP)")]
    UnknownProtocol { value: String },
    #[error("unknown policy type {value:?} (Ingress or Egress)")]
    UnknownPolicyType { value: String },
    #[error("unknown selector operator {value:?} (In, NotIn, Exists, DoesNotExist)")]
    UnknownOperator { value: String },
    #[error("selector requirement on {key:?}: {operator} {}", if *.needs_values { "needs values" } else { "takes no values" })]
    BadRequirementValues {
        key: String,
        operator: &'static str,
        needs_values: bool,
    },
    #[error("a peer with neither an ipBlock nor a selector")]
    EmptyPeer,
    #[error("a peer with an ipBlock and a selector")]
    IpBlockWithSelector,
}
