//! NetworkPolicies, their rules and label selectors.

use ipnetwork::IpNetwork;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{dedup, names, At, ConvertError, Converted, Kind, Problem};
use crate::policy::model::{
    LabelSelector, NetworkPolicy, Operator, Peer, PolicyType, PortRef, PortSpec, Protocol,
    Requirement, Rule,
};

/// A policy, its `policyTypes` always given (inferred from the rules as
/// written when the object has none), the rules with a bad value left out.
pub fn network_policy(
    np: &networking::NetworkPolicy,
) -> Result<Converted<NetworkPolicy>, ConvertError> {
    let (namespace, name) = names(Kind::NetworkPolicy, &np.metadata)?;
    let refusal = |at: Option<At>, problem: Problem| ConvertError {
        kind: Kind::NetworkPolicy,
        namespace: namespace.clone(),
        name: name.clone(),
        at,
        problem: Box::new(problem),
    };
    let spec = np
        .spec
        .as_ref()
        .ok_or_else(|| refusal(None, Problem::MissingSpec))?;
    let pod_selector = match &spec.pod_selector {
        Some(sel) => label_selector(sel).map_err(|p| refusal(None, p))?,
        None => LabelSelector::default(),
    };
    let ingress = spec.ingress.as_deref().unwrap_or_default();
    let egress = spec.egress.as_deref().unwrap_or_default();
    let policy_types = match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => types
            .iter()
            .map(|t| policy_type(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|p| refusal(None, p))?,
        _ if egress.is_empty() => vec![PolicyType::Ingress],
        _ => vec![PolicyType::Ingress, PolicyType::Egress],
    };

    let mut left_out = Vec::new();
    let mut keep = |direction: PolicyType, i: usize, rule: Result<Rule, Problem>| match rule {
        Ok(rule) => Some(rule),
        Err(problem) => {
            left_out.push(refusal(Some(At::Rule(direction, i)), problem));
            None
        }
    };
    let ingress: Vec<Rule> = ingress
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            keep(
                PolicyType::Ingress,
                i,
                rule(r.from.as_deref(), r.ports.as_deref()),
            )
        })
        .collect();
    let egress: Vec<Rule> = egress
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            keep(
                PolicyType::Egress,
                i,
                rule(r.to.as_deref(), r.ports.as_deref()),
            )
        })
        .collect();

    let value = NetworkPolicy {
        namespace,
        name,
        pod_selector,
        policy_types: Some(dedup(policy_types)),
        ingress,
        egress,
    };
    Ok(Converted { value, left_out })
}

fn policy_type(text: &str) -> Result<PolicyType, Problem> {
    match text {
        "Ingress" => Ok(PolicyType::Ingress),
        "Egress" => Ok(PolicyType::Egress),
        _ => Err(Problem::UnknownPolicyType {
            value: text.to_owned(),
        }),
    }
}

fn rule(
    peers: Option<&[networking::NetworkPolicyPeer]>,
    ports: Option<&[networking::NetworkPolicyPort]>,
) -> Result<Rule, Problem> {
    Ok(Rule {
        peers: peers
            .unwrap_or_default()
            .iter()
            .map(peer)
            .collect::<Result<_, _>>()?,
        ports: ports
            .unwrap_or_default()
            .iter()
            .map(port_spec)
            .collect::<Result<_, _>>()?,
    })
}

fn peer(peer: &networking::NetworkPolicyPeer) -> Result<Peer, Problem> {
    let selectors = peer.namespace_selector.is_some() || peer.pod_selector.is_some();
    match &peer.ip_block {
        Some(_) if selectors => Err(Problem::IpBlockWithSelector),
        Some(block) => Ok(Peer::IpBlock {
            cidr: cidr(&block.cidr)?,
            except: block
                .except
                .iter()
                .flatten()
                .map(|e| cidr(e))
                .collect::<Result<_, _>>()?,
        }),
        None if !selectors => Err(Problem::EmptyPeer),
        None => Ok(Peer::Pods {
            namespace_selector: peer
                .namespace_selector
                .as_ref()
                .map(label_selector)
                .transpose()?,
            pod_selector: peer.pod_selector.as_ref().map(label_selector).transpose()?,
        }),
    }
}

fn cidr(text: &str) -> Result<IpNetwork, Problem> {
    text.parse().map_err(|source| Problem::BadCidr {
        value: text.to_owned(),
        source,
    })
}

fn port_spec(port: &networking::NetworkPolicyPort) -> Result<PortSpec, Problem> {
    let protocol = protocol(port.protocol.as_deref())?;
    let without_number = |end_port| Problem::EndPortWithoutNumber { end_port };
    let (port, end_port) = match (&port.port, port.end_port) {
        (None, None) => (None, None),
        (None | Some(IntOrString::String(_)), Some(end)) => return Err(without_number(end)),
        (Some(IntOrString::String(name)), None) => (Some(PortRef::Name(port_name(name)?)), None),
        (Some(IntOrString::Int(n)), end) => {
            let n = port_number(*n)?;
            let end = match end {
                None => None,
                Some(e) => Some(u16::try_from(e).ok().filter(|e| *e >= n).ok_or(
                    Problem::BadEndPort {
                        port: n,
                        end_port: e,
                    },
                )?),
            };
            (Some(PortRef::Number(n)), end)
        }
    };
    Ok(PortSpec {
        protocol,
        port,
        end_port,
    })
}

/// TCP when not given, as the API defaults it.
pub(super) fn protocol(text: Option<&str>) -> Result<Protocol, Problem> {
    match text {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(Problem::UnknownProtocol {
            value: other.to_owned(),
        }),
    }
}

pub(super) fn port_number(n: i32) -> Result<u16, Problem> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n != 0)
        .ok_or(Problem::BadPort { value: n })
}

/// An IANA service name (RFC 6335), as the API requires of a port name:
/// at most 15 of `a-z`, `0-9` and `-`, at least one letter, no hyphen at
/// either end or next to another. A number written as a string is not
/// one, so it cannot be mistaken for a port number.
fn port_name(text: &str) -> Result<String, Problem> {
    let ok = !text.is_empty()
        && text.len() <= 15
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && text.bytes().any(|b| b.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--");
    if ok {
        Ok(text.to_owned())
    } else {
        Err(Problem::BadPortName {
            value: text.to_owned(),
        })
    }
}

/// A selector, its requirements checked as `labels.Selector` checks them.
pub fn label_selector(sel: &meta::LabelSelector) -> Result<LabelSelector, Problem> {
    let match_expressions = sel
        .match_expressions
        .iter()
        .flatten()
        .map(requirement)
        .collect::<Result<_, _>>()?;
    Ok(LabelSelector {
        match_labels: sel.match_labels.clone().unwrap_or_default(),
        match_expressions,
    })
}

fn requirement(req: &meta::LabelSelectorRequirement) -> Result<Requirement, Problem> {
    let op = match req.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(Problem::UnknownOperator {
                value: other.to_owned(),
            })
        }
    };
    let values = req.values.clone().unwrap_or_default();
    let needs_values = matches!(op, Operator::In | Operator::NotIn);
    if needs_values == values.is_empty() {
        return Err(Problem::BadRequirementValues {
            key: req.key.clone(),
            operator: op.as_str(),
            needs_values,
        });
    }
    Ok(Requirement {
        key: req.key.clone(),
        op,
        values,
    })
}
