//! NetworkPolicy on this node (issue 14): the API's policies, namespaces
//! and pods watched, compiled by the pure engine ([`crate::policy`]) for
//! this node's pods, and kept in the kernel by [`PolicyTable`].
//!
//! # A pod is covered before its ADD returns
//! The plugin sends the pod's namespace and name with its IPAM request.
//! As soon as its addresses are chosen, [`PolicyAgent::admit`] reads the
//! pod's labels (from the watch, or one GET when the watch has not shown
//! the pod yet), lays the pod with its new addresses over the watched
//! snapshot ([`admitted`]), and waits until a sync that includes it has
//! been committed to the kernel. That runs while the allocation is
//! flushed and the plugin configures the interface; the plugin then asks
//! whether the rules are in (`PolicyReady`, answered when they are) and
//! its ADD returns only after. The runtime starts the pod's containers
//! only once ADD has returned, so the first packet any of them sends or
//! receives meets its rules (meanwhile, what reaches the new address
//! finds nothing listening). When that cannot be done (labels
//! unreadable, policies not read yet, the kernel refusing), the ADD fails
//! (CNI code 11: the runtime tries again; the plugin's rollback releases
//! the address): a pod never runs unprotected. A plugin that does not ask
//! `PolicyReady` (an older one, or `podnet-ipam` as an IPAM plugin) gets
//! its IPAM answer only once the rules are in. An ADD without the pod's
//! names (a runtime that does not pass them) is served, with a warning:
//! its rules come when the watch shows its address.
//!
//! # Syncs
//! One task applies every change: watch events, admissions, releases and
//! a periodic full resync (which replaces the table whole, removing
//! whatever crept in). Requests that arrive during a sync are served
//! together by the next one. Each sync assembles the snapshot (objects
//! converted again only when changed; when the watch saw nothing since
//! the last sync and no pod was released, that sync's snapshot with the
//! newly admitted pods laid over it), compiles it incrementally
//! ([`crate::policy::Compiler`]) and commits the difference in one
//! nftables transaction, so no packet sees half a change. Nothing is
//! written before the three watches have listed once: a restarted
//! podnetd leaves the previous table in force (fail closed for isolated
//! pods) until it knows the cluster's policies. Pods admitted just before
//! a restart are then known from the API only (until the kubelet records
//! their addresses, about a second).
//!
//! # hostNetwork pods and the node
//! hostNetwork pods are not policy targets and are never matched by pod
//! or namespace selectors: their packets carry the node's address, which
//! only an `ipBlock` can match. Traffic from the node itself to its pods
//! (kubelet's probes) always passes; see [`crate::kernel::policy`].

mod admitted;
mod cache;
mod error;
mod memo;
mod metrics;
mod pending;
mod report;
mod sync;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::proto::{ErrorKind, PodName, Request, Response};
use tokio::sync::{watch, Notify};

pub use error::PolicyError;
pub use metrics::PolicyMetrics;
pub use report::{DirectionState, PodState};

use crate::kernel::policy::PolicyTable;
use crate::metrics::Metrics;
use crate::nodenet::NodeNet;
use crate::policy::{Compiler, Snapshot};
use admitted::Admitted;
use cache::Cache;

/// How long admission waits, all told, for the first lists, the pod's
/// labels and its rules in the kernel (the plugin gives up on podnetd
/// after 15 s).
pub const ADMIT_PATIENCE: Duration = Duration::from_secs(10);

/// The answer to a policy question on a node that enforces none.
pub const NOT_ENFORCED: &str =
    "NetworkPolicy is not enforced on this node (it needs --store kubernetes and --network-policy true)";

/// IPAM, the truth about which admitted pods remain.
pub trait Allocations: Send + Sync {
    /// Whether an attachment still holds addresses.
    fn holds(&self, key: &AttachmentKey) -> bool;
    /// Releases so far: while it stays the same, every attachment held
    /// is still held.
    fn releases(&self) -> u64;
}

pub struct PolicyAgent {
    node: String,
    nodenet: Arc<NodeNet>,
    metrics: Arc<Metrics>,
    cache: Cache,
    allocations: Box<dyn Allocations>,
    /// [`Allocations::releases`] when the admitted pods were last checked.
    checked_at: AtomicU64,
    admitted: Mutex<Admitted>,
    pending: Mutex<pending::Pending>,
    kernel: Mutex<Kernel>,
    /// Bumped by every request for a sync; a sync serves every request
    /// made before it read this.
    requested: AtomicU64,
    synced: watch::Sender<Synced>,
    wake: Arc<Notify>,
}

/// The kernel side: the table, and what the metrics need from the last
/// sync.
struct Kernel {
    table: PolicyTable,
    /// Keeps what it worked out between syncs: a sync costs what changed.
    compiler: Compiler,
    /// The compiler's last changes were not applied (a failed sync): the
    /// next apply compares the whole ruleset.
    unapplied: bool,
    /// The snapshot the table was compiled from: what `explain` and the
    /// pods' state are answered from, so they say what is enforced (after
    /// a failed sync, what it tried to write, until the next one).
    snapshot: Arc<Snapshot>,
    last_counts: metrics::LastCounts,
    /// What the conversion left out at the last sync, logged when it
    /// changes (not at every sync).
    left_out: Vec<String>,
    /// The API objects' conversions, kept between syncs.
    memos: cache::Memos,
    /// What `snapshot` was made of, when a sync committed it.
    overlaid: Option<Overlaid>,
}

/// What a snapshot was made of: the watch after so many events, and the
/// admitted pods after so many removals (and any additions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Overlaid {
    events: u64,
    removals: u64,
}

impl Kernel {
    fn new(node: &str) -> Self {
        Self {
            table: PolicyTable::new(),
            compiler: Compiler::new(node),
            unapplied: false,
            snapshot: Arc::default(),
            last_counts: Default::default(),
            left_out: Vec::new(),
            memos: Default::default(),
            overlaid: None,
        }
    }
}

/// The last sync: the requests it served, and how it ended; and the
/// requests the last successful sync served (a request served by a
/// success is not failed by a later sync's error).
#[derive(Clone, Debug, Default)]
struct Synced {
    generation: u64,
    ok_generation: u64,
    error: Option<Arc<str>>,
}

impl PolicyAgent {
    /// Starts the watches and the sync task.
    pub fn start(
        client: kube::Client,
        node: String,
        nodenet: Arc<NodeNet>,
        metrics: Arc<Metrics>,
        allocations: Box<dyn Allocations>,
        resync: Duration,
    ) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        let agent = Arc::new(Self {
            nodenet,
            metrics,
            cache: Cache::start(client, wake.clone()),
            allocations,
            checked_at: AtomicU64::new(u64::MAX),
            admitted: Mutex::default(),
            pending: Mutex::default(),
            kernel: Mutex::new(Kernel::new(&node)),
            node,
            requested: AtomicU64::new(0),
            synced: watch::Sender::new(Synced::default()),
            wake,
        });
        tokio::spawn(agent.clone().run(resync));
        agent
    }

    /// Places `pod`, which `key` just gave `ips`, under policy, and
    /// returns once its rules are in the kernel.
    pub async fn admit(
        &self,
        pod: &PodName,
        key: &AttachmentKey,
        ips: Vec<IpAddr>,
    ) -> Result<(), PolicyError> {
        let started = Instant::now();
        tokio::time::timeout(ADMIT_PATIENCE, self.cache.ready())
            .await
            .map_err(|_| PolicyError::NotSynced {
                waited: ADMIT_PATIENCE,
            })?;
        let left = ADMIT_PATIENCE.saturating_sub(started.elapsed());
        let mut model = tokio::time::timeout(left, self.cache.pod(pod))
            .await
            .map_err(|_| PolicyError::ReadPodTimeout {
                pod: pod.to_string(),
                after: left,
            })??;
        model.ips = ips;
        model.node = self.node.clone();
        lock(&self.admitted).insert(key.clone(), model);
        let left = ADMIT_PATIENCE.saturating_sub(started.elapsed());
        self.synced_within(left).await
    }

    /// Forgets an attachment released by DEL or GC; the next sync drops
    /// its rules.
    pub fn forget(&self, key: &AttachmentKey) {
        if lock(&self.admitted).remove(key) {
            self.wake.notify_one();
        }
    }

    /// Asks for a sync and waits for one that started after the ask.
    async fn synced_within(&self, patience: Duration) -> Result<(), PolicyError> {
        let target = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.synced.subscribe();
        self.wake.notify_one();
        let done = tokio::time::timeout(patience, rx.wait_for(|s| s.generation >= target)).await;
        match done {
            Ok(Ok(s)) if s.ok_generation >= target => Ok(()),
            Ok(Ok(s)) => Err(PolicyError::Kernel(
                s.error.as_deref().unwrap_or("the sync failed").to_owned(),
            )),
            // The sender lives as long as the agent.
            Ok(Err(_)) => Err(PolicyError::Retired),
            Err(_) => Err(PolicyError::SyncTimeout { waited: patience }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error and every cause under it, for a message that leaves podnetd
/// (the plugin's own `source_chain`, so both read alike).
pub fn describe(e: &dyn std::error::Error) -> String {
    match podnet_cni::error::source_chain(e) {
        chain if chain.is_empty() => e.to_string(),
        chain => format!("{e}: {chain}"),
    }
}

/// The answer to a policy question of the admin view.
pub fn answer(agent: &PolicyAgent, req: &Request) -> Response {
    let report = match req {
        Request::PolicyExplain {
            from,
            to,
            port,
            protocol,
        } => agent
            .explain(from, to, *port, protocol)
            .and_then(|e| Ok(serde_json::to_value(e)?)),
        Request::PolicyState => serde_json::to_value(agent.pod_states()).map_err(PolicyError::from),
        _ => Err(PolicyError::NotAQuestion),
    };
    match report {
        Ok(report) => Response::Policy { report },
        Err(e) => Response::Error {
            kind: match e {
                PolicyError::Explain(_) | PolicyError::Protocol(_) | PolicyError::NotAQuestion => {
                    ErrorKind::InvalidRequest
                }
                _ => ErrorKind::Internal,
            },
            message: describe(&e),
        },
    }
}
