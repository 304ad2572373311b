//! Two namespaces that reach each other only through a third, the way a
//! node forwards between pods: `a` (10.0.0.2, fd00:a::2) and `b`
//! (10.0.1.2, fd00:b::2), each on a veth to `router`, which forwards.
//! Firewall tests put their rules in `router` and send real packets.

use std::net::IpAddr;

use crate::netns::TestNetns;

pub const A4: &str = "10.0.0.2";
pub const B4: &str = "10.0.1.2";
pub const A6: &str = "fd00:a::2";
pub const B6: &str = "fd00:b::2";
/// The router's address on `a`'s side.
pub const ROUTER_A4: &str = "10.0.0.1";

pub struct Routed {
    pub router: TestNetns,
    pub a: TestNetns,
    pub b: TestNetns,
}

pub fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("test address {s}: {e}"))
}

impl Routed {
    pub fn new(tag: &str) -> Self {
        let router = TestNetns::new(&format!("{tag}r"));
        let a = TestNetns::new(&format!("{tag}a"));
        let b = TestNetns::new(&format!("{tag}b"));
        for (peer, dev, net4, net6) in [
            (&a, "a0", "10.0.0", "fd00:a:"),
            (&b, "b0", "10.0.1", "fd00:b:"),
        ] {
            router.veth_to(dev, peer, "eth0");
            // No duplicate address detection: the addresses work at once.
            for (ns, ifname, host) in [(&router, dev, "1"), (peer, "eth0", "2")] {
                ns.ip(&["addr", "add", &format!("{net4}.{host}/24"), "dev", ifname]);
                ns.ip(&[
                    "addr",
                    "add",
                    &format!("{net6}:{host}/64"),
                    "dev",
                    ifname,
                    "nodad",
                ]);
                ns.ip(&["link", "set", ifname, "up"]);
            }
            peer.ip(&["route", "add", "default", "via", &format!("{net4}.1")]);
            peer.ip(&["-6", "route", "add", "default", "via", &format!("{net6}:1")]);
        }
        for key in ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"] {
            router
                .run(|| podnetd::kernel::sysctl::set(key, "1"))
                .unwrap_or_else(|e| panic!("{key} in the router: {e}"));
        }
        Self { router, a, b }
    }
}

/// `nft ARGS` inside `ns`, to observe; panics on failure, returns stdout.
pub fn nft(ns: &TestNetns, args: &[&str]) -> String {
    let out = ns.exec("nft", args);
    assert!(
        out.status.success(),
        "nft {} in {}: {}",
        args.join(" "),
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
