//! Kubernetes objects (`k8s-openapi`) to the engine's model, refusing with
//! a typed [`ConvertError`] what the engine cannot accept. Nothing refused
//! is dropped silently: every refusal is returned for the caller to report.
//!
//! Refusals fail closed where they can. A rule with a bad value is left
//! out and its policy kept: rules only ever allow, so the policy still
//! isolates its pods and allows less, never more (and `policyTypes` is
//! fixed from the rules as written, before any is left out). A bad pod
//! address or container port is left out of its pod. Only an object
//! without a name, or a policy whose own pod selector or policy types
//! cannot be read (so which pods it isolates is unknown), is refused
//! whole; the API server's validation keeps those from existing.

mod error;
mod policy;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use error::{At, ConvertError, Kind, Problem};
pub use policy::{label_selector, network_policy};

use super::model::{ContainerPort, Namespace, Pod, Snapshot};

/// The label the API server puts on every namespace (since 1.21), which
/// `namespaceSelector`s commonly match on.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A conversion's result, with the parts of it left out (and why).
#[derive(Debug, PartialEq, Eq)]
pub struct Converted<T> {
    pub value: T,
    pub left_out: Vec<ConvertError>,
}

/// Everything that converts, and every refusal.
pub fn snapshot<'a>(
    namespaces: impl IntoIterator<Item = &'a core::Namespace>,
    pods: impl IntoIterator<Item = &'a core::Pod>,
    policies: impl IntoIterator<Item = &'a networking::NetworkPolicy>,
) -> Converted<Snapshot> {
    let mut left_out = Vec::new();
    let mut value = Snapshot::default();
    for ns in namespaces {
        match namespace(ns) {
            Ok(ns) => Arc::make_mut(&mut value.namespaces).push(ns),
            Err(e) => left_out.push(e),
        }
    }
    for p in pods {
        match pod(p) {
            Ok(c) => {
                value.pods.push(c.value);
                left_out.extend(c.left_out);
            }
            Err(e) => left_out.push(e),
        }
    }
    for np in policies {
        match network_policy(np) {
            Ok(c) => {
                Arc::make_mut(&mut value.policies).push(c.value);
                left_out.extend(c.left_out);
            }
            Err(e) => left_out.push(e),
        }
    }
    Converted { value, left_out }
}

/// The namespace's labels, with [`NAMESPACE_NAME_LABEL`] set as the API
/// server sets it, so snapshots from other sources select alike.
pub fn namespace(ns: &core::Namespace) -> Result<Namespace, ConvertError> {
    let name = ns.metadata.name.clone().ok_or_else(|| ConvertError {
        kind: Kind::Namespace,
        namespace: String::new(),
        name: String::new(),
        at: None,
        problem: Box::new(Problem::MissingName),
    })?;
    let mut labels = ns.metadata.labels.clone().unwrap_or_default();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_owned())
        .or_insert_with(|| name.clone());
    Ok(Namespace { name, labels })
}

/// A pod as policy sees it. A finished pod (`Succeeded`, `Failed`) keeps
/// no addresses: they may already be a new pod's.
pub fn pod(pod: &core::Pod) -> Result<Converted<Pod>, ConvertError> {
    let (namespace, name) = names(Kind::Pod, &pod.metadata)?;
    let refusal = |at: At, problem: Problem| ConvertError {
        kind: Kind::Pod,
        namespace: namespace.clone(),
        name: name.clone(),
        at: Some(at),
        problem: Box::new(problem),
    };
    let mut left_out = Vec::new();
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let finished = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );

    // podIPs holds podIP first; older objects may have only podIP.
    let mut texts: Vec<&str> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|i| i.ip.as_str()).collect())
        .unwrap_or_default();
    if texts.is_empty() {
        texts.extend(status.and_then(|s| s.pod_ip.as_deref()));
    }
    let mut ips = Vec::new();
    for text in texts.into_iter().filter(|_| !finished) {
        match text.parse() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(source) => left_out.push(refusal(
                At::PodIp,
                Problem::BadAddress {
                    value: text.to_owned(),
                    source,
                },
            )),
        }
    }

    let mut ports = Vec::new();
    for container in running_containers(spec) {
        for port in container.ports.iter().flatten() {
            match container_port(port) {
                Ok(p) => ports.push(p),
                Err(problem) => {
                    left_out.push(refusal(At::ContainerPort(container.name.clone()), problem));
                }
            }
        }
    }

    let value = Pod {
        namespace: namespace.clone(),
        name: name.clone(),
        node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        ips,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ports,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
    };
    Ok(Converted { value, left_out })
}

/// The containers whose ports can serve: the regular ones and sidecars
/// (init containers that keep running, `restartPolicy: Always`).
fn running_containers(spec: Option<&core::PodSpec>) -> impl Iterator<Item = &core::Container> {
    let regular = spec.into_iter().flat_map(|s| s.containers.iter());
    let sidecars = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    regular.chain(sidecars)
}

fn container_port(port: &core::ContainerPort) -> Result<ContainerPort, Problem> {
    Ok(ContainerPort {
        name: port.name.clone(),
        port: policy::port_number(port.container_port)?,
        protocol: policy::protocol(port.protocol.as_deref())?,
    })
}

/// An object's namespace and name, both required.
fn names(kind: Kind, meta: &ObjectMeta) -> Result<(String, String), ConvertError> {
    let refusal = |problem| ConvertError {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        at: None,
        problem: Box::new(problem),
    };
    let name = meta
        .name
        .clone()
        .ok_or_else(|| refusal(Problem::MissingName))?;
    let namespace = meta
        .namespace
        .clone()
        .ok_or_else(|| refusal(Problem::MissingNamespace))?;
    Ok((namespace, name))
}

/// Duplicates in a list the API treats as a set are harmless; kept once.
fn dedup<T: Ord>(items: Vec<T>) -> Vec<T> {
    items
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}
