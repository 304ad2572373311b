//! Sets, maps and their elements against what `nft` 1.0.6 sends (see
//! `tests.rs` for how the references were read and what is stripped).

use super::msg::{self, Attrs};
use super::tests::{f, one, sent, strip, unhex, REQ_ACK};
use super::uapi::*;
use super::*;
use netlink_packet_core::NLM_F_CREATE;

pub(super) fn sets() -> Vec<Set> {
    use KeyType::*;
    let concat = [Ipv4Addr, InetProto, InetService];
    vec![
        Set::new(&f(), "pfx", &[Ipv4Addr]).interval(),
        Set::new(&f(), "cc", &concat).interval(),
        Set::new(&f(), "hc", &concat),
        Set::new(&f(), "s6", &[Ipv6Addr]).constant(),
        Set::map(&f(), "vm", &[Ipv4Addr], MapData::Verdict),
        Set::map(
            &f(),
            "dn",
            &[InetProto, InetService],
            MapData::Value(vec![Ipv4Addr, InetService]),
        ),
    ]
}

#[test]
fn sets_and_maps_as_nft_sends_them() {
    let mut tx = Transaction::new();
    for s in sets() {
        tx.add_set(&s);
    }
    let nft = [
        "0600010066000000080002007066780008000300000000040800040000000007080005000000000408000a00000000010a000d000004020000000000",
        "060001006600000007000200636300000800030000000084080004000000730d080005000000000c08000a00000000022c000980280002800c00018008000100000000040c00018008000100000000010c000180080001000000000214000d00000400000000030800040d0000000100",
        "060001006600000007000200686300000800030000000000080004000000730d080005000000000c08000a000000000314000d00000400000000030800040d0000000100",
        "0600010066000000070002007336000008000300000000020800040000000008080005000000001008000a00000000040a000d000004020000000000",
        "060001006600000007000200766d000008000300000000080800040000000007080005000000000408000600ffffff00080007000000000008000a000000000516000d000004020000000104000000000604000000000000",
        "060001006600000007000200646e00000800030000000008080004000000030d080005000000000808000600000001cd080007000000000808000a00000000062a000d00000400000000010400000000030800040d0000000100040800040d00000001000604000000000000",
    ];
    let m = sent(tx);
    for (s, want) in m.iter().zip(nft) {
        assert_eq!(s.kind, NFT_MSG_NEWSET);
        assert_eq!(s.attrs, strip(want, &[13]), "{}", s.op);
    }
    assert_eq!(
        m[1].op,
        "nft add set inet f cc { type ipv4_addr . inet_proto . inet_service; flags interval; }"
    );
    assert_eq!(
        m[5].op,
        "nft add map inet f dn { type inet_proto . inet_service : ipv4_addr . inet_service; }"
    );
}

pub(super) fn ip(s: &str) -> Atom {
    Atom::Addr(s.parse().unwrap())
}

pub(super) fn prefix(s: &str) -> Part {
    Part::Prefix(s.parse().unwrap())
}

#[test]
fn elements_as_nft_sends_them() {
    let [pfx, cc, hc, s6, vm, dn] = sets().try_into().unwrap();
    let single = |a: Atom| Part::Single(a);
    let mut tx = Transaction::new();
    tx.add_elements(
        &pfx,
        &[
            Element::new([prefix("10.0.0.0/24")]),
            Element::new([single(ip("192.168.1.1"))]),
        ],
    )
    .add_elements(
        &cc,
        &[Element::new([
            prefix("10.0.0.0/24"),
            single(Atom::Proto(6)),
            Part::Range(Atom::Port(80), Atom::Port(81)),
        ])],
    )
    .add_elements(
        &hc,
        &[Element::new(
            [ip("10.0.0.1"), Atom::Proto(17), Atom::Port(53)].map(single),
        )],
    )
    .add_elements(&s6, &[Element::new([single(ip("fd00::1"))])]);
    let to = |v: Verdict, a: &str| Element::new([single(ip(a))]).with(ElemData::Verdict(v));
    tx.add_elements(
        &vm,
        &[
            to(Verdict::Jump("to_a".into()), "10.0.0.2"),
            to(Verdict::Drop, "10.0.0.3"),
            to(Verdict::Accept, "10.0.0.4"),
        ],
    )
    .add_elements(
        &dn,
        &[Element::new([Atom::Proto(6), Atom::Port(8080)].map(single))
            .with(ElemData::Value(vec![ip("10.0.0.2"), Atom::Port(80)]))],
    );
    let nft = [
        "06000100660000000800020070667800080004000000000154000380100001800c000180080001000a0000001800028008000300000000010c000180080001000a000100100003800c00018008000100c0a801011800048008000300000000010c00018008000100c0a80102",
        "060001006600000007000200636300000800040000000002300003802c00018014000180100001000a000000060000000050000014000a80100001000a0000ff0600000000510000",
        "0600010066000000070002006863000008000400000000031c0003801800018014000180100001000a0000011100000000350000",
        "060001006600000007000200733600000800040000000004200003801c0001801800018014000100fd000000000000000000000000000001",
        "060001006600000007000200766d00000800040000000005700003802c0001800c000180080001000a0000021c0002801800028008000100fffffffd09000200746f5f6100000000200002800c000180080001000a000003100002800c0002800800010000000000200003800c000180080001000a000004100002800c0002800800010000000001",
        "060001006600000007000200646e000008000400000000062800038024000180100001800c000100060000001f900000100002800c0001000a00000200500000",
    ];
    let m = sent(tx);
    assert_eq!(m.len(), nft.len());
    for (s, want) in m.iter().zip(nft) {
        assert_eq!(
            (s.kind, s.flags),
            (NFT_MSG_NEWSETELEM, REQ_ACK | NLM_F_CREATE)
        );
        assert_eq!(s.attrs, strip(want, &[4]), "{}", s.op);
    }
    assert_eq!(
        m[1].op,
        "nft add element inet f cc { 10.0.0.0/24 . tcp . 80-81 }"
    );
    assert_eq!(
        m[4].op,
        "nft add element inet f vm { 10.0.0.2 : jump to_a, 10.0.0.3 : drop, 10.0.0.4 : accept }"
    );
}

#[test]
fn deleting_elements_names_keys_the_same_way() {
    let [pfx, cc, ..] = <[Set; 6]>::try_from(sets()).unwrap();
    let mut tx = Transaction::new();
    tx.delete_elements(&pfx, &[Element::new([prefix("10.0.0.0/24")])])
        .delete_elements(
            &cc,
            &[Element::new([
                prefix("10.0.0.0/24"),
                Part::Single(Atom::Proto(6)),
                Part::Range(Atom::Port(80), Atom::Port(81)),
            ])],
        )
        .delete_elements(&cc, &[]);
    let m = sent(tx);
    assert_eq!(m.len(), 2, "no elements, no message (it would flush)");
    assert_eq!(
        m[0].attrs,
        concat!(
        "06000100660000000800020070667800",
        "2c000380100001800c000180080001000a0000001800028008000300000000010c000180080001000a000100"
    )
    );
    assert_eq!(m[1].attrs, concat!(
        "06000100660000000700020063630000",
        "300003802c00018014000180100001000a000000060000000050000014000a80100001000a0000ff0600000000510000"
    ));
    assert_eq!((m[0].kind, m[0].flags), (NFT_MSG_DELSETELEM, REQ_ACK));
}

#[test]
fn an_interval_to_the_top_has_no_end_element() {
    let t4 = Table::new(Family::Ip, "t4");
    let ports = Set::new(&t4, "ports", &[KeyType::InetService]).interval();
    let mut tx = Transaction::new();
    tx.add_elements(
        &ports,
        &[Element::new([Part::Range(Atom::Port(80), Atom::Port(81))])],
    );
    // `nft`'s bytes for `{ 80-81 }`.
    assert_eq!(
        one(tx).attrs,
        concat!(
            "07000100743400000a000200706f727473000000",
            "2c000380100001800c0001800600010000500000",
            "1800028008000300000000010c0001800600010000520000"
        )
    );
    let mut tx = Transaction::new();
    tx.add_elements(&ports, &[Element::new([Part::Single(Atom::Port(65535))])]);
    let m = one(tx);
    assert!(
        m.attrs
            .ends_with("14000380100001800c00018006000100ffff0000"),
        "{}",
        m.attrs
    );
}

#[test]
fn a_long_element_list_takes_several_messages_of_one_batch() {
    let [pfx, ..] = <[Set; 6]>::try_from(sets()).unwrap();
    let elems: Vec<Element> = (0..5000u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i * 4);
            Element::new([Part::Range(Atom::Addr(a.into()), Atom::Addr((a).into()))])
        })
        .collect();
    let mut tx = Transaction::new();
    tx.add_elements(&pfx, &elems);
    let m = sent(tx);
    assert!(m.len() > 1, "{} messages", m.len());
    let mut starts = 0;
    let mut ends = 0;
    for s in &m {
        assert!(s.attrs.len() / 2 < 60_000);
        let attrs = unhex(&s.attrs);
        let list = msg::find(&attrs, NFTA_SET_ELEM_LIST_ELEMENTS).unwrap();
        for (_, e) in Attrs::new(list) {
            match msg::find(e, NFTA_SET_ELEM_FLAGS) {
                Some(_) => ends += 1,
                None => starts += 1,
            }
        }
        // An interval's start and end stay in one message.
        assert!(
            s.op.starts_with("nft add element inet f pfx { 10.0."),
            "{}",
            s.op
        );
    }
    assert_eq!((starts, ends), (5000, 5000));
}
