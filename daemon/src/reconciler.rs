//! The route loop: the store's watch drives it, a timer resyncs it.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::metrics::{count, Metrics};
use crate::nodenet::NodeNet;
use crate::routes::{self, Applied, Underlay};
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
                synced |= apply_burst(&mut peers, ev, &mut rx);
            }
            _ = tick.tick() => {}
        }
        if !synced {
            continue;
        }
        publish_me(&me, &peers, &topo.me);
        if reconcile_once(&node, &topo, &peers, &metrics)
            .await
            .is_break()
        {
            return;
        }
    }
}

/// Applies `first` and every event already queued behind it, so that a
/// burst of events is one reconcile. Returns whether a `Resync` was among
/// them.
fn apply_burst(
    peers: &mut BTreeMap<String, NodeRecord>,
    first: StoreEvent,
    rx: &mut mpsc::Receiver<StoreEvent>,
) -> bool {
    let mut resynced = matches!(first, StoreEvent::Resync(_));
    apply(peers, first);
    while let Ok(ev) = rx.try_recv() {
        resynced |= matches!(ev, StoreEvent::Resync(_));
        apply(peers, ev);
    }
    resynced
}

/// Tells `follow` this node's record as the store now has it, if changed.
fn publish_me(
    me: &watch::Sender<Option<NodeRecord>>,
    peers: &BTreeMap<String, NodeRecord>,
    name: &str,
) {
    me.send_if_modified(|held| {
        let seen = peers.get(name);
        let changed = held.as_ref() != seen;
        if changed {
            *held = seen.cloned();
        }
        changed
    });
}

/// One reconcile of the node's routes with `peers`, off the async threads.
/// `Break` once podnet is being removed from the node: no more routes.
async fn reconcile_once(
    node: &Arc<NodeNet>,
    topo: &Topology,
    peers: &BTreeMap<String, NodeRecord>,
    metrics: &Metrics,
) -> ControlFlow<()> {
    let list: Vec<NodeRecord> = peers.values().cloned().collect();
    metrics
        .peers
        .set(count(list.iter().filter(|p| p.node != topo.me).count()));
    let (node, topo) = (node.clone(), topo.clone());
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        node.change(|| {
            let mut nl = node.netlink()?;
            let want = routes::desired(&topo.me, &list, &topo.underlay, topo.vxlan);
            routes::reconcile(&mut nl, &want, topo.vxlan)
        })
    })
    .await;
    metrics.reconcile.observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(None) => return ControlFlow::Break(()),
        Ok(Some(Ok(applied))) => note_applied(metrics, &applied, started),
        Ok(Some(Err(e))) => {
            metrics.reconcile_errors.inc();
            tracing::warn!(error = %e, "route reconcile failed; retrying at the next event or resync");
        }
        Err(e) => {
            metrics.reconcile_errors.inc();
            tracing::warn!(error = %e, "route reconcile task failed");
        }
    }
    ControlFlow::Continue(())
}

/// Counts and logs what a reconcile changed (quietly when nothing).
fn note_applied(metrics: &Metrics, applied: &Applied, started: Instant) {
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
