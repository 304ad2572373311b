//! The single-node demo: a node namespace, a few pods wired by podnet,
//! an all-pairs connectivity table, and full cleanup at exit.

use std::net::IpAddr;
use std::process::ExitCode;

use podnet_tests::net::udp_round_trip;
use podnet_tests::netns::TestNetns;
use podnet_tests::node::TestNode;

const PODS: usize = 4;

fn main() -> ExitCode {
    let node = TestNode::new(100);
    let conf = node.conf("1.0.0");
    println!(
        "node namespace {} (bridge podnet0, pods in {} and {})",
        node.ns.name(),
        node.subnet4(),
        node.subnet6()
    );
    let pods: Vec<TestNetns> = (0..PODS).map(|_| TestNetns::new("demo")).collect();
    let mut addrs: Vec<(IpAddr, IpAddr)> = Vec::new();
    println!("\n{:<22} {:<16} {:<24} host veth", "pod", "IPv4", "IPv6");
    for (i, pod) in pods.iter().enumerate() {
        let r = node.add(pod, &format!("demo{i}"), &conf);
        let ip = |k: usize| -> IpAddr {
            let cidr = r["ips"][k]["address"].as_str().unwrap_or_default();
            cidr.split('/')
                .next()
                .unwrap_or_default()
                .parse()
                .unwrap_or(IpAddr::from([0, 0, 0, 0]))
        };
        addrs.push((ip(0), ip(1)));
        println!(
            "{:<22} {:<16} {:<24} {}",
            pod.name(),
            ip(0).to_string(),
            ip(1).to_string(),
            r["interfaces"][0]["name"].as_str().unwrap_or_default()
        );
    }

    println!("\nconnectivity (UDP round trip, IPv4/IPv6):");
    print!("{:>8}", "");
    for j in 0..PODS {
        print!("{:>10}", format!("pod{j}"));
    }
    println!();
    let mut failures = 0;
    for (i, from) in pods.iter().enumerate() {
        print!("{:>8}", format!("pod{i}"));
        for (j, to) in pods.iter().enumerate() {
            if i == j {
                print!("{:>10}", "-");
                continue;
            }
            let v4 = udp_round_trip(from, to, addrs[j].0).is_ok();
            let v6 = udp_round_trip(from, to, addrs[j].1).is_ok();
            failures += usize::from(!v4) + usize::from(!v6);
            let mark = |ok: bool| if ok { "ok" } else { "FAIL" };
            print!("{:>10}", format!("{}/{}", mark(v4), mark(v6)));
        }
        println!();
    }

    for (i, pod) in pods.iter().enumerate() {
        node.del(Some(pod), &format!("demo{i}"), &conf);
    }
    let leftover = node.host_veths().len() + node.reserved("podnet").len();
    println!(
        "\ncleanup: {} veths and {} addresses left",
        node.host_veths().len(),
        node.reserved("podnet").len()
    );
    // Namespaces are removed as `pods` and `node` drop.
    if failures == 0 && leftover == 0 {
        println!("all {} pairs reached each other", PODS * (PODS - 1));
        ExitCode::SUCCESS
    } else {
        println!("{failures} failed round trips");
        ExitCode::FAILURE
    }
}
