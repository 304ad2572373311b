//! More of podnet's nf_tables transactions in a kernel: one the size of a
//! cluster's policy, thousands of rules and tens of thousands of set
//! elements in one batch, every message answered (the socket's buffers are
//! grown for it), committed whole and read back; maps to addresses and
//! ports (what DNAT will look up) and an interval verdict map.

use std::net::Ipv4Addr;

use podnet_tests::netns::TestNetns;
use podnet_tests::require_root;
use podnet_tests::routed::nft;
use podnetd::kernel::nft::*;

const RULES: u32 = 3000;
const ELEMENTS: u32 = 20_000;

#[test]
fn a_large_batch_is_committed_and_answered_whole() {
    require_root();
    let ns = TestNetns::new("nftl");
    let t = Table::new(Family::Inet, "pnlarge");
    let chain = Chain::regular(&t, "pods");
    let key = [KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService];
    let set = Set::new(&t, "allowed", &key).interval();
    let elements: Vec<Element> = (0..ELEMENTS)
        .map(|i| {
            let net = format!("{}/30", Ipv4Addr::from(0x0a00_0000 + i * 4));
            Element::new([
                Part::Prefix(net.parse().unwrap()),
                Part::Single(Atom::Proto(6)),
                Part::Range(Atom::Port(1000), Atom::Port(2000)),
            ])
        })
        .collect();
    let mut tx = Transaction::new();
    tx.add_table(&t)
        .add_chain(&chain)
        .add_set(&set)
        .add_elements(&set, &elements);
    for i in 0..RULES {
        let pod = Ipv4Addr::from(0x0a80_0000 + i);
        let rule = Rule::new(&t, "pods")
            .cmp(Field::Ip4Daddr, CmpOp::Eq, Atom::Addr(pod.into()))
            .in_set(&[Field::Ip4Saddr, Field::L4Proto, Field::Dport], "allowed")
            .counter()
            .accept()
            .comment(format!("pod {i}"));
        tx.add_rule(&rule);
    }
    let messages = tx.len();
    assert!(messages > RULES as usize + 3, "{messages}");
    ns.run(|| tx.commit()).unwrap();

    let listed = ns.run(|| list_rules(&t, "pods")).unwrap();
    assert_eq!(listed.len(), RULES as usize);
    assert_eq!(listed[1234].comment.as_deref(), Some("pod 1234"));
    assert_eq!(listed[1234].counter(), Some((0, 0)));
    let text = nft(&ns, &["list", "set", "inet", "pnlarge", "allowed"]);
    assert_eq!(text.matches(". tcp . 1000-2000").count(), ELEMENTS as usize);

    // Replaced whole in one more batch: the old rules go with the table.
    let mut tx = Transaction::new();
    tx.delete_table(&t).add_table(&t).add_chain(&chain);
    tx.add_rule(&Rule::new(&t, "pods").counter().drop());
    ns.run(|| tx.commit()).unwrap();
    assert_eq!(ns.run(|| list_rules(&t, "pods")).unwrap().len(), 1);
}

#[test]
fn value_maps_and_interval_verdict_maps() {
    require_root();
    let ns = TestNetns::new("nftm");
    let t = Table::new(Family::Ip, "pnmaps");
    let to = vec![KeyType::Ipv4Addr, KeyType::InetService];
    let dnat = Set::map(
        &t,
        "hostports",
        &[KeyType::InetProto, KeyType::InetService],
        MapData::Value(to),
    );
    let by_net = Set::map(&t, "by_net", &[KeyType::Ipv4Addr], MapData::Verdict).interval();
    let addr = |s: &str| Atom::Addr(s.parse().unwrap());
    let single = Part::Single;
    let mut tx = Transaction::new();
    tx.add_table(&t)
        .add_chain(&Chain::regular(&t, "c"))
        .add_set(&dnat)
        .add_set(&by_net)
        .add_elements(
            &dnat,
            &[
                Element::new([single(Atom::Proto(6)), single(Atom::Port(8080))])
                    .with(ElemData::Value(vec![addr("10.0.0.2"), Atom::Port(80)])),
                Element::new([single(Atom::Proto(17)), single(Atom::Port(5353))])
                    .with(ElemData::Value(vec![addr("10.0.0.3"), Atom::Port(53)])),
            ],
        )
        .add_elements(
            &by_net,
            &[
                Element::new([Part::Prefix("10.0.0.0/24".parse().unwrap())])
                    .with(ElemData::Verdict(Verdict::Accept)),
                Element::new([Part::Range(addr("10.1.0.5"), addr("10.1.0.9"))])
                    .with(ElemData::Verdict(Verdict::Jump("c".into()))),
            ],
        )
        .add_rule(&Rule::new(&t, "c").vmap(&[Field::Ip4Saddr], "by_net"));
    ns.run(|| tx.commit()).unwrap();
    let text = nft(&ns, &["list", "table", "ip", "pnmaps"]);
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "map hostports { type inet_proto . inet_service : ipv4_addr . inet_service \
         elements = { tcp . 8080 : 10.0.0.2 . 80, udp . 5353 : 10.0.0.3 . 53 } }",
        "map by_net { type ipv4_addr : verdict flags interval \
         elements = { 10.0.0.0/24 : accept, 10.1.0.5-10.1.0.9 : jump c } }",
        "chain c { ip saddr vmap @by_net }",
    ] {
        assert!(words.contains(want), "{want} not in:\n{text}");
    }

    // A map's element is deleted by its key alone.
    let mut tx = Transaction::new();
    tx.delete_elements(
        &dnat,
        &[Element::new([
            single(Atom::Proto(6)),
            single(Atom::Port(8080)),
        ])],
    );
    ns.run(|| tx.commit()).unwrap();
    let text = nft(&ns, &["list", "map", "ip", "pnmaps", "hostports"]);
    assert!(!text.contains("8080"), "{text}");
    assert!(text.contains("udp . 5353 : 10.0.0.3 . 53"), "{text}");
}

/// podnetd's policy syncs commit through one `Session`: its socket is the
/// namespace's where it was opened, whichever thread uses it later; it
/// carries transaction after transaction, and a refused one costs it only
/// its socket (the next call opens another).
#[test]
fn a_session_carries_many_transactions_and_survives_a_refused_one() {
    require_root();
    let ns = TestNetns::new("nfts");
    let t = Table::new(Family::Inet, "pnsession");
    let rule = |i: u32| {
        Rule::new(&t, "pods")
            .cmp(
                Field::Ip4Daddr,
                CmpOp::Eq,
                Atom::Addr(Ipv4Addr::from(0x0a80_0000 + i).into()),
            )
            .accept()
            .comment(format!("pod {i}"))
    };
    let mut session = Session::new();
    ns.run(|| {
        let mut tx = Transaction::new();
        tx.add_table(&t).add_chain(&Chain::regular(&t, "pods"));
        session.commit(tx)?;
        for i in 0..50 {
            let mut tx = Transaction::new();
            tx.add_rule(&rule(i));
            session.commit(tx)?;
        }
        Ok::<_, NftError>(())
    })
    .unwrap();

    let mut refused = Transaction::new();
    refused.add_rule(&Rule::new(&t, "missing").accept());
    let e = ns.run(|| session.commit(refused)).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    ns.run(|| {
        let mut tx = Transaction::new();
        tx.add_rule(&rule(50));
        session.commit(tx)
    })
    .unwrap();

    let listed = ns.run(|| list_rules(&t, "pods")).unwrap();
    let comments: Vec<String> = listed.iter().filter_map(|r| r.comment.clone()).collect();
    let expected: Vec<String> = (0..=50).map(|i| format!("pod {i}")).collect();
    assert_eq!(comments, expected);
    // Read from this thread, outside the namespace: the session's socket
    // is still the namespace's (a listing, so nothing here could change).
    let through_session = session.list_rules(&t, "pods").unwrap();
    assert_eq!(through_session, listed);
    assert!(session.list_tables().unwrap().contains(&t));
}
