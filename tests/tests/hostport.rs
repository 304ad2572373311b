//! hostPort served by podnet itself (issue 15): the `portMappings`
//! capability, on network namespaces. A node (podnet + host-local), its
//! pods, and a "remote" host routed to the node on a veth of its own (a
//! client on another node or on the network).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use podnet_tests::net::{tcp_exchange, tcp_listen_at};
use podnet_tests::netns::TestNetns;
use podnet_tests::node::TestNode;
use serde_json::{json, Value};

const NODE4: &str = "10.0.9.1";
const NODE6: &str = "fd00:9::1";
const REMOTE4: &str = "10.0.9.2";
const REMOTE6: &str = "fd00:9::2";

struct Setup {
    node: TestNode,
    remote: TestNetns,
}

fn setup() -> Setup {
    let node = TestNode::new(71);
    let remote = TestNetns::new("hpr");
    node.ns.veth_to("rm0", &remote, "eth0");
    for (ns, dev, v4, v6) in [
        (&node.ns, "rm0", NODE4, NODE6),
        (&remote, "eth0", REMOTE4, REMOTE6),
    ] {
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev]);
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    remote.ip(&["route", "add", "default", "via", NODE4]);
    remote.ip(&["-6", "route", "add", "default", "via", NODE6]);
    for key in ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"] {
        node.ns
            .run(|| podnetd::kernel::sysctl::set(key, "1"))
            .unwrap_or_else(|e| panic!("{key} in the node: {e}"));
    }
    Setup { node, remote }
}

/// The node's configuration with `mappings` injected as a runtime does
/// for a plugin with the `portMappings` capability.
fn conf(node: &TestNode, mappings: Value) -> Value {
    let mut c = node.conf("1.0.0");
    c["capabilities"] = json!({ "portMappings": true });
    c["runtimeConfig"] = json!({ "portMappings": mappings });
    c
}

fn pod_ip(result: &Value, v4: bool) -> IpAddr {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let a = i["address"].as_str().unwrap();
            a.split('/').next().unwrap().parse::<IpAddr>().unwrap()
        })
        .find(|ip| ip.is_ipv4() == v4)
        .unwrap()
}

/// A TCP exchange from `from` to `to` (a hostPort), served by `pod` on
/// `port` (all its addresses of that version).
fn tcp(from: &TestNetns, to: &str, pod: &TestNetns, port: u16) -> Result<(), String> {
    let to: SocketAddr = to.parse().unwrap();
    let any: IpAddr = if to.is_ipv4() { "0.0.0.0" } else { "::" }.parse().unwrap();
    let listener = tcp_listen_at(pod, SocketAddr::new(any, port));
    tcp_exchange(from, to, listener).map_err(|e| format!("tcp to {to}: {e}"))
}

/// A UDP request from `from` to `to` (a hostPort), answered by `pod` on
/// `port`.
fn udp(from: &TestNetns, to: &str, pod: &TestNetns, port: u16) -> Result<(), String> {
    let to: SocketAddr = to.parse().unwrap();
    let server = pod
        .run(|| UdpSocket::bind(("0.0.0.0", port)))
        .map_err(|e| e.to_string())?;
    let client = from
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .map_err(|e| e.to_string())?;
    for s in [&server, &client] {
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
    }
    client.send_to(b"ping", to).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 8];
    let (_, peer) = server
        .recv_from(&mut buf)
        .map_err(|e| format!("udp to {to}: nothing arrived: {e}"))?;
    server.send_to(b"pong", peer).map_err(|e| e.to_string())?;
    let (n, _) = client
        .recv_from(&mut buf)
        .map_err(|e| format!("udp to {to}: no reply: {e}"))?;
    (&buf[..n] == b"pong")
        .then_some(())
        .ok_or_else(|| "wrong reply".into())
}

/// The node's hostPort table as `nft` lists it ("" when there is none).
fn table(node: &TestNode) -> String {
    let out = node.ns.run(|| {
        std::process::Command::new("nft")
            .args(["list", "table", "inet", "podnet-hostport"])
            .output()
    });
    let out = out.expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_mapping_kind_is_reached_from_everywhere_and_del_removes_it() {
    let s = setup();
    let web = TestNetns::new("hpw");
    let other = TestNetns::new("hpo");
    let mappings = json!([
        { "hostPort": 8080, "containerPort": 80, "protocol": "tcp" },
        { "hostPort": 8053, "containerPort": 53, "protocol": "udp" },
        { "hostPort": 8443, "containerPort": 443, "protocol": "tcp", "hostIP": NODE4 },
        { "hostPort": 9443, "containerPort": 443, "protocol": "tcp", "hostIP": NODE6 },
        { "hostPort": 8132, "containerPort": 132, "protocol": "sctp" },
    ]);
    let result = s.node.add(&web, "web", &conf(&s.node, mappings));
    s.node.add(&other, "other", &s.node.conf("1.0.0"));
    let listed = table(&s.node);
    let web4 = pod_ip(&result, true);
    for rule in [
        format!("tcp dport 8080 dnat ip to {web4}:80"),
        format!("sctp dport 8132 dnat ip to {web4}:132"),
    ] {
        assert!(
            listed.contains(&rule),
            "{rule} as nft reads it back:\n{listed}"
        );
    }

    let mut failed = Vec::new();
    let mut probe = |what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            failed.push(format!("{what}: {e}"));
        }
    };
    let (node, remote) = (&s.node.ns, &s.remote);
    probe("remote tcp", tcp(remote, "10.0.9.1:8080", &web, 80));
    probe("remote tcp6", tcp(remote, "[fd00:9::1]:8080", &web, 80));
    probe("remote udp", udp(remote, "10.0.9.1:8053", &web, 53));
    probe("remote tcp hostIP", tcp(remote, "10.0.9.1:8443", &web, 443));
    probe(
        "remote tcp6 hostIP",
        tcp(remote, "[fd00:9::1]:9443", &web, 443),
    );
    probe("node tcp", tcp(node, "10.0.9.1:8080", &web, 80));
    probe("node tcp6", tcp(node, "[fd00:9::1]:8080", &web, 80));
    probe("node localhost", tcp(node, "127.0.0.1:8080", &web, 80));
    probe("node udp", udp(node, "10.0.9.1:8053", &web, 53));
    probe("same-node pod tcp", tcp(&other, "10.0.9.1:8080", &web, 80));
    probe("same-node pod udp", udp(&other, "10.0.9.1:8053", &web, 53));
    probe("hairpin tcp", tcp(&web, "10.0.9.1:8080", &web, 80));
    probe("hairpin tcp6", tcp(&web, "[fd00:9::1]:8080", &web, 80));
    // A hostIP is only that address: the other one is not mapped.
    if tcp(remote, "10.0.9.1:9443", &web, 443).is_ok() {
        failed.push("an IPv6 hostIP answered on IPv4".into());
    }
    assert!(failed.is_empty(), "{failed:#?}\n{listed}");
    let tracked = |ip: IpAddr| {
        node.run(podnet_cni::conntrack::list)
            .expect("conntrack")
            .iter()
            .filter(|e| e.addresses.contains(&ip))
            .count()
    };
    assert!(
        tracked(web4) > 0,
        "the probes left no tracked connection to check"
    );

    // The pod's namespace gone, and DEL without its portMappings (and no
    // podnetd here at all): its rules are found by their owner.
    drop(web);
    s.node.del(None, "web", &s.node.conf("1.0.0"));
    let after = table(&s.node);
    assert!(
        !after.contains("web/eth0"),
        "DEL left rules of the pod:\n{after}"
    );
    assert_eq!(
        tracked(web4),
        0,
        "connections to the pod still tracked after DEL"
    );
    assert!(tcp(remote, "10.0.9.1:8080", &other, 80).is_err());
    s.node.del(Some(&other), "other", &s.node.conf("1.0.0"));
}

#[test]
fn a_taken_host_port_is_refused_and_leaves_nothing() {
    let s = setup();
    let (a, b) = (TestNetns::new("hpa"), TestNetns::new("hpb"));
    let mapping = json!([{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp" }]);
    s.node.add(&a, "a", &conf(&s.node, mapping.clone()));
    let before = table(&s.node);
    let out = s.node.podnet(
        "ADD",
        "b",
        Some(&b.path().display().to_string()),
        &conf(&s.node, mapping),
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.err_code(), 11, "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("8080/tcp") && msg.contains("a/eth0"),
        "the message names the port and its holder: {msg}"
    );
    assert_eq!(table(&s.node), before, "the refused ADD changed the table");
    assert_eq!(
        s.node.reserved("podnet").len(),
        2,
        "the refused pod's addresses were not released (a holds one of each version)"
    );
    assert!(
        !b.ip(&["-o", "link"]).contains("eth0"),
        "the refused pod kept its interface"
    );
    // Another protocol on the same port, and the same port once a's DEL
    // has run, are free.
    let udp = json!([{ "hostPort": 8080, "containerPort": 80, "protocol": "udp" }]);
    s.node.add(&b, "b", &conf(&s.node, udp));
    s.node.del(Some(&b), "b", &s.node.conf("1.0.0"));
    s.node.del(Some(&a), "a", &s.node.conf("1.0.0"));
    let tcp = json!([{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp" }]);
    s.node.add(&b, "b", &conf(&s.node, tcp));
    // The table emptied and filled again: its dispatch rules are there once.
    let listed = table(&s.node);
    assert_eq!(listed.matches("jump hostports").count(), 2, "{listed}");
    assert_eq!(listed.matches("jump snat").count(), 1, "{listed}");
    s.node.del(Some(&b), "b", &s.node.conf("1.0.0"));
}

#[test]
fn check_finds_the_mappings_and_gc_removes_a_gone_pods() {
    let s = setup();
    let pod = TestNetns::new("hpc");
    let mapping = json!([{ "hostPort": 8081, "containerPort": 80, "protocol": "tcp" }]);
    let result = s.node.add(&pod, "c", &conf(&s.node, mapping.clone()));
    let mut check = conf(&s.node, mapping);
    check["prevResult"] = result;
    let netns = pod.path().display().to_string();
    let out = s.node.podnet("CHECK", "c", Some(&netns), &check);
    assert_eq!(out.code, Some(0), "{out:?}");
    let other = json!([{ "hostPort": 8082, "containerPort": 80, "protocol": "tcp" }]);
    check["runtimeConfig"]["portMappings"] = other;
    let out = s.node.podnet("CHECK", "c", Some(&netns), &check);
    assert_eq!(out.err_code(), 103, "{out:?}");

    let mut gc = s.node.conf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    let out = s.node.podnet("GC", "", None, &gc);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!table(&s.node).contains("c/eth0"), "{}", table(&s.node));
    s.node.del(Some(&pod), "c", &s.node.conf("1.0.0"));
}
