//! The sync task: every change (watch events, admissions, releases, the
//! periodic resync) compiled and committed by one task, one nftables
//! transaction each.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use super::{lock, Kernel, Overlaid, PolicyAgent, PolicyError};
use crate::policy::{PodRef, PolicyRef, PolicyType, Snapshot};

/// How often the table's counters are read into the metrics.
const COUNTER_PERIOD: Duration = Duration::from_secs(10);

impl PolicyAgent {
    pub(super) async fn run(self: Arc<Self>, resync: Duration) {
        self.cache.ready().await;
        tracing::info!("NetworkPolicies, Namespaces and Pods listed: enforcing NetworkPolicy");
        // Both fire at once: the first sync replaces the table whole.
        let mut whole = tokio::time::interval(resync);
        whole.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut counters = tokio::time::interval(COUNTER_PERIOD);
        counters.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let whole = tokio::select! {
                biased;
                _ = whole.tick() => true,
                () = self.wake.notified() => false,
                _ = counters.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.read_counters()).await;
                    continue;
                }
            };
            let generation = self.requested.load(Ordering::SeqCst);
            let me = self.clone();
            let result = tokio::task::spawn_blocking(move || me.sync(whole))
                .await
                .unwrap_or_else(|e| Err(PolicyError::Kernel(format!("the sync task failed: {e}"))));
            if let Err(e) = &result {
                tracing::warn!(error = %e, "NetworkPolicy sync failed; the table keeps its previous rules");
                self.metrics.policy.sync_errors.inc();
            }
            self.synced.send_modify(|s| {
                s.generation = generation;
                match result {
                    Ok(()) => {
                        s.ok_generation = generation;
                        s.error = None;
                    }
                    Err(e) => s.error = Some(Arc::from(e.to_string())),
                }
            });
        }
    }

    /// Compiles the current snapshot and commits it: the changes, or with
    /// `whole` the entire table (removing whatever else is in it).
    fn sync(&self, whole: bool) -> Result<(), PolicyError> {
        let started = Instant::now();
        if whole {
            // A replace starts the counters again: count what they hold.
            self.read_counters();
        }
        let mut guard = lock(&self.kernel);
        let kernel = &mut *guard;
        let (snapshot, overlaid) = self.snapshot(kernel, whole);
        // Until an apply succeeds (this one may fail, or panic), the
        // compiler's changes since the table's last apply are not all in
        // its last `changes`.
        let unapplied = std::mem::replace(&mut kernel.unapplied, true);
        kernel.compiler.compile(&snapshot);
        let (ruleset, changes) = (kernel.compiler.ruleset(), kernel.compiler.changes());
        let table = &mut kernel.table;
        let outcome = self.nodenet.change(|| {
            self.nodenet.run(|| match (whole, unapplied) {
                (true, _) => table.replace_with(ruleset.clone()),
                (false, true) => table.apply(ruleset.clone()),
                (false, false) => table.apply_changes(ruleset, changes),
            })
        });
        let ok = matches!(outcome, Some(Ok(Ok(_))));
        kernel.unapplied = !ok;
        // Kept also after a failure (the next sync starts afresh from the
        // watch): it was taken from here.
        kernel.snapshot = Arc::new(snapshot);
        kernel.overlaid = overlaid.filter(|_| ok);
        let applied = match outcome {
            None => return Err(PolicyError::Retired),
            Some(Err(e)) => return Err(PolicyError::Kernel(e.to_string())),
            Some(Ok(Err(e))) => return Err(PolicyError::Kernel(e.to_string())),
            Some(Ok(Ok(applied))) => applied,
        };
        let policies = kernel.snapshot.policies.len();
        (self.metrics.policy).set_enforced(policies, kernel.table.size());
        drop(guard);
        let took = started.elapsed();
        self.metrics.policy.sync.observe(took.as_secs_f64());
        let admitted = lock(&self.admitted).len();
        tracing::debug!(?applied, ?took, whole, admitted, "NetworkPolicy synced");
        Ok(())
    }

    /// The watched snapshot with the admitted pods laid over it (those
    /// whose attachment IPAM no longer holds dropped first), and what it
    /// was made of. When neither the watch nor the admitted pods but for
    /// additions changed since the last sync, that sync's snapshot with
    /// the additions laid over it: a pod's admission copies no snapshot.
    fn snapshot(&self, kernel: &mut Kernel, afresh: bool) -> (Snapshot, Option<Overlaid>) {
        let events = self.cache.events();
        let mut admitted = lock(&self.admitted);
        let releases = self.allocations.releases();
        if self.checked_at.swap(releases, Ordering::SeqCst) != releases {
            admitted.retain(|k| self.allocations.holds(k));
        }
        let now = Overlaid {
            events,
            removals: admitted.removals(),
        };
        if !afresh && kernel.overlaid == Some(now) {
            let last = std::mem::take(&mut kernel.snapshot);
            let mut snapshot = Arc::unwrap_or_clone(last);
            admitted.overlay_fresh(&mut snapshot, &self.node);
            return (snapshot, Some(now));
        }
        let (mut snapshot, left_out) = self.cache.snapshot(&mut kernel.memos);
        for e in left_out.iter().filter(|e| !kernel.left_out.contains(e)) {
            tracing::warn!(problem = %e, "part of a NetworkPolicy, Pod or Namespace left out");
        }
        kernel.left_out = left_out;
        admitted.overlay(&mut snapshot, &self.node);
        (snapshot, Some(now))
    }

    /// Adds what the table's counters counted since the last read to the
    /// metrics.
    fn read_counters(&self) {
        let mut kernel = lock(&self.kernel);
        let table = &mut kernel.table;
        let counters = match self.nodenet.run(|| table.counters()) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read the policy counters");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot enter the node's namespace");
                return;
            }
        };
        let snapshot = kernel.snapshot.clone();
        let by = |pod: &PodRef, direction| isolating(&snapshot, pod, direction);
        self.metrics
            .policy
            .add_counts(&counters, by, &mut kernel.last_counts);
    }
}

/// The policies that isolate `pod` in `direction`.
pub(super) fn isolating(
    snapshot: &Snapshot,
    pod: &PodRef,
    direction: PolicyType,
) -> Vec<PolicyRef> {
    let Some(found) = snapshot
        .pods
        .iter()
        .find(|p| p.namespace == pod.namespace && p.name == pod.name)
    else {
        return Vec::new();
    };
    snapshot
        .policies
        .iter()
        .filter(|p| {
            p.namespace == found.namespace
                && p.applies_to(direction)
                && p.pod_selector.matches(&found.labels)
        })
        .map(|p| PolicyRef {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        })
        .collect()
}
