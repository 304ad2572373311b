//! The compiler against the oracle on random snapshots: `compile` gives
//! what the first engine gave, and a `Compiler` fed a run of random
//! changes gives at every step what a fresh compile of that snapshot
//! gives, with every entry that differs from its previous result listed
//! in its changes.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::fixture::labels;
use super::reference;
use crate::policy::{
    compile, Compiler, ContainerPort, LabelSelector, Namespace, NetworkPolicy, Operator, Peer, Pod,
    PolicyType, PortRef, PortSpec, Protocol, Requirement, Rule, Ruleset, Snapshot,
};

pub(crate) const NODE: &str = "n1";

/// xorshift64*: repeatable from its seed.
pub(crate) struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const APPS: [&str; 4] = ["web", "db", "api", "job"];

fn namespace(rng: &mut Rng, name: &str) -> Namespace {
    let mut pairs = vec![("kubernetes.io/metadata.name", name)];
    if rng.chance(70) {
        pairs.push(("team", rng.pick(&["t0", "t1"])));
    }
    Namespace {
        name: name.into(),
        labels: labels(&pairs),
    }
}

/// Addresses from small pools, so pods share them now and then.
fn ip(rng: &mut Rng) -> IpAddr {
    let host = 1 + rng.below(24) as u8;
    if rng.chance(75) {
        IpAddr::from([10, 0, 0, host])
    } else {
        format!("fd00::{host:x}").parse().unwrap()
    }
}

fn pod(rng: &mut Rng, k: usize) -> Pod {
    let mut pairs = vec![("app", rng.pick(&APPS))];
    if rng.chance(50) {
        pairs.push(("tier", rng.pick(&["front", "back"])));
    }
    let ports = [("http", 80, Protocol::Tcp), ("http", 8080, Protocol::Tcp)]
        .into_iter()
        .chain([("dns", 53, Protocol::Udp), ("metrics", 9100, Protocol::Tcp)])
        .filter(|_| rng.chance(30))
        .map(|(name, port, protocol)| ContainerPort {
            name: Some(name.into()),
            port,
            protocol,
        })
        .collect();
    Pod {
        namespace: rng.pick(&NAMESPACES).into(),
        name: format!("p{k}"),
        node: rng.pick(&[NODE, NODE, "n2", ""]).into(),
        ips: (0..rng.below(3)).map(|_| ip(rng)).collect(),
        labels: labels(&pairs),
        ports,
        host_network: rng.chance(5),
    }
}

fn selector(rng: &mut Rng) -> LabelSelector {
    let mut sel = LabelSelector::default();
    match rng.below(6) {
        0 => {}
        1 | 2 => {
            sel.match_labels = labels(&[("app", rng.pick(&APPS))]);
        }
        3 => {
            let op = [
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist,
            ][rng.below(4)];
            let values = match op {
                Operator::In | Operator::NotIn => (0..1 + rng.below(2))
                    .map(|_| rng.pick(&APPS).to_owned())
                    .collect(),
                _ => Vec::new(),
            };
            let key = rng.pick(&["app", "tier"]).to_owned();
            sel.match_expressions = vec![Requirement { key, op, values }];
        }
        4 => {
            sel.match_labels = labels(&[("tier", rng.pick(&["front", "back"]))]);
        }
        _ => {
            sel.match_labels = labels(&[("team", rng.pick(&["t0", "t1"]))]);
        }
    }
    sel
}

fn peer(rng: &mut Rng) -> Peer {
    if rng.chance(25) {
        let cidr = rng.pick(&["10.0.0.0/28", "10.0.0.0/24", "0.0.0.0/0", "fd00::/120"]);
        let except = (rng.chance(50))
            .then(|| rng.pick(&["10.0.0.4/30", "10.0.0.8/31", "fd00::10/126"]))
            .into_iter()
            .map(|c| c.parse().unwrap())
            .filter(|c: &ipnetwork::IpNetwork| c.is_ipv4() == cidr.contains('.'))
            .collect();
        return Peer::IpBlock {
            cidr: cidr.parse().unwrap(),
            except,
        };
    }
    Peer::Pods {
        namespace_selector: rng.chance(40).then(|| selector(rng)),
        pod_selector: rng.chance(80).then(|| selector(rng)),
    }
}

fn port(rng: &mut Rng) -> PortSpec {
    let protocol = [Protocol::Tcp, Protocol::Tcp, Protocol::Udp][rng.below(3)];
    let (port, end_port) = match rng.below(5) {
        0 => (None, None),
        1 => (Some(PortRef::Number(80)), None),
        2 => (Some(PortRef::Number(8000)), Some(8100)),
        3 => (Some(PortRef::Name("http".into())), None),
        _ => (
            Some(PortRef::Name(rng.pick(&["dns", "metrics"]).into())),
            None,
        ),
    };
    PortSpec {
        protocol,
        port,
        end_port,
    }
}

fn rules(rng: &mut Rng) -> Vec<Rule> {
    (0..rng.below(3))
        .map(|_| Rule {
            peers: (0..rng.below(3)).map(|_| peer(rng)).collect(),
            ports: (0..rng.below(3)).map(|_| port(rng)).collect(),
        })
        .collect()
}

fn policy(rng: &mut Rng, k: usize) -> NetworkPolicy {
    let policy_types = match rng.below(5) {
        0 => None,
        1 => Some(vec![PolicyType::Ingress]),
        2 => Some(vec![PolicyType::Egress]),
        3 => Some(vec![PolicyType::Ingress, PolicyType::Egress]),
        _ => Some(Vec::new()),
    };
    NetworkPolicy {
        namespace: rng.pick(&NAMESPACES).into(),
        name: format!("q{k}"),
        pod_selector: selector(rng),
        policy_types,
        ingress: rules(rng),
        egress: rules(rng),
    }
}

pub(crate) fn snapshot(rng: &mut Rng) -> Snapshot {
    Snapshot {
        namespaces: Arc::new(NAMESPACES.iter().map(|n| namespace(rng, n)).collect()),
        pods: (0..5 + rng.below(20)).map(|k| pod(rng, k)).collect(),
        policies: Arc::new((0..rng.below(10)).map(|k| policy(rng, k)).collect()),
    }
}

/// One change of the kinds a cluster sees, now and then several at once.
pub(crate) fn mutate(rng: &mut Rng, s: &mut Snapshot, step: usize) {
    for _ in 0..1 + rng.below(2) {
        let pods = s.pods.len();
        let policies = s.policies.len();
        match rng.below(12) {
            0 if pods > 0 => {
                let p = &mut s.pods[rng.below(pods)];
                p.labels.insert("app".into(), rng.pick(&APPS).into());
            }
            1 => {
                let p = pod(rng, 100 + step);
                s.pods.push(p);
            }
            2 if pods > 0 => {
                s.pods.remove(rng.below(pods));
            }
            3 if pods > 0 => {
                let i = rng.below(pods);
                s.pods[i].ips = (0..rng.below(3)).map(|_| ip(rng)).collect();
            }
            4 if pods > 0 => {
                let i = rng.below(pods);
                s.pods[i].node = rng.pick(&[NODE, "n2"]).into();
            }
            5 if pods > 0 => {
                let i = rng.below(pods);
                let fresh = pod(rng, i);
                s.pods[i].ports = fresh.ports;
            }
            6 => Arc::make_mut(&mut s.policies).push(policy(rng, 100 + step)),
            7 if policies > 0 => {
                Arc::make_mut(&mut s.policies).remove(rng.below(policies));
            }
            8 if policies > 0 => {
                let i = rng.below(policies);
                Arc::make_mut(&mut s.policies)[i].ingress.extend(rules(rng));
            }
            9 if policies > 0 => {
                let i = rng.below(policies);
                Arc::make_mut(&mut s.policies)[i].pod_selector = selector(rng);
            }
            10 if rng.chance(30) => {
                let i = rng.below(s.namespaces.len());
                let name = s.namespaces[i].name.clone();
                Arc::make_mut(&mut s.namespaces)[i] = namespace(rng, &name);
            }
            _ => {
                // The same objects, listed in another order.
                if pods > 1 {
                    let i = rng.below(pods);
                    s.pods.swap(0, i);
                }
                if policies > 1 {
                    let i = rng.below(policies);
                    Arc::make_mut(&mut s.policies).swap(0, i);
                }
            }
        }
    }
}

/// Every entry that differs between `before` and `after` is listed.
fn assert_listed(before: &Ruleset, after: &Ruleset, compiler: &Compiler, what: &str) {
    let changes = compiler.changes();
    if changes.all {
        return;
    }
    let ips: BTreeSet<&IpAddr> = before.pods.keys().chain(after.pods.keys()).collect();
    for ip in ips {
        if before.pods.get(ip) != after.pods.get(ip) {
            assert!(changes.pods.contains(ip), "{what}: {ip} changed, unlisted");
        }
    }
    let ids: BTreeSet<_> = before
        .peer_sets
        .keys()
        .chain(after.peer_sets.keys())
        .collect();
    for id in ids {
        if before.peer_sets.get(id) != after.peer_sets.get(id) {
            assert!(
                changes.sets.contains(id),
                "{what}: set {id} changed, unlisted"
            );
        }
    }
}

#[test]
fn compile_gives_what_the_first_engine_gave() {
    let (mut allows, mut sets) = (0, 0);
    for seed in 1..=300u64 {
        let s = snapshot(&mut Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        for node in [NODE, "n2"] {
            let rs = compile(&s, node);
            assert_eq!(rs, reference::compile(&s, node), "seed {seed}, node {node}");
            let all = rs
                .pods
                .values()
                .flat_map(|r| r.ingress.iter().chain(&r.egress));
            allows += all.flatten().count();
            sets += rs.peer_sets.len();
        }
    }
    // The snapshots are not trivial: they make rules and sets.
    assert!(allows > 1000 && sets > 300, "{allows} allows, {sets} sets");
}

#[test]
fn a_compiler_fed_changes_gives_what_a_fresh_compile_gives() {
    let mut partial = 0;
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut s = snapshot(&mut rng);
        let mut compiler = Compiler::new(NODE);
        let mut before = Ruleset::default();
        for step in 0..40 {
            let what = format!("seed {seed}, step {step}");
            let got = compiler.compile(&s).clone();
            assert_eq!(got, reference::compile(&s, NODE), "{what}");
            assert!(step > 0 || compiler.changes().all, "{what}: first compile");
            assert_listed(&before, &got, &compiler, &what);
            let changes = compiler.changes();
            partial += usize::from(!changes.all && !changes.pods.is_empty());
            before = got;
            mutate(&mut rng, &mut s, step);
        }
    }
    // Many steps change some entries, and not everything.
    assert!(partial > 600, "{partial} partial changes in 2400 steps");
}

#[test]
fn the_same_snapshot_changes_nothing() {
    let s = snapshot(&mut Rng(7));
    let mut compiler = Compiler::new(NODE);
    let first = compiler.compile(&s).clone();
    let again = compiler.compile(&s).clone();
    assert_eq!(first, again);
    let changes = compiler.changes();
    assert!(!changes.all && changes.pods.is_empty() && changes.sets.is_empty());
}
