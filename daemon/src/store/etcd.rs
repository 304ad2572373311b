//! The etcd backend: node CIDR leases in a real etcd, for many hosts
//! without Kubernetes (and the multi-node tests).
//!
//! # Key layout
//! Under a prefix (default `/podnet`):
//! - `{prefix}/nodes/{node}`: the node's [`NodeRecord`] as JSON;
//! - `{prefix}/cidrs/{cidr}` (`/` written as `_`, e.g. `10.244.3.0_24`):
//!   the name of the node holding that CIDR.
//!
//! Both keys of a node are attached to one etcd lease of this process, kept
//! alive every TTL/3 (TTL 15 s by default, as flannel's and Calico's node
//! leases are measured in seconds, not minutes: a node that died leaves every
//! peer's routes within one TTL). When the process ends the keep-alive stops
//! and etcd deletes both keys after the TTL: peers see the node removed. A
//! restarting podnetd comes back within the TTL, finds its record and
//! re-attaches the same CIDRs to its new lease, so its pods keep their
//! addresses and peers never see it leave. Dropping the backend therefore
//! does *not* revoke the lease; [`EtcdBackend::deregister`] does, for a node
//! leaving the cluster for good.
//!
//! # Claiming a CIDR
//! One transaction: "each chosen CIDR key is absent (create revision 0) or
//! already names this node" then "put the node record and every CIDR key
//! with the lease". Two nodes racing for the same block cannot both win;
//! the loser reads the taken CIDRs again and chooses again (with
//! [`choose_node_cidrs`], the same rule every store uses), with a small
//! random delay that spreads out a herd of nodes booting at once, at most
//! [`MAX_CLAIM_ATTEMPTS`] times. The exact-key compare relies on every node
//! using the same node prefix (the cluster config); CIDRs of other sizes
//! already in the store are still avoided when choosing.
//!
//! # Failures
//! Every request has a deadline, so an unreachable etcd is an error, never
//! a hang. A failed list is an error, never an empty list; the watch then
//! waits and retries (100 ms doubling to 5 s) and only ever reports what
//! etcd itself reports: a node is `Removed` when its key is deleted
//! (including by lease expiry), never because etcd is unreachable. etcd
//! extends every lease when it restarts (a new leader renews them all), so
//! an etcd that was down costs no node its lease. If the lease does expire
//! (this node could not reach a running etcd for longer than the TTL), the
//! keep-alive task registers the same record again under a new lease, with
//! the same CIDRs if they are still free.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

/// The client crate, re-exported: [`StoreError::Etcd`] carries its error
/// type, and tests use its client to reach the same etcd.
pub use etcd_client;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions,
};
use ipnetwork::IpNetwork;
use podnet_ipam::cidr::{choose_node_cidrs, ClusterConfig, NodeLease};
use podnet_ipam::error::IpamError;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use super::{NodeRecord, StoreError, StoreEvent};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/podnet";

/// The default lease TTL: a dead node leaves its peers' routes within 15 s;
/// podnetd has 15 s to restart without its peers noticing.
pub const DEFAULT_LEASE_TTL_SECS: i64 = 15;

/// How many times a node re-chooses after losing a race for a CIDR before
/// giving up with [`StoreError::Contended`]. Every round has a winner, so
/// this many nodes booting at the same instant all get a CIDR.
pub const MAX_CLAIM_ATTEMPTS: u32 = 64;

/// Deadline of every unary request: etcd answers a healthy request in
/// milliseconds, and an unreachable etcd must be an error, not a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys per range request when listing, so a large cluster never exceeds
/// the gRPC message limit (4 MiB).
const PAGE_SIZE: i64 = 1000;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How the backend reaches etcd and what it claims.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `http://127.0.0.1:2379` (a bare `host:port` means http).
    pub endpoints: Vec<String>,
    /// Key prefix shared by the cluster's nodes; default [`DEFAULT_PREFIX`].
    pub prefix: String,
    /// Lease TTL in seconds; default [`DEFAULT_LEASE_TTL_SECS`]. etcd may
    /// grant a longer one (its minimum is 1.5 election timeouts).
    pub lease_ttl_secs: i64,
    pub config: ClusterConfig,
}

impl EtcdOptions {
    /// Options with the default prefix and TTL.
    pub fn new(endpoints: Vec<String>, config: ClusterConfig) -> Self {
        Self {
            endpoints,
            prefix: DEFAULT_PREFIX.to_string(),
            lease_ttl_secs: DEFAULT_LEASE_TTL_SECS,
            config,
        }
    }
}

pub struct EtcdBackend {
    inner: Arc<Inner>,
    /// The keep-alive task of the current lease; aborted on drop (the lease
    /// then expires after its TTL, see the module docs).
    keeper: std::sync::Mutex<Option<JoinHandle<()>>>,
    pub(crate) reach: super::StoreReach,
}

struct Inner {
    client: Client,
    /// For error messages.
    endpoints: String,
    /// Without a trailing `/`.
    prefix: String,
    ttl: i64,
    config: ClusterConfig,
    /// This node's registration; the lock also serialises `register` with
    /// the keep-alive task's re-registration after a lost lease.
    current: Mutex<Option<Registration>>,
}

#[derive(Clone, Debug)]
struct Registration {
    record: NodeRecord,
    lease: i64,
    ttl: i64,
}

impl Drop for EtcdBackend {
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper_slot().take() {
            keeper.abort();
        }
    }
}

impl EtcdBackend {
    /// Builds the client. Connections are made lazily, so an etcd that is
    /// not up yet is reported by the first request, not here.
    pub async fn connect(opts: EtcdOptions) -> Result<Self, StoreError> {
        let endpoints = opts.endpoints.join(",");
        let invalid = |reason: String| StoreError::Etcd {
            endpoints: endpoints.clone(),
            source: etcd_client::Error::InvalidArgs(reason),
        };
        if opts.lease_ttl_secs < 1 {
            return Err(invalid(format!(
                "lease TTL must be at least 1 s, not {}",
                opts.lease_ttl_secs
            )));
        }
        // HTTP/2 pings find a dead connection (a frozen or partitioned etcd)
        // that TCP alone would keep open for minutes; etcd refuses pings
        // more often than every 5 s. require_leader makes a member cut off
        // from its cluster fail requests and cancel watches instead of
        // serving stale data.
        let connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_require_leader(true);
        let client = Client::connect(&opts.endpoints, Some(connect))
            .await
            .map_err(|source| StoreError::Etcd {
                endpoints: endpoints.clone(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                endpoints,
                prefix: opts.prefix.trim_end_matches('/').to_string(),
                ttl: opts.lease_ttl_secs,
                config: opts.config,
                current: Mutex::new(None),
            }),
            keeper: std::sync::Mutex::new(None),
            reach: Default::default(),
        })
    }

    /// Claims this node's CIDRs under a new lease and publishes `record`
    /// with them: the CIDRs it already holds when its record is still in
    /// etcd (a restart within the TTL), otherwise new ones. Starts the
    /// keep-alive task. Calling it again replaces the record (and lease).
    pub async fn register(&self, record: NodeRecord) -> Result<NodeRecord, StoreError> {
        self.inner.check_node_name(&record.node)?;
        let mut current = self.inner.current.lock().await;
        let (lease, ttl) = self.inner.grant().await?;
        let record = match self.inner.claim(record, lease, &[]).await {
            Ok(record) => record,
            Err(err) => {
                self.inner.revoke_quietly(lease).await;
                return Err(err);
            }
        };
        let previous = current.replace(Registration {
            record: record.clone(),
            lease,
            ttl,
        });
        let keeper = tokio::spawn(keep_alive(Arc::clone(&self.inner), lease, ttl));
        if let Some(old) = self.keeper_slot().replace(keeper) {
            old.abort();
        }
        drop(current);
        if let Some(previous) = previous {
            // Its keys now live on the new lease; stale ones go with it.
            self.inner.revoke_quietly(previous.lease).await;
        }
        tracing::info!(
            node = %record.node,
            cidrs = ?record.cidrs,
            lease = format_args!("{lease:x}"),
            ttl,
            "registered in etcd"
        );
        Ok(record)
    }

    /// Every node's record, this node's included. An unreachable etcd is an
    /// error; an unreadable record is skipped with a warning.
    pub async fn list(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.inner.list_at().await?.0)
    }

    /// Sends a `Resync` of every node, then every change, until `tx` is
    /// closed. After any interruption it backs off (100 ms doubling to 5 s),
    /// lists again and sends a fresh `Resync`; while etcd is unreachable it
    /// sends nothing at all.
    pub async fn watch(&self, tx: mpsc::Sender<StoreEvent>) {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            let interrupted = tokio::select! {
                () = tx.closed() => return,
                interrupted = self.inner.watch_once(&tx, &mut backoff) => interrupted,
            };
            let Some(reason) = interrupted else { return };
            self.reach.lost(&reason);
            let delay = backoff.next_delay();
            tracing::warn!(
                endpoints = %self.inner.endpoints,
                %reason,
                retry_in = ?delay,
                "etcd watch interrupted; will list again and resync"
            );
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// This node's record as currently published (its CIDRs can change only
    /// if its lease was lost and another node took them meanwhile).
    pub async fn current(&self) -> Option<NodeRecord> {
        self.inner
            .current
            .lock()
            .await
            .as_ref()
            .map(|r| r.record.clone())
    }

    /// Leaves the cluster for good: stops the keep-alive and revokes the
    /// lease, which deletes this node's record and CIDRs at once (peers see
    /// it removed now rather than after the TTL).
    pub async fn deregister(&self) -> Result<(), StoreError> {
        let mut current = self.inner.current.lock().await;
        if let Some(keeper) = self.keeper_slot().take() {
            keeper.abort();
        }
        if let Some(registration) = current.take() {
            let mut client = self.inner.client.clone();
            self.inner
                .call(client.lease_revoke(registration.lease))
                .await?;
        }
        Ok(())
    }

    fn keeper_slot(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        // Only ever held for a swap, never across a panic point.
        self.keeper.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why one keep-alive stream ended.
enum LeaseEnd {
    /// etcd no longer knows the lease: its keys are gone.
    Lost,
    /// The connection failed; the lease may well be alive.
    Broken(etcd_client::Error),
}

/// Keeps `lease` alive for as long as the backend lives; registers again
/// under a new lease when etcd reports it lost. Never returns on error.
async fn keep_alive(inner: Arc<Inner>, mut lease: i64, mut ttl: i64) {
    let mut backoff = Backoff::new(BACKOFF_MIN, refresh_interval(ttl));
    loop {
        match inner.keep_lease(lease, ttl, &mut backoff).await {
            LeaseEnd::Broken(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    endpoints = %inner.endpoints,
                    lease = format_args!("{lease:x}"),
                    error = %err,
                    retry_in = ?delay,
                    "etcd lease keep-alive interrupted; reconnecting"
                );
                tokio::time::sleep(delay).await;
            }
            LeaseEnd::Lost => {
                tracing::warn!(
                    endpoints = %inner.endpoints,
                    lease = format_args!("{lease:x}"),
                    "etcd lease lost (expired while etcd was unreachable); registering again"
                );
                loop {
                    match inner.reregister(lease).await {
                        Ok(Some(registration)) => {
                            (lease, ttl) = (registration.lease, registration.ttl);
                            backoff = Backoff::new(BACKOFF_MIN, refresh_interval(ttl));
                            break;
                        }
                        // Replaced or deregistered meanwhile: not ours to keep.
                        Ok(None) => return,
                        Err(err) => {
                            let delay = backoff.next_delay();
                            tracing::warn!(
                                endpoints = %inner.endpoints,
                                error = %err,
                                retry_in = ?delay,
                                "registering again after a lost lease failed; retrying"
                            );
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
        }
    }
}

/// A third of the TTL, as etcd's own client does: two refreshes may be lost
/// before the lease is in danger.
fn refresh_interval(ttl: i64) -> Duration {
    let millis = u64::try_from(ttl.saturating_mul(1000) / 3).unwrap_or(0);
    Duration::from_millis(millis.max(100))
}

impl Inner {
    fn nodes_prefix(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    fn cidrs_prefix(&self) -> String {
        format!("{}/cidrs/", self.prefix)
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}/nodes/{node}", self.prefix)
    }

    fn cidr_key(&self, cidr: &IpNetwork) -> String {
        format!(
            "{}/cidrs/{}",
            self.prefix,
            cidr.to_string().replace('/', "_")
        )
    }

    fn error(&self, source: etcd_client::Error) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            source,
        }
    }

    /// A node name becomes one key segment.
    fn check_node_name(&self, node: &str) -> Result<(), StoreError> {
        if node.is_empty() || node.contains('/') {
            return Err(self.error(etcd_client::Error::InvalidArgs(format!(
                "node name {node:?} must be non-empty and contain no '/'"
            ))));
        }
        Ok(())
    }

    /// Runs one request with [`REQUEST_TIMEOUT`].
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(result) => result.map_err(|source| self.error(source)),
            Err(_) => Err(self.error(timed_out(REQUEST_TIMEOUT))),
        }
    }

    /// Every key under `prefix`, page by page at one revision; returns the
    /// revision read.
    async fn get_prefix(
        &self,
        prefix: &str,
        at_revision: Option<i64>,
    ) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let end = prefix_end(prefix.as_bytes());
        let mut client = self.client.clone();
        let mut revision = at_revision;
        let mut from = prefix.as_bytes().to_vec();
        let mut kvs = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_SIZE);
            if let Some(revision) = revision {
                options = options.with_revision(revision);
            }
            let mut response = self.call(client.get(from.clone(), Some(options))).await?;
            let read_at = revision
                .or_else(|| response.header().map(|h| h.revision()))
                .unwrap_or(0);
            revision = Some(read_at);
            let more = response.more();
            let page = response.take_kvs();
            if let Some(last) = page.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            let empty = page.is_empty();
            kvs.extend(page);
            if !more || empty {
                return Ok((kvs, read_at));
            }
        }
    }

    /// Every readable node record and the revision they were read at.
    async fn list_at(&self) -> Result<(Vec<NodeRecord>, i64), StoreError> {
        let prefix = self.nodes_prefix();
        let (kvs, revision) = self.get_prefix(&prefix, None).await?;
        let records = kvs
            .iter()
            .filter_map(|kv| self.parse_node(&prefix, kv))
            .filter_map(|parsed| parsed.map_err(warn_corrupt).ok())
            .collect();
        Ok((records, revision))
    }

    /// `None` for a key that is not a node's (deeper under the prefix).
    fn parse_node(&self, prefix: &str, kv: &KeyValue) -> Option<Result<NodeRecord, StoreError>> {
        let key = String::from_utf8_lossy(kv.key());
        let node = key.strip_prefix(prefix)?;
        if node.is_empty() || node.contains('/') {
            return None;
        }
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        Some(
            serde_json::from_slice::<NodeRecord>(kv.value())
                .map_err(|e| corrupt(e.to_string()))
                .and_then(|record| {
                    if record.node == node {
                        Ok(record)
                    } else {
                        Err(corrupt(format!("record names node {:?}", record.node)))
                    }
                }),
        )
    }

    /// Node records and CIDR owners, at one revision.
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let nodes_prefix = self.nodes_prefix();
        let (node_kvs, revision) = self.get_prefix(&nodes_prefix, None).await?;
        let cidrs_prefix = self.cidrs_prefix();
        let (cidr_kvs, _) = self.get_prefix(&cidrs_prefix, Some(revision)).await?;
        let mut snapshot = Snapshot::default();
        for kv in &node_kvs {
            match self.parse_node(&nodes_prefix, kv) {
                Some(Ok(record)) => {
                    snapshot.records.insert(record.node.clone(), record);
                }
                Some(Err(err)) => warn_corrupt(err),
                None => {}
            }
        }
        for kv in &cidr_kvs {
            let key = String::from_utf8_lossy(kv.key());
            let parsed = key
                .strip_prefix(&cidrs_prefix)
                .map(|c| c.replace('_', "/"))
                .and_then(|c| c.parse::<IpNetwork>().ok());
            match (parsed, std::str::from_utf8(kv.value())) {
                (Some(cidr), Ok(owner)) => {
                    snapshot.owners.insert(cidr, owner.to_string());
                }
                _ => warn_corrupt(StoreError::Corrupt {
                    key: key.to_string(),
                    reason: "not a CIDR key naming a node".to_string(),
                }),
            }
        }
        Ok(snapshot)
    }

    async fn grant(&self) -> Result<(i64, i64), StoreError> {
        let mut client = self.client.clone();
        let granted = self.call(client.lease_grant(self.ttl, None)).await?;
        Ok((granted.id(), granted.ttl()))
    }

    /// Best effort: a lease nobody keeps alive expires anyway.
    async fn revoke_quietly(&self, lease: i64) {
        let mut client = self.client.clone();
        if let Err(err) = self.call(client.lease_revoke(lease)).await {
            tracing::debug!(lease = format_args!("{lease:x}"), error = %err, "revoking an unused lease failed");
        }
    }

    /// Chooses and claims the node's CIDRs, then publishes the record, all
    /// attached to `lease`. `preferred` (a record being re-registered)
    /// takes precedence over what the store holds for the node; either is
    /// kept when no other node has taken it meanwhile.
    async fn claim(
        &self,
        mut record: NodeRecord,
        lease: i64,
        preferred: &[IpNetwork],
    ) -> Result<NodeRecord, StoreError> {
        let node = record.node.clone();
        for attempt in 1..=MAX_CLAIM_ATTEMPTS {
            let snapshot = self.snapshot().await?;
            let held = if preferred.is_empty() {
                snapshot.held_by(&node)
            } else {
                preferred.to_vec()
            };
            let held_free = snapshot.all_free_for(&held, &node);
            if !held.is_empty() && !held_free {
                tracing::error!(
                    %node,
                    cidrs = ?held,
                    "this node's previous CIDRs were taken by another node while its lease was gone; choosing new ones"
                );
            }
            let mut taken = snapshot.others(&node);
            if held_free && !held.is_empty() {
                taken.push(NodeLease {
                    node: node.clone(),
                    cidrs: held,
                });
            }
            record.cidrs = choose_node_cidrs(&self.config, &node, &taken)?;
            let value = serde_json::to_vec(&record).map_err(|source| {
                StoreError::Ipam(IpamError::Encode {
                    what: "node record",
                    source,
                })
            })?;
            let compares: Vec<Compare> = record
                .cidrs
                .iter()
                .map(|cidr| {
                    let key = self.cidr_key(cidr);
                    if snapshot.owners.contains_key(cidr) {
                        Compare::value(key, CompareOp::Equal, node.as_bytes())
                    } else {
                        Compare::create_revision(key, CompareOp::Equal, 0)
                    }
                })
                .collect();
            let with_lease = || Some(PutOptions::new().with_lease(lease));
            let mut puts = vec![TxnOp::put(self.node_key(&node), value, with_lease())];
            puts.extend(
                record
                    .cidrs
                    .iter()
                    .map(|cidr| TxnOp::put(self.cidr_key(cidr), node.as_bytes(), with_lease())),
            );
            let mut client = self.client.clone();
            let txn = Txn::new().when(compares).and_then(puts);
            if self.call(client.txn(txn)).await?.succeeded() {
                return Ok(record);
            }
            tracing::debug!(%node, attempt, cidrs = ?record.cidrs, "lost a race for a node CIDR; choosing again");
            tokio::time::sleep(claim_jitter(attempt, &node)).await;
        }
        Err(StoreError::Contended {
            node,
            attempts: MAX_CLAIM_ATTEMPTS,
        })
    }

    /// Registers the current record again under a new lease, unless the
    /// registration no longer uses `lost` (then `None`: the caller's task is
    /// stale).
    async fn reregister(&self, lost: i64) -> Result<Option<Registration>, StoreError> {
        let mut current = self.current.lock().await;
        let Some(registration) = current.as_ref().filter(|r| r.lease == lost).cloned() else {
            return Ok(None);
        };
        let (lease, ttl) = self.grant().await?;
        let previous = registration.record.cidrs.clone();
        let record = match self.claim(registration.record, lease, &previous).await {
            Ok(record) => record,
            Err(err) => {
                self.revoke_quietly(lease).await;
                return Err(err);
            }
        };
        tracing::info!(
            node = %record.node,
            cidrs = ?record.cidrs,
            lease = format_args!("{lease:x}"),
            same_cidrs = record.cidrs == previous,
            "registered in etcd again after losing the lease"
        );
        let registration = Registration { record, lease, ttl };
        *current = Some(registration.clone());
        Ok(Some(registration))
    }

    /// Refreshes `lease` every TTL/3 until the stream breaks or etcd says
    /// the lease is gone.
    async fn keep_lease(&self, lease: i64, ttl: i64, backoff: &mut Backoff) -> LeaseEnd {
        let every = refresh_interval(ttl);
        // The answer must come back well within the TTL to be of any use.
        let deadline = every.max(Duration::from_millis(500));
        let mut client = self.client.clone();
        let (mut keeper, mut stream) =
            match tokio::time::timeout(deadline, client.lease_keep_alive(lease)).await {
                Err(_) => return LeaseEnd::Broken(timed_out(deadline)),
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(reason)))
                    if reason == "lease not found" =>
                {
                    return LeaseEnd::Lost
                }
                Ok(Err(err)) => return LeaseEnd::Broken(err),
                Ok(Ok(pair)) => pair,
            };
        backoff.reset();
        loop {
            tokio::time::sleep(every).await;
            if let Some(end) = refresh(&mut keeper, &mut stream, deadline).await {
                return end;
            }
        }
    }

    /// One pass of the watch: list, `Resync`, watch from the next revision.
    /// `None` when `tx` is closed, otherwise why it stopped.
    async fn watch_once(
        &self,
        tx: &mpsc::Sender<StoreEvent>,
        backoff: &mut Backoff,
    ) -> Option<String> {
        let (records, revision) = match self.list_at().await {
            Ok(listed) => listed,
            Err(err) => return Some(format!("list failed: {err}")),
        };
        tx.send(StoreEvent::Resync(records)).await.ok()?;
        let prefix = self.nodes_prefix();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut client = self.client.clone();
        let mut stream = match self.call(client.watch(prefix.clone(), Some(options))).await {
            Ok(stream) => stream,
            Err(err) => return Some(format!("watch failed: {err}")),
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Some("watch stream ended".to_string()),
                Err(err) => return Some(format!("watch stream failed: {}", self.error(err))),
            };
            if response.canceled() {
                return Some(format!(
                    "watch canceled by etcd: {} (compact revision {})",
                    response.cancel_reason(),
                    response.compact_revision()
                ));
            }
            if response.created() {
                backoff.reset();
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let event = match event.event_type() {
                    EventType::Put => match self.parse_node(&prefix, kv) {
                        Some(Ok(record)) => StoreEvent::Upsert(record),
                        Some(Err(err)) => {
                            warn_corrupt(err);
                            continue;
                        }
                        None => continue,
                    },
                    EventType::Delete => {
                        let key = String::from_utf8_lossy(kv.key());
                        match key.strip_prefix(&prefix) {
                            Some(node) if !node.is_empty() && !node.contains('/') => {
                                StoreEvent::Removed(node.to_string())
                            }
                            _ => continue,
                        }
                    }
                };
                tx.send(event).await.ok()?;
            }
        }
    }
}

/// Sends one keep-alive and waits for its answer.
async fn refresh(
    keeper: &mut LeaseKeeper,
    stream: &mut LeaseKeepAliveStream,
    deadline: Duration,
) -> Option<LeaseEnd> {
    if let Err(err) = keeper.keep_alive().await {
        return Some(LeaseEnd::Broken(err));
    }
    match tokio::time::timeout(deadline, stream.message()).await {
        Err(_) => Some(LeaseEnd::Broken(timed_out(deadline))),
        Ok(Err(err)) => Some(LeaseEnd::Broken(err)),
        Ok(Ok(None)) => Some(LeaseEnd::Broken(etcd_client::Error::LeaseKeepAliveError(
            "keep-alive stream ended".to_string(),
        ))),
        Ok(Ok(Some(answer))) if answer.ttl() <= 0 => Some(LeaseEnd::Lost),
        Ok(Ok(Some(_))) => None,
    }
}

/// What the store holds, for choosing a CIDR.
#[derive(Default)]
struct Snapshot {
    records: BTreeMap<String, NodeRecord>,
    /// CIDR key -> the node named in it.
    owners: BTreeMap<IpNetwork, String>,
}

impl Snapshot {
    /// The CIDRs `node` holds: its record's, else (record unreadable) the
    /// CIDR keys naming it.
    fn held_by(&self, node: &str) -> Vec<IpNetwork> {
        match self.records.get(node) {
            Some(record) => record.cidrs.clone(),
            None => self
                .owners
                .iter()
                .filter(|(_, owner)| *owner == node)
                .map(|(cidr, _)| *cidr)
                .collect(),
        }
    }

    fn all_free_for(&self, cidrs: &[IpNetwork], node: &str) -> bool {
        cidrs
            .iter()
            .all(|cidr| self.owners.get(cidr).is_none_or(|owner| owner == node))
    }

    /// Every other node's CIDRs, from both the CIDR keys and the records.
    fn others(&self, node: &str) -> Vec<NodeLease> {
        let mut by_node: BTreeMap<&str, BTreeSet<IpNetwork>> = BTreeMap::new();
        for (cidr, owner) in &self.owners {
            if owner != node {
                by_node.entry(owner).or_default().insert(*cidr);
            }
        }
        for record in self.records.values().filter(|r| r.node != node) {
            by_node
                .entry(&record.node)
                .or_default()
                .extend(record.cidrs.iter().copied());
        }
        by_node
            .into_iter()
            .map(|(node, cidrs)| NodeLease {
                node: node.to_string(),
                cidrs: cidrs.into_iter().collect(),
            })
            .collect()
    }
}

fn warn_corrupt(err: StoreError) {
    tracing::warn!(error = %err, "skipping an unreadable etcd record");
}

fn timed_out(after: Duration) -> etcd_client::Error {
    etcd_client::Error::IoError(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from etcd within {after:?}"),
    ))
}

/// The end of the key range holding every key that starts with `prefix`
/// (the prefix with its last byte below 0xff incremented), as etcd's own
/// client computes it; `\0` (every key) when there is no such byte.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A random delay before choosing again, growing with the attempt (at most
/// 250 ms): nodes that lost the same race do not all read and choose the
/// same free CIDR again at the same instant.
fn claim_jitter(attempt: u32, node: &str) -> Duration {
    let cap_ms = u64::from(attempt.saturating_mul(10)).min(250);
    let random = RandomState::new().hash_one((node, attempt, Instant::now()));
    Duration::from_millis(random % (cap_ms + 1))
}

/// Exponential backoff between retries.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            next: min,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/podnet/nodes/"), b"/podnet/nodes0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn refresh_is_a_third_of_the_ttl() {
        assert_eq!(refresh_interval(15), Duration::from_secs(5));
        assert_eq!(refresh_interval(2), Duration::from_millis(666));
        assert_eq!(refresh_interval(0), Duration::from_millis(100));
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn snapshot_keeps_a_nodes_cidrs_only_while_free() {
        let mut snapshot = Snapshot::default();
        snapshot.owners.insert(net("10.0.0.0/24"), "a".into());
        snapshot.owners.insert(net("10.0.1.0/24"), "b".into());
        snapshot.records.insert(
            "c".into(),
            NodeRecord {
                node: "c".into(),
                cidrs: vec![net("10.0.2.0/24")],
                addresses: vec![],
                vtep_mac: None,
            },
        );
        assert_eq!(snapshot.held_by("a"), vec![net("10.0.0.0/24")]);
        assert_eq!(snapshot.held_by("c"), vec![net("10.0.2.0/24")]);
        assert!(snapshot.all_free_for(&[net("10.0.0.0/24"), net("10.0.3.0/24")], "a"));
        assert!(!snapshot.all_free_for(&[net("10.0.1.0/24")], "a"));
        let others: Vec<String> = snapshot.others("a").into_iter().map(|l| l.node).collect();
        assert_eq!(others, vec!["b".to_string(), "c".to_string()]);
    }
}
