//! The leak reclaimer. containerd never calls CNI GC, and a DEL can be lost
//! (a node crash, a runtime killed mid-teardown), so the daemon looks for
//! itself: an allocation whose pod network namespace has been gone for
//! longer than a grace period is released.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use podnet_ipam::pool::{AttachmentKey, PoolStore};

use crate::metrics::Metrics;
use crate::service::Service;

/// Whether a pod's namespace is gone. A path whose directory we cannot see
/// at all (not mounted into our view) says nothing, so it is never judged
/// gone: a missing mount must not look like every pod having died.
pub fn netns_gone(path: &str) -> bool {
    let p = Path::new(path);
    let dir_visible = p.parent().is_some_and(|d| d.is_dir());
    dir_visible && !p.exists()
}

#[derive(Default)]
pub struct Reclaimer {
    /// When each allocation was first seen without its namespace.
    missing_since: HashMap<AttachmentKey, Instant>,
}

impl Reclaimer {
    /// One pass; returns the attachments released.
    pub fn pass<S: PoolStore>(
        &mut self,
        svc: &Service<S>,
        grace: Duration,
        now: Instant,
    ) -> Vec<AttachmentKey> {
        let allocations = match svc.pool.list() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reclaimer cannot list allocations");
                return Vec::new();
            }
        };
        let mut still_missing = HashMap::new();
        let mut released = Vec::new();
        for a in allocations {
            let Some(netns) = a.netns.as_deref() else {
                continue;
            };
            if !netns_gone(netns) {
                continue;
            }
            let since = self.missing_since.get(&a.key).copied().unwrap_or(now);
            if now.duration_since(since) >= grace {
                match svc.release(&a.key) {
                    Ok(_) => {
                        tracing::warn!(
                            container = %a.key.container_id,
                            ifname = %a.key.ifname,
                            netns,
                            ips = ?a.ips,
                            "reclaimed leaked addresses: the pod's network namespace is gone and no DEL came"
                        );
                        Metrics::inc(&svc.metrics.reclaimed);
                        released.push(a.key);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reclaim failed");
                        still_missing.insert(a.key, since);
                    }
                }
            } else {
                still_missing.insert(a.key, since);
            }
        }
        self.missing_since = still_missing;
        released
    }
}
