//! Label selectors, with `labels.Selector`'s semantics.

use super::fixture::{expr, labels, sel};
use crate::policy::{LabelSelector, Operator, Requirement};

#[test]
fn empty_selector_matches_everything() {
    assert!(LabelSelector::default().matches(&labels(&[])));
    assert!(LabelSelector::default().matches(&labels(&[("a", "1")])));
}

#[test]
fn match_labels_all_must_hold() {
    let s = sel(&[("a", "1"), ("b", "2")]);
    assert!(s.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
    assert!(!s.matches(&labels(&[("a", "1")])));
    assert!(!s.matches(&labels(&[("a", "1"), ("b", "3")])));
}

#[test]
fn operators() {
    let none = labels(&[]);
    let one = labels(&[("k", "1")]);
    let two = labels(&[("k", "2")]);

    let s = expr("k", Operator::In, &["1", "3"]);
    assert!(s.matches(&one) && !s.matches(&two) && !s.matches(&none));

    // NotIn holds for a missing label, as upstream.
    let s = expr("k", Operator::NotIn, &["1"]);
    assert!(!s.matches(&one) && s.matches(&two) && s.matches(&none));

    let s = expr("k", Operator::Exists, &[]);
    assert!(s.matches(&one) && s.matches(&two) && !s.matches(&none));

    let s = expr("k", Operator::DoesNotExist, &[]);
    assert!(!s.matches(&one) && !s.matches(&two) && s.matches(&none));
}

#[test]
fn labels_and_expressions_together() {
    let mut s = sel(&[("app", "web")]);
    s.match_expressions.push(Requirement {
        key: "tier".into(),
        op: Operator::NotIn,
        values: vec!["db".into()],
    });
    assert!(s.matches(&labels(&[("app", "web")])));
    assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
    assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
    assert!(!s.matches(&labels(&[("tier", "front")])));
}

#[test]
fn normalized_selectors_compare_equal() {
    let a = LabelSelector {
        match_labels: labels(&[]),
        match_expressions: vec![
            Requirement {
                key: "b".into(),
                op: Operator::In,
                values: vec!["2".into(), "1".into(), "1".into()],
            },
            Requirement {
                key: "a".into(),
                op: Operator::Exists,
                values: vec![],
            },
        ],
    };
    let mut b = a.clone();
    b.match_expressions.reverse();
    b.match_expressions[1].values = vec!["1".into(), "2".into()];
    assert_eq!(a.normalized(), b.normalized());
}
