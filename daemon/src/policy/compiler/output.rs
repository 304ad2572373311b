//! The ruleset a [`super::Compiler`] keeps, changed in place: which local
//! pod holds each address, which sets the allows name, and what changed.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use std::net::IpAddr;

use super::sets::SetCache;
use super::{Changes, Key};
use crate::policy::ruleset::{PeerSetId, Peers, PodRules, Ruleset};

#[derive(Default)]
pub(super) struct Output {
    pub ruleset: Ruleset,
    /// The local pods that claim each address. Should two pods claim one,
    /// the first by namespace and name keeps it.
    claims: BTreeMap<IpAddr, BTreeSet<Key>>,
    /// How many pod entries' allows name each set.
    refs: HashMap<PeerSetId, usize>,
    /// Sets that came to be named, or ceased to be.
    named: BTreeSet<PeerSetId>,
}

impl Output {
    pub fn claim(&mut self, key: &Key, ips: &[IpAddr]) {
        for ip in ips {
            self.claims.entry(*ip).or_default().insert(key.clone());
        }
    }

    pub fn release(&mut self, key: &Key, ips: &[IpAddr]) {
        for ip in ips {
            if let Some(keys) = self.claims.get_mut(ip) {
                keys.remove(key);
                if keys.is_empty() {
                    self.claims.remove(ip);
                }
            }
        }
    }

    /// The pod that holds `ip`.
    pub fn holder(&self, ip: IpAddr) -> Option<&Key> {
        self.claims.get(&ip).and_then(|keys| keys.first())
    }

    /// `ip`'s entry becomes `rules` (`None`: no entry).
    pub fn set(&mut self, ip: IpAddr, rules: Option<PodRules>, changes: &mut Changes) {
        if let Some(rules) = &rules {
            for id in named_sets(rules) {
                let n = self.refs.entry(id).or_default();
                *n += 1;
                if *n == 1 {
                    self.named.insert(id);
                }
            }
        }
        let old = match rules {
            Some(rules) => self.ruleset.pods.insert(ip, rules),
            None => self.ruleset.pods.remove(&ip),
        };
        if let Some(old) = &old {
            for id in named_sets(old) {
                if let Some(n) = self.refs.get_mut(&id) {
                    *n -= 1;
                    if *n == 0 {
                        self.refs.remove(&id);
                        self.named.insert(id);
                    }
                }
            }
        }
        if old.as_ref() != self.ruleset.pods.get(&ip) {
            changes.pods.insert(ip);
        }
    }

    /// The ruleset's sets brought in step with the pod entries and the
    /// cache: those named and not yet there, those no longer named, and
    /// those whose addresses `changed`.
    pub fn sync_sets(
        &mut self,
        cache: &SetCache,
        changed: BTreeSet<PeerSetId>,
        changes: &mut Changes,
    ) {
        let mut touched = std::mem::take(&mut self.named);
        touched.extend(changed);
        for id in touched {
            let set = self.refs.contains_key(&id).then(|| cache.get(id)).flatten();
            let before = match set {
                Some(set) => self.ruleset.peer_sets.insert(id, set.clone()),
                None => self.ruleset.peer_sets.remove(&id),
            };
            if before.as_ref() != self.ruleset.peer_sets.get(&id) {
                changes.sets.insert(id);
            }
        }
    }

    pub fn into_ruleset(self) -> Ruleset {
        self.ruleset
    }
}

/// The sets a pod entry's allows name, each once per allow.
fn named_sets(rules: &PodRules) -> impl Iterator<Item = PeerSetId> + '_ {
    let allows = rules.ingress.iter().chain(rules.egress.iter()).flatten();
    allows.filter_map(|a| match a.peers {
        Peers::Any => None,
        Peers::Set(id) => Some(id),
    })
}
