//! bench-cni: ADD and DEL latency of podnet side by side with the reference
//! `bridge` plugin, both on the same host-local IPAM configuration, plus
//! host-local run alone, so that each plugin's own part (its total minus
//! the IPAM plugin it execs) can be compared; and podnet on its own IPAM
//! (`podnet-ipam`, served by a podnetd in its node namespace, which podnet
//! asks over the daemon's socket in process), whose total is compared with
//! bridge + host-local's (issue 3's target).
//!
//! ```text
//! cargo build --release --workspace
//! export PODNET_BIN_DIR=$(scripts/build-static)   # as shipped: static-pie
//! cargo run --release -p podnet-tests --bin bench-cni -- \
//!     [--pods 200] [--concurrency 8] [--rounds 2] [--out FILE] [--quick]
//! ```
//!
//! Method (see also bench/README.md):
//! - each plugin gets a node network namespace of its own (plus a host-local
//!   data directory) and, for podnet and bridge, one pod namespace per pod;
//!   all namespaces exist before any timing starts, nothing runs in the
//!   machine's own namespace and no packet is sent;
//! - one operation is timed from spawning the plugin process to its exit
//!   (stdin written, stdout/stderr read), on a thread that already entered
//!   the node namespace, as a runtime would run it there;
//! - phases: sequential ADD of every pod, sequential DEL, then the same with
//!   `--concurrency` worker threads; a phase runs for each plugin in turn,
//!   with the order rotated per phase and per round, and the whole sequence
//!   runs `--rounds` times; the last round is the headline, earlier rounds
//!   are printed too (round 1 includes first-use costs such as creating the
//!   bridge);
//! - every operation must succeed; after each DEL phase no pod interface or
//!   host veth may remain and host-local (or podnetd) must hold no
//!   reservation.
//!
//! A failure (or Ctrl-C) still removes every namespace this process created
//! and kills the podnetd it started (by its pid): the release profile aborts
//! on panic, so drops would not run; a panic hook and a signal thread clean
//! up instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod report;
mod subject;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use podnet_tests::bench::cli::count;
use podnet_tests::bench::stats::ms;
use podnet_tests::bench::work::run_phase;
use podnet_tests::bench::{self, BenchOpts, Common, Concurrency, Session, Summary};
use podnet_tests::bins;

use subject::Subject;

/// The network name: host-local keeps its reservations in `dataDir/NAME`.
const NETWORK: &str = "bench";
/// A /16 holds any `--pods` this bench is meant for; every plugin has a node
/// namespace of its own, so they can all use the same range.
const RANGE: &str = "10.88.0.0/16";
/// Debian's host-local 1.1.1 speaks CNI up to 1.0.0.
const CNI_VERSION: &str = "1.0.0";
const IFNAME: &str = "eth0";
/// podnetd's cluster range for podnet + podnet-ipam: IPv4 only, like the
/// host-local configuration (the harness default is dual-stack).
const DAEMON_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The bridge podnetd creates at start (its default `--bridge`, which
/// TestDaemon keeps), with the node CIDR's gateway address: podnet +
/// podnet-ipam attaches pods to it, as podnetd's own conflist says; another
/// bridge would carry the same gateway address a second time.
const DAEMON_BRIDGE: &str = "podnet0";
/// The most pods podnetd's node CIDR can take inside DAEMON_CLUSTER_CIDR
/// (30000 max pods -> a /16 node CIDR).
const DAEMON_MAX_PODS: u64 = 30_000;
/// Targets, for podnet's own part relative to bridge's own part (both on
/// host-local) and for podnet + podnet-ipam's total relative to bridge +
/// host-local's total.
const ADD_TARGET: f64 = 0.33;
/// NetworkPolicies in the API for the NetworkPolicy kind, every pod
/// selected by some (issue 14: ADD with the engine on stays within
/// ADD_TARGET of bridge + host-local).
const POLICIES: usize = 100;
const DEL_TARGET: f64 = 1.0;

#[derive(Parser)]
#[command(about = "CNI ADD/DEL latency of podnet vs the reference bridge plugin (needs root)")]
struct Opts {
    /// Pods per plugin, each a network namespace of its own [--quick: 10].
    #[arg(long, default_value_t = 200, default_value_if("quick", "true", "10"),
          value_parser = count(1..=DAEMON_MAX_PODS))]
    pods: usize,
    #[command(flatten)]
    concurrency: Concurrency,
    /// Times the whole sequence of phases runs; the last round is the
    /// headline [--quick: 1].
    #[arg(long, default_value_t = 2, default_value_if("quick", "true", "1"),
          value_parser = count(1..=100))]
    rounds: usize,
    #[command(flatten)]
    common: Common,
}

impl BenchOpts for Opts {
    fn common(&self) -> &Common {
        &self.common
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Podnet,
    PodnetIpam,
    /// podnet + podnet-ipam with podnetd on the Kubernetes store (a fake
    /// API server, in the node's namespace with podnetd, as the
    /// DaemonSet's hostNetwork podnetd reaches the API) enforcing
    /// NetworkPolicy: each ADD returns once the pod's rules are in the
    /// kernel (issue 14).
    PodnetPolicy,
    Bridge,
    HostLocal,
}

const KINDS: usize = 5;

impl Kind {
    const ALL: [Kind; KINDS] = [
        Kind::Podnet,
        Kind::PodnetIpam,
        Kind::PodnetPolicy,
        Kind::Bridge,
        Kind::HostLocal,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::Podnet => "podnet + host-local",
            Kind::PodnetIpam => "podnet + podnet-ipam",
            Kind::PodnetPolicy => "podnet + podnet-ipam, NetworkPolicy on",
            Kind::Bridge => "bridge + host-local",
            Kind::HostLocal => "host-local alone",
        }
    }

    fn index(self) -> usize {
        Kind::ALL.iter().position(|k| *k == self).unwrap()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    SeqAdd,
    SeqDel,
    ConcAdd,
    ConcDel,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::SeqAdd, Phase::SeqDel, Phase::ConcAdd, Phase::ConcDel];

    fn verb(self) -> &'static str {
        match self {
            Phase::SeqAdd | Phase::ConcAdd => "ADD",
            Phase::SeqDel | Phase::ConcDel => "DEL",
        }
    }

    fn concurrent(self) -> bool {
        matches!(self, Phase::ConcAdd | Phase::ConcDel)
    }

    fn threads(self, opts: &Opts) -> usize {
        if self.concurrent() {
            opts.concurrency.concurrency
        } else {
            1
        }
    }

    fn title(self, opts: &Opts) -> String {
        if self.concurrent() {
            format!(
                "Concurrent {} ({} pods, {} workers)",
                self.verb(),
                opts.pods,
                opts.concurrency.concurrency
            )
        } else {
            format!("Sequential {} ({} pods)", self.verb(), opts.pods)
        }
    }
}

/// The statistics the report compares.
#[derive(Clone, Copy)]
enum Stat {
    P50,
    P99,
    Mean,
}

impl Stat {
    fn label(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P99 => "p99",
            Stat::Mean => "mean",
        }
    }

    /// In ms.
    fn of(self, s: &Summary) -> f64 {
        ms(match self {
            Stat::P50 => s.p50,
            Stat::P99 => s.p99,
            Stat::Mean => s.mean,
        })
    }
}

/// One phase of one round, every plugin.
struct PhaseResult {
    phase: Phase,
    order: Vec<Kind>,
    /// Indexed like `Kind::ALL`.
    stats: [Summary; KINDS],
    walls: [Duration; KINDS],
}

impl PhaseResult {
    fn of(&self, kind: Kind) -> Summary {
        self.stats[kind.index()]
    }

    /// The plugin's figure minus host-local's at the same statistic, never
    /// below 0: what the plugin costs on top of the IPAM plugin it execs.
    fn own(&self, kind: Kind) -> Summary {
        let (total, ipam) = (self.of(kind), self.of(Kind::HostLocal));
        Summary {
            p50: total.p50.saturating_sub(ipam.p50),
            p99: total.p99.saturating_sub(ipam.p99),
            mean: total.mean.saturating_sub(ipam.mean),
            ..total
        }
    }
}

/// Rotates the plugin order per phase and round, so no plugin always runs
/// first (cold caches) or last (warm caches, thermal drift).
fn order(round: usize, phase_index: usize) -> Vec<Kind> {
    let mut kinds = Kind::ALL.to_vec();
    kinds.rotate_left((round + phase_index) % Kind::ALL.len());
    kinds
}

fn container_id(round: usize, phase: Phase, i: usize) -> String {
    let mode = if phase.concurrent() { "c" } else { "s" };
    format!("bench-r{round}-{mode}-{i:05}")
}

/// One plugin's phase: every pod's operation timed, then the node checked.
fn measure(
    s: &Subject,
    phase: Phase,
    round: usize,
    opts: &Opts,
) -> Result<(Summary, Duration), String> {
    eprintln!(
        "bench-cni: round {round}: {} {}",
        phase.title(opts),
        s.kind.label()
    );
    let verb = phase.verb();
    let done = run_phase(opts.pods, phase.threads(opts), Some(&s.node.ns), &|i| {
        s.op(verb, &container_id(round, phase, i), i)
    })?;
    s.check_state(verb == "ADD", opts.pods)?;
    // The plugin's own time (spawn to exit), not the check of its result.
    let ops: Vec<Duration> = done.ops.iter().map(|(_, took)| *took).collect();
    Ok((Summary::of(&ops).ok_or("no operation")?, done.wall))
}

/// One round: every phase, each plugin in turn.
fn round(subjects: &[Subject], round: usize, opts: &Opts) -> Result<Vec<PhaseResult>, String> {
    let mut results = Vec::new();
    for (p, phase) in Phase::ALL.into_iter().enumerate() {
        let order = order(round - 1, p);
        let mut measured: [Option<(Summary, Duration)>; KINDS] = [None; KINDS];
        for kind in &order {
            let i = kind.index();
            measured[i] = Some(measure(&subjects[i], phase, round, opts)?);
        }
        let measured = measured.map(|m| m.unwrap());
        results.push(PhaseResult {
            phase,
            order,
            stats: measured.map(|(s, _)| s),
            walls: measured.map(|(_, w)| w),
        });
    }
    Ok(results)
}

fn run(opts: &Opts, session: &Session) -> Result<String, String> {
    // Fails early, before any work, when the binary is missing.
    let _ = bins::workspace_bin("podnetd");
    eprintln!(
        "bench-cni: creating {KINDS} node namespaces, {} pod namespaces, two podnetd and a fake API server",
        (KINDS - 1) * opts.pods
    );
    let subjects: Vec<Subject> = Kind::ALL
        .iter()
        .map(|k| Subject::new(*k, opts.pods))
        .collect();
    let rounds = (1..=opts.rounds)
        .map(|r| round(&subjects, r, opts))
        .collect::<Result<Vec<_>, _>>()?;
    let text = report::report(session, opts, &subjects, &rounds);
    eprintln!("bench-cni: stopping podnetd, removing namespaces");
    drop(subjects);
    Ok(text)
}

fn main() -> ExitCode {
    bench::main::<Opts>("bench-cni", run)
}
