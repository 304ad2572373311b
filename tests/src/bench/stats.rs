//! Latency figures: nearest-rank percentiles (the value of a real sample,
//! never an interpolation between two), means, and ratios between two
//! subjects' figures.

use std::time::Duration;

/// One set of timed operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Summary {
    /// `None` without samples: there is no figure to report.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let total: Duration = sorted.iter().sum();
        Some(Self {
            n,
            p50: percentile(&sorted, 0.50)?,
            p99: percentile(&sorted, 0.99)?,
            max: *sorted.last()?,
            mean: total / u32::try_from(n).ok()?,
        })
    }
}

/// The nearest-rank percentile `p` (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let n = sorted.len();
    let rank = (p * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n.max(1)) - 1).copied()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Operations per second over a phase's wall time.
pub fn per_sec(ops: usize, wall: Duration) -> f64 {
    ops as f64 / wall.as_secs_f64()
}

/// `a / b`; `None` when `b` is 0 (the ratio means nothing).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then_some(a / b)
}

/// Two decimals, or "n/a".
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".to_string(), |r| format!("{r:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(v: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        v.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn nearest_rank() {
        let s = Summary::of(&millis((1..=100).rev())).unwrap();
        assert_eq!(s.n, 100);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.mean, Duration::from_micros(50_500));
        // Ten samples: p99 is the largest, p50 the fifth.
        let s = Summary::of(&millis(1..=10)).unwrap();
        assert_eq!(
            (s.p50, s.p99),
            (Duration::from_millis(5), Duration::from_millis(10))
        );
    }

    #[test]
    fn one_sample_and_none() {
        let s = Summary::of(&millis([7])).unwrap();
        assert_eq!((s.p50, s.p99, s.max, s.mean), (s.max, s.max, s.max, s.max));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn ratios() {
        assert_eq!(fmt_ratio(ratio(1.0, 4.0)), "0.25");
        assert_eq!(fmt_ratio(ratio(1.0, 0.0)), "n/a");
    }
}
