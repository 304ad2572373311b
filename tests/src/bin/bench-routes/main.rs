//! bench-routes: how fast podnetd turns the cluster store into kernel
//! routes, and what it costs in memory (issue 4's benchmarks).
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p podnet-tests --bin bench-routes -- \
//!     [--joins 200] [--sizes 1000,5000] [--size-joins 50] [--out FILE] [--quick]
//! ```
//!
//! Method (see also bench/README.md):
//! - a real etcd on loopback (`TestEtcd`) and ONE real node: a network
//!   namespace whose underlay `eth0` holds 172.20.0.10/16 (the other end of
//!   the veth sits in a namespace of its own), with its podnetd
//!   (`--store etcd --netns`, cluster range 10.0.0.0/8, max pods 110, so
//!   /24 node CIDRs);
//! - every other node is fake: the bench writes its record
//!   (`/podnet/nodes/NAME`, NodeRecord JSON) and its CIDR key
//!   (`/podnet/cidrs/10.x.y.0_24` -> NAME) in one transaction, on a lease,
//!   as a real claim does; the fake nodes' addresses are 172.20.a.b, on the
//!   node's segment, so each gets a host-gw route;
//! - routes are observed with a netlink dump of the node namespace's routes
//!   (protocol 157 only), every millisecond;
//! 1. join -> route ([`joins`]): with podnetd running and no peer, one fake
//!    node is put and timed (from issuing the etcd transaction) until its
//!    route is in the kernel, then deleted and timed until the route is gone;
//! 2. cold start ([`cold`]): for each size, a FRESH etcd, node namespace and
//!    podnetd state (the kernel keeps podnet's routes across a restart by
//!    design, so a restart on the same node would not be cold): the fake
//!    nodes are written first, then podnetd is spawned and timed until the
//!    first and until the last route is installed; every route is then
//!    checked;
//! 3. memory: podnetd's VmRSS and VmHWM after convergence at 0 peers and at
//!    each size;
//! 4. podnetd's own `podnet_reconcile_duration_seconds` from its metrics.
//!
//! Nothing is sent on any network but loopback (etcd, the metrics scrape).
//! A failure (or Ctrl-C) still kills etcd and podnetd by pid and removes the
//! namespaces (`pnt<pid>-*`): the release profile aborts on panic, so drops
//! would not run; a panic hook and the harness's signal thread clean up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cold;
mod joins;
mod observe;
mod peers;
mod report;
mod setup;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use podnet_tests::bench::cli::count;
use podnet_tests::bench::{self, BenchOpts, Common, Session};
use podnet_tests::bins;

const PREFIX: &str = "/podnet";
const CLUSTER_CIDR: &str = "10.0.0.0/8";
const MAX_PODS: u32 = 110;
const NODE_NAME: &str = "bench-node";
const NODE_IP: &str = "172.20.0.10";
const UNDERLAY: &str = "172.20.0.10/16";
/// The fake nodes' keys live on one lease of this TTL (longer than any run).
const FAKE_LEASE_TTL: i64 = 3600;
/// Fake nodes per etcd transaction when writing many (two keys each; etcd
/// allows 128 operations per transaction by default).
const BATCH: usize = 50;
const POLL: Duration = Duration::from_millis(1);
/// Joins and leaves before the measured ones (first watch event, caches).
const WARMUP: usize = 3;
/// A join or leave not seen by then counts as failed.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A cold start not converged by then counts as failed.
const COLD_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two measured events, so each is a lone event.
const GAP: Duration = Duration::from_millis(10);
/// Time given to a converged podnetd before reading its memory.
const SETTLE: Duration = Duration::from_millis(500);
/// Fake peers' addresses are 172.20.a.b, 250 per a.
const MAX_PEERS: u64 = 60_000;

const TARGET_JOIN_P99_MS: f64 = 100.0;
const TARGET_COLD_SIZE: usize = 5000;
const TARGET_COLD_MS: f64 = 2000.0;
const TARGET_MEM_BYTES: u64 = 50_000_000;

#[derive(Parser)]
#[command(about = "podnetd's routes: join -> route latency, cold start, memory (needs root)")]
struct Opts {
    /// Joins and leaves timed with no other peer, after 3 unmeasured
    /// [--quick: 10].
    #[arg(long, default_value_t = 200, default_value_if("quick", "true", "10"),
          value_parser = count(1..=MAX_PEERS))]
    joins: usize,
    /// Cold-start sizes in fake peers, comma-separated; the largest runs
    /// once more as the control [--quick: 100].
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 5000],
          default_value_if("quick", "true", "100"), value_parser = count(1..=MAX_PEERS))]
    sizes: Vec<usize>,
    /// Joins and leaves timed on top of each size's peers, after 3
    /// unmeasured; 0 for none [--quick: 5].
    #[arg(long, default_value_t = 50, default_value_if("quick", "true", "5"),
          value_parser = count(0..=MAX_PEERS))]
    size_joins: usize,
    #[command(flatten)]
    common: Common,
}

impl BenchOpts for Opts {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// Everything measured, for the report.
struct Results {
    joins: joins::JoinResult,
    cold: Vec<cold::ColdResult>,
    /// The largest size again, with no route dump while podnetd starts.
    control: Option<cold::ColdResult>,
}

fn run(opts: &Opts, session: &Session) -> Result<String, String> {
    // Fails early, before any work, when the binary is missing.
    let _ = bins::workspace_bin("podnetd");
    let joins = joins::bench_joins(opts.joins);
    let cold = (opts.sizes.iter())
        .map(|n| cold::bench_cold(*n, opts.size_joins, true))
        .collect();
    let control = opts
        .sizes
        .iter()
        .max()
        .map(|n| cold::bench_cold(*n, 0, false));
    let results = Results {
        joins,
        cold,
        control,
    };
    Ok(report::report(session, opts, &results))
}

fn main() -> ExitCode {
    bench::main::<Opts>("bench-routes", run)
}
