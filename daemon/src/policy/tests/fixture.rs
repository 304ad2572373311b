//! The x/y/z world, policy builders, and the reachability matrix read off
//! compiled rulesets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use crate::policy::{
    compile, explain, ContainerPort, LabelSelector, Namespace, NetworkPolicy, Operator, Peer,
    Peers, Pod, PolicyType, PortRef, PortSpec, Protocol, Requirement, Rule, Ruleset, Snapshot,
    Verdict,
};

pub const NODES: [&str; 2] = ["node-1", "node-2"];
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// The pods in table order: x/a x/b x/c y/a ... z/c.
pub fn pod_names() -> Vec<(&'static str, &'static str)> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| (*ns, *p)))
        .collect()
}

/// Pod `k` (table order) runs on node `k % 2`: x/a, x/c, y/b, z/a, z/c on
/// node-1 (10.244.1.0/24, fd00:1::/64), the rest on node-2.
pub fn world() -> Snapshot {
    let namespaces = NAMESPACES
        .iter()
        .map(|ns| Namespace {
            name: (*ns).into(),
            labels: labels(&[("ns", ns), ("kubernetes.io/metadata.name", ns)]),
        })
        .collect::<Vec<_>>()
        .into();
    let pods = pod_names()
        .into_iter()
        .enumerate()
        .map(|(k, (ns, name))| {
            let node = k % 2 + 1;
            Pod {
                namespace: ns.into(),
                name: name.into(),
                node: format!("node-{node}"),
                ips: vec![
                    format!("10.244.{node}.{}", 10 + k).parse().unwrap(),
                    format!("fd00:{node}::{}", 10 + k).parse().unwrap(),
                ],
                labels: labels(&[("pod", name)]),
                ports: serving_ports(),
                host_network: false,
            }
        })
        .collect();
    Snapshot {
        namespaces,
        pods,
        policies: Default::default(),
    }
}

/// serve-80-tcp, serve-81-tcp, serve-80-udp, ... as upstream's agnhost
/// servers, SCTP included.
fn serving_ports() -> Vec<ContainerPort> {
    let mut ports = Vec::new();
    for (protocol, suffix) in [
        (Protocol::Tcp, "tcp"),
        (Protocol::Udp, "udp"),
        (Protocol::Sctp, "sctp"),
    ] {
        for port in [80, 81] {
            ports.push(ContainerPort {
                name: Some(format!("serve-{port}-{suffix}")),
                port,
                protocol,
            });
        }
    }
    ports
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

pub fn pod_mut<'s>(s: &'s mut Snapshot, ns: &str, name: &str) -> &'s mut Pod {
    s.pods
        .iter_mut()
        .find(|p| p.namespace == ns && p.name == name)
        .unwrap()
}

pub fn ip_of(s: &Snapshot, ns: &str, name: &str, v6: bool) -> IpAddr {
    let pod = s
        .pods
        .iter()
        .find(|p| p.namespace == ns && p.name == name)
        .unwrap();
    *pod.ips.iter().find(|ip| ip.is_ipv6() == v6).unwrap()
}

// ---- policy builders ----

pub fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels(pairs),
        match_expressions: Vec::new(),
    }
}

pub fn expr(key: &str, op: Operator, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![Requirement {
            key: key.into(),
            op,
            values: values.iter().map(|v| (*v).into()).collect(),
        }],
    }
}

pub fn all() -> LabelSelector {
    LabelSelector::default()
}

pub fn pods(pod_selector: LabelSelector) -> Peer {
    Peer::Pods {
        namespace_selector: None,
        pod_selector: Some(pod_selector),
    }
}

pub fn namespaces(namespace_selector: LabelSelector) -> Peer {
    Peer::Pods {
        namespace_selector: Some(namespace_selector),
        pod_selector: None,
    }
}

pub fn pods_in(namespace_selector: LabelSelector, pod_selector: LabelSelector) -> Peer {
    Peer::Pods {
        namespace_selector: Some(namespace_selector),
        pod_selector: Some(pod_selector),
    }
}

pub fn block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock {
        cidr: cidr.parse().unwrap(),
        except: except.iter().map(|e| e.parse().unwrap()).collect(),
    }
}

pub fn rule(peers: Vec<Peer>, ports: Vec<PortSpec>) -> Rule {
    Rule { peers, ports }
}

pub fn port(protocol: Protocol, n: u16) -> PortSpec {
    PortSpec {
        protocol,
        port: Some(PortRef::Number(n)),
        end_port: None,
    }
}

pub fn tcp(n: u16) -> PortSpec {
    port(Protocol::Tcp, n)
}

pub fn range(protocol: Protocol, first: u16, last: u16) -> PortSpec {
    PortSpec {
        end_port: Some(last),
        ..port(protocol, first)
    }
}

pub fn named(protocol: Protocol, name: &str) -> PortSpec {
    PortSpec {
        protocol,
        port: Some(PortRef::Name(name.into())),
        end_port: None,
    }
}

/// A policy of namespace `ns`; `types: None` leaves policyTypes to
/// inference.
pub fn policy(
    ns: &str,
    name: &str,
    pod_selector: LabelSelector,
    types: Option<&[PolicyType]>,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
) -> NetworkPolicy {
    NetworkPolicy {
        namespace: ns.into(),
        name: name.into(),
        pod_selector,
        policy_types: types.map(<[PolicyType]>::to_vec),
        ingress,
        egress,
    }
}

pub const INGRESS: &[PolicyType] = &[PolicyType::Ingress];
pub const EGRESS: &[PolicyType] = &[PolicyType::Egress];
pub const BOTH: &[PolicyType] = &[PolicyType::Ingress, PolicyType::Egress];

pub fn with(policies: Vec<NetworkPolicy>) -> Snapshot {
    Snapshot {
        policies: policies.into(),
        ..world()
    }
}

// ---- reading compiled rules ----

/// What a ruleset says of one packet of a new connection, for the pod
/// with `pod_ip` in `direction`, with the peer at `peer_ip`.
pub fn allowed_by_ruleset(
    rs: &Ruleset,
    pod_ip: IpAddr,
    direction: PolicyType,
    peer_ip: IpAddr,
    port: u16,
    protocol: Protocol,
) -> bool {
    let Some(rules) = rs.pods.get(&pod_ip) else {
        panic!("{pod_ip} has no rules on this node");
    };
    let allows = match direction {
        PolicyType::Ingress => &rules.ingress,
        PolicyType::Egress => &rules.egress,
    };
    let Some(allows) = allows else { return true };
    allows.iter().any(|a| {
        let peer_ok = match a.peers {
            Peers::Any => true,
            Peers::Set(id) => rs.peer_sets[&id].contains(peer_ip),
        };
        let port_ok = a.ports.is_empty() || a.ports.iter().any(|m| m.contains(protocol, port));
        peer_ok && port_ok
    })
}

pub fn rulesets(s: &Snapshot) -> BTreeMap<String, Ruleset> {
    NODES
        .iter()
        .map(|n| ((*n).to_owned(), compile(s, n)))
        .collect()
}

/// The connection from `from` to `to` as both nodes' rules see it; a pod
/// reaching itself never leaves its namespace.
pub fn reaches(
    s: &Snapshot,
    sets: &BTreeMap<String, Ruleset>,
    from: (&str, &str),
    to: (&str, &str),
    v6: bool,
    port: u16,
    protocol: Protocol,
) -> bool {
    if from == to {
        return true;
    }
    let node_of = |(ns, name): (&str, &str)| {
        let p = s
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
            .unwrap();
        p.node.clone()
    };
    let src = ip_of(s, from.0, from.1, v6);
    let dst = ip_of(s, to.0, to.1, v6);
    allowed_by_ruleset(
        &sets[&node_of(from)],
        src,
        PolicyType::Egress,
        dst,
        port,
        protocol,
    ) && allowed_by_ruleset(
        &sets[&node_of(to)],
        dst,
        PolicyType::Ingress,
        src,
        port,
        protocol,
    )
}

/// The 9x9 table, rows sources and columns destinations, `.` reachable
/// and `X` not, as upstream's e2e tables.
pub fn matrix(s: &Snapshot, v6: bool, port: u16, protocol: Protocol) -> String {
    let sets = rulesets(s);
    let names = pod_names();
    let mut out = String::from("   ");
    for (ns, p) in &names {
        write!(out, " {ns}{p}").unwrap();
    }
    for from in &names {
        write!(out, "\n{}{} ", from.0, from.1).unwrap();
        for to in &names {
            let ok = reaches(s, &sets, *from, *to, v6, port, protocol);
            out.push_str(if ok { "  ." } else { "  X" });
        }
    }
    out
}

/// `expected` written as [`matrix`] prints it (spacing free).
fn normalized(table: &str) -> String {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The table for one address family.
pub fn expect_family(s: &Snapshot, v6: bool, port: u16, protocol: Protocol, expected: &str) {
    let got = matrix(s, v6, port, protocol);
    let family = if v6 { "IPv6" } else { "IPv4" };
    assert_eq!(
        normalized(&got),
        normalized(expected),
        "\n{family} {port}/{}: got\n{got}\nexpected\n{expected}",
        protocol.as_str()
    );
}

/// The table, for IPv4 and IPv6 alike, and `explain` agreeing on every
/// cell (it answers for the destination's first, IPv4, address).
pub fn expect(s: &Snapshot, port: u16, protocol: Protocol, expected: &str) {
    expect_family(s, false, port, protocol, expected);
    expect_family(s, true, port, protocol, expected);
    agrees_with_explain(s, port, protocol);
}

pub fn agrees_with_explain(s: &Snapshot, port: u16, protocol: Protocol) {
    let sets = rulesets(s);
    for from in pod_names() {
        for to in pod_names() {
            let compiled = reaches(s, &sets, from, to, false, port, protocol);
            let e = explain(s, from, to, port, protocol).unwrap();
            let explained = e.verdict == Verdict::Allow;
            assert_eq!(
                explained, compiled,
                "{from:?} -> {to:?} {port}/{protocol:?}: explain {e:?}"
            );
        }
    }
}

/// Every cell reachable.
pub const OPEN: &str = "
    xa xb xc ya yb yc za zb zc
xa  .  .  .  .  .  .  .  .  .
xb  .  .  .  .  .  .  .  .  .
xc  .  .  .  .  .  .  .  .  .
ya  .  .  .  .  .  .  .  .  .
yb  .  .  .  .  .  .  .  .  .
yc  .  .  .  .  .  .  .  .  .
za  .  .  .  .  .  .  .  .  .
zb  .  .  .  .  .  .  .  .  .
zc  .  .  .  .  .  .  .  .  .";
