//! A phase of a bench: `n` operations drained from one shared queue by
//! worker threads, so a slow operation delays only its own worker, as
//! concurrent requests to a runtime would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::netns::TestNetns;

/// Every operation's own time and result, and the phase's wall time.
pub struct Phase<R> {
    pub ops: Vec<(Duration, R)>,
    pub wall: Duration,
}

impl<R> Phase<R> {
    /// The operations' times, in the order they ended per worker.
    pub fn times(&self) -> Vec<Duration> {
        self.ops.iter().map(|(d, _)| *d).collect()
    }
}

/// Runs `op(i)` for every i in 0..n on `threads` workers (one worker: in
/// order), each inside `netns` when given; the clock starts when every
/// worker is ready. The first error stops every worker and is returned.
pub fn run_phase<R: Send>(
    n: usize,
    threads: usize,
    netns: Option<&TestNetns>,
    op: &(dyn Fn(usize) -> Result<R, String> + Sync),
) -> Result<Phase<R>, String> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let worker = || {
        let mut mine = Vec::new();
        barrier.wait();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            let result = if cleanup::aborting() {
                Err("aborting: no new operation".to_string())
            } else {
                let start = Instant::now();
                op(i).map(|r| (start.elapsed(), r))
            };
            match result {
                Ok(timed) => mine.push(timed),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(mine)
    };
    let (wall, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| match netns {
                    Some(ns) => ns.run(worker),
                    None => worker(),
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<Result<Vec<(Duration, R)>, String>> = handles
            .into_iter()
            .map(|h| h.join().expect("a bench worker panicked"))
            .collect();
        (start.elapsed(), results)
    });
    let mut ops = Vec::with_capacity(n);
    for r in results {
        ops.extend(r?);
    }
    Ok(Phase { ops, wall })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_once_and_the_first_error() {
        let phase = run_phase(100, 4, None, &|i| Ok(i)).unwrap();
        let mut seen: Vec<usize> = phase.ops.iter().map(|(_, i)| *i).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let one = run_phase(5, 1, None, &|i| Ok(i)).unwrap();
        assert_eq!(
            one.ops.iter().map(|(_, i)| *i).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let err = run_phase(100, 4, None, &|i| {
            if i == 7 {
                Err("seven".into())
            } else {
                Ok(i)
            }
        });
        assert_eq!(err.err().as_deref(), Some("seven"));
    }
}
