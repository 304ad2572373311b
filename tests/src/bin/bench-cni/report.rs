//! bench-cni's report: the inputs, the two target tables (issue 3's, and
//! the plugins' own parts), then every round's phases.

use podnet_tests::bench::facts;
use podnet_tests::bench::stats::{fmt_ratio, ms, per_sec, ratio};
use podnet_tests::bench::{Markdown, Session, Summary, Table};
use podnet_tests::bins;
use podnet_tests::daemon::BENCH_LOG;

use crate::subject::Subject;
use crate::{
    Kind, Opts, Phase, PhaseResult, Stat, ADD_TARGET, DAEMON_BRIDGE, DEL_TARGET, POLICIES,
};

pub fn report(
    session: &Session,
    opts: &Opts,
    subjects: &[Subject],
    rounds: &[Vec<PhaseResult>],
) -> String {
    let mut md = session.report(
        "CNI ADD/DEL latency: podnet (on host-local and on podnet-ipam) vs reference bridge",
    );
    inputs(&mut md, opts, subjects);
    method(&mut md, opts, subjects);
    let last = rounds.len();
    md.heading(2, format_args!("Targets (round {last} of {last})"));
    targets(&mut md, opts, &rounds[last - 1]);
    for (i, round) in rounds.iter().enumerate().rev() {
        let headline = if i + 1 == last { " (headline)" } else { "" };
        md.heading(2, format_args!("Round {} of {last}{headline}", i + 1));
        for r in round {
            phase_tables(&mut md, r, opts);
        }
    }
    md.finish()
}

/// What was measured with what, after the machine facts.
fn inputs(md: &mut Markdown, opts: &Opts, subjects: &[Subject]) {
    let podnet = &subjects[0].plugin;
    md.item(format_args!(
        "podnet, podnetd: {}, {} (podnet {})",
        podnet.display(),
        bins::workspace_bin("podnetd").display(),
        bins::linkage(podnet)
    ));
    md.item(format_args!(
        "bridge, host-local: {} (Debian containernetworking-plugins {})",
        bins::REFERENCE_PLUGINS,
        facts::package_version("containernetworking-plugins")
    ));
    if let Some(d) = subjects.iter().find_map(|s| s.daemon.as_ref()) {
        let cidrs: Vec<String> = d
            .allocations_cidrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        let made = subjects.iter().any(|s| s.daemon_made_bridge);
        let dir = d.dir.path().parent().unwrap_or(d.dir.path());
        md.item(format_args!(
            "podnetd: `--cluster-cidr {} --max-pods {}` (IPv4 only, like the host-local \
             configuration), node CIDR {}; bridge `{DAEMON_BRIDGE}` {} by podnetd before the \
             first ADD; sled state in a tempdir under {} ({}); `PODNET_LOG={BENCH_LOG}` \
             (podnetd's default level)",
            d.opts.cluster_cidr,
            d.opts.max_pods,
            cidrs.join(", "),
            if made { "created" } else { "not created" },
            dir.display(),
            facts::filesystem(dir),
        ));
    }
    md.item(format_args!(
        "pods: {}, concurrency: {}, rounds: {}",
        opts.pods, opts.concurrency.concurrency, opts.rounds
    ));
}

fn method(md: &mut Markdown, opts: &Opts, subjects: &[Subject]) {
    md.para("Configurations (dataDir, podnetd's directories: a fresh tempdir per subject):");
    for s in subjects {
        md.item(format_args!("{}: `{}`", s.kind.label(), s.shown_conf()));
    }
    md.para(format_args!(
        "One operation = wall clock from spawning the plugin process to its exit, from a thread \
         inside the plugin's own node namespace. podnet + podnet-ipam asks podnetd (running in \
         that node namespace, flushing sled before it answers) over its unix socket, in process; \
         the others exec host-local. host-local alone is the IPAM plugin exec'd directly with the \
         same configuration; a plugin's *own part* is its figure minus host-local's at the same \
         statistic (clamped at 0). Concurrent phases keep {} worker threads busy, so their \
         latencies include queueing on {} CPUs. The order rotates per phase and round; the last \
         round is the headline, round 1 includes first-use costs (bridge creation, cold page \
         cache).",
        opts.concurrency.concurrency,
        facts::nproc()
    ));
}

fn targets(md: &mut Markdown, opts: &Opts, round: &[PhaseResult]) {
    md.para(format_args!(
        "Issue 3: podnet + podnet-ipam total over bridge + host-local total: ADD ≤ {ADD_TARGET:.2} \
         (judged on p50; p99 shown as the tail), DEL ≤ {DEL_TARGET:.2}."
    ));
    // Issue 3's target: podnet on its own IPAM, whole operation, against
    // the reference bridge on host-local, whole operation.
    md.table(&targets_table(
        round,
        opts,
        [
            "podnet + podnet-ipam ms",
            "bridge + host-local ms",
            "ratio",
            "bridge's figure",
        ],
        |r| (r.of(Kind::PodnetIpam), r.of(Kind::Bridge)),
    ));
    md.para(format_args!(
        "podnet's own part over bridge's own part, both on host-local: ADD ≤ {ADD_TARGET:.2}, \
         DEL ≤ {DEL_TARGET:.2}."
    ));
    md.table(&targets_table(
        round,
        opts,
        [
            "podnet own ms",
            "bridge own ms",
            "own ratio",
            "bridge own part",
        ],
        |r| (r.own(Kind::Podnet), r.own(Kind::Bridge)),
    ));
    md.para(format_args!(
        "Issue 14: with NetworkPolicy enforced ({POLICIES} policies isolating every pod; each ADD \
         returns once the pod's rules are in the kernel), podnet + podnet-ipam total over \
         bridge + host-local total: ADD ≤ {ADD_TARGET:.2}, DEL ≤ {DEL_TARGET:.2}."
    ));
    md.table(&targets_table(
        round,
        opts,
        [
            "podnet + podnet-ipam, policy on ms",
            "bridge + host-local ms",
            "ratio",
            "bridge's figure",
        ],
        |r| (r.of(Kind::PodnetPolicy), r.of(Kind::Bridge)),
    ));
}

fn target_for(phase: Phase) -> f64 {
    if phase.verb() == "ADD" {
        ADD_TARGET
    } else {
        DEL_TARGET
    }
}

fn verdict(q: Option<f64>, target: f64, zero: &str) -> String {
    match q {
        Some(q) if q <= target => "met".to_string(),
        Some(_) => "**not met**".to_string(),
        None => format!("n/a ({zero} is 0)"),
    }
}

/// One target table: podnet's figure against bridge's, per phase, at p50
/// and p99. `figures` picks what is compared (whole operations, or own
/// parts); `columns` names podnet's, bridge's and the ratio's columns, and
/// bridge's figure where a zero makes the ratio meaningless.
fn targets_table(
    round: &[PhaseResult],
    opts: &Opts,
    columns: [&str; 4],
    figures: impl Fn(&PhaseResult) -> (Summary, Summary),
) -> Table {
    let [podnet, bridge, ratio_name, zero] = columns;
    let mut t = Table::new(&["phase", "stat", podnet, bridge, ratio_name, "target", "met"])
        .align("llrrrrl");
    for r in round {
        let target = target_for(r.phase);
        let (podnet_stats, bridge_stats) = figures(r);
        for stat in [Stat::P50, Stat::P99] {
            let (p, b) = (stat.of(&podnet_stats), stat.of(&bridge_stats));
            let q = ratio(p, b);
            t.row([
                r.phase.title(opts),
                stat.label().to_string(),
                format!("{p:.2}"),
                format!("{b:.2}"),
                fmt_ratio(q),
                format!("≤ {target:.2}"),
                verdict(q, target, zero),
            ]);
        }
    }
    t
}

/// A phase: every plugin's latencies, then the ratios between them.
fn phase_tables(md: &mut Markdown, r: &PhaseResult, opts: &Opts) {
    md.heading(3, r.phase.title(opts));
    let order: Vec<&str> = r.order.iter().map(|k| k.label()).collect();
    md.para(format_args!("Run order: {}.", order.join(", ")));
    let mut t = Table::new(&[
        "plugin",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "phase wall s",
        "ops/s",
    ])
    .align("lrrrrr");
    for kind in Kind::ALL {
        let (st, wall) = (r.of(kind), r.walls[kind.index()]);
        t.row([
            kind.label().to_string(),
            format!("{:.2}", ms(st.p50)),
            format!("{:.2}", ms(st.p99)),
            format!("{:.2}", ms(st.mean)),
            format!("{:.2}", wall.as_secs_f64()),
            format!("{:.0}", per_sec(opts.pods, wall)),
        ]);
    }
    for kind in [Kind::Podnet, Kind::Bridge] {
        let own = r.own(kind);
        t.row([
            format!("{} own part (− host-local)", kind.label()),
            format!("{:.2}", ms(own.p50)),
            format!("{:.2}", ms(own.p99)),
            format!("{:.2}", ms(own.mean)),
            String::new(),
            String::new(),
        ]);
    }
    md.table(&t);
    md.table(&ratio_table(r));
}

fn ratio_table(r: &PhaseResult) -> Table {
    let mut t = Table::new(&["ratio", "p50", "p99", "mean"]).align("lrrr");
    let mut row = |name: &str, a: Summary, b: Summary| {
        let cell = |s: Stat| fmt_ratio(ratio(s.of(&a), s.of(&b)));
        t.row([
            name.to_string(),
            cell(Stat::P50),
            cell(Stat::P99),
            cell(Stat::Mean),
        ]);
    };
    let bridge = r.of(Kind::Bridge);
    row(
        "podnet + podnet-ipam / bridge + host-local, total",
        r.of(Kind::PodnetIpam),
        bridge,
    );
    row(
        "podnet + podnet-ipam, NetworkPolicy on / bridge + host-local, total",
        r.of(Kind::PodnetPolicy),
        bridge,
    );
    row(
        "podnet + host-local / bridge + host-local, total",
        r.of(Kind::Podnet),
        bridge,
    );
    row(
        "podnet own / bridge own (both on host-local)",
        r.own(Kind::Podnet),
        r.own(Kind::Bridge),
    );
    t
}
