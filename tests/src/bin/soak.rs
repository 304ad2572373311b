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
//!     [--seconds 600] [--pods 20] [--sample-seconds 30] [--out bench/results/soak.md]
//! ```
//!
//! The kernel objects must be the same at the end as at the first sample,
//! after 5 s of warm-up (exit 1 otherwise); memory, open files and the database are
//! reported from start to end for a human to judge (sled's log grows in
//! segments and is reclaimed in steps).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use podnet_tests::churn::{self, KernelObjects, ProcessUse};
use podnet_tests::cleanup;
use podnet_tests::daemon::{DaemonOpts, TestDaemon, BENCH_LOG};
use podnet_tests::machine;
use podnet_tests::netns::TestNetns;
use podnet_tests::report;

#[derive(Parser)]
#[command(about = "soak: pod churn on one node, with what must stay flat sampled")]
struct Opts {
    /// How long to churn.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Pods per cycle.
    #[arg(long, default_value_t = 20)]
    pods: usize,
    /// Sample at the first cycle boundary after every this many seconds.
    #[arg(long, default_value_t = 30)]
    sample_seconds: u64,
    #[arg(long)]
    out: Option<PathBuf>,
}

const WARM_UP: Duration = Duration::from_secs(5);

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
    let opts = Opts::parse();
    cleanup::on_signal_or_panic_clean_up("soak");
    let result = run(&opts);
    report::finish("soak", result, opts.out.as_deref())
}

fn run(opts: &Opts) -> Result<String, String> {
    podnet_tests::require_root();
    let load_before = machine::loadavg();
    let node = TestNetns::new("node");
    let daemon = TestDaemon::start(
        &node,
        DaemonOpts {
            cluster_cidr: "10.244.0.0/16".into(),
            log: BENCH_LOG.into(),
            ..DaemonOpts::default()
        },
    );
    let conf = churn::conf(&daemon);
    let node_cidrs = daemon.allocations_cidrs();
    let pods: Vec<TestNetns> = (0..opts.pods).map(|_| TestNetns::new("pod")).collect();
    let pid = daemon.pid().ok_or("podnetd is not running")?;
    // The bridge holds the first host of the node CIDR.
    let gateway = node_cidrs
        .iter()
        .find_map(|c| match c {
            ipnetwork::IpNetwork::V4(n) => {
                Some(std::net::Ipv4Addr::from(u32::from(n.network()) + 1))
            }
            ipnetwork::IpNetwork::V6(_) => None,
        })
        .ok_or("no IPv4 node CIDR")?;

    let started = Instant::now();
    let (mut cycles, mut adds) = (0usize, 0usize);
    let mut samples: Vec<Sample> = Vec::new();
    // The bridge's own IPv6 link-local address (and its route) appear a
    // moment after its first port: the baseline is taken after a warm-up.
    let mut next_sample = WARM_UP;
    loop {
        let ids: Vec<String> = (0..pods.len())
            .map(|i| format!("soak-{cycles}-{i}"))
            .collect();
        let running: Vec<_> = pods
            .iter()
            .zip(&ids)
            .map(|(p, id)| churn::spawn_plugin(&node, "ADD", id, p.path(), &conf))
            .collect();
        for (r, p) in running.into_iter().zip(&pods) {
            let ended = r.finish(Duration::from_secs(30))?;
            if ended.address.is_none() {
                return Err(format!(
                    "ADD {} failed: {}",
                    ended.container_id, ended.stdout
                ));
            }
            adds += 1;
            ping_gateway(p, gateway)?;
        }
        let conntrack_busy = churn::kernel_objects(&node, &node_cidrs).conntrack;
        let running: Vec<_> = pods
            .iter()
            .zip(&ids)
            .map(|(p, id)| churn::spawn_plugin(&node, "DEL", id, p.path(), &conf))
            .collect();
        for r in running {
            let ended = r.finish(Duration::from_secs(30))?;
            if !ended.ok {
                return Err(format!(
                    "DEL {} failed: {}",
                    ended.container_id, ended.stdout
                ));
            }
        }
        cycles += 1;
        let done = started.elapsed() >= Duration::from_secs(opts.seconds) && !samples.is_empty();
        // Every `--sample-seconds`, and once more at the end.
        if started.elapsed() >= next_sample || done {
            next_sample += Duration::from_secs(opts.sample_seconds);
            let s = Sample {
                at: started.elapsed(),
                cycles,
                daemon: churn::process_use(pid).ok_or("podnetd is gone")?,
                db_bytes: churn::dir_bytes(&daemon.state_dir()),
                links: node.link_names().len(),
                kernel: churn::kernel_objects(&node, &node_cidrs),
                conntrack_busy,
            };
            eprintln!(
                "soak: {:>4.0} s, {cycles} cycles, rss {} KiB, {} files, db {} B, {:?}",
                s.at.as_secs_f64(),
                s.daemon.rss_kib,
                s.daemon.open_files,
                s.db_bytes,
                s.kernel
            );
            samples.push(s);
        }
        if done {
            break;
        }
        if cleanup::stopping() {
            return Err("interrupted".into());
        }
    }
    let left = daemon.allocations().len();
    let text = render(opts, &samples, adds, left, &load_before);
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let flat = first.kernel == last.kernel && first.links == last.links && left == 0;
    if flat {
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
fn ping_gateway(pod: &TestNetns, gateway: std::net::Ipv4Addr) -> Result<(), String> {
    pod.run(|| {
        let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        sock.send_to(b"soak", SocketAddr::from((gateway, 9)))
            .map(drop)
            .map_err(|e| format!("send to {gateway}: {e}"))
    })
}

fn render(opts: &Opts, samples: &[Sample], adds: usize, left: usize, load_before: &str) -> String {
    let (rev, dirty) = machine::git_revision();
    let mut s = String::new();
    let _ = writeln!(s, "# soak\n");
    let _ = writeln!(
        s,
        "Revision {rev}{}; {}; load average {load_before} before, {} after.\n",
        if dirty { " (uncommitted changes)" } else { "" },
        machine::cpu_model(),
        machine::loadavg(),
    );
    let last = &samples[samples.len() - 1];
    let _ = writeln!(
        s,
        "`soak --seconds {} --pods {} --sample-seconds {}`: {} cycles, {adds} ADDs and as many DELs \
         in {:.0} s; {left} allocations left at the end.\n",
        opts.seconds,
        opts.pods,
        opts.sample_seconds,
        last.cycles,
        last.at.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "Sampled between cycles (no pod up). `conntrack busy`: entries while the cycle's pods were up.\n"
    );
    let _ = writeln!(
        s,
        "| s | cycles | podnetd RSS KiB | open files | threads | db bytes | links | host veths | routes | pod routes | conntrack | conntrack busy | nft rules+elements |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let opt = |v: Option<u64>| v.map_or("n/a".to_string(), |n| n.to_string());
    for x in samples {
        let _ = writeln!(
            s,
            "| {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.at.as_secs_f64(),
            x.cycles,
            x.daemon.rss_kib,
            x.daemon.open_files,
            x.daemon.threads,
            x.db_bytes,
            x.links,
            x.kernel.host_veths,
            x.kernel.routes,
            x.kernel.pod_routes,
            opt(x.kernel.conntrack),
            opt(x.conntrack_busy),
            x.kernel.nft_objects
        );
    }
    s
}
