//! ADD, CHECK and DEL of the real `podnet` binary against namespaces the
//! test creates: what ends up in the pod, on the node, and in IPAM.

use podnet_tests::net::udp_round_trip;
use podnet_tests::netns::TestNetns;
use podnet_tests::node::{path_str, TestNode};
use serde_json::{json, Value};

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

#[test]
fn add_check_del_dual_stack() {
    let node = TestNode::new(1);
    let pod = TestNetns::new("pod");
    let conf = node.conf("1.0.0");

    let result = node.add(&pod, "ctr-a", &conf);

    // The result, spec-exact for 1.0.0.
    assert_eq!(result["cniVersion"], "1.0.0");
    let ifs = result["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 2);
    let host_veth = ifs[0]["name"].as_str().unwrap().to_string();
    assert!(host_veth.starts_with("pn") && host_veth.len() <= 15);
    assert!(ifs[0].get("sandbox").is_none());
    assert_eq!(ifs[1]["name"], "eth0");
    assert_eq!(ifs[1]["sandbox"], path_str(pod.path()));
    let ips = result["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2);
    assert!(ips
        .iter()
        .all(|ip| ip["interface"] == 1 && ip.get("version").is_none()));
    let v4 = ips[0]["address"].as_str().unwrap();
    let v6 = ips[1]["address"].as_str().unwrap();
    assert!(v4.starts_with("10.244.1.") && v4.ends_with("/24"), "{v4}");
    assert!(
        v6.starts_with("fd00:10:244:1::") && v6.ends_with("/64"),
        "{v6}"
    );
    assert_eq!(ips[0]["gateway"], "10.244.1.1");
    assert_eq!(ips[1]["gateway"], "fd00:10:244:1::1");

    // What is really in the pod: the addresses, up, and default routes.
    let mut in_pod = pod.addresses("eth0");
    in_pod.sort();
    let mut want = vec![v4.to_string(), v6.to_string()];
    want.sort();
    assert_eq!(in_pod, want);
    let link = &pod.ip_json(&["link", "show", "eth0"])[0];
    assert_eq!(link["operstate"], "UP");
    assert_eq!(link["address"], ifs[1]["mac"]);
    assert_eq!(
        pod.ip_json(&["route", "show", "default"])[0]["gateway"],
        "10.244.1.1"
    );
    assert_eq!(
        pod.ip_json(&["-6", "route", "show", "default"])[0]["gateway"],
        "fd00:10:244:1::1"
    );
    // IPv6 usable at once: no DAD, so the address is not tentative.
    let v6_flags = pod.ip(&["-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    assert!(!v6_flags.contains("tentative"), "{v6_flags}");
    // The link-local address the kernel makes by default from the MAC
    // (modified EUI-64), and no other; podnet's (nodad), not the kernel's.
    let mac: Vec<u8> = ifs[1]["mac"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|o| u8::from_str_radix(o, 16).unwrap())
        .collect();
    let eui = std::net::Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    let link_local = pod.ip(&["-6", "addr", "show", "dev", "eth0", "scope", "link"]);
    assert_eq!(link_local.matches("inet6").count(), 1, "{link_local}");
    assert!(
        link_local.contains(&format!("inet6 {eui}/64")),
        "{link_local}"
    );
    assert!(link_local.contains("nodad"), "{link_local}");

    // On the node: the veth on the bridge, the bridge holding the gateways.
    let host = &node.ns.ip_json(&["link", "show", &host_veth])[0];
    assert_eq!(host["master"], "podnet0");
    assert_eq!(host["address"], ifs[0]["mac"]);
    // A bridge port with no IP address, not even link-local (the pod end
    // is up, so the kernel would have made one by now): it has no address
    // to announce to the bridge's other pods.
    let details = node.ns.ip(&["-d", "link", "show", &host_veth]);
    assert!(details.contains("addrgenmode none"), "{details}");
    let addrs = node.ns.ip(&["addr", "show", "dev", &host_veth]);
    assert!(!addrs.contains("inet"), "{addrs}");
    let mut gws = node.ns.addresses("podnet0");
    gws.sort();
    assert_eq!(gws, vec!["10.244.1.1/24", "fd00:10:244:1::1/64"]);
    assert_eq!(node.reserved("podnet").len(), 2);

    // CHECK right after ADD passes.
    let check = with_prev(&conf, &result);
    node.podnet("CHECK", "ctr-a", Some(&path_str(pod.path())), &check)
        .ok();

    // DEL removes both ends and releases both addresses.
    node.del(Some(&pod), "ctr-a", &conf);
    assert!(node.host_veths().is_empty(), "{:?}", node.host_veths());
    assert!(!pod.link_names().contains(&"eth0".to_string()));
    assert!(
        node.reserved("podnet").is_empty(),
        "{:?}",
        node.reserved("podnet")
    );
}

#[test]
fn check_names_what_is_missing() {
    let node = TestNode::new(2);
    let pod = TestNetns::new("pod");
    let conf = node.conf("1.0.0");
    let result = node.add(&pod, "ctr-c", &conf);
    let check = with_prev(&conf, &result);
    let netns = path_str(pod.path());

    // Remove the IPv6 default route: CHECK must say so.
    pod.ip(&["-6", "route", "del", "default"]);
    let err = node.podnet("CHECK", "ctr-c", Some(&netns), &check).err();
    assert_eq!(err["code"], 103);
    assert!(err["msg"].as_str().unwrap().contains("route ::/0"), "{err}");

    // Remove an address.
    let v4 = result["ips"][0]["address"].as_str().unwrap();
    pod.ip(&["addr", "del", v4, "dev", "eth0"]);
    let err = node.podnet("CHECK", "ctr-c", Some(&netns), &check).err();
    assert!(err["msg"].as_str().unwrap().contains(v4), "{err}");

    // Detach the host veth from the bridge.
    let host_veth = result["interfaces"][0]["name"].as_str().unwrap();
    node.ns.ip(&["link", "set", host_veth, "nomaster"]);
    pod.ip(&["addr", "add", v4, "dev", "eth0"]);
    pod.ip(&["route", "replace", "default", "via", "10.244.2.1"]);
    pod.ip(&["-6", "route", "add", "default", "via", "fd00:10:244:2::1"]);
    let err = node.podnet("CHECK", "ctr-c", Some(&netns), &check).err();
    assert!(
        err["msg"].as_str().unwrap().contains("not attached"),
        "{err}"
    );

    // CHECK without prevResult is a config error.
    let err = node.podnet("CHECK", "ctr-c", Some(&netns), &conf).err();
    assert_eq!(err["code"], 7);

    node.del(Some(&pod), "ctr-c", &conf);
}

#[test]
fn results_in_every_version() {
    let node = TestNode::new(3);
    for (i, version) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"].iter().enumerate() {
        let pod = TestNetns::new("pod");
        let conf = node.conf(version);
        let id = format!("ver{i}");
        let result = node.add(&pod, &id, &conf);
        assert_eq!(result["cniVersion"], *version);
        let ips = result["ips"].as_array().unwrap();
        let legacy = version.starts_with("0.");
        for ip in ips {
            let fam = if ip["address"].as_str().unwrap().contains(':') {
                "6"
            } else {
                "4"
            };
            if legacy {
                assert_eq!(ip["version"], fam, "{version}: {result}");
            } else {
                assert!(ip.get("version").is_none(), "{version}: {result}");
            }
        }
        // No 1.1-only fields below 1.1.
        assert!(
            result["interfaces"][1].get("mtu").is_none(),
            "{version}: {result}"
        );
        if *version == "0.4.0" || *version == "1.0.0" {
            node.podnet(
                "CHECK",
                &id,
                Some(&path_str(pod.path())),
                &with_prev(&conf, &result),
            )
            .ok();
        }
        node.del(Some(&pod), &id, &conf);
    }
    assert!(node.reserved("podnet").is_empty());
}

#[test]
fn version_1_1_result_through_a_1_1_ipam() {
    let node = TestNode::new(4);
    let pod = TestNetns::new("pod");
    let mut conf = node.conf("1.1.0");
    conf["ipam"]["type"] = json!("ipam-shim");
    conf["mtu"] = json!(1400);
    let result = node.add(&pod, "ctr-11", &conf);
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(result["interfaces"][0]["mtu"], 1400);
    assert_eq!(result["interfaces"][1]["mtu"], 1400);
    let link = &pod.ip_json(&["link", "show", "eth0"])[0];
    assert_eq!(link["mtu"], 1400);
    node.podnet(
        "CHECK",
        "ctr-11",
        Some(&path_str(pod.path())),
        &with_prev(&conf, &result),
    )
    .ok();
    node.del(Some(&pod), "ctr-11", &conf);
    assert!(node.reserved("podnet").is_empty());
}

#[test]
fn two_pods_on_one_bridge_exchange_packets() {
    let node = TestNode::new(5);
    let (a, b) = (TestNetns::new("pod"), TestNetns::new("pod"));
    let conf = node.conf("1.0.0");
    let ra = node.add(&a, "ctr-pa", &conf);
    let rb = node.add(&b, "ctr-pb", &conf);
    let ip = |r: &Value, i: usize| -> std::net::IpAddr {
        let cidr = r["ips"][i]["address"].as_str().unwrap();
        cidr.split('/').next().unwrap().parse().unwrap()
    };
    for fam in [0, 1] {
        udp_round_trip(&a, &b, ip(&rb, fam)).unwrap();
        udp_round_trip(&b, &a, ip(&ra, fam)).unwrap();
    }
    // The node reaches its pods through the bridge gateway, too.
    udp_round_trip(&node.ns, &a, ip(&ra, 0)).unwrap();

    // After DEL, b is unreachable: the test above could fail.
    node.del(Some(&b), "ctr-pb", &conf);
    assert!(udp_round_trip(&a, &b, ip(&rb, 0)).is_err());
    node.del(Some(&a), "ctr-pa", &conf);
}

#[test]
fn hundred_pods_distinct_addresses_all_removed() {
    let node = TestNode::new(6);
    let conf = node.conf("1.0.0");
    let pods: Vec<TestNetns> = (0..100).map(|_| TestNetns::new("p")).collect();
    // Four at a time, as a runtime starting many pods would.
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .chunks(25)
            .enumerate()
            .map(|(c, chunk)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, pod)| node.add(pod, &format!("h{c}-{i}"), conf))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut v4: Vec<String> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    v4.sort();
    v4.dedup();
    assert_eq!(v4.len(), 100, "distinct IPv4 addresses");
    assert_eq!(node.host_veths().len(), 100);
    for (pod, r) in pods.iter().zip(&results) {
        let want = r["ips"][0]["address"].as_str().unwrap().to_string();
        assert!(pod.addresses("eth0").contains(&want));
    }
    std::thread::scope(|s| {
        for (c, chunk) in pods.chunks(25).enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || {
                for (i, pod) in chunk.iter().enumerate() {
                    node.del(Some(pod), &format!("h{c}-{i}"), conf);
                }
            });
        }
    });
    assert!(node.host_veths().is_empty());
    assert!(node.reserved("podnet").is_empty());
}

#[test]
fn del_twice_after_netns_gone_and_with_empty_netns() {
    let node = TestNode::new(7);
    let conf = node.conf("1.0.0");

    // Twice: both succeed.
    let pod = TestNetns::new("pod");
    node.add(&pod, "twice", &conf);
    node.del(Some(&pod), "twice", &conf);
    node.del(Some(&pod), "twice", &conf);

    // After the pod's namespace is gone: the address is still released.
    let pod = TestNetns::new("pod");
    let netns = path_str(pod.path());
    node.add(&pod, "gone", &conf);
    pod.delete();
    node.podnet("DEL", "gone", Some(&netns), &conf).ok();

    // containerd's second DEL comes with CNI_NETNS empty.
    let pod = TestNetns::new("pod");
    node.add(&pod, "empty", &conf);
    node.del(Some(&pod), "empty", &conf);
    node.podnet("DEL", "empty", Some(""), &conf).ok();
    // And with CNI_NETNS empty as the only DEL.
    let pod = TestNetns::new("pod");
    node.add(&pod, "only-empty", &conf);
    node.podnet("DEL", "only-empty", Some(""), &conf).ok();
    assert!(!pod.link_names().contains(&"eth0".to_string()));

    // DEL of something never added, and with a prevResult it cannot read.
    node.podnet("DEL", "never", None, &conf).ok();
    let mut bad_prev = conf.clone();
    bad_prev["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "nonsense"}]});
    node.podnet("DEL", "never", None, &bad_prev).ok();

    assert!(node.host_veths().is_empty());
    assert!(
        node.reserved("podnet").is_empty(),
        "{:?}",
        node.reserved("podnet")
    );
}

#[test]
fn version_verb() {
    let node = TestNode::new(8);
    let out = node.podnet("VERSION", "", None, &json!({"cniVersion": "1.0.0"}));
    let v = out.ok();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

/// An IPv4-only pod has no IPv6 address on its interface, not even
/// link-local, and neither has the host end: a new pod has no address to
/// announce to the others on the bridge. IPv4 works as ever.
#[test]
fn an_ipv4_only_pod_announces_no_ipv6_address() {
    let node = TestNode::new(12);
    let mut conf = node.conf("1.0.0");
    conf["ipam"] = node.host_local(true);
    let (a, b) = (TestNetns::new("pod"), TestNetns::new("pod"));
    let ra = node.add(&a, "ctr-v4a", &conf);
    node.add(&b, "ctr-v4b", &conf);
    // Both veths are up and carry traffic: by now the kernel would have
    // made (and announced) link-local addresses, were they to be made.
    let ip: std::net::IpAddr = ra["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    udp_round_trip(&b, &a, ip).unwrap();
    for pod in [&a, &b] {
        let addrs = pod.ip(&["addr", "show", "dev", "eth0"]);
        assert!(addrs.contains("inet 10.244.12."), "{addrs}");
        assert!(!addrs.contains("inet6"), "{addrs}");
    }
    assert_eq!(node.host_veths().len(), 2);
    for veth in node.host_veths() {
        let addrs = node.ns.ip(&["addr", "show", "dev", &veth]);
        assert!(!addrs.contains("inet"), "{addrs}");
    }
    node.del(Some(&a), "ctr-v4a", &conf);
    node.del(Some(&b), "ctr-v4b", &conf);
    assert!(node.host_veths().is_empty());
}

#[test]
fn mtu_follows_the_nodes_default_route_and_hairpin_is_set() {
    let node = TestNode::new(9);
    // The node's uplink: a veth with MTU 1300 carrying the default route.
    node.ns.ip(&[
        "link", "add", "name", "up0", "mtu", "1300", "type", "veth", "peer", "name", "up1",
    ]);
    node.ns.ip(&["addr", "add", "192.0.2.2/24", "dev", "up0"]);
    node.ns.ip(&["link", "set", "up0", "up"]);
    node.ns.ip(&["link", "set", "up1", "up"]);
    node.ns.ip(&["route", "add", "default", "via", "192.0.2.1"]);

    let pod = TestNetns::new("pod");
    let mut conf = node.conf("1.1.0");
    conf["ipam"]["type"] = json!("ipam-shim");
    conf["hairpinMode"] = json!(true);
    let result = node.add(&pod, "ctr-mtu", &conf);
    assert_eq!(pod.ip_json(&["link", "show", "eth0"])[0]["mtu"], 1300);
    assert_eq!(result["interfaces"][1]["mtu"], 1300);
    let host_veth = result["interfaces"][0]["name"].as_str().unwrap();
    let details = node.ns.ip(&["-d", "link", "show", host_veth]);
    assert!(details.contains("hairpin on"), "{details}");
    node.del(Some(&pod), "ctr-mtu", &conf);
}

/// A configuration larger than a pipe's smallest buffer still reaches the
/// IPAM plugin whole: podnet then writes it from a thread of its own
/// instead of before it goes on with the links.
#[test]
fn configuration_larger_than_a_pipe_page_reaches_the_ipam_plugin() {
    let node = TestNode::new(11);
    let pod = TestNetns::new("pod");
    let mut conf = node.conf("1.0.0");
    let search: Vec<String> = (0..400)
        .map(|i| format!("ns{i}.svc.cluster.local"))
        .collect();
    conf["dns"] = json!({"nameservers": ["10.96.0.10"], "search": search});
    assert!(conf.to_string().len() > 8192);

    let result = node.add(&pod, "ctr-big", &conf);
    assert_eq!(result["dns"]["search"].as_array().unwrap().len(), 400);
    let v4 = result["ips"][0]["address"].as_str().unwrap();
    assert!(v4.starts_with("10.244.11."), "{v4}");
    assert_eq!(pod.addresses("eth0").len(), 2);
    assert_eq!(node.reserved("podnet").len(), 2);

    node.del(Some(&pod), "ctr-big", &conf);
    assert!(node.reserved("podnet").is_empty());
    assert!(!pod.link_names().contains(&"eth0".to_string()));
}

/// `runtimeConfig.mac` in the dashed form passed validation and then failed
/// ADD (a second parser took colons only): now read once, either form.
#[test]
fn dashed_mac_from_the_runtime_is_the_pods_mac() {
    let node = TestNode::new(3);
    let pod = TestNetns::new("pod");
    let mut conf = node.conf("1.0.0");
    conf["runtimeConfig"] = json!({"mac": "02-00-00-AA-BB-CC"});
    let result = node.add(&pod, "dashed", &conf);
    assert_eq!(result["interfaces"][1]["mac"], "02:00:00:aa:bb:cc");
    let link = &pod.ip_json(&["link", "show", "dev", "eth0"])[0];
    assert_eq!(link["address"], "02:00:00:aa:bb:cc");
    node.del(Some(&pod), "dashed", &conf);
    assert!(node.host_veths().is_empty());
}
