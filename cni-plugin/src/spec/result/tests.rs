use super::render::cidr_string;
use super::*;
use serde_json::json;
use serde_json::Value;

const FIXTURES: [(CniVersion, &str); 5] = [
    (
        CniVersion::V0_3_0,
        include_str!("../fixtures/result-0.3.0.json"),
    ),
    (
        CniVersion::V0_3_1,
        include_str!("../fixtures/result-0.3.1.json"),
    ),
    (
        CniVersion::V0_4_0,
        include_str!("../fixtures/result-0.4.0.json"),
    ),
    (
        CniVersion::V1_0_0,
        include_str!("../fixtures/result-1.0.0.json"),
    ),
    (
        CniVersion::V1_1_0,
        include_str!("../fixtures/result-1.1.0.json"),
    ),
];

fn net(s: &str) -> IpNetwork {
    parse_cidr(s, false).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn doc(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("fixture: {e}"))
}

const NETNS: &str = "/var/run/netns/cni-7f1c9a3e-1b2d-4c5e-8f60-0123456789ab";

/// The full 1.1.0 model that the fixtures describe.
fn full() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "veth5f3c2a1b".into(),
                mac: "a6:1f:44:9c:0e:21".into(),
                mtu: Some(1450),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: "3e:8d:12:7a:b0:05".into(),
                mtu: Some(1450),
                sandbox: Some(NETNS.into()),
                ..Interface::default()
            },
        ],
        ips: vec![
            IpConfig {
                address: net("10.244.1.5/24"),
                gateway: Some(ip("10.244.1.1")),
                interface: Some(1),
            },
            IpConfig {
                address: net("fd00:10:244:1::5/64"),
                gateway: Some(ip("fd00:10:244:1::1")),
                interface: Some(1),
            },
        ],
        routes: vec![
            Route {
                mtu: Some(1450),
                table: Some(254),
                scope: Some(0),
                ..Route::new(net("0.0.0.0/0"), Some(ip("10.244.1.1")))
            },
            Route {
                advmss: Some(1380),
                priority: Some(1024),
                ..Route::new(net("::/0"), Some(ip("fd00:10:244:1::1")))
            },
        ],
        dns: Dns {
            nameservers: vec!["10.96.0.10".into(), "fd00:10:96::a".into()],
            domain: Some("cluster.local".into()),
            search: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        },
    }
}

/// `full()` with the fields version `v` cannot carry removed.
fn full_as_seen_by(v: CniVersion) -> CniResult {
    let mut r = full();
    if v < CniVersion::V1_1_0 {
        for i in &mut r.interfaces {
            i.mtu = None;
            i.socket_path = None;
            i.pci_id = None;
        }
        for rt in &mut r.routes {
            *rt = Route::new(rt.dst, rt.gw);
        }
    }
    r
}

#[test]
fn to_json_matches_golden_fixture_for_every_version() {
    for (v, text) in FIXTURES {
        assert_eq!(full().to_json(v), doc(text), "version {v}");
    }
}

#[test]
fn from_json_reads_every_fixture() {
    for (v, text) in FIXTURES {
        // The fallback must not matter: every fixture carries its cniVersion.
        let got = CniResult::from_json(&doc(text), CniVersion::V0_3_0);
        assert_eq!(got.ok(), Some(full_as_seen_by(v)), "version {v}");
    }
}

#[test]
fn round_trip_through_every_version() {
    for v in CniVersion::ALL {
        let back = CniResult::from_json(&full().to_json(v), CniVersion::LATEST);
        assert_eq!(back.ok(), Some(full_as_seen_by(v)), "version {v}");
    }
}

#[test]
fn missing_cni_version_uses_fallback() {
    let mut d = doc(FIXTURES[2].1);
    if let Some(o) = d.as_object_mut() {
        o.remove("cniVersion");
    }
    let got = CniResult::from_json(&d, CniVersion::V0_4_0);
    assert_eq!(got.ok(), Some(full_as_seen_by(CniVersion::V0_4_0)));
    let d = json!({"cniVersion": "", "ips": [{"address": "10.0.0.2/8"}]});
    assert!(CniResult::from_json(&d, CniVersion::V1_0_0).is_ok());
}

#[test]
fn unknown_versions_are_code_1() {
    for v in ["0.2.0", "0.1.0", "9.9.9", "1.1"] {
        let d = json!({"cniVersion": v});
        let err = CniResult::from_json(&d, CniVersion::LATEST).err();
        assert!(
            matches!(&err, Some(ResultError::UnknownVersion(s)) if s == v),
            "{v}: {err:?}"
        );
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::INCOMPATIBLE_VERSION));
    }
}

#[test]
fn empty_result_shape() {
    let empty = CniResult::default();
    assert_eq!(
        empty.to_json(CniVersion::V1_1_0),
        json!({"cniVersion": "1.1.0"})
    );
    assert_eq!(
        empty.to_json(CniVersion::V1_0_0),
        json!({"cniVersion": "1.0.0"})
    );
    // Go's 0.4.0 Result has no fix-up for the empty DNS struct.
    assert_eq!(
        empty.to_json(CniVersion::V0_4_0),
        json!({"cniVersion": "0.4.0", "dns": {}})
    );
    for v in CniVersion::ALL {
        let back = CniResult::from_json(&empty.to_json(v), v);
        assert_eq!(back.ok(), Some(CniResult::default()));
    }
}

#[test]
fn index_zero_and_zero_pointers_are_written_zero_ints_are_not() {
    let r = CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            mtu: Some(0),
            sandbox: Some(String::new()),
            socket_path: Some("/run/vhost/sock0".into()),
            pci_id: Some("0000:03:00.1".into()),
            ..Interface::default()
        }],
        ips: vec![IpConfig {
            address: net("10.0.0.2/8"),
            gateway: None,
            interface: Some(0),
        }],
        routes: vec![Route {
            mtu: Some(0),
            advmss: Some(0),
            priority: Some(0),
            table: Some(0),
            scope: Some(253),
            ..Route::new(net("10.0.0.0/8"), None)
        }],
        dns: Dns::default(),
    };
    assert_eq!(
        r.to_json(CniVersion::V1_1_0),
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "socketPath": "/run/vhost/sock0", "pciID": "0000:03:00.1"}],
            "ips": [{"interface": 0, "address": "10.0.0.2/8"}],
            "routes": [{"dst": "10.0.0.0/8", "table": 0, "scope": 253}]
        })
    );
    assert_eq!(
        r.to_json(CniVersion::V0_3_1),
        json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "eth0"}],
            "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/8"}],
            "routes": [{"dst": "10.0.0.0/8"}],
            "dns": {}
        })
    );
}

#[test]
fn abbreviated_ipam_result() {
    // Section 4: IPAM results have no interfaces and no interface index.
    let d = json!({
        "cniVersion": "1.1.0",
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]}
    });
    let r = CniResult::from_json(&d, CniVersion::V1_1_0);
    let want = CniResult {
        interfaces: vec![],
        ips: vec![IpConfig {
            address: net("10.1.0.5/16"),
            gateway: Some(ip("10.1.0.1")),
            interface: None,
        }],
        routes: vec![Route::new(net("0.0.0.0/0"), None)],
        dns: Dns {
            nameservers: vec!["10.1.0.1".into()],
            ..Dns::default()
        },
    };
    assert_eq!(r.ok(), Some(want.clone()));
    assert_eq!(want.to_json(CniVersion::V1_1_0), d);
}

#[test]
fn host_bits_are_kept() {
    let a = net("10.244.1.5/24");
    assert_eq!(a.ip(), ip("10.244.1.5"));
    assert_eq!(a.prefix(), 24);
    assert_eq!(cidr_string(&a), "10.244.1.5/24");
}

#[test]
fn tolerant_reading_like_go() {
    // null lists, empty gateway, zero ints, unknown keys, 1.1 fields in an older version.
    let d = json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "mac": "", "mtu": 0, "extra": true}],
        "ips": [{"version": "4", "address": "10.0.0.2/8", "gateway": "", "interface": null}],
        "routes": [{"dst": "10.0.0.0/8", "gw": null, "mtu": 1400}],
        "dns": {"nameservers": null, "domain": "", "search": ["a"]}
    });
    let r = CniResult::from_json(&d, CniVersion::V0_4_0);
    let want = CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            ..Interface::default()
        }],
        ips: vec![IpConfig {
            address: net("10.0.0.2/8"),
            gateway: None,
            interface: None,
        }],
        routes: vec![Route {
            mtu: Some(1400),
            ..Route::new(net("10.0.0.0/8"), None)
        }],
        dns: Dns {
            search: vec!["a".into()],
            ..Dns::default()
        },
    };
    assert_eq!(r.ok(), Some(want));
}

#[test]
fn decode_errors_are_code_6_with_clear_messages() {
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "JSON object"),
        (json!({"cniVersion": 1}), "cniVersion"),
        (json!({"ips": {}}), "ips must be an array"),
        (json!({"ips": [{}]}), "ips[0].address is missing"),
        (
            json!({"ips": [{"address": "10.0.0.300/8"}]}),
            "bad address \"10.0.0.300/8\"",
        ),
        (json!({"ips": [{"address": "10.0.0.3"}]}), "CIDR notation"),
        (
            json!({"ips": [{"address": "10.0.0.3/33"}]}),
            "prefix length",
        ),
        (
            json!({"ips": [{"address": "10.0.0.3/8", "gateway": "x"}]}),
            "ips[0].gateway",
        ),
        (
            json!({"ips": [{"address": "10.0.0.3/8", "interface": 1}]}),
            "ips[0].interface is 1, but the result has 0 interface(s)",
        ),
        (
            json!({"interfaces": [{"name": "a"}], "ips": [{"address": "10.0.0.3/8", "interface": -1}]}),
            "non-negative integer",
        ),
        (
            json!({"routes": [{"gw": "10.0.0.1"}]}),
            "routes[0].dst is missing",
        ),
        (
            json!({"routes": [{"dst": "10.0.0.0/8", "scope": 256}]}),
            "routes[0].scope",
        ),
        (
            json!({"routes": [{"dst": "10.0.0.0/8", "mtu": 1.5}]}),
            "routes[0].mtu",
        ),
        (
            json!({"interfaces": ["eth0"]}),
            "interfaces[0] must be an object",
        ),
        (json!({"dns": {"nameservers": "1.1.1.1"}}), "dns"),
        (
            json!({"cniVersion": "0.4.0", "ips": [{"version": "5", "address": "10.0.0.3/8"}]}),
            "ips[0].version",
        ),
    ];
    for (d, needle) in cases {
        let err = CniResult::from_json(&d, CniVersion::V1_1_0).err();
        let msg = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(needle), "{d}: {msg:?} lacks {needle:?}");
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::DECODE), "{d}");
    }
}

#[test]
fn parse_cidr_rules() {
    assert_eq!(parse_cidr("10.1.2.3", true).ok(), Some(net("10.1.2.3/32")));
    assert_eq!(parse_cidr("fd00::1", true).ok(), Some(net("fd00::1/128")));
    for bad in [
        "",
        "/24",
        "10.1.2.3/",
        "10.1.2.3/+4",
        "10.1.2.3/-1",
        "fd00::1/129",
    ] {
        assert!(parse_cidr(bad, true).is_err(), "{bad:?}");
    }
    assert!(parse_cidr("10.1.2.3/255.255.255.0", false).is_err());
    assert!(parse_cidr("10.1.2.3", false).is_err());
}

#[test]
fn dns_serde_uses_spec_keys_and_omits_empty() {
    let d = Dns {
        nameservers: vec!["10.0.0.10".into()],
        domain: Some(String::new()),
        search: vec![],
        options: vec!["ndots:5".into()],
    };
    assert_eq!(
        serde_json::to_value(&d).ok(),
        Some(json!({"nameservers": ["10.0.0.10"], "options": ["ndots:5"]}))
    );
    assert!(!d.is_empty());
    assert!(Dns {
        domain: Some(String::new()),
        ..Dns::default()
    }
    .is_empty());
    let back: Option<Dns> =
        serde_json::from_value(json!({"domain": "x", "search": ["a", "b"]})).ok();
    assert_eq!(
        back,
        Some(Dns {
            domain: Some("x".into()),
            search: vec!["a".into(), "b".into()],
            ..Dns::default()
        })
    );
}
