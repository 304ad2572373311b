//! One node of a Kubernetes cluster, as NetworkPolicy sees it: podnetd on
//! the fake API server (`--store kubernetes`) managing a node namespace;
//! pods created in the API first, then ADDed by the plugin with the
//! runtime's `CNI_ARGS` (namespace and name), then given their address in
//! the API, as the kubelet does; policies put into the API as the watch
//! delivers them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use podnet_tests::bins;
use podnet_tests::daemon::{DaemonOpts, TestDaemon};
use podnet_tests::netns::TestNetns;
use podnet_tests::node::path_str;
use podnet_tests::plugin::{exec, Invocation, PluginOutput};
use podnet_tests::reach::Member;
use serde_json::{json, Value};

use podnet_tests::fake_api::{FakeApi, State};

pub const NODE: &str = "node-a";
const NODE_IP: &str = "192.168.77.10";

/// The ports every pod declares (and serves), named as upstream's suite
/// names them: `serve-80-tcp`, ...
pub const PORTS: [u16; 2] = [80, 81];

pub struct Cluster {
    pub api: FakeApi,
    _rt: tokio::runtime::Runtime,
    pub node: TestNetns,
    pub daemon: TestDaemon,
    pub pods: Vec<TestPod>,
}

pub struct TestPod {
    /// `namespace/name`.
    pub name: String,
    pub netns: TestNetns,
    /// The first address; `ips` has them all (IPv4 first).
    pub ip: IpAddr,
    pub ips: Vec<IpAddr>,
    pub container_id: String,
}

impl Cluster {
    /// The API with this node and `namespaces` (`name`, labels), and
    /// podnetd serving.
    pub fn start(namespaces: &[(&str, Value)]) -> Self {
        Self::start_with(namespaces, false, |_| {})
    }

    /// [`Cluster::start`], the node dual-stack (IPv4 and IPv6 pod CIDRs)
    /// when asked, with podnetd's options changed by `tune`.
    pub fn start_with(
        namespaces: &[(&str, Value)],
        dual_stack: bool,
        tune: impl FnOnce(&mut DaemonOpts),
    ) -> Self {
        podnet_tests::require_root();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cidrs: &[&str] = if dual_stack {
            &["10.244.2.0/24", "fd00:10:244:2::/64"]
        } else {
            &["10.244.2.0/24"]
        };
        let api = rt.block_on(FakeApi::start(vec![json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": NODE, "uid": "uid-node-a" },
            "spec": { "podCIDR": cidrs[0], "podCIDRs": cidrs },
            "status": { "addresses": [{ "type": "InternalIP", "address": NODE_IP }] },
        })]));
        api.update(|s| {
            for (name, labels) in namespaces {
                s.put_in("namespaces", namespace(name, labels.clone()));
            }
        });
        let node = TestNetns::new("pnode");
        node.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
        node.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "ul0"]);
        node.ip(&["link", "set", "ul0", "up"]);
        node.ip(&["link", "set", "ul1", "up"]);
        let metrics = podnet_tests::net::daemon_addr().to_string();
        let mut opts = DaemonOpts {
            metrics_addr: Some(metrics),
            node_name: NODE.into(),
            cluster_cidr: if dual_stack {
                "10.244.0.0/16,fd00:10:244::/56".into()
            } else {
                "10.244.0.0/16".into()
            },
            manage_netns: Some(node.path().to_path_buf()),
            kubeconfig: Some(api.kubeconfig()),
            node_ip: Some(NODE_IP.into()),
            ..DaemonOpts::default()
        };
        tune(&mut opts);
        let daemon = TestDaemon::start(&node, opts);
        Self {
            api,
            _rt: rt,
            node,
            daemon,
            pods: Vec::new(),
        }
    }

    /// Creates pod `ns/name` with `labels` in the API, ADDs it, and
    /// records its address in the API (unless `report_ip` is false: the
    /// API then never learns it, as when the kubelet is slow).
    pub fn add_pod(&mut self, ns: &str, name: &str, labels: Value, report_ip: bool) -> &TestPod {
        let pod = self.new_pod(ns, name, labels, report_ip);
        self.pods.push(pod);
        self.pods.last().unwrap()
    }

    /// [`Cluster::add_pod`]'s pod, the caller's to keep.
    pub fn new_pod(&self, ns: &str, name: &str, labels: Value, report_ip: bool) -> TestPod {
        self.api
            .update(|s| s.put_in("pods", pod_json(ns, name, labels)));
        let netns = TestNetns::new("ppod");
        let container_id = format!("c-{ns}-{name}");
        let out = self.plugin("ADD", ns, name, &container_id, &netns);
        if out.code != Some(0) {
            let log = self.daemon.log_text();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| l.contains("podnetd") || !l.contains("DEBUG"))
                .take(40)
                .collect();
            panic!(
                "ADD of {ns}/{name}: {out:?}\npodnetd's log, last lines first:\n{}",
                tail.join("\n")
            );
        }
        let ips: Vec<IpAddr> = out.ok()["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .map(|a| a.split('/').next().unwrap().parse().unwrap())
            .collect();
        assert!(!ips.is_empty(), "ADD of {ns}/{name} returned no address");
        if report_ip {
            self.api.update(|s| set_pod_ips(s, ns, name, &ips));
        }
        TestPod {
            name: format!("{ns}/{name}"),
            netns,
            ip: ips[0],
            ips,
            container_id,
        }
    }

    /// Runs the plugin for pod `ns/name` as the runtime would.
    pub fn plugin(
        &self,
        command: &str,
        ns: &str,
        name: &str,
        container_id: &str,
        netns: &TestNetns,
    ) -> PluginOutput {
        let podnet = bins::podnet();
        let cni_path = format!(
            "{}:{}",
            podnet.parent().unwrap().display(),
            bins::REFERENCE_PLUGINS
        );
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={container_id}"
        );
        let stdin = self.daemon.written_conf().to_string();
        exec(
            &self.node,
            &Invocation {
                plugin: &podnet,
                command,
                container_id,
                netns: Some(&path_str(netns.path())),
                ifname: "eth0",
                cni_path: &cni_path,
                stdin: stdin.as_bytes(),
                env: &[("CNI_ARGS", &args)],
            },
        )
    }

    pub fn members(&self) -> Vec<Member<'_>> {
        self.members_by(|p| p.ip)
    }

    /// The pods as probe members, each at the address `pick` chooses.
    pub fn members_by(&self, pick: impl Fn(&TestPod) -> IpAddr) -> Vec<Member<'_>> {
        self.pods
            .iter()
            .map(|p| Member {
                name: p.name.clone(),
                netns: &p.netns,
                ip: pick(p),
            })
            .collect()
    }

    pub fn pod(&self, name: &str) -> &TestPod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// Makes `policies` the NetworkPolicies in the API: the others are
    /// deleted, these written (a policy kept is modified, never deleted
    /// and created again, which would be a moment without it).
    pub fn set_policies(&self, policies: &[Value]) {
        let key = |p: &Value| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            )
        };
        let keep: Vec<String> = policies.iter().map(key).collect();
        self.api.update(|s| {
            for old in s.keys("networkpolicies") {
                if !keep.contains(&old) {
                    s.delete_in("networkpolicies", &old);
                }
            }
            for p in policies {
                s.put_in("networkpolicies", p.clone());
            }
        });
        // The watch is asynchronous: a pod added right after must meet
        // the policies, as it would a minute after in a real cluster.
        // (A change that keeps the number is awaited by `settled`.)
        let in_force = format!("podnet_policy_network_policies {}", policies.len());
        wait_for(
            "podnetd to enforce the policies",
            Duration::from_secs(15),
            || self.scrape().lines().any(|l| l == in_force),
        );
    }

    /// podnetd's `/metrics`.
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let addr = self.daemon.opts.metrics_addr.as_deref().unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    /// `podnetd policy explain`'s output.
    pub fn explain(&self, from: &str, to: &str, port: &str) -> String {
        self.podnetd(&[
            "policy", "explain", "--from", from, "--to", to, "--port", port,
        ])
    }

    /// `podnetd list`'s output.
    pub fn list(&self) -> String {
        self.podnetd(&["list"])
    }

    fn podnetd(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(bins::workspace_bin("podnetd"))
            .args(args)
            .arg("--socket")
            .arg(self.daemon.socket())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podnetd {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": name, "uid": format!("uid-ns-{name}"), "labels": labels },
    })
}

/// A pod of this node serving TCP and UDP on [`PORTS`], named ports
/// included.
pub fn pod_json(ns: &str, name: &str, labels: Value) -> Value {
    let ports: Vec<Value> = PORTS
        .iter()
        .flat_map(|p| {
            ["TCP", "UDP"].map(|proto| {
                json!({
                    "name": format!("serve-{p}-{}", proto.to_lowercase()),
                    "containerPort": p,
                    "protocol": proto,
                })
            })
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"),
            "labels": labels,
        },
        "spec": {
            "nodeName": NODE,
            "containers": [{ "name": "c", "image": "agnhost", "ports": ports }],
        },
        "status": { "phase": "Pending" },
    })
}

fn set_pod_ips(s: &mut State, ns: &str, name: &str, ips: &[IpAddr]) {
    let listed: Vec<Value> = ips
        .iter()
        .map(|ip| json!({ "ip": ip.to_string() }))
        .collect();
    s.modify_in("pods", &format!("{ns}/{name}"), |p| {
        p["status"] = json!({
            "phase": "Running",
            "podIP": ips[0].to_string(),
            "podIPs": listed,
        });
    });
}

/// Polls `ok` every 10 ms until it holds; panics after `within`.
pub fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}
