//! The simulated cluster: namespaces, pods on this node and on others, and
//! NetworkPolicies of the kinds clusters carry; the three real pods of the
//! traffic phase in it; and the changes the change phase makes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use podnet_tests::churn::Rng;
use podnet_tests::policy::{labels, sel};
use podnetd::policy::{
    ContainerPort, LabelSelector, Namespace, NetworkPolicy, Operator, Peer, Pod, PolicyType,
    PortRef, PortSpec, Protocol, Requirement, Rule, Snapshot,
};

use crate::{NODE, PORT, REAL_NS};

/// How big the simulated cluster is.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub namespaces: usize,
    pub local: usize,
    pub remote: usize,
    pub policies: usize,
}

/// The real pods' addresses: a client and a server on this node's bridge,
/// and a pod of another node routed through it.
pub struct Real {
    pub client: Ipv4Addr,
    pub server: Ipv4Addr,
    pub remote: Ipv4Addr,
}

/// Apps per namespace: a policy selects one app (a Deployment's pods).
const APPS: usize = 20;
const TIERS: [&str; 3] = ["web", "api", "db"];
const TEAMS: usize = 5;
/// The addresses of simulated pods: this node's from 10.96.0.0/16, other
/// nodes' from 10.112.0.0/12, apart from the real pods' (10.244.1.0/24,
/// 10.0.9.0/24).
const LOCAL_BASE: u32 = 0x0a60_0000;
const REMOTE_BASE: u32 = 0x0a70_0000;

fn tcp(port: PortRef) -> PortSpec {
    PortSpec {
        protocol: Protocol::Tcp,
        port: Some(port),
        end_port: None,
    }
}

fn ns_name(i: usize) -> String {
    format!("ns-{i}")
}

/// Simulated pod `i`: its namespace, app and tier follow from `i`.
pub fn pod(sizes: &Sizes, i: usize, local: bool) -> Pod {
    let ns = i % sizes.namespaces;
    let app = (i / sizes.namespaces) % APPS;
    let tier = TIERS[app % TIERS.len()];
    let base = if local { LOCAL_BASE } else { REMOTE_BASE };
    let ip = Ipv4Addr::from(base + 1 + i as u32);
    Pod {
        namespace: ns_name(ns),
        name: format!("{}-{i}", if local { "pod" } else { "far" }),
        node: if local { NODE } else { "other-node" }.into(),
        ips: vec![IpAddr::V4(ip)],
        labels: labels(&[("app", &format!("app{app}")), ("tier", tier)]),
        ports: vec![
            ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            },
            ContainerPort {
                name: Some("metrics".into()),
                port: 9090,
                protocol: Protocol::Tcp,
            },
        ],
        host_network: false,
    }
}

fn real_pod(name: &str, ip: Ipv4Addr, node: &str, role: &str) -> Pod {
    Pod {
        namespace: REAL_NS.into(),
        name: name.into(),
        node: node.into(),
        ips: vec![IpAddr::V4(ip)],
        labels: labels(&[("app", "bench"), ("role", role)]),
        ports: vec![ContainerPort {
            name: Some("http".into()),
            port: PORT,
            protocol: Protocol::Tcp,
        }],
        host_network: false,
    }
}

/// The cluster: `sizes.local` simulated pods on this node, `sizes.remote`
/// on others, the real pods, and `sizes.policies` policies (none with 0).
/// With policies, the real pods are isolated both ways and allowed to each
/// other on [`PORT`] only.
pub fn snapshot(sizes: &Sizes, real: &Real) -> Snapshot {
    let mut namespaces: Vec<Namespace> = (0..sizes.namespaces)
        .map(|i| Namespace {
            name: ns_name(i),
            labels: labels(&[
                ("kubernetes.io/metadata.name", &ns_name(i)),
                ("team", &format!("t{}", i % TEAMS)),
                ("env", if i % 2 == 0 { "prod" } else { "staging" }),
            ]),
        })
        .collect();
    namespaces.push(Namespace {
        name: REAL_NS.into(),
        labels: labels(&[("kubernetes.io/metadata.name", REAL_NS)]),
    });
    let mut pods: Vec<Pod> = (0..sizes.local).map(|i| pod(sizes, i, true)).collect();
    pods.extend((0..sizes.remote).map(|i| pod(sizes, i, false)));
    pods.push(real_pod("client", real.client, NODE, "client"));
    pods.push(real_pod("server", real.server, NODE, "server"));
    pods.push(real_pod("remote", real.remote, "other-node", "client"));
    let mut policies = Vec::new();
    if sizes.policies > 0 {
        policies.extend(real_policies());
    }
    let simulated = sizes.policies.saturating_sub(policies.len());
    policies.extend((0..simulated).map(|j| policy(sizes, j)));
    Snapshot {
        namespaces: namespaces.into(),
        pods,
        policies: policies.into(),
    }
}

/// The real pods' namespace denies everything both ways; the bench pods
/// may reach each other on PORT (by number and by name), and a few
/// policies select them that allow something else (chains of several
/// rules, as pods carry).
fn real_policies() -> Vec<NetworkPolicy> {
    let bench = || {
        vec![Peer::Pods {
            namespace_selector: None,
            pod_selector: Some(sel(&[("app", "bench")])),
        }]
    };
    let both = Some(vec![PolicyType::Ingress, PolicyType::Egress]);
    let deny = NetworkPolicy {
        namespace: REAL_NS.into(),
        name: "default-deny".into(),
        pod_selector: LabelSelector::default(),
        policy_types: both.clone(),
        ingress: Vec::new(),
        egress: Vec::new(),
    };
    let allow = NetworkPolicy {
        namespace: REAL_NS.into(),
        name: "bench-allow".into(),
        pod_selector: sel(&[("app", "bench")]),
        policy_types: both.clone(),
        ingress: vec![Rule {
            peers: bench(),
            ports: vec![tcp(PortRef::Number(PORT))],
        }],
        egress: vec![Rule {
            peers: bench(),
            ports: vec![tcp(PortRef::Name("http".into()))],
        }],
    };
    let monitoring = NetworkPolicy {
        namespace: REAL_NS.into(),
        name: "bench-monitoring".into(),
        pod_selector: sel(&[("app", "bench")]),
        policy_types: both,
        ingress: vec![Rule {
            peers: vec![Peer::IpBlock {
                cidr: "10.200.0.0/16".parse().unwrap_or_else(|_| unreachable!()),
                except: Vec::new(),
            }],
            ports: vec![tcp(PortRef::Number(9090))],
        }],
        egress: vec![Rule {
            peers: vec![Peer::Pods {
                namespace_selector: Some(sel(&[("team", "t1")])),
                pod_selector: Some(sel(&[("tier", "db")])),
            }],
            ports: vec![tcp(PortRef::Number(5432))],
        }],
    };
    vec![deny, allow, monitoring]
}

/// Simulated policy `j`, of one of the kinds clusters carry, in namespace
/// `j % namespaces`, selecting one app there.
pub fn policy(sizes: &Sizes, j: usize) -> NetworkPolicy {
    let ns = j % sizes.namespaces;
    let app = (j / sizes.namespaces) % APPS;
    let mut p = NetworkPolicy {
        namespace: ns_name(ns),
        name: format!("policy-{j}"),
        pod_selector: sel(&[("app", &format!("app{app}"))]),
        policy_types: None,
        ingress: Vec::new(),
        egress: Vec::new(),
    };
    match j % 5 {
        // Deny all ingress to the app.
        0 => p.policy_types = Some(vec![PolicyType::Ingress]),
        // From the web tier of the namespace, on the http port by name.
        1 => {
            p.ingress = vec![Rule {
                peers: vec![Peer::Pods {
                    namespace_selector: None,
                    pod_selector: Some(sel(&[("tier", "web")])),
                }],
                ports: vec![tcp(PortRef::Name("http".into()))],
            }]
        }
        // From one app of the team's namespaces, on 8080.
        2 => {
            p.ingress = vec![Rule {
                peers: vec![Peer::Pods {
                    namespace_selector: Some(sel(&[("team", &format!("t{}", j % TEAMS))])),
                    pod_selector: Some(sel(&[("app", &format!("app{}", (app + 1) % APPS))])),
                }],
                ports: vec![tcp(PortRef::Number(8080))],
            }]
        }
        // Egress to DNS and to the namespace's databases; and ingress from
        // monitoring on metrics.
        3 => {
            p.policy_types = Some(vec![PolicyType::Ingress, PolicyType::Egress]);
            p.egress = vec![
                Rule {
                    peers: vec![Peer::IpBlock {
                        cidr: "10.96.0.10/32".parse().unwrap_or_else(|_| unreachable!()),
                        except: Vec::new(),
                    }],
                    ports: vec![PortSpec {
                        protocol: Protocol::Udp,
                        port: Some(PortRef::Number(53)),
                        end_port: None,
                    }],
                },
                Rule {
                    peers: vec![Peer::Pods {
                        namespace_selector: None,
                        pod_selector: Some(sel(&[("tier", "db")])),
                    }],
                    ports: vec![tcp(PortRef::Number(5432))],
                },
            ];
            p.ingress = vec![Rule {
                peers: vec![Peer::Pods {
                    namespace_selector: Some(sel(&[("env", "prod")])),
                    pod_selector: Some(LabelSelector {
                        match_labels: BTreeMap::new(),
                        match_expressions: vec![Requirement {
                            key: "tier".into(),
                            op: Operator::In,
                            values: vec!["web".into(), "api".into()],
                        }],
                    }),
                }],
                ports: vec![tcp(PortRef::Name("metrics".into()))],
            }];
        }
        // Egress anywhere but the cluster's ranges, on 443.
        _ => {
            p.policy_types = Some(vec![PolicyType::Egress]);
            p.egress = vec![Rule {
                peers: vec![Peer::IpBlock {
                    cidr: "0.0.0.0/0".parse().unwrap_or_else(|_| unreachable!()),
                    except: vec![
                        "10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!()),
                        format!("192.168.{}.0/24", j % 256)
                            .parse()
                            .unwrap_or_else(|_| unreachable!()),
                    ],
                }],
                ports: vec![tcp(PortRef::Number(443))],
            }];
        }
    }
    p
}

/// The kinds of change the change phase makes, in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    AddRule,
    DeletePolicy,
    PodLabel,
    AddPod,
    RemovePod,
}

pub const CHANGES: [Change; 5] = [
    Change::AddRule,
    Change::DeletePolicy,
    Change::PodLabel,
    Change::AddPod,
    Change::RemovePod,
];

impl Change {
    pub fn describe(self) -> &'static str {
        match self {
            Change::AddRule => "add an ingress rule to a policy",
            Change::DeletePolicy => "delete a policy",
            Change::PodLabel => "change a local pod's app label",
            Change::AddPod => "add a local pod",
            Change::RemovePod => "remove a local pod",
        }
    }
}

/// Makes one change of `kind` to the simulated objects (never the real
/// pods' namespace), picked at random; `n` numbers new objects.
pub fn change(s: &mut Snapshot, sizes: &Sizes, kind: Change, rng: &mut Rng, n: usize) {
    let simulated_policy = |p: &NetworkPolicy| p.namespace != REAL_NS;
    let local_pod = |p: &Pod| p.node == NODE && p.namespace != REAL_NS;
    match kind {
        Change::AddRule => {
            if let Some(i) = pick(rng, &s.policies, simulated_policy) {
                let team = format!("t{}", rng.below(TEAMS as u64));
                std::sync::Arc::make_mut(&mut s.policies)[i]
                    .ingress
                    .push(Rule {
                        peers: vec![Peer::Pods {
                            namespace_selector: Some(sel(&[("team", &team)])),
                            pod_selector: Some(sel(&[("tier", "api")])),
                        }],
                        ports: vec![tcp(PortRef::Number(7000 + (n % 1000) as u16))],
                    });
            }
        }
        Change::DeletePolicy => {
            if let Some(i) = pick(rng, &s.policies, simulated_policy) {
                std::sync::Arc::make_mut(&mut s.policies).remove(i);
            }
        }
        Change::PodLabel => {
            if let Some(i) = pick(rng, &s.pods, local_pod) {
                let app = format!("app{}", rng.below(APPS as u64));
                s.pods[i].labels.insert("app".into(), app);
            }
        }
        Change::AddPod => {
            let mut p = pod(sizes, rng.below(sizes.local.max(1) as u64) as usize, true);
            p.name = format!("new-{n}");
            p.ips = vec![IpAddr::V4(Ipv4Addr::from(
                LOCAL_BASE + 0xc000 + n as u32 % 0x3fff,
            ))];
            s.pods.push(p);
        }
        Change::RemovePod => {
            if let Some(i) = pick(rng, &s.pods, local_pod) {
                s.pods.remove(i);
            }
        }
    }
}

/// A random item that `ok` accepts (a few tries, then the first that does).
fn pick<T>(rng: &mut Rng, items: &[T], ok: impl Fn(&T) -> bool) -> Option<usize> {
    if items.is_empty() {
        return None;
    }
    for _ in 0..16 {
        let i = rng.below(items.len() as u64) as usize;
        if ok(&items[i]) {
            return Some(i);
        }
    }
    items.iter().position(ok)
}
