//! podnetd on the `kubernetes` store, as a process managing a node
//! namespace, against the fake API server of `kube_store`: it follows its
//! own Node when the Node is registered again with a new podCIDR, and its
//! peers' routes catch up within a second of an API outage's end.

use std::time::{Duration, Instant};

use podnet_tests::bins;
use podnet_tests::daemon::{DaemonOpts, TestDaemon};
use podnet_tests::fake_api::{self, FakeApi};
use podnet_tests::netns::TestNetns;
use podnet_tests::node::path_str;
use podnetd::store::kube::VTEP_MAC_ANNOTATION;
use serde_json::{json, Value};

const UNDERLAY: &str = "192.168.77";

fn node_json(name: &str, cidr: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "uid": format!("uid-{name}-{cidr}") },
        "spec": { "podCIDR": cidr, "podCIDRs": [cidr] },
        "status": { "addresses": [{ "type": "InternalIP", "address": ip }] },
    })
}

/// The fake API on a runtime of its own, so the test itself stays plain
/// blocking code like the rest of the harness.
struct Api {
    api: FakeApi,
    _rt: tokio::runtime::Runtime,
}

impl Api {
    fn start(nodes: Vec<Value>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let api = rt.block_on(FakeApi::start(nodes));
        Self { api, _rt: rt }
    }
}

/// A node namespace with an underlay address (a veth pair inside it, so
/// peers' InternalIPs are on-link) and podnetd on the fake API.
struct KubeNode {
    ns: TestNetns,
    daemon: TestDaemon,
    metrics: String,
}

impl KubeNode {
    fn start(api: &Api, name: &str, ip: &str, daemonset: Option<&str>) -> Self {
        let ns = TestNetns::new("node");
        ns.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "ul0"]);
        ns.ip(&["link", "set", "ul0", "up"]);
        ns.ip(&["link", "set", "ul1", "up"]);
        let metrics = podnet_tests::net::daemon_addr().to_string();
        let daemon = TestDaemon::start(
            &ns,
            DaemonOpts {
                node_name: name.into(),
                cluster_cidr: "10.244.0.0/16".into(),
                manage_netns: Some(ns.path().to_path_buf()),
                kubeconfig: Some(api.api.kubeconfig()),
                node_ip: Some(ip.into()),
                metrics_addr: Some(metrics.clone()),
                daemonset: daemonset.map(str::to_string),
                ..DaemonOpts::default()
            },
        );
        Self {
            ns,
            daemon,
            metrics,
        }
    }

    /// The configuration podnetd wrote, as the runtime hands it to podnet.
    fn conf(&self) -> Value {
        self.daemon.written_conf()
    }

    /// ADD a new pod; returns its IPv4 address (with prefix).
    fn add_pod(&self, pod: &TestNetns, id: &str) -> String {
        let podnet = bins::podnet();
        let cni_path = format!(
            "{}:{}",
            podnet.parent().unwrap().display(),
            bins::REFERENCE_PLUGINS
        );
        let stdin = self.conf().to_string();
        let out = podnet_tests::plugin::exec(
            &self.ns,
            &podnet_tests::plugin::Invocation {
                plugin: &podnet,
                command: "ADD",
                container_id: id,
                netns: Some(&path_str(pod.path())),
                ifname: "eth0",
                cni_path: &cni_path,
                stdin: stdin.as_bytes(),
                env: &[],
            },
        )
        .ok();
        out["ips"][0]["address"].as_str().unwrap().to_string()
    }

    fn routes(&self) -> String {
        self.ns.ip(&["route", "show", "proto", "157"])
    }

    fn scrape(&self) -> String {
        self.http_get("/metrics")
    }

    /// The whole HTTP reply to `GET path` on podnetd's metrics port.
    fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.metrics).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    /// `/readyz`'s status code and body.
    fn readyz(&self) -> (String, String) {
        let reply = self.http_get("/readyz");
        let code = reply.split_whitespace().nth(1).unwrap_or("").to_string();
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (code, body.to_string())
    }
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// The fake API with two Nodes, node-a (this node, 10.244.2.0/24) and
/// node-b (a peer on the same segment, 10.244.1.0/24), `setup` applied to
/// its state, and podnetd on node-a, its route to node-b in place.
fn node_a_beside_node_b(
    daemonset: Option<&str>,
    setup: impl FnOnce(&mut fake_api::State),
) -> (Api, KubeNode) {
    let me = format!("{UNDERLAY}.10");
    let api = Api::start(vec![
        node_json("node-a", "10.244.2.0/24", &me),
        node_json("node-b", "10.244.1.0/24", &format!("{UNDERLAY}.11")),
    ]);
    api.api.update(setup);
    let node = KubeNode::start(&api, "node-a", &me, daemonset);
    wait_for("the route to node-b", Duration::from_secs(10), || {
        node.routes().contains("10.244.1.0/24 via 192.168.77.11")
    });
    (api, node)
}

#[test]
fn a_node_registered_again_with_a_new_pod_cidr_is_followed() {
    let me = format!("{UNDERLAY}.10");
    let (api, node) = node_a_beside_node_b(None, |_| {});
    assert_eq!(
        node.daemon.allocations_cidrs(),
        vec!["10.244.2.0/24".parse().unwrap()]
    );
    let old_pod = TestNetns::new("p");
    assert!(node.add_pod(&old_pod, "old").starts_with("10.244.2."));

    // The Node object is deleted and registered again (no annotations); the
    // controller-manager gives it another podCIDR.
    api.api.update(|s| s.delete("node-a"));
    std::thread::sleep(Duration::from_millis(300));
    api.api
        .update(|s| s.put(node_json("node-a", "10.244.3.0/24", &me)));

    let took = wait_for("podnetd on the new CIDR", Duration::from_secs(10), || {
        node.daemon.allocations_cidrs() == vec!["10.244.3.0/24".parse().unwrap()]
    });
    eprintln!("podnetd followed its Node's new podCIDR in {took:?}");
    wait_for("the bridge moved", Duration::from_secs(5), || {
        node.ns.addresses("podnet0") == vec!["10.244.3.1/24".to_string()]
    });
    wait_for(
        "the VTEP MAC annotated again",
        Duration::from_secs(5),
        || {
            api.api
                .read(|s| s.annotation("node-a", VTEP_MAC_ANNOTATION))
                .is_some()
        },
    );
    let new_pod = TestNetns::new("p");
    assert!(node.add_pod(&new_pod, "new").starts_with("10.244.3."));
    // The written configuration turns hairpin on (a pod reaching itself
    // through its own Service address).
    let ports = node.ns.ip(&["-d", "link", "show", "master", "podnet0"]);
    assert_eq!(ports.matches("hairpin on").count(), 2, "{ports}");
    // A repeated ADD of the old pod keeps its address; it is reported.
    assert!(node.daemon.allocations().len() == 2);
    let list = std::process::Command::new(bins::workspace_bin("podnetd"))
        .arg("list")
        .arg("--socket")
        .arg(node.daemon.socket())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        list.contains("1 on a former node CIDR"),
        "podnetd list:\n{list}"
    );
    let marked: Vec<&str> = list.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(marked.len(), 1, "{list}");
    assert!(marked[0].contains("old") && marked[0].contains("10.244.2."));
    assert!(node
        .scrape()
        .lines()
        .any(|l| l == "podnet_ipam_outside_node_cidr 1"));
    assert!(node
        .daemon
        .log_text()
        .contains("pod on a former node CIDR: recreate it"));
    // Peers' routes are untouched.
    assert!(node.routes().contains("10.244.1.0/24 via 192.168.77.11"));
}

#[test]
fn peers_routes_are_right_within_a_second_of_an_api_outage_ending() {
    let (api, node) = node_a_beside_node_b(None, |_| {});

    // The API goes away for long enough that a growing backoff would be at
    // its ceiling; meanwhile a node joins, one leaves, and the history the
    // watch would resume from is compacted (410 Gone on return).
    api.api.update(|s| {
        s.unavailable = true;
        s.drop_watches();
    });
    std::thread::sleep(Duration::from_secs(6));
    api.api.update(|s| {
        s.put(node_json(
            "node-c",
            "10.244.4.0/24",
            &format!("{UNDERLAY}.12"),
        ));
        s.delete("node-b");
        s.compact();
    });
    assert!(
        node.routes().contains("10.244.1.0/24"),
        "kept while the API is down"
    );
    api.api.update(|s| s.unavailable = false);
    let took = wait_for("routes after the outage", Duration::from_secs(10), || {
        let r = node.routes();
        r.contains("10.244.4.0/24 via 192.168.77.12") && !r.contains("10.244.1.0/24")
    });
    eprintln!("routes right {took:?} after the API returned");
    assert!(
        took < Duration::from_secs(1),
        "routes took {took:?} after the API returned (target: within 1 s)"
    );
}

#[test]
fn readyz_follows_the_api_even_when_the_watch_resumes_with_nothing_to_say() {
    let (api, node) = node_a_beside_node_b(None, |_| {});
    wait_for("ready", Duration::from_secs(10), || {
        node.readyz().0 == "200"
    });

    api.api.update(|s| {
        s.unavailable = true;
        s.drop_watches();
    });
    wait_for(
        "not ready with the API down",
        Duration::from_secs(10),
        || node.readyz().0 == "503",
    );
    let (_, body) = node.readyz();
    assert!(body.starts_with("not ready: cluster store: "), "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");

    // Back with no change: the watch resumes and delivers nothing, so only
    // the recovery probe can tell.
    api.api.update(|s| s.unavailable = false);
    wait_for("ready again", Duration::from_secs(15), || {
        node.readyz().0 == "200"
    });
}

/// What podnet puts on a node, each named when present.
fn footprint(node: &KubeNode) -> Vec<&'static str> {
    let mut present = Vec::new();
    let conf_dir = node.daemon.cni_conf_dir();
    if conf_dir.join("10-podnet.conflist").exists() {
        present.push("conflist");
    }
    let links = node.ns.link_names();
    if links.iter().any(|l| l == "podnet0") {
        present.push("bridge");
    }
    if links.iter().any(|l| l == "podnet.vx") {
        present.push("vxlan");
    }
    if !node.routes().trim().is_empty() {
        present.push("routes");
    }
    if node
        .ns
        .exec("nft", &["list", "table", "inet", "podnet"])
        .status
        .success()
    {
        present.push("nftables");
    }
    // NetworkPolicy's table, written at podnetd's first policy sync.
    if node
        .ns
        .exec("nft", &["list", "table", "inet", "podnet-policy"])
        .status
        .success()
    {
        present.push("policy");
    }
    if node.daemon.state_dir().join("ipam.db").exists() {
        present.push("state");
    }
    if node.daemon.socket().exists() {
        present.push("socket");
    }
    present
}

#[test]
fn deleting_the_daemonset_cleans_the_node_and_a_restart_keeps_everything() {
    let (api, mut node) = node_a_beside_node_b(Some("kube-system/podnet"), |s| {
        s.daemonsets.insert(
            "kube-system/podnet".into(),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                   "metadata": {"name": "podnet", "namespace": "kube-system"}}),
        );
    });
    let pod = TestNetns::new("p");
    node.add_pod(&pod, "survivor");
    let all = [
        "conflist", "bridge", "vxlan", "routes", "nftables", "policy", "state", "socket",
    ];
    wait_for("the policy table", Duration::from_secs(10), || {
        footprint(&node) == all
    });

    // SIGTERM while the DaemonSet stays (a restart, a rolling update):
    // everything stays, and the pod keeps its address across the restart.
    node.daemon.stop();
    assert_eq!(footprint(&node), all);
    node.daemon.restart(&node.ns);
    assert_eq!(node.daemon.allocations().len(), 1);

    // The DaemonSet is deleted (kubectl delete -f deploy/podnet.yaml).
    api.api.update(|s| s.daemonsets.clear());
    node.daemon.stop();
    assert_eq!(
        footprint(&node),
        Vec::<&str>::new(),
        "{}",
        node.daemon.log_text()
    );
    assert!(node
        .daemon
        .log_text()
        .contains("podnet is being removed: cleaning this node"));
}
