//! Whether this node can take pods, as `/readyz` tells it: the facts an ADD
//! depends on, each checked, rather than "the process is up" (that is
//! `/healthz`). A DaemonSet's rolling update waits on this answer, so it
//! must not say ready before an ADD can succeed, nor stay not ready for a
//! fault that has passed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::service::StorageHealth;
use crate::store::StoreReach;

/// How long a database probe's outcome stands: the probe is an fsync, and
/// `/readyz` is reachable by anyone who can reach the port.
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// The key the probe writes, in a tree of its own.
const PROBE_TREE: &str = "readiness";

/// One fact that does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unready {
    #[error("node CIDR: not held yet")]
    NodeCidr,
    #[error("CNI configuration: not written yet")]
    Conflist,
    #[error("CNI configuration: {} is gone", .0.display())]
    ConflistGone(PathBuf),
    #[error("cluster store: {0}")]
    Store(String),
    #[error("state database: {0}")]
    Database(String),
}

/// Every fact that does not hold; never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady(pub Vec<Unready>);

impl std::fmt::Display for NotReady {
    /// One line per fact: the body of `/readyz`'s 503.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for u in &self.0 {
            writeln!(f, "not ready: {u}")?;
        }
        Ok(())
    }
}

pub struct Readiness {
    node_cidr: AtomicBool,
    /// The conflist, once written.
    conflist: Mutex<Option<PathBuf>>,
    store: StoreReach,
    storage: Arc<StorageHealth>,
    probe: Option<DbProbe>,
}

impl Readiness {
    /// `db`: the state database, probed by a write (`None`: only IPAM's own
    /// writes tell, through `storage`).
    pub fn new(store: StoreReach, storage: Arc<StorageHealth>, db: Option<sled::Tree>) -> Self {
        Self {
            node_cidr: AtomicBool::new(false),
            conflist: Mutex::new(None),
            store,
            storage,
            probe: db.map(DbProbe::new),
        }
    }

    /// Opens the probe's tree in `db`.
    pub fn probe_tree(db: &sled::Db) -> Result<sled::Tree, sled::Error> {
        db.open_tree(PROBE_TREE)
    }

    pub fn set_node_cidr(&self, held: bool) {
        self.node_cidr.store(held, Ordering::SeqCst);
    }

    pub fn set_conflist(&self, path: PathBuf) {
        *self.conflist_slot() = Some(path);
    }

    /// `Ok` when every fact holds; otherwise each one that does not.
    pub async fn check(&self) -> Result<(), NotReady> {
        let mut not = Vec::new();
        if !self.node_cidr.load(Ordering::SeqCst) {
            not.push(Unready::NodeCidr);
        }
        match self.conflist_slot().clone() {
            None => not.push(Unready::Conflist),
            // Removed by hand or by another installer: the runtime has no
            // network for new pods, whatever podnetd holds.
            Some(path) if !path.is_file() => not.push(Unready::ConflistGone(path)),
            Some(_) => {}
        }
        if let Err(why) = self.store.state() {
            not.push(Unready::Store(why));
        }
        if let Err(why) = self.database().await {
            not.push(Unready::Database(why));
        }
        if not.is_empty() {
            Ok(())
        } else {
            Err(NotReady(not))
        }
    }

    async fn database(&self) -> Result<(), String> {
        if self.storage.is_failed() {
            return Err("a write failed (a full disk?)".into());
        }
        match &self.probe {
            Some(probe) => probe.outcome().await,
            None => Ok(()),
        }
    }

    fn conflist_slot(&self) -> std::sync::MutexGuard<'_, Option<PathBuf>> {
        self.conflist.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A write and flush of one key: what IPAM needs of the disk, on a node
/// that may have handed out nothing for hours.
struct DbProbe {
    tree: sled::Tree,
    /// The last outcome and when; the lock is held across a probe, so
    /// probes never overlap.
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl DbProbe {
    fn new(tree: sled::Tree) -> Self {
        Self {
            tree,
            last: tokio::sync::Mutex::new(None),
        }
    }

    async fn outcome(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = &*last {
            if at.elapsed() < PROBE_EVERY {
                return outcome.clone();
            }
        }
        let tree = self.tree.clone();
        let outcome = tokio::task::spawn_blocking(move || write_probe(&tree))
            .await
            .unwrap_or_else(|e| Err(format!("the probe failed: {e}")));
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

fn write_probe(tree: &sled::Tree) -> Result<(), String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    tree.insert("probe", &stamp.to_be_bytes())
        .and_then(|_| tree.flush())
        .map(drop)
        .map_err(|e| format!("cannot write: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_ipam::error::IpamError;

    fn readiness() -> (Readiness, StoreReach, Arc<StorageHealth>) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (store, storage) = (StoreReach::default(), Arc::new(StorageHealth::default()));
        let tree = Readiness::probe_tree(&db).unwrap();
        let r = Readiness::new(store.clone(), storage.clone(), Some(tree));
        (r, store, storage)
    }

    #[tokio::test]
    async fn not_ready_until_every_fact_holds() {
        let (r, store, _) = readiness();
        let dir = tempfile::tempdir().unwrap();
        let conflist = dir.path().join("10-podnet.conflist");
        let not = r.check().await.unwrap_err();
        assert_eq!(
            not.0,
            vec![
                Unready::NodeCidr,
                Unready::Conflist,
                Unready::Store("not contacted yet".into())
            ]
        );
        assert_eq!(
            not.to_string(),
            "not ready: node CIDR: not held yet\n\
             not ready: CNI configuration: not written yet\n\
             not ready: cluster store: not contacted yet\n"
        );
        r.set_node_cidr(true);
        store.reached();
        std::fs::write(&conflist, "{}").unwrap();
        r.set_conflist(conflist.clone());
        assert_eq!(r.check().await, Ok(()));
        store.lost("watch failed");
        std::fs::remove_file(&conflist).unwrap();
        assert_eq!(
            r.check().await.unwrap_err().0,
            vec![
                Unready::ConflistGone(conflist),
                Unready::Store("watch failed".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_write_makes_the_database_unready() {
        let (r, store, storage) = readiness();
        r.set_node_cidr(true);
        store.reached();
        let dir = tempfile::tempdir().unwrap();
        let conflist = dir.path().join("c");
        std::fs::write(&conflist, "{}").unwrap();
        r.set_conflist(conflist);
        assert_eq!(r.check().await, Ok(()));
        let sled_error = sled::Error::Unsupported("disk full".into());
        storage.note(&IpamError::Store(sled_error));
        assert_eq!(
            r.check().await.unwrap_err().0,
            vec![Unready::Database("a write failed (a full disk?)".into())]
        );
    }

    #[test]
    fn the_probe_writes_its_key() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = Readiness::probe_tree(&db).unwrap();
        write_probe(&tree).unwrap();
        assert!(tree.get("probe").unwrap().is_some());
    }
}
