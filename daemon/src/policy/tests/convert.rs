//! From `k8s-openapi` objects, written as the API serves them.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as networking;
use serde_json::json;

use super::fixture::{block, labels, namespaces, pods_in, range, sel};
use crate::policy::convert::{self, At, ConvertError, Kind, Problem};
use crate::policy::{
    ContainerPort, Operator, PolicyType, PortRef, PortSpec, Protocol, Requirement, Rule,
};

fn np(spec: serde_json::Value) -> networking::NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": { "namespace": "x", "name": "p" },
        "spec": spec,
    }))
    .unwrap()
}

#[test]
fn a_full_policy() {
    let c = convert::network_policy(&np(json!({
        "podSelector": { "matchExpressions": [{ "key": "pod", "operator": "In", "values": ["a"] }] },
        "ingress": [{
            "from": [
                { "namespaceSelector": { "matchLabels": { "ns": "y" } }, "podSelector": {} },
                { "ipBlock": { "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"] } },
            ],
            "ports": [
                { "port": 80, "endPort": 90 },
                { "protocol": "UDP", "port": "dns" },
                { "protocol": "SCTP" },
            ],
        }],
        "egress": [{}],
    })))
    .unwrap();
    assert_eq!(c.left_out, vec![]);
    let p = c.value;
    assert_eq!(
        p.pod_selector.match_expressions,
        vec![Requirement {
            key: "pod".into(),
            op: Operator::In,
            values: vec!["a".into()],
        }]
    );
    // Not given, so inferred: there is an egress rule.
    assert_eq!(
        p.policy_types,
        Some(vec![PolicyType::Ingress, PolicyType::Egress])
    );
    assert_eq!(
        p.ingress,
        vec![Rule {
            peers: vec![
                pods_in(sel(&[("ns", "y")]), sel(&[])),
                block("10.0.0.0/8", &["10.1.0.0/16"]),
            ],
            ports: vec![
                range(Protocol::Tcp, 80, 90),
                PortSpec {
                    protocol: Protocol::Udp,
                    port: Some(PortRef::Name("dns".into())),
                    end_port: None
                },
                PortSpec {
                    protocol: Protocol::Sctp,
                    port: None,
                    end_port: None
                },
            ],
        }]
    );
    assert_eq!(p.egress, vec![Rule::default()]);
}

#[test]
fn absent_and_empty_selectors_stay_apart() {
    let c = convert::network_policy(&np(json!({
        "ingress": [{ "from": [{ "namespaceSelector": {} }] }],
    })))
    .unwrap();
    assert_eq!(c.value.ingress[0].peers, vec![namespaces(sel(&[]))]);
    assert_eq!(c.value.pod_selector, sel(&[]));
    assert_eq!(c.value.policy_types, Some(vec![PolicyType::Ingress]));
}

fn left_out_problem(spec: serde_json::Value) -> (crate::policy::NetworkPolicy, Problem) {
    let mut c = convert::network_policy(&np(spec)).unwrap();
    assert_eq!(c.left_out.len(), 1, "{:?}", c.left_out);
    let e = c.left_out.remove(0);
    (c.value, *e.problem)
}

#[test]
fn a_bad_rule_is_left_out_and_reported_and_the_policy_still_isolates() {
    let (p, problem) = left_out_problem(json!({
        "policyTypes": ["Ingress"],
        "ingress": [
            { "from": [{ "ipBlock": { "cidr": "10.0.0.300/8" } }] },
            { "ports": [{ "port": 80 }] },
        ],
    }));
    assert!(matches!(problem, Problem::BadCidr { .. }), "{problem:?}");
    assert_eq!(p.ingress.len(), 1, "the good rule stays");
    assert!(p.applies_to(PolicyType::Ingress));
}

#[test]
fn policy_types_are_inferred_before_a_bad_egress_rule_is_left_out() {
    // Dropping the only egress rule must not lift egress isolation.
    let (p, problem) = left_out_problem(json!({
        "egress": [{ "ports": [{ "protocol": "ICMP", "port": 1 }] }],
    }));
    assert_eq!(
        problem,
        Problem::UnknownProtocol {
            value: "ICMP".into()
        }
    );
    assert!(p.egress.is_empty());
    assert!(p.applies_to(PolicyType::Egress));
}

#[test]
fn bad_ports() {
    let problem =
        |port: serde_json::Value| left_out_problem(json!({ "ingress": [{ "ports": [port] }] })).1;
    assert_eq!(problem(json!({ "port": 0 })), Problem::BadPort { value: 0 });
    assert_eq!(
        problem(json!({ "port": 70000 })),
        Problem::BadPort { value: 70000 }
    );
    assert_eq!(
        problem(json!({ "port": 90, "endPort": 80 })),
        Problem::BadEndPort {
            port: 90,
            end_port: 80
        }
    );
    assert_eq!(
        problem(json!({ "port": "web", "endPort": 80 })),
        Problem::EndPortWithoutNumber { end_port: 80 }
    );
    assert_eq!(
        problem(json!({ "endPort": 80 })),
        Problem::EndPortWithoutNumber { end_port: 80 }
    );
    assert_eq!(
        problem(json!({ "port": "80" })),
        Problem::BadPortName { value: "80".into() }
    );
    assert_eq!(
        problem(json!({ "port": "Web" })),
        Problem::BadPortName {
            value: "Web".into()
        }
    );
}

#[test]
fn bad_peers() {
    let problem =
        |peer: serde_json::Value| left_out_problem(json!({ "ingress": [{ "from": [peer] }] })).1;
    assert_eq!(problem(json!({})), Problem::EmptyPeer);
    assert_eq!(
        problem(json!({ "ipBlock": { "cidr": "10.0.0.0/8" }, "podSelector": {} })),
        Problem::IpBlockWithSelector
    );
    assert!(matches!(
        problem(json!({ "ipBlock": { "cidr": "10.0.0.0/8", "except": ["nope"] } })),
        Problem::BadCidr { .. }
    ));
    assert_eq!(
        problem(
            json!({ "podSelector": { "matchExpressions": [{ "key": "k", "operator": "In" }] } })
        ),
        Problem::BadRequirementValues {
            key: "k".into(),
            operator: "In",
            needs_values: true
        }
    );
}

#[test]
fn unreadable_selector_or_types_refuse_the_whole_policy() {
    let e = convert::network_policy(&np(json!({ "policyTypes": ["Sideways"] }))).unwrap_err();
    assert_eq!(
        *e.problem,
        Problem::UnknownPolicyType {
            value: "Sideways".into()
        }
    );
    assert_eq!(
        (e.kind, e.namespace.as_str(), e.name.as_str()),
        (Kind::NetworkPolicy, "x", "p")
    );
    let e = convert::network_policy(&np(json!({
        "podSelector": { "matchExpressions": [{ "key": "k", "operator": "Near" }] },
    })))
    .unwrap_err();
    assert_eq!(
        *e.problem,
        Problem::UnknownOperator {
            value: "Near".into()
        }
    );
    assert_eq!(
        e.to_string(),
        r#"NetworkPolicy x/p: unknown selector operator "Near" (In, NotIn, Exists, DoesNotExist)"#
    );
}

#[test]
fn errors_say_where() {
    let c = convert::network_policy(&np(json!({
        "egress": [{}, { "to": [{ "ipBlock": { "cidr": "bad" } }] }],
    })))
    .unwrap();
    let e: &ConvertError = &c.left_out[0];
    assert_eq!(e.at, Some(At::Rule(PolicyType::Egress, 1)));
    assert!(
        e.to_string()
            .starts_with("NetworkPolicy x/p, egress rule 1: \"bad\" is not a CIDR"),
        "{e}"
    );
}

fn pod(value: serde_json::Value) -> core::Pod {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_pod() {
    let c = convert::pod(&pod(json!({
        "metadata": { "namespace": "x", "name": "a", "labels": { "pod": "a" } },
        "spec": {
            "nodeName": "node-1",
            "containers": [{ "name": "c", "ports": [
                { "containerPort": 80, "name": "web" },
                { "containerPort": 53, "protocol": "UDP" },
                { "containerPort": 99999 },
            ]}],
            "initContainers": [
                { "name": "sidecar", "restartPolicy": "Always", "ports": [{ "containerPort": 9090, "name": "metrics" }] },
                { "name": "init", "ports": [{ "containerPort": 7, "name": "gone" }] },
            ],
        },
        "status": { "podIP": "10.0.0.1", "podIPs": [{ "ip": "10.0.0.1" }, { "ip": "fd00::1" }, { "ip": "bogus" }] },
    })))
    .unwrap();
    let p = c.value;
    assert_eq!(
        (p.namespace.as_str(), p.name.as_str(), p.node.as_str()),
        ("x", "a", "node-1")
    );
    assert_eq!(p.labels, labels(&[("pod", "a")]));
    assert_eq!(
        p.ips,
        vec![
            "10.0.0.1".parse::<std::net::IpAddr>().unwrap(),
            "fd00::1".parse().unwrap()
        ]
    );
    assert!(!p.host_network);
    let port = |name: Option<&str>, port, protocol| ContainerPort {
        name: name.map(Into::into),
        port,
        protocol,
    };
    assert_eq!(
        p.ports,
        vec![
            port(Some("web"), 80, Protocol::Tcp),
            port(None, 53, Protocol::Udp),
            port(Some("metrics"), 9090, Protocol::Tcp),
        ]
    );
    let problems: Vec<_> = c
        .left_out
        .iter()
        .map(|e| (e.at.clone(), &*e.problem))
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].0, Some(At::PodIp));
    assert_eq!(
        problems[1],
        (
            Some(At::ContainerPort("c".into())),
            &Problem::BadPort { value: 99999 }
        )
    );
}

#[test]
fn a_finished_pod_keeps_no_address() {
    let c = convert::pod(&pod(json!({
        "metadata": { "namespace": "x", "name": "done" },
        "spec": { "containers": [], "hostNetwork": true },
        "status": { "phase": "Succeeded", "podIP": "10.0.0.1" },
    })))
    .unwrap();
    assert!(c.value.ips.is_empty());
    assert!(c.value.host_network);
}

#[test]
fn namespaces_get_the_name_label_and_snapshot_reports_everything() {
    let ns: core::Namespace =
        serde_json::from_value(json!({ "metadata": { "name": "x", "labels": { "team": "a" } } }))
            .unwrap();
    let nameless: core::Namespace = serde_json::from_value(json!({ "metadata": {} })).unwrap();
    let bad_policy = np(json!({ "policyTypes": ["Nope"] }));
    let half_good = np(json!({ "ingress": [{ "ports": [{ "port": 0 }] }] }));
    let c = convert::snapshot(&[ns, nameless], &[], &[bad_policy, half_good]);
    assert_eq!(c.value.namespaces.len(), 1);
    assert_eq!(
        c.value.namespaces[0].labels,
        labels(&[("team", "a"), (convert::NAMESPACE_NAME_LABEL, "x")])
    );
    assert_eq!(c.value.policies.len(), 1);
    assert_eq!(c.left_out.len(), 3);
    assert_eq!(c.left_out[0].kind, Kind::Namespace);
}
