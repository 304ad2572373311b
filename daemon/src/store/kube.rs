//! The `kubernetes` backend: the Kubernetes API is the cluster store, as on
//! kind. Nodes are the records; nothing else is created.
//!
//! # A node's CIDRs
//! - `spec.podCIDRs` when the controller-manager assigned them
//!   (`--allocate-node-cidrs`, kind's default): adopted exactly.
//! - Otherwise podnetd allocates from the cluster range and records the
//!   choice on its own Node, in two steps, both JSON merge patches that
//!   carry the Node's `metadata.resourceVersion` (the API server then
//!   refuses a patch of a Node changed meanwhile with 409 Conflict; podnetd
//!   reads again and plans again):
//!   1. claim: [`POD_CIDRS_CLAIM_ANNOTATION`], chosen with
//!      [`choose_node_cidrs`](podnet_ipam::cidr::choose_node_cidrs) around
//!      every other Node's podCIDRs (of any size), CIDRs and claims;
//!   2. confirm: a fresh list shows no other node claiming or holding any
//!      of it -> [`POD_CIDRS_ANNOTATION`], the claim removed; contested ->
//!      choose again.
//!
//!   The resourceVersion only guards this node's own Node; two nodes that
//!   choose the same free block at once patch different objects and would
//!   both succeed. The claim/confirm pair is what keeps them apart: each
//!   writes its claim before the read that lets it confirm, and lists are
//!   linearizable reads (a list without `resourceVersion` is a quorum read
//!   of etcd), so at least one of the two sees the other's claim and
//!   yields. A node whose claim is contested pauses a random moment and
//!   looks again before moving (the first to look moves, a later one may
//!   then find its claim uncontested), and moves to a random one of the
//!   lowest free blocks ([`plan_spread`]), so a herd of nodes booting at
//!   once scatters instead of meeting again on the next block. Contention
//!   is bounded ([`MAX_ATTEMPTS`], then [`StoreError::Contended`]); an
//!   unavailable API (no answer, 5xx, 429) is retried for
//!   [`REGISTER_PATIENCE`]; any other 4xx (403: RBAC) is returned at once.
//! - A Node without podCIDRs in a cluster whose other Nodes have them
//!   waits up to [`CONTROLLER_GRACE`] for the controller-manager (which
//!   never reads our annotations: allocating beside it could collide with
//!   its next assignment), then allocates anyway, with a warning.
//!
//! Peers learn a node's underlay addresses from its `status.addresses`
//! `InternalIP`s and its VXLAN MAC from [`VTEP_MAC_ANNOTATION`].
//!
//! # Watch
//! kube-runtime's watcher: a list, then a watch from the list's
//! resourceVersion, re-watching from the last one seen on errors and
//! relisting on a desync (410 Gone); each (re)list becomes a `Resync`.
//! Errors are logged and retried with a short backoff ([`WATCH_RETRY_MIN`]
//! growing to [`WATCH_RETRY_MAX`], jittered), and a 410 relists at once,
//! so routes catch up within about a second of the API's return; nothing
//! is reported while the API is unreachable.

mod node;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ipnetwork::IpNetwork;
/// The client crates, re-exported: tests build Nodes and watcher events
/// with exactly the types this backend reads.
pub use k8s_openapi;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
pub use kube;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use podnet_ipam::cidr::ClusterConfig;
use tokio::sync::mpsc;

pub use self::node::{
    annotated_cidrs, claim_patch, confirm_patch, controller_cidrs, format_cidr_list, internal_ips,
    node_name, parse_cidr_list, parse_record, plan, plan_spread, record_from_node, routable_cidrs,
    taken_by_others, tidy_patch, CidrSource, Plan, WatchState, POD_CIDRS_ANNOTATION,
    POD_CIDRS_CLAIM_ANNOTATION, VTEP_MAC_ANNOTATION,
};
use super::{NodeRecord, StoreError, StoreEvent};

/// Every API call this backend makes, as RBAC rules (apiGroup, resource,
/// verbs): it lists and watches Nodes and patches its own. A test compares
/// this with the ClusterRole in `deploy/`.
pub const RBAC: &[(&str, &str, &[&str])] = &[
    ("", "nodes", &["list", "watch", "patch"]),
    // Only podnet's own DaemonSet (resourceNames in the manifest): at
    // SIGTERM, is it going away (uninstall) or staying (restart, upgrade)?
    ("apps", "daemonsets", &["get"]),
];

/// The field manager named in podnetd's patches (`managedFields`).
pub const FIELD_MANAGER: &str = "podnetd";

/// Claims and confirmations written, or lost to a 409, before `register`
/// gives up with [`StoreError::Contended`]. A normal registration needs 2.
pub const MAX_ATTEMPTS: u32 = 32;

/// How long a Node without podCIDRs waits for the controller-manager when
/// other Nodes have them (it assigns within a second of a Node's creation).
pub const CONTROLLER_GRACE: Duration = Duration::from_secs(30);

/// How long `register` keeps retrying an API that is unreachable or
/// answers 5xx/429 (the API server may be starting with the node).
pub const REGISTER_PATIENCE: Duration = Duration::from_secs(120);

/// Deadline of each list or patch: a dead connection is an error, not a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Nodes per list page, as client-go's pager.
const PAGE_SIZE: u32 = 500;

/// Retries of an interrupted Node watch: from 100 ms, doubling, to at most
/// 800 ms (each jittered down to half). client-go's reflector backs off to
/// 30 s, which once left peers' routes ~27 s stale after an API outage;
/// routes are podnet's job, so a node tries again at least every 0.8 s
/// while the API is down (one refused connection each: cheap for the API
/// server) and has its routes right within about a second of its return.
const WATCH_RETRY_MIN: Duration = Duration::from_millis(100);
const WATCH_RETRY_MAX: Duration = Duration::from_millis(800);

/// How the backend reaches the API and what it allocates from.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// A kubeconfig file; `None`: in-cluster (the pod's service account,
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub kubeconfig: Option<PathBuf>,
    pub config: ClusterConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading the kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: Box<kube::config::KubeconfigError>,
    },
    #[error("in-cluster Kubernetes config (no --kubeconfig given; is podnetd in a pod with a service account?): {0}")]
    InCluster(#[source] Box<kube::config::InClusterError>),
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] Box<kube::Error>),
    #[error("Kubernetes API, {what}: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("Kubernetes API, {what}: no answer within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("there is no Node {0:?} (--node-name must be the Node's name, e.g. spec.nodeName from the downward API)")]
    NodeNotFound(String),
}

impl KubeError {
    /// 409 Conflict: the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        self.api_code() == Some(409)
    }

    /// The HTTP status of an error the API server answered with.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Self::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(response) => Some(response.code),
                _ => None,
            },
            _ => None,
        }
    }

    /// Worth retrying: no answer, a 5xx, or 429. Other 4xx (403: RBAC,
    /// 422: invalid) will not change by retrying.
    pub fn is_transient(&self) -> bool {
        match (self, self.api_code()) {
            (Self::Timeout { .. }, _) => true,
            (Self::Api { .. }, Some(code)) => code >= 500 || code == 429,
            // No answer: connection refused or reset, TLS, a bad body.
            (Self::Api { .. }, None) => true,
            _ => false,
        }
    }
}

pub struct KubeBackend {
    nodes: Api<Node>,
    config: ClusterConfig,
    pub(crate) reach: super::StoreReach,
}

impl KubeBackend {
    /// Builds the client from `--kubeconfig` or the in-cluster config.
    /// Nothing is sent yet: an unreachable API is reported by `register`.
    pub async fn connect(opts: KubeOptions) -> Result<Self, StoreError> {
        let client_config = match &opts.kubeconfig {
            Some(path) => {
                let wrap = |source| KubeError::Kubeconfig {
                    path: path.clone(),
                    source: Box::new(source),
                };
                let file = Kubeconfig::read_from(path).map_err(wrap)?;
                kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(wrap)?
            }
            None => kube::Config::incluster().map_err(|e| KubeError::InCluster(Box::new(e)))?,
        };
        let client =
            kube::Client::try_from(client_config).map_err(|e| KubeError::Client(Box::new(e)))?;
        Ok(Self::with_client(client, opts.config))
    }

    /// A backend on an existing client.
    pub fn with_client(client: kube::Client, config: ClusterConfig) -> Self {
        Self {
            nodes: Api::all(client),
            config,
            reach: Default::default(),
        }
    }

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
                    Some(jitter(attempts, &name))
                }
                Err(StoreError::Kube(err)) if err.is_conflict() => {
                    attempts += 1;
                    tracing::debug!(node = %name, attempts, "the Node changed since it was read; planning again");
                    Some(jitter(attempts, &name))
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
        let random = RandomState::new().hash_one((name, Instant::now()));
        match plan_spread(&me, &others, &self.config, wait, random)? {
            Plan::Adopt { cidrs, source } => {
                if let Some(patch) = tidy_patch(&me, source, vtep) {
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
                    internal: internal_ips(&me),
                })
            }
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
                if !wait
                    && others
                        .iter()
                        .any(|n| controller_cidrs(n).is_ok_and(|c| !c.is_empty()))
                {
                    tracing::warn!(
                        node = name,
                        waited = ?CONTROLLER_GRACE,
                        "the controller-manager gave other Nodes podCIDRs but none to this one; allocating here, which its later assignments may overlap"
                    );
                }
                // plan() replaces our own claim only when it is contested.
                let contested = annotated_cidrs(&me, POD_CIDRS_CLAIM_ANNOTATION)
                    .ok()
                    .flatten()
                    .is_some();
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

    /// Whether podnet is being removed from the cluster, asked of its
    /// DaemonSet `namespace/name` (see [`Removal`]).
    pub async fn removal(&self, daemonset: &str) -> Removal {
        let Some((namespace, name)) = daemonset.split_once('/') else {
            return Removal::Unknown(format!("{daemonset:?} is not NAMESPACE/NAME"));
        };
        let api: Api<DaemonSet> = Api::namespaced(self.nodes.clone().into_client(), namespace);
        let answer = call("reading podnet's DaemonSet", api.get_opt(name))
            .await
            .map(|ds| ds.map(|ds| ds.metadata.deletion_timestamp.is_some()));
        Removal::from_answer(answer.as_ref().copied())
    }

    /// Every Node with CIDRs, this node's included.
    pub async fn list(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let (nodes, _) = self.list_nodes().await?;
        Ok(nodes.iter().filter_map(record_from_node).collect())
    }

    /// Sends a `Resync` of every Node with CIDRs, then every change, until
    /// `tx` is closed; a relist (after a desync) sends a fresh `Resync`.
    /// While the API is unreachable it logs, backs off and sends nothing.
    pub async fn watch(&self, tx: mpsc::Sender<StoreEvent>) {
        loop {
            let mut state = WatchState::default();
            let stream = watcher(self.nodes.clone(), watcher::Config::default());
            let mut stream = std::pin::pin!(stream);
            let mut retry = Backoff::new(WATCH_RETRY_MIN, WATCH_RETRY_MAX);
            loop {
                let item = tokio::select! {
                    () = tx.closed() => return,
                    item = stream.next() => item,
                };
                match item {
                    Some(Ok(event)) => {
                        retry.reset();
                        if let Some(event) = state.apply(event) {
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                    // The API is back but our resourceVersion is older than
                    // its watch cache (normal after an outage): the watcher
                    // relists at the next poll, which must not wait.
                    Some(Err(watcher::Error::WatchError(resp))) if resp.code == 410 => {
                        tracing::info!("Node watch expired (410 Gone); listing again");
                    }
                    Some(Err(err)) => {
                        let delay = jittered(retry.next_delay());
                        tracing::warn!(error = %err, retry_in = ?delay, "Node watch interrupted");
                        self.reach.lost(&err);
                        tokio::select! {
                            () = tx.closed() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    // The watcher never ends by itself; start over if it does.
                    None => break,
                }
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Whether the API answers: one Node's metadata (a `resourceVersion=0`
    /// list would ignore the limit on older API servers).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let one = ListParams::default().limit(1);
        call("probing the API", self.nodes.list_metadata(&one)).await?;
        Ok(())
    }

    /// Every Node, page by page (one consistent snapshot: continue tokens
    /// read at the first page's revision), and the list's resourceVersion.
    async fn list_nodes(&self) -> Result<(Vec<Node>, Option<String>), KubeError> {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        let mut nodes = Vec::new();
        loop {
            let page = call("listing Nodes", self.nodes.list(&params)).await?;
            nodes.extend(page.items);
            match page.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok((nodes, page.metadata.resource_version)),
            }
        }
    }

    async fn patch(&self, name: &str, patch: &serde_json::Value) -> Result<Node, KubeError> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        call(
            "patching this Node's annotations",
            self.nodes.patch(name, &params, &Patch::Merge(patch)),
        )
        .await
    }
}

/// What podnetd's DaemonSet says at SIGTERM.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// podnet is being uninstalled: the DaemonSet is gone or being deleted,
    /// or the API refuses podnetd's own credentials (its ServiceAccount or
    /// RBAC, deleted by the same `kubectl delete -f`).
    Requested(String),
    /// The DaemonSet stays: a restart or a rolling update.
    NotRequested,
    /// The API could not be asked: keep everything (the safe guess).
    Unknown(String),
}

impl Removal {
    /// The decision from the answer to `GET` of the DaemonSet.
    pub fn from_answer(answer: Result<Option<bool>, &KubeError>) -> Self {
        match answer {
            Ok(None) => Self::Requested("the DaemonSet is gone".into()),
            Ok(Some(true)) => Self::Requested("the DaemonSet is being deleted".into()),
            Ok(Some(false)) => Self::NotRequested,
            Err(e) => match e.api_code() {
                Some(code @ (401 | 403)) => Self::Requested(format!(
                    "the API refuses podnetd's credentials ({code}): its ServiceAccount or RBAC was removed"
                )),
                _ => Self::Unknown(e.to_string()),
            },
        }
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

async fn call<T>(
    what: &'static str,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, KubeError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(source)) => Err(KubeError::Api {
            what,
            source: Box::new(source),
        }),
        Err(_) => Err(KubeError::Timeout {
            what,
            after: REQUEST_TIMEOUT,
        }),
    }
}

/// A random delay before planning again, its bound growing with the
/// attempt (100 ms, then 50 ms more each time, at most 1 s): nodes that
/// lost the same race do not look again in lockstep.
fn jitter(attempt: u32, node: &str) -> Duration {
    let cap_ms = (50 + u64::from(attempt) * 50).min(1000);
    let random = RandomState::new().hash_one((node, attempt, Instant::now()));
    Duration::from_millis(random % (cap_ms + 1))
}

/// Exponential backoff between retries of an unavailable API.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// After a success: the next failure starts from the shortest delay.
    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// `delay` scaled to a random point between its half and itself, so nodes
/// that lost the API together do not come back in lockstep.
fn jittered(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let half = u64::try_from(delay.as_nanos() / 2).unwrap_or(u64::MAX);
    delay / 2 + Duration::from_nanos(random % half.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> KubeError {
        KubeError::Api {
            what: "test",
            source: Box::new(kube::Error::Api(kube::core::ErrorResponse {
                status: "Failure".into(),
                message: String::new(),
                reason: String::new(),
                code,
            })),
        }
    }

    #[test]
    fn classifies_api_errors() {
        assert!(api_error(409).is_conflict());
        assert!(!api_error(409).is_transient());
        assert!(api_error(503).is_transient());
        assert!(api_error(429).is_transient());
        assert!(!api_error(403).is_transient());
        assert!(!KubeError::NodeNotFound("n".into()).is_transient());
    }

    #[test]
    fn watch_retries_stay_short_and_start_over_after_a_success() {
        let mut b = Backoff::new(WATCH_RETRY_MIN, WATCH_RETRY_MAX);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[3], Duration::from_millis(800));
        assert_eq!(delays[7], WATCH_RETRY_MAX);
        b.reset();
        assert_eq!(b.next_delay(), WATCH_RETRY_MIN);
        for d in delays {
            let j = jittered(d);
            assert!(j >= d / 2 && j <= d, "{j:?} outside [{:?}, {d:?}]", d / 2);
        }
    }

    #[test]
    fn uninstall_only_when_the_daemonset_goes_or_our_credentials_do() {
        assert!(matches!(
            Removal::from_answer(Ok(None)),
            Removal::Requested(_)
        ));
        assert!(matches!(
            Removal::from_answer(Ok(Some(true))),
            Removal::Requested(_)
        ));
        assert_eq!(Removal::from_answer(Ok(Some(false))), Removal::NotRequested);
        for code in [401, 403] {
            assert!(matches!(
                Removal::from_answer(Err(&api_error(code))),
                Removal::Requested(_)
            ));
        }
        for code in [500, 503, 429] {
            assert!(matches!(
                Removal::from_answer(Err(&api_error(code))),
                Removal::Unknown(_)
            ));
        }
        let timeout = KubeError::Timeout {
            what: "t",
            after: Duration::from_secs(1),
        };
        assert!(matches!(
            Removal::from_answer(Err(&timeout)),
            Removal::Unknown(_)
        ));
    }

    #[test]
    fn jitter_is_bounded() {
        for attempt in 1..40 {
            assert!(jitter(attempt, "n") <= Duration::from_secs(1));
        }
    }
}
