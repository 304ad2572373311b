//! The overlay and NAT kernel operations the daemon builds on: the node
//! bridge's MAC, the VXLAN device, its FDB and neighbour entries, a real
//! packet across the overlay, and masquerade through nf_tables. Everything happens in namespaces the
//! tests create; `ip`, `bridge` and `nft` only observe (and set up the
//! underlay the operations under test are given).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use ipnetwork::IpNetwork;
use podnet_cni::mac::format_mac;
use podnet_cni::names;
use podnet_cni::netlink::{link, Netlink};
use podnet_tests::net::udp_round_trip;
use podnet_tests::netns::TestNetns;
use podnet_tests::require_root;
use podnetd::kernel::masquerade::{ensure_masquerade, remove_masquerade};
use podnetd::kernel::neigh::{
    list_fdb, list_neigh, remove_fdb, remove_neigh, replace_fdb, replace_neigh,
};
use podnetd::kernel::sysctl;
use podnetd::kernel::vxlan::{ensure_vxlan, VxlanSpec, DEFAULT_PORT};
use podnetd::node_setup;
use serde_json::Value;

const MAC_A: [u8; 6] = [0x0a, 0x58, 0x0a, 0x63, 0x00, 0x01];
const MAC_B: [u8; 6] = [0x0a, 0x58, 0x0a, 0x63, 0x00, 0x02];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nl(ns: &TestNetns) -> Netlink {
    ns.run(Netlink::open).unwrap()
}

/// A veth pair from `a` (named `a_name`) to `b` (named `b_name`), both up,
/// with the given addresses.
fn wire(a: &TestNetns, a_name: &str, a_addr: &str, b: &TestNetns, b_name: &str, b_addr: &str) {
    a.veth_to(a_name, b, b_name);
    for (ns, dev, addr) in [(a, a_name, a_addr), (b, b_name, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
}

fn index(ns: &TestNetns, name: &str) -> u32 {
    let mut nl = nl(ns);
    link::get_link(&mut nl, name).unwrap().unwrap().index
}

fn details(ns: &TestNetns, dev: &str) -> Value {
    ns.ip_json(&["-d", "link", "show", dev])[0].clone()
}

fn spec<'a>(name: &'a str, vni: u32, local: &str, underlay: Option<u32>) -> VxlanSpec<'a> {
    VxlanSpec {
        name,
        vni,
        local: ip(local),
        port: DEFAULT_PORT,
        underlay_index: underlay,
        mtu: 1450,
        mac: MAC_A,
    }
}

/// A bridge left to pick its own MAC takes its lowest port's, so a pod
/// joining with a lower one would move the gateway's MAC from under every
/// other pod's neighbour entry, and their routed packets would be dropped
/// as addressed to another host until those entries expire.
#[test]
fn the_bridge_keeps_its_mac_when_a_lower_port_joins() {
    require_root();
    let host = TestNetns::new("brmac");
    let pod = TestNetns::new("brmacpod");
    let cidrs = ["10.244.7.0/24".parse::<IpNetwork>().unwrap()];
    node_setup::ensure_bridge(&mut nl(&host), "pnbr0", &cidrs).unwrap();
    let want = format_mac(&names::bridge_mac("pnbr0"));
    assert_eq!(details(&host, "pnbr0")["address"], want);

    host.veth_to("pv1", &pod, "eth0");
    // Below any MAC the bridge can have.
    host.ip(&["link", "set", "pv1", "address", "00:00:00:00:00:01"]);
    host.ip(&["link", "set", "pv1", "master", "pnbr0"]);
    host.ip(&["link", "set", "pv1", "up"]);
    assert_eq!(details(&host, "pnbr0")["address"], want);
    node_setup::ensure_bridge(&mut nl(&host), "pnbr0", &cidrs).unwrap();
    assert_eq!(details(&host, "pnbr0")["address"], want);
}

#[test]
fn vxlan_device_is_created_kept_and_recreated() {
    require_root();
    let host = TestNetns::new("vx");
    let peer = TestNetns::new("vxpeer");
    wire(
        &host,
        "ul0",
        "192.168.91.1/24",
        &peer,
        "ul0",
        "192.168.91.2/24",
    );
    let underlay = index(&host, "ul0");
    let mut nl = nl(&host);

    let want = spec("pnvx0", 42, "192.168.91.1", Some(underlay));
    let created = ensure_vxlan(&mut nl, &want).unwrap();
    assert_eq!(created.name, "pnvx0");
    assert_eq!(created.kind.as_deref(), Some("vxlan"));
    assert!(created.up);

    let d = details(&host, "pnvx0");
    let info = &d["linkinfo"]["info_data"];
    assert_eq!(d["linkinfo"]["info_kind"], "vxlan", "{d}");
    assert_eq!(info["id"], 42, "{d}");
    assert_eq!(info["local"], "192.168.91.1", "{d}");
    assert_eq!(info["port"], DEFAULT_PORT, "{d}");
    assert_eq!(info["learning"], false, "{d}");
    assert_eq!(info["link"], "ul0", "{d}");
    assert_eq!(d["mtu"], 1450, "{d}");
    assert_eq!(d["address"], "0a:58:0a:63:00:01", "{d}");
    assert_eq!(d["ifindex"], created.index, "{d}");
    let flags = d["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "UP"), "{d}");

    // The same spec again: the very same device.
    let again = ensure_vxlan(&mut nl, &want).unwrap();
    assert_eq!(again.index, created.index);
    assert_eq!(details(&host, "pnvx0")["ifindex"], created.index);

    // Down, another MTU and MAC: corrected in place, same device.
    host.ip(&["link", "set", "pnvx0", "down"]);
    let changed = VxlanSpec {
        mtu: 1400,
        mac: MAC_B,
        ..want.clone()
    };
    let fixed = ensure_vxlan(&mut nl, &changed).unwrap();
    assert_eq!(fixed.index, created.index);
    let d = details(&host, "pnvx0");
    assert_eq!(d["mtu"], 1400, "{d}");
    assert_eq!(d["address"], "0a:58:0a:63:00:02", "{d}");
    assert!(d["flags"].as_array().unwrap().iter().any(|f| f == "UP"));

    // Another VNI cannot be changed in place: a new device.
    let other_vni = VxlanSpec { vni: 43, ..want };
    let recreated = ensure_vxlan(&mut nl, &other_vni).unwrap();
    assert_ne!(recreated.index, created.index);
    let d = details(&host, "pnvx0");
    assert_eq!(d["linkinfo"]["info_data"]["id"], 43, "{d}");
    assert_eq!(d["ifindex"], recreated.index);
    assert_eq!(d["mtu"], 1450, "{d}");
    assert_eq!(
        host.link_names().iter().filter(|n| *n == "pnvx0").count(),
        1
    );

    // Another port too.
    let other_port = VxlanSpec {
        port: 4789,
        ..other_vni
    };
    let moved = ensure_vxlan(&mut nl, &other_port).unwrap();
    assert_ne!(moved.index, recreated.index);
    assert_eq!(
        details(&host, "pnvx0")["linkinfo"]["info_data"]["port"],
        4789
    );

    // A link of another kind under the name is refused, not deleted.
    host.ip(&["link", "add", "pnbr0", "type", "bridge"]);
    let err = ensure_vxlan(&mut nl, &spec("pnbr0", 1, "192.168.91.1", None)).unwrap_err();
    assert!(err.to_string().contains("not a vxlan"), "{err}");
    assert!(host.link_names().iter().any(|n| n == "pnbr0"));
}

#[test]
fn fdb_and_neighbour_entries() {
    require_root();
    let host = TestNetns::new("fdb");
    let peer = TestNetns::new("fdbpeer");
    wire(
        &host,
        "ul0",
        "192.168.93.1/24",
        &peer,
        "ul0",
        "192.168.93.2/24",
    );
    let mut nl = nl(&host);
    let dev = ensure_vxlan(&mut nl, &spec("pnvx0", 7, "192.168.93.1", None))
        .unwrap()
        .index;

    // FDB: the peer's MAC behind its underlay address.
    assert!(list_fdb(&mut nl, dev).unwrap().is_empty());
    replace_fdb(&mut nl, dev, MAC_B, ip("192.168.93.2")).unwrap();
    assert_eq!(
        list_fdb(&mut nl, dev).unwrap(),
        vec![(MAC_B, ip("192.168.93.2"))]
    );
    let shown = host.exec("bridge", &["-j", "fdb", "show", "dev", "pnvx0"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == "0a:58:0a:63:00:02"
                && e["dst"] == "192.168.93.2"
                && e["state"] == "permanent"),
        "{shown}"
    );
    replace_fdb(&mut nl, dev, MAC_B, ip("192.168.93.2")).unwrap();
    assert_eq!(list_fdb(&mut nl, dev).unwrap().len(), 1, "idempotent");
    // The peer moved: the one entry now points at its new address.
    replace_fdb(&mut nl, dev, MAC_B, ip("192.168.93.3")).unwrap();
    assert_eq!(
        list_fdb(&mut nl, dev).unwrap(),
        vec![(MAC_B, ip("192.168.93.3"))]
    );
    assert!(remove_fdb(&mut nl, dev, MAC_B, ip("192.168.93.3")).unwrap());
    assert!(list_fdb(&mut nl, dev).unwrap().is_empty());
    assert!(!remove_fdb(&mut nl, dev, MAC_B, ip("192.168.93.3")).unwrap());

    // Neighbours: the peer's overlay address has the peer's MAC, IPv4 and IPv6.
    assert!(list_neigh(&mut nl, dev).unwrap().is_empty());
    replace_neigh(&mut nl, dev, ip("10.99.0.2"), MAC_B).unwrap();
    replace_neigh(&mut nl, dev, ip("fd00:99::2"), MAC_B).unwrap();
    let mut listed = list_neigh(&mut nl, dev).unwrap();
    listed.sort();
    assert_eq!(
        listed,
        vec![(ip("10.99.0.2"), MAC_B), (ip("fd00:99::2"), MAC_B)]
    );
    let shown = host.ip_json(&["neigh", "show", "dev", "pnvx0"]);
    assert!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["dst"] == "10.99.0.2"
                && e["lladdr"] == "0a:58:0a:63:00:02"
                && e["state"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"))),
        "{shown}"
    );
    replace_neigh(&mut nl, dev, ip("10.99.0.2"), MAC_B).unwrap();
    assert_eq!(list_neigh(&mut nl, dev).unwrap().len(), 2, "idempotent");
    replace_neigh(&mut nl, dev, ip("10.99.0.2"), MAC_A).unwrap();
    assert!(list_neigh(&mut nl, dev)
        .unwrap()
        .contains(&(ip("10.99.0.2"), MAC_A)));
    assert_eq!(list_neigh(&mut nl, dev).unwrap().len(), 2);
    assert!(remove_neigh(&mut nl, dev, ip("10.99.0.2")).unwrap());
    assert!(remove_neigh(&mut nl, dev, ip("fd00:99::2")).unwrap());
    assert!(list_neigh(&mut nl, dev).unwrap().is_empty());
    assert!(!remove_neigh(&mut nl, dev, ip("10.99.0.2")).unwrap());
}

/// One "node": its underlay address, VXLAN device and overlay address.
struct OverlayHost {
    ns: TestNetns,
    underlay: &'static str,
    overlay: &'static str,
    mac: [u8; 6],
    vxlan: u32,
}

fn tx_packets(ns: &TestNetns, dev: &str) -> u64 {
    ns.ip_json(&["-s", "link", "show", dev])[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .unwrap()
}

#[test]
fn udp_crosses_the_vxlan_overlay() {
    require_root();
    let a = TestNetns::new("ova");
    let b = TestNetns::new("ovb");
    wire(&a, "ul0", "192.168.94.1/24", &b, "ul0", "192.168.94.2/24");
    let mut hosts = Vec::new();
    for (ns, underlay, overlay, mac) in [
        (a, "192.168.94.1", "10.99.0.1", MAC_A),
        (b, "192.168.94.2", "10.99.0.2", MAC_B),
    ] {
        let underlay_index = index(&ns, "ul0");
        let mut nl = nl(&ns);
        let vxlan = ensure_vxlan(
            &mut nl,
            &VxlanSpec {
                mac,
                ..spec("pnvx0", 1, underlay, Some(underlay_index))
            },
        )
        .unwrap()
        .index;
        ns.ip(&["addr", "add", &format!("{overlay}/32"), "dev", "pnvx0"]);
        hosts.push(OverlayHost {
            ns,
            underlay,
            overlay,
            mac,
            vxlan,
        });
    }
    // Each host: the peer's overlay address through the device, its MAC
    // (neighbour) and where that MAC lives (FDB), as flannel programs them.
    for (me, peer) in [(0, 1), (1, 0)] {
        let (me, peer) = (&hosts[me], &hosts[peer]);
        me.ns.ip(&[
            "route",
            "add",
            &format!("{}/32", peer.overlay),
            "via",
            peer.overlay,
            "dev",
            "pnvx0",
            "onlink",
        ]);
        let mut nl = nl(&me.ns);
        replace_neigh(&mut nl, me.vxlan, ip(peer.overlay), peer.mac).unwrap();
        replace_fdb(&mut nl, me.vxlan, peer.mac, ip(peer.underlay)).unwrap();
    }

    let before = tx_packets(&hosts[0].ns, "pnvx0");
    udp_round_trip(&hosts[0].ns, &hosts[1].ns, ip(hosts[1].overlay)).unwrap();
    udp_round_trip(&hosts[1].ns, &hosts[0].ns, ip(hosts[0].overlay)).unwrap();
    assert!(
        tx_packets(&hosts[0].ns, "pnvx0") > before,
        "the datagram did not leave through the VXLAN device"
    );

    // Without the FDB entry the device has nowhere to send: the overlay is
    // really what carried the traffic.
    let mut nl = nl(&hosts[0].ns);
    assert!(remove_fdb(&mut nl, hosts[0].vxlan, MAC_B, ip(hosts[1].underlay)).unwrap());
    assert!(udp_round_trip(&hosts[0].ns, &hosts[1].ns, ip(hosts[1].overlay)).is_err());
}

/// Sends a datagram from `from` to `to:port`, where a server bound inside
/// `to` answers; returns the source address the server saw. The reply must
/// come back too (through the NAT's reverse mapping when there is one).
fn source_seen(from: &TestNetns, to: &TestNetns, to_ip: IpAddr) -> Result<IpAddr, String> {
    const WAIT: Duration = Duration::from_secs(3);
    let server = to
        .run(|| UdpSocket::bind(SocketAddr::new(to_ip, 0)))
        .map_err(|e| format!("bind in {}: {e}", to.name()))?;
    let server_addr = server.local_addr().map_err(|e| e.to_string())?;
    let client = from
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .map_err(|e| format!("bind in {}: {e}", from.name()))?;
    for s in [&server, &client] {
        s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    }
    client
        .send_to(b"ping", server_addr)
        .map_err(|e| format!("send to {server_addr}: {e}"))?;
    let mut buf = [0u8; 16];
    let (_, peer) = server
        .recv_from(&mut buf)
        .map_err(|e| format!("{server_addr} received nothing: {e}"))?;
    server.send_to(b"pong", peer).map_err(|e| e.to_string())?;
    let n = client
        .recv(&mut buf)
        .map_err(|e| format!("no reply from {server_addr}: {e}"))?;
    if &buf[..n] != b"pong" {
        return Err("wrong reply".into());
    }
    Ok(peer.ip())
}

fn ruleset(ns: &TestNetns) -> String {
    let out = ns.exec("nft", &["list", "ruleset"]);
    assert!(
        out.status.success(),
        "nft list ruleset in {}: {}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn masquerade_outside_the_cluster_ranges_only() {
    require_root();
    let client = TestNetns::new("mqclient");
    let client2 = TestNetns::new("mqclient2");
    let router = TestNetns::new("mqrouter");
    let outside = TestNetns::new("mqoutside");
    wire(
        &client,
        "eth0",
        "10.244.1.5/24",
        &router,
        "pod1",
        "10.244.1.1/24",
    );
    wire(
        &client2,
        "eth0",
        "10.244.2.7/24",
        &router,
        "pod2",
        "10.244.2.1/24",
    );
    wire(
        &router,
        "up0",
        "192.168.77.1/24",
        &outside,
        "eth0",
        "192.168.77.2/24",
    );
    client.ip(&["route", "add", "default", "via", "10.244.1.1"]);
    client2.ip(&["route", "add", "default", "via", "10.244.2.1"]);
    // The way back to the pods exists, so only NAT explains a rewritten source.
    outside.ip(&["route", "add", "10.244.0.0/16", "via", "192.168.77.1"]);
    let root_forwarding = sysctl::get("net/ipv4/ip_forward").unwrap();
    router
        .run(|| sysctl::set("net/ipv4/ip_forward", "1"))
        .unwrap();
    assert_eq!(
        sysctl::get("net/ipv4/ip_forward").unwrap(),
        root_forwarding,
        "the machine's own namespace must not change"
    );

    let pod = ip("10.244.1.5");
    let node = ip("192.168.77.1");
    let far = ip("192.168.77.2");
    let other_pod = ip("10.244.2.7");
    // Without masquerade the outside sees the pod itself.
    assert_eq!(source_seen(&client, &outside, far).unwrap(), pod);

    let ranges: Vec<IpNetwork> = vec!["10.244.0.0/16".parse().unwrap()];
    router.run(|| ensure_masquerade(&ranges)).unwrap();
    assert_eq!(source_seen(&client, &outside, far).unwrap(), node);
    assert_eq!(
        source_seen(&client, &client2, other_pod).unwrap(),
        pod,
        "traffic inside the cluster range keeps its source"
    );

    // Idempotent: one table, one rule, still working.
    router.run(|| ensure_masquerade(&ranges)).unwrap();
    let text = ruleset(&router);
    assert_eq!(text.matches("table inet podnet").count(), 1, "{text}");
    assert_eq!(text.matches("masquerade").count(), 1, "{text}");
    assert!(
        text.contains("type nat hook postrouting priority srcnat"),
        "{text}"
    );
    assert!(
        text.contains("ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade"),
        "{text}"
    );
    assert_eq!(source_seen(&client, &outside, far).unwrap(), node);
    // Only the router's namespace has it.
    assert!(!ruleset(&client).contains("podnet"));

    // Replacing the ranges replaces the rules, both families.
    let wider: Vec<IpNetwork> = vec![
        "10.244.0.0/16".parse().unwrap(),
        "10.96.0.0/12".parse().unwrap(),
        "fd00:10:244::/56".parse().unwrap(),
    ];
    router.run(|| ensure_masquerade(&wider)).unwrap();
    let text = ruleset(&router);
    assert_eq!(text.matches("masquerade").count(), 3, "{text}");
    assert!(
        text.contains(
            "ip saddr 10.96.0.0/12 ip daddr != 10.244.0.0/16 ip daddr != 10.96.0.0/12 masquerade"
        ),
        "{text}"
    );
    assert!(
        text.contains("ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 masquerade"),
        "{text}"
    );
    router.run(|| ensure_masquerade(&ranges)).unwrap();
    assert_eq!(ruleset(&router).matches("masquerade").count(), 1);
    assert_eq!(source_seen(&client, &outside, far).unwrap(), node);

    // Removed: the outside sees the pod again; removing twice is fine.
    assert!(router.run(remove_masquerade).unwrap());
    assert!(!ruleset(&router).contains("podnet"));
    assert_eq!(source_seen(&client, &outside, far).unwrap(), pod);
    assert!(!router.run(remove_masquerade).unwrap());
}
