//! One plugin under test: its node namespace, pod namespaces, configuration
//! and (for podnet + podnet-ipam) podnetd; one timed operation; and the
//! state the node must be in after a phase.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use podnet_cni::netlink::link;
use podnet_cni::netlink::netns::NetNs;
use podnet_tests::bins;
use podnet_tests::cleanup;
use podnet_tests::daemon::{DaemonOpts, TestDaemon, BENCH_LOG};
use podnet_tests::netns::TestNetns;
use podnet_tests::node::TestNode;
use podnet_tests::plugin::{exec_here, Invocation};
use serde_json::{json, Value};

use crate::{
    Kind, CNI_VERSION, DAEMON_BRIDGE, DAEMON_CLUSTER_CIDR, IFNAME, NETWORK, POLICIES, RANGE,
};

/// The NetworkPolicy kind's pods live in this namespace of the fake API.
const POD_NAMESPACE: &str = "bench";
const NODE_NAME: &str = "node-a";
const NODE_IP: &str = "192.168.77.10";

pub struct Subject {
    pub kind: Kind,
    pub plugin: PathBuf,
    /// podnet + podnet-ipam only; stopped (by `Drop`) before the node goes.
    pub daemon: Option<TestDaemon>,
    pub node: TestNode,
    conf: Value,
    stdin: Vec<u8>,
    /// Empty for host-local alone, which never enters a pod namespace.
    pods: Vec<TestNetns>,
    /// podnet + podnet-ipam: whether DAEMON_BRIDGE existed before any ADD.
    pub daemon_made_bridge: bool,
    /// The NetworkPolicy kind's API server, on a runtime of its own.
    api: Option<(podnet_tests::fake_api::FakeApi, tokio::runtime::Runtime)>,
}

impl Drop for Subject {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.as_mut() {
            daemon.kill9();
        }
    }
}

/// podnetd in `node`, IPv4 only (TestDaemon registers its pid and directory
/// for the emergency cleanup).
fn start_daemon(node: &TestNode, pods: usize) -> TestDaemon {
    let opts = DaemonOpts {
        cluster_cidr: DAEMON_CLUSTER_CIDR.into(),
        // The production default, or enough for --pods.
        max_pods: u32::try_from(pods.max(110)).unwrap(),
        log: BENCH_LOG.into(),
        ..DaemonOpts::default()
    };
    TestDaemon::start(&node.ns, opts)
}

/// The fake API for the NetworkPolicy kind: this node, namespaces,
/// [`POLICIES`] policies that isolate every pod of [`POD_NAMESPACE`] (and
/// whose peers are other pods of it), and `pods` pods, as the kubelet
/// would have created them before their ADD.
fn policy_api(
    node: &TestNode,
    pods: usize,
) -> (podnet_tests::fake_api::FakeApi, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // In the node's namespace, where podnetd runs (as the DaemonSet's,
    // with hostNetwork, runs in the node's).
    let listener = node
        .ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let api = rt.block_on(podnet_tests::fake_api::FakeApi::start_on(
        listener,
        vec![json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": NODE_NAME, "uid": "uid-node-a" },
            "spec": { "podCIDR": DAEMON_CLUSTER_CIDR, "podCIDRs": [DAEMON_CLUSTER_CIDR] },
            "status": { "addresses": [{ "type": "InternalIP", "address": NODE_IP }] },
        })],
    ));
    api.update(|s| {
        for ns in (0..10).map(|i| format!("team-{i}")).chain([POD_NAMESPACE.to_string()]) {
            s.put_in("namespaces", json!({ "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": ns, "labels": { "team": ns } } }));
        }
        for p in 0..POLICIES {
            s.put_in("networkpolicies", json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": { "name": format!("p{p}"), "namespace": POD_NAMESPACE },
                "spec": {
                    "podSelector": { "matchLabels": { "app": format!("a{}", p % 10) } },
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{ "from": [{ "podSelector": { "matchLabels": { "app": format!("a{}", (p + 1) % 10) } } },
                                           { "namespaceSelector": { "matchLabels": { "team": format!("team-{}", p % 10) } } }],
                                  "ports": [{ "port": 80 + (p % 50) as u16 }] }],
                    "egress": [{ "to": [{ "ipBlock": { "cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"] } }],
                                 "ports": [{ "port": 443 }] }],
                },
            }));
        }
        for i in 0..pods {
            s.put_in("pods", json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": format!("pod-{i}"), "namespace": POD_NAMESPACE,
                              "labels": { "app": format!("a{}", i % 10) } },
                "spec": { "nodeName": NODE_NAME,
                          "containers": [{ "name": "c", "image": "i", "ports": [{ "name": "http", "containerPort": 80 }] }] },
                "status": { "phase": "Pending" } }));
        }
    });
    (api, rt)
}

/// podnetd in `node`, on the fake API's Kubernetes store, enforcing
/// NetworkPolicy; the node gets an underlay address.
fn start_policy_daemon(
    node: &TestNode,
    pods: usize,
    api: &podnet_tests::fake_api::FakeApi,
) -> TestDaemon {
    node.ns
        .ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
    node.ns
        .ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "ul0"]);
    for dev in ["ul0", "ul1"] {
        node.ns.ip(&["link", "set", dev, "up"]);
    }
    let opts = DaemonOpts {
        node_name: NODE_NAME.into(),
        cluster_cidr: DAEMON_CLUSTER_CIDR.into(),
        max_pods: u32::try_from(pods.max(110)).unwrap(),
        kubeconfig: Some(api.kubeconfig()),
        node_ip: Some(NODE_IP.into()),
        log: BENCH_LOG.into(),
        ..DaemonOpts::default()
    };
    TestDaemon::start(&node.ns, opts)
}

/// The plugin `kind` execs and the configuration it is given.
fn plugin_and_conf(kind: Kind, node: &TestNode, daemon: Option<&TestDaemon>) -> (PathBuf, Value) {
    let host_local = json!({
        "type": "host-local",
        "ranges": [[{ "subnet": RANGE }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": node.data_dir.path(),
    });
    let conf = |plugin: &str, extra: Value| {
        let mut conf = json!({ "cniVersion": CNI_VERSION, "name": NETWORK, "type": plugin });
        for (k, v) in extra.as_object().into_iter().flatten() {
            conf[k] = v.clone();
        }
        conf
    };
    match kind {
        Kind::PodnetIpam | Kind::PodnetPolicy => {
            let mut ipam = daemon.expect("podnetd").ipam_conf();
            // As host-local is configured: podnet adds a default route
            // per family anyway, so this only keeps the documents alike.
            ipam["routes"] = json!([{ "dst": "0.0.0.0/0" }]);
            let extra = json!({ "bridge": DAEMON_BRIDGE, "ipam": ipam });
            (bins::podnet(), conf("podnet", extra))
        }
        Kind::Podnet => {
            let extra = json!({ "bridge": "pnbench0", "ipam": host_local });
            (bins::podnet(), conf("podnet", extra))
        }
        Kind::Bridge => {
            let extra = json!({ "bridge": "cni0", "isGateway": true, "ipam": host_local });
            (bins::reference("bridge"), conf("bridge", extra))
        }
        // The document podnet and bridge pass on to host-local: their
        // whole configuration; host-local reads only name and ipam.
        Kind::HostLocal => (
            bins::reference("host-local"),
            conf("host-local", json!({ "ipam": host_local })),
        ),
    }
}

/// Namespaces created a few at a time (each costs two `ip` processes).
fn create_namespaces(role: &str, n: usize) -> Vec<TestNetns> {
    let workers = 8.min(n);
    let per = n.div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let count = per.min(n.saturating_sub(w * per));
                scope.spawn(move || (0..count).map(|_| TestNetns::new(role)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Links in `ns`, through a netlink socket opened inside it.
fn links(ns: &Path) -> Result<Vec<link::Link>, String> {
    let ns = NetNs::open(ns).map_err(|e| e.to_string())?;
    let mut nl = ns.netlink().map_err(|e| e.to_string())?;
    link::list_links(&mut nl).map_err(|e| e.to_string())
}

impl Subject {
    pub fn new(kind: Kind, pods: usize) -> Self {
        let node = TestNode::new(0);
        cleanup::register_dir(node.data_dir.path());
        let api = (kind == Kind::PodnetPolicy).then(|| policy_api(&node, pods));
        let daemon = match (&api, kind) {
            (Some((api, _)), _) => Some(start_policy_daemon(&node, pods, api)),
            (None, Kind::PodnetIpam) => Some(start_daemon(&node, pods)),
            _ => None,
        };
        let (plugin, conf) = plugin_and_conf(kind, &node, daemon.as_ref());
        let pods = if kind == Kind::HostLocal {
            Vec::new()
        } else {
            create_namespaces("pod", pods)
        };
        let daemon_made_bridge = daemon.is_some()
            && links(node.ns.path())
                .is_ok_and(|links| links.iter().any(|l| l.name == DAEMON_BRIDGE));
        Self {
            kind,
            plugin,
            daemon_made_bridge,
            daemon,
            stdin: conf.to_string().into_bytes(),
            conf,
            node,
            pods,
            api,
        }
    }

    /// The configuration as the report shows it, without tempdir paths.
    pub fn shown_conf(&self) -> Value {
        let mut conf = self.conf.clone();
        if let Some(d) = &self.daemon {
            let root = d.dir.path().display().to_string();
            for key in ["socket", "spoolDir"] {
                if let Some(path) = conf["ipam"][key].as_str() {
                    conf["ipam"][key] = json!(path.replacen(&root, "<tempdir>", 1));
                }
            }
        } else {
            conf["ipam"]["dataDir"] = json!("<tempdir>");
        }
        conf
    }

    fn netns_for(&self, i: usize) -> &Path {
        match self.pods.get(i) {
            Some(pod) => pod.path(),
            // host-local ignores CNI_NETNS but a runtime always sets it.
            None => self.node.ns.path(),
        }
    }

    /// One timed invocation, from spawning the plugin to its exit; runs on
    /// a thread inside the node namespace. An ADD must return addresses.
    pub fn op(&self, verb: &str, container_id: &str, i: usize) -> Result<Duration, String> {
        let netns = self.netns_for(i).display().to_string();
        // As containerd passes them; podnetd reads the pod from its watch.
        let args =
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME=pod-{i}");
        let env: &[(&str, &str)] = if self.api.is_some() {
            &[("CNI_ARGS", &args)]
        } else {
            &[]
        };
        let inv = Invocation {
            plugin: &self.plugin,
            command: verb,
            container_id,
            netns: Some(&netns),
            ifname: IFNAME,
            cni_path: self.node.cni_path(),
            stdin: &self.stdin,
            env,
        };
        let start = Instant::now();
        let out = exec_here(&inv);
        let took = start.elapsed();
        let who = self.kind.label();
        if out.code != Some(0) {
            return Err(format!(
                "{who} {verb} {container_id} failed (exit {:?})\nstdout: {}\nstderr: {}",
                out.code,
                out.stdout.trim(),
                out.stderr.trim()
            ));
        }
        if verb == "ADD" {
            let doc: Value = serde_json::from_str(&out.stdout).map_err(|e| {
                format!(
                    "{who} ADD {container_id}: result is not JSON ({e}): {:?}\nstderr: {}",
                    out.stdout,
                    out.stderr.trim()
                )
            })?;
            if doc["ips"].as_array().is_none_or(|ips| ips.is_empty()) {
                return Err(format!(
                    "{who} ADD {container_id}: result without ips: {doc}"
                ));
            }
        }
        Ok(took)
    }

    /// What the node and pods must look like after ADD (`attached`) or DEL.
    pub fn check_state(&self, attached: bool, pods: usize) -> Result<(), String> {
        let want = if attached { pods } else { 0 };
        self.check_ipam(want)?;
        if self.kind == Kind::HostLocal {
            return Ok(());
        }
        self.check_links(attached, want)
    }

    /// The IPAM holds `want` reservations (podnetd: with distinct addresses).
    fn check_ipam(&self, want: usize) -> Result<(), String> {
        let who = self.kind.label();
        if let Some(daemon) = &self.daemon {
            let allocs = daemon.allocations();
            let distinct: HashSet<_> = allocs.iter().flat_map(|a| a.ips.iter().copied()).collect();
            if allocs.len() != want || distinct.len() != want {
                return Err(format!(
                    "{who}: podnetd holds {} allocations ({} distinct addresses), expected {want}: {:?}",
                    allocs.len(),
                    distinct.len(),
                    &allocs[..allocs.len().min(5)]
                ));
            }
        } else {
            let reserved = self.node.reserved(NETWORK);
            if reserved.len() != want {
                return Err(format!(
                    "{who}: host-local holds {} reservations, expected {want}: {:?}",
                    reserved.len(),
                    &reserved[..reserved.len().min(10)]
                ));
            }
        }
        Ok(())
    }

    /// One host veth per attached pod, and each pod exactly `eth0` (or
    /// nothing after DEL).
    fn check_links(&self, attached: bool, want: usize) -> Result<(), String> {
        let who = self.kind.label();
        let veths = links(self.node.ns.path())?
            .into_iter()
            // Pods' host ends are on a bridge; the underlay's pair is not.
            .filter(|l| l.kind.as_deref() == Some("veth") && l.controller.is_some())
            .count();
        if veths != want {
            return Err(format!(
                "{who}: {veths} host veths in the node namespace, expected {want}"
            ));
        }
        for pod in &self.pods {
            let names: Vec<String> = links(pod.path())?
                .into_iter()
                .map(|l| l.name)
                .filter(|n| n != "lo")
                .collect();
            let ok = if attached {
                names == [IFNAME]
            } else {
                names.is_empty()
            };
            if !ok {
                return Err(format!(
                    "{who}: pod namespace {} has interfaces {names:?} after {}",
                    pod.name(),
                    if attached { "ADD" } else { "DEL" }
                ));
            }
        }
        Ok(())
    }
}
