//! The decisions of the `kubernetes` store, as pure functions over Node
//! objects: what a Node says about its CIDRs and addresses, what this node
//! should do next to get its CIDRs ([`plan`]), the patches that do it, and
//! how watch events become [`StoreEvent`]s ([`WatchState`]). No IO here,
//! so every rule is tested on Nodes exactly as the API serves them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use podnet_ipam::cidr::{choose_node_cidrs, ClusterConfig, NodeLease};
use serde_json::{json, Map, Value};

use crate::store::{NodeRecord, StoreError, StoreEvent};

/// This node's CIDRs, once confirmed (comma-separated, one per family, e.g.
/// `10.244.3.0/24,fd00:10:244:3::/64`). Peers route to a node by it when
/// the controller-manager gave the node no `spec.podCIDRs`.
pub const POD_CIDRS_ANNOTATION: &str = "podnet.dev/pod-cidrs";

/// CIDRs this node has claimed but not yet confirmed (same format). Every
/// node avoids them when choosing; nobody routes to them.
pub const POD_CIDRS_CLAIM_ANNOTATION: &str = "podnet.dev/pod-cidrs-claim";

/// The MAC of the node's VXLAN device, for peers on other L2 segments.
pub const VTEP_MAC_ANNOTATION: &str = "podnet.dev/vtep-mac";

/// Where adopted CIDRs came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CidrSource {
    /// `spec.podCIDRs`, assigned by the controller-manager.
    Controller,
    /// Our confirmed [`POD_CIDRS_ANNOTATION`].
    Annotation,
}

/// The next step for this node to hold its CIDRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Use these: the Node's `spec.podCIDRs`, or our confirmed annotation.
    Adopt {
        cidrs: Vec<IpNetwork>,
        source: CidrSource,
    },
    /// The Node has no CIDRs yet but other Nodes have controller-assigned
    /// ones: the controller-manager allocates in this cluster and is about
    /// to give this Node its own. Allocating here instead could collide
    /// with its next assignment (it never reads our annotations).
    Wait,
    /// Write `cidrs` as this node's claim, on the condition that the Node is
    /// still at `resource_version` (a merge patch carrying it: 409 Conflict
    /// otherwise). Then read everything again and plan again.
    Claim {
        cidrs: Vec<IpNetwork>,
        resource_version: String,
    },
    /// The claim survived a read made after it was written: no other node
    /// claims or holds any of it. Promote it to [`POD_CIDRS_ANNOTATION`]
    /// (conditional on `resource_version` too), then plan again.
    Confirm {
        cidrs: Vec<IpNetwork>,
        resource_version: String,
    },
}

/// The Node's name.
pub fn node_name(node: &Node) -> Option<&str> {
    node.metadata.name.as_deref().filter(|n| !n.is_empty())
}

/// The CIDRs the controller-manager assigned: `spec.podCIDRs`, else the
/// older single `spec.podCIDR`; empty when none.
pub fn controller_cidrs(node: &Node) -> Result<Vec<IpNetwork>, String> {
    let Some(spec) = &node.spec else {
        return Ok(Vec::new());
    };
    let listed: Vec<&str> = match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(cidrs), _) if !cidrs.is_empty() => cidrs.iter().map(String::as_str).collect(),
        (_, Some(cidr)) if !cidr.is_empty() => vec![cidr.as_str()],
        _ => Vec::new(),
    };
    listed
        .into_iter()
        .map(|c| {
            c.parse()
                .map_err(|e| format!("spec.podCIDRs entry {c:?}: {e}"))
        })
        .collect()
}

/// The value of one of our CIDR annotations, parsed; `None` when absent or
/// empty.
pub fn annotated_cidrs(node: &Node, key: &str) -> Result<Option<Vec<IpNetwork>>, String> {
    let Some(value) = annotation(node, key) else {
        return Ok(None);
    };
    let cidrs = parse_cidr_list(value).map_err(|e| format!("annotation {key}={value:?}: {e}"))?;
    Ok((!cidrs.is_empty()).then_some(cidrs))
}

/// `a/n,b/m` -> CIDRs (spaces and empty items ignored).
pub fn parse_cidr_list(value: &str) -> Result<Vec<IpNetwork>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| format!("{s:?}: {e}")))
        .collect()
}

/// CIDRs as one annotation value.
pub fn format_cidr_list(cidrs: &[IpNetwork]) -> String {
    cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// The Node's `InternalIP` addresses from `status.addresses`, in the order
/// listed (a dual-stack node has one per family); unparseable ones skipped.
pub fn internal_ips(node: &Node) -> Vec<IpAddr> {
    let Some(addresses) = node.status.as_ref().and_then(|s| s.addresses.as_ref()) else {
        return Vec::new();
    };
    addresses
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.trim().parse().ok())
        .collect()
}

/// The CIDRs peers route to this Node by: `spec.podCIDRs`, else our
/// confirmed annotation (a claim is not routable yet).
pub fn routable_cidrs(node: &Node) -> Result<Vec<IpNetwork>, String> {
    let assigned = controller_cidrs(node)?;
    if !assigned.is_empty() {
        return Ok(assigned);
    }
    Ok(annotated_cidrs(node, POD_CIDRS_ANNOTATION)?.unwrap_or_default())
}

/// The Node as a peer sees it; `Ok(None)` while it has no CIDRs (nothing
/// to route to yet), `Err` when a field is unreadable.
pub fn parse_record(node: &Node) -> Result<Option<NodeRecord>, String> {
    let Some(name) = node_name(node) else {
        return Err("Node without a name".to_string());
    };
    let cidrs = routable_cidrs(node).map_err(|e| format!("node {name}: {e}"))?;
    if cidrs.is_empty() {
        return Ok(None);
    }
    Ok(Some(NodeRecord {
        node: name.to_string(),
        cidrs,
        addresses: internal_ips(node),
        vtep_mac: annotation(node, VTEP_MAC_ANNOTATION).map(|m| m.trim().to_string()),
    }))
}

/// [`parse_record`], with an unreadable Node logged and skipped.
pub fn record_from_node(node: &Node) -> Option<NodeRecord> {
    parse_record(node).unwrap_or_else(|reason| {
        tracing::warn!(node = ?node_name(node), %reason, "skipping a Node podnet cannot read");
        None
    })
}

/// Every CIDR another node holds or claims, whatever its size: its
/// `spec.podCIDRs`, its confirmed annotation and its claim. Unreadable
/// values are logged and skipped.
pub fn taken_by_others(me: &str, others: &[Node]) -> Vec<NodeLease> {
    let mut taken = Vec::new();
    for node in others {
        let Some(name) = node_name(node).filter(|n| *n != me) else {
            continue;
        };
        let mut cidrs = Vec::new();
        match controller_cidrs(node) {
            Ok(c) => cidrs.extend(c),
            Err(reason) => tracing::warn!(node = name, %reason, "ignoring unreadable podCIDRs"),
        }
        for key in [POD_CIDRS_ANNOTATION, POD_CIDRS_CLAIM_ANNOTATION] {
            match annotated_cidrs(node, key) {
                Ok(c) => cidrs.extend(c.unwrap_or_default()),
                Err(reason) => {
                    tracing::warn!(node = name, %reason, "ignoring an unreadable annotation")
                }
            }
        }
        if !cidrs.is_empty() {
            taken.push(NodeLease {
                node: name.to_string(),
                cidrs,
            });
        }
    }
    taken
}

fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

fn corrupt(node: &str, what: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        key: format!("Node {node} {what}"),
        reason,
    }
}

/// What this node (`me`, as just read) does next, given every other Node
/// read in the same list.
///
/// 1. `spec.podCIDRs` set: adopt exactly those.
/// 2. Our confirmed annotation: adopt it.
/// 3. Our claim, and no other node holds or claims any of it: confirm it.
///    This read came after the claim was written, so of two nodes that
///    claimed the same block concurrently at least one sees the other's
///    claim and yields (each writes before it reads; reads are linearizable):
///    two nodes never both confirm one block.
/// 4. `wait_for_controller` and another Node has `spec.podCIDRs`: wait.
/// 5. Otherwise choose with [`choose_node_cidrs`], avoiding every other
///    node's podCIDRs (any size), confirmed CIDRs and claims, and claim
///    the choice conditionally on the Node's `resourceVersion`.
///
/// Errors: this Node's own annotation is unreadable (never silently
/// replaced: pods may be using it), or the range is exhausted.
pub fn plan(
    me: &Node,
    others: &[Node],
    config: &ClusterConfig,
    wait_for_controller: bool,
) -> Result<Plan, StoreError> {
    plan_spread(me, others, config, wait_for_controller, 0)
}

/// [`plan`], except that a node replacing a contested claim takes the
/// `random % (contenders + 1)`-th lowest free block rather than the lowest:
/// the nodes that met on one block scatter instead of all meeting again on
/// the next.
pub fn plan_spread(
    me: &Node,
    others: &[Node],
    config: &ClusterConfig,
    wait_for_controller: bool,
    random: u64,
) -> Result<Plan, StoreError> {
    let Some(name) = node_name(me) else {
        return Err(corrupt("(unnamed)", "metadata.name", "missing".into()));
    };
    let assigned = controller_cidrs(me).map_err(|e| corrupt(name, "spec", e))?;
    if !assigned.is_empty() {
        return Ok(Plan::Adopt {
            cidrs: assigned,
            source: CidrSource::Controller,
        });
    }
    let annotated = |key| annotated_cidrs(me, key).map_err(|e| corrupt(name, "annotation", e));
    if let Some(cidrs) = annotated(POD_CIDRS_ANNOTATION)? {
        return Ok(Plan::Adopt {
            cidrs,
            source: CidrSource::Annotation,
        });
    }
    let resource_version = me
        .metadata
        .resource_version
        .clone()
        .filter(|rv| !rv.is_empty())
        .ok_or_else(|| corrupt(name, "metadata.resourceVersion", "missing".into()))?;
    let mut taken = taken_by_others(name, others);
    let mut skip = 0;
    if let Some(claim) = annotated(POD_CIDRS_CLAIM_ANNOTATION)? {
        let contenders = taken
            .iter()
            .filter(|lease| {
                lease
                    .cidrs
                    .iter()
                    .any(|theirs| claim.iter().any(|mine| overlaps(mine, theirs)))
            })
            .count();
        if contenders == 0 {
            return Ok(Plan::Confirm {
                cidrs: claim,
                resource_version,
            });
        }
        tracing::info!(node = name, claim = ?claim, contenders, "other nodes claim part of this node's claim; choosing again");
        skip = random % (contenders as u64 + 1);
    }
    let controller_allocates = others
        .iter()
        .any(|n| node_name(n) != Some(name) && controller_cidrs(n).is_ok_and(|c| !c.is_empty()));
    if wait_for_controller && controller_allocates {
        return Ok(Plan::Wait);
    }
    let lowest = choose_node_cidrs(config, name, &taken)?;
    let mut cidrs = lowest.clone();
    for _ in 0..skip {
        taken.push(NodeLease {
            node: String::new(),
            cidrs: cidrs.clone(),
        });
        match choose_node_cidrs(config, name, &taken) {
            Ok(next) => cidrs = next,
            // Too few free blocks to scatter over: take the lowest.
            Err(_) => {
                cidrs = lowest;
                break;
            }
        }
    }
    Ok(Plan::Claim {
        cidrs,
        resource_version,
    })
}

/// JSON merge patch writing a claim: fails with 409 unless the Node is
/// still at `resource_version`.
pub fn claim_patch(cidrs: &[IpNetwork], resource_version: &str, vtep_mac: Option<&str>) -> Value {
    let mut annotations = Map::new();
    annotations.insert(
        POD_CIDRS_CLAIM_ANNOTATION.into(),
        Value::String(format_cidr_list(cidrs)),
    );
    if let Some(mac) = vtep_mac {
        annotations.insert(VTEP_MAC_ANNOTATION.into(), Value::String(mac.into()));
    }
    json!({"metadata": {"resourceVersion": resource_version, "annotations": annotations}})
}

/// JSON merge patch promoting a claim (removing it): fails with 409 unless
/// the Node is still at `resource_version`.
pub fn confirm_patch(cidrs: &[IpNetwork], resource_version: &str, vtep_mac: Option<&str>) -> Value {
    let mut annotations = Map::new();
    annotations.insert(
        POD_CIDRS_ANNOTATION.into(),
        Value::String(format_cidr_list(cidrs)),
    );
    annotations.insert(POD_CIDRS_CLAIM_ANNOTATION.into(), Value::Null);
    if let Some(mac) = vtep_mac {
        annotations.insert(VTEP_MAC_ANNOTATION.into(), Value::String(mac.into()));
    }
    json!({"metadata": {"resourceVersion": resource_version, "annotations": annotations}})
}

/// After adopting: the unconditional merge patch (only this node writes
/// these annotations) that sets the VTEP MAC and removes what no longer
/// applies: a leftover claim, and our CIDR annotation when the
/// controller-manager assigned `spec.podCIDRs` meanwhile (it would keep
/// those CIDRs from other nodes for nothing). `None` when nothing changes.
pub fn tidy_patch(me: &Node, source: CidrSource, vtep_mac: Option<&str>) -> Option<Value> {
    let mut annotations = Map::new();
    if let Some(mac) = vtep_mac {
        if annotation(me, VTEP_MAC_ANNOTATION).map(str::trim) != Some(mac) {
            annotations.insert(VTEP_MAC_ANNOTATION.into(), Value::String(mac.into()));
        }
    }
    if annotation(me, POD_CIDRS_CLAIM_ANNOTATION).is_some() {
        annotations.insert(POD_CIDRS_CLAIM_ANNOTATION.into(), Value::Null);
    }
    if source == CidrSource::Controller && annotation(me, POD_CIDRS_ANNOTATION).is_some() {
        annotations.insert(POD_CIDRS_ANNOTATION.into(), Value::Null);
    }
    (!annotations.is_empty()).then(|| json!({"metadata": {"annotations": annotations}}))
}

/// Turns the watcher's events into store events. The watcher (re)lists as
/// `Init`, `InitApply`..., `InitDone` (at start, and after a desync such
/// as 410 Gone): that becomes one `Resync` of the listed Nodes, so a Node
/// deleted while the watch was down disappears. Between lists, a Node's
/// change is an `Upsert` only when its record changed (the kubelet updates
/// status often), a deleted Node, or one that lost its CIDRs, a `Removed`.
/// An unreadable Node keeps its last known record.
#[derive(Debug, Default)]
pub struct WatchState {
    known: BTreeMap<String, NodeRecord>,
    /// Collecting a relist.
    pending: Option<BTreeMap<String, NodeRecord>>,
}

impl WatchState {
    pub fn apply(&mut self, event: watcher::Event<Node>) -> Option<StoreEvent> {
        match event {
            watcher::Event::Init => {
                self.pending = Some(BTreeMap::new());
                None
            }
            watcher::Event::InitApply(node) => {
                if let (Some(pending), Some(record)) = (&mut self.pending, record_from_node(&node))
                {
                    pending.insert(record.node.clone(), record);
                }
                None
            }
            watcher::Event::InitDone => {
                self.known = self.pending.take().unwrap_or_default();
                Some(StoreEvent::Resync(self.known.values().cloned().collect()))
            }
            watcher::Event::Apply(node) => {
                let name = node_name(&node)?.to_string();
                match parse_record(&node) {
                    Ok(Some(record)) => {
                        if self.known.get(&name) == Some(&record) {
                            return None;
                        }
                        self.known.insert(name, record.clone());
                        Some(StoreEvent::Upsert(record))
                    }
                    Ok(None) => self.known.remove(&name).map(|_| StoreEvent::Removed(name)),
                    Err(reason) => {
                        tracing::warn!(node = %name, %reason, "unreadable Node update; keeping its last record");
                        None
                    }
                }
            }
            watcher::Event::Delete(node) => {
                let name = node_name(&node)?.to_string();
                self.known.remove(&name);
                Some(StoreEvent::Removed(name))
            }
        }
    }
}
