//! Part a: one policy change -> enforced. Each change to the simulated
//! cluster is compiled and applied to the kernel's table of a node
//! namespace, timed until the netlink transaction is acknowledged.

use std::time::{Duration, Instant};

use podnet_tests::churn::Rng;
use podnet_tests::netns::TestNetns;
use podnetd::kernel::policy::{Applied, PolicyTable};
use podnetd::policy::{compile, Compiler, Snapshot};

use crate::cluster::{self, Change, Sizes, CHANGES};
use crate::NODE;

/// How the node turns a snapshot into kernel rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `Compiler::compile` and `PolicyTable::apply_changes`: what changed
    /// only.
    Incremental,
    /// `compile` from scratch and `PolicyTable::apply` of the whole
    /// ruleset (compared with the one applied).
    Scratch,
}

impl Mode {
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Incremental => "Compiler + apply_changes",
            Mode::Scratch => "compile + apply",
        }
    }
}

pub struct Sample {
    pub kind: Change,
    pub compile: Duration,
    pub apply: Duration,
    pub messages: usize,
    /// Pod entries the compiler listed as changed (incremental mode).
    pub entries: usize,
}

impl Sample {
    pub fn total(&self) -> Duration {
        self.compile + self.apply
    }
}

/// The first apply: an empty `PolicyTable`, so the whole table in one
/// transaction, as podnetd's start.
pub struct First {
    pub compile: Duration,
    pub apply: Duration,
    pub messages: usize,
}

pub struct ChangeRun {
    pub mode: Mode,
    pub first: First,
    pub samples: Vec<Sample>,
    /// A resync at the end: the whole table replaced, and its messages.
    pub resync: (Duration, usize),
    /// Pod chains in the table at the end, each read back and checked to
    /// be the rules written.
    pub chains_checked: usize,
}

pub struct Plan {
    pub sizes: Sizes,
    pub changes: usize,
    pub warmup: usize,
    pub seed: u64,
}

fn messages(applied: &Applied) -> usize {
    match applied {
        Applied::Unchanged => 0,
        Applied::Changed { messages } | Applied::Replaced { messages, .. } => *messages,
    }
}

/// Runs `plan` in `node` (a namespace of its own) from `snapshot`, which it
/// changes; the table is left in the namespace.
pub fn run(
    node: &TestNetns,
    snapshot: &mut Snapshot,
    plan: &Plan,
    mode: Mode,
) -> Result<ChangeRun, String> {
    node.run(|| run_here(snapshot, plan, mode))
}

fn run_here(snapshot: &mut Snapshot, plan: &Plan, mode: Mode) -> Result<ChangeRun, String> {
    let mut rng = Rng::new(plan.seed);
    let mut compiler = Compiler::new(NODE);
    let mut table = PolicyTable::new();
    let mut step = |s: &Snapshot, table: &mut PolicyTable| -> Result<_, String> {
        let start = Instant::now();
        let (applied, compiled, entries) = match mode {
            Mode::Incremental => {
                compiler.compile(s);
                let compiled = start.elapsed();
                let applied = table.apply_changes(compiler.ruleset(), compiler.changes());
                (applied, compiled, compiler.changes().pods.len())
            }
            Mode::Scratch => {
                let ruleset = compile(s, NODE);
                let compiled = start.elapsed();
                (table.apply(ruleset), compiled, 0)
            }
        };
        let applied = applied.map_err(|e| format!("apply: {e}"))?;
        Ok((
            compiled,
            start.elapsed() - compiled,
            messages(&applied),
            entries,
        ))
    };
    let (compile_time, apply_time, n, _) = step(snapshot, &mut table)?;
    let first = First {
        compile: compile_time,
        apply: apply_time,
        messages: n,
    };
    let mut samples = Vec::with_capacity(plan.changes);
    for i in 0..plan.warmup + plan.changes {
        let kind = CHANGES[i % CHANGES.len()];
        cluster::change(snapshot, &plan.sizes, kind, &mut rng, i);
        let (compile, apply, messages, entries) = step(snapshot, &mut table)?;
        if i >= plan.warmup {
            samples.push(Sample {
                kind,
                compile,
                apply,
                messages,
                entries,
            });
        }
    }
    if mode == Mode::Incremental && compile(snapshot, NODE) != *compiler.ruleset() {
        return Err("the compiler's ruleset differs from a fresh compile's".into());
    }
    let chains = table
        .counters()
        .map_err(|e| format!("reading the table back: {e}"))?;
    let start = Instant::now();
    let resync = table.resync().map_err(|e| format!("resync: {e}"))?;
    let resync = (start.elapsed(), messages(&resync));
    Ok(ChangeRun {
        mode,
        first,
        samples,
        resync,
        chains_checked: chains.len(),
    })
}
