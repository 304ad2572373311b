//! Messages and batches against what `nft` 1.0.6 sends (read with strace
//! in a scratch namespace), and what the builder refuses. `nft` also sends
//! user data (how to print a set) and batch ids (NFTA_SET_ELEM_LIST_SET_ID):
//! the references here have those attributes stripped, by type.

use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};

use super::msg::{self, Attrs, Writer};
use super::tests_set::{ip, prefix, sets};
use super::uapi::*;
use super::*;
use crate::nfnetlink::NLA_F_NESTED;

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `nft`'s attributes without those of the given types.
pub(super) fn strip(reference: &str, types: &[u16]) -> String {
    let bytes = unhex(reference);
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let padded = (len + 3) & !3;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if !types.contains(&kind) {
            out.extend_from_slice(&rest[..padded.min(rest.len())]);
        }
        rest = &rest[padded.min(rest.len())..];
    }
    hex(&out)
}

/// A sent message: type (without the subsystem), flags, family, the
/// attributes in hex, its `nft` command.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) kind: u16,
    pub(super) flags: u16,
    pub(super) family: u8,
    pub(super) attrs: String,
    pub(super) op: String,
}

pub(super) fn sent(tx: Transaction) -> Vec<Sent> {
    let batch = tx.finish().unwrap();
    let all = msg::messages(&batch.bytes).unwrap();
    let (first, last) = (&all[0], &all[all.len() - 1]);
    assert_eq!(first.kind, NFNL_MSG_BATCH_BEGIN);
    assert_eq!(last.kind, NFNL_MSG_BATCH_END);
    for framing in [first, last] {
        // res_id names the subsystem, big-endian.
        assert_eq!(&framing.payload[..4], &[0, 0, 0, 10]);
    }
    assert_eq!(first.seq, batch.begin_seq);
    assert_eq!(all.len(), batch.ops.len() + 2);
    all[1..all.len() - 1]
        .iter()
        .zip(&batch.ops)
        .map(|(m, (seq, op))| {
            assert_eq!(m.seq, *seq);
            assert_eq!(m.kind >> 8, NFNL_SUBSYS_NFTABLES);
            Sent {
                kind: m.kind & 0xff,
                flags: m.flags,
                family: m.payload[0],
                attrs: hex(&m.payload[4..]),
                op: op.clone(),
            }
        })
        .collect()
}

pub(super) fn one(tx: Transaction) -> Sent {
    let mut all = sent(tx);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

pub(super) fn f() -> Table {
    Table::new(Family::Inet, "f")
}

pub(super) const REQ_ACK: u16 = NLM_F_REQUEST | NLM_F_ACK;

#[test]
fn attributes_are_padded_and_nests_flagged() {
    let mut w = Writer::default();
    w.nest(7, |w| w.attr_str(1, "nat"));
    // nest header (4) + attr header (4) + "nat\0" (4)
    assert_eq!(w.buf.len(), 12);
    assert_eq!(u16::from_ne_bytes([w.buf[0], w.buf[1]]), 12);
    assert_eq!(u16::from_ne_bytes([w.buf[2], w.buf[3]]), 7 | NLA_F_NESTED);
    assert_eq!(u16::from_ne_bytes([w.buf[4], w.buf[5]]), 8);
    assert_eq!(&w.buf[8..12], b"nat\0");
    w.attr(2, &[1]);
    assert_eq!(w.buf.len(), 20, "a 1-byte value is padded to 4");
    let read: Vec<(u16, Vec<u8>)> = Attrs::new(&w.buf).map(|(k, v)| (k, v.to_vec())).collect();
    assert_eq!(read, [(7, w.buf[4..12].to_vec()), (2, vec![1])]);
}

#[test]
fn tables_and_chains_as_nft_sends_them() {
    let mut tx = Transaction::new();
    let fw = BaseChain {
        kind: ChainType::Filter,
        hook: Hook::Forward,
        priority: 0,
        policy: Policy::Drop,
    };
    tx.add_table(&f())
        .add_chain(&Chain::base(&f(), "fw", fw))
        .add_chain(&Chain::regular(&f(), "to_a"));
    let m = sent(tx);
    assert_eq!(m[0].attrs, "06000100660000000800020000000000");
    assert_eq!(m[1].attrs, "060001006600000007000300667700000b00070066696c746572000008000500000000001400048008000100000000020800020000000000");
    assert_eq!(m[2].attrs, "060001006600000009000300746f5f6100000000");
    for s in &m {
        assert_eq!((s.flags, s.family), (REQ_ACK | NLM_F_CREATE, NFPROTO_INET));
    }
    assert_eq!(
        (m[0].kind, m[1].kind, m[2].kind),
        (NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWCHAIN)
    );
    assert_eq!(
        m[1].op,
        "nft add chain inet f fw { type filter hook forward priority 0; policy drop; }"
    );

    let t4 = Table::new(Family::Ip, "t4");
    let input = BaseChain {
        kind: ChainType::Filter,
        hook: Hook::Input,
        priority: -10,
        policy: Policy::Accept,
    };
    let mut tx = Transaction::new();
    tx.add_chain(&Chain::base(&t4, "in", input));
    let m = one(tx);
    assert_eq!(m.family, NFPROTO_IPV4);
    assert_eq!(m.attrs, "070001007434000007000300696e00000b00070066696c7465720000080005000000000114000480080001000000000108000200fffffff6");

    // A nat chain: `nft` leaves its (accept) policy out; podnet sends it.
    let nat = BaseChain {
        kind: ChainType::Nat,
        hook: Hook::Postrouting,
        priority: 100,
        policy: Policy::Accept,
    };
    let mut tx = Transaction::new();
    tx.add_chain(&Chain::base(&f(), "nt", nat));
    assert_eq!(
        strip(&one(tx).attrs, &[NFTA_CHAIN_POLICY]),
        "0600010066000000070003006e740000080007006e6174001400048008000100000000040800020000000064"
    );
}

#[test]
fn rules_with_position_and_comment_and_their_removal() {
    let mut tx = Transaction::new();
    let r = Rule::new(&f(), "fw").accept().comment("hello");
    tx.add_rule_after(&r, 9)
        .insert_rule(&Rule::new(&f(), "fw").counter().accept())
        .delete_rule(&f(), "fw", 10);
    let m = sent(tx);
    assert_eq!(m[0].flags, REQ_ACK | NLM_F_CREATE | NLM_F_APPEND);
    assert_eq!(
        m[0].attrs,
        concat!(
            "06000100660000000700020066770000",
            "34000480300001800e000100696d6d6564696174650000001c0002800800010000000000100002800c0002800800010000000001",
            "0c0006000000000000000009",
            "0c000700000668656c6c6f00"
        )
    );
    assert_eq!(
        m[0].op,
        "nft add rule inet f fw position 9 accept comment \"hello\""
    );
    assert_eq!(m[1].flags, REQ_ACK | NLM_F_CREATE);
    assert_eq!(m[1].op, "nft insert rule inet f fw counter accept");
    assert_eq!(
        (m[2].kind, m[2].attrs.as_str()),
        (
            NFT_MSG_DELRULE,
            "060001006600000007000200667700000c000300000000000000000a"
        )
    );
    assert_eq!(m[2].op, "nft delete rule inet f fw handle 10");
}

#[test]
fn flushes_and_deletions_as_nft_sends_them() {
    let [_, _, hc, s6, ..] = <[Set; 6]>::try_from(sets()).unwrap();
    let nt = Chain::regular(&f(), "nt");
    let fw = Chain::regular(&f(), "fw");
    let mut tx = Transaction::new();
    tx.flush_chain(&fw)
        .flush_table(&f())
        .flush_set(&hc)
        .delete_chain(&nt)
        .delete_set(&s6)
        .delete_table(&f())
        .create_table(&f());
    let m = sent(tx);
    let got: Vec<(u16, &str, &str)> = m
        .iter()
        .map(|s| (s.kind, s.attrs.as_str(), s.op.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                NFT_MSG_DELRULE,
                "06000100660000000700020066770000",
                "nft flush chain inet f fw"
            ),
            (
                NFT_MSG_DELRULE,
                "0600010066000000",
                "nft flush table inet f"
            ),
            // `nft` writes the set's name before the table's.
            (
                NFT_MSG_DELSETELEM,
                "06000100660000000700020068630000",
                "nft flush set inet f hc"
            ),
            (
                NFT_MSG_DELCHAIN,
                "0600010066000000070003006e740000",
                "nft delete chain inet f nt"
            ),
            (
                NFT_MSG_DELSET,
                "06000100660000000700020073360000",
                "nft delete set inet f s6"
            ),
            (
                NFT_MSG_DELTABLE,
                "0600010066000000",
                "nft delete table inet f"
            ),
            (
                NFT_MSG_NEWTABLE,
                "06000100660000000800020000000000",
                "nft create table inet f"
            ),
        ]
    );
    assert_eq!(m[6].flags & NLM_F_EXCL_FLAG, NLM_F_EXCL_FLAG);
}

const NLM_F_EXCL_FLAG: u16 = netlink_packet_core::NLM_F_EXCL;

fn refused(tx: Transaction) -> (String, String) {
    match tx.finish() {
        Err(NftError::Invalid { op, reason }) => (op, reason),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn what_does_not_fit_is_refused_before_sending() {
    let [pfx, cc, hc, _, vm, _] = sets().try_into().unwrap();
    let mut tx = Transaction::new();
    tx.add_elements(&pfx, &[Element::new([Part::Single(Atom::Port(80))])]);
    assert_eq!(
        refused(tx),
        (
            "nft add element inet f pfx".into(),
            "80: 80 is not of type ipv4_addr".into()
        )
    );

    let mut tx = Transaction::new();
    let range = Part::Range(Atom::Port(80), Atom::Port(81));
    tx.add_elements(
        &hc,
        &[Element::new([
            Part::Single(ip("10.0.0.1")),
            Part::Single(Atom::Proto(6)),
            range,
        ])],
    );
    assert!(refused(tx).1.ends_with("a range needs an interval set"));

    let mut tx = Transaction::new();
    tx.add_elements(&cc, &[Element::new([prefix("10.0.0.0/8")])]);
    assert!(refused(tx).1.ends_with("1 key fields for a set keyed by 3"));

    let mut tx = Transaction::new();
    tx.add_elements(&vm, &[Element::new([Part::Single(ip("10.0.0.1"))])]);
    assert!(refused(tx).1.ends_with("a map's element needs data"));

    let mut tx = Transaction::new();
    let backwards = Part::Range(ip("10.0.0.9"), ip("10.0.0.1"));
    tx.add_elements(&pfx, &[Element::new([backwards])]);
    assert!(refused(tx).1.ends_with("is not a range"));

    let mut tx = Transaction::new();
    tx.add_table(&f())
        .add_rule(&Rule::new(&f(), "fw").iifname(CmpOp::Eq, "a-name-too-long-for-linux"));
    let (op, reason) = refused(tx);
    assert!(op.starts_with("nft add rule inet f fw iifname"), "{op}");
    assert!(reason.contains("1 to 15 bytes"), "{reason}");

    // A key of more than the 64 bytes the registers hold.
    let mut tx = Transaction::new();
    let long = [
        Field::Ip6Saddr,
        Field::Ip6Daddr,
        Field::Ip6Saddr,
        Field::Ip6Daddr,
        Field::Dport,
    ];
    tx.add_rule(&Rule::new(&f(), "fw").in_set(&long, "s"));
    assert!(refused(tx).1.contains("too long"));
}

#[test]
fn an_empty_transaction_sends_nothing() {
    let tx = Transaction::new();
    assert!(tx.is_empty());
    assert_eq!(sent(tx).len(), 0);
}
