//! The leak reclaimer. containerd never calls CNI GC, and a DEL can be lost
//! (a node crash, a runtime killed mid-teardown), so the daemon looks for
//! itself: an allocation whose pod network namespace has been gone for
//! longer than a grace period is released.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::pool::PoolStore;

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
    /// One pass; returns the attachments released. `live` is the set of
    /// sandbox ids the runtime lists, when podnetd can ask it.
    pub fn pass<S: PoolStore>(
        &mut self,
        svc: &Service<S>,
        grace: Duration,
        now: Instant,
        live: Option<&HashSet<String>>,
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
            let netns = a.netns.as_deref().unwrap_or("-");
            let namespace_gone = a.netns.as_deref().is_some_and(netns_gone);
            let runtime_forgot = live.is_some_and(|ids| !ids.contains(&a.key.container_id));
            if !namespace_gone && !runtime_forgot {
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
                            namespace_gone,
                            runtime_forgot,
                            "reclaimed leaked addresses: the pod is gone and no DEL came"
                        );
                        svc.metrics.reclaimed.inc();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use podnet_ipam::pool::{AllocateRequest, MemoryPoolStore, Pool, PoolConfig};

    use super::*;

    fn service() -> Service<MemoryPoolStore> {
        let pool = Pool::new(
            PoolConfig {
                ranges: vec!["10.244.1.0/24".parse().unwrap()],
                reserved: Vec::new(),
            },
            MemoryPoolStore::default(),
        )
        .unwrap();
        Service {
            node: "n".into(),
            pool,
            metrics: Arc::new(crate::metrics::Metrics::default()),
            storage: Default::default(),
            released: None,
        }
    }

    fn add(svc: &Service<MemoryPoolStore>, id: &str, netns: &str) {
        svc.pool
            .allocate(&AllocateRequest {
                key: AttachmentKey {
                    container_id: id.into(),
                    ifname: "eth0".into(),
                },
                netns: Some(netns.into()),
                requested: Vec::new(),
            })
            .unwrap();
    }

    #[test]
    fn gone_namespaces_and_forgotten_sandboxes_are_reclaimed_after_grace() {
        let svc = service();
        let dir = tempfile::tempdir().unwrap();
        let alive = dir.path().join("alive");
        std::fs::write(&alive, "").unwrap();
        let alive = alive.display().to_string();
        let gone = dir.path().join("gone").display().to_string();
        add(&svc, "alive", &alive);
        add(&svc, "gone", &gone);
        add(&svc, "forgotten", &alive);
        add(&svc, "unseen", "/no/such/dir/ns");

        let mut r = Reclaimer::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        let live: HashSet<String> = ["alive", "gone", "unseen"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // First sighting starts the grace period.
        assert!(r.pass(&svc, grace, t0, Some(&live)).is_empty());
        let mut released = r.pass(&svc, grace, t0 + grace, Some(&live));
        released.sort();
        let ids: Vec<&str> = released.iter().map(|k| k.container_id.as_str()).collect();
        assert_eq!(ids, vec!["forgotten", "gone"]);
        // A directory we cannot see says nothing; without CRI nothing else is judged.
        let mut r = Reclaimer::default();
        add(&svc, "forgotten2", &alive);
        assert!(r.pass(&svc, Duration::ZERO, t0, None).is_empty());
        assert_eq!(svc.pool.list().unwrap().len(), 3);
    }
}
