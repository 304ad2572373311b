//! podnet's own IPAM end to end: the real podnetd, the real `podnet` and
//! `podnet-ipam` binaries, pods in namespaces the test creates.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use podnet_tests::bins;
use podnet_tests::daemon::{DaemonOpts, TestDaemon};
use podnet_tests::netns::TestNetns;
use podnet_tests::node::{path_str, TestNode};
use serde_json::{json, Value};

fn v4_of(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().to_string()
}

#[test]
fn two_hundred_concurrent_adds_get_distinct_addresses() {
    let node = TestNode::new(50);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let conf = daemon.net_conf("1.1.0");
    let pods: Vec<TestNetns> = (0..200).map(|_| TestNetns::new("p")).collect();
    // 200 plugin processes in flight at once, 50 threads with 4 each.
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .chunks(4)
            .enumerate()
            .map(|(c, chunk)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, p)| node.add(p, &format!("c{c}-{i}"), conf))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let v4: HashSet<String> = results.iter().map(v4_of).collect();
    let v6: HashSet<String> = results
        .iter()
        .map(|r| r["ips"][1]["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(v4.len(), 200);
    assert_eq!(v6.len(), 200);
    // Every address is in the node's CIDR, which came from the cluster range.
    let allocations = daemon.allocations();
    assert_eq!(allocations.len(), 200);
    let first = allocations[0].ips[0];
    let node_cidr = ipnetwork::IpNetwork::new(first.network(), first.prefix()).unwrap();
    assert_eq!(node_cidr.prefix(), 24);
    for ip in &v4 {
        let addr: ipnetwork::IpNetwork = ip.parse().unwrap();
        assert!(node_cidr.contains(addr.ip()), "{ip} outside {node_cidr}");
        assert_ne!(addr.ip(), node_cidr.network(), "network address handed out");
    }
    for (pod, r) in pods.iter().zip(&results) {
        assert!(pod.addresses("eth0").contains(&v4_of(r)));
    }
    std::thread::scope(|s| {
        for (c, chunk) in pods.chunks(4).enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || {
                for (i, p) in chunk.iter().enumerate() {
                    node.del(Some(p), &format!("c{c}-{i}"), conf);
                }
            });
        }
    });
    assert!(daemon.allocations().is_empty());
    assert!(node.host_veths().is_empty());
}

#[test]
fn exhausted_node_cidr_gives_a_clear_error_and_no_partial_pod() {
    let node = TestNode::new(51);
    // 8 pods per node -> a /28: 16 addresses less network, gateway and
    // broadcast leaves 13.
    let opts = DaemonOpts {
        max_pods: 8,
        cluster_cidr: "10.244.0.0/16".into(),
        ..Default::default()
    };
    let daemon = TestDaemon::start(&node.ns, opts);
    let conf = daemon.net_conf("1.0.0");
    let pods: Vec<TestNetns> = (0..13).map(|_| TestNetns::new("p")).collect();
    for (i, p) in pods.iter().enumerate() {
        node.add(p, &format!("x{i}"), &conf);
    }
    let extra = TestNetns::new("p");
    let out = node.podnet("ADD", "extra", Some(&path_str(extra.path())), &conf);
    let err = out.err();
    assert_eq!(err["code"], 102, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("exhausted"), "{err}");
    assert!(!extra.link_names().contains(&"eth0".to_string()));
    assert_eq!(node.host_veths().len(), 13);
    assert_eq!(daemon.allocations().len(), 13);
    // Freeing one makes room again.
    node.del(Some(&pods[0]), "x0", &conf);
    node.add(&extra, "extra", &conf);
}

#[test]
fn kill_9_mid_burst_gives_nothing_twice_and_loses_nothing() {
    let node = TestNode::new(52);
    let mut daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let conf = daemon.net_conf("1.0.0");
    let pods: Vec<TestNetns> = (0..120).map(|_| TestNetns::new("p")).collect();
    let outcomes: Vec<(String, Option<Value>)> = std::thread::scope(|s| {
        let workers: Vec<_> = pods
            .chunks(15)
            .enumerate()
            .map(|(c, chunk)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let id = format!("k{c}-{i}");
                            let out = node.podnet("ADD", &id, Some(&path_str(p.path())), conf);
                            let r = (out.code == Some(0)).then(|| out.json());
                            if r.is_none() {
                                let code = out.err_code();
                                assert!(code == 11, "daemon down must be code 11: {out:?}");
                            }
                            (id, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // Kill the daemon while the burst is under way, once 40 ADDs are
        // surely answered: each of the 8 workers may hold an allocation
        // whose answer is still on its way.
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.allocations().len() < 48 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        daemon.kill9();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let succeeded: Vec<&(String, Option<Value>)> =
        outcomes.iter().filter(|o| o.1.is_some()).collect();
    let failed: Vec<&(String, Option<Value>)> = outcomes.iter().filter(|o| o.1.is_none()).collect();
    assert!(
        succeeded.len() >= 40,
        "killed too early: {}",
        succeeded.len()
    );
    assert!(
        !failed.is_empty(),
        "the kill came after the burst: the test proved nothing"
    );

    daemon.restart(&node.ns);
    let after = daemon.allocations();
    let held: HashSet<String> = after.iter().map(|a| a.key.container_id.clone()).collect();
    // Nothing acknowledged is lost.
    for (id, r) in &succeeded {
        assert!(held.contains(id), "{id} was acknowledged and then lost");
        let ips: Vec<String> = after
            .iter()
            .find(|a| &a.key.container_id == id)
            .unwrap()
            .ips
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert!(ips.contains(&v4_of(r.as_ref().unwrap())));
    }
    // Nothing is given twice, before or after the restart.
    let mut seen = HashSet::new();
    for a in &after {
        for ip in &a.ips {
            assert!(seen.insert(ip.to_string()), "{ip} held twice");
        }
    }
    // The runtime DELs the failed ADDs; then it retries them.
    for (id, _) in &failed {
        node.podnet("DEL", id, None, &conf).ok();
    }
    let retry: Vec<Value> = pods
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.1.is_none())
        .map(|(p, o)| node.add(p, &o.0, &conf))
        .collect();
    for r in &retry {
        assert!(seen.insert(v4_of(r)), "{} given twice", v4_of(r));
    }
    assert_eq!(daemon.allocations().len(), 120);
    for (p, o) in pods.iter().zip(&outcomes) {
        node.del(Some(p), &o.0, &conf);
    }
    assert!(
        daemon.allocations().is_empty(),
        "leaked: {:?}",
        daemon.allocations()
    );
}

#[test]
fn daemon_down_add_fails_11_del_spools_and_is_applied_at_restart() {
    let node = TestNode::new(53);
    let mut daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let conf = daemon.net_conf("1.1.0");
    let pod = TestNetns::new("p");
    let netns = path_str(pod.path());
    node.add(&pod, "down", &conf);
    assert_eq!(daemon.allocations().len(), 1);

    daemon.stop();
    // STATUS says not available; ADD says try again later and leaves nothing.
    assert_eq!(node.podnet("STATUS", "", None, &conf).err_code(), 50);
    let other = TestNetns::new("p");
    let out = node.podnet("ADD", "other", Some(&path_str(other.path())), &conf);
    assert_eq!(out.err_code(), 11);
    assert!(!other.link_names().contains(&"eth0".to_string()));
    assert_eq!(node.host_veths().len(), 1);
    assert!(
        std::fs::read_dir(daemon.spool_dir())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );

    // DEL succeeds, removes the links, and spools the release.
    node.podnet("DEL", "down", Some(&netns), &conf).ok();
    assert!(node.host_veths().is_empty());
    assert_eq!(std::fs::read_dir(daemon.spool_dir()).unwrap().count(), 1);

    daemon.restart(&node.ns);
    assert!(
        daemon.allocations().is_empty(),
        "spooled release not applied"
    );
    assert_eq!(std::fs::read_dir(daemon.spool_dir()).unwrap().count(), 0);
    node.podnet("STATUS", "", None, &conf).ok();
    assert!(daemon.log_text().contains("applied spooled release"));
}

#[test]
fn gc_and_the_reclaimer_free_leaked_addresses() {
    let node = TestNode::new(54);
    let opts = DaemonOpts {
        reclaim_interval_secs: 1,
        reclaim_grace_secs: 1,
        ..Default::default()
    };
    let daemon = TestDaemon::start(&node.ns, opts);
    let conf = daemon.net_conf("1.1.0");

    // GC: only the valid attachment keeps its address and its veth.
    let pods: Vec<TestNetns> = (0..2).map(|_| TestNetns::new("p")).collect();
    for (i, p) in pods.iter().enumerate() {
        node.add(p, &format!("g{i}"), &conf);
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g1", "ifname": "eth0"}]);
    node.podnet("GC", "", None, &gc).ok();
    let left = daemon.allocations();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key.container_id, "g1");
    assert_eq!(node.host_veths().len(), 1);

    // Reclaimer: the pod's namespace vanishes and no DEL ever comes.
    let pod = TestNetns::new("p");
    node.add(&pod, "leak", &conf);
    assert_eq!(daemon.allocations().len(), 2);
    pod.delete();
    let deadline = Instant::now() + Duration::from_secs(15);
    while daemon
        .allocations()
        .iter()
        .any(|a| a.key.container_id == "leak")
    {
        assert!(
            Instant::now() < deadline,
            "not reclaimed: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(daemon.log_text().contains("reclaimed leaked addresses"));
    // A pod whose namespace still exists is never reclaimed.
    assert!(daemon
        .allocations()
        .iter()
        .any(|a| a.key.container_id == "g1"));
}

#[test]
fn podnet_ipam_under_the_reference_bridge_plugin() {
    let node = TestNode::new(55);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let pod = TestNetns::new("p");
    let netns = path_str(pod.path());
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "refbridge",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "isDefaultGateway": true,
        "ipam": daemon.ipam_conf(),
    });
    let bridge = bins::reference("bridge");
    let result = node.invoke(&bridge, "ADD", "ref", Some(&netns), &conf).ok();
    let ip = v4_of(&result);
    assert!(pod.addresses("eth0").contains(&ip), "{result}");
    assert_eq!(daemon.allocations().len(), 1);

    // The IPAM plugin alone: a repeated ADD for the same key gives the same address.
    let ipam = bins::workspace_bin("podnet-ipam");
    let again = node.invoke(&ipam, "ADD", "ref", Some(&netns), &conf).ok();
    assert_eq!(v4_of(&again), ip);
    assert!(again.get("interfaces").is_none());

    node.invoke(&bridge, "DEL", "ref", Some(&netns), &conf).ok();
    assert!(daemon.allocations().is_empty());
}

#[test]
fn admin_list_shows_allocations_and_pool_use() {
    let node = TestNode::new(56);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let conf = daemon.net_conf("1.0.0");
    let pod = TestNetns::new("p");
    let r = node.add(&pod, "listed", &conf);
    let out = std::process::Command::new(bins::workspace_bin("podnetd"))
        .args(["list", "--socket"])
        .arg(daemon.socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("node node-a"), "{text}");
    assert!(text.contains("listed"), "{text}");
    assert!(text.contains(&v4_of(&r)), "{text}");
    assert!(text.contains("1 of      253 used"), "{text}");
    assert!(
        text.contains("NetworkPolicy is not enforced on this node"),
        "{text}"
    );
    node.del(Some(&pod), "listed", &conf);
}

#[test]
fn the_ipam_socket_is_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let node = TestNode::new(57);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let mode = std::fs::metadata(daemon.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir = std::fs::metadata(daemon.run_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir & 0o777, 0o700);
}

#[test]
fn static_addresses_and_reservations() {
    let node = TestNode::new(58);
    let opts = DaemonOpts {
        cluster_cidr: "10.244.0.0/16".into(),
        ..Default::default()
    };
    let daemon = TestDaemon::start(&node.ns, opts);
    let cidr = daemon.allocations_cidrs();
    let base = match cidr[0].network() {
        std::net::IpAddr::V4(v4) => u32::from(v4),
        other => panic!("{other}"),
    };
    let wanted = std::net::Ipv4Addr::from(base + 77).to_string();
    let mut conf = daemon.net_conf("1.0.0");
    conf["runtimeConfig"] = json!({"ips": [format!("{wanted}/24")]});
    let pod = TestNetns::new("p");
    let r = node.add(&pod, "static", &conf);
    assert_eq!(v4_of(&r), format!("{wanted}/24"));
    assert!(pod.addresses("eth0").contains(&format!("{wanted}/24")));

    // The same address again, for another pod: refused, named, nothing left.
    let other = TestNetns::new("p");
    let out = node.podnet("ADD", "static2", Some(&path_str(other.path())), &conf);
    let err = out.err();
    assert!(err["msg"].as_str().unwrap().contains("static"), "{err}");
    assert!(!other.link_names().contains(&"eth0".to_string()));

    // The gateway is never a pod's.
    let gw = std::net::Ipv4Addr::from(base + 1).to_string();
    conf["runtimeConfig"] = json!({"ips": [gw]});
    let out = node.podnet("ADD", "gw", Some(&path_str(other.path())), &conf);
    assert_eq!(out.err_code(), 7);

    // args.cni.ips works too.
    let mut by_args = daemon.net_conf("1.0.0");
    let wanted2 = std::net::Ipv4Addr::from(base + 99).to_string();
    by_args["args"] = json!({"cni": {"ips": [wanted2.clone()]}});
    let r = node.add(&other, "byargs", &by_args);
    assert_eq!(v4_of(&r), format!("{wanted2}/24"));
    node.del(Some(&pod), "static", &conf);
    node.del(Some(&other), "byargs", &conf);
}

#[test]
fn a_refused_add_leaves_the_live_pod_and_a_foreign_link_alone() {
    let node = TestNode::new(52);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let conf = daemon.net_conf("1.1.0");
    let (p1, p2, p3) = (
        TestNetns::new("p"),
        TestNetns::new("p"),
        TestNetns::new("p"),
    );
    let ip = v4_of(&node.add(&p1, "c1", &conf));

    // The same attachment again, in another namespace: refused, and the
    // live pod keeps its interface and its address.
    let out = node.podnet("ADD", "c1", Some(&path_str(p2.path())), &conf);
    assert_eq!(out.err_code(), 101, "{}", out.err());
    assert!(p1.addresses("eth0").contains(&ip), "the live pod lost {ip}");
    assert!(!p2.link_names().contains(&"eth0".to_string()));
    assert_eq!(daemon.allocations().len(), 1);
    assert_eq!(node.host_veths().len(), 1);

    // A link that is not ours but carries the host end's name.
    let foreign = podnet_cni::names::host_veth_name("c2", "eth0");
    node.ns.ip(&[
        "link", "add", &foreign, "type", "veth", "peer", "name", "foreign0",
    ]);
    let out = node.podnet("ADD", "c2", Some(&path_str(p3.path())), &conf);
    assert_eq!(out.err_code(), 101, "{}", out.err());
    assert!(
        node.ns.link_names().contains(&foreign),
        "the foreign link was deleted"
    );
    assert!(!p3.link_names().contains(&"eth0".to_string()));
    assert_eq!(
        daemon.allocations().len(),
        1,
        "the refused ADD holds an address"
    );
    node.del(Some(&p1), "c1", &conf);
    assert!(daemon.allocations().is_empty());
}

#[test]
fn the_daemon_refuses_keys_no_plugin_would_send() {
    use podnet_ipam::attachment::AttachmentKey;
    use podnet_ipam::client::ClientError;
    use podnet_ipam::proto::{ErrorKind, Request};
    let node = TestNode::new(53);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let key = |c: &str, i: &str| AttachmentKey {
        container_id: c.into(),
        ifname: i.into(),
    };
    for bad in [
        key("../../x", "eth0"),
        key("", "eth0"),
        key("c\0", "eth0"),
        key(&"c".repeat(100_000), "eth0"),
        key("c1", "../x"),
    ] {
        for req in [
            Request::Add {
                key: bad.clone(),
                netns: None,
                requested: Vec::new(),
                pod: None,
                confirm_policy: false,
            },
            Request::Del { key: bad.clone() },
            Request::Gc {
                valid: vec![bad.clone()],
            },
        ] {
            match daemon.client().call(&req) {
                Err(ClientError::Daemon {
                    kind: ErrorKind::InvalidRequest,
                    ..
                }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
    assert!(daemon.allocations().is_empty());
}

#[test]
fn a_second_daemon_on_the_same_run_directory_refuses_to_start() {
    let node = TestNode::new(54);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let other_state = tempfile::tempdir().unwrap();
    let out = node.ns.run(|| {
        std::process::Command::new(bins::workspace_bin("podnetd"))
            .arg("run")
            .arg("--node-name")
            .arg("node-a")
            .arg("--cluster-cidr")
            .arg("10.244.0.0/16")
            .arg("--state-dir")
            .arg(other_state.path())
            .arg("--run-dir")
            .arg(daemon.run_dir())
            .arg("--cni-conf-dir")
            .arg(other_state.path().join("net.d"))
            .output()
            .unwrap()
    });
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another podnetd holds"), "{stderr}");
    // The first daemon still owns its socket and answers.
    let conf = daemon.net_conf("1.1.0");
    let pod = TestNetns::new("p");
    node.add(&pod, "c1", &conf);
    assert_eq!(daemon.allocations().len(), 1);
    node.del(Some(&pod), "c1", &conf);
}

#[test]
fn idle_connections_never_starve_real_requests() {
    let node = TestNode::new(55);
    let daemon = TestDaemon::start(
        &node.ns,
        DaemonOpts {
            // systemd's default: the limit the defect was found under.
            nofile: Some(1024),
            ..DaemonOpts::default()
        },
    );
    // 1100 clients that connect and never finish a request.
    let idle: Vec<std::os::unix::net::UnixStream> = (0..1100)
        .map(|_| std::os::unix::net::UnixStream::connect(daemon.socket()).unwrap())
        .collect();
    let started = Instant::now();
    let conf = daemon.net_conf("1.1.0");
    let pod = TestNetns::new("p");
    node.add(&pod, "c1", &conf);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "an ADD behind 1100 idle clients took {took:?}"
    );
    drop(idle);
    node.del(Some(&pod), "c1", &conf);
    assert!(daemon.allocations().is_empty());
}

/// A mount namespace held by a sleeping child of the test, with a tmpfs
/// of `size` at `dir` in it (never in the machine's own mount namespace).
struct SmallDisk {
    holder: std::process::Child,
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> Self {
        let holder = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .spawn()
            .unwrap();
        podnet_tests::cleanup::register_pid(holder.id());
        let disk = Self {
            holder,
            dir: tempfile::tempdir().unwrap(),
        };
        let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(disk.mount_ns()).ok().as_ref() == Some(&own) {
            assert!(
                Instant::now() < deadline,
                "unshare did not enter a mount namespace"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = std::process::Command::new("nsenter")
            .args(["-t", &disk.holder.id().to_string(), "-m", "-r", "-w", "--"])
            .args([
                "mount",
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
            ])
            .arg(disk.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        disk
    }

    fn mount_ns(&self) -> std::path::PathBuf {
        format!("/proc/{}/ns/mnt", self.holder.id()).into()
    }

    /// A path inside the small file system, seen from outside it.
    fn inside(&self, name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(self.dir.path().strip_prefix("/").unwrap())
            .join(name)
    }

    /// Writes a filler file until the file system is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.inside("filler")).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.inside("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        podnet_tests::cleanup::unregister_pid(self.holder.id());
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn a_full_disk_stops_podnetd_and_a_restart_after_space_returns_resumes() {
    let node = TestNode::new(56);
    let disk = SmallDisk::new("32m");
    let mut daemon = TestDaemon::start(
        &node.ns,
        DaemonOpts {
            mount_ns_of: Some(disk.holder.id()),
            state_dir: Some(disk.dir.path().join("state")),
            ..DaemonOpts::default()
        },
    );
    let conf = daemon.net_conf("1.1.0");
    let pods: Vec<TestNetns> = (0..2).map(|_| TestNetns::new("p")).collect();
    let first = v4_of(&node.add(&pods[0], "before", &conf));

    disk.fill();
    // sled writes into log space it already holds until that runs out:
    // addresses are asked for until a write meets the full disk.
    let mut asked = 0;
    let refused = loop {
        let req = podnet_ipam::proto::Request::Add {
            key: podnet_ipam::attachment::AttachmentKey {
                container_id: format!("fill{asked}"),
                ifname: "eth0".into(),
            },
            netns: None,
            requested: Vec::new(),
            pod: None,
            confirm_policy: false,
        };
        asked += 1;
        match daemon.client().call(&req) {
            Ok(_) if asked < 20_000 => {}
            Ok(_) => panic!("20000 allocations on a full disk"),
            Err(e) => break e,
        }
    };
    eprintln!("allocation {asked} met the full disk: {refused}");
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        daemon.log_text().contains("cannot be written"),
        "{}",
        daemon.log_text()
    );
    // Nothing to serve ADD: STATUS says so (50), as the kubelet will see.
    let status = node.podnet("STATUS", "", None, &conf);
    assert_eq!(status.err_code(), 50, "{}", status.stdout);

    disk.free();
    daemon.restart(&node.ns);
    let held: Vec<String> = daemon
        .allocations()
        .iter()
        .map(|a| a.key.container_id.clone())
        .collect();
    assert!(held.contains(&"before".to_string()), "{held:?}");
    let again = v4_of(&node.add(&pods[1], "after", &conf));
    assert_ne!(again, first);
    node.del(Some(&pods[1]), "after", &conf);
    node.del(Some(&pods[0]), "before", &conf);
    // Every allocation acknowledged before the disk filled is still there;
    // none is given twice.
    let held = daemon.allocations();
    let mut ips: Vec<String> = held.iter().map(|a| a.ips[0].to_string()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), held.len(), "an address held twice");
    assert!(
        held.len() >= asked - 1,
        "{} of {} acknowledged allocations kept",
        held.len(),
        asked - 1
    );
}

#[test]
fn a_released_address_leaves_no_tracked_connection() {
    let node = TestNode::new(57);
    let daemon = TestDaemon::start(&node.ns, DaemonOpts::default());
    let conf = daemon.net_conf("1.1.0");
    let pod = TestNetns::new("p");
    let ip: std::net::IpAddr = v4_of(&node.add(&pod, "c1", &conf))
        .parse::<ipnetwork::IpNetwork>()
        .unwrap()
        .ip();
    // A UDP flow from the node to the pod: the node's connection tracking
    // (on, for podnet's masquerade) keeps an entry for it.
    let tracked = || {
        node.ns
            .run(podnetd::kernel::conntrack::list)
            .unwrap()
            .iter()
            .any(|e| e.addresses.contains(&ip))
    };
    node.ns.run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"stale?", (ip, 9999)).unwrap();
    });
    assert!(tracked(), "no conntrack entry for the flow to {ip}");

    node.del(Some(&pod), "c1", &conf);
    let deadline = Instant::now() + Duration::from_secs(3);
    while tracked() {
        assert!(
            Instant::now() < deadline,
            "the released {ip} still has a tracked connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
