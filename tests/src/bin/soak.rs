//! soak: pod churn on one node for a long while (10 minutes by default):
//! every cycle ADDs `--pods` pods at once, sends one UDP datagram from each
//! to its gateway (so the node tracks a connection per pod), and DELs them
//! all. Between cycles, when no pod is up, it samples what must not grow:
//! podnetd's memory, open files and threads, the database's size, and the
//! node's kernel objects (links, routes, conntrack entries, nftables rules
//! and elements).
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p podnet-tests --bin soak -- \
//!     [--seconds 600] [--pods 20] [--sample-seconds 30] [--out bench/results/soak.md] [--quick]
//! ```
//!
//! The kernel objects must be the same at the end as at the first sample,
//! after 5 s of warm-up (exit 1 otherwise); memory, open files and the database are
//! reported from start to end for a human to judge (sled's log grows in
//! segments and is reclaimed in steps).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ipnetwork::IpNetwork;
use podnet_tests::bench::cli::count;
use podnet_tests::bench::{self, BenchOpts, Common, Session, Table};
use podnet_tests::bins;
use podnet_tests::churn::{self, KernelObjects, ProcessUse};
use podnet_tests::cleanup;
use podnet_tests::daemon::{DaemonOpts, TestDaemon, BENCH_LOG};
use podnet_tests::netns::TestNetns;

#[derive(Parser)]
#[command(about = "soak: pod churn on one node, with what must stay flat sampled (needs root)")]
struct Opts {
    /// How long to churn, in seconds [--quick: 20].
    #[arg(long, default_value_t = 600, default_value_if("quick", "true", "20"))]
    seconds: u64,
    /// Pods per cycle [--quick: 4].
    #[arg(long, default_value_t = 20, default_value_if("quick", "true", "4"),
          value_parser = count(1..=1000))]
    pods: usize,
    /// Sample at the first cycle boundary after every this many seconds
    /// [--quick: 5].
    #[arg(long, default_value_t = 30, default_value_if("quick", "true", "5"))]
    sample_seconds: u64,
    #[command(flatten)]
    common: Common,
}

impl BenchOpts for Opts {
    fn common(&self) -> &Common {
        &self.common
    }
}

const WARM_UP: Duration = Duration::from_secs(5);
/// A plugin that has not ended after this fails the run.
const PLUGIN_LIMIT: Duration = Duration::from_secs(30);

struct Sample {
    at: Duration,
    cycles: usize,
    daemon: ProcessUse,
    db_bytes: u64,
    links: usize,
    kernel: KernelObjects,
    /// Connections tracked while the cycle's pods were up.
    conntrack_busy: Option<u64>,
}

fn main() -> ExitCode {
    bench::main::<Opts>("soak", run)
}

/// The node under churn: podnetd, its pods' namespaces, and what the
/// samples read.
struct Node {
    ns: TestNetns,
    daemon: TestDaemon,
    pid: u32,
    conf: Vec<u8>,
    node_cidrs: Vec<IpNetwork>,
    pods: Vec<TestNetns>,
    /// The bridge's address, the first host of the node CIDR.
    gateway: Ipv4Addr,
}

impl Node {
    fn start(pods: usize) -> Result<Self, String> {
        let ns = TestNetns::new("node");
        let daemon = TestDaemon::start(
            &ns,
            DaemonOpts {
                cluster_cidr: "10.244.0.0/16".into(),
                log: BENCH_LOG.into(),
                ..DaemonOpts::default()
            },
        );
        let node_cidrs = daemon.allocations_cidrs();
        let gateway = node_cidrs
            .iter()
            .find_map(|c| match c {
                IpNetwork::V4(n) => Some(Ipv4Addr::from(u32::from(n.network()) + 1)),
                IpNetwork::V6(_) => None,
            })
            .ok_or("no IPv4 node CIDR")?;
        Ok(Self {
            pid: daemon.pid().ok_or("podnetd is not running")?,
            conf: churn::conf(&daemon),
            pods: (0..pods).map(|_| TestNetns::new("pod")).collect(),
            ns,
            daemon,
            node_cidrs,
            gateway,
        })
    }

    /// One cycle: every pod ADDed at once, one datagram from each, then
    /// every pod DELed at once. Returns the connections tracked while the
    /// pods were up.
    fn cycle(&self, cycle: usize) -> Result<Option<u64>, String> {
        let ids: Vec<String> = (0..self.pods.len())
            .map(|i| format!("soak-{cycle}-{i}"))
            .collect();
        let spawn = |verb| -> Vec<_> {
            (self.pods.iter().zip(&ids))
                .map(|(p, id)| churn::spawn_plugin(&self.ns, verb, id, p.path(), &self.conf))
                .collect()
        };
        for (r, p) in spawn("ADD").into_iter().zip(&self.pods) {
            let ended = r.finish(PLUGIN_LIMIT)?;
            if ended.address.is_none() {
                return Err(format!(
                    "ADD {} failed: {}",
                    ended.container_id, ended.stdout
                ));
            }
            ping_gateway(p, self.gateway)?;
        }
        let busy = churn::kernel_objects(&self.ns, &self.node_cidrs).conntrack;
        for r in spawn("DEL") {
            let ended = r.finish(PLUGIN_LIMIT)?;
            if !ended.ok {
                return Err(format!(
                    "DEL {} failed: {}",
                    ended.container_id, ended.stdout
                ));
            }
        }
        Ok(busy)
    }

    fn sample(&self, at: Duration, cycles: usize, busy: Option<u64>) -> Result<Sample, String> {
        let s = Sample {
            at,
            cycles,
            daemon: churn::process_use(self.pid).ok_or("podnetd is gone")?,
            db_bytes: churn::dir_bytes(&self.daemon.state_dir()),
            links: self.ns.link_names().len(),
            kernel: churn::kernel_objects(&self.ns, &self.node_cidrs),
            conntrack_busy: busy,
        };
        eprintln!(
            "soak: {:>4.0} s, {cycles} cycles, rss {} KiB, {} files, db {} B, {:?}",
            s.at.as_secs_f64(),
            s.daemon.rss_kib,
            s.daemon.open_files,
            s.db_bytes,
            s.kernel
        );
        Ok(s)
    }
}

/// Cycles until `--seconds` have passed, sampled every `--sample-seconds`
/// (the first after the warm-up) and once more at the end.
fn churn(opts: &Opts, node: &Node) -> Result<Vec<Sample>, String> {
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    // The bridge's own IPv6 link-local address (and its route) appear a
    // moment after its first port: the baseline is taken after a warm-up.
    let mut next_sample = WARM_UP;
    for cycles in 1.. {
        let busy = node.cycle(cycles - 1)?;
        let done = started.elapsed() >= Duration::from_secs(opts.seconds) && !samples.is_empty();
        if started.elapsed() >= next_sample || done {
            next_sample += Duration::from_secs(opts.sample_seconds);
            samples.push(node.sample(started.elapsed(), cycles, busy)?);
        }
        if done {
            break;
        }
        if cleanup::stopping() {
            return Err("interrupted".into());
        }
    }
    Ok(samples)
}

fn run(opts: &Opts, session: &Session) -> Result<String, String> {
    let node = Node::start(opts.pods)?;
    let samples = churn(opts, &node)?;
    let left = node.daemon.allocations().len();
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let adds = last.cycles * opts.pods;
    let text = render(session, &node, &samples, adds, left);
    if first.kernel == last.kernel && first.links == last.links && left == 0 {
        Ok(text)
    } else {
        Err(format!(
            "{text}\nkernel objects or allocations grew: {:?} -> {:?}, {} -> {} links, {left} allocations left",
            first.kernel, last.kernel, first.links, last.links
        ))
    }
}

/// One datagram from the pod to its gateway (the node's bridge address):
/// the node tracks it as a connection from the pod's address.
fn ping_gateway(pod: &TestNetns, gateway: Ipv4Addr) -> Result<(), String> {
    pod.run(|| {
        let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        sock.send_to(b"soak", SocketAddr::from((gateway, 9)))
            .map(drop)
            .map_err(|e| format!("send to {gateway}: {e}"))
    })
}

fn render(session: &Session, node: &Node, samples: &[Sample], adds: usize, left: usize) -> String {
    let mut md = session.report("soak");
    md.item(format_args!(
        "podnet, podnetd: {}, {}",
        bins::podnet().display(),
        bins::workspace_bin("podnetd").display()
    ));
    let cidrs: Vec<String> = node.node_cidrs.iter().map(ToString::to_string).collect();
    md.item(format_args!(
        "node: one network namespace, podnetd `--cluster-cidr 10.244.0.0/16` (node CIDRs {}), \
         `PODNET_LOG={BENCH_LOG}`; {} pod namespaces",
        cidrs.join(", "),
        node.pods.len()
    ));
    let last = &samples[samples.len() - 1];
    md.heading(2, "Samples");
    md.para(format_args!(
        "{} cycles, {adds} ADDs and as many DELs in {:.0} s; {left} allocations left at the end. \
         Sampled between cycles (no pod up). `conntrack busy`: entries while the cycle's pods \
         were up.",
        last.cycles,
        last.at.as_secs_f64()
    ));
    let mut t = Table::new(&[
        "s",
        "cycles",
        "podnetd RSS KiB",
        "open files",
        "threads",
        "db bytes",
        "links",
        "host veths",
        "routes",
        "pod routes",
        "conntrack",
        "conntrack busy",
        "nft rules+elements",
    ])
    .align("rrrrrrrrrrrrr");
    let opt = |v: Option<u64>| v.map_or("n/a".to_string(), |n| n.to_string());
    for x in samples {
        t.row([
            format!("{:.0}", x.at.as_secs_f64()),
            x.cycles.to_string(),
            x.daemon.rss_kib.to_string(),
            x.daemon.open_files.to_string(),
            x.daemon.threads.to_string(),
            x.db_bytes.to_string(),
            x.links.to_string(),
            x.kernel.host_veths.to_string(),
            x.kernel.routes.to_string(),
            x.kernel.pod_routes.to_string(),
            opt(x.kernel.conntrack),
            opt(x.conntrack_busy),
            x.kernel.nft_objects.to_string(),
        ]);
    }
    md.table(&t);
    md.finish()
}
