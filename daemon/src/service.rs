//! The IPAM service: one protocol request in, one response out. Sync and
//! quick (the pool holds its lock for microseconds; fsync happens outside
//! it), so the server runs it on tokio's blocking pool.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ipnetwork::IpNetwork;
use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::error::IpamError;
use podnet_ipam::pool::{AllocateRequest, Pool, PoolStore, SledPoolStore};
use podnet_ipam::proto::{ErrorKind, Request, Response};
use podnet_ipam::spool::Spool;

use crate::metrics::Metrics;

/// Whether the state database can still be written. Once a write or flush
/// fails (a full disk), sled's memory may hold what the disk does not: the
/// daemon then answers STATUS "not ready" and stops, so that its supervisor
/// starts it again from what is on disk once the disk takes writes again.
#[derive(Default)]
pub struct StorageHealth {
    failed: AtomicBool,
    notify: tokio::sync::Notify,
}

impl StorageHealth {
    /// Notes `error` when it is the database's own (a sled error): from
    /// then on the database counts as failed.
    pub fn note(&self, error: &IpamError) {
        if !matches!(error, IpamError::Store(_)) {
            return;
        }
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(%error, "the state database cannot be written; stopping");
        }
        self.notify.notify_one();
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Returns once the database has failed.
    pub async fn failed(&self) {
        while !self.is_failed() {
            self.notify.notified().await;
        }
    }
}

pub struct Service<S: PoolStore = SledPoolStore> {
    pub node: String,
    /// Hands out from the node's CIDRs: `pool.config().ranges` is where
    /// the node's CIDRs are known (they change when the Node's do).
    pub pool: Pool<S>,
    pub metrics: Arc<Metrics>,
    pub storage: Arc<StorageHealth>,
    /// Told the addresses of every release, so that their connection
    /// tracking entries are forgotten (`conntrack`); `None` in tests of
    /// the service alone.
    pub released: Option<std::sync::mpsc::Sender<Vec<std::net::IpAddr>>>,
}

fn to_response(e: &IpamError) -> Response {
    Response::Error {
        kind: wire_kind(e),
        message: e.to_string(),
    }
}

/// The kind the plugin picks its CNI code by. No `_` arm: a new IPAM error
/// does not compile until it is given a kind here.
fn wire_kind(e: &IpamError) -> ErrorKind {
    match e {
        // Nothing left until something is released.
        IpamError::ClusterExhausted { .. } | IpamError::PoolExhausted { .. } => {
            ErrorKind::Exhausted
        }
        // The daemon's database failed or holds what it cannot read: not
        // the request's fault.
        // So is a record of its own that would not encode.
        IpamError::Store(_) | IpamError::Corrupt { .. } | IpamError::Encode { .. } => {
            ErrorKind::Internal
        }
        // What the request asked for cannot be given.
        IpamError::AddressOutsidePool { .. }
        | IpamError::AddressReserved { .. }
        | IpamError::AddressInUse { .. }
        | IpamError::RequestedFamilyTwice { .. }
        | IpamError::RequestMismatch { .. } => ErrorKind::InvalidRequest,
        // The pool's ranges (the node's CIDRs) are unusable: the cluster
        // configuration is wrong.
        IpamError::NoRanges
        | IpamError::RangesOverlap { .. }
        | IpamError::InvalidRange { .. }
        | IpamError::InvalidNodePrefix { .. }
        | IpamError::InvalidMaxPods { .. } => ErrorKind::InvalidRequest,
        // A lost cluster-level race: the pool never reports one.
        IpamError::ClaimContended { .. } => ErrorKind::InvalidRequest,
    }
}

impl<S: PoolStore> Service<S> {
    /// The error's answer; a database that failed is noted on the way.
    fn error(&self, e: &IpamError) -> Response {
        self.storage.note(e);
        to_response(e)
    }

    pub fn node_cidrs(&self) -> Vec<IpNetwork> {
        self.pool.config().ranges
    }

    /// An ADD's addresses; `chosen` is called with them before they are
    /// flushed to disk.
    pub fn add(
        &self,
        req: &AllocateRequest,
        chosen: impl FnOnce(&podnet_ipam::attachment::Allocation),
    ) -> Response {
        match self.pool.allocate_then(req, chosen) {
            Ok(allocation) => {
                self.metrics.allocations.inc();
                tracing::debug!(container = %allocation.key.container_id, ips = ?allocation.ips, "allocated");
                Response::Allocated { allocation }
            }
            Err(e) => {
                self.metrics.allocation_errors.inc();
                tracing::warn!(error = %e, "allocation failed");
                self.error(&e)
            }
        }
    }

    /// Serves a request [`Request::decode`] has accepted.
    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::Add {
                key,
                netns,
                requested,
                pod: _,
                confirm_policy: _,
            } => self.add(
                &AllocateRequest {
                    key,
                    netns,
                    requested,
                },
                |_| (),
            ),
            Request::Del { key } => match self.release(&key) {
                Ok(found) => {
                    if found {
                        self.metrics.releases.inc();
                    }
                    Response::Released { found }
                }
                Err(e) => self.error(&e),
            },
            Request::Check { key } => match self.pool.get(&key) {
                Ok(Some(allocation)) => Response::Allocated { allocation },
                Ok(None) => Response::Unknown,
                Err(e) => self.error(&e),
            },
            Request::Status => Response::Status {
                ready: !self.storage.is_failed(),
                node: self.node.clone(),
                node_cidrs: self.node_cidrs(),
                detail: if self.storage.is_failed() {
                    "the state database cannot be written".into()
                } else {
                    "serving".into()
                },
            },
            Request::Gc { valid } => self.gc(&valid),
            Request::Report { verb, micros, ok } => {
                let d = std::time::Duration::from_micros(micros);
                match (verb.as_str(), ok) {
                    ("ADD", true) => self.metrics.plugin_add.observe(d.as_secs_f64()),
                    ("DEL", true) => self.metrics.plugin_del.observe(d.as_secs_f64()),
                    ("ADD", false) => {
                        self.metrics.plugin_add_errors.inc();
                    }
                    ("DEL", false) => {
                        self.metrics.plugin_del_errors.inc();
                    }
                    _ => {}
                }
                Response::Noted
            }
            // Nothing to wait for on a node that enforces no policy.
            Request::PolicyReady { .. } => Response::PolicyReady,
            // The server answers these from the policy agent.
            Request::PolicyExplain { .. } | Request::PolicyState => Response::Error {
                kind: ErrorKind::InvalidRequest,
                message: crate::netpol::NOT_ENFORCED.into(),
            },
            Request::List => match (self.pool.list(), self.pool.usage()) {
                (Ok(allocations), Ok(usage)) => Response::Listing {
                    node: self.node.clone(),
                    node_cidrs: self.node_cidrs(),
                    allocations,
                    usage,
                },
                (Err(e), _) | (_, Err(e)) => self.error(&e),
            },
        }
    }

    /// Releases durably (the pool flushes before returning): a DEL
    /// acknowledged and then lost to a crash would leak the address.
    pub fn release(&self, key: &AttachmentKey) -> Result<bool, IpamError> {
        match self.pool.release(key) {
            Ok(found) => {
                if let (Some(alloc), Some(tx)) = (&found, &self.released) {
                    let _ = tx.send(alloc.ips.iter().map(|n| n.ip()).collect());
                }
                Ok(found.is_some())
            }
            Err(e) => {
                self.storage.note(&e);
                Err(e)
            }
        }
    }

    fn gc(&self, valid: &[AttachmentKey]) -> Response {
        let keep: HashSet<&AttachmentKey> = valid.iter().collect();
        let all = match self.pool.list() {
            Ok(a) => a,
            Err(e) => return self.error(&e),
        };
        let mut released = Vec::new();
        for a in all.into_iter().filter(|a| !keep.contains(&a.key)) {
            match self.release(&a.key) {
                Ok(_) => {
                    tracing::info!(container = %a.key.container_id, ifname = %a.key.ifname, ips = ?a.ips, "GC released");
                    self.metrics.gc_released.inc();
                    released.push(a);
                }
                Err(e) => tracing::warn!(error = %e, "GC could not release"),
            }
        }
        Response::Collected { released }
    }

    /// Applies the releases the plugins spooled while the daemon was down.
    pub fn drain_spool(&self, spool: &Spool) {
        let pending = match spool.pending() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(dir = %spool.dir().display(), error = %e, "cannot read the spool");
                return;
            }
        };
        for (path, key) in pending {
            match self.release(&key) {
                Ok(found) => {
                    tracing::info!(container = %key.container_id, ifname = %key.ifname, found, "applied spooled release");
                    self.metrics.spool_applied.inc();
                    if let Err(e) = spool.done(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove a spool record");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "spooled release failed; kept for next time"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The plugin picks its CNI code by these kinds: a change here changes
    // what runtimes see.

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn assert_kind(kind: ErrorKind, errors: impl IntoIterator<Item = IpamError>) {
        for error in errors {
            assert_eq!(wire_kind(&error), kind, "{error}");
            assert_eq!(
                to_response(&error),
                Response::Error {
                    kind,
                    message: error.to_string()
                }
            );
        }
    }

    #[test]
    fn nothing_left_is_exhausted() {
        assert_kind(
            ErrorKind::Exhausted,
            [
                IpamError::ClusterExhausted {
                    ranges: vec![],
                    node_prefix: 24,
                    node_cidrs: 0,
                },
                IpamError::PoolExhausted {
                    range: net("10.0.0.0/24"),
                    capacity: 253,
                },
            ],
        );
    }

    #[test]
    fn the_database_failing_is_internal() {
        assert_kind(
            ErrorKind::Internal,
            [
                IpamError::Store(sled::Error::Unsupported("test".into())),
                IpamError::Corrupt {
                    key: "k".into(),
                    reason: "r".into(),
                },
                IpamError::Encode {
                    what: "allocation",
                    source: serde_json::from_str::<u8>("x").unwrap_err(),
                },
            ],
        );
    }

    #[test]
    fn what_cannot_be_given_is_an_invalid_request() {
        let key = AttachmentKey {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        let ip = "10.0.0.5".parse().unwrap();
        assert_kind(
            ErrorKind::InvalidRequest,
            [
                IpamError::AddressOutsidePool { ip, ranges: vec![] },
                IpamError::AddressReserved { ip, reason: "r" },
                IpamError::AddressInUse {
                    ip,
                    owner: key.clone(),
                },
                IpamError::RequestedFamilyTwice {
                    first: ip,
                    second: ip,
                },
                IpamError::RequestMismatch {
                    key,
                    existing: vec![],
                    requested: vec![],
                },
            ],
        );
    }

    #[test]
    fn bad_ranges_and_the_rest_are_invalid_requests_as_before() {
        assert_kind(
            ErrorKind::InvalidRequest,
            [
                IpamError::NoRanges,
                IpamError::RangesOverlap {
                    first: net("10.0.0.0/16"),
                    second: net("10.0.0.0/24"),
                },
                IpamError::InvalidRange {
                    range: net("10.0.0.0/31"),
                    reason: "r",
                },
                IpamError::InvalidNodePrefix {
                    prefix: 33,
                    reason: "r",
                },
                IpamError::InvalidMaxPods {
                    max_pods: 0,
                    reason: "r",
                },
                IpamError::ClaimContended {
                    node: "n".into(),
                    attempts: 3,
                },
            ],
        );
    }
}
