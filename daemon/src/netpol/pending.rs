//! Admissions under way while the plugin configures the pod's interface
//! (`Request::Add` with `confirm_policy`): begun when the addresses are
//! allocated, waited for by the plugin's `Request::PolicyReady` before its
//! ADD returns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::proto::PodName;
use tokio::sync::watch;

use super::{describe, lock, PolicyAgent};

/// How long an admission's outcome waits for its question: the plugin
/// asks at once, and gives up on podnetd after 15 s.
const KEPT: Duration = Duration::from_secs(60);

/// An admission's outcome: `None` while under way, then the refusal's
/// message if refused.
type Outcome = Option<Result<(), Arc<str>>>;

#[derive(Default)]
pub(super) struct Pending {
    by_key: HashMap<AttachmentKey, (Instant, watch::Receiver<Outcome>)>,
}

impl PolicyAgent {
    /// Places `pod`, which `key` just gave `ips`, under policy, without
    /// waiting: [`Self::admitted`] waits.
    pub fn begin_admit(self: &Arc<Self>, pod: PodName, key: AttachmentKey, ips: Vec<IpAddr>) {
        let (tx, rx) = watch::channel(None);
        {
            let mut pending = lock(&self.pending);
            pending
                .by_key
                .retain(|_, (since, _)| since.elapsed() < KEPT);
            pending.by_key.insert(key.clone(), (Instant::now(), rx));
        }
        let me = self.clone();
        tokio::spawn(async move {
            let outcome = me
                .admit(&pod, &key, ips)
                .await
                .map_err(|e| Arc::from(me.refused(&pod, &e)));
            let _ = tx.send(Some(outcome));
        });
    }

    /// Waits for the admission [`Self::begin_admit`] began for `key`;
    /// `None` when there is none (podnetd restarted since, or it was
    /// answered already).
    pub async fn admitted(&self, key: &AttachmentKey) -> Option<Result<(), Arc<str>>> {
        let mut rx = lock(&self.pending).by_key.remove(key)?.1;
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            // The task ended without an outcome: it panicked.
            Err(_) => Some(Err(Arc::from("the admission failed"))),
        };
        outcome
    }

    /// Counts and logs a refused admission; returns the message the
    /// plugin passes on.
    pub fn refused(&self, pod: &PodName, e: &super::PolicyError) -> String {
        self.metrics.policy.refused.inc();
        let message = format!("pod {pod} not started: {}", describe(e));
        tracing::warn!(%message, "ADD refused");
        message
    }
}
