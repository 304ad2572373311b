//! Error classes, retry bounds and the uninstall decision; the client
//! against a stand-in API server: tests/tests/kube_store.rs.

use std::time::Duration;

use super::register::REPLAN_JITTER;
use super::{KubeError, Removal, WATCH_RETRY_MAX, WATCH_RETRY_MIN};
use crate::retry::{jittered, Backoff};

fn api_error(code: u16) -> KubeError {
    KubeError::Api {
        what: "test",
        source: Box::new(kube::Error::Api(kube::core::ErrorResponse {
            status: "Failure".into(),
            message: String::new(),
            reason: String::new(),
            code,
        })),
    }
}

#[test]
fn classifies_api_errors() {
    assert!(api_error(409).is_conflict());
    assert!(!api_error(409).is_transient());
    assert!(api_error(503).is_transient());
    assert!(api_error(429).is_transient());
    assert!(!api_error(403).is_transient());
    assert!(!KubeError::NodeNotFound("n".into()).is_transient());
}

#[test]
fn watch_retries_stay_short_and_start_over_after_a_success() {
    let mut b = Backoff::new(WATCH_RETRY_MIN, WATCH_RETRY_MAX);
    let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
    assert_eq!(delays[0], Duration::from_millis(100));
    assert_eq!(delays[3], Duration::from_millis(800));
    assert_eq!(delays[7], WATCH_RETRY_MAX);
    b.reset();
    assert_eq!(b.next_delay(), WATCH_RETRY_MIN);
    for d in delays {
        let j = jittered(d);
        assert!(j >= d / 2 && j <= d, "{j:?} outside [{:?}, {d:?}]", d / 2);
    }
}

#[test]
fn uninstall_only_when_the_daemonset_goes_or_our_credentials_do() {
    assert!(matches!(
        Removal::from_answer(Ok(None)),
        Removal::Requested(_)
    ));
    assert!(matches!(
        Removal::from_answer(Ok(Some(true))),
        Removal::Requested(_)
    ));
    assert_eq!(Removal::from_answer(Ok(Some(false))), Removal::NotRequested);
    for code in [401, 403] {
        assert!(matches!(
            Removal::from_answer(Err(&api_error(code))),
            Removal::Requested(_)
        ));
    }
    for code in [500, 503, 429] {
        assert!(matches!(
            Removal::from_answer(Err(&api_error(code))),
            Removal::Unknown(_)
        ));
    }
    let timeout = KubeError::Timeout {
        what: "t",
        after: Duration::from_secs(1),
    };
    assert!(matches!(
        Removal::from_answer(Err(&timeout)),
        Removal::Unknown(_)
    ));
}

#[test]
fn jitter_is_bounded() {
    for attempt in 1..40 {
        assert!(REPLAN_JITTER.delay(attempt, "n") <= Duration::from_secs(1));
    }
}
