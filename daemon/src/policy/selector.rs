//! Label selector matching, with the semantics of `k8s.io/apimachinery`'s
//! `labels.Selector`.

use super::model::{LabelSelector, Labels, Operator, Requirement};

impl LabelSelector {
    /// Every `match_labels` entry and every requirement must hold, so the
    /// empty selector matches every set of labels.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// The same selector, written one way: requirements and their values
    /// sorted and deduplicated, so selectors that mean the same compare
    /// (and hash) the same.
    pub(crate) fn normalized(&self) -> Self {
        let mut match_expressions: Vec<Requirement> = self
            .match_expressions
            .iter()
            .map(|r| {
                let mut values = r.values.clone();
                values.sort();
                values.dedup();
                Requirement {
                    key: r.key.clone(),
                    op: r.op,
                    values,
                }
            })
            .collect();
        match_expressions.sort();
        match_expressions.dedup();
        Self {
            match_labels: self.match_labels.clone(),
            match_expressions,
        }
    }
}

impl Requirement {
    /// `NotIn` matches a missing label, as upstream: "not one of these
    /// values" holds for no value at all.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}
