//! [`PolicyTable`]: the ruleset last applied, and keeping the kernel's
//! table in step with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::layout::{Layout, PodChain};
use super::{render, table, BRIDGE_NF_KEYS};
use crate::kernel::nft::{ListedRule, NftError, Session};
use crate::kernel::sysctl;
use crate::policy::{Changes, PeerSetId, PodRef, PolicyRef, PolicyType, Ruleset};

/// podnet's policy table in the node's network namespace, and the
/// ruleset it holds. Call every method from the node's namespace: the
/// table's netfilter socket is opened by the first call that talks to
/// the kernel, in that call's namespace, and kept.
#[derive(Debug, Default)]
pub struct PolicyTable {
    /// What the kernel holds, as far as podnet knows: `None` before the
    /// first apply and after a failure that leaves it unknown.
    applied: Option<(Ruleset, Layout)>,
    /// Kept open between syncs: closing a netfilter socket after a commit
    /// waits out an RCU grace period, which made one sync in ten take
    /// 20 ms (and every ADD waiting for it).
    nft: Session,
}

/// What [`PolicyTable::apply`] did.
#[derive(Debug)]
pub enum Applied {
    /// The ruleset was the one applied: no message sent.
    Unchanged,
    /// The changes only, in one transaction of `messages` messages.
    Changed { messages: usize },
    /// The whole table replaced: the first apply, a resync, or after the
    /// diff failed (`diff_error`, e.g. the table changed behind podnet).
    Replaced {
        messages: usize,
        diff_error: Option<NftError>,
    },
}

/// How much the table holds, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSize {
    /// Pod chains (one per isolated pod and direction).
    pub chains: usize,
    /// Rules in the pod chains.
    pub rules: usize,
    /// Elements of the peer sets (intervals) and of the verdict maps.
    pub elements: usize,
}

/// Packets and bytes a rule's counter saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// The counters of one pod's chain in one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCounters {
    pub pod: PodRef,
    pub direction: PolicyType,
    pub chain: String,
    /// Each allow rule's policies and what it let through, in chain order
    /// (an allow may be several rules: one per port and IP version).
    pub allowed: Vec<(Vec<PolicyRef>, Counter)>,
    /// New connections no allow matched.
    pub dropped: Counter,
}

impl PolicyTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// The ruleset the kernel holds, as far as podnet knows.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.applied.as_ref().map(|(r, _)| r)
    }

    /// What the table holds, as far as podnet knows.
    pub fn size(&self) -> TableSize {
        let Some((_, layout)) = &self.applied else {
            return TableSize::default();
        };
        let set_elements: usize = layout.sets.values().map(|s| s.v4.len() + s.v6.len()).sum();
        let map_elements: usize = layout.maps.values().map(|m| m.len()).sum();
        TableSize {
            chains: layout.chains.len(),
            rules: layout.chains.values().map(|c| c.rules.len()).sum(),
            elements: set_elements + map_elements,
        }
    }

    /// Makes the kernel hold `new`: only the changes when a ruleset was
    /// applied before, else (and when the changes fail) the whole table.
    /// What changed is found by comparing every entry with the ruleset
    /// applied; [`Self::apply_changes`] is told instead.
    pub fn apply(&mut self, new: Ruleset) -> Result<Applied, NftError> {
        let Some((old, _)) = &self.applied else {
            let layout = Layout::new(&new, &table());
            return self.replace(new, layout, None);
        };
        let (pods, sets) = differences(old, &new);
        self.apply_parts(New::Whole(new), &pods, &sets)
    }

    /// Makes the kernel hold `new`, as [`Self::apply`] does, given what may
    /// differ from the ruleset applied before (the compiler's
    /// [`Changes`]): only those entries are compared and laid out, so a
    /// change costs what it touches, not what the table holds. The
    /// ruleset applied before must be the compiler's previous result: a
    /// compile whose changes were not applied (an error between the two)
    /// is followed by [`Self::apply`] of a copy, which compares it all.
    pub fn apply_changes(&mut self, new: &Ruleset, changes: &Changes) -> Result<Applied, NftError> {
        if changes.all || self.applied.is_none() {
            return self.apply(new.clone());
        }
        self.apply_parts(New::Changed(new), &changes.pods, &changes.sets)
    }

    /// The diff of the entries `pods` and the sets `sets` (all that may
    /// differ), committed; the whole table when that fails.
    fn apply_parts(
        &mut self,
        new: New<'_>,
        pods: &BTreeSet<IpAddr>,
        sets: &BTreeSet<PeerSetId>,
    ) -> Result<Applied, NftError> {
        let Some((mut ruleset, mut layout)) = self.applied.take() else {
            return Ok(Applied::Unchanged);
        };
        let t = table();
        // Laying out a quarter of the entries again costs more than laying
        // out all of them afresh and comparing whole layouts.
        let relayout = pods.len() > ruleset.pods.len() / 4 + 16;
        let tx = if relayout {
            ruleset = new.into_ruleset(ruleset, pods, sets);
            let next = Layout::new(&ruleset, &t);
            let tx = render::diff(&layout, &next, &t);
            layout = next;
            tx
        } else {
            let (before, after) = layout.patch(&t, &ruleset, new.ruleset(), pods, sets);
            ruleset = new.into_ruleset(ruleset, pods, sets);
            render::diff(&before, &after, &t)
        };
        let Some(tx) = tx else {
            self.applied = Some((ruleset, layout));
            return Ok(Applied::Unchanged);
        };
        let messages = tx.len();
        match self.nft.commit(tx) {
            Ok(()) => {
                self.applied = Some((ruleset, layout));
                Ok(Applied::Changed { messages })
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy diff failed, replacing the table");
                self.replace(ruleset, layout, Some(e))
            }
        }
    }

    /// Replaces the whole table with the ruleset last applied, removing
    /// whatever else crept in, and sets bridge netfilter again. Nothing
    /// to do before the first apply.
    pub fn resync(&mut self) -> Result<Applied, NftError> {
        match self.applied.take() {
            Some((ruleset, layout)) => self.replace(ruleset, layout, None),
            None => Ok(Applied::Unchanged),
        }
    }

    /// Replaces the whole table with `new` in one transaction, removing
    /// whatever else crept in, and sets bridge netfilter again (a periodic
    /// resync: one write, not a diff and then a replace).
    pub fn replace_with(&mut self, new: Ruleset) -> Result<Applied, NftError> {
        let layout = Layout::new(&new, &table());
        self.replace(new, layout, None)
    }

    /// Deletes the table (uninstall). Returns whether it was there. The
    /// bridge netfilter sysctls stay: kube-proxy needs them as well, and
    /// what they were before podnet is not known.
    ///
    /// Equivalent to `nft delete table inet podnet-policy`.
    pub fn remove(&mut self) -> Result<bool, NftError> {
        self.applied = None;
        crate::kernel::nft::remove_table(&table())
    }

    fn replace(
        &mut self,
        ruleset: Ruleset,
        layout: Layout,
        diff_error: Option<NftError>,
    ) -> Result<Applied, NftError> {
        self.applied = None;
        ensure_bridge_netfilter()?;
        let tx = render::full(&layout, &table());
        let messages = tx.len();
        self.nft.commit(tx)?;
        self.applied = Some((ruleset, layout));
        Ok(Applied::Replaced {
            messages,
            diff_error,
        })
    }

    /// Every pod chain's counters, read back from the kernel: what each
    /// policy allowed and what each pod's isolation dropped. A chain whose
    /// rules are not the ones podnet wrote is an error (a resync mends it).
    /// A full replace starts every counter again from zero, as a restart
    /// would: readers treat a smaller value as a reset.
    ///
    /// Equivalent to `nft -a list chain inet podnet-policy CHAIN` for each.
    pub fn counters(&mut self) -> Result<Vec<PodCounters>, NftError> {
        let Some((_, layout)) = &self.applied else {
            return Ok(Vec::new());
        };
        let t = table();
        let mut out = Vec::with_capacity(layout.chains.len());
        for (name, chain) in &layout.chains {
            let listed = self.nft.list_rules(&t, name)?;
            if !same_rules(chain, &listed) {
                return Err(NftError::Decode {
                    op: format!("nft -a list chain {} {name}", t.describe()),
                    reason: "not the rules podnet wrote".into(),
                });
            }
            let mut pod = PodCounters {
                pod: chain.pod.clone(),
                direction: chain.direction,
                chain: name.clone(),
                allowed: Vec::new(),
                dropped: Counter::default(),
            };
            for (rule, listed) in chain.rules.iter().zip(&listed) {
                let (packets, bytes) = listed.counter().unwrap_or_default();
                let c = Counter { packets, bytes };
                if rule.policies.is_empty() {
                    pod.dropped = c;
                } else {
                    pod.allowed.push((rule.policies.clone(), c));
                }
            }
            out.push(pod);
        }
        Ok(out)
    }
}

/// The ruleset to apply: whole, or (with what may differ) the compiler's.
enum New<'a> {
    Whole(Ruleset),
    Changed(&'a Ruleset),
}

impl New<'_> {
    fn ruleset(&self) -> &Ruleset {
        match self {
            New::Whole(r) => r,
            New::Changed(r) => r,
        }
    }

    /// The new ruleset, owned: `applied` (the ruleset before) with the
    /// entries that may differ copied in, when it is not whole.
    fn into_ruleset(
        self,
        mut applied: Ruleset,
        pods: &BTreeSet<IpAddr>,
        sets: &BTreeSet<PeerSetId>,
    ) -> Ruleset {
        match self {
            New::Whole(r) => r,
            New::Changed(r) => {
                copy_entries(&mut applied, r, pods, sets);
                applied
            }
        }
    }
}

/// The entries and sets that differ between `old` and `new`.
fn differences(old: &Ruleset, new: &Ruleset) -> (BTreeSet<IpAddr>, BTreeSet<PeerSetId>) {
    fn differ<K: Ord + Copy, V: PartialEq>(
        old: &BTreeMap<K, V>,
        new: &BTreeMap<K, V>,
    ) -> BTreeSet<K> {
        let gone = old.keys().filter(|k| !new.contains_key(*k));
        let changed = new.iter().filter(|(k, v)| old.get(*k) != Some(*v));
        gone.copied().chain(changed.map(|(k, _)| *k)).collect()
    }
    (
        differ(&old.pods, &new.pods),
        differ(&old.peer_sets, &new.peer_sets),
    )
}

/// `pods` and `sets` of `ruleset` made `new`'s.
fn copy_entries(
    ruleset: &mut Ruleset,
    new: &Ruleset,
    pods: &BTreeSet<IpAddr>,
    sets: &BTreeSet<PeerSetId>,
) {
    for ip in pods {
        match new.pods.get(ip) {
            Some(rules) => ruleset.pods.insert(*ip, rules.clone()),
            None => ruleset.pods.remove(ip),
        };
    }
    for id in sets {
        match new.peer_sets.get(id) {
            Some(set) => ruleset.peer_sets.insert(*id, set.clone()),
            None => ruleset.peer_sets.remove(id),
        };
    }
}

/// The listed rules are the chain's as written, told by their comments
/// (which the kernel keeps cut to 254 bytes).
fn same_rules(chain: &PodChain, listed: &[ListedRule]) -> bool {
    listed.len() == chain.rules.len()
        && chain.rules.iter().zip(listed).all(|(w, l)| {
            match (w.rule.comment.as_deref(), l.comment.as_deref()) {
                (Some(w), Some(l)) => w.starts_with(l),
                (None, None) => true,
                _ => false,
            }
        })
}

/// Sets `net/bridge/bridge-nf-call-iptables` and `-ip6tables` to 1 in the
/// calling thread's namespace (per namespace on current kernels), so that
/// pod-to-pod traffic crossing the node's bridge reaches the forward hook.
/// Fails when bridge netfilter is not in the kernel (`br_netfilter` not
/// loaded): policy between pods of one node could not be enforced.
pub fn ensure_bridge_netfilter() -> Result<(), NftError> {
    for key in BRIDGE_NF_KEYS {
        sysctl::ensure(key, "1").map_err(NftError::Netlink)?;
    }
    Ok(())
}
