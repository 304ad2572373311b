//! containerd creates pods through podnet: a real containerd per simulated
//! node (inside the node's namespace, next to its podnetd), driven through
//! its CRI API the way the kubelet drives it.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use podnet_tests::cluster::TestCluster;
use podnet_tests::containerd::{ContainerdOpts, ForeignNetns, TestContainerd};
use podnet_tests::cri::PodSandboxState;
use podnet_tests::net::udp_round_trip;

/// Fields drop in order: the runtimes (whose teardown runs CNI DEL
/// against podnetd) before the cluster.
struct CriCluster {
    runtimes: Vec<TestContainerd>,
    cluster: TestCluster,
}

struct Sandbox {
    id: String,
    node: usize,
    ip: IpAddr,
    netns: ForeignNetns,
}

fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(nodes: usize) -> CriCluster {
    let mut cluster = TestCluster::new(1, 3);
    for _ in 0..nodes {
        cluster.add_node(0);
    }
    eventually(Duration::from_secs(10), "routes to every peer", || {
        cluster
            .live_nodes()
            .all(|(i, _)| cluster.routes(i).len() == nodes - 1)
    });
    let runtimes = (0..nodes)
        .map(|i| {
            let n = cluster.node(i);
            let started = Instant::now();
            let rt = TestContainerd::start(
                n.ns.path(),
                ContainerdOpts {
                    cni_conf_dir: n.daemon.cni_conf_dir(),
                    metrics: false,
                    snapshotter: None,
                },
            );
            println!(
                "node {i}: containerd up with the {} snapshotter in {:?}",
                rt.snapshotter,
                started.elapsed()
            );
            rt
        })
        .collect::<Vec<TestContainerd>>();
    // As on a real node, podnetd is told the runtime's CRI socket: it asks
    // the runtime's version and writes the conflist containerd 1.6 accepts
    // (cniVersion 1.0.0; 1.1.0 results are refused before containerd 2).
    for (i, rt) in runtimes.iter().enumerate() {
        let node = cluster.node_mut(i);
        node.daemon.stop();
        node.daemon.opts.cri_socket = Some(rt.socket());
        node.daemon.restart(&node.ns);
        assert_eq!(node.daemon.written_conf()["cniVersion"], "1.0.0");
    }
    // containerd reloads the rewritten conflist on its file event.
    std::thread::sleep(Duration::from_millis(500));
    CriCluster { runtimes, cluster }
}

impl CriCluster {
    /// RunPodSandbox, then what PodSandboxStatus says, checked.
    fn run(&self, node: usize, name: &str) -> Sandbox {
        let rt = &self.runtimes[node];
        let id = rt
            .cri()
            .run_pod_sandbox(name, "default", &format!("uid-{name}"))
            .unwrap_or_else(|e| panic!("{name} on node {node}: {e}\n{}", rt.log_tail(20)));
        self.sandbox(node, id)
    }

    fn sandbox(&self, node: usize, id: String) -> Sandbox {
        let st = self.runtimes[node]
            .cri()
            .pod_sandbox_status(&id, true)
            .expect("status");
        assert_eq!(st.state, PodSandboxState::SandboxReady, "{id}");
        let ip: IpAddr = st
            .ip
            .parse()
            .unwrap_or_else(|e| panic!("{id}: pod IP {:?}: {e}", st.ip));
        let cidrs = self.cluster.node(node).daemon.allocations_cidrs();
        assert!(
            cidrs.iter().any(|c| c.contains(ip)),
            "{id}: {ip} is outside node {node}'s CIDRs {cidrs:?}"
        );
        let netns = st
            .netns
            .unwrap_or_else(|| panic!("{id}: no netns in {:?}", st.info));
        Sandbox {
            id,
            node,
            ip,
            netns: ForeignNetns::new(netns),
        }
    }

    fn host_veths(&self, node: usize) -> Vec<String> {
        self.cluster
            .node(node)
            .ns
            .link_names()
            .into_iter()
            .filter(|l| l.starts_with("pn"))
            .collect()
    }

    /// Stop then Remove every sandbox of `node`, in parallel batches.
    fn tear_down(&self, node: usize, ids: &[String]) {
        let cri = self.runtimes[node].cri();
        std::thread::scope(|s| {
            for chunk in ids.chunks(ids.len().div_ceil(8).max(1)) {
                s.spawn(move || {
                    for id in chunk {
                        cri.stop_pod_sandbox(id)
                            .unwrap_or_else(|e| panic!("stop {id}: {e}"));
                        cri.remove_pod_sandbox(id)
                            .unwrap_or_else(|e| panic!("remove {id}: {e}"));
                    }
                });
            }
        });
    }

    fn assert_clean(&self, node: usize) {
        let n = self.cluster.node(node);
        let left = n.daemon.allocations();
        assert!(left.is_empty(), "node {node} still allocates {left:?}");
        let veths = self.host_veths(node);
        assert!(veths.is_empty(), "node {node} still has veths {veths:?}");
        let listed = self.runtimes[node].cri().list_pod_sandbox().expect("list");
        assert!(listed.is_empty(), "node {node} still lists {listed:?}");
    }
}

fn all_pairs(pods: &[Sandbox]) {
    let mut failures = Vec::new();
    for a in pods {
        for b in pods {
            if a.id != b.id {
                if let Err(e) = udp_round_trip(&a.netns, &b.netns, b.ip) {
                    failures.push(format!(
                        "{} (node {}) -> {} {} (node {}): {e}",
                        &a.id[..12],
                        a.node,
                        &b.id[..12],
                        b.ip,
                        b.node
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pairs failed:\n{}",
        failures.len(),
        pods.len() * (pods.len() - 1),
        failures.join("\n")
    );
}

#[test]
fn containerd_runs_pods_through_podnet_on_two_nodes() {
    let c = start(2);

    // containerd loaded the conflist podnetd wrote: its networks are the
    // loopback it always adds and podnetd's, plugin for plugin.
    for (i, rt) in c.runtimes.iter().enumerate() {
        let written: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                c.cluster
                    .node(i)
                    .daemon
                    .cni_conf_dir()
                    .join("10-podnet.conflist"),
            )
            .expect("conflist"),
        )
        .expect("conflist JSON");
        let info = rt.cri().status_info().expect("status");
        let networks = info["cniconfig"]["Networks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let loaded: Vec<(String, Vec<String>)> = networks
            .iter()
            .map(|n| {
                let conf = &n["Config"];
                let types = conf["Plugins"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p["Network"]["type"].as_str().unwrap_or("").to_string())
                    .collect();
                (conf["Name"].as_str().unwrap_or("").to_string(), types)
            })
            .collect();
        let want_types: Vec<String> = written["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["type"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(
            loaded,
            vec![
                ("cni-loopback".to_string(), vec!["loopback".to_string()]),
                (
                    written["name"].as_str().unwrap_or("").to_string(),
                    want_types
                ),
            ],
            "node {i}: containerd's CNI networks {}",
            info["cniconfig"]
        );
    }

    let started = Instant::now();
    let mut pods = Vec::new();
    for node in 0..2 {
        for k in 0..10 {
            pods.push(c.run(node, &format!("p{node}-{k}")));
        }
    }
    println!(
        "20 RunPodSandbox (sequential): {:?}, {:?} each",
        started.elapsed(),
        started.elapsed() / 20
    );
    let ips: HashSet<IpAddr> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(ips.len(), pods.len(), "duplicate pod IPs");
    for node in 0..2 {
        let ids: HashSet<String> = c
            .cluster
            .node(node)
            .daemon
            .allocations()
            .into_iter()
            .map(|a| a.key.container_id)
            .collect();
        let want: HashSet<String> = pods
            .iter()
            .filter(|p| p.node == node)
            .map(|p| p.id.clone())
            .collect();
        assert_eq!(ids, want, "node {node}: podnetd's allocations vs sandboxes");
        assert_eq!(c.host_veths(node).len(), 10, "node {node} veths");
    }

    let started = Instant::now();
    all_pairs(&pods);
    println!("380 pod pairs, UDP both ways: {:?}", started.elapsed());

    // Stop runs CNI DEL; Remove runs it again with an empty CNI_NETNS.
    let started = Instant::now();
    for node in 0..2 {
        let ids: Vec<String> = pods
            .iter()
            .filter(|p| p.node == node)
            .map(|p| p.id.clone())
            .collect();
        let cri = c.runtimes[node].cri();
        for id in &ids {
            cri.stop_pod_sandbox(id)
                .unwrap_or_else(|e| panic!("stop {id}: {e}"));
            let st = cri.pod_sandbox_status(id, false).expect("status");
            assert_eq!(st.state, PodSandboxState::SandboxNotready, "{id}");
        }
        let n = c.cluster.node(node);
        assert!(
            n.daemon.allocations().is_empty(),
            "node {node}: Stop left {:?}",
            n.daemon.allocations()
        );
        assert!(
            c.host_veths(node).is_empty(),
            "node {node}: Stop left {:?}",
            c.host_veths(node)
        );
        for id in &ids {
            cri.remove_pod_sandbox(id)
                .unwrap_or_else(|e| panic!("remove {id}: {e}"));
        }
        c.assert_clean(node);
    }
    println!("20 Stop + Remove: {:?}", started.elapsed());
    for p in &pods {
        assert!(
            !p.netns.path().exists(),
            "{} is left after Remove",
            p.netns.path().display()
        );
    }
}

#[test]
fn storm_of_50_run_pod_sandbox_on_one_node() {
    let c = start(1);
    let cri = c.runtimes[0].cri();
    let started = Instant::now();
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|k| {
                let cri = cri.clone();
                s.spawn(move || {
                    cri.run_pod_sandbox(&format!("storm-{k}"), "storm", &format!("uid-storm-{k}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let took = started.elapsed();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 50 failed, e.g.:\n{}\n{}",
        failed.len(),
        failed
            .iter()
            .take(3)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        c.runtimes[0].log_tail(20)
    );
    println!("50 concurrent RunPodSandbox: {took:?}");
    let ids: Vec<String> = results.into_iter().map(Result::unwrap).collect();
    let pods: Vec<Sandbox> = ids.iter().map(|id| c.sandbox(0, id.clone())).collect();
    let mut by_ip: HashMap<IpAddr, &str> = HashMap::new();
    for p in &pods {
        if let Some(other) = by_ip.insert(p.ip, &p.id) {
            panic!("{} given to {other} and {}", p.ip, p.id);
        }
    }
    assert_eq!(c.cluster.node(0).daemon.allocations().len(), 50);
    assert_eq!(c.host_veths(0).len(), 50);
    // A sample of the storm's pods reach each other.
    all_pairs(&pods[..6]);
    let started = Instant::now();
    c.tear_down(0, &ids);
    println!("50 Stop + Remove (8 threads): {:?}", started.elapsed());
    c.assert_clean(0);
}

#[test]
fn podnetd_reclaims_pods_containerd_forgot() {
    let mut c = start(1);
    // podnetd asks this containerd which pods exist.
    let socket = c.runtimes[0].socket();
    {
        let node = c.cluster.node_mut(0);
        node.daemon.stop();
        node.daemon.opts.cri_socket = Some(socket);
        node.daemon.opts.reclaim_interval_secs = 1;
        node.daemon.opts.reclaim_grace_secs = 2;
        node.daemon.restart(&node.ns);
    }
    let pods: Vec<Sandbox> = (0..3).map(|k| c.run(0, &format!("doomed-{k}"))).collect();
    // A pod containerd still lists is never reclaimed.
    let kept = c.run(0, "kept-0");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(c.cluster.node(0).daemon.allocations().len(), 4);

    // containerd dies and loses its state: no CNI DEL ever comes, the
    // pods' network namespaces are still there.
    let rt = &mut c.runtimes[0];
    rt.kill9();
    rt.wipe_state();
    rt.launch();
    assert!(rt.cri().list_pod_sandbox().expect("list").is_empty());
    for p in &pods {
        assert!(p.netns.path().exists());
    }
    let kept_again = c.run(0, "kept-1");
    let started = Instant::now();
    eventually(
        Duration::from_secs(30),
        "podnetd releases the forgotten pods",
        || {
            let ids: HashSet<String> = c
                .cluster
                .node(0)
                .daemon
                .allocations()
                .into_iter()
                .map(|a| a.key.container_id)
                .collect();
            ids == HashSet::from([kept_again.id.clone()])
        },
    );
    println!("forgotten pods reclaimed in {:?}", started.elapsed());
    // Their namespaces go (a node reboot would do this); the listed pod
    // keeps its address, then leaves cleanly.
    for p in pods.iter().chain([&kept]) {
        p.netns.unpin();
    }
    c.tear_down(0, std::slice::from_ref(&kept_again.id));
    eventually(Duration::from_secs(10), "veths gone", || {
        c.host_veths(0).is_empty()
    });
    c.assert_clean(0);
}

/// Found by crash-inject: podnetd restarted while containerd was down wrote
/// a 1.1.0 conflist, and containerd 1.6 then failed every DEL of the pods
/// it had set up under 1.0.0 ("no converter for CNI result version 1.0.0 to
/// 1.1.0"): their addresses and veths stayed for good.
#[test]
fn podnetd_restarted_while_containerd_is_down_keeps_its_conflist_version() {
    let mut c = start(1);
    let pod = c.run(0, "survivor");
    c.runtimes[0].kill9();
    {
        let node = c.cluster.node_mut(0);
        node.daemon.kill9();
        node.daemon.restart(&node.ns);
        assert_eq!(node.daemon.written_conf()["cniVersion"], "1.0.0");
    }
    c.runtimes[0].launch();
    c.tear_down(0, std::slice::from_ref(&pod.id));
    c.assert_clean(0);
}
