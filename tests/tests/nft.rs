//! podnet's nf_tables transactions in a kernel: a policy-like ruleset sent
//! in one batch, read back with `nft list` (observing only) and with
//! podnet's own listing, and tried with real packets between namespaces
//! that a third one forwards for; a failing batch that changes nothing;
//! set and map elements changed under unchanged rules; podnet's tables
//! listed. Everything happens in namespaces the tests create.

use std::net::SocketAddr;

use podnet_tests::net::{tcp_exchange, tcp_listen_at, udp_round_trip_to};
use podnet_tests::netns::TestNetns;
use podnet_tests::require_root;
use podnet_tests::routed::{ip, nft, Routed, A4, A6, B4, B6, ROUTER_A4};
use podnetd::kernel::nft::*;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

fn table() -> Table {
    Table::new(Family::Inet, "pnpol")
}

fn allowed4() -> Set {
    use KeyType::*;
    Set::new(&table(), "allowed4", &[Ipv4Addr, InetProto, InetService]).interval()
}

fn allowed6() -> Set {
    use KeyType::*;
    Set::new(&table(), "allowed6", &[Ipv6Addr, InetProto, InetService]).interval()
}

fn isolated4() -> Set {
    Set::new(&table(), "isolated4", &[KeyType::Ipv4Addr]).interval()
}

fn dest4() -> Set {
    Set::map(&table(), "dest4", &[KeyType::Ipv4Addr], MapData::Verdict)
}

fn dest6() -> Set {
    Set::map(&table(), "dest6", &[KeyType::Ipv6Addr], MapData::Verdict)
}

/// `NET . PROTO . LOW-HIGH`.
fn service(net: &str, proto: u8, low: u16, high: u16) -> Element {
    let range = if low == high {
        Part::Single(Atom::Port(low))
    } else {
        Part::Range(Atom::Port(low), Atom::Port(high))
    };
    Element::new([
        Part::Prefix(net.parse().unwrap()),
        Part::Single(Atom::Proto(proto)),
        range,
    ])
}

fn to(addr: &str, v: Verdict) -> Element {
    Element::new([Part::Single(Atom::Addr(ip(addr)))]).with(ElemData::Verdict(v))
}

fn base(name: &str, hook: Hook, policy: Policy) -> Chain {
    let kind = ChainType::Filter;
    let b = BaseChain {
        kind,
        hook,
        priority: 0,
        policy,
    };
    Chain::base(&table(), name, b)
}

fn rule(chain: &str) -> Rule {
    Rule::new(&table(), chain)
}

const KEY4: [Field; 3] = [Field::Ip4Saddr, Field::L4Proto, Field::Dport];
const KEY6: [Field; 3] = [Field::Ip6Saddr, Field::L4Proto, Field::Dport];

/// The rules of each chain, in order.
fn rules() -> Vec<Rule> {
    let established = CtState::ESTABLISHED | CtState::RELATED;
    vec![
        rule("forward").ct_state(established).accept(),
        rule("forward").ct_state(CtState::INVALID).drop(),
        rule("forward").vmap(&[Field::Ip4Daddr], "dest4"),
        rule("forward").vmap(&[Field::Ip6Daddr], "dest6"),
        rule("to_b")
            .in_set(&KEY4, "allowed4")
            .counter()
            .accept()
            .comment("allow a"),
        rule("to_b")
            .in_set(&KEY6, "allowed6")
            .counter()
            .accept()
            .comment("allow a6"),
        rule("to_b")
            .in_set(&[Field::Ip4Daddr], "isolated4")
            .counter()
            .drop()
            .comment("isolated"),
        rule("to_b")
            .nfproto(Family::Ip6)
            .counter()
            .drop()
            .comment("isolated6"),
        rule("input").ct_state(established).accept(),
        rule("input").iifname(CmpOp::Eq, "lo").accept(),
        rule("input").l4proto(ICMPV6).accept(),
        rule("input").in_set(&KEY4, "allowed4").accept(),
        rule("output").counter().comment("out"),
    ]
}

/// The whole table, replaced in one transaction: `b` reached only on
/// ports 80-81 from `a`'s networks, the router itself likewise.
fn policy() -> Transaction {
    let t = table();
    let mut tx = Transaction::new();
    tx.add_table(&t).delete_table(&t).add_table(&t);
    tx.add_chain(&base("forward", Hook::Forward, Policy::Drop))
        .add_chain(&base("input", Hook::Input, Policy::Drop))
        .add_chain(&base("output", Hook::Output, Policy::Accept))
        .add_chain(&Chain::regular(&t, "to_b"));
    for s in [allowed4(), allowed6(), isolated4(), dest4(), dest6()] {
        tx.add_set(&s);
    }
    let web4 = [
        service("10.0.0.0/24", TCP, 80, 81),
        service("10.0.0.0/24", UDP, 80, 81),
    ];
    let web6 = [
        service("fd00:a::/64", TCP, 80, 81),
        service("fd00:a::/64", UDP, 80, 81),
    ];
    let jump = || Verdict::Jump("to_b".into());
    tx.add_elements(&allowed4(), &web4)
        .add_elements(&allowed6(), &web6)
        .add_elements(
            &isolated4(),
            &[Element::new([Part::Prefix("10.0.1.0/24".parse().unwrap())])],
        )
        .add_elements(&dest4(), &[to(B4, jump())])
        .add_elements(&dest6(), &[to(B6, jump())]);
    for r in rules() {
        tx.add_rule(&r);
    }
    tx
}

/// `nft -s list table inet pnpol` of [`policy`]: what `nft` reads back
/// from the kernel, counters' numbers left out.
const LISTED: &str = "\
table inet pnpol {
	set allowed4 {
		type ipv4_addr . inet_proto . inet_service
		flags interval
		elements = { 10.0.0.0/24 . tcp . 80-81,
			     10.0.0.0/24 . udp . 80-81 }
	}

	set allowed6 {
		type ipv6_addr . inet_proto . inet_service
		flags interval
		elements = { fd00:a::/64 . tcp . 80-81,
			     fd00:a::/64 . udp . 80-81 }
	}

	set isolated4 {
		type ipv4_addr
		flags interval
		elements = { 10.0.1.0/24 }
	}

	map dest4 {
		type ipv4_addr : verdict
		elements = { 10.0.1.2 : jump to_b }
	}

	map dest6 {
		type ipv6_addr : verdict
		elements = { fd00:b::2 : jump to_b }
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		ip daddr vmap @dest4
		ip6 daddr vmap @dest6
	}

	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname \"lo\" accept
		meta l4proto ipv6-icmp accept
		ip saddr . meta l4proto . th dport @allowed4 accept
	}

	chain output {
		type filter hook output priority filter; policy accept;
		counter comment \"out\"
	}

	chain to_b {
		ip saddr . meta l4proto . th dport @allowed4 counter accept comment \"allow a\"
		ip6 saddr . meta l4proto . th dport @allowed6 counter accept comment \"allow a6\"
		ip daddr @isolated4 counter drop comment \"isolated\"
		meta nfproto ipv6 counter drop comment \"isolated6\"
	}
}
";

fn listed(ns: &TestNetns) -> String {
    nft(ns, &["-s", "list", "table", "inet", "pnpol"])
}

fn tcp(from: &TestNetns, to: &TestNetns, addr: &str, port: u16) -> Result<(), String> {
    let addr = SocketAddr::new(ip(addr), port);
    tcp_exchange(from, addr, tcp_listen_at(to, addr))
}

fn udp(from: &TestNetns, to: &TestNetns, addr: &str, port: u16) -> Result<(), String> {
    udp_round_trip_to(from, to, SocketAddr::new(ip(addr), port))
}

fn counters(ns: &TestNetns, chain: &str) -> Vec<(String, u64)> {
    ns.run(|| list_rules(&table(), chain))
        .unwrap()
        .into_iter()
        .filter_map(|r| Some((r.comment.clone()?, r.counter()?.0)))
        .collect()
}

/// Each chain's rules as podnet lists them, counters zeroed: the
/// expressions sent, one for one.
fn sent_rules_read_back(ns: &TestNetns) {
    for chain in ["forward", "to_b", "input", "output"] {
        let want: Vec<(Vec<Expr>, Option<String>)> = rules()
            .into_iter()
            .filter(|r| r.chain == chain)
            .map(|r| (r.exprs, r.comment))
            .collect();
        let got: Vec<(Vec<Expr>, Option<String>)> = ns
            .run(|| list_rules(&table(), chain))
            .unwrap()
            .into_iter()
            .map(|r| {
                let exprs = r.exprs.into_iter().map(zero_counter).collect();
                (exprs, r.comment)
            })
            .collect();
        assert_eq!(got, want, "chain {chain}");
    }
}

fn zero_counter(e: Expr) -> Expr {
    match e {
        Expr::Counter { .. } => Expr::Counter {
            packets: 0,
            bytes: 0,
        },
        e => e,
    }
}

#[test]
fn a_policy_in_one_transaction_is_what_the_kernel_holds_and_filters_packets() {
    require_root();
    let net = Routed::new("nftp");
    let (r, a, b) = (&net.router, &net.a, &net.b);
    r.run(|| policy().commit()).unwrap();
    assert_eq!(listed(r), LISTED);
    sent_rules_read_back(r);

    // From a's network to b: 80 and 81 only, TCP and UDP, IPv4 and IPv6.
    tcp(a, b, B4, 80).unwrap();
    tcp(a, b, B4, 81).unwrap();
    udp(a, b, B4, 80).unwrap();
    tcp(a, b, B6, 81).unwrap();
    udp(a, b, B6, 80).unwrap();
    assert!(tcp(a, b, B4, 82).is_err(), "tcp 82 passed");
    assert!(udp(a, b, B4, 82).is_err(), "udp 82 passed");
    assert!(tcp(a, b, B6, 82).is_err(), "tcp6 82 passed");
    // Nothing leads to a: the forward chain's policy drops.
    assert!(tcp(b, a, A4, 80).is_err(), "b reached a");
    // The router itself (input chain): the same set decides.
    tcp(a, r, ROUTER_A4, 80).unwrap();
    assert!(
        tcp(a, r, ROUTER_A4, 82).is_err(),
        "the router's 82 answered"
    );

    // What each policy rule let through or dropped, by its comment.
    let by_rule = counters(r, "to_b");
    let count = |name: &str| {
        by_rule
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("no counter {name}: {by_rule:?}"))
    };
    // The first packet of each connection or datagram exchange (later
    // ones are established); a retransmitted SYN counts again.
    assert!(count("allow a") >= 3, "{by_rule:?}");
    assert!(count("allow a6") >= 2, "{by_rule:?}");
    assert!(count("isolated") >= 2, "{by_rule:?}");
    assert!(count("isolated6") >= 1, "{by_rule:?}");
    let _ = A6;
}

fn handles(ns: &TestNetns) -> Vec<u64> {
    ["forward", "to_b", "input", "output"]
        .iter()
        .flat_map(|c| ns.run(|| list_rules(&table(), c)).unwrap())
        .map(|r| r.handle)
        .collect()
}

#[test]
fn a_batch_that_fails_at_its_end_changes_nothing() {
    require_root();
    let net = Routed::new("nfta");
    let (r, a, b) = (&net.router, &net.a, &net.b);
    r.run(|| policy().commit()).unwrap();
    let before = handles(r);

    // An element, a flush, then a rule naming a set that does not exist.
    let mut tx = Transaction::new();
    tx.add_elements(&allowed4(), &[service("10.0.0.0/24", TCP, 82, 82)])
        .flush_chain(&Chain::regular(&table(), "to_b"))
        .add_rule(&rule("to_b").in_set(&KEY4, "nope").accept());
    let err = r.run(|| tx.commit()).unwrap_err();
    match &err {
        NftError::Rejected { op, index, .. } => {
            assert_eq!(*index, 3, "{err}");
            assert_eq!(
                op,
                "nft add rule inet pnpol to_b ip saddr . meta l4proto . th dport @nope accept"
            );
        }
        e => panic!("not a rejected message: {e}"),
    }
    assert!(err.is_not_found(), "{err}");
    assert_eq!(listed(r), LISTED, "the kernel kept a part of the batch");
    assert_eq!(handles(r), before);
    tcp(a, b, B4, 80).unwrap();

    // Several errors: the first in the batch is the one returned.
    let mut tx = Transaction::new();
    tx.add_elements(
        &isolated4(),
        &[Element::new([Part::Prefix("10.9.0.0/16".parse().unwrap())])],
    )
    .delete_table(&Table::new(Family::Ip, "pnmissing"))
    .add_rule(&rule("missing").accept());
    match r.run(|| tx.commit()) {
        Err(NftError::Rejected { index: 2, op, .. }) => {
            assert_eq!(op, "nft delete table ip pnmissing")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(listed(r), LISTED);
}

#[test]
fn elements_change_under_unchanged_rules() {
    require_root();
    let net = Routed::new("nfte");
    let (r, a, b) = (&net.router, &net.a, &net.b);
    r.run(|| policy().commit()).unwrap();
    let before = handles(r);
    let port82 = [service("10.0.0.0/24", TCP, 82, 82)];
    let commit = |f: &dyn Fn(&mut Transaction)| {
        let mut tx = Transaction::new();
        f(&mut tx);
        r.run(|| tx.commit()).unwrap();
    };

    // A concatenated interval element in, then out again.
    commit(&|tx| {
        tx.add_elements(&allowed4(), &port82);
    });
    tcp(a, b, B4, 82).unwrap();
    commit(&|tx| {
        tx.delete_elements(&allowed4(), &port82);
    });
    assert!(
        tcp(a, b, B4, 82).is_err(),
        "tcp 82 passed after its element went"
    );
    assert_eq!(listed(r), LISTED);

    // The verdict map: b accepted whole instead of its chain.
    commit(&|tx| {
        let jump = Verdict::Jump("to_b".into());
        tx.delete_elements(&dest4(), &[to(B4, jump)])
            .add_elements(&dest4(), &[to(B4, Verdict::Accept)]);
    });
    udp(a, b, B4, 82).unwrap();
    let text = nft(r, &["list", "map", "inet", "pnpol", "dest4"]);
    assert!(text.contains("elements = { 10.0.1.2 : accept }"), "{text}");

    // A one-field interval set (start and end elements): a prefix out, a
    // prefix, a range and a lone address in.
    let isolated = |text: &str| nft(r, &["list", "set", "inet", "pnpol", text]);
    commit(&|tx| {
        let net = Part::Prefix("10.0.1.0/24".parse().unwrap());
        tx.delete_elements(&isolated4(), &[Element::new([net])]);
    });
    let text = isolated("isolated4");
    assert!(!text.contains("elements"), "{text}");
    commit(&|tx| {
        let addr = |s: &str| Atom::Addr(ip(s));
        tx.add_elements(
            &isolated4(),
            &[
                Element::new([Part::Prefix("192.168.0.0/16".parse().unwrap())]),
                Element::new([Part::Range(addr("10.0.1.10"), addr("10.0.1.20"))]),
                Element::new([Part::Single(addr("10.0.2.1"))]),
                Element::new([Part::Single(addr("255.255.255.255"))]),
            ],
        );
    });
    // The last reaches the top of the key space: a start without an end.
    let text = isolated("isolated4");
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(
        words.join(" ").contains(
            "elements = { 10.0.1.10-10.0.1.20, 10.0.2.1, 192.168.0.0/16, 255.255.255.255 }"
        ),
        "{text}"
    );

    // Flushed, a set keeps its rules' references and its definition.
    commit(&|tx| {
        tx.flush_set(&allowed4());
    });
    let text = nft(r, &["list", "set", "inet", "pnpol", "allowed4"]);
    assert!(!text.contains("elements"), "{text}");
    assert_eq!(handles(r), before, "rules were replaced");
}

#[test]
fn podnets_tables_are_listed_and_stale_ones_removed() {
    require_root();
    let ns = TestNetns::new("nftt");
    let tables = [
        table(),
        Table::new(Family::Ip, "pnold4"),
        Table::new(Family::Ip6, "pnold6"),
        Table::new(Family::Inet, "someone-else"),
    ];
    let mut tx = Transaction::new();
    for t in &tables {
        tx.add_table(t);
    }
    ns.run(|| tx.commit()).unwrap();
    let mut want = tables.to_vec();
    want.sort();
    assert_eq!(ns.run(list_tables).unwrap(), want);

    // Podnet's tables that are not the current one go, in one batch.
    let mut tx = Transaction::new();
    for t in ns.run(list_tables).unwrap() {
        if t.name.starts_with("pn") && t != table() {
            tx.delete_table(&t);
        }
    }
    assert_eq!(tx.len(), 2);
    ns.run(|| tx.commit()).unwrap();
    let left = ns.run(list_tables).unwrap();
    assert_eq!(left, [table(), Table::new(Family::Inet, "someone-else")]);
    assert_eq!(
        nft(&ns, &["list", "tables"]),
        "table inet pnpol\ntable inet someone-else\n"
    );

    // Deleting what is not there is "not found", as `remove_*` wants.
    let mut tx = Transaction::new();
    tx.delete_table(&Table::new(Family::Ip, "pnold4"));
    let err = ns.run(|| tx.commit()).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // And creating what is, "exists".
    let mut tx = Transaction::new();
    tx.create_table(&table());
    assert!(ns.run(|| tx.commit()).unwrap_err().is_exists());
}
