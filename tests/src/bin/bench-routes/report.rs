//! bench-routes' report: the targets first, then one section per phase.

use std::time::Duration;

use ipnetwork::IpNetwork;
use podnet_tests::bench::facts;
use podnet_tests::bench::stats::ms;
use podnet_tests::bench::{Markdown, Session, Summary, Table};
use podnet_tests::bins;
use podnet_tests::etcd::ETCD_BIN;

use crate::cold::ColdResult;
use crate::joins::JoinSamples;
use crate::observe::Scrape;
use crate::{
    Opts, Results, BATCH, CLUSTER_CIDR, EVENT_TIMEOUT, GAP, MAX_PODS, POLL, SETTLE, TARGET_COLD_MS,
    TARGET_COLD_SIZE, TARGET_JOIN_P99_MS, TARGET_MEM_BYTES, UNDERLAY, WARMUP,
};

pub fn report(session: &Session, opts: &Opts, run: &Results) -> String {
    let mut md = session.report("podnetd routes: join -> route, cold start, memory");
    inputs(&mut md);
    targets(&mut md, run);
    section_joins(&mut md, opts, run);
    section_cold(&mut md, run);
    section_memory(&mut md, run);
    section_metrics(&mut md, opts, run);
    md.finish()
}

fn yes(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**not met**"
    }
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("never".to_string(), |d| format!("{:.0}", ms(d)))
}

fn opt_f(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.0}"))
}

fn cidrs(c: &[IpNetwork]) -> String {
    c.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn inputs(md: &mut Markdown) {
    let etcd_version = facts::shell(ETCD_BIN, &["--version"]);
    md.item(format_args!(
        "podnetd: {}",
        bins::workspace_bin("podnetd").display()
    ));
    md.item(format_args!(
        "etcd: {ETCD_BIN} ({}), one member on loopback",
        etcd_version.lines().next().unwrap_or("unknown")
    ));
    md.item(format_args!(
        "node: one network namespace, underlay eth0 {UNDERLAY}; podnetd `--store etcd --netns`, \
         cluster range {CLUSTER_CIDR}, max pods {MAX_PODS} (a /24 per node), resync 30 s; fake \
         peers 172.20.a.b on the same /16 (host-gw routes), a 10.x.y.0/24 each"
    ));
}

fn targets(md: &mut Markdown, run: &Results) {
    md.heading(2, "Targets");
    let mut t = Table::new(&["target", "measured", ""]);
    t.row(join_target(&run.joins.samples));
    let big = (run.cold.iter())
        .find(|c| c.peers == TARGET_COLD_SIZE)
        .or(run.cold.iter().max_by_key(|c| c.peers));
    if let Some(c) = big {
        t.row(cold_target(c, run.control.as_ref()));
        t.row(memory_target(c));
    }
    md.table(&t);
}

fn join_target(j: &JoinSamples) -> [String; 3] {
    let stats = Summary::of(&j.join);
    let ok = j.failed_joins == 0
        && j.wrong_routes == 0
        && stats.is_some_and(|s| ms(s.p99) < TARGET_JOIN_P99_MS);
    let measured = stats.map_or("no sample".to_string(), |s| {
        format!(
            "p99 {:.1} ms (p50 {:.1}, max {:.1}; {} joins, {} not seen, {} wrong)",
            ms(s.p99),
            ms(s.p50),
            ms(s.max),
            s.n,
            j.failed_joins,
            j.wrong_routes
        )
    });
    [
        format!("join -> route p99 < {TARGET_JOIN_P99_MS:.0} ms"),
        measured,
        yes(ok).to_string(),
    ]
}

fn cold_target(c: &ColdResult, control: Option<&ColdResult>) -> [String; 3] {
    let ok = c.peers >= TARGET_COLD_SIZE
        && c.all.is_some_and(|d| ms(d) < TARGET_COLD_MS)
        && c.check.correct();
    let control = control.map_or(String::new(), |k| {
        format!(
            "; control run with no route dump meanwhile: {} ms to podnetd's *routes reconciled* \
             log line ({} missing, {} wrong)",
            opt_f(k.log.reconciled_ms),
            k.check.missing,
            k.check.wrong
        )
    });
    [
        format!(
            "{TARGET_COLD_SIZE} peers programmed < {TARGET_COLD_MS:.0} ms (podnetd spawn -> last \
             route)"
        ),
        format!(
            "{} peers: {} ms ({} missing, {} wrong){control}",
            c.peers,
            opt_ms(c.all),
            c.check.missing,
            c.check.wrong
        ),
        yes(ok).to_string(),
    ]
}

fn memory_target(c: &ColdResult) -> [String; 3] {
    let ok = c.peers >= TARGET_COLD_SIZE && c.memory.hwm_kib * 1024 < TARGET_MEM_BYTES;
    [
        format!("memory < 50 MB at {TARGET_COLD_SIZE} peers (peak, VmHWM)"),
        format!(
            "{} peers: VmHWM {:.1} MB, VmRSS {:.1} MB",
            c.peers,
            mb(c.memory.hwm_kib),
            mb(c.memory.rss_kib)
        ),
        yes(ok).to_string(),
    ]
}

fn section_joins(md: &mut Markdown, opts: &Opts, run: &Results) {
    let j = &run.joins;
    md.heading(2, "1. Join -> route latency");
    md.para(format_args!(
        "podnetd running with no peer (its own CIDR {}); {} times (after {WARMUP} unmeasured): one \
         fake node's record and CIDR key put in one etcd transaction, timed from issuing it until \
         its route (right gateway, right device) is in the node's kernel; then both keys deleted, \
         timed until the route is gone. A netlink dump of the node's routes every {} ms (the \
         largest took {:.2} ms); {} ms between events. ms:",
        cidrs(&j.node_cidrs),
        opts.joins,
        POLL.as_millis(),
        ms(j.samples.max_dump),
        GAP.as_millis()
    ));
    join_table(md, &j.samples);
    if run.cold.iter().any(|c| !c.joins.join.is_empty()) {
        md.para(format_args!(
            "The same, {} times per size, on the node of each cold start below once its routes \
             had converged (so each event is a reconcile against all those peers). The dump that \
             observes it costs more there (see *largest dump*): the figures include up to that \
             much observation delay. ms:",
            opts.size_joins
        ));
        md.table(&joins_at_size_table(&run.cold));
    }
}

fn figures(s: &Summary) -> [String; 5] {
    [
        s.n.to_string(),
        format!("{:.1}", ms(s.p50)),
        format!("{:.1}", ms(s.p99)),
        format!("{:.1}", ms(s.max)),
        format!("{:.1}", ms(s.mean)),
    ]
}

fn join_table(md: &mut Markdown, j: &JoinSamples) {
    let mut t = Table::new(&["event", "n", "p50", "p99", "max", "mean"]);
    for (what, samples) in [
        ("join: etcd put -> route installed", &j.join),
        ("leave: etcd delete -> route removed", &j.leave),
        ("(the etcd put transaction's own round trip)", &j.put),
    ] {
        if let Some(s) = Summary::of(samples) {
            t.row(std::iter::once(what.to_string()).chain(figures(&s)));
        }
    }
    md.table(&t);
    md.para(format_args!(
        "Joins never seen within {} s: {}; leaves never seen: {}; routes with a wrong gateway or \
         device: {}.",
        EVENT_TIMEOUT.as_secs(),
        j.failed_joins,
        j.failed_leaves,
        j.wrong_routes
    ));
}

fn joins_at_size_table(cold: &[ColdResult]) -> Table {
    let mut t = Table::new(&[
        "peers",
        "event",
        "n",
        "p50",
        "p99",
        "max",
        "mean",
        "not seen",
        "wrong",
        "largest dump",
    ]);
    for c in cold {
        let js = &c.joins;
        for (what, samples, failed) in [
            ("join -> route", &js.join, js.failed_joins),
            ("leave -> gone", &js.leave, js.failed_leaves),
        ] {
            if let Some(s) = Summary::of(samples) {
                let mut row = vec![c.peers.to_string(), what.to_string()];
                row.extend(figures(&s));
                row.extend([
                    failed.to_string(),
                    js.wrong_routes.to_string(),
                    format!("{:.1}", ms(js.max_dump)),
                ]);
                t.row(row);
            }
        }
    }
    t
}

fn section_cold(md: &mut Markdown, run: &Results) {
    md.heading(2, "2. Cold start");
    md.para(format_args!(
        "For each size a fresh etcd, node namespace and podnetd state: the fake nodes are written \
         first, then podnetd is spawned (`TestDaemon::start`). Times in ms from the spawn; *ready* \
         is when its IPAM socket first answered (polled every 20 ms by the harness); *registered* \
         and *reconciled* are podnetd's own log lines (their timestamps), *pass* the reconcile \
         pass's own `took_ms`; *first/all routes* are seen by a route dump every {} ms. *Kernel \
         alone*: the bench adding the same routes itself afterwards (one `ip route replace` \
         netlink request each, as podnetd does) into a fresh namespace, with nobody dumping.",
        POLL.as_millis()
    ));
    md.table(&cold_table(run));
    if let Some(k) = &run.control {
        md.para(format_args!(
            "*Control*: the largest size once more, on a fresh etcd, node and podnetd, with \
             nothing dumping routes while podnetd starts (the poller's dumps cost CPU on this \
             {}-CPU machine); its times are podnetd's log lines only, and its routes were \
             checked afterwards ({} missing, {} wrong, {} extra).",
            facts::nproc(),
            k.check.missing,
            k.check.wrong,
            k.check.extra
        ));
    }
    for c in &run.cold {
        md.item(format_args!(
            "{} peers: written to etcd in {:.0} ms ({BATCH} per transaction, before the spawn); \
             the node chose {}; the watcher saw {} routes at its last dump; one dump of podnet's \
             routes took {:.2} ms at the end (max {:.2} ms), so *first/all routes* may lag the \
             kernel by up to about {:.0} ms.",
            c.peers,
            ms(c.write),
            cidrs(&c.node_cidrs),
            c.installed,
            ms(c.last_dump),
            ms(c.max_dump),
            ms(c.max_dump + POLL).ceil()
        ));
    }
}

fn cold_table(run: &Results) -> Table {
    let mut t = Table::new(&[
        "peers",
        "-> registered (log)",
        "-> ready",
        "-> reconciled (log)",
        "pass",
        "-> first route",
        "-> all routes",
        "routes correct",
        "kernel alone",
    ]);
    for c in run.cold.iter().chain(&run.control) {
        let seen = |d: Option<Duration>| {
            if c.observed {
                opt_ms(d)
            } else {
                "-".to_string()
            }
        };
        let pass = c.log.reconcile_took_ms.map_or("-".to_string(), |t| {
            format!("{t:.0} ({} added)", c.log.reconcile_added.unwrap_or(0))
        });
        let correct = if c.check.correct() {
            format!("all {}", c.peers)
        } else {
            let k = c.check;
            format!(
                "{} missing, {} wrong, {} extra",
                k.missing, k.wrong, k.extra
            )
        };
        t.row([
            format!("{}{}", c.peers, if c.observed { "" } else { " (control)" }),
            opt_f(c.log.registered_ms),
            format!("{:.0}", ms(c.ready)),
            opt_f(c.log.reconciled_ms),
            pass,
            seen(c.first),
            seen(c.all),
            correct,
            c.kernel_alone
                .map_or("-".to_string(), |d| format!("{:.0}", ms(d))),
        ]);
    }
    t
}

fn section_memory(md: &mut Markdown, run: &Results) {
    md.heading(2, "3. Memory");
    md.para(format_args!(
        "podnetd's `/proc/PID/status`, {} ms after convergence; MB = 10^6 bytes; VmHWM is the \
         peak since the process started.",
        SETTLE.as_millis()
    ));
    let mut t = Table::new(&["peers", "VmRSS MB", "VmHWM MB", "when"]);
    let cold = run.cold.iter().chain(&run.control).map(|c| &c.memory);
    for m in run.joins.memory.iter().chain(cold) {
        t.row([
            m.peers.to_string(),
            format!("{:.1}", mb(m.rss_kib)),
            format!("{:.1}", mb(m.hwm_kib)),
            m.when.clone(),
        ]);
    }
    md.table(&t);
}

fn metrics_row(t: &mut Table, phase: String, m: &Scrape, before: Option<&Scrape>) {
    let delta = |name: &str| m.get(name) - before.map_or(0.0, |b| b.get(name));
    let sum = delta("podnet_reconcile_duration_seconds_sum");
    let count = delta("podnet_reconcile_duration_seconds_count");
    t.row([
        phase,
        format!("{count:.0}"),
        format!("{sum:.3}"),
        format!("{:.2}", sum / count * 1e3),
        format!("{:.0}", delta("podnet_route_changes_total")),
        format!("{:.0}", delta("podnet_reconcile_errors_total")),
        format!("{:.0}", m.get("podnet_routes")),
        format!("{:.0}", m.get("podnet_peers")),
    ]);
}

fn section_metrics(md: &mut Markdown, opts: &Opts, run: &Results) {
    md.heading(2, "4. podnetd's reconcile metrics");
    md.para(
        "`podnet_reconcile_duration_seconds` (sum, count) and friends, scraped from podnetd's \
         `--metrics-addr` on loopback (each phase has its own podnetd); counters are for the \
         phase named, the gauges as at its end.",
    );
    let mut t = Table::new(&[
        "phase",
        "passes",
        "sum s",
        "mean ms",
        "route changes",
        "errors",
        "podnet_routes",
        "podnet_peers",
    ]);
    let joins = WARMUP + opts.joins;
    let phase = format!("start + {joins} joins and leaves, no other peer");
    metrics_row(&mut t, phase, &run.joins.scrape, None);
    for c in run.cold.iter().chain(&run.control) {
        let control = if c.observed { "" } else { " (control)" };
        let phase = format!("cold start, {} peers{control}", c.peers);
        metrics_row(&mut t, phase, &c.scrape, None);
        if !c.joins.join.is_empty() {
            let joins = WARMUP + opts.size_joins;
            let phase = format!("then {joins} joins and leaves at {} peers", c.peers);
            metrics_row(&mut t, phase, &c.scrape_after_joins, Some(&c.scrape));
        }
    }
    md.table(&t);
}
