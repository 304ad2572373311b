//! crash-inject: storms of ADD and DEL on one node while podnetd, the
//! plugin and containerd are killed (-9) at random points; then the
//! invariants a node must keep whatever happened.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p podnet-tests --bin crash-inject -- \
//!     [--pods 32] [--rounds 400] [--containerd-rounds 30] [--sandboxes 8] \
//!     [--seed N] [--out bench/results/crash-inject.md] [--quick]
//! ```
//!
//! Part 1, the plugin as a runtime runs it: `--pods` pod namespaces on a
//! node namespace with a podnetd (`TestDaemon`). Each round starts, all at
//! once, an ADD for every pod that is down and a DEL for half the pods that
//! are up, then kills podnetd (30% of rounds) and one to three plugin
//! processes (60% of rounds) at random moments while they run. What a
//! runtime does next is done next: an ADD that failed or was killed gets a
//! DEL, a DEL that failed or was killed is retried until it succeeds
//! (while podnetd is still down in half the rounds, so releases go through
//! the spool), and podnetd is started again. After every round:
//! - no address is held by two keys, and every pod that is up holds the
//!   address its ADD returned (and, every tenth round, carries it on eth0);
//! - no address is held by a key no pod has, and there is one host veth per
//!   pod that is up (both given 3 s: releases spooled while podnetd was
//!   down are applied by its reclaim loop every second);
//! - no route to a single pod address is left on the node.
//!
//! At the end a leaked allocation is planted and CNI GC (with the pods
//! that are up as valid attachments) must release it and only it; podnetd
//! is killed and restarted on its database, which must open with the same
//! allocations; every pod is deleted and the node must hold nothing.
//!
//! Part 2, containerd: a node with containerd and a podnetd that knows its
//! CRI socket (reclaim every 1 s, 2 s grace). Each round runs
//! `--sandboxes` RunPodSandbox at once and kills containerd (-9) after a
//! random 50-800 ms (and podnetd too in a third of the rounds), starts
//! them again, stops and removes every sandbox containerd lists; then,
//! within 30 s, podnetd must hold no address and the node no veth.
//!
//! The Markdown report counts injections, operations and violations; any
//! violation makes the exit status 1. A failure (or Ctrl-C) kills what
//! this process started (by pid) and removes its namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ipnetwork::IpNetwork;
use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::proto::{Request, Response};
use podnet_tests::bench::cli::count;
use podnet_tests::bench::{self, BenchOpts, Common, Session, Table};
use podnet_tests::bins;
use podnet_tests::churn::{self, Ended, Rng, Running};
use podnet_tests::containerd::{ContainerdOpts, TestContainerd};
use podnet_tests::cri::ListedSandbox;
use podnet_tests::daemon::{DaemonOpts, TestDaemon, BENCH_LOG};
use podnet_tests::netns::TestNetns;

#[derive(Parser)]
#[command(
    about = "crash injection: ADD/DEL storms with podnetd, the plugin and containerd killed \
             (needs root)"
)]
struct Opts {
    /// Pod namespaces in part 1 [--quick: 8].
    #[arg(long, default_value_t = 32, default_value_if("quick", "true", "8"),
          value_parser = count(1..=1000))]
    pods: usize,
    /// Rounds of part 1 [--quick: 20].
    #[arg(long, default_value_t = 400, default_value_if("quick", "true", "20"))]
    rounds: usize,
    /// Rounds of part 2 (0 skips containerd) [--quick: 2].
    #[arg(long, default_value_t = 30, default_value_if("quick", "true", "2"))]
    containerd_rounds: usize,
    /// Concurrent RunPodSandbox per round of part 2 [--quick: 2].
    #[arg(long, default_value_t = 8, default_value_if("quick", "true", "2"),
          value_parser = count(1..=100))]
    sandboxes: usize,
    /// Repeat a run (its report prints the seed).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    common: Common,
}

impl BenchOpts for Opts {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// A plugin that has not ended after this is reported as hung.
const PLUGIN_LIMIT: Duration = Duration::from_secs(30);
/// Releases spooled while podnetd was down are applied within this.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Counts {
    rounds: usize,
    adds: usize,
    adds_ok: usize,
    dels: usize,
    dels_ok: usize,
    runtime_dels: usize,
    dels_while_down: usize,
    killed_podnetd: usize,
    killed_plugin: usize,
    killed_containerd: usize,
    sandboxes_run: usize,
    sandboxes_ok: usize,
    peak_up: usize,
    /// Invariant checks made (each over every pod and address).
    checks: usize,
    duplicates: usize,
    missing: usize,
    leaked_addresses: usize,
    orphan_veths: usize,
    stale_routes: usize,
    hung: usize,
    /// The database reopened after the final kill with other allocations.
    reopened_otherwise: bool,
    violations: Vec<String>,
}

impl Counts {
    fn violation(&mut self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.violations.push(what);
    }
}

/// One pod namespace and the attachment it has now, if any.
struct Slot {
    ns: TestNetns,
    incarnation: u32,
    up: Option<(String, IpAddr)>,
}

fn main() -> ExitCode {
    bench::main::<Opts>("crash-inject", run)
}

fn run(opts: &Opts, session: &Session) -> Result<String, String> {
    let seed = opts.seed.unwrap_or_else(churn::clock_seed);
    let mut rng = Rng::new(seed);
    let mut counts = Counts::default();
    let started = Instant::now();
    eprintln!("crash-inject: seed {seed}");

    plugin_and_daemon(opts, &mut rng, &mut counts);
    let part1 = started.elapsed();
    if opts.containerd_rounds > 0 {
        with_containerd(opts, &mut rng, &mut counts);
    }
    let text = render(session, seed, &counts, part1, started.elapsed());
    if counts.violations.is_empty() {
        Ok(text)
    } else {
        Err(format!(
            "{text}\n{} violations:\n{}",
            counts.violations.len(),
            counts.violations.join("\n")
        ))
    }
}

/// podnetd as both parts run it: IPv4, and a reclaim pass every second (so
/// releases spooled while it was down are applied within the settle time).
fn node_daemon(node: &TestNetns) -> TestDaemon {
    TestDaemon::start(
        node,
        DaemonOpts {
            cluster_cidr: "10.244.0.0/16".into(),
            reclaim_interval_secs: 1,
            reclaim_grace_secs: 2,
            log: BENCH_LOG.into(),
            ..DaemonOpts::default()
        },
    )
}

fn plugin_and_daemon(opts: &Opts, rng: &mut Rng, counts: &mut Counts) {
    let node = TestNetns::new("node");
    let mut daemon = node_daemon(&node);
    let conf = churn::conf(&daemon);
    let node_cidrs = daemon.allocations_cidrs();
    let mut slots: Vec<Slot> = (0..opts.pods)
        .map(|_| Slot {
            ns: TestNetns::new("pod"),
            incarnation: 0,
            up: None,
        })
        .collect();

    for round in 0..opts.rounds {
        counts.rounds += 1;
        let mut running = start_storm(rng, counts, &node, &mut slots, &conf);
        inject_faults(rng, counts, &mut daemon, &mut running);

        let mut owed: Vec<(usize, String)> = Vec::new();
        for (i, r) in running {
            match r.finish(PLUGIN_LIMIT) {
                Ok(ended) => settle_outcome(counts, &mut slots[i], i, ended, &mut owed),
                Err(e) => {
                    counts.hung += 1;
                    counts.violation(format!("round {round}: {e}"));
                }
            }
        }
        // A runtime restarts podnetd (its supervisor does) and retries
        // DEL; which comes first is left to chance.
        if daemon.pid().is_none() && rng.chance(0.5) {
            daemon.restart(&node);
        }
        for (i, id) in owed {
            counts.runtime_dels += 1;
            if daemon.pid().is_none() {
                counts.dels_while_down += 1;
            }
            if !del_until_done(&node, &slots[i].ns, &id, &conf) {
                counts.violation(format!("round {round}: DEL {id} never succeeded"));
            }
        }
        if daemon.pid().is_none() {
            daemon.restart(&node);
        }
        let up = slots.iter().filter(|s| s.up.is_some()).count();
        counts.peak_up = counts.peak_up.max(up);
        let label = format!("round {round}");
        check_node(
            counts,
            &label,
            &node,
            &daemon,
            &slots,
            &node_cidrs,
            round % 10 == 9,
        );
    }
    finish_node(counts, &node, &mut daemon, &mut slots, &conf, &node_cidrs);
}

/// All at once: an ADD for every pod that is down, a DEL for half the pods
/// that are up.
fn start_storm(
    rng: &mut Rng,
    counts: &mut Counts,
    node: &TestNetns,
    slots: &mut [Slot],
    conf: &[u8],
) -> Vec<(usize, Running)> {
    let mut running = Vec::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        match &slot.up {
            Some((id, _)) if rng.chance(0.5) => {
                counts.dels += 1;
                running.push((
                    i,
                    churn::spawn_plugin(node, "DEL", id, slot.ns.path(), conf),
                ));
            }
            Some(_) => {}
            None => {
                slot.incarnation += 1;
                let id = format!("crash-{i}-{}", slot.incarnation);
                counts.adds += 1;
                running.push((
                    i,
                    churn::spawn_plugin(node, "ADD", &id, slot.ns.path(), conf),
                ));
            }
        }
    }
    running
}

/// podnetd and some of the plugins in flight, killed at random moments of
/// the next 25 ms (a plugin's whole run is a few ms).
fn inject_faults(
    rng: &mut Rng,
    counts: &mut Counts,
    daemon: &mut TestDaemon,
    running: &mut [(usize, Running)],
) {
    let mut events: Vec<(u64, Option<usize>)> = Vec::new();
    if rng.chance(0.3) {
        events.push((rng.below(25_000), None));
    }
    if rng.chance(0.6) && !running.is_empty() {
        for _ in 0..=rng.below(3) {
            events.push((
                rng.below(25_000),
                Some(rng.below(running.len() as u64) as usize),
            ));
        }
    }
    events.sort_unstable();
    let start = Instant::now();
    for (at, target) in events {
        let at = Duration::from_micros(at);
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        match target {
            None => {
                daemon.kill9();
                counts.killed_podnetd += 1;
            }
            Some(j) => {
                let child = &mut running[j].1.child;
                // Only a plugin still running counts as killed mid-flight.
                if matches!(child.try_wait(), Ok(None)) && child.kill().is_ok() {
                    counts.killed_plugin += 1;
                }
            }
        }
    }
}

/// What the runtime concludes from one plugin's end.
fn settle_outcome(
    counts: &mut Counts,
    slot: &mut Slot,
    i: usize,
    ended: Ended,
    owed: &mut Vec<(usize, String)>,
) {
    match (ended.verb, ended.ok, ended.address) {
        ("ADD", true, Some(ip)) => {
            counts.adds_ok += 1;
            slot.up = Some((ended.container_id, ip));
        }
        ("ADD", true, None) => {
            counts.violation(format!(
                "ADD {} succeeded without an address: {}",
                ended.container_id, ended.stdout
            ));
            owed.push((i, ended.container_id));
        }
        ("ADD", false, _) => owed.push((i, ended.container_id)),
        (_, true, _) => {
            counts.dels_ok += 1;
            slot.up = None;
        }
        (_, false, _) => {
            // The runtime keeps retrying a DEL; the pod is going either way.
            if !ended.killed {
                eprintln!("DEL {} failed: {}", ended.container_id, ended.stdout);
            }
            slot.up = None;
            owed.push((i, ended.container_id));
        }
    }
}

/// DEL as a runtime retries it; false if five tries all fail.
fn del_until_done(node: &TestNetns, pod: &TestNetns, id: &str, conf: &[u8]) -> bool {
    for _ in 0..5 {
        if let Ok(ended) =
            churn::spawn_plugin(node, "DEL", id, pod.path(), conf).finish(PLUGIN_LIMIT)
        {
            if ended.ok {
                return true;
            }
            eprintln!("DEL {id} failed, retrying: {}", ended.stdout);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The invariants after a round (podnetd running).
fn check_node(
    counts: &mut Counts,
    round: &str,
    node: &TestNetns,
    daemon: &TestDaemon,
    slots: &[Slot],
    node_cidrs: &[IpNetwork],
    look_inside_pods: bool,
) {
    counts.checks += 1;
    let want: HashMap<IpAddr, String> = slots
        .iter()
        .filter_map(|s| s.up.as_ref().map(|(id, ip)| (*ip, format!("{id}/eth0"))))
        .collect();
    if want.len() != slots.iter().filter(|s| s.up.is_some()).count() {
        counts.duplicates += 1;
        counts.violation(format!("{round}: two live pods were given one address"));
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        let held = churn::holders(daemon);
        let objects = churn::kernel_objects(node, node_cidrs);
        let dups: Vec<_> = held.iter().filter(|(_, ks)| ks.len() > 1).collect();
        let missing: Vec<_> = want
            .iter()
            .filter(|(ip, k)| !held.get(ip).is_some_and(|ks| ks.contains(k)))
            .collect();
        let leaked: Vec<_> = held.keys().filter(|ip| !want.contains_key(ip)).collect();
        let settled = leaked.is_empty() && objects.host_veths == want.len();
        if !dups.is_empty() || !missing.is_empty() {
            counts.duplicates += dups.len();
            counts.missing += missing.len();
            counts.violation(format!(
                "{round}: held by two keys {dups:?}; live pods not held {missing:?}"
            ));
            return;
        }
        if settled || Instant::now() >= deadline {
            if !leaked.is_empty() {
                counts.leaked_addresses += leaked.len();
                counts.violation(format!("{round}: addresses held by no pod: {leaked:?}"));
            }
            if objects.host_veths != want.len() {
                counts.orphan_veths += objects.host_veths.saturating_sub(want.len());
                counts.violation(format!(
                    "{round}: {} host veths for {} pods",
                    objects.host_veths,
                    want.len()
                ));
            }
            if objects.pod_routes != 0 {
                counts.stale_routes += objects.pod_routes;
                counts.violation(format!("{round}: {} pod routes", objects.pod_routes));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if look_inside_pods {
        for s in slots {
            if let Some((id, ip)) = &s.up {
                let addrs = s.ns.addresses("eth0");
                if !addrs
                    .iter()
                    .any(|a| a.split('/').next() == Some(&ip.to_string()))
                {
                    counts.missing += 1;
                    counts.violation(format!("{round}: {id}'s eth0 has {addrs:?}, not {ip}"));
                }
            }
        }
    }
}

/// GC, a cold restart on the database, and every pod deleted.
fn finish_node(
    counts: &mut Counts,
    node: &TestNetns,
    daemon: &mut TestDaemon,
    slots: &mut [Slot],
    conf: &[u8],
    node_cidrs: &[IpNetwork],
) {
    let planted = AttachmentKey {
        container_id: "leaked-by-nobody".into(),
        ifname: "eth0".into(),
    };
    let reply = daemon.client().call(&Request::Add {
        key: planted.clone(),
        netns: None,
        requested: Vec::new(),
        pod: None,
        confirm_policy: false,
    });
    if !matches!(reply, Ok(Response::Allocated { .. })) {
        counts.violation(format!("planting a leak: {reply:?}"));
    }
    let valid: Vec<serde_json::Value> = slots
        .iter()
        .filter_map(|s| s.up.as_ref())
        .map(|(id, _)| serde_json::json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    let mut gc_conf: serde_json::Value = serde_json::from_slice(conf).expect("conf");
    gc_conf["cni.dev/valid-attachments"] = valid.into();
    let gc = churn::spawn_plugin(
        node,
        "GC",
        "",
        std::path::Path::new(""),
        gc_conf.to_string().as_bytes(),
    )
    .finish(PLUGIN_LIMIT);
    if !gc.as_ref().is_ok_and(|e| e.ok) {
        counts.violation(format!("GC failed: {:?}", gc.map(|e| e.stdout)));
    }
    check_node(counts, "after GC", node, daemon, slots, node_cidrs, true);

    let before: HashSet<_> = daemon
        .allocations()
        .into_iter()
        .map(|a| (a.key, a.ips))
        .collect();
    daemon.kill9();
    counts.killed_podnetd += 1;
    daemon.restart(node);
    let after: HashSet<_> = daemon
        .allocations()
        .into_iter()
        .map(|a| (a.key, a.ips))
        .collect();
    if before != after {
        counts.reopened_otherwise = true;
        counts.violation(format!(
            "the database reopened with other allocations: {} before, {} after",
            before.len(),
            after.len()
        ));
    }
    for s in slots.iter_mut() {
        if let Some((id, _)) = s.up.take() {
            counts.dels += 1;
            if del_until_done(node, &s.ns, &id, conf) {
                counts.dels_ok += 1;
            } else {
                counts.violation(format!("final DEL {id} never succeeded"));
            }
        }
    }
    check_node(counts, "at the end", node, daemon, slots, node_cidrs, false);
}

/// A node whose podnetd knows its containerd's CRI socket (so the leak
/// reclaimer asks containerd which sandboxes exist).
fn containerd_node() -> (TestNetns, TestDaemon, TestContainerd) {
    let node = TestNetns::new("cnode");
    let mut daemon = node_daemon(&node);
    let rt = TestContainerd::start(
        node.path(),
        ContainerdOpts {
            cni_conf_dir: daemon.cni_conf_dir(),
            metrics: false,
            snapshotter: None,
        },
    );
    daemon.stop();
    daemon.opts.cri_socket = Some(rt.socket());
    daemon.restart(&node);
    // containerd reloads the rewritten conflist on its file event.
    std::thread::sleep(Duration::from_millis(500));
    (node, daemon, rt)
}

fn with_containerd(opts: &Opts, rng: &mut Rng, counts: &mut Counts) {
    let (node, mut daemon, mut rt) = containerd_node();
    let node_cidrs = daemon.allocations_cidrs();
    for round in 0..opts.containerd_rounds {
        counts.rounds += 1;
        let kill_after = Duration::from_millis(50 + rng.below(750));
        let kill_podnetd = rng.chance(0.33);
        let started = sandboxes_then_kill(opts, round, kill_after, &mut rt, || {
            counts.killed_containerd += 1;
            if kill_podnetd {
                daemon.kill9();
                counts.killed_podnetd += 1;
            }
        });
        counts.sandboxes_run += started.len();
        counts.sandboxes_ok += started.iter().filter(|r| r.is_ok()).count();
        if daemon.pid().is_none() {
            daemon.restart(&node);
        }
        rt.launch();
        let remaining = remove_all_sandboxes(&rt, round);
        if !remaining.is_empty() {
            counts.violation(format!(
                "containerd round {round}: sandboxes stay: {remaining:?}"
            ));
        }
        wait_until_empty(counts, round, &node, &daemon, &node_cidrs);
        eprintln!(
            "containerd round {round}: killed after {kill_after:?}, {} of {} sandboxes had started",
            started.iter().filter(|r| r.is_ok()).count(),
            started.len()
        );
    }
    rt.stop();
    daemon.stop();
}

/// `--sandboxes` RunPodSandbox at once; containerd killed -9 after
/// `kill_after`, then `also_kill` (podnetd, by chance). Each call's outcome.
fn sandboxes_then_kill(
    opts: &Opts,
    round: usize,
    kill_after: Duration,
    rt: &mut TestContainerd,
    also_kill: impl FnOnce(),
) -> Vec<Result<String, String>> {
    let cri = rt.cri().clone();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..opts.sandboxes)
            .map(|k| {
                let cri = cri.clone();
                s.spawn(move || {
                    let name = format!("crash-{round}-{k}");
                    cri.run_pod_sandbox(&name, "crash", &format!("uid-{name}"))
                })
            })
            .collect();
        std::thread::sleep(kill_after);
        rt.kill9();
        also_kill();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    })
}

/// The kubelet's view: whatever containerd lists is stopped and removed,
/// retried as the kubelet retries. What it still lists after that.
fn remove_all_sandboxes(rt: &TestContainerd, round: usize) -> Vec<ListedSandbox> {
    let mut remaining = Vec::new();
    for _ in 0..5 {
        remaining = rt.cri().list_pod_sandbox().unwrap_or_default();
        if remaining.is_empty() {
            break;
        }
        for sb in &remaining {
            let outcome = rt
                .cri()
                .stop_pod_sandbox(&sb.id)
                .and_then(|()| rt.cri().remove_pod_sandbox(&sb.id));
            if let Err(e) = outcome {
                eprintln!("containerd round {round}: {}: {e}", sb.name);
            }
        }
    }
    remaining
}

/// Within 30 s podnetd must hold no address, and the node have no host
/// veth and no pod route.
fn wait_until_empty(
    counts: &mut Counts,
    round: usize,
    node: &TestNetns,
    daemon: &TestDaemon,
    node_cidrs: &[IpNetwork],
) {
    counts.checks += 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = churn::holders(daemon);
        let objects = churn::kernel_objects(node, node_cidrs);
        if held.is_empty() && objects.host_veths == 0 && objects.pod_routes == 0 {
            return;
        }
        if Instant::now() >= deadline {
            counts.leaked_addresses += held.len();
            counts.orphan_veths += objects.host_veths;
            counts.stale_routes += objects.pod_routes;
            counts.violation(format!(
                "containerd round {round}: after 30 s podnetd holds {held:?}, {} host veths, {} pod routes",
                objects.host_veths, objects.pod_routes
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn render(session: &Session, seed: u64, c: &Counts, part1: Duration, total: Duration) -> String {
    let mut md = session.report("crash-inject");
    md.item(format_args!(
        "podnet, podnetd: {}, {}",
        bins::podnet().display(),
        bins::workspace_bin("podnetd").display()
    ));
    md.item(format_args!(
        "seed {seed} (`--seed {seed}` repeats this run); part 1 took {:.0} s, the whole run {:.0} s",
        part1.as_secs_f64(),
        total.as_secs_f64()
    ));
    let rows: [(&str, usize); 22] = [
        ("rounds", c.rounds),
        ("ADDs started by the storm", c.adds),
        ("ADDs that succeeded", c.adds_ok),
        ("DELs started by the storm (and at the end)", c.dels),
        ("DELs that succeeded at once", c.dels_ok),
        (
            "DELs a runtime owed (after a failed or killed ADD or DEL)",
            c.runtime_dels,
        ),
        (
            "... of which while podnetd was down (spooled)",
            c.dels_while_down,
        ),
        ("most pods up at once", c.peak_up),
        ("injected: podnetd killed -9", c.killed_podnetd),
        ("injected: plugin killed -9 mid-flight", c.killed_plugin),
        ("injected: containerd killed -9", c.killed_containerd),
        (
            "injections in all",
            c.killed_podnetd + c.killed_plugin + c.killed_containerd,
        ),
        ("RunPodSandbox started", c.sandboxes_run),
        (
            "RunPodSandbox that succeeded before the kill",
            c.sandboxes_ok,
        ),
        ("invariant checks", c.checks),
        ("**addresses held by two pods**", c.duplicates),
        ("**live pods without their address**", c.missing),
        ("**addresses held by no pod**", c.leaked_addresses),
        ("**orphan host veths**", c.orphan_veths),
        ("**stale pod routes**", c.stale_routes),
        ("**plugins hung**", c.hung),
        ("**violations**", c.violations.len()),
    ];
    md.heading(2, "Counts");
    let mut t = Table::new(&["what", "count"]).align("lr");
    for (what, n) in rows {
        t.row([what.to_string(), n.to_string()]);
    }
    md.table(&t);
    md.para(format_args!(
        "The database reopened after the final kill with the same allocations: {}.",
        if c.reopened_otherwise { "no" } else { "yes" }
    ));
    md.finish()
}
