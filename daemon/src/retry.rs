//! Waiting before trying again: exponential backoff for a peer that is
//! unavailable, and random jitter so that nodes which failed together do
//! not come back together. Every retry loop in the daemon uses these, so
//! each loop states only its own bounds.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

/// Exponential backoff: `min`, doubling after every failure, at most `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A `max` below `min` is raised to it, so a caller deriving the cap
    /// (e.g. from a lease TTL) cannot make the delay shrink.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay before the next attempt; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// After a success: the next failure starts from the shortest delay.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// `delay` scaled to a random point between its half and itself, so nodes
/// that lost a peer together do not come back in lockstep.
pub fn jittered(delay: Duration) -> Duration {
    let half = u64::try_from(delay.as_nanos() / 2).unwrap_or(u64::MAX);
    delay / 2 + Duration::from_nanos(random(Instant::now()) % half.saturating_add(1))
}

/// A random number, different on every call; `seed` adds what tells the
/// callers apart (a node's name), should two of them ask at one instant.
/// std's per-hasher random keys are enough: this spreads retries, it
/// guards no secret.
pub fn random(seed: impl Hash) -> u64 {
    RandomState::new().hash_one((seed, Instant::now()))
}

/// The bound of a random pause after losing a race, growing with the
/// attempt: `base + attempt * step`, at most `max`. Each store keeps its
/// own: how long a round of its race takes sets how far apart the losers
/// must spread.
#[derive(Clone, Copy, Debug)]
pub struct AttemptJitter {
    pub base: Duration,
    pub step: Duration,
    pub max: Duration,
}

impl AttemptJitter {
    /// The bound for `attempt`.
    pub fn cap(&self, attempt: u32) -> Duration {
        self.base
            .saturating_add(self.step.saturating_mul(attempt))
            .min(self.max)
    }

    /// A random whole number of milliseconds from 0 to [`Self::cap`], so
    /// that `node`s which lost the same race do not look again at the
    /// same instant.
    pub fn delay(&self, attempt: u32, node: &str) -> Duration {
        let cap_ms = u64::try_from(self.cap(attempt).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(random((node, attempt)) % cap_ms.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn backoff_cap_below_its_start_is_raised_to_it() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(10));
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jittered_stays_between_half_and_whole() {
        for ms in [0, 1, 100, 800, 30_000] {
            let d = Duration::from_millis(ms);
            for _ in 0..100 {
                let j = jittered(d);
                assert!(j >= d / 2 && j <= d, "{j:?} outside [{:?}, {d:?}]", d / 2);
            }
        }
    }

    #[test]
    fn attempt_jitter_grows_to_its_cap() {
        let jitter = AttemptJitter {
            base: Duration::from_millis(50),
            step: Duration::from_millis(50),
            max: Duration::from_secs(1),
        };
        assert_eq!(jitter.cap(1), Duration::from_millis(100));
        assert_eq!(jitter.cap(2), Duration::from_millis(150));
        assert_eq!(jitter.cap(19), Duration::from_secs(1));
        assert_eq!(jitter.cap(u32::MAX), Duration::from_secs(1));
        for attempt in [1, 5, 40, u32::MAX] {
            for _ in 0..100 {
                assert!(jitter.delay(attempt, "n") <= jitter.cap(attempt));
            }
        }
    }
}
