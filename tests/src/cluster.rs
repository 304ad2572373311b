//! A simulated multi-node cluster on one machine: an underlay of switch
//! namespaces (one per L2 segment, a router between segments), node
//! namespaces on it, a podnetd per node (run outside its node, managing it
//! through `--netns`), etcd on loopback as the shared store, and pods.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::Value;

use crate::bins;
use crate::daemon::{DaemonOpts, TestDaemon};
use crate::etcd::TestEtcd;
use crate::netns::TestNetns;
use crate::node::path_str;
use crate::plugin::{self, Invocation, PluginOutput};

pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

pub struct ClusterNode {
    pub name: String,
    pub ns: TestNetns,
    pub ip: IpAddr,
    pub segment: usize,
    pub daemon: TestDaemon,
}

pub struct Pod {
    pub ns: TestNetns,
    pub id: String,
    pub node: usize,
    pub ip: IpAddr,
}

pub struct TestCluster {
    pub etcd: TestEtcd,
    switches: Vec<TestNetns>,
    router: Option<TestNetns>,
    pub nodes: Vec<Option<ClusterNode>>,
    pub lease_ttl_secs: i64,
    /// `PODNET_LOG` of the nodes' podnetds added from now on.
    pub daemon_log: String,
    cni_path: String,
    counter: usize,
}

/// Connects `ns` to a segment: `dev` (up, holding `cidr`) in `ns`, its
/// peer `port` a port of the switch's bridge.
fn plug_into_switch(ns: &TestNetns, dev: &str, sw: &TestNetns, port: &str, cidr: &str) {
    ns.veth_to(dev, sw, port);
    sw.ip(&["link", "set", "dev", port, "master", "swbr", "up"]);
    ns.ip(&["addr", "add", cidr, "dev", dev]);
    ns.ip(&["link", "set", "dev", dev, "up"]);
}

fn segment_prefix(segment: usize) -> String {
    format!("192.168.{}", 60 + segment)
}

impl TestCluster {
    /// `segments` L2 segments; with more than one, a router joins them.
    pub fn new(segments: usize, lease_ttl_secs: i64) -> Self {
        crate::require_root();
        let etcd = TestEtcd::start();
        let switches: Vec<TestNetns> = (0..segments)
            .map(|_| {
                let sw = TestNetns::new("sw");
                sw.ip(&["link", "add", "name", "swbr", "type", "bridge"]);
                sw.ip(&["link", "set", "dev", "swbr", "up"]);
                sw
            })
            .collect();
        let router = (segments > 1).then(|| {
            let r = TestNetns::new("rt");
            // Forwarding inside the router's namespace only.
            r.run(|| podnetd::kernel::sysctl::set("net/ipv4/ip_forward", "1"))
                .expect("router forwarding");
            for (k, sw) in switches.iter().enumerate() {
                let leg = format!("r{k}");
                let port = format!("rt{k}");
                plug_into_switch(&r, &leg, sw, &port, &format!("{}.1/24", segment_prefix(k)));
            }
            r
        });
        let own = bins::podnet();
        let own_dir = own.parent().expect("bin dir").display().to_string();
        Self {
            etcd,
            switches,
            router,
            nodes: Vec::new(),
            lease_ttl_secs,
            daemon_log: "debug".into(),
            cni_path: format!("{own_dir}:{}", bins::REFERENCE_PLUGINS),
            counter: 0,
        }
    }

    /// Puts a plain host (no podnetd) on `segment` with address `ip`.
    pub fn attach_host(&self, host: &TestNetns, segment: usize, ip: &str) {
        let sw = &self.switches[segment];
        let port = format!("h{}", ip.rsplit('.').next().unwrap_or("0"));
        plug_into_switch(host, "eth0", sw, &port, &format!("{ip}/24"));
    }

    /// A node on `segment` with its podnetd started and ready.
    pub fn add_node(&mut self, segment: usize) -> usize {
        let idx = self.nodes.len();
        let name = format!("node-{idx}");
        let ns = TestNetns::new("n");
        let sw = &self.switches[segment];
        let port = format!("p{idx}");
        let ip = format!("{}.{}", segment_prefix(segment), 10 + idx);
        plug_into_switch(&ns, "eth0", sw, &port, &format!("{ip}/24"));
        if self.router.is_some() {
            ns.ip(&[
                "route",
                "add",
                "default",
                "via",
                &format!("{}.1", segment_prefix(segment)),
            ]);
        }
        let daemon = TestDaemon::start(
            &ns,
            DaemonOpts {
                node_name: name.clone(),
                cluster_cidr: CLUSTER_CIDR.into(),
                manage_netns: Some(ns.path().to_path_buf()),
                etcd_endpoint: Some(self.etcd.endpoint()),
                node_ip: Some(ip.clone()),
                lease_ttl_secs: self.lease_ttl_secs,
                resync_interval_secs: 5,
                log: self.daemon_log.clone(),
                ..Default::default()
            },
        );
        self.nodes.push(Some(ClusterNode {
            name,
            ns,
            ip: ip.parse().expect("ip"),
            segment,
            daemon,
        }));
        idx
    }

    pub fn node(&self, idx: usize) -> &ClusterNode {
        self.nodes[idx].as_ref().expect("node was removed")
    }

    pub fn node_mut(&mut self, idx: usize) -> &mut ClusterNode {
        self.nodes[idx].as_mut().expect("node was removed")
    }

    /// The node leaves for good: its daemon stops, its namespace goes.
    pub fn remove_node(&mut self, idx: usize) {
        if let Some(mut n) = self.nodes[idx].take() {
            n.daemon.kill9();
        }
    }

    pub fn live_nodes(&self) -> impl Iterator<Item = (usize, &ClusterNode)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// Runs the plugin for `pod` on its node with the configuration that
    /// node's podnetd wrote.
    pub fn cni(&self, node: usize, verb: &str, id: &str, netns: Option<&str>) -> PluginOutput {
        let n = self.node(node);
        let conf = n.daemon.written_conf().to_string();
        let podnet = bins::podnet();
        plugin::exec(
            &n.ns,
            &Invocation {
                plugin: &podnet,
                command: verb,
                container_id: id,
                netns,
                ifname: "eth0",
                cni_path: &self.cni_path,
                stdin: conf.as_bytes(),
                env: &[],
            },
        )
    }

    /// A pod on `node`, wired by podnet.
    pub fn add_pod(&mut self, node: usize) -> Pod {
        self.counter += 1;
        let id = format!("pod{}", self.counter);
        let ns = TestNetns::new("pod");
        let r: Value = self.cni(node, "ADD", &id, Some(&path_str(ns.path()))).ok();
        let cidr = r["ips"][0]["address"].as_str().expect("address");
        let ip = cidr
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .expect("ip");
        Pod { ns, id, node, ip }
    }

    pub fn del_pod(&self, pod: &Pod) {
        self.cni(pod.node, "DEL", &pod.id, Some(&path_str(pod.ns.path())))
            .ok();
    }

    /// podnet's routes on `node` (`ip route show proto 157`), as "dst via gw".
    pub fn routes(&self, node: usize) -> Vec<String> {
        let n = self.node(node);
        let mut out: Vec<String> =
            n.ns.ip_json(&["route", "show", "proto", "157"])
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{} via {}",
                        r["dst"].as_str().unwrap_or(""),
                        r["gateway"].as_str().unwrap_or("")
                    )
                })
                .collect();
        out.sort();
        out
    }

    pub fn state_dir(&self, node: usize) -> PathBuf {
        self.node(node).daemon.state_dir()
    }
}
