//! A layout patched with a compiler's changes is the layout of the new
//! ruleset, and the transaction of the changed parts is the one a diff of
//! the whole layouts gives, on random runs of cluster changes.

use super::layout::Layout;
use super::tests_ops as ops;
use super::*;
use crate::policy::tests::incremental::{mutate, snapshot, Rng, NODE};
use crate::policy::{Compiler, Ruleset};

fn all_ops(tx: Option<Transaction>) -> Vec<String> {
    tx.map(ops).unwrap_or_default()
}

#[test]
fn a_patched_layout_is_the_new_rulesets_and_so_is_its_diff() {
    let t = table();
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut s = snapshot(&mut rng);
        let mut compiler = Compiler::new(NODE);
        let mut old = compiler.compile(&s).clone();
        let mut layout = Layout::new(&old, &t);
        for step in 0..30 {
            mutate(&mut rng, &mut s, step);
            let new = compiler.compile(&s).clone();
            let changes = compiler.changes().clone();
            let what = format!("seed {seed}, step {step}");
            let whole = all_ops(render::diff(&layout, &Layout::new(&new, &t), &t));
            if changes.all {
                layout = Layout::new(&new, &t);
            } else {
                let (before, after) = layout.patch(&t, &old, &new, &changes.pods, &changes.sets);
                assert_eq!(layout, Layout::new(&new, &t), "{what}");
                assert_eq!(all_ops(render::diff(&before, &after, &t)), whole, "{what}");
            }
            old = new;
        }
    }
}

#[test]
fn a_patch_of_nothing_changes_nothing() {
    let t = table();
    let s = snapshot(&mut Rng(11));
    let rs: Ruleset = crate::policy::compile(&s, NODE);
    let mut layout = Layout::new(&rs, &t);
    let (pods, sets) = (Default::default(), Default::default());
    let (before, after) = layout.patch(&t, &rs, &rs, &pods, &sets);
    assert!(render::diff(&before, &after, &t).is_none());
    assert_eq!(layout, Layout::new(&rs, &t));
}
