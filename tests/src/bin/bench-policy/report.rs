//! bench-policy's report: the targets first, then one section per part.

use std::time::Duration;

use podnet_tests::bench::stats::{fmt_ratio, ms, percentile, ratio};
use podnet_tests::bench::{Markdown, Session, Table};

use crate::changes::{ChangeRun, Mode, Sample};
use crate::cluster::CHANGES;
use crate::conns::{Config, Path, PATHS};
use crate::{Opts, Results, PORT, TARGET_P99_MS, TARGET_RATIO};

pub fn report(session: &Session, opts: &Opts, run: &Results) -> String {
    let mut md = session.report("NetworkPolicy: change -> enforced, connections per second");
    inputs(&mut md, opts, run);
    targets(&mut md, run);
    section_changes(&mut md, run);
    section_conns(&mut md, opts, run);
    md.finish()
}

fn yes(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**not met**"
    }
}

fn f1(d: Duration) -> String {
    format!("{:.1}", ms(d))
}

fn inputs(md: &mut Markdown, opts: &Opts, run: &Results) {
    let s = &run.sizes;
    md.item(format_args!(
        "cluster (simulated, objects only): {} namespaces; {} pods on this node and {} on \
         others, each with one IPv4 address, labels app (20 per namespace) and tier, named \
         ports http and metrics; {} NetworkPolicies, one app each, of five kinds in turn (deny \
         ingress; from the namespace's web tier on http; from an app of a team's namespaces on \
         8080; egress to DNS and the namespace's databases plus ingress from prod web/api on \
         metrics; egress to 0.0.0.0/0 except the cluster on 443)",
        s.namespaces, s.local, s.remote, s.policies
    ));
    md.item(format_args!(
        "real pods in namespace `bench`: client and server on the node's bridge, one remote \
         pod routed through the node; with policies: default deny both ways, the bench pods \
         allowed to each other on TCP {PORT} (ingress by number, egress by the named port), \
         plus a policy allowing other traffic (more rules in their chains)"
    ));
    let (entries, isolated, sets) = run.ruleset;
    md.item(format_args!(
        "compiled for the node: {entries} pod entries, {isolated} isolated pod directions \
         (one chain each), {sets} peer sets"
    ));
    md.item(format_args!(
        "changes: {} timed with the Compiler, {} from scratch, each after {} unmeasured; \
         seed {}",
        opts.changes, opts.scratch_changes, opts.warmup, opts.seed
    ));
}

fn all(run: &ChangeRun) -> Vec<Duration> {
    run.samples.iter().map(Sample::total).collect()
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort_unstable();
    v
}

fn p(v: &[Duration], q: f64) -> String {
    percentile(v, q).map_or("-".into(), f1)
}

/// The worst path's ratio of connections per second with the policies to
/// without (the table for no policies): the median of each round's ratio.
fn worst_ratio(run: &Results) -> Option<(Path, f64)> {
    PATHS
        .iter()
        .filter_map(|path| {
            let v = paired_ratios(run, *path);
            v.get(v.len().checked_sub(1)? / 2).map(|r| (*path, *r))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn targets(md: &mut Markdown, run: &Results) {
    md.heading(2, "Targets");
    let mut t = Table::new(&["target", "measured", ""]);
    if let Some(inc) = run.changes.iter().find(|c| c.mode == Mode::Incremental) {
        let v = sorted(all(inc));
        let p99 = percentile(&v, 0.99).map(ms);
        t.row([
            format!(
                "policy change -> enforced, p99 < {TARGET_P99_MS:.0} ms ({} policies, {} pods)",
                run.sizes.policies, run.sizes.local
            ),
            p99.map_or("-".into(), |v| format!("{v:.1} ms")),
            yes(p99.is_some_and(|v| v < TARGET_P99_MS)).into(),
        ]);
    }
    if let Some((path, r)) = worst_ratio(run) {
        t.row([
            format!(
                "new connections/s with {} policies within 10 % of none (worst path, median \
                 of the rounds' ratios)",
                run.sizes.policies
            ),
            format!("{r:.2} ({})", path.describe()),
            yes(r >= TARGET_RATIO).into(),
        ]);
    }
    md.table(&t);
}

fn section_changes(md: &mut Markdown, run: &Results) {
    md.heading(2, "a. Policy change -> enforced");
    md.para(
        "Each change is made to the snapshot, then timed: compile, then apply until the \
         kernel acknowledged the nf_tables transaction (in a node namespace of its own). \
         *Compiler* keeps what it worked out between compiles and hands \
         `PolicyTable::apply_changes` the entries that changed; *scratch* compiles the \
         whole snapshot and `PolicyTable::apply` compares the whole ruleset with the one \
         applied. Both lay out and send only what changed. *entries*: the pod entries \
         (addresses) the compiler listed as changed. Times in ms; nearest-rank percentiles.",
    );
    let mut first = Table::new(&["mode", "compile", "apply", "total", "messages"]).align("lrrrr");
    for c in &run.changes {
        first.row([
            c.mode.describe().to_string(),
            f1(c.first.compile),
            f1(c.first.apply),
            f1(c.first.compile + c.first.apply),
            c.first.messages.to_string(),
        ]);
    }
    md.para("The first apply (an empty `PolicyTable`: the whole table in one transaction, as at podnetd's start):");
    md.table(&first);
    for c in &run.changes {
        changes_table(md, c);
    }
    let mut after = Vec::new();
    for c in &run.changes {
        after.push(format!(
            "{}: a resync (the whole table replaced) took {} ms, {} messages; {} pod chains \
             read back and found as written",
            c.mode.describe(),
            f1(c.resync.0),
            c.resync.1,
            c.chains_checked
        ));
    }
    for line in after {
        md.item(line);
    }
}

fn changes_table(md: &mut Markdown, c: &ChangeRun) {
    md.heading(3, c.mode.describe());
    let mut t = Table::new(&[
        "change",
        "n",
        "compile p50",
        "compile p99",
        "apply p50",
        "apply p99",
        "total p50",
        "total p90",
        "total p99",
        "total max",
        "messages p50",
        "messages max",
        "entries p50",
    ])
    .align("lrrrrrrrrrrrr");
    let mut row = |name: &str, samples: Vec<&Sample>| {
        if samples.is_empty() {
            return;
        }
        let compile = sorted(samples.iter().map(|s| s.compile).collect());
        let apply = sorted(samples.iter().map(|s| s.apply).collect());
        let total = sorted(samples.iter().map(|s| s.total()).collect());
        let mut msgs: Vec<usize> = samples.iter().map(|s| s.messages).collect();
        msgs.sort_unstable();
        let mut entries: Vec<usize> = samples.iter().map(|s| s.entries).collect();
        entries.sort_unstable();
        let entries = match c.mode {
            Mode::Incremental => entries[entries.len() / 2].to_string(),
            Mode::Scratch => "-".into(),
        };
        t.row([
            name.to_string(),
            samples.len().to_string(),
            p(&compile, 0.5),
            p(&compile, 0.99),
            p(&apply, 0.5),
            p(&apply, 0.99),
            p(&total, 0.5),
            p(&total, 0.9),
            p(&total, 0.99),
            total.last().map_or("-".into(), |d| f1(*d)),
            msgs.get(msgs.len() / 2)
                .map_or("-".into(), ToString::to_string),
            msgs.last().map_or("-".into(), ToString::to_string),
            entries,
        ]);
    };
    row("**all**", c.samples.iter().collect());
    for kind in CHANGES {
        row(
            kind.describe(),
            c.samples.iter().filter(|s| s.kind == kind).collect(),
        );
    }
    md.table(&t);
}

fn median_rate(run: &Results, path: Path, config: Config) -> Option<f64> {
    let mut v: Vec<f64> = (run.rates.iter())
        .filter(|(_, p, c, _)| *p == path && *c == config)
        .map(|(_, _, _, r)| r.per_sec())
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len().checked_sub(1)? / 2).copied()
}

/// The ratio with the policies to without in each round (the two ran
/// within seconds of each other, so a change of load weighs on both),
/// sorted.
fn paired_ratios(run: &Results, path: Path) -> Vec<f64> {
    let rate = |round: usize, config: Config| {
        (run.rates.iter())
            .find(|(r, p, c, _)| *r == round && *p == path && *c == config)
            .map(|(_, _, _, rate)| rate.per_sec())
    };
    let rounds = run
        .rates
        .iter()
        .map(|(r, _, _, _)| *r + 1)
        .max()
        .unwrap_or(0);
    let mut v: Vec<f64> = (0..rounds)
        .filter_map(|r| ratio(rate(r, Config::Policies)?, rate(r, Config::NoPolicies)?))
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// [`paired_ratios`]: their median and range.
fn paired(run: &Results, path: Path) -> String {
    let v = paired_ratios(run, path);
    match (v.first(), v.get(v.len().saturating_sub(1) / 2), v.last()) {
        (Some(lo), Some(mid), Some(hi)) => format!("{mid:.2} ({lo:.2}-{hi:.2})"),
        _ => "-".into(),
    }
}

fn config_name(c: Config, policies: usize) -> String {
    match c {
        Config::NoTable => "no table".into(),
        Config::NoPolicies => "0 policies".into(),
        Config::Policies => format!("{policies} policies"),
    }
}

fn section_conns(md: &mut Markdown, opts: &Opts, run: &Results) {
    md.heading(2, "b. New connections per second through the node");
    md.para(format_args!(
        "One client opens TCP connections to a server as fast as it can, each closed at once \
         with a reset, for {} s per path, configuration and round ({} rounds, the \
         configurations' order rotated per round); the median of the rounds, in connections \
         per second. *no table*: the node without podnet's table (no conntrack either); *0 \
         policies*: podnet's table for the same pods and no policy (conntrack, empty verdict \
         maps); *{} policies*: the pods isolated, each new connection's first packet through \
         the client's egress and the server's ingress chain. With the policies, a port no \
         policy allows was checked to be dropped on every path first. *slow connects*: \
         connects that took over 100 ms in all the path's runs (a SYN lost and sent again a \
         second later; *failed*: none within 1 s), which weigh on that run's rate.",
        opts.seconds, opts.rounds, run.sizes.policies
    ));
    let n = run.sizes.policies;
    let mut t = Table::new(&[
        "path",
        &config_name(Config::NoTable, n),
        &config_name(Config::NoPolicies, n),
        &config_name(Config::Policies, n),
        &format!("{n} / 0 policies"),
        "per round: median (range)",
        "slow connects",
        "failed connects",
    ])
    .align("lrrrrrrr");
    for path in PATHS {
        let rate = |c| median_rate(run, path, c);
        let cell = |c| rate(c).map_or("-".into(), |v| format!("{v:.0}"));
        let runs = || run.rates.iter().filter(|(_, p, _, _)| *p == path);
        let errors: usize = runs().map(|(_, _, _, r)| r.errors).sum();
        let slow: usize = runs().map(|(_, _, _, r)| r.slow).sum();
        let with = rate(Config::Policies);
        let without = rate(Config::NoPolicies);
        t.row([
            path.describe().to_string(),
            cell(Config::NoTable),
            cell(Config::NoPolicies),
            cell(Config::Policies),
            fmt_ratio(with.zip(without).and_then(|(a, b)| ratio(a, b))),
            paired(run, path),
            slow.to_string(),
            errors.to_string(),
        ]);
    }
    md.table(&t);
    let mut rounds = Table::new(&["round", "path", "configuration", "conn/s"]).align("rllr");
    for (round, path, config, rate) in &run.rates {
        rounds.row([
            (round + 1).to_string(),
            path.describe().to_string(),
            config_name(*config, n),
            format!("{:.0}", rate.per_sec()),
        ]);
    }
    md.para("Every run:");
    md.table(&rounds);
    for (config, size) in &run.topologies {
        if let Some((client, server)) = size {
            md.item(format_args!(
                "{}: the client's chains hold {client} allow rules, the server's {server} \
                 (ingress and egress, before each chain's drop)",
                config_name(*config, n)
            ));
        }
    }
}
