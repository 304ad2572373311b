//! Bad input gets one CNI error document on stdout, exit 1, and changes
//! nothing: no link, no address reserved.

use podnet_tests::bins;
use podnet_tests::daemon::{DaemonOpts, TestDaemon};
use podnet_tests::netns::TestNetns;
use podnet_tests::node::{path_str, TestNode};
use podnet_tests::plugin::{exec, Invocation, PluginOutput};
use serde_json::{json, Value};

/// Asserts the error code and that ADD left no trace.
fn assert_rejected(node: &TestNode, pod: &TestNetns, out: &PluginOutput, code: u64) -> Value {
    let err = out.err();
    assert_eq!(err["code"], code, "{err}");
    assert!(
        node.host_veths().is_empty(),
        "left a veth: {:?}",
        node.host_veths()
    );
    assert!(node.reserved("podnet").is_empty(), "left a reservation");
    assert!(
        !pod.link_names().contains(&"eth0".to_string()),
        "left eth0 in the pod"
    );
    err
}

fn raw_add(
    node: &TestNode,
    pod: &TestNetns,
    stdin: &[u8],
    env: &[(&str, &str)],
    ifname: &str,
) -> PluginOutput {
    let podnet = bins::podnet();
    let netns = path_str(pod.path());
    exec(
        &node.ns,
        &Invocation {
            plugin: &podnet,
            command: "ADD",
            container_id: "bad",
            netns: Some(&netns),
            ifname,
            cni_path: node.cni_path(),
            stdin,
            env,
        },
    )
}

#[test]
fn malformed_and_invalid_configuration() {
    let node = TestNode::new(20);
    let pod = TestNetns::new("pod");
    let good = node.conf("1.0.0");

    let out = raw_add(&node, &pod, b"{\"cniVersion\": \"1.0.0\", ", &[], "eth0");
    assert_rejected(&node, &pod, &out, 6);
    let out = raw_add(&node, &pod, b"", &[], "eth0");
    assert_rejected(&node, &pod, &out, 6);

    let mut c = good.clone();
    c["cniVersion"] = json!("9.9.9");
    let err = assert_rejected(
        &node,
        &pod,
        &raw_add(&node, &pod, c.to_string().as_bytes(), &[], "eth0"),
        1,
    );
    assert!(err["msg"].as_str().unwrap().contains("9.9.9"));

    let mut c = good.clone();
    c["hairpinmode"] = json!(true);
    let err = assert_rejected(
        &node,
        &pod,
        &raw_add(&node, &pod, c.to_string().as_bytes(), &[], "eth0"),
        2,
    );
    assert!(err["msg"].as_str().unwrap().contains("hairpinmode"));

    for (key, value) in [
        ("bridge", json!("a/b")),
        ("bridge", json!("much-too-long-name")),
        ("mtu", json!(0)),
        ("name", json!("")),
    ] {
        let mut c = good.clone();
        c[key] = value;
        assert_rejected(
            &node,
            &pod,
            &raw_add(&node, &pod, c.to_string().as_bytes(), &[], "eth0"),
            7,
        );
    }
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("ipam");
    assert_rejected(
        &node,
        &pod,
        &raw_add(&node, &pod, c.to_string().as_bytes(), &[], "eth0"),
        7,
    );

    // A namespaced key a tool added is accepted.
    let mut c = good.clone();
    c["example.com/annotation"] = json!("x");
    let out = raw_add(&node, &pod, c.to_string().as_bytes(), &[], "eth0");
    out.ok();
    node.del(Some(&pod), "bad", &good);
}

#[test]
fn bad_environment() {
    let node = TestNode::new(21);
    let pod = TestNetns::new("pod");
    let conf = node.conf("1.0.0").to_string();
    let stdin = conf.as_bytes();

    for ifname in ["sixteen-bytes-xx", "a/b", "", "with space", "."] {
        let out = raw_add(&node, &pod, stdin, &[], ifname);
        assert_rejected(&node, &pod, &out, 4);
    }

    // Missing variables: run with CNI_NETNS unset.
    let podnet = bins::podnet();
    let out = exec(
        &node.ns,
        &Invocation {
            plugin: &podnet,
            command: "ADD",
            container_id: "bad",
            netns: None,
            ifname: "eth0",
            cni_path: node.cni_path(),
            stdin,
            env: &[],
        },
    );
    let err = assert_rejected(&node, &pod, &out, 4);
    assert!(err["msg"].as_str().unwrap().contains("CNI_NETNS"));

    let out = raw_add(&node, &pod, stdin, &[("CNI_COMMAND", "FROB")], "eth0");
    assert_rejected(&node, &pod, &out, 4);
    let out = raw_add(&node, &pod, stdin, &[("CNI_CONTAINERID", "-x")], "eth0");
    assert_rejected(&node, &pod, &out, 4);
}

#[test]
fn bad_network_namespaces() {
    let node = TestNode::new(22);
    let pod = TestNetns::new("pod");
    let conf = node.conf("1.0.0");

    // Missing: the container is unknown (3).
    let out = node.podnet("ADD", "bad", Some("/run/netns/pnt-does-not-exist"), &conf);
    assert_rejected(&node, &pod, &out, 3);

    // A regular file, and a namespace of another type: not a network namespace (4).
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = node.podnet("ADD", "bad", Some(&path_str(file.path())), &conf);
    let err = assert_rejected(&node, &pod, &out, 4);
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("not a network namespace"),
        "{err}"
    );
    let out = node.podnet("ADD", "bad", Some("/proc/self/ns/uts"), &conf);
    assert_rejected(&node, &pod, &out, 4);

    // A FIFO: opening it for reading would wait for a writer forever. If
    // the plugin blocks, a writer turns up after 3 s to free it, and the
    // time it took fails the test.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (out, took) = std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::unix::fs::OpenOptionsExt;
            std::thread::sleep(std::time::Duration::from_secs(3));
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(nix::libc::O_NONBLOCK)
                    .open(&fifo);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        let started = std::time::Instant::now();
        let out = node.podnet("ADD", "bad", Some(&path_str(&fifo)), &conf);
        let took = started.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, took)
    });
    assert!(
        took < std::time::Duration::from_secs(2),
        "ADD on a FIFO took {took:?}"
    );
    assert_rejected(&node, &pod, &out, 4);

    // The node's own namespace is never a pod's.
    let own = format!("/run/netns/{}", node.ns.name());
    let out = node.podnet("ADD", "bad", Some(&own), &conf);
    assert_rejected(&node, &pod, &out, 4);
}

#[test]
fn interface_already_in_the_pod() {
    let node = TestNode::new(23);
    let pod = TestNetns::new("pod");
    let conf = node.conf("1.0.0");
    pod.ip(&[
        "link", "add", "name", "eth0", "type", "veth", "peer", "name", "other",
    ]);
    let out = node.podnet("ADD", "bad", Some(&path_str(pod.path())), &conf);
    let err = out.err();
    assert_eq!(err["code"], 101, "{err}");
    assert!(node.host_veths().is_empty());
    assert!(node.reserved("podnet").is_empty());
    // The pod's own interface is untouched.
    assert!(pod.link_names().contains(&"eth0".to_string()));
    assert!(pod.link_names().contains(&"other".to_string()));
}

#[test]
fn ipam_failure_leaves_nothing() {
    let node = TestNode::new(24);
    let pod = TestNetns::new("pod");
    let mut conf = node.conf("1.0.0");
    // A /30 has one usable host address after the gateway: the second ADD exhausts it.
    conf["ipam"]["ranges"] = json!([[{"subnet": "10.244.24.0/30"}]]);
    let first = TestNetns::new("pod");
    node.add(&first, "first", &conf);
    let out = node.podnet("ADD", "bad", Some(&path_str(pod.path())), &conf);
    let err = out.err();
    assert!(err["msg"].as_str().unwrap().contains("IPAM"), "{err}");
    assert!(!pod.link_names().contains(&"eth0".to_string()));
    assert_eq!(node.host_veths().len(), 1);
    node.del(Some(&first), "first", &conf);
    assert!(node.reserved("podnet").is_empty());

    // An IPAM plugin that is not installed.
    conf["ipam"]["type"] = json!("no-such-ipam");
    let out = node.podnet("ADD", "bad", Some(&path_str(pod.path())), &conf);
    assert_rejected(&node, &pod, &out, 102);

    // An IPAM plugin whose answer holds an address that is none: its
    // failure (102), not a decode error of podnet's input (6).
    let answer = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        answer.path(),
        r#"{"cniVersion": "1.1.0", "ips": [{"address": "10.244.24.300/24"}]}"#,
    )
    .unwrap();
    let mut conf = node.conf("1.1.0");
    conf["ipam"]["type"] = json!("ipam-shim");
    let result_file = path_str(answer.path());
    let out = raw_add(
        &node,
        &pod,
        conf.to_string().as_bytes(),
        &[("SHIM_ADD_RESULT", &result_file)],
        "eth0",
    );
    assert_rejected(&node, &pod, &out, 102);
}

/// A failure after IPAM answered and the veth was wired (here the kernel
/// refuses IPAM's route through a gateway off the pod's subnet) is rolled
/// back once: the veth goes and IPAM is told to release. When that release
/// fails too, the reply keeps the first failure's code and message and
/// names the rollback's failure in its details.
#[test]
fn late_failure_rolls_back_what_add_made() {
    let node = TestNode::new(27);
    let pod = TestNetns::new("pod");
    let answer = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        answer.path(),
        r#"{"cniVersion": "1.1.0", "ips": [{"address": "10.244.27.7/24"}],
            "routes": [{"dst": "192.0.2.0/24", "gw": "198.51.100.1"}]}"#,
    )
    .unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let (answer_path, log_path) = (path_str(answer.path()), path_str(log.path()));
    let mut conf = node.conf("1.1.0");
    conf["ipam"]["type"] = json!("ipam-shim");
    let stdin = conf.to_string();
    let env = [
        ("SHIM_ADD_RESULT", answer_path.as_str()),
        ("SHIM_LOG", log_path.as_str()),
    ];
    let out = raw_add(&node, &pod, stdin.as_bytes(), &env, "eth0");
    let err = assert_rejected(&node, &pod, &out, 100);
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("ip route add 192.0.2.0/24"),
        "{err}"
    );
    let calls = std::fs::read_to_string(log.path()).unwrap();
    let verbs: Vec<&str> = calls.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(verbs, ["ADD", "DEL"], "IPAM calls: {calls}");

    let mut env = env.to_vec();
    env.push(("SHIM_DEL_FAILS", "1"));
    let out = raw_add(&node, &pod, stdin.as_bytes(), &env, "eth0");
    let err = assert_rejected(&node, &pod, &out, 100);
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("ip route add 192.0.2.0/24"),
        "{err}"
    );
    let details = err["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("rolling back left something behind")
            && details.contains("IPAM store unavailable"),
        "{err}"
    );
}

/// What only ADD's IPAM reads never stands in DEL's way: a malformed
/// `args.cni.ips` is not read at DEL, and an `ipam` section this binary
/// refuses still lets DEL remove the links (its error is the answer, so
/// the runtime retries).
#[test]
fn del_removes_what_it_can_past_what_only_add_reads() {
    let node = TestNode::new(28);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let conf = daemon.net_conf("1.0.0");
    let held = |id: &str| {
        daemon
            .client()
            .call(&podnet_ipam::proto::Request::Check {
                key: podnet_ipam::AttachmentKey {
                    container_id: id.into(),
                    ifname: "eth0".into(),
                },
            })
            .map(|r| !matches!(r, podnet_ipam::proto::Response::Unknown))
            .unwrap()
    };

    let pod = TestNetns::new("pod");
    node.add(&pod, "c1", &conf);
    let mut bad_args = conf.clone();
    bad_args["args"] = json!({"cni": {"ips": ["not-an-address"]}});
    node.del(Some(&pod), "c1", &bad_args);
    assert!(
        node.host_veths().is_empty(),
        "DEL left {:?}",
        node.host_veths()
    );
    assert!(!held("c1"), "DEL left the address in podnetd");

    let pod = TestNetns::new("pod");
    node.add(&pod, "c2", &conf);
    let mut bad_ipam = conf.clone();
    bad_ipam["ipam"]["subnet"] = json!("10.0.0.0/8");
    let out = node.podnet("DEL", "c2", Some(&path_str(pod.path())), &bad_ipam);
    let err = out.err();
    assert_eq!(err["code"], 2, "{err}");
    assert!(
        node.host_veths().is_empty(),
        "DEL left {:?}",
        node.host_veths()
    );
    assert!(!pod.link_names().contains(&"eth0".to_string()));
    // The section's error is the answer: the runtime retries, with the
    // configuration it can read, and the address comes back then.
    assert!(held("c2"));
    node.del(Some(&pod), "c2", &conf);
    assert!(!held("c2"));
}

/// Arbitrary bytes on stdin: never a panic, always exactly one document.
#[test]
fn no_panic_on_any_input() {
    let node = TestNode::new(25);
    let pod = TestNetns::new("pod");
    let good = node.conf("1.0.0").to_string();
    let mut inputs: Vec<Vec<u8>> = vec![
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"x\"".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{\"cniVersion\":1}".to_vec(),
        b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"podnet\",\"ipam\":{\"type\":\"host-local\"},\"prevResult\":{\"ips\":[{\"address\":\"1.2.3.4/99\"}]}}".to_vec(),
        b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"podnet\",\"ipam\":{\"type\":\"../../bin/sh\"}}".to_vec(),
        b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"podnet\",\"ipam\":{\"type\":\"host-local\"},\"runtimeConfig\":{\"mac\":\"zz\"}}".to_vec(),
    ];
    // Every truncation of a valid config, byte by byte from the end.
    let bytes = good.as_bytes();
    inputs.extend((1..bytes.len()).step_by(7).map(|n| bytes[..n].to_vec()));
    for input in &inputs {
        for verb in ["ADD", "CHECK", "DEL", "STATUS", "GC", "VERSION"] {
            let out = raw_add(&node, &pod, input, &[("CNI_COMMAND", verb)], "eth0");
            assert!(
                matches!(out.code, Some(0) | Some(1)),
                "{verb} {:?}: exit {:?} stderr {}",
                String::from_utf8_lossy(input),
                out.code,
                out.stderr
            );
            if out.code == Some(1) {
                out.err();
            }
        }
    }
    assert!(node.host_veths().is_empty());
    assert!(node.reserved("n").is_empty());
}

/// Every CNI variable and configuration field podnet reads, with invalid,
/// oversized, traversal and odd-byte values: each answered with the code
/// README documents, and nothing left behind.
#[test]
fn hostile_input_table() {
    let node = TestNode::new(25);
    let pod = TestNetns::new("pod");
    let good = node.conf("1.0.0");
    let long_id = "c".repeat(5000);

    // (what, environment overrides, ifname, expected code)
    type EnvCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u64);
    let env_cases: &[EnvCase] = &[
        ("ifname traversal", &[], "../x", 4),
        ("ifname colon", &[], "eth0:0", 4),
        ("ifname 0xA0 inside a UTF-8 character", &[], "e\u{e0}", 4),
        (
            "ifname 16 bytes of UTF-8",
            &[],
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            4,
        ),
        ("ifname tab", &[], "eth\t0", 4),
        (
            "container id traversal",
            &[("CNI_CONTAINERID", "../../x")],
            "eth0",
            4,
        ),
        (
            "container id with a space",
            &[("CNI_CONTAINERID", "a b")],
            "eth0",
            4,
        ),
        (
            "container id odd bytes",
            &[("CNI_CONTAINERID", "caf\u{e9}")],
            "eth0",
            4,
        ),
        (
            "netns traversal to a file",
            &[("CNI_NETNS", "/run/netns/../../etc/passwd")],
            "eth0",
            4,
        ),
        ("netns a directory", &[("CNI_NETNS", "/run")], "eth0", 4),
        ("netns a device", &[("CNI_NETNS", "/dev/null")], "eth0", 4),
        (
            "netns missing",
            &[("CNI_NETNS", "/run/netns/../netns/pnt-nope")],
            "eth0",
            3,
        ),
        ("command unknown", &[("CNI_COMMAND", "add")], "eth0", 4),
        (
            "command oversized",
            &[("CNI_COMMAND", &"A".repeat(10_000))],
            "eth0",
            4,
        ),
    ];
    for (what, env, ifname, code) in env_cases {
        let out = raw_add(&node, &pod, good.to_string().as_bytes(), env, ifname);
        let err = out.err();
        assert_eq!(err["code"], *code, "{what}: {err}");
        assert_rejected(&node, &pod, &out, *code);
    }

    // (what, field, value, expected code)
    let conf_cases: Vec<(&str, &str, Value, u64)> = vec![
        ("version not a string", "cniVersion", json!(1), 7),
        ("version unknown", "cniVersion", json!("1.1.0/../0.1"), 1),
        ("name traversal", "name", json!("../x"), 7),
        ("bridge traversal", "bridge", json!(".."), 7),
        ("bridge odd byte", "bridge", json!("br\u{e0}"), 7),
        ("bridge 16 bytes", "bridge", json!("\u{e9}".repeat(8)), 7),
        ("mtu negative", "mtu", json!(-1), 7),
        ("mtu a string", "mtu", json!("1500"), 7),
        ("mtu beyond a u32", "mtu", json!(1u64 << 40), 7),
        ("hairpin not a bool", "hairpinMode", json!("yes"), 7),
        ("ipam not an object", "ipam", json!("host-local"), 7),
        (
            "ipam type traversal",
            "ipam",
            json!({"type": "../../bin/sh"}),
            7,
        ),
        (
            "mac not a MAC",
            "runtimeConfig",
            json!({"mac": "zz:00:00:00:00:00"}),
            7,
        ),
        ("unknown field", "bridgeName", json!("x"), 2),
    ];
    for (what, field, value, code) in conf_cases {
        let mut c = good.clone();
        c[field] = value;
        let out = raw_add(&node, &pod, c.to_string().as_bytes(), &[], "eth0");
        let err = out.err();
        assert_eq!(err["code"], code, "{what}: {err}");
        assert_rejected(&node, &pod, &out, code);
    }

    // A valid but very long container id (CNI sets no limit) works, and
    // DEL leaves nothing.
    let out = raw_add(
        &node,
        &pod,
        good.to_string().as_bytes(),
        &[("CNI_CONTAINERID", &long_id)],
        "eth0",
    );
    out.ok();
    node.del(Some(&pod), &long_id, &good);
    assert!(node.host_veths().is_empty());
    assert!(node.reserved("podnet").is_empty());
}

/// The hostile table for the other verbs: DEL, CHECK, STATUS, GC and
/// VERSION with invalid, oversized, traversal and odd-byte input. Each gets
/// its documented code, and a live pod on the same node keeps its link, its
/// address and its reservation whatever they were sent (a malformed GC list
/// above all must never read as "nothing is valid").
#[test]
fn hostile_input_for_every_verb() {
    let node = TestNode::new(26);
    let live = TestNetns::new("live");
    let other = TestNetns::new("pod");
    // podnetd's IPAM: Debian's host-local does not speak 1.1.0 (STATUS, GC).
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let good = daemon.net_conf("1.1.0");
    let result = node.add(&live, "live", &good);
    let live_ip = result["ips"][0]["address"].as_str().unwrap().to_string();
    let mut with_prev = good.clone();
    with_prev["prevResult"] = result.clone();

    let run = |verb: &str,
               id: &str,
               ifname: &str,
               netns: Option<&str>,
               stdin: &[u8],
               env: &[(&str, &str)]| {
        let podnet = bins::podnet();
        exec(
            &node.ns,
            &Invocation {
                plugin: &podnet,
                command: verb,
                container_id: id,
                netns,
                ifname,
                cni_path: node.cni_path(),
                stdin,
                env,
            },
        )
    };
    let other_path = path_str(other.path());
    let live_path = path_str(live.path());
    let oversized = format!(
        "{{\"cniVersion\":\"1.1.0\",\"pad\":\"{}\"}}",
        "x".repeat(1 << 20)
    );
    let with = |field: &str, value: Value| {
        let mut c = good.clone();
        c[field] = value;
        c.to_string().into_bytes()
    };
    let with_prev_field = |field: &str, value: Value| {
        let mut c = with_prev.clone();
        c[field] = value;
        c.to_string().into_bytes()
    };
    let gc_with = |valid: Value| {
        let mut c = good.clone();
        c["cni.dev/valid-attachments"] = valid;
        c.to_string().into_bytes()
    };
    let good_bytes = good.to_string().into_bytes();
    let prev_bytes = with_prev.to_string().into_bytes();

    // (what, verb, container id, ifname, netns, stdin, expected code)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        u64,
    );
    let cases: Vec<Case> = vec![
        (
            "DEL ifname traversal",
            "DEL",
            "live",
            "../x",
            Some(&live_path),
            good_bytes.clone(),
            4,
        ),
        (
            "DEL ifname 0xA0",
            "DEL",
            "live",
            "e\u{e0}",
            Some(&live_path),
            good_bytes.clone(),
            4,
        ),
        (
            "DEL container id traversal",
            "DEL",
            "../live",
            "eth0",
            Some(&live_path),
            good_bytes.clone(),
            4,
        ),
        (
            "DEL container id odd bytes",
            "DEL",
            "liv\u{e9}",
            "eth0",
            Some(&live_path),
            good_bytes.clone(),
            4,
        ),
        (
            "DEL netns a file",
            "DEL",
            "x",
            "eth0",
            Some("/etc/passwd"),
            good_bytes.clone(),
            4,
        ),
        (
            "DEL not JSON",
            "DEL",
            "live",
            "eth0",
            Some(&live_path),
            b"{\"cniVersion\":".to_vec(),
            6,
        ),
        (
            "DEL oversized",
            "DEL",
            "live",
            "eth0",
            Some(&live_path),
            oversized.clone().into_bytes(),
            2,
        ),
        (
            "DEL version unknown",
            "DEL",
            "live",
            "eth0",
            Some(&live_path),
            with("cniVersion", json!("9.9.9")),
            1,
        ),
        (
            "DEL bridge traversal",
            "DEL",
            "live",
            "eth0",
            Some(&live_path),
            with("bridge", json!("..")),
            7,
        ),
        (
            "CHECK without prevResult",
            "CHECK",
            "live",
            "eth0",
            Some(&live_path),
            good_bytes.clone(),
            7,
        ),
        (
            "CHECK container id traversal",
            "CHECK",
            "../live",
            "eth0",
            Some(&live_path),
            prev_bytes.clone(),
            4,
        ),
        (
            "CHECK ifname traversal",
            "CHECK",
            "live",
            "../x",
            Some(&live_path),
            prev_bytes.clone(),
            4,
        ),
        (
            "CHECK netns a FIFO-free device",
            "CHECK",
            "live",
            "eth0",
            Some("/dev/null"),
            prev_bytes.clone(),
            4,
        ),
        (
            "CHECK another pod's namespace",
            "CHECK",
            "live",
            "eth0",
            Some(&other_path),
            prev_bytes.clone(),
            103,
        ),
        (
            "CHECK prevResult not a result",
            "CHECK",
            "live",
            "eth0",
            Some(&live_path),
            with_prev_field("prevResult", json!({"ips": "x"})),
            7,
        ),
        (
            "CHECK on 0.3.1",
            "CHECK",
            "live",
            "eth0",
            Some(&live_path),
            with_prev_field("cniVersion", json!("0.3.1")),
            1,
        ),
        (
            "STATUS version unknown",
            "STATUS",
            "",
            "",
            None,
            with("cniVersion", json!("1.1.0/../0.1")),
            1,
        ),
        (
            "STATUS on 1.0.0",
            "STATUS",
            "",
            "",
            None,
            with("cniVersion", json!("1.0.0")),
            1,
        ),
        (
            "STATUS bridge odd byte",
            "STATUS",
            "",
            "",
            None,
            with("bridge", json!("br\u{e0}")),
            7,
        ),
        (
            "STATUS not JSON",
            "STATUS",
            "",
            "",
            None,
            b"\xff\xfe".to_vec(),
            6,
        ),
        (
            "GC without a list",
            "GC",
            "",
            "",
            None,
            good_bytes.clone(),
            7,
        ),
        (
            "GC list not a list",
            "GC",
            "",
            "",
            None,
            gc_with(json!("live")),
            7,
        ),
        (
            "GC entry without ifname",
            "GC",
            "",
            "",
            None,
            gc_with(json!([{"containerID": "live"}])),
            7,
        ),
        (
            "GC entry traversal",
            "GC",
            "",
            "",
            None,
            gc_with(json!([{"containerID": "../live", "ifname": "eth0"}])),
            7,
        ),
        (
            "GC entry odd ifname",
            "GC",
            "",
            "",
            None,
            gc_with(json!([{"containerID": "live", "ifname": "e\u{e0}"}])),
            7,
        ),
        (
            "GC on 1.0.0",
            "GC",
            "",
            "",
            None,
            {
                let mut c = good.clone();
                c["cniVersion"] = json!("1.0.0");
                c["cni.dev/valid-attachments"] = json!([]);
                c.to_string().into_bytes()
            },
            1,
        ),
        (
            "VERSION not JSON",
            "VERSION",
            "",
            "",
            None,
            b"{".to_vec(),
            6,
        ),
        (
            "VERSION version not a string",
            "VERSION",
            "",
            "",
            None,
            br#"{"cniVersion": 1}"#.to_vec(),
            7,
        ),
        (
            "command lower case",
            "del",
            "live",
            "eth0",
            Some(&live_path),
            good_bytes.clone(),
            4,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, verb, id, ifname, netns, stdin, code) in &cases {
        let out = run(verb, id, ifname, *netns, stdin, &[]);
        let got = if out.code == Some(1) {
            out.err_code()
        } else {
            0
        };
        if got != *code {
            wrong.push(format!(
                "{what}: expected {code}, got {got}: {}",
                out.stdout
            ));
        }
        // The live pod is untouched, whatever the verb was sent.
        assert_eq!(
            node.host_veths().len(),
            1,
            "{what} removed the live pod's veth"
        );
        assert_eq!(
            daemon.allocations().len(),
            1,
            "{what} released the live pod's address"
        );
        let addrs = live.addresses("eth0");
        assert!(
            addrs.contains(&live_ip),
            "{what} changed the live pod's eth0: {addrs:?}, not {live_ip}"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    node.del(Some(&live), "live", &good);
    assert!(node.host_veths().is_empty());
    assert!(daemon.allocations().is_empty());
}
