//! Obtaining this node's CIDRs: read, plan, write one step, and again
//! until the Node holds them (see the module docs of `kube`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Node;

use super::{
    annotated_cidrs, claim_patch, confirm_patch, controller_cidrs, internal_ips, node_name,
    plan_spread, tidy_patch, CidrSource, KubeBackend, KubeError, Plan, CONTROLLER_GRACE,
    MAX_ATTEMPTS, POD_CIDRS_CLAIM_ANNOTATION, REGISTER_PATIENCE,
};
use crate::retry::{self, AttemptJitter, Backoff};
use crate::store::{NodeRecord, StoreError};

impl KubeBackend {
    /// Obtains this node's CIDRs (see the module docs) and annotates its
    /// VTEP MAC. Returns `record` with the CIDRs; its `addresses` are kept
    /// as given, though peers use the Node's `InternalIP`s (a mismatch is
    /// logged).
    pub async fn register(&self, mut record: NodeRecord) -> Result<NodeRecord, StoreError> {
        let name = record.node.clone();
        let vtep = record.vtep_mac.clone();
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut transient = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        let mut waited_on_contest = false;
        loop {
            let step = self
                .register_step(&name, vtep.as_deref(), started, waited_on_contest)
                .await;
            waited_on_contest = matches!(step, Ok(Step::Contested));
            let delay = match step {
                Ok(Step::Done { cidrs, internal }) => {
                    if record.addresses.iter().any(|a| !internal.contains(a)) {
                        tracing::warn!(
                            node = %name,
                            ours = ?record.addresses,
                            internal_ips = ?internal,
                            "peers route to the Node's InternalIPs, which differ from this node's address"
                        );
                    }
                    record.cidrs = cidrs;
                    return Ok(record);
                }
                Ok(Step::Wait) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Ok(Step::Written) => {
                    attempts += 1;
                    None
                }
                Ok(Step::Contested) => {
                    attempts += 1;
                    Some(REPLAN_JITTER.delay(attempts, &name))
                }
                Err(StoreError::Kube(err)) if err.is_conflict() => {
                    attempts += 1;
                    tracing::debug!(node = %name, attempts, "the Node changed since it was read; planning again");
                    Some(REPLAN_JITTER.delay(attempts, &name))
                }
                Err(StoreError::Kube(err))
                    if err.is_transient() && started.elapsed() < REGISTER_PATIENCE =>
                {
                    let delay = transient.next_delay();
                    tracing::warn!(node = %name, error = %err, retry_in = ?delay, "Kubernetes API unavailable; retrying");
                    Some(delay)
                }
                Err(err) => return Err(err),
            };
            if attempts >= MAX_ATTEMPTS {
                return Err(StoreError::Contended {
                    node: name,
                    attempts,
                });
            }
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// One read and the step it calls for. A contested claim is replaced
    /// only when it is still contested after a random pause
    /// (`waited_on_contest`): of the nodes that claimed one block, the
    /// first to look again moves away and a later one then finds its claim
    /// uncontested, instead of all moving to the same next block together.
    async fn register_step(
        &self,
        name: &str,
        vtep: Option<&str>,
        started: Instant,
        waited_on_contest: bool,
    ) -> Result<Step, StoreError> {
        let (mut others, _) = self.list_nodes().await?;
        let Some(at) = others.iter().position(|n| node_name(n) == Some(name)) else {
            return Err(KubeError::NodeNotFound(name.to_string()).into());
        };
        let me = others.swap_remove(at);
        let wait = started.elapsed() < CONTROLLER_GRACE;
        let random = retry::random(name);
        match plan_spread(&me, &others, &self.config, wait, random)? {
            Plan::Adopt { cidrs, source } => self.adopt(name, &me, cidrs, source, vtep).await,
            Plan::Wait => {
                tracing::info!(
                    node = name,
                    "the Node has no podCIDRs yet but others do; waiting for the controller-manager"
                );
                Ok(Step::Wait)
            }
            Plan::Claim {
                cidrs,
                resource_version,
            } => {
                if !wait {
                    warn_if_passed_over(name, &others);
                }
                // plan() replaces our own claim only when it is contested.
                let contested = has_claim(&me);
                if contested && !waited_on_contest {
                    return Ok(Step::Contested);
                }
                self.patch(name, &claim_patch(&cidrs, &resource_version, vtep))
                    .await?;
                tracing::debug!(node = name, ?cidrs, "claimed node CIDRs");
                Ok(Step::Written)
            }
            Plan::Confirm {
                cidrs,
                resource_version,
            } => {
                self.patch(name, &confirm_patch(&cidrs, &resource_version, vtep))
                    .await?;
                Ok(Step::Written)
            }
        }
    }

    /// Takes CIDRs the Node already has, tidying its annotations.
    async fn adopt(
        &self,
        name: &str,
        me: &Node,
        cidrs: Vec<IpNetwork>,
        source: CidrSource,
        vtep: Option<&str>,
    ) -> Result<Step, StoreError> {
        if let Some(patch) = tidy_patch(me, source, vtep) {
            self.patch(name, &patch).await?;
        }
        tracing::info!(
            node = name,
            ?cidrs,
            ?source,
            "node CIDRs from the Kubernetes API"
        );
        Ok(Step::Done {
            cidrs,
            internal: internal_ips(me),
        })
    }
}

/// Whether the Node carries a claim of ours not yet confirmed.
fn has_claim(me: &Node) -> bool {
    annotated_cidrs(me, POD_CIDRS_CLAIM_ANNOTATION)
        .ok()
        .flatten()
        .is_some()
}

/// Allocating beside a controller-manager that passed this Node over may
/// collide with its later assignments: worth a warning.
fn warn_if_passed_over(name: &str, others: &[Node]) {
    if others
        .iter()
        .any(|n| controller_cidrs(n).is_ok_and(|c| !c.is_empty()))
    {
        tracing::warn!(
            node = name,
            waited = ?CONTROLLER_GRACE,
            "the controller-manager gave other Nodes podCIDRs but none to this one; allocating here, which its later assignments may overlap"
        );
    }
}

enum Step {
    Done {
        cidrs: Vec<IpNetwork>,
        /// The Node's InternalIPs.
        internal: Vec<IpAddr>,
    },
    Wait,
    /// A claim or confirmation written.
    Written,
    /// Our claim is contested: pause, then look again.
    Contested,
}

/// The random delay before planning again, its bound growing with the
/// attempt (100 ms, then 50 ms more each time, at most 1 s): nodes that
/// lost the same race do not look again in lockstep.
pub(super) const REPLAN_JITTER: AttemptJitter = AttemptJitter {
    base: Duration::from_millis(50),
    step: Duration::from_millis(50),
    max: Duration::from_secs(1),
};
