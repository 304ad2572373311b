//! The route loop: the store's watch drives it, a timer resyncs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::metrics::{count, Metrics};
use crate::nodenet::NodeNet;
use crate::routes::{self, Underlay};
use crate::store::{Backend, NodeRecord, StoreEvent};

/// What the reconciler knows of this node's own network.
#[derive(Clone, Debug)]
pub struct Topology {
    pub me: String,
    pub underlay: Underlay,
    pub vxlan: Option<u32>,
}

fn apply(peers: &mut BTreeMap<String, NodeRecord>, ev: StoreEvent) {
    match ev {
        StoreEvent::Upsert(r) => {
            peers.insert(r.node.clone(), r);
        }
        StoreEvent::Removed(node) => {
            peers.remove(&node);
        }
        StoreEvent::Resync(all) => {
            *peers = all.into_iter().map(|r| (r.node.clone(), r)).collect();
        }
    }
}

/// Reconciles routes from the store's watch until it ends; publishes this
/// node's own record as the store has it on `me` (for `follow`).
pub async fn run(
    backend: Arc<Backend>,
    node: Arc<NodeNet>,
    topo: Topology,
    metrics: Arc<Metrics>,
    resync: Duration,
    me: watch::Sender<Option<NodeRecord>>,
) {
    let (tx, mut rx) = mpsc::channel(4096);
    let watcher = backend.clone();
    tokio::spawn(async move { watcher.watch(tx).await });
    let mut peers: BTreeMap<String, NodeRecord> = BTreeMap::new();
    // Until the store has answered once, the kernel's routes are the best
    // knowledge there is: reconciling against an empty set would delete
    // every valid route at each restart.
    let mut synced = false;
    let mut tick = tokio::time::interval(resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { return };
                // Only a live watch delivers: the store answers.
                backend.reach().reached();
                synced |= matches!(ev, StoreEvent::Resync(_));
                apply(&mut peers, ev);
                // A burst of events is one reconcile.
                while let Ok(ev) = rx.try_recv() {
                    synced |= matches!(ev, StoreEvent::Resync(_));
                    apply(&mut peers, ev);
                }
            }
            _ = tick.tick() => {}
        }
        if !synced {
            continue;
        }
        me.send_if_modified(|held| {
            let seen = peers.get(&topo.me);
            let changed = held.as_ref() != seen;
            if changed {
                *held = seen.cloned();
            }
            changed
        });
        let list: Vec<NodeRecord> = peers.values().cloned().collect();
        metrics
            .peers
            .set(count(list.iter().filter(|p| p.node != topo.me).count()));
        let (node, topo2) = (node.clone(), topo.clone());
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || {
            node.change(|| {
                let mut nl = node.netlink()?;
                let want = routes::desired(&topo2.me, &list, &topo2.underlay, topo2.vxlan);
                routes::reconcile(&mut nl, &want, topo2.vxlan)
            })
        })
        .await;
        metrics.reconcile.observe(started.elapsed().as_secs_f64());
        match outcome {
            // podnet is being removed from the node: no more routes.
            Ok(None) => return,
            Ok(Some(Ok(applied))) => {
                metrics.routes.set(count(applied.routes));
                let changes = applied.added + applied.replaced + applied.removed;
                metrics.route_changes.inc_by(count(changes));
                if changes > 0 {
                    tracing::info!(
                        added = applied.added,
                        replaced = applied.replaced,
                        removed = applied.removed,
                        routes = applied.routes,
                        took_ms = started.elapsed().as_secs_f64() * 1e3,
                        "routes reconciled"
                    );
                }
            }
            Ok(Some(Err(e))) => {
                metrics.reconcile_errors.inc();
                tracing::warn!(error = %e, "route reconcile failed; retrying at the next event or resync");
            }
            Err(e) => {
                metrics.reconcile_errors.inc();
                tracing::warn!(error = %e, "route reconcile task failed");
            }
        }
    }
}
