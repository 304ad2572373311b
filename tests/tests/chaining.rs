//! podnet as the first plugin of a conflist, followed by the reference
//! portmap and bandwidth plugins, run the way libcni runs a list: ADD in
//! order with each result as the next prevResult, DEL in reverse.

use std::net::SocketAddr;

use podnet_tests::bins;
use podnet_tests::net::{tcp_exchange, tcp_listen};
use podnet_tests::netns::TestNetns;
use podnet_tests::node::{path_str, TestNode};
use serde_json::{json, Value};

/// The configuration libcni gives plugin `plugin` of the list.
fn plugin_conf(list_name: &str, version: &str, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut c = plugin.clone();
    c["name"] = json!(list_name);
    c["cniVersion"] = json!(version);
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c
}

#[test]
fn podnet_then_portmap_then_bandwidth() {
    let node = TestNode::new(30);
    bins::reference("portmap");
    bins::reference("bandwidth");
    let pod = TestNetns::new("pod");
    let netns = path_str(pod.path());
    let version = "1.0.0";
    let mut podnet = node.conf(version);
    podnet.as_object_mut().unwrap().remove("cniVersion");
    let plugins = [
        podnet,
        json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [
                {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}
            ]}
        }),
        json!({
            "type": "bandwidth",
            "capabilities": {"bandwidth": true},
            "runtimeConfig": {"bandwidth": {
                "ingressRate": 100_000_000, "ingressBurst": 1_000_000,
                "egressRate": 100_000_000, "egressBurst": 1_000_000
            }}
        }),
    ];

    let mut prev: Option<Value> = None;
    let mut results = Vec::new();
    for plugin in &plugins {
        let conf = plugin_conf("podnet", version, plugin, prev.as_ref());
        let ty = plugin["type"].as_str().unwrap();
        let path = if ty == "podnet" {
            bins::podnet()
        } else {
            bins::reference(ty)
        };
        let result = node.invoke(&path, "ADD", "chain", Some(&netns), &conf).ok();
        results.push(result.clone());
        prev = Some(result);
    }
    // prevResult passed through: the later plugins keep podnet's result
    // (bandwidth appends the ifb device it made).
    let first = &results[0];
    for later in &results[1..] {
        assert_eq!(later["ips"], first["ips"]);
        assert_eq!(later["routes"], first["routes"]);
        let ours = first["interfaces"].as_array().unwrap();
        assert_eq!(
            later["interfaces"].as_array().unwrap()[..ours.len()],
            ours[..]
        );
    }

    // portmap's DNAT really reaches the pod: node -> gateway:18080 -> pod:80.
    let listener = tcp_listen(&pod, 80);
    let gw: std::net::IpAddr = first["ips"][0]["gateway"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    tcp_exchange(&node.ns, SocketAddr::new(gw, 18080), listener).unwrap();

    // bandwidth shaped the host end of podnet's veth, found from our result.
    let host_veth = first["interfaces"][0]["name"].as_str().unwrap();
    let qdisc = node.ns.exec("tc", &["qdisc", "show", "dev", host_veth]);
    let qdisc = String::from_utf8_lossy(&qdisc.stdout);
    assert!(qdisc.contains("tbf"), "no shaping on {host_veth}: {qdisc}");

    // DEL in reverse order, each with the final result.
    let final_result = results.last().unwrap().clone();
    for plugin in plugins.iter().rev() {
        let conf = plugin_conf("podnet", version, plugin, Some(&final_result));
        let ty = plugin["type"].as_str().unwrap();
        let path = if ty == "podnet" {
            bins::podnet()
        } else {
            bins::reference(ty)
        };
        node.invoke(&path, "DEL", "chain", Some(&netns), &conf).ok();
    }
    assert!(node.host_veths().is_empty());
    assert!(node.reserved("podnet").is_empty());
    let nat = node.ns.exec("iptables", &["-t", "nat", "-S"]);
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(!nat.contains("18080"), "portmap rule left behind: {nat}");
}
