//! 1,000 policies over 5,000 pods on one node: it completes, and sets are
//! shared. Not timed here; `--nocapture` prints how long it took.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use super::fixture::{block, expr, labels, named, pods_in, policy, rule, sel, tcp, BOTH};
use crate::policy::{compile, ContainerPort, Namespace, Operator, Pod, Protocol, Snapshot};

fn big() -> Snapshot {
    let namespaces: Vec<Namespace> = (0..10)
        .map(|i| Namespace {
            name: format!("ns-{i}"),
            labels: labels(&[("team", &format!("t{}", i % 3))]),
        })
        .collect();
    let pods = (0..5000u32)
        .map(|i| Pod {
            namespace: format!("ns-{}", i % 10),
            name: format!("pod-{i}"),
            node: "node-1".into(),
            ips: vec![IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i))],
            labels: labels(&[
                ("app", &format!("app{}", i % 50)),
                ("tier", ["web", "db", "cache"][i as usize % 3]),
            ]),
            ports: vec![ContainerPort {
                name: Some("http".into()),
                port: 8000 + (i % 5) as u16,
                protocol: Protocol::Tcp,
            }],
            host_network: false,
        })
        .collect();
    let policies: Vec<crate::policy::NetworkPolicy> = (0..1000usize)
        .map(|j| {
            let ingress = rule(
                vec![pods_in(sel(&[]), sel(&[("tier", "web")]))],
                vec![tcp(80), named(Protocol::Tcp, "http")],
            );
            let to_team = rule(
                vec![pods_in(
                    sel(&[("team", &format!("t{}", j % 3))]),
                    sel(&[("app", &format!("app{}", (j + 1) % 50))]),
                )],
                vec![named(Protocol::Tcp, "http")],
            );
            let to_outside = rule(
                vec![block(
                    "0.0.0.0/0",
                    &["10.0.0.0/8", &format!("192.168.{}.0/24", j % 256)],
                )],
                vec![tcp(443)],
            );
            let mut target = sel(&[("app", &format!("app{}", j % 50))]);
            target.match_expressions =
                expr("tier", Operator::NotIn, &[&format!("x{j}")]).match_expressions;
            policy(
                &format!("ns-{}", j % 10),
                &format!("p{j}"),
                target,
                Some(BOTH),
                vec![ingress],
                vec![to_team, to_outside],
            )
        })
        .collect();
    Snapshot {
        namespaces: namespaces.into(),
        pods,
        policies: policies.into(),
    }
}

#[test]
fn thousand_policies_over_five_thousand_pods() {
    let s = big();
    let start = Instant::now();
    let rs = compile(&s, "node-1");
    let elapsed = start.elapsed();
    println!(
        "compiled {} policies over {} pods in {elapsed:?}: {} pod entries, {} peer sets",
        s.policies.len(),
        s.pods.len(),
        rs.pods.len(),
        rs.peer_sets.len()
    );
    assert_eq!(rs.pods.len(), 5000);
    assert!(rs
        .pods
        .values()
        .all(|r| r.ingress.is_some() && r.egress.is_some()));
    // Peer sets are shared: far fewer than the policies' rules.
    assert!(rs.peer_sets.len() < 1000, "{} sets", rs.peer_sets.len());
}
