//! The truth table: upstream's NetworkPolicy e2e cases (namespaces x, y,
//! z; pods a, b, c in each, labelled `pod=NAME`; namespaces labelled
//! `ns=NAME`), each a set of policies and the matrix it must produce,
//! written from the API's semantics, not from podnet's engine.

use std::collections::HashMap;
use std::net::IpAddr;

use podnet_tests::reach::{Probe, Proto};
use serde_json::{json, Value};

pub const TCP80: Probe = (Proto::Tcp, 80);
pub const TCP81: Probe = (Proto::Tcp, 81);
pub const UDP80: Probe = (Proto::Udp, 80);
pub const UDP81: Probe = (Proto::Udp, 81);
pub const ALL: [Probe; 4] = [TCP80, TCP81, UDP80, UDP81];

pub type Expect = Box<dyn Fn(&str, &str, Probe) -> bool>;

pub struct Case {
    pub name: &'static str,
    pub policies: Vec<Value>,
    /// Whether a new connection from the first pod to the second passes.
    pub expect: Expect,
}

/// A NetworkPolicy object in namespace `ns`.
pub fn np(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": name, "namespace": ns, "uid": format!("uid-np-{ns}-{name}") },
        "spec": spec,
    })
}

/// `{matchLabels: {key: value}}`.
pub fn ml(key: &str, value: &str) -> Value {
    json!({ "matchLabels": { key: value } })
}

/// `{matchExpressions: [{key, operator, values}]}`.
pub fn me(key: &str, op: &str, values: &[&str]) -> Value {
    json!({ "matchExpressions": [{ "key": key, "operator": op, "values": values }] })
}

fn ns_of(pod: &str) -> &str {
    pod.split_once('/').map_or("", |(ns, _)| ns)
}

fn name_of(pod: &str) -> &str {
    pod.split_once('/').map_or("", |(_, n)| n)
}

fn case(
    name: &'static str,
    policies: Vec<Value>,
    expect: impl Fn(&str, &str, Probe) -> bool + 'static,
) -> Case {
    Case {
        name,
        policies,
        expect: Box::new(expect),
    }
}

/// x/a's ingress allowed only from what `allowed(from, probe)` says.
fn into_xa(allowed: impl Fn(&str, Probe) -> bool + 'static) -> Expect {
    Box::new(move |from, to, p| to != "x/a" || allowed(from, p))
}

/// x/a's egress allowed only to what `allowed(to, probe)` says.
fn from_xa(allowed: impl Fn(&str, Probe) -> bool + 'static) -> Expect {
    Box::new(move |from, to, p| from != "x/a" || allowed(to, p))
}

fn ingress_to_xa(name: &'static str, ingress: Value, expect: Expect) -> Case {
    let policy = np(
        "x",
        name,
        json!({ "podSelector": ml("pod", "a"), "ingress": ingress }),
    );
    Case {
        name,
        policies: vec![policy],
        expect,
    }
}

fn egress_of_xa(name: &'static str, egress: Value, expect: Expect) -> Case {
    let spec =
        json!({ "podSelector": ml("pod", "a"), "policyTypes": ["Egress"], "egress": egress });
    Case {
        name,
        policies: vec![np("x", name, spec)],
        expect,
    }
}

/// Every static case; `ips` holds each pod's address (for ipBlocks).
pub fn all(ips: &HashMap<String, IpAddr>) -> Vec<Case> {
    let mut cases = isolation();
    cases.extend(independence());
    cases.extend(selectors());
    cases.extend(ports());
    cases.extend(egress());
    cases.extend(blocks(ips));
    cases
}

fn isolation() -> Vec<Case> {
    vec![
        case(
            "default-deny-ingress",
            vec![np(
                "x",
                "deny",
                json!({ "podSelector": {}, "policyTypes": ["Ingress"] }),
            )],
            |_, to, _| ns_of(to) != "x",
        ),
        case(
            "default-deny-all",
            vec![np(
                "x",
                "deny",
                json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] }),
            )],
            |from, to, _| ns_of(to) != "x" && ns_of(from) != "x",
        ),
        case(
            "allow-all-ingress",
            vec![np(
                "x",
                "all",
                json!({ "podSelector": {}, "ingress": [{}] }),
            )],
            |_, _, _| true,
        ),
        case(
            "deny-from-other-namespaces",
            vec![np(
                "x",
                "same-ns",
                json!({ "podSelector": {}, "ingress": [{ "from": [{ "podSelector": {} }] }] }),
            )],
            |from, to, _| ns_of(to) != "x" || ns_of(from) == "x",
        ),
        case(
            "ingress-allow-all-takes-precedence",
            vec![
                np(
                    "x",
                    "only-b",
                    json!({ "podSelector": ml("pod", "a"), "ingress": [{ "from": [{ "podSelector": ml("pod", "b") }], "ports": [{ "port": 80 }] }] }),
                ),
                np(
                    "x",
                    "all",
                    json!({ "podSelector": ml("pod", "a"), "ingress": [{}] }),
                ),
            ],
            |_, _, _| true,
        ),
    ]
}

/// Each direction, and each side of a connection, decides on its own.
fn independence() -> Vec<Case> {
    vec![
        case(
            "ingress-and-egress-isolated-independently",
            vec![
                np(
                    "x",
                    "in-a",
                    json!({ "podSelector": ml("pod", "a"), "policyTypes": ["Ingress"] }),
                ),
                np(
                    "x",
                    "out-b",
                    json!({ "podSelector": ml("pod", "b"), "policyTypes": ["Egress"] }),
                ),
            ],
            |from, to, _| to != "x/a" && from != "x/b",
        ),
        case(
            "client-side-egress-deny-beats-server-allow",
            vec![
                np(
                    "x",
                    "out-a",
                    json!({ "podSelector": ml("pod", "a"), "policyTypes": ["Egress"] }),
                ),
                np("y", "all", json!({ "podSelector": {}, "ingress": [{}] })),
            ],
            |from, _, _| from != "x/a",
        ),
    ]
}

fn selectors() -> Vec<Case> {
    let from = |peers: Value| json!([{ "from": peers }]);
    vec![
        ingress_to_xa(
            "from-pod-b-in-x",
            from(json!([{ "podSelector": ml("pod", "b") }])),
            into_xa(|f, _| f == "x/b"),
        ),
        ingress_to_xa(
            "from-namespace-y",
            from(json!([{ "namespaceSelector": ml("ns", "y") }])),
            into_xa(|f, _| ns_of(f) == "y"),
        ),
        ingress_to_xa(
            "from-all-namespaces",
            from(json!([{ "namespaceSelector": {} }])),
            into_xa(|_, _| true),
        ),
        ingress_to_xa(
            "from-namespaces-not-x",
            from(json!([{ "namespaceSelector": me("ns", "NotIn", &["x"]) }])),
            into_xa(|f, _| ns_of(f) != "x"),
        ),
        ingress_to_xa(
            "from-pods-in-b-expression",
            from(json!([{ "podSelector": me("pod", "In", &["b"]) }])),
            into_xa(|f, _| f == "x/b"),
        ),
        ingress_to_xa(
            "from-namespaces-in-y-expression",
            from(json!([{ "namespaceSelector": me("ns", "In", &["y"]) }])),
            into_xa(|f, _| ns_of(f) == "y"),
        ),
        ingress_to_xa(
            "pod-or-namespace",
            from(
                json!([{ "podSelector": ml("pod", "b") }, { "namespaceSelector": ml("ns", "y") }]),
            ),
            into_xa(|f, _| f == "x/b" || ns_of(f) == "y"),
        ),
        ingress_to_xa(
            "pod-and-namespace",
            from(json!([{ "namespaceSelector": ml("ns", "y"), "podSelector": ml("pod", "b") }])),
            into_xa(|f, _| f == "y/b"),
        ),
        ingress_to_xa(
            "namespaces-not-x-and-pods-b-or-c",
            from(
                json!([{ "namespaceSelector": me("ns", "NotIn", &["x"]), "podSelector": me("pod", "In", &["b", "c"]) }]),
            ),
            into_xa(|f, _| ns_of(f) != "x" && name_of(f) != "a"),
        ),
        ingress_to_xa(
            "any-pod-b-or-c-of-x",
            from(json!([{ "podSelector": me("pod", "In", &["b", "c"]) }])),
            into_xa(|f, _| f == "x/b" || f == "x/c"),
        ),
        ingress_to_xa(
            "default-namespace-label",
            from(json!([{ "namespaceSelector": ml("kubernetes.io/metadata.name", "y") }])),
            into_xa(|f, _| ns_of(f) == "y"),
        ),
        ingress_to_xa(
            "default-namespace-label-expression",
            from(
                json!([{ "namespaceSelector": me("kubernetes.io/metadata.name", "In", &["y", "z"]) }]),
            ),
            into_xa(|f, _| ns_of(f) != "x"),
        ),
        ingress_to_xa(
            "pods-not-a-anywhere",
            from(json!([{ "namespaceSelector": {}, "podSelector": me("pod", "NotIn", &["a"]) }])),
            into_xa(|f, _| name_of(f) != "a"),
        ),
    ]
}

fn ports() -> Vec<Case> {
    let rule = |peers: Value, ports: Value| json!([{ "from": peers, "ports": ports }]);
    let y = json!([{ "namespaceSelector": ml("ns", "y") }]);
    vec![
        ingress_to_xa(
            "port-81-from-y",
            rule(y.clone(), json!([{ "port": 81 }])),
            into_xa(|f, p| ns_of(f) == "y" && p == TCP81),
        ),
        case(
            "stacked-policies-add-up",
            vec![
                np(
                    "x",
                    "y-80",
                    json!({ "podSelector": ml("pod", "a"), "ingress": [{ "from": [{ "namespaceSelector": ml("ns", "y") }], "ports": [{ "port": 80 }] }] }),
                ),
                np(
                    "x",
                    "z-81",
                    json!({ "podSelector": ml("pod", "a"), "ingress": [{ "from": [{ "namespaceSelector": ml("ns", "z") }], "ports": [{ "port": 81 }] }] }),
                ),
            ],
            into_xa(|f, p| (ns_of(f) == "y" && p == TCP80) || (ns_of(f) == "z" && p == TCP81)),
        ),
        ingress_to_xa(
            "named-port-81-tcp",
            json!([{ "ports": [{ "port": "serve-81-tcp" }] }]),
            into_xa(|_, p| p == TCP81),
        ),
        ingress_to_xa(
            "named-port-80-udp-from-y",
            rule(
                y.clone(),
                json!([{ "protocol": "UDP", "port": "serve-80-udp" }]),
            ),
            into_xa(|f, p| ns_of(f) == "y" && p == UDP80),
        ),
        ingress_to_xa(
            "any-udp-port",
            json!([{ "ports": [{ "protocol": "UDP" }] }]),
            into_xa(|_, p| p.0 == Proto::Udp),
        ),
        ingress_to_xa(
            "sctp-80-is-not-tcp-80",
            json!([{ "ports": [{ "protocol": "SCTP", "port": 80 }] }]),
            into_xa(|_, _| false),
        ),
        ingress_to_xa(
            "udp-81-is-not-tcp-81",
            json!([{ "ports": [{ "protocol": "UDP", "port": 81 }] }]),
            into_xa(|_, p| p == UDP81),
        ),
        ingress_to_xa(
            "end-port-80-81-from-y",
            rule(y, json!([{ "port": 80, "endPort": 81 }])),
            into_xa(|f, p| ns_of(f) == "y" && p.0 == Proto::Tcp),
        ),
    ]
}

fn egress() -> Vec<Case> {
    let to = |peers: Value, ports: Value| json!([{ "to": peers, "ports": ports }]);
    vec![
        egress_of_xa(
            "egress-named-port-80-tcp",
            json!([{ "ports": [{ "port": "serve-80-tcp" }] }]),
            from_xa(|_, p| p == TCP80),
        ),
        egress_of_xa("egress-denied", json!([]), from_xa(|_, _| false)),
        egress_of_xa(
            "egress-to-y-b",
            json!([{ "to": [{ "namespaceSelector": ml("ns", "y"), "podSelector": ml("pod", "b") }] }]),
            from_xa(|t, _| t == "y/b"),
        ),
        egress_of_xa(
            "egress-end-port-81-82-to-z",
            to(
                json!([{ "namespaceSelector": ml("ns", "z") }]),
                json!([{ "port": 81, "endPort": 82 }]),
            ),
            from_xa(|t, p| ns_of(t) == "z" && p == TCP81),
        ),
        case(
            "egress-to-dns-only",
            vec![np(
                "x",
                "dns",
                json!({ "podSelector": {}, "policyTypes": ["Egress"], "egress": [{ "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }] }] }),
            )],
            |from, _, _| ns_of(from) != "x",
        ),
        case(
            "egress-denied-for-all-of-x",
            vec![np(
                "x",
                "deny-out",
                json!({ "podSelector": {}, "policyTypes": ["Egress"] }),
            )],
            |from, _, _| ns_of(from) != "x",
        ),
        case(
            "egress-allow-all-takes-precedence",
            vec![
                np(
                    "x",
                    "only-yb",
                    json!({ "podSelector": ml("pod", "a"), "policyTypes": ["Egress"], "egress": [{ "to": [{ "namespaceSelector": ml("ns", "y"), "podSelector": ml("pod", "b") }] }] }),
                ),
                np(
                    "x",
                    "all-out",
                    json!({ "podSelector": ml("pod", "a"), "policyTypes": ["Egress"], "egress": [{}] }),
                ),
            ],
            |_, _, _| true,
        ),
        case(
            "ingress-and-egress-together",
            vec![np(
                "x",
                "both",
                json!({
                    "podSelector": ml("pod", "a"),
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{ "from": [{ "namespaceSelector": ml("ns", "y") }] }],
                    "egress": [{ "to": [{ "namespaceSelector": ml("ns", "z") }] }],
                }),
            )],
            |from, to, _| {
                (to != "x/a" || ns_of(from) == "y") && (from != "x/a" || ns_of(to) == "z")
            },
        ),
    ]
}

fn blocks(ips: &HashMap<String, IpAddr>) -> Vec<Case> {
    let host = |pod: &str| format!("{}/32", ips[pod]);
    let yb = host("y/b");
    let ya = host("y/a");
    let block =
        |cidr: &str, except: &[&str]| json!({ "ipBlock": { "cidr": cidr, "except": except } });
    vec![
        egress_of_xa(
            "egress-to-y-b-block",
            json!([{ "to": [block(&yb, &[])] }]),
            from_xa(|t, _| t == "y/b"),
        ),
        egress_of_xa(
            "egress-block-except-y-b",
            json!([{ "to": [block("10.244.0.0/16", &[&yb])] }]),
            from_xa(|t, _| t != "y/b"),
        ),
        case(
            "block-and-except-overlap-across-policies",
            vec![
                np(
                    "x",
                    "except-yb",
                    json!({ "podSelector": ml("pod", "a"), "policyTypes": ["Egress"], "egress": [{ "to": [block("10.244.0.0/16", &[&yb])] }] }),
                ),
                np(
                    "x",
                    "only-yb",
                    json!({ "podSelector": ml("pod", "a"), "policyTypes": ["Egress"], "egress": [{ "to": [block(&yb, &[])] }] }),
                ),
            ],
            |_, _, _| true,
        ),
        ingress_to_xa(
            "ingress-block-except-y-a",
            json!([{ "from": [block("10.244.0.0/16", &[&ya])] }]),
            into_xa(|f, _| f != "y/a"),
        ),
    ]
}
