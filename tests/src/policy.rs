//! Shorthands for the policy engine's model in tests and benches.

use std::collections::BTreeMap;

use podnetd::policy::LabelSelector;

/// Labels from `key, value` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A selector matching exactly these labels.
pub fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: Vec::new(),
    }
}
