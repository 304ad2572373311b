//! Layouts to transactions: the whole table, or the changes between two.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::layout::{intervals, Layout, PodChain, MAPS};
use super::names::{self, FORWARD, INPUT};
use crate::kernel::nft::{
    Atom, BaseChain, Chain, ChainType, CmpOp, CtState, ElemData, Element, Expr, Family, Field,
    Hook, KeyType, MapData, Part, PayloadBase, Policy, Reg, Rule, Set, Table, Transaction, Verdict,
};
use crate::policy::{PeerSet, PeerSetId, PolicyType};

/// IPv6 neighbour discovery: router solicitation (133) to redirect (137).
const ND_FIRST: u8 = 133;
const ND_LAST: u8 = 137;
const ICMPV6: u8 = 58;

/// Replaces the table whole: created so that deleting it cannot fail,
/// deleted with everything in it (stale objects included), built again.
pub(super) fn full(layout: &Layout, table: &Table) -> Transaction {
    let mut tx = Transaction::new();
    tx.add_table(table).delete_table(table).create_table(table);
    for (id, set) in &layout.sets {
        add_peer_set(&mut tx, table, *id, set);
    }
    for (name, chain) in &layout.chains {
        write_chain(&mut tx, table, name, chain, false);
    }
    for (map, elems) in &layout.maps {
        let map = vmap(table, map);
        tx.add_set(&map);
        tx.add_elements(&map, &jumps(elems.iter()));
    }
    for (name, hook, rules) in [
        (FORWARD, Hook::Forward, forward_rules(table)),
        (INPUT, Hook::Input, input_rules(table)),
    ] {
        tx.create_chain(&base_chain(table, name, hook));
        for r in &rules {
            tx.add_rule(r);
        }
    }
    tx
}

/// The changes from `old` to `new`, ordered so that everything a message
/// names exists when the kernel reaches it: sets and chains are made
/// before the rules and elements that use them, and map elements and rules
/// go before the chains and sets they name. `None` when nothing changed.
pub(super) fn diff(old: &Layout, new: &Layout, table: &Table) -> Option<Transaction> {
    let mut tx = Transaction::new();
    for (id, set) in &new.sets {
        match old.sets.get(id) {
            None => add_peer_set(&mut tx, table, *id, set),
            Some(before) if before != set => change_peer_set(&mut tx, table, *id, before, set),
            Some(_) => {}
        }
    }
    for (name, chain) in &new.chains {
        match old.chains.get(name) {
            None => write_chain(&mut tx, table, name, chain, false),
            Some(before) if before != chain => write_chain(&mut tx, table, name, chain, true),
            Some(_) => {}
        }
    }
    for &(direction, v6) in &MAPS {
        change_map(&mut tx, table, old, new, names::vmap(direction, v6));
    }
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        tx.delete_chain(&Chain::regular(table, name.clone()));
    }
    for id in old.sets.keys().filter(|id| !new.sets.contains_key(*id)) {
        for v6 in [false, true] {
            tx.delete_set(&peer_set(table, *id, v6));
        }
    }
    (!tx.is_empty()).then_some(tx)
}

fn peer_set(table: &Table, id: PeerSetId, v6: bool) -> Set {
    let key = if v6 {
        KeyType::Ipv6Addr
    } else {
        KeyType::Ipv4Addr
    };
    Set::new(table, names::peer_set(id, v6), &[key]).interval()
}

fn add_peer_set(tx: &mut Transaction, table: &Table, id: PeerSetId, set: &PeerSet) {
    for v6 in [false, true] {
        let s = peer_set(table, id, v6);
        tx.add_set(&s);
        tx.add_elements(&s, &addresses(&intervals(set, v6)));
    }
}

/// Intervals gone are deleted before new ones are added: a merged
/// interval replacing the pieces it joins overlaps them.
fn change_peer_set(
    tx: &mut Transaction,
    table: &Table,
    id: PeerSetId,
    old: &PeerSet,
    new: &PeerSet,
) {
    for v6 in [false, true] {
        let (before, after) = (intervals(old, v6), intervals(new, v6));
        let s = peer_set(table, id, v6);
        tx.delete_elements(
            &s,
            &addresses(&before.difference(&after).copied().collect()),
        );
        tx.add_elements(
            &s,
            &addresses(&after.difference(&before).copied().collect()),
        );
    }
}

fn addresses(intervals: &BTreeSet<(IpAddr, IpAddr)>) -> Vec<Element> {
    intervals
        .iter()
        .map(|&(a, b)| {
            let part = if a == b {
                Part::Single(Atom::Addr(a))
            } else {
                Part::Range(Atom::Addr(a), Atom::Addr(b))
            };
            Element::new([part])
        })
        .collect()
}

/// A new chain with its rules, or (`rewrite`) an existing one flushed
/// and written again.
fn write_chain(tx: &mut Transaction, table: &Table, name: &str, chain: &PodChain, rewrite: bool) {
    let c = Chain::regular(table, name);
    if rewrite {
        tx.flush_chain(&c);
    } else {
        tx.create_chain(&c);
    }
    for r in &chain.rules {
        tx.add_rule(&r.rule);
    }
}

fn vmap(table: &Table, name: &str) -> Set {
    let key = if name.ends_with("v6") {
        KeyType::Ipv6Addr
    } else {
        KeyType::Ipv4Addr
    };
    Set::map(table, name, &[key], MapData::Verdict)
}

fn jumps<'a>(elems: impl Iterator<Item = (&'a IpAddr, &'a String)>) -> Vec<Element> {
    elems
        .map(|(ip, chain)| {
            Element::new([Part::Single(Atom::Addr(*ip))])
                .with(ElemData::Verdict(Verdict::Jump(chain.clone())))
        })
        .collect()
}

/// Elements gone or leading elsewhere are deleted, then the new ones
/// added.
fn change_map(tx: &mut Transaction, table: &Table, old: &Layout, new: &Layout, map: &str) {
    let empty = BTreeMap::new();
    let before = old.maps.get(map).unwrap_or(&empty);
    let after = new.maps.get(map).unwrap_or(&empty);
    let gone = before.iter().filter(|(ip, c)| after.get(*ip) != Some(*c));
    let added = after.iter().filter(|(ip, c)| before.get(*ip) != Some(*c));
    let m = vmap(table, map);
    tx.delete_elements(&m, &jumps(gone));
    tx.add_elements(&m, &jumps(added));
}

fn base_chain(table: &Table, name: &str, hook: Hook) -> Chain {
    let base = BaseChain {
        kind: ChainType::Filter,
        hook,
        priority: 0,
        policy: Policy::Accept,
    };
    Chain::base(table, name, base)
}

/// Replies first (one rule for every packet of an allowed connection),
/// then what conntrack could not place, neighbour discovery, and the
/// source's egress and the destination's ingress, each one map lookup.
fn forward_rules(table: &Table) -> Vec<Rule> {
    let r = || Rule::new(table, FORWARD);
    vec![
        r().ct_state(CtState::ESTABLISHED | CtState::RELATED)
            .accept(),
        r().ct_state(CtState::INVALID).drop(),
        neighbour_discovery(r()),
        r().vmap(&[Field::Ip4Saddr], names::vmap(PolicyType::Egress, false)),
        r().vmap(&[Field::Ip6Saddr], names::vmap(PolicyType::Egress, true)),
        r().vmap(&[Field::Ip4Daddr], names::vmap(PolicyType::Ingress, false)),
        r().vmap(&[Field::Ip6Daddr], names::vmap(PolicyType::Ingress, true)),
    ]
}

/// A local pod's connections to the node's own addresses are its egress.
/// No `ct state invalid drop` here: it would judge all of the node's own
/// traffic, which is not podnet's to police.
fn input_rules(table: &Table) -> Vec<Rule> {
    let r = || Rule::new(table, INPUT);
    vec![
        r().ct_state(CtState::ESTABLISHED | CtState::RELATED)
            .accept(),
        neighbour_discovery(r()),
        r().vmap(&[Field::Ip4Saddr], names::vmap(PolicyType::Egress, false)),
        r().vmap(&[Field::Ip6Saddr], names::vmap(PolicyType::Egress, true)),
    ]
}

/// `meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-137 accept`.
/// Conntrack leaves neighbour discovery untracked, so no `ct state` rule
/// passes it; a pod's solicitations and adverts carry its own address, so
/// without this an isolated pod could not resolve its neighbours, and
/// bridge netfilter shows pods' neighbour discovery to this table.
fn neighbour_discovery(rule: Rule) -> Rule {
    let cmp = |op, v: u8| Expr::Cmp {
        sreg: Reg::R1,
        op,
        data: vec![v],
    };
    rule.nfproto(Family::Ip6)
        .l4proto(ICMPV6)
        .expr(Expr::Payload {
            base: PayloadBase::Transport,
            offset: 0,
            len: 1,
            dreg: Reg::R1,
        })
        .expr(cmp(CmpOp::Gte, ND_FIRST))
        .expr(cmp(CmpOp::Lte, ND_LAST))
        .accept()
        .comment("IPv6 neighbour discovery")
}
