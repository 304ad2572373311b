//! NetworkPolicy end to end on one node: podnetd on the fake API server
//! (`--store kubernetes`), pods ADDed by the plugin with the runtime's
//! `CNI_ARGS`, policies delivered by the watch, and real packets between
//! pod namespaces. The truth table follows upstream's e2e suite
//! (`netpol/cases.rs`); then updates, pods covered from their first
//! packet, and churn under traffic. Everything happens in namespaces the
//! tests create; traffic stays between them.

#[path = "netpol/cases.rs"]
mod cases;
#[path = "netpol/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::time::Duration;

use cases::{me, ml, np, ALL, TCP80};
use harness::{Cluster, PORTS};
use podnet_tests::reach::{check, Servers};
use serde_json::json;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

/// Time for a change in the API to reach the kernel before the first
/// probe; a matrix that is still wrong is probed again ([`settled`]).
const SETTLE: Duration = Duration::from_millis(300);

/// x, y, z with a, b, c each, serving.
fn nine_pods() -> (Cluster, Servers) {
    let namespaces: Vec<(&str, serde_json::Value)> = NAMESPACES
        .iter()
        .map(|n| (*n, json!({ "ns": n })))
        .collect();
    let mut cluster = Cluster::start(&namespaces);
    for ns in NAMESPACES {
        for pod in PODS {
            cluster.add_pod(ns, pod, json!({ "pod": pod }), true);
        }
    }
    let servers = Servers::start(&cluster.members(), &PORTS);
    (cluster, servers)
}

/// The matrix once the change has reached the kernel: probed again, up
/// to three times, while it differs (a change may still be on its way).
fn settled(
    cluster: &Cluster,
    expect: impl Fn(&str, &str, podnet_tests::reach::Probe) -> bool,
) -> Result<(), String> {
    std::thread::sleep(SETTLE);
    let members = cluster.members();
    let mut outcome = check(&members, &ALL, &expect);
    for _ in 1..3 {
        if outcome.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        outcome = check(&members, &ALL, &expect);
    }
    outcome
}

#[test]
fn truth_table() {
    let (cluster, _servers) = nine_pods();
    settled(&cluster, |_, _, _| true).expect("no policy: everything reaches everything");
    let ips: HashMap<String, std::net::IpAddr> = cluster
        .pods
        .iter()
        .map(|p| (p.name.clone(), p.ip))
        .collect();
    let cases = cases::all(&ips);
    let mut failed = Vec::new();
    for case in &cases {
        cluster.set_policies(&case.policies);
        match settled(&cluster, &case.expect) {
            Ok(()) => eprintln!("case {}: ok", case.name),
            Err(grid) => {
                eprintln!("case {} FAILED:\n{grid}", case.name);
                failed.push(case.name);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed: {failed:?}",
        failed.len(),
        cases.len()
    );
    eprintln!(
        "{} cases, each a 9x9 matrix of TCP and UDP on 80 and 81",
        cases.len()
    );
}

/// Policies, namespace labels and pod labels changing in the API, and
/// a policy deleted: each change is enforced, and `podnetd policy
/// explain` and `podnetd list` say what is enforced.
#[test]
fn updates_and_deletions_are_enforced() {
    let (cluster, _servers) = nine_pods();
    let into_xa = |allowed: fn(&str, (podnet_tests::reach::Proto, u16)) -> bool| {
        move |from: &str, to: &str, p| to != "x/a" || allowed(from, p)
    };
    let policy = |port: u16| {
        np(
            "x",
            "from-y",
            json!({ "podSelector": ml("pod", "a"),
            "ingress": [{ "from": [{ "namespaceSelector": ml("ns", "y") }], "ports": [{ "port": port }] }] }),
        )
    };
    cluster.set_policies(&[policy(81)]);
    settled(
        &cluster,
        into_xa(|f, p| f.starts_with("y/") && p == cases::TCP81),
    )
    .unwrap();
    explains_from_y(&cluster);

    // The policy now allows 80 instead.
    cluster.set_policies(&[policy(80)]);
    settled(&cluster, into_xa(|f, p| f.starts_with("y/") && p == TCP80)).unwrap();

    // Namespace z gains the label the policy selects on.
    cluster.api.update(|s| {
        s.modify_in("namespaces", "z", |n| {
            n["metadata"]["labels"]["ns"] = json!("y")
        })
    });
    settled(&cluster, into_xa(|f, p| !f.starts_with("x/") && p == TCP80)).unwrap();
    cluster.api.update(|s| {
        s.modify_in("namespaces", "z", |n| {
            n["metadata"]["labels"]["ns"] = json!("z")
        })
    });

    // A peer pod gains the label a policy selects on.
    let clients = np(
        "x",
        "clients",
        json!({ "podSelector": ml("pod", "a"),
        "ingress": [{ "from": [{ "namespaceSelector": {}, "podSelector": ml("role", "client") }] }] }),
    );
    cluster.set_policies(&[clients]);
    settled(&cluster, into_xa(|_, _| false)).unwrap();
    cluster.api.update(|s| {
        s.modify_in("pods", "z/c", |p| {
            p["metadata"]["labels"]["role"] = json!("client")
        })
    });
    settled(&cluster, into_xa(|f, _| f == "z/c")).unwrap();

    // A target pod gains the label that makes a policy select it.
    let target = np(
        "x",
        "target",
        json!({ "podSelector": me("role", "In", &["target"]), "policyTypes": ["Ingress"] }),
    );
    cluster.set_policies(&[target]);
    settled(&cluster, |_, _, _| true).unwrap();
    cluster.api.update(|s| {
        s.modify_in("pods", "x/b", |p| {
            p["metadata"]["labels"]["role"] = json!("target")
        })
    });
    settled(&cluster, |_, to, _| to != "x/b").unwrap();
    let list = cluster.list();
    assert!(list.contains("isolated by x/target"), "{list}");

    // Deleted: nothing is enforced any more.
    cluster.set_policies(&[]);
    settled(&cluster, |_, _, _| true).unwrap();
    let list = cluster.list();
    assert!(list.contains("9 pods, 0 isolated"), "{list}");
}

/// `podnetd policy explain` names the policy that allows y/b and the one
/// that isolates x/a from z/b.
fn explains_from_y(cluster: &Cluster) {
    let explained = cluster.explain("y/b", "x/a", "81/TCP");
    assert!(explained.starts_with("ALLOW y/b"), "{explained}");
    assert!(explained.contains("allowed by x/from-y"), "{explained}");
    let explained = cluster.explain("z/b", "x/a", "81/TCP");
    assert!(explained.starts_with("DENY z/b"), "{explained}");
    assert!(explained.contains("isolated by x/from-y"), "{explained}");
}

/// 200 pods created one after another, probed from the moment their ADD
/// returns: a pod in the deny-all namespace x is never reached and
/// reaches nothing, though for half of them the API never learns the
/// address; a client pod in z, which x's server allows, reaches it with
/// its first packet (a dropped SYN would show as a connection taking
/// more than the kernel's one-second retransmission).
#[test]
fn new_pods_are_covered_from_their_first_packet() {
    let mut cluster = Cluster::start(&[("x", json!({})), ("y", json!({})), ("z", json!({}))]);
    cluster.set_policies(&[
        np("x", "deny-all", json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] })),
        np("x", "server-from-clients", json!({ "podSelector": ml("pod", "server"),
            "ingress": [{ "from": [{ "namespaceSelector": {}, "podSelector": ml("role", "client") }] }] })),
    ]);
    cluster.add_pod("x", "server", json!({ "pod": "server" }), true);
    cluster.add_pod("y", "watcher", json!({ "pod": "watcher" }), true);
    let _servers = Servers::start(&cluster.members(), &[80]);
    let server = std::net::SocketAddr::new(cluster.pod("x/server").ip, 80);
    let watcher = std::net::SocketAddr::new(cluster.pod("y/watcher").ip, 80);

    let mut adds = Vec::new();
    let violations = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..200 {
            let started = std::time::Instant::now();
            let pod = if i % 4 == 0 {
                cluster.new_pod(
                    "z",
                    &format!("client-{i}"),
                    json!({ "role": "client" }),
                    i % 8 == 0,
                )
            } else {
                cluster.new_pod(
                    "x",
                    &format!("p-{i}"),
                    json!({ "pod": format!("p-{i}") }),
                    i % 2 == 1,
                )
            };
            adds.push(started.elapsed());
            let watcher_ns = &cluster.pod("y/watcher").netns;
            let violations = &violations;
            s.spawn(move || {
                let fault = first_packet_fault(&pod, watcher_ns, server, watcher);
                violations.lock().unwrap().extend(fault);
            });
        }
    });
    let violations = violations.into_inner().unwrap();
    assert!(
        violations.is_empty(),
        "{} of 200: {violations:?}\n{}",
        violations.len(),
        diagnostics(&cluster)
    );
    adds.sort();
    eprintln!(
        "200 pods covered from their first packet; ADD p50 {:?}, max {:?}",
        adds[100], adds[199]
    );
    if let Some(path) = std::env::var_os("PODNET_KEEP_LOG") {
        std::fs::write(path, cluster.daemon.log_text()).unwrap();
    }

    // The probes can tell: without the policy, an x pod answers.
    let last = cluster.new_pod("x", "last", json!({}), true);
    cluster.set_policies(&[]);
    let target = std::net::SocketAddr::new(last.ip, 80);
    harness::wait_for("x opened", Duration::from_secs(5), || {
        answered(&cluster.pod("y/watcher").netns, target)
    });
}

/// What went wrong for a pod just created, probed at once: a client (in
/// z) must reach the server without a retransmission; any other pod (in
/// deny-all x) must neither be reached by the watcher nor reach it.
fn first_packet_fault(
    pod: &harness::TestPod,
    watcher_ns: &podnet_tests::netns::TestNetns,
    server: std::net::SocketAddr,
    watcher: std::net::SocketAddr,
) -> Option<String> {
    let (name, netns) = (&pod.name, &pod.netns);
    if name.starts_with("z/") {
        let took = connect_time(netns, server);
        return took
            .is_none_or(|t| t >= Duration::from_millis(900))
            .then(|| {
                let link = netns.ip(&["-s", "link", "show", "eth0"]);
                format!("{name} -> x/server: {took:?}; {link}")
            });
    }
    if answered(watcher_ns, std::net::SocketAddr::new(pod.ip, 80)) {
        return Some(format!("y/watcher reached {name}"));
    }
    answered(netns, watcher).then(|| format!("{name} reached y/watcher"))
}

/// What the node says when a probe went wrong: each pod's policy state,
/// conntrack's statistics, the server's TCP counters, the links' drops.
fn diagnostics(cluster: &Cluster) -> String {
    let state = cluster.list();
    let outputs = [
        cluster.node.exec("conntrack", &["-S"]),
        cluster.pod("x/server").netns.exec("nstat", &["-az"]),
        cluster.node.exec("ip", &["-s", "link"]),
    ];
    let text: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    format!("{state}\n{}", text.join("\n"))
}

/// How long a TCP connection from `from` to `to` took to establish.
fn connect_time(
    from: &podnet_tests::netns::TestNetns,
    to: std::net::SocketAddr,
) -> Option<Duration> {
    from.run(|| {
        let started = std::time::Instant::now();
        std::net::TcpStream::connect_timeout(&to, Duration::from_millis(1500))
            .ok()
            .map(|_| started.elapsed())
    })
}

/// Whether `to` answers a TCP connection from `from` at all: accepted, or
/// refused (a reset came back: the SYN got there).
fn answered(from: &podnet_tests::netns::TestNetns, to: std::net::SocketAddr) -> bool {
    from.run(
        || match std::net::TcpStream::connect_timeout(&to, Duration::from_millis(1500)) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        },
    )
}

/// Policies and pods added, changed and removed while an allowed flow
/// runs, with full resyncs every second: no new connection of the flow
/// is dropped (each is established without a retransmission), and a
/// connection open from the start keeps exchanging data throughout.
#[test]
fn churn_never_drops_an_allowed_flow() {
    let mut cluster = Cluster::start_with(
        &[("x", json!({})), ("y", json!({})), ("z", json!({}))],
        false,
        |opts| opts.resync_interval_secs = 1,
    );
    let allow = np(
        "x",
        "server-from-clients",
        json!({ "podSelector": ml("pod", "server"),
        "ingress": [{ "from": [{ "namespaceSelector": {}, "podSelector": ml("role", "client") }] }] }),
    );
    let deny = np(
        "x",
        "deny-all",
        json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] }),
    );
    cluster.set_policies(&[deny.clone(), allow.clone()]);
    cluster.add_pod("x", "server", json!({ "pod": "server" }), true);
    cluster.add_pod("y", "client", json!({ "role": "client" }), true);
    let _servers = Servers::start(&cluster.members(), &[80]);
    let server = cluster.pod("x/server");
    let long_lived =
        podnet_tests::net::tcp_listen_at(&server.netns, std::net::SocketAddr::new(server.ip, 81));
    let client = &cluster.pod("y/client").netns;
    let to = std::net::SocketAddr::new(server.ip, 80);
    harness::wait_for("the allowed flow", Duration::from_secs(5), || {
        connect_time(client, to).is_some()
    });

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (attempts, slow) = std::thread::scope(|s| {
        let flow = s.spawn(|| {
            let (mut attempts, mut slow) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                attempts += 1;
                match connect_time(client, to) {
                    Some(t) if t < Duration::from_millis(900) => {}
                    other => slow.push(other),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (attempts, slow)
        });
        let echo = s.spawn(|| echo_until(client, &long_lived, &stop));
        churn(&cluster, &[deny.clone(), allow.clone()]);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        echo.join().unwrap().expect("the long-lived connection");
        flow.join().unwrap()
    });
    eprintln!(
        "{attempts} connections during churn, {} not at once",
        slow.len()
    );
    assert!(attempts > 100, "only {attempts} connections");
    assert!(slow.is_empty(), "dropped or slow: {slow:?}");
}

/// Twenty rounds of changes around the flow: unrelated policies come and
/// go, the flow's own policies are written again, pods are added and
/// deleted, labels change.
fn churn(cluster: &Cluster, keep: &[serde_json::Value]) {
    let mut extra = Vec::new();
    for round in 0..20 {
        let ns = ["x", "y", "z"][round % 3];
        extra.push(np(ns, &format!("noise-{round}"), json!({ "podSelector": ml("pod", &format!("n{round}")),
            "ingress": [{ "from": [{ "namespaceSelector": ml("team", "t"), "podSelector": me("tier", "In", &["a", "b"]) }],
                          "ports": [{ "port": 80 + round as u16 }] }] })));
        if extra.len() > 6 {
            extra.remove(0);
        }
        let mut all = keep.to_vec();
        all.extend(extra.iter().cloned());
        cluster.set_policies(&all);
        let pod = cluster.new_pod(
            ns,
            &format!("n{round}"),
            json!({ "pod": format!("n{round}") }),
            round % 2 == 0,
        );
        cluster.api.update(|s| {
            s.modify_in("namespaces", ns, |n| {
                n["metadata"]["labels"]["team"] = json!(format!("t{round}"))
            })
        });
        std::thread::sleep(Duration::from_millis(200));
        let id = pod.container_id.clone();
        let del = cluster.plugin("DEL", ns, &format!("n{round}"), &id, &pod.netns);
        assert_eq!(del.code, Some(0), "DEL {del:?}");
        cluster
            .api
            .update(|s| s.delete_in("pods", &format!("{ns}/n{round}")));
    }
}

/// Exchanges a line every 50 ms over one connection until `stop`.
fn echo_until(
    from: &podnet_tests::netns::TestNetns,
    listener: &std::net::TcpListener,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<usize, String> {
    use std::io::{BufRead, BufReader, Write};
    let to = listener.local_addr().map_err(|e| e.to_string())?;
    let mut conn = from
        .run(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)))
        .map_err(|e| format!("connect: {e}"))?;
    let (server, _) = listener.accept().map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut server_in = BufReader::new(server.try_clone().map_err(|e| e.to_string())?);
    let mut server_out = server;
    let mut reply = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    let mut exchanged = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let (mut line, mut back) = (String::new(), String::new());
        conn.write_all(b"ping\n")
            .map_err(|e| format!("after {exchanged}: {e}"))?;
        server_in
            .read_line(&mut line)
            .map_err(|e| format!("after {exchanged}: {e}"))?;
        server_out
            .write_all(line.as_bytes())
            .map_err(|e| e.to_string())?;
        reply
            .read_line(&mut back)
            .map_err(|e| format!("no echo after {exchanged}: {e}"))?;
        exchanged += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(exchanged)
}

/// A pod whose labels cannot be read (not in the API) is not started: ADD
/// fails with code 11 and a message naming the pod, its address goes
/// back, and no link of it is left on the node.
#[test]
fn a_pod_whose_labels_are_unknown_is_refused() {
    let cluster = Cluster::start(&[("x", json!({}))]);
    let netns = podnet_tests::netns::TestNetns::new("ghost");
    let before = cluster.node.link_names();
    let out = cluster.plugin("ADD", "x", "ghost", "c-ghost", &netns);
    assert_eq!(out.code, Some(1), "{out:?}");
    let error: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(error["code"], 11, "{error}");
    let msg = error["msg"].as_str().unwrap();
    assert!(msg.contains("pod x/ghost not started"), "{msg}");
    assert!(msg.contains("not in the API"), "{msg}");
    assert!(cluster.daemon.allocations().is_empty());
    assert_eq!(cluster.node.link_names(), before);
    assert!(
        netns.link_names().iter().all(|l| l == "lo"),
        "{:?}",
        netns.link_names()
    );
    let metrics = cluster.scrape();
    assert!(
        metrics.contains("podnet_policy_refused_pods_total 1"),
        "{metrics}"
    );
}

/// podnetd stopped (killed): the table stays and keeps denying. Started
/// again, it writes nothing before it has listed the API, and then the
/// same. Drops are counted per isolating policy in the metrics.
#[test]
fn the_rules_outlive_podnetd_and_drops_are_counted_per_policy() {
    let mut cluster = Cluster::start(&[("x", json!({})), ("y", json!({}))]);
    cluster.set_policies(&[np(
        "x",
        "deny-in",
        json!({ "podSelector": {}, "policyTypes": ["Ingress"] }),
    )]);
    cluster.add_pod("x", "a", json!({}), true);
    cluster.add_pod("y", "b", json!({}), true);
    let _servers = Servers::start(&cluster.members(), &[80]);
    let only_x_isolated = |_: &str, to: &str, _| !to.starts_with("x/");
    check(&cluster.members(), &[TCP80], only_x_isolated).unwrap();

    harness::wait_for("the drops in the metrics", Duration::from_secs(15), || {
        cluster.scrape().lines().any(|l| {
            l.starts_with(
                r#"podnet_policy_dropped_packets_total{policy="x/deny-in",direction="ingress"}"#,
            ) && !l.ends_with(" 0")
        })
    });

    cluster.daemon.kill9();
    check(&cluster.members(), &[TCP80], only_x_isolated).expect("denied while podnetd is down");
    cluster.daemon.restart(&cluster.node);
    check(&cluster.members(), &[TCP80], only_x_isolated).expect("denied once podnetd is back");
}

/// On a dual-stack node the same policies hold for IPv6: selectors
/// match a pod's IPv6 address as its IPv4 one, and an IPv6 ipBlock with
/// an except carves as an IPv4 one does.
#[test]
fn ipv6_is_enforced_alike() {
    let namespaces: Vec<(&str, serde_json::Value)> = ["x", "y"]
        .iter()
        .map(|n| (*n, json!({ "ns": n })))
        .collect();
    let mut cluster = Cluster::start_with(&namespaces, true, |_| {});
    for ns in ["x", "y"] {
        for pod in PODS {
            cluster.add_pod(ns, pod, json!({ "pod": pod }), true);
        }
    }
    let v6 = |p: &harness::TestPod| {
        *p.ips
            .iter()
            .find(|ip| ip.is_ipv6())
            .expect("an IPv6 address")
    };
    let yb = format!("{}/128", v6(cluster.pod("y/b")));
    let members = cluster.members_by(v6);
    let _servers = Servers::start(&members, &PORTS);
    cluster.set_policies(&[
        np("x", "from-y", json!({ "podSelector": ml("pod", "a"),
            "ingress": [{ "from": [{ "namespaceSelector": ml("ns", "y") }], "ports": [{ "port": 80 }] }] })),
        np("x", "out-b", json!({ "podSelector": ml("pod", "b"), "policyTypes": ["Egress"],
            "egress": [{ "to": [{ "ipBlock": { "cidr": "fd00:10:244::/56", "except": [yb] } }] }] })),
    ]);
    std::thread::sleep(SETTLE);
    let expect = |from: &str, to: &str, p: podnet_tests::reach::Probe| {
        (to != "x/a" || (from.starts_with("y/") && p == TCP80)) && (from != "x/b" || to != "y/b")
    };
    let mut outcome = check(&members, &ALL, expect);
    if outcome.is_err() {
        std::thread::sleep(Duration::from_millis(500));
        outcome = check(&members, &ALL, expect);
    }
    outcome.unwrap();
}
