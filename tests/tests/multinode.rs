//! podnet across nodes: simulated nodes on an underlay, a podnetd each,
//! a real etcd as the shared store; pods on every node reach each other.

use std::time::{Duration, Instant};

use podnet_tests::cluster::{Pod, TestCluster};
use podnet_tests::net::{udp_round_trip, udp_seen_source};
use podnet_tests::netns::TestNetns;

/// Polls `f` until it holds or `limit` passes.
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn all_pairs(cluster: &TestCluster, pods: &[Pod]) {
    let mut failures = Vec::new();
    for a in pods {
        for b in pods {
            if a.id != b.id {
                if let Err(e) = udp_round_trip(&a.ns, &b.ns, b.ip) {
                    failures.push(format!(
                        "{} (node {}) -> {} (node {}): {e}",
                        a.id, a.node, b.id, b.node
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
    let _ = cluster;
}

fn converge(cluster: &TestCluster, peers: usize) {
    eventually(Duration::from_secs(10), "routes to every peer", || {
        cluster
            .live_nodes()
            .all(|(i, _)| cluster.routes(i).len() == peers)
    });
}

#[test]
fn nodes_join_talk_and_leave() {
    let mut cluster = TestCluster::new(1, 3);
    for _ in 0..3 {
        cluster.add_node(0);
    }
    converge(&cluster, 2);
    // Distinct node CIDRs, each node routing to the other two via host-gw.
    let r0 = cluster.routes(0);
    assert!(r0.iter().all(|r| r.contains("via 192.168.60.")), "{r0:?}");

    let mut pods: Vec<Pod> = Vec::new();
    for node in 0..3 {
        for _ in 0..3 {
            pods.push(cluster.add_pod(node));
        }
    }
    all_pairs(&cluster, &pods);

    // A fourth node joins: every node routes to it, its pod reaches all.
    let joined_at = Instant::now();
    let n3 = cluster.add_node(0);
    converge(&cluster, 3);
    println!("join to routes on every node: {:?}", joined_at.elapsed());
    pods.push(cluster.add_pod(n3));
    all_pairs(&cluster, &pods);

    // A node leaves: once its lease expires its routes go everywhere.
    let gone_cidr = cluster
        .routes(0)
        .into_iter()
        .find(|r| r.contains("192.168.60.11"))
        .unwrap();
    pods.retain(|p| p.node != 1);
    cluster.remove_node(1);
    eventually(
        Duration::from_secs(10),
        "routes to the removed node gone",
        || {
            cluster
                .live_nodes()
                .all(|(i, _)| !cluster.routes(i).contains(&gone_cidr))
        },
    );
    converge(&cluster, 2);
    all_pairs(&cluster, &pods);
    for p in &pods {
        cluster.del_pod(p);
    }
}

#[test]
fn nodes_on_different_segments_talk_through_vxlan() {
    let mut cluster = TestCluster::new(2, 5);
    let a = cluster.add_node(0);
    let b = cluster.add_node(1);
    converge(&cluster, 1);
    let route = &cluster
        .node(a)
        .ns
        .ip_json(&["route", "show", "proto", "157"])[0];
    assert_eq!(route["dev"], "podnet.vx", "{route}");
    assert!(route["flags"].to_string().contains("onlink"), "{route}");
    let pa = cluster.add_pod(a);
    let pb = cluster.add_pod(b);
    udp_round_trip(&pa.ns, &pb.ns, pb.ip).unwrap();
    udp_round_trip(&pb.ns, &pa.ns, pa.ip).unwrap();
    // The overlay keeps pod addresses end to end.
    assert_eq!(udp_seen_source(&pa.ns, &pb.ns, pb.ip).unwrap(), pa.ip);
    cluster.del_pod(&pa);
    cluster.del_pod(&pb);
}

#[test]
fn restarting_podnetd_under_traffic_loses_no_packet() {
    let mut cluster = TestCluster::new(1, 10);
    let a = cluster.add_node(0);
    let b = cluster.add_node(0);
    converge(&cluster, 1);
    let pa = cluster.add_pod(a);
    let pb = cluster.add_pod(b);
    let routes_before = (cluster.routes(a), cluster.routes(b));

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sent, failed) = std::thread::scope(|s| {
        let traffic = s.spawn(|| {
            let (mut sent, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                if let Err(e) = udp_round_trip(&pa.ns, &pb.ns, pb.ip) {
                    failed.push(e);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (sent, failed)
        });
        for node in [a, b, a] {
            let podnet_tests::cluster::ClusterNode { daemon, ns, .. } = cluster.node_mut(node);
            daemon.kill9();
            std::thread::sleep(Duration::from_millis(200));
            // Restart on the same state, managing the same node namespace.
            daemon.restart(ns);
            std::thread::sleep(Duration::from_millis(300));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        traffic.join().unwrap()
    });
    assert!(sent > 100, "too little traffic to prove anything: {sent}");
    assert!(
        failed.is_empty(),
        "{} of {sent} round trips failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert_eq!((cluster.routes(a), cluster.routes(b)), routes_before);
    cluster.del_pod(&pa);
    cluster.del_pod(&pb);
}

#[test]
fn etcd_down_for_30_seconds_changes_nothing() {
    let mut cluster = TestCluster::new(1, 10);
    let a = cluster.add_node(0);
    let b = cluster.add_node(0);
    converge(&cluster, 1);
    let pb = cluster.add_pod(b);
    let before = (cluster.routes(a), cluster.routes(b));

    cluster.etcd.stop();
    let down_since = Instant::now();
    let mut pods = Vec::new();
    while down_since.elapsed() < Duration::from_secs(30) {
        // Routes stay, and pods are still created and reach the other node.
        assert_eq!((cluster.routes(a), cluster.routes(b)), before);
        let p = cluster.add_pod(a);
        udp_round_trip(&p.ns, &pb.ns, pb.ip).unwrap();
        pods.push(p);
        std::thread::sleep(Duration::from_secs(5));
    }
    cluster.etcd.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((cluster.routes(a), cluster.routes(b)), before);
    // And the store works again: a new node is seen by both.
    cluster.add_node(0);
    converge(&cluster, 2);
    for p in &pods {
        cluster.del_pod(p);
    }
    cluster.del_pod(&pb);
}

#[test]
fn pod_traffic_leaving_the_cluster_is_masqueraded() {
    let mut cluster = TestCluster::new(1, 5);
    let a = cluster.add_node(0);
    let b = cluster.add_node(0);
    converge(&cluster, 1);
    let pa = cluster.add_pod(a);
    let pb = cluster.add_pod(b);
    // A host on the underlay that is not a node: outside the cluster range.
    let outside = TestNetns::new("out");
    cluster.attach_host(&outside, 0, "192.168.60.200");
    let seen = udp_seen_source(&pa.ns, &outside, "192.168.60.200".parse().unwrap()).unwrap();
    assert_eq!(
        seen,
        cluster.node(a).ip,
        "leaving the cluster: the node's address"
    );
    let seen = udp_seen_source(&pa.ns, &pb.ns, pb.ip).unwrap();
    assert_eq!(seen, pa.ip, "inside the cluster: the pod's own address");
    cluster.del_pod(&pa);
    cluster.del_pod(&pb);
}

/// The whole HTTP reply to `GET path`: status line, headers, body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn scrape(addr: &str) -> String {
    http_get(addr, "/metrics")
}

/// The status code of an HTTP reply.
fn status(reply: &str) -> &str {
    reply.split_whitespace().nth(1).unwrap_or("")
}

/// Restarts `node`'s daemon with its HTTP endpoints on loopback; returns
/// their address.
fn serve_endpoints(cluster: &mut TestCluster, node: usize) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let podnet_tests::cluster::ClusterNode { daemon, ns, .. } = cluster.node_mut(node);
    daemon.stop();
    daemon.opts.metrics_addr = Some(addr.clone());
    daemon.restart(ns);
    addr
}

#[test]
fn metrics_report_peers_routes_pool_and_plugin_latencies() {
    let mut cluster = TestCluster::new(1, 5);
    let a = cluster.add_node(0);
    let b = cluster.add_node(0);
    converge(&cluster, 1);
    let addr = serve_endpoints(&mut cluster, a);
    let pod = cluster.add_pod(a);
    let _other = cluster.add_pod(b);
    // The plugin's report of its ADD is sent without waiting for podnetd.
    eventually(
        Duration::from_secs(10),
        "peers, routes and the ADD in the metrics",
        || {
            let m = scrape(&addr);
            m.contains("podnet_peers 1")
                && m.contains("podnet_routes 1")
                && m.contains("podnet_cni_duration_seconds_count{verb=\"ADD\"} 1")
        },
    );
    let m = scrape(&addr);
    for want in [
        "podnet_ipam_allocations_total 1",
        "podnet_cni_duration_seconds_count{verb=\"ADD\"} 1",
        "podnet_ipam_pool_used{range=\"",
        "podnet_reconcile_duration_seconds_count",
    ] {
        assert!(m.contains(want), "missing {want} in:\n{m}");
    }
    cluster.del_pod(&pod);
    eventually(Duration::from_secs(10), "the DEL in the metrics", || {
        scrape(&addr).contains("podnet_cni_duration_seconds_count{verb=\"DEL\"} 1")
    });
}

#[test]
fn readyz_is_not_ready_while_etcd_is_down() {
    let mut cluster = TestCluster::new(1, 10);
    let a = cluster.add_node(0);
    converge(&cluster, 0);
    let addr = serve_endpoints(&mut cluster, a);
    let ready = |addr: &str| status(&http_get(addr, "/readyz")) == "200";
    eventually(Duration::from_secs(10), "ready after start", || {
        ready(&addr)
    });
    assert!(http_get(&addr, "/healthz").contains("\r\n\r\nok\n"));

    cluster.etcd.stop();
    eventually(Duration::from_secs(10), "not ready with etcd down", || {
        !ready(&addr)
    });
    let reply = http_get(&addr, "/readyz");
    assert_eq!(status(&reply), "503", "{reply}");
    assert!(reply.contains("not ready: cluster store: "), "{reply}");
    // Only the store: the node CIDR, the conflist and the database hold.
    assert_eq!(reply.matches("not ready:").count(), 1, "{reply}");
    // Alive all the same: a liveness probe must not restart it for this.
    assert_eq!(status(&http_get(&addr, "/healthz")), "200");

    cluster.etcd.restart();
    eventually(
        Duration::from_secs(15),
        "ready again with etcd back",
        || ready(&addr),
    );
}

#[test]
fn bad_daemon_configuration_is_a_clear_error_at_start() {
    let podnetd = podnet_tests::bins::workspace_bin("podnetd");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().display().to_string();
    // A node namespace of its own: were a bad flag ever accepted, the daemon
    // would still never touch the machine's own namespace.
    let node = TestNetns::new("n");
    let netns = node.path().display().to_string();
    for (args, says) in [
        (vec!["--cluster-cidr", "10.0.0.0/8,10.1.0.0/16"], "overlap"),
        (vec!["--max-pods", "0"], "max"),
        (vec!["--cluster-cidr", "10.0.0.0/33"], "cluster-cidr"),
        (vec!["--store", "etcd"], "etcd"),
        (vec!["--store", "nosuch"], "store"),
    ] {
        let out = std::process::Command::new(&podnetd)
            .arg("run")
            .args(&args)
            .args([
                "--node-name",
                "n",
                "--state-dir",
                &state,
                "--run-dir",
                &state,
                "--cni-conf-dir",
                &state,
                "--netns",
                &netns,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // Nothing was written: no configuration for the runtime to pick up.
    assert!(!dir.path().join("10-podnet.conflist").exists());
}
