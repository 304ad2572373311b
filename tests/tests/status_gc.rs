//! STATUS and GC (CNI 1.1): forwarded to the IPAM plugin as the spec says;
//! GC removes what podnet made for attachments no longer valid.

use podnet_tests::bins;
use podnet_tests::netns::TestNetns;
use podnet_tests::node::{path_str, TestNode};
use podnet_tests::plugin::{exec, Invocation, PluginOutput};
use serde_json::{json, Value};

fn run(node: &TestNode, verb: &str, conf: &Value, env: &[(&str, &str)]) -> PluginOutput {
    let podnet = bins::podnet();
    let stdin = conf.to_string();
    exec(
        &node.ns,
        &Invocation {
            plugin: &podnet,
            command: verb,
            container_id: "",
            netns: None,
            ifname: "",
            cni_path: node.cni_path(),
            stdin: stdin.as_bytes(),
            env,
        },
    )
}

fn shim_conf(node: &TestNode) -> Value {
    let mut conf = node.conf("1.1.0");
    conf["ipam"]["type"] = json!("ipam-shim");
    conf
}

#[test]
fn status_is_the_ipam_plugins_answer() {
    let node = TestNode::new(40);
    let conf = shim_conf(&node);
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status");
    let status_env = status_file.display().to_string();
    let env = [("SHIM_STATUS", status_env.as_str())];

    let out = run(&node, "STATUS", &conf, &env);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.trim().is_empty());

    std::fs::write(&status_file, "50").unwrap();
    assert_eq!(run(&node, "STATUS", &conf, &env).err_code(), 50);
    std::fs::write(&status_file, "51").unwrap();
    assert_eq!(run(&node, "STATUS", &conf, &env).err_code(), 51);

    // Below 1.1.0 there is no STATUS.
    let mut old = conf.clone();
    old["cniVersion"] = json!("1.0.0");
    assert_eq!(run(&node, "STATUS", &old, &env).err_code(), 1);

    // An IPAM plugin that predates 1.1 (host-local 1.1.1) is not asked.
    let host_local = node.conf("1.1.0");
    assert_eq!(run(&node, "STATUS", &host_local, &[]).code, Some(0));
}

#[test]
fn gc_removes_what_is_not_valid_and_forwards() {
    let node = TestNode::new(41);
    let conf = shim_conf(&node);
    let pods: Vec<TestNetns> = (0..3).map(|_| TestNetns::new("pod")).collect();
    for (i, pod) in pods.iter().enumerate() {
        node.add(pod, &format!("gc{i}"), &conf);
    }
    assert_eq!(node.host_veths().len(), 3);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("shim.log");
    let log_env = log.display().to_string();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "gc0", "ifname": "eth0"}]);
    let out = run(&node, "GC", &gc, &[("SHIM_LOG", log_env.as_str())]);
    assert_eq!(out.code, Some(0), "{out:?}");

    // Only gc0's veth is left, and its pod still has its interface.
    let kept = podnet_cni::names::host_veth_name("gc0", "eth0");
    assert_eq!(node.host_veths(), vec![kept]);
    assert!(pods[0].link_names().contains(&"eth0".to_string()));
    assert!(!pods[1].link_names().contains(&"eth0".to_string()));

    // Forwarded to IPAM with the same valid list.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged
            .lines()
            .any(|l| l.starts_with("GC ") && l.contains("gc0")),
        "{logged}"
    );

    // Without the list GC refuses rather than removing everything.
    let out = run(&node, "GC", &conf, &[]);
    assert_eq!(out.err_code(), 7);
    assert_eq!(node.host_veths().len(), 1);

    for (i, pod) in pods.iter().enumerate() {
        node.podnet("DEL", &format!("gc{i}"), Some(&path_str(pod.path())), &conf)
            .ok();
    }
    assert!(node.reserved("podnet").is_empty());
}
