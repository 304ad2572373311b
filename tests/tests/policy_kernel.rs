//! NetworkPolicy in a kernel: a ruleset compiled by the policy engine from
//! a small snapshot, applied by `PolicyTable` in a node namespace with a
//! bridge (pods of one node, talking at layer 2) and a remote namespace
//! routed through it, and tried with real packets: bridged, forwarded,
//! egress, replies, the node's own traffic, IPv6. Then the snapshot
//! changes and only the changes are applied, and the table is removed;
//! a connection already open outlives the allow that let it in.
//! `nft` only observes. Everything happens in namespaces the tests create.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use podnet_tests::bridged::{pod_addrs, BridgedNode, GATEWAY4, REMOTE4, REMOTE6};
use podnet_tests::net::{tcp_exchange, tcp_listen_at, udp_round_trip_to};
use podnet_tests::netns::TestNetns;
use podnet_tests::policy::{labels, sel};
use podnet_tests::require_root;
use podnet_tests::routed::{ip, nft};
use podnetd::kernel::nft::{list_rules, list_tables, Chain, Transaction};
use podnetd::kernel::policy::{table, Applied, PodCounters, PolicyTable, BRIDGE_NF_KEYS};
use podnetd::kernel::sysctl;
use podnetd::policy::{
    compile, LabelSelector, Namespace, NetworkPolicy, Peer, Pod, PolicyType, PortRef, PortSpec,
    Protocol, Rule, Snapshot,
};

const NODE: &str = "n1";
const WAIT: Duration = Duration::from_secs(3);

/// A pod of `node` with the bridged addresses of `host` (or the remote's).
fn pod(ns: &str, name: &str, node: &str, host: u8, app: &str) -> Pod {
    let (v4, v6) = if node == NODE {
        pod_addrs(host)
    } else {
        (REMOTE4.into(), REMOTE6.into())
    };
    Pod {
        namespace: ns.into(),
        name: name.into(),
        node: node.into(),
        ips: vec![ip(&v4), ip(&v6)],
        labels: labels(&[("app", app)]),
        ports: Vec::new(),
        host_network: false,
    }
}

fn port(protocol: Protocol, n: u16) -> PortSpec {
    PortSpec {
        protocol,
        port: Some(PortRef::Number(n)),
        end_port: None,
    }
}

fn policy(ns: &str, name: &str, selector: LabelSelector) -> NetworkPolicy {
    NetworkPolicy {
        namespace: ns.into(),
        name: name.into(),
        pod_selector: selector,
        policy_types: Some(vec![PolicyType::Ingress]),
        ingress: Vec::new(),
        egress: Vec::new(),
    }
}

/// Namespaces x and y on this node, z/r remote. In x: nothing comes in
/// (deny-all) but y's app=a on TCP 80 to app=web, and the remote's block
/// on UDP 5353 to app=db. y's app=a may only connect to x on TCP 80.
fn snapshot() -> Snapshot {
    let namespaces = ["x", "y", "z"]
        .iter()
        .map(|n| Namespace {
            name: (*n).into(),
            labels: labels(&[("ns", n)]),
        })
        .collect::<Vec<_>>()
        .into();
    let mut allow_ya = policy("x", "allow-ya", sel(&[("app", "web")]));
    allow_ya.ingress = vec![Rule {
        peers: vec![Peer::Pods {
            namespace_selector: Some(sel(&[("ns", "y")])),
            pod_selector: Some(sel(&[("app", "a")])),
        }],
        ports: vec![port(Protocol::Tcp, 80)],
    }];
    let mut allow_remote = policy("x", "allow-remote", sel(&[("app", "db")]));
    allow_remote.ingress = vec![Rule {
        peers: ["10.0.9.0/24", "fd00:9::/64"]
            .iter()
            .map(|c| Peer::IpBlock {
                cidr: c.parse().unwrap(),
                except: Vec::new(),
            })
            .collect(),
        ports: vec![port(Protocol::Udp, 5353)],
    }];
    let mut egress = policy("y", "egress", sel(&[("app", "a")]));
    egress.policy_types = Some(vec![PolicyType::Egress]);
    egress.egress = vec![Rule {
        peers: vec![Peer::Pods {
            namespace_selector: Some(sel(&[("ns", "x")])),
            pod_selector: None,
        }],
        ports: vec![port(Protocol::Tcp, 80)],
    }];
    Snapshot {
        namespaces,
        pods: vec![
            pod("x", "a", NODE, 2, "web"),
            pod("x", "b", NODE, 3, "db"),
            pod("y", "a", NODE, 4, "a"),
            pod("z", "r", "n2", 0, "r"),
        ],
        policies: vec![
            policy("x", "deny-all", LabelSelector::default()),
            allow_ya,
            allow_remote,
            egress,
        ]
        .into(),
    }
}

/// A TCP connection from `from` to `to_ip:port` served in `to`.
fn tcp(from: &TestNetns, to: &TestNetns, to_ip: &str, port: u16) -> Result<(), String> {
    let addr = SocketAddr::new(ip(to_ip), port);
    tcp_exchange(from, addr, tcp_listen_at(to, addr))
}

fn udp(from: &TestNetns, to: &TestNetns, to_ip: &str, port: u16) -> Result<(), String> {
    udp_round_trip_to(from, to, SocketAddr::new(ip(to_ip), port))
}

/// A failure shows what the node held: its ruleset, connection tracking
/// and neighbours.
/// Three tries: a probe that should pass may lose its first packet to a
/// neighbour still being resolved on a loaded machine; one that must not
/// pass is probed once, and any answer fails it.
fn passes(n: &BridgedNode, what: &str, probe: impl Fn() -> Result<(), String>) {
    let mut r = probe();
    for _ in 0..2 {
        if r.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        r = probe();
    }
    if let Err(e) = r {
        let out = |program: &str, args: &[&str]| {
            String::from_utf8_lossy(&n.node.exec(program, args).stdout).into_owned()
        };
        panic!(
            "{what} should pass: {e}\n{}\n{}\n{}",
            out("nft", &["list", "ruleset"]),
            out("cat", &["/proc/net/nf_conntrack"]),
            out("ip", &["neigh"]),
        );
    }
}

fn dropped(what: &str, r: Result<(), String>) {
    assert!(r.is_err(), "{what} should be dropped");
}

fn counters(node: &TestNetns, t: &mut PolicyTable, chain: &str) -> PodCounters {
    let all = node.run(|| t.counters()).unwrap();
    all.into_iter()
        .find(|c| c.chain == chain)
        .unwrap_or_else(|| panic!("no counters of {chain}"))
}

fn handles(node: &TestNetns, chain: &str) -> Vec<u64> {
    let t = table();
    let rules = node.run(|| list_rules(&t, chain)).unwrap();
    rules.iter().map(|r| r.handle).collect()
}

fn list(node: &TestNetns, what: &str, name: &str) -> String {
    nft(node, &["list", what, "inet", "podnet-policy", name])
}

#[test]
fn policy_is_enforced_kept_in_step_and_removed() {
    require_root();
    let mut n = BridgedNode::new("pk");
    for (key, host) in [("x/a", 2), ("x/b", 3), ("y/a", 4)] {
        n.add_pod(key, host);
    }
    let mut t = PolicyTable::new();
    let mut snap = snapshot();
    let applied = n.node.run(|| t.apply(compile(&snap, NODE))).unwrap();
    assert!(
        matches!(
            applied,
            Applied::Replaced {
                diff_error: None,
                ..
            }
        ),
        "{applied:?}"
    );

    enforced(&n);
    let xa = counters(&n.node, &mut t, "ingress/x/a");
    assert!(
        xa.dropped.packets > 0,
        "bridged x/b -> x/a reached the forward chain: {xa:?}"
    );
    assert!(
        xa.allowed
            .iter()
            .any(|(p, c)| p[0].name == "allow-ya" && c.packets > 0),
        "{xa:?}"
    );
    bridge_netfilter_is_what_shows_bridged_traffic(&n, &mut t);

    // A pod joins each side and y's egress policy goes.
    n.add_pod("y/d", 5);
    n.add_pod("x/c", 6);
    snap.pods.push(pod("y", "d", NODE, 5, "a"));
    snap.pods.push(pod("x", "c", NODE, 6, "web"));
    std::sync::Arc::make_mut(&mut snap.policies).retain(|p| p.name != "egress");
    let before: Vec<_> = ["ingress/x/a", "ingress/x/b"]
        .map(|c| handles(&n.node, c))
        .into();
    let applied = n.node.run(|| t.apply(compile(&snap, NODE))).unwrap();
    assert!(matches!(applied, Applied::Changed { .. }), "{applied:?}");
    let after: Vec<_> = ["ingress/x/a", "ingress/x/b"]
        .map(|c| handles(&n.node, c))
        .into();
    assert_eq!(before, after, "unrelated chains keep their rules");
    changed(&n);

    assert!(n.node.run(|| t.remove()).unwrap());
    assert!(!n.node.run(|| t.remove()).unwrap(), "already gone");
    let tables = n.node.run(list_tables).unwrap();
    assert!(!tables.contains(&table()), "{tables:?}");
    assert!(!nft(&n.node, &["list", "tables"]).contains("podnet-policy"));
    let (xa, xb) = (n.pod("x/a"), n.pod("x/b"));
    passes(&n, "x/b -> x/a without policy", || {
        tcp(xb, xa, "10.244.1.2", 80)
    });
}

/// The first snapshot's rules, packet by packet.
fn enforced(n: &BridgedNode) {
    let (xa, xb, ya) = (n.pod("x/a"), n.pod("x/b"), n.pod("y/a"));
    // Same node, across the bridge.
    passes(n, "y/a -> x/a:80", || tcp(ya, xa, "10.244.1.2", 80));
    passes(n, "y/a -> x/a:80 (IPv6)", || tcp(ya, xa, "fd00:1::2", 80));
    dropped("x/b -> x/a:80", tcp(xb, xa, "10.244.1.2", 80));
    dropped("x/b -> x/a:80 (IPv6)", tcp(xb, xa, "fd00:1::2", 80));
    dropped("y/a -> x/a:81", tcp(ya, xa, "10.244.1.2", 81));
    // From another node, forwarded.
    dropped("remote -> x/a:80", tcp(&n.remote, xa, "10.244.1.2", 80));
    passes(n, "remote -> x/b udp 5353", || {
        udp(&n.remote, xb, "10.244.1.3", 5353)
    });
    passes(n, "remote -> x/b udp 5353 (IPv6)", || {
        udp(&n.remote, xb, "fd00:1::3", 5353)
    });
    // Egress: y/a only to x on TCP 80, the node's own addresses included.
    dropped("y/a -> remote udp", udp(ya, &n.remote, REMOTE4, 0));
    dropped("y/a -> node:80", tcp(ya, &n.node, GATEWAY4, 80));
    // x/a's own connections are not isolated, and their replies come in.
    passes(n, "x/a -> remote udp and back", || {
        udp(xa, &n.remote, REMOTE4, 0)
    });
    passes(n, "x/a -> remote tcp (IPv6)", || {
        tcp(xa, &n.remote, REMOTE6, 8080)
    });
    // The node itself is never policed.
    passes(n, "node -> x/a:80", || tcp(&n.node, xa, "10.244.1.2", 80));
    passes(n, "node -> x/b:22", || tcp(&n.node, xb, "10.244.1.3", 22));
}

/// Without bridge netfilter, pod-to-pod traffic on one node never meets
/// the table; a resync turns it back on.
fn bridge_netfilter_is_what_shows_bridged_traffic(n: &BridgedNode, t: &mut PolicyTable) {
    let (xa, xb) = (n.pod("x/a"), n.pod("x/b"));
    for key in BRIDGE_NF_KEYS {
        n.node.run(|| sysctl::set(key, "0")).unwrap();
    }
    passes(n, "x/b -> x/a:80 bridged past the table", || {
        tcp(xb, xa, "10.244.1.2", 80)
    });
    passes(n, "remote -> x/b udp 5353, routed", || {
        udp(&n.remote, xb, "10.244.1.3", 5353)
    });
    dropped(
        "remote -> x/a:80, routed: still policed",
        tcp(&n.remote, xa, "10.244.1.2", 80),
    );
    let applied = n.node.run(|| t.resync()).unwrap();
    assert!(matches!(applied, Applied::Replaced { .. }), "{applied:?}");
    for key in BRIDGE_NF_KEYS {
        assert_eq!(n.node.run(|| sysctl::get(key)).unwrap(), "1");
    }
    dropped(
        "x/b -> x/a:80 after the resync",
        tcp(xb, xa, "fd00:1::2", 80),
    );
}

/// The second snapshot: y/d (10.244.1.5) joins y/a in x/allow-ya's peers
/// (one interval now), x/c is a new isolated pod, y/a is free to go out.
fn changed(n: &BridgedNode) {
    let ingress = list(&n.node, "map", "ingress-v4");
    assert!(
        ingress.contains("10.244.1.6 : jump ingress/x/c"),
        "{ingress}"
    );
    let egress = list(&n.node, "map", "egress-v4");
    assert!(!egress.contains("10.244.1.4"), "{egress}");
    let chains = nft(&n.node, &["list", "chains", "inet"]);
    assert!(!chains.contains("egress/y/a"), "{chains}");
    let whole = nft(&n.node, &["list", "table", "inet", "podnet-policy"]);
    // Both in one interval, which `nft` prints as a prefix.
    assert!(whole.contains("elements = { 10.244.1.4/31 }"), "{whole}");

    let (xa, xb, xc, ya, yd) = (
        n.pod("x/a"),
        n.pod("x/b"),
        n.pod("x/c"),
        n.pod("y/a"),
        n.pod("y/d"),
    );
    passes(n, "y/d -> x/a:80", || tcp(yd, xa, "10.244.1.2", 80));
    passes(n, "y/a -> x/c:80 (IPv6)", || tcp(ya, xc, "fd00:1::6", 80));
    dropped("x/b -> x/c:80", tcp(xb, xc, "10.244.1.6", 80));
    passes(n, "y/a -> remote udp", || udp(ya, &n.remote, REMOTE4, 0));
    passes(n, "y/a -> node:80", || tcp(ya, &n.node, GATEWAY4, 80));
}

#[test]
fn a_failed_diff_replaces_the_table_and_a_resync_removes_strays() {
    require_root();
    let node = TestNetns::new("pkf");
    let mut t = PolicyTable::new();
    let mut snap = snapshot();
    node.run(|| t.apply(compile(&snap, NODE))).unwrap();
    let pol = table();

    // Someone empties podnet's table behind its back...
    node.run(|| {
        let mut tx = Transaction::new();
        tx.delete_table(&pol).add_table(&pol);
        tx.commit()
    })
    .unwrap();
    // ...so the diff that flushes it fails, and the whole table is written.
    std::sync::Arc::make_mut(&mut snap.policies).retain(|p| p.name != "allow-ya");
    let applied = node.run(|| t.apply(compile(&snap, NODE))).unwrap();
    match applied {
        Applied::Replaced {
            diff_error: Some(e),
            ..
        } => assert!(e.is_not_found(), "{e}"),
        other => panic!("expected a full replace after the diff failed: {other:?}"),
    }
    let chains = nft(&node, &["list", "chains", "inet"]);
    assert!(
        chains.contains("ingress/x/a") && chains.contains("egress/y/a"),
        "{chains}"
    );

    // A chain podnet did not write goes with the next resync.
    node.run(|| {
        let mut tx = Transaction::new();
        tx.add_chain(&Chain::regular(&pol, "stray"));
        tx.commit()
    })
    .unwrap();
    node.run(|| t.resync()).unwrap();
    let chains = nft(&node, &["list", "chains", "inet"]);
    assert!(
        !chains.contains("stray") && chains.contains("ingress/x/a"),
        "{chains}"
    );
    assert!(matches!(
        node.run(|| t.apply(compile(&snap, NODE))).unwrap(),
        Applied::Unchanged
    ));
}

/// One line each way on an open connection.
fn echo(client: &mut TcpStream, server: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4];
    client.write_all(b"ping")?;
    server.read_exact(&mut buf)?;
    server.write_all(&buf)?;
    client.read_exact(&mut buf)
}

#[test]
fn an_established_connection_outlives_the_allow_that_let_it_in() {
    require_root();
    let mut n = BridgedNode::new("pke");
    n.add_pod("x/a", 2);
    n.add_pod("y/a", 4);
    let (xa, ya) = (n.pod("x/a"), n.pod("y/a"));
    let mut t = PolicyTable::new();
    let mut snap = snapshot();
    n.node.run(|| t.apply(compile(&snap, NODE))).unwrap();

    let addr = SocketAddr::new(ip("10.244.1.2"), 80);
    let listener = tcp_listen_at(xa, addr);
    let mut client = ya.run(|| TcpStream::connect_timeout(&addr, WAIT)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    drop(listener);
    for s in [&client, &server] {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    echo(&mut client, &mut server).unwrap();

    std::sync::Arc::make_mut(&mut snap.policies).retain(|p| p.name != "allow-ya");
    let applied = n.node.run(|| t.apply(compile(&snap, NODE))).unwrap();
    assert!(matches!(applied, Applied::Changed { .. }), "{applied:?}");
    // Conntrack accepts the open connection's packets before any policy
    // is consulted; only new connections meet the change.
    echo(&mut client, &mut server).expect("the open connection still flows");
    dropped("a new y/a -> x/a:80", tcp(ya, xa, "10.244.1.2", 80));
}
