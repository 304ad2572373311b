//! bench-policy: NetworkPolicy on one node at scale (issue 14's
//! benchmarks).
//!
//! ```text
//! cargo build --release -p podnet-tests --bin bench-policy
//! cargo run --release -p podnet-tests --bin bench-policy -- \
//!     [--policies 1000] [--pods 5000] [--remote-pods 1000] [--namespaces 50] \
//!     [--changes 200] [--scratch-changes 50] [--seconds 2] [--rounds 15] [--parts a,b] \
//!     [--out FILE] [--quick]
//! ```
//!
//! Method (see also bench/README.md):
//! - a simulated cluster ([`cluster`]): namespaces, `--pods` pods on this
//!   node and `--remote-pods` on others (no interfaces: objects of the
//!   snapshot), `--policies` NetworkPolicies of five common kinds, and three
//!   real pods (client and server on this node, one remote);
//! - a. change -> enforced ([`changes`]): in a node namespace of its own, the
//!   cluster compiled and applied once (the first, full apply), then one
//!   change at a time (a rule added, a policy deleted, a pod's label
//!   changed, a pod added, a pod removed, in turn) compiled and applied to
//!   the kernel's table, timed until the netlink transaction is acked; with
//!   the `Compiler` and `apply_changes`, then with `compile` and `apply`;
//! - b. new connections per second ([`conns`]): the same bridged node three
//!   times (no table, podnet's table for no policies, the table for the
//!   cluster's policies), a server pod accepting and a client opening and
//!   resetting connections for `--seconds`, on four paths (pod to pod over
//!   the bridge, and a remote pod routed through the node, each way), the
//!   configurations in turn, `--rounds` times.
//!
//! Traffic goes only between namespaces this program creates; the
//! machine's own namespace is never touched. A failure (or Ctrl-C) still
//! removes every namespace it created (`pnt<pid>-*`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod changes;
mod cluster;
mod conns;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use podnet_tests::bench::cli::count;
use podnet_tests::bench::{self, BenchOpts, Common, Session};
use podnet_tests::bridged::{pod_addrs, REMOTE4};
use podnet_tests::netns::TestNetns;

use changes::{ChangeRun, Mode, Plan};
use cluster::{Real, Sizes};
use conns::{Config, Rate, Topology, CLIENT_HOST, CONFIGS, PATHS, SERVER_HOST};

/// The node the rules are for.
const NODE: &str = "bench-node";
/// The real pods' namespace.
const REAL_NS: &str = "bench";
/// The port the real pods serve and are allowed on.
const PORT: u16 = 8080;
/// Connections before each path's first measured run, unmeasured.
const WARMUP_RUN: Duration = Duration::from_millis(300);

const TARGET_P99_MS: f64 = 100.0;
const TARGET_RATIO: f64 = 0.90;

#[derive(Parser)]
#[command(
    about = "NetworkPolicy at scale: change -> enforced latency, and new connections \
                   per second with and without policies (needs root)"
)]
struct Opts {
    /// NetworkPolicies in the cluster [--quick: 100].
    #[arg(long, default_value_t = 1000, default_value_if("quick", "true", "100"),
          value_parser = count(1..=100_000))]
    policies: usize,
    /// Simulated pods on this node [--quick: 500].
    #[arg(long, default_value_t = 5000, default_value_if("quick", "true", "500"),
          value_parser = count(1..=40_000))]
    pods: usize,
    /// Simulated pods on other nodes [--quick: 100].
    #[arg(long, default_value_t = 1000, default_value_if("quick", "true", "100"),
          value_parser = count(0..=500_000))]
    remote_pods: usize,
    /// Namespaces the pods and policies spread over [--quick: 10].
    #[arg(long, default_value_t = 50, default_value_if("quick", "true", "10"),
          value_parser = count(1..=10_000))]
    namespaces: usize,
    /// Changes timed with the Compiler and apply_changes, after warm-up
    /// ones [--quick: 25].
    #[arg(long, default_value_t = 200, default_value_if("quick", "true", "25"),
          value_parser = count(1..=100_000))]
    changes: usize,
    /// Changes timed with compile and apply from scratch [--quick: 10].
    #[arg(long, default_value_t = 50, default_value_if("quick", "true", "10"),
          value_parser = count(0..=100_000))]
    scratch_changes: usize,
    /// Unmeasured changes before each mode's measured ones.
    #[arg(long, default_value_t = 5, value_parser = count(0..=1000))]
    warmup: usize,
    /// Seconds of connections per path, configuration and round [--quick: 1].
    #[arg(long, default_value_t = 2, default_value_if("quick", "true", "1"),
          value_parser = count(1..=600))]
    seconds: usize,
    /// Rounds of every path and configuration [--quick: 1].
    #[arg(long, default_value_t = 15, default_value_if("quick", "true", "1"),
          value_parser = count(1..=100))]
    rounds: usize,
    /// The parts to run: a (change -> enforced), b (connections per
    /// second).
    #[arg(long, value_delimiter = ',', default_values_t = ['a', 'b'])]
    parts: Vec<char>,
    /// Seed of the changes' random picks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
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
    sizes: Sizes,
    changes: Vec<ChangeRun>,
    /// Per topology: its configuration and the client's and server's rules.
    topologies: Vec<(Config, Option<(usize, usize)>)>,
    /// Per round, path and configuration.
    rates: Vec<(usize, conns::Path, Config, Rate)>,
    /// The ruleset of the cluster as first compiled: entries, isolated
    /// directions, peer sets.
    ruleset: (usize, usize, usize),
}

fn run(opts: &Opts, session: &Session) -> Result<String, String> {
    let sizes = Sizes {
        namespaces: opts.namespaces,
        local: opts.pods,
        remote: opts.remote_pods,
        policies: opts.policies,
    };
    let real = Real {
        client: conns::ip4(&pod_addrs(CLIENT_HOST).0),
        server: conns::ip4(&pod_addrs(SERVER_HOST).0),
        remote: conns::ip4(REMOTE4),
    };
    let mut snapshot = cluster::snapshot(&sizes, &real);
    let ruleset = ruleset_size(&snapshot);
    eprintln!(
        "bench-policy: {} policies, {} pods; {} entries",
        snapshot.policies.len(),
        snapshot.pods.len(),
        ruleset.0
    );
    let node = TestNetns::new("chg");
    let mut changes = Vec::new();
    for (mode, n) in [
        (Mode::Incremental, opts.changes),
        (Mode::Scratch, opts.scratch_changes),
    ] {
        if n == 0 || !opts.parts.contains(&'a') {
            continue;
        }
        eprintln!("bench-policy: a. {n} changes, {}", mode.describe());
        let plan = Plan {
            sizes,
            changes: n,
            warmup: opts.warmup,
            seed: opts.seed,
        };
        changes.push(changes::run(&node, &mut snapshot, &plan, mode)?);
    }
    drop(node);

    let mut topologies = Vec::new();
    let mut rates = Vec::new();
    if opts.parts.contains(&'b') {
        eprintln!("bench-policy: b. connections per second");
        let policies = cluster::snapshot(&sizes, &real);
        let none = cluster::snapshot(
            &Sizes {
                policies: 0,
                ..sizes
            },
            &real,
        );
        topologies = (CONFIGS.iter())
            .map(|c| Topology::new(*c, "pol", &policies, &none))
            .collect();
        for t in topologies.iter().filter(|t| t.config == Config::Policies) {
            t.check_blocked()?;
        }
        rates = measure(&topologies, opts)?;
    }
    let results = Results {
        sizes,
        changes,
        topologies: topologies
            .iter()
            .map(|t| (t.config, t.table_size))
            .collect(),
        rates,
        ruleset,
    };
    Ok(report::report(session, opts, &results))
}

/// Every path through every topology, the topologies in turn (the order
/// rotated per round), `--rounds` times.
fn measure(
    topologies: &[Topology],
    opts: &Opts,
) -> Result<Vec<(usize, conns::Path, Config, Rate)>, String> {
    let duration = Duration::from_secs(opts.seconds as u64);
    for t in topologies {
        for path in PATHS {
            t.rate(path, WARMUP_RUN)?;
        }
    }
    let mut out = Vec::new();
    for round in 0..opts.rounds {
        for path in PATHS {
            for k in 0..topologies.len() {
                let t = &topologies[(k + round) % topologies.len()];
                let rate = t.rate(path, duration)?;
                eprintln!(
                    "bench-policy: round {round} {path:?} {:?}: {:.0} conn/s ({} slow, {} failed)",
                    t.config,
                    rate.per_sec(),
                    rate.slow,
                    rate.errors
                );
                out.push((round, path, t.config, rate));
            }
        }
    }
    Ok(out)
}

fn ruleset_size(snapshot: &podnetd::policy::Snapshot) -> (usize, usize, usize) {
    let rs = podnetd::policy::compile(snapshot, NODE);
    let isolated = (rs.pods.values())
        .map(|r| usize::from(r.ingress.is_some()) + usize::from(r.egress.is_some()))
        .sum();
    (rs.pods.len(), isolated, rs.peer_sets.len())
}

fn main() -> ExitCode {
    bench::main::<Opts>("bench-policy", run)
}
