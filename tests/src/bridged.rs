//! A node the way podnet builds one: pods on veths to the node's bridge
//! `pnbr0` (the pods' gateway, 10.244.1.1/24 and fd00:1::1/64), so pods
//! of the node reach each other at layer 2; and a "remote" namespace (a
//! pod of another node) routed through the node on a veth of its own
//! (10.0.9.2, fd00:9::2). Policy tests put their table in `node` and send
//! real packets.

use ipnetwork::IpNetwork;
use podnet_cni::netlink::Netlink;
use podnetd::node_setup;

use crate::netns::TestNetns;

pub const GATEWAY4: &str = "10.244.1.1";
pub const GATEWAY6: &str = "fd00:1::1";
pub const REMOTE4: &str = "10.0.9.2";
pub const REMOTE6: &str = "fd00:9::2";
const BRIDGE: &str = "pnbr0";

pub struct BridgedNode {
    pub node: TestNetns,
    pub remote: TestNetns,
    pods: Vec<(String, TestNetns)>,
    tag: String,
}

/// A pod's addresses for `host`: 10.244.1.HOST and fd00:1::HOST.
pub fn pod_addrs(host: u8) -> (String, String) {
    (format!("10.244.1.{host}"), format!("fd00:1::{host:x}"))
}

impl BridgedNode {
    pub fn new(tag: &str) -> Self {
        let node = TestNetns::new(&format!("{tag}n"));
        let remote = TestNetns::new(&format!("{tag}r"));
        // podnet's own bridge setup, not a bare `ip link add`: a bridge
        // without a fixed MAC takes its lowest port's, so a pod joining
        // could move the gateway's MAC under the other pods' neighbour
        // entries, and their routed packets would be dropped as not for
        // this host.
        let cidrs = ["10.244.1.0/24", "fd00:1::/64"].map(|c| {
            c.parse::<IpNetwork>()
                .unwrap_or_else(|e| panic!("test CIDR {c}: {e}"))
        });
        node.run(|| {
            let mut nl = Netlink::open()?;
            node_setup::ensure_bridge(&mut nl, BRIDGE, &cidrs)
        })
        .unwrap_or_else(|e| panic!("bridge {BRIDGE} in the node: {e}"));

        node.veth_to("rm0", &remote, "eth0");
        address(&node, "rm0", "10.0.9.1", "24", "fd00:9::1", "64");
        address(&remote, "eth0", REMOTE4, "24", REMOTE6, "64");
        for (ns, dev) in [(&node, "rm0"), (&remote, "eth0")] {
            ns.ip(&["link", "set", dev, "up"]);
        }
        default_routes(&remote, "10.0.9.1", "fd00:9::1");
        for key in ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"] {
            node.run(|| podnetd::kernel::sysctl::set(key, "1"))
                .unwrap_or_else(|e| panic!("{key} in the node: {e}"));
        }
        Self {
            node,
            remote,
            pods: Vec::new(),
            tag: tag.into(),
        }
    }

    /// A pod `key` with the addresses of [`pod_addrs`]`(host)`, its
    /// `eth0` on a veth (`pvHOST` in the node) in the bridge.
    pub fn add_pod(&mut self, key: &str, host: u8) -> &TestNetns {
        let pod = TestNetns::new(&format!("{}p", self.tag));
        let dev = format!("pv{host}");
        self.node.veth_to(&dev, &pod, "eth0");
        self.node.ip(&["link", "set", &dev, "master", BRIDGE]);
        self.node.ip(&["link", "set", &dev, "up"]);
        let (v4, v6) = pod_addrs(host);
        address(&pod, "eth0", &v4, "24", &v6, "64");
        pod.ip(&["link", "set", "eth0", "up"]);
        default_routes(&pod, GATEWAY4, GATEWAY6);
        self.pods.push((key.into(), pod));
        &self.pods[self.pods.len() - 1].1
    }

    pub fn pod(&self, key: &str) -> &TestNetns {
        self.pods
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, ns)| ns)
            .unwrap_or_else(|| panic!("no pod {key}"))
    }
}

/// Both addresses, IPv6 without duplicate address detection, so they work
/// at once.
fn address(ns: &TestNetns, dev: &str, v4: &str, len4: &str, v6: &str, len6: &str) {
    ns.ip(&["addr", "add", &format!("{v4}/{len4}"), "dev", dev]);
    ns.ip(&["addr", "add", &format!("{v6}/{len6}"), "dev", dev, "nodad"]);
}

fn default_routes(ns: &TestNetns, via4: &str, via6: &str) {
    ns.ip(&["route", "add", "default", "via", via4]);
    ns.ip(&["-6", "route", "add", "default", "via", via6]);
}
