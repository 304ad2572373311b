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
//!
//! # Parts
//! `read` is paged range reads and node records; `snapshot` what a
//! claim chooses from; `claim` the claim transaction; `lease` the lease's
//! grant, keep-alive and re-registration; `watch` the watch and its resyncs.

mod claim;
mod lease;
mod read;
mod snapshot;
#[cfg(test)]
mod tests;
mod watch;

use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// The client crate, re-exported: [`StoreError::Etcd`] carries its error
/// type, and tests use its client to reach the same etcd.
pub use etcd_client;
use etcd_client::{Client, ConnectOptions};
use ipnetwork::IpNetwork;
use podnet_ipam::cidr::ClusterConfig;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use self::lease::keep_alive;
use super::{NodeRecord, StoreError};

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

/// Retries of the watch and of the lease keep-alive start here and double
/// (the keep-alive's up to its refresh interval).
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
