//! The demo: a three-node cluster on this one machine. Nodes are network
//! namespaces on an underlay, each with its podnetd; etcd on loopback is
//! the shared store. Pods on every node, an all-pairs connectivity table,
//! and everything removed at exit (also on Ctrl-C).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use podnet_tests::cluster::{Pod, TestCluster};
use podnet_tests::net::udp_round_trip;

const NODES: usize = 3;
const PODS_PER_NODE: usize = 2;

fn main() -> ExitCode {
    podnet_tests::cleanup::on_signal_clean_up("podnet-demo");
    let started = Instant::now();
    let mut cluster = TestCluster::new(1, 10);
    println!(
        "etcd at {} (loopback); underlay 192.168.60.0/24",
        cluster.etcd.endpoint()
    );
    for _ in 0..NODES {
        cluster.add_node(0);
    }
    if !routes_converge(&cluster) {
        eprintln!("routes did not converge");
        return ExitCode::FAILURE;
    }
    show_nodes(&cluster);
    let mut pods: Vec<Pod> = Vec::new();
    for node in 0..NODES {
        for _ in 0..PODS_PER_NODE {
            pods.push(cluster.add_pod(node));
        }
    }
    println!("\n{:<8} {:<8} address", "pod", "node");
    for p in &pods {
        println!("{:<8} node-{:<3} {}", p.id, p.node, p.ip);
    }
    let failures = connectivity_matrix(&pods);
    for p in &pods {
        cluster.del_pod(p);
    }
    let pairs = pods.len() * (pods.len() - 1);
    drop(pods);
    drop(cluster);
    println!(
        "\ncleaned up: pods, nodes, daemons and etcd removed ({:.1} s in all)",
        started.elapsed().as_secs_f64()
    );
    if failures == 0 {
        println!("all {pairs} pod pairs reached each other across {NODES} nodes");
        ExitCode::SUCCESS
    } else {
        println!("{failures} of {pairs} pairs failed");
        ExitCode::FAILURE
    }
}

/// Every node has a route to every other node's pods, within 10 s.
fn routes_converge(cluster: &TestCluster) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster
        .live_nodes()
        .all(|(i, _)| cluster.routes(i).len() == NODES - 1)
    {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn show_nodes(cluster: &TestCluster) {
    println!(
        "\n{:<8} {:<16} routes to the other nodes' pods",
        "node", "underlay"
    );
    for (i, n) in cluster.live_nodes() {
        println!(
            "{:<8} {:<16} {}",
            n.name,
            n.ip.to_string(),
            cluster.routes(i).join(", ")
        );
    }
}

/// A UDP round trip between every ordered pair of pods, printed as a
/// matrix; returns the number of pairs that failed.
fn connectivity_matrix(pods: &[Pod]) -> usize {
    println!("\nconnectivity (UDP round trip between pods):");
    print!("{:>8}", "");
    for p in pods {
        print!("{:>7}", p.id);
    }
    println!();
    let mut failures = 0;
    for a in pods {
        print!("{:>8}", a.id);
        for b in pods {
            let mark = if a.id == b.id {
                "-"
            } else if udp_round_trip(&a.ns, &b.ns, b.ip).is_ok() {
                "ok"
            } else {
                failures += 1;
                "FAIL"
            };
            print!("{mark:>7}");
        }
        println!();
    }
    failures
}
