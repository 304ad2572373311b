//! A table kept in step change by change (the policy `Compiler` and
//! `PolicyTable::apply_changes`) holds what a table written whole from the
//! same snapshot holds: after each of a run of cluster changes (pods come,
//! go and change labels, policies come, go and gain rules), every pod chain
//! reads back as written, and now and then the two tables, listed by `nft`
//! in two namespaces, are the same objects. No packet is sent.

use std::net::{IpAddr, Ipv4Addr};

use podnet_tests::netns::TestNetns;
use podnet_tests::policy::{labels, sel};
use podnet_tests::require_root;
use podnet_tests::routed::nft;
use podnetd::kernel::policy::PolicyTable;
use podnetd::policy::{
    compile, Compiler, ContainerPort, Namespace, NetworkPolicy, Peer, Pod, PolicyType, PortRef,
    PortSpec, Protocol, Rule, Snapshot,
};

const NODE: &str = "n1";
const APPS: [&str; 4] = ["web", "api", "db", "job"];

fn pod(k: u32) -> Pod {
    Pod {
        namespace: ["a", "b"][k as usize % 2].into(),
        name: format!("p{k}"),
        node: if k % 3 == 2 { "n2" } else { NODE }.into(),
        ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a2c_0000 + k))],
        labels: labels(&[("app", APPS[k as usize % 4])]),
        ports: vec![ContainerPort {
            name: Some("http".into()),
            port: 8000 + (k % 3) as u16,
            protocol: Protocol::Tcp,
        }],
        host_network: false,
    }
}

fn tcp(port: PortRef) -> PortSpec {
    PortSpec {
        protocol: Protocol::Tcp,
        port: Some(port),
        end_port: None,
    }
}

fn policy(k: u32) -> NetworkPolicy {
    let from = Peer::Pods {
        namespace_selector: (k % 2 == 0).then(|| sel(&[("team", "t1")])),
        pod_selector: Some(sel(&[("app", APPS[(k as usize + 1) % 4])])),
    };
    let block = Peer::IpBlock {
        cidr: "10.44.0.0/16".parse().unwrap(),
        except: vec![format!("10.44.0.{}/32", k % 40).parse().unwrap()],
    };
    NetworkPolicy {
        namespace: ["a", "b"][k as usize % 2].into(),
        name: format!("q{k}"),
        pod_selector: sel(&[("app", APPS[k as usize % 4])]),
        policy_types: Some(vec![PolicyType::Ingress, PolicyType::Egress]),
        ingress: vec![Rule {
            peers: vec![from.clone()],
            ports: vec![tcp(PortRef::Name("http".into()))],
        }],
        egress: vec![Rule {
            peers: vec![from, block],
            ports: vec![tcp(PortRef::Number(443)), tcp(PortRef::Name("http".into()))],
        }],
    }
}

fn cluster() -> Snapshot {
    Snapshot {
        namespaces: ["a", "b"]
            .iter()
            .map(|n| Namespace {
                name: (*n).into(),
                labels: labels(&[("team", if *n == "a" { "t1" } else { "t2" })]),
            })
            .collect::<Vec<_>>()
            .into(),
        pods: (0..30).map(pod).collect(),
        policies: std::sync::Arc::new((0..8).map(policy).collect()),
    }
}

/// Change `step` of the run: each kind in turn.
fn change(s: &mut Snapshot, step: u32) {
    let n = step as usize;
    match step % 6 {
        0 => s.pods.push(pod(100 + step)),
        1 => {
            let i = n % s.pods.len();
            s.pods.remove(i);
        }
        2 => {
            let i = (n * 7) % s.pods.len();
            let app = APPS[n % 4];
            s.pods[i].labels.insert("app".into(), app.into());
        }
        3 => std::sync::Arc::make_mut(&mut s.policies).push(policy(100 + step)),
        4 => {
            let i = n % s.policies.len();
            std::sync::Arc::make_mut(&mut s.policies).remove(i);
        }
        _ => {
            let i = n % s.policies.len();
            std::sync::Arc::make_mut(&mut s.policies)[i]
                .ingress
                .push(Rule {
                    peers: Vec::new(),
                    ports: vec![tcp(PortRef::Number(9000 + step as u16))],
                });
        }
    }
}

/// The table's objects as `nft` lists them, each chain, set and map one
/// text, sorted: the order objects were created in is not what they are.
fn objects(ns: &TestNetns) -> Vec<String> {
    let listing = nft(ns, &["list", "table", "inet", "podnet-policy"]);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in listing.lines() {
        let top = line.starts_with('\t') && !line.starts_with("\t\t");
        if top && line.trim() == "}" {
            out.extend(current.take());
        } else if top {
            current = Some(line.to_owned());
        } else if let Some(obj) = &mut current {
            obj.push('\n');
            obj.push_str(line);
        }
    }
    out.sort();
    out
}

#[test]
fn a_table_kept_by_changes_is_the_table_written_whole() {
    require_root();
    let kept = TestNetns::new("pck");
    let whole = TestNetns::new("pcw");
    let mut s = cluster();
    let mut compiler = Compiler::new(NODE);
    let mut table = PolicyTable::new();
    for step in 0..36 {
        compiler.compile(&s);
        let ruleset = compiler.ruleset();
        let isolated: usize = (ruleset.pods.values())
            .map(|r| usize::from(r.ingress.is_some()) + usize::from(r.egress.is_some()))
            .sum();
        let counters = kept
            .run(|| {
                table.apply_changes(ruleset, compiler.changes())?;
                table.counters()
            })
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        // One chain per isolated pod and direction (one address each here),
        // each read back as written.
        assert_eq!(counters.len(), isolated, "step {step}");
        if step % 6 == 5 {
            let fresh = compile(&s, NODE);
            assert_eq!(*ruleset, fresh, "step {step}");
            whole
                .run(|| PolicyTable::new().apply(fresh))
                .unwrap_or_else(|e| panic!("step {step}: {e}"));
            let listed = objects(&kept);
            // Base chains, maps, sets and pod chains: not an empty listing.
            assert!(listed.len() > isolated, "step {step}: {listed:#?}");
            assert_eq!(listed, objects(&whole), "step {step}");
        }
        change(&mut s, step);
    }
}
