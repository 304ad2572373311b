//! Whether the cluster store answers, as last seen. The backends mark it
//! lost where their watch breaks and reached where it delivers again (not
//! where its events are consumed: events queued before a break would mark
//! a lost store reached); `agent` probes while it is lost, since a watch
//! that resumes quietly (no change meanwhile) delivers nothing.

use std::sync::{Arc, Mutex, PoisonError};

/// Shared by the backend, the reconciler and readiness; cloning shares it.
#[derive(Clone, Debug)]
pub struct StoreReach {
    /// `None` while the store answers; otherwise why it does not.
    lost: Arc<Mutex<Option<String>>>,
}

impl Default for StoreReach {
    /// Lost until the first answer: nothing is known of the store yet.
    fn default() -> Self {
        Self {
            lost: Arc::new(Mutex::new(Some("not contacted yet".into()))),
        }
    }
}

impl StoreReach {
    /// The store answered.
    pub fn reached(&self) {
        if let Some(why) = self.slot().take() {
            tracing::info!(was = %why, "the cluster store answers again");
        }
    }

    /// The store did not answer; `why` is kept for `/readyz`.
    pub fn lost(&self, why: impl std::fmt::Display) {
        *self.slot() = Some(why.to_string());
    }

    /// `Err(why)` while the store is lost.
    pub fn state(&self) -> Result<(), String> {
        self.slot().clone().map_or(Ok(()), Err)
    }

    pub fn is_lost(&self) -> bool {
        self.slot().is_some()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Only ever held to read or swap a string: a panic cannot leave it
        // half-written.
        self.lost.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_until_reached_then_lost_again_with_the_reason() {
        let reach = StoreReach::default();
        assert_eq!(reach.state(), Err("not contacted yet".into()));
        reach.reached();
        assert_eq!(reach.state(), Ok(()));
        let shared = reach.clone();
        shared.lost("watch failed: connection refused");
        assert!(reach.is_lost());
        assert_eq!(
            reach.state(),
            Err("watch failed: connection refused".into())
        );
    }
}
