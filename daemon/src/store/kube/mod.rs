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
//!
//! # Parts
//! `node` holds the decisions, as pure functions over Node objects; the
//! rest is IO: `register` (obtaining this node's CIDRs), `watch`, `removal`
//! (is podnet being uninstalled?) and `error` (what an API failure means).

mod error;
mod node;
mod register;
mod removal;
#[cfg(test)]
mod tests;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// The client crates, re-exported: tests build Nodes and watcher events
/// with exactly the types this backend reads.
pub use k8s_openapi;
use k8s_openapi::api::core::v1::Node;
pub use kube;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use podnet_ipam::cidr::ClusterConfig;

pub use self::error::KubeError;
pub use self::node::{
    annotated_cidrs, claim_patch, confirm_patch, controller_cidrs, format_cidr_list, internal_ips,
    node_name, parse_cidr_list, parse_record, plan, plan_spread, record_from_node, routable_cidrs,
    taken_by_others, tidy_patch, CidrSource, Plan, WatchState, POD_CIDRS_ANNOTATION,
    POD_CIDRS_CLAIM_ANNOTATION, VTEP_MAC_ANNOTATION,
};
pub use self::removal::Removal;
use super::{NodeRecord, StoreError};

/// Every API call this backend makes, as RBAC rules (apiGroup, resource,
/// verbs): it lists and watches Nodes and patches its own. A test compares
/// this with the ClusterRole in `deploy/`.
pub const RBAC: &[(&str, &str, &[&str])] = &[
    ("", "nodes", &["list", "watch", "patch"]),
    // Only podnet's own DaemonSet (resourceNames in the manifest): at
    // SIGTERM, is it going away (uninstall) or staying (restart, upgrade)?
    ("apps", "daemonsets", &["get"]),
    // NetworkPolicy (`crate::netpol`): policies, and the namespaces and
    // pods they select, are listed and watched; a pod created before the
    // watch shows it is read once at its ADD.
    ("networking.k8s.io", "networkpolicies", &["list", "watch"]),
    ("", "namespaces", &["list", "watch"]),
    ("", "pods", &["get", "list", "watch"]),
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

pub struct KubeBackend {
    client: kube::Client,
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
            nodes: Api::all(client.clone()),
            client,
            config,
            reach: Default::default(),
        }
    }

    /// The API client, for the other readers of the API (NetworkPolicy).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Every Node with CIDRs, this node's included.
    pub async fn list(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let (nodes, _) = self.list_nodes().await?;
        Ok(nodes.iter().filter_map(record_from_node).collect())
    }

    /// Every Node, page by page (one consistent snapshot: continue tokens
    /// read at the first page's revision), and the list's resourceVersion.
    /// Whether the API answers: one Node's metadata (a `resourceVersion=0`
    /// list would ignore the limit on older API servers).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let one = ListParams::default().limit(1);
        call("probing the API", self.nodes.list_metadata(&one)).await?;
        Ok(())
    }

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

/// Runs one request with [`REQUEST_TIMEOUT`].
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
