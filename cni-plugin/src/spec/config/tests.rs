use super::*;
use crate::mac::MacAddr;
use crate::spec::result::parse_cidr;
use crate::spec::result::{Interface, IpConfig, Route};
use ipnetwork::IpNetwork;
use serde_json::json;

fn parse(v: &Value) -> Result<NetConf, ConfigError> {
    NetConf::parse(v.to_string().as_bytes())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNetwork {
    parse_cidr(s, false).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn minimal() -> Value {
    json!({"cniVersion": "1.1.0", "name": "podnet", "type": "podnet"})
}

fn with(mut base: Value, key: &str, v: Value) -> Value {
    if let Some(o) = base.as_object_mut() {
        o.insert(key.into(), v);
    }
    base
}

fn code_of(v: &Value) -> Option<ErrorCode> {
    parse(v).err().map(|e| e.code())
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(&minimal()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cni_version, CniVersion::V1_1_0);
    assert_eq!(c.name, "podnet");
    assert_eq!(c.plugin_type, "podnet");
    assert_eq!(c.bridge.as_str(), "podnet0");
    assert_eq!(c.mtu, None);
    assert!(!c.hairpin_mode);
    assert_eq!(c.ipam, None);
    assert_eq!(c.dns, None);
    assert_eq!(c.prev_result, None);
    assert_eq!(c.runtime_config, RuntimeConfig::default());
    assert_eq!(c.valid_attachments, None);
    assert_eq!(c.raw, minimal());
}

#[test]
fn full_config() {
    let doc = json!({
        "cniVersion": "1.0.0",
        "cniVersions": ["0.4.0", "1.0.0"],
        "name": "kind-net_1.a",
        "type": "podnet",
        "bridge": "br-pods",
        "mtu": 1450,
        "hairpinMode": true,
        "ipMasq": false,
        "disableCheck": true,
        "disableGC": false,
        "loadOnlyInlinedPlugins": false,
        "capabilities": {"ips": true, "mac": true},
        "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "ranges": [[{"subnet": "fd00::/64"}]]},
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"], "options": ["ndots:5"], "domain": "cluster.local"},
        "runtimeConfig": {
            "ips": ["10.244.1.9/24", "fd00::9/64"],
            "mac": "0a:58:0a:f4:01:09",
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1000}
        },
        "args": {"cni": {"labels": [{"key": "app", "value": "web"}], "ips": ["10.244.1.9", "10.244.1.10/24"]}},
        "example.com/extra": {"anything": [1, 2]}
    });
    let c = parse(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cni_version, CniVersion::V1_0_0);
    assert_eq!(c.name, "kind-net_1.a");
    assert_eq!(c.bridge.as_str(), "br-pods");
    assert_eq!(c.mtu, Some(1450));
    assert!(c.hairpin_mode);
    assert_eq!(
        c.ipam,
        Some(IpamConf {
            plugin_type: "host-local".into(),
            kind: crate::spec::IpamKind::Delegated,
        })
    );
    assert_eq!(
        c.dns,
        Some(Dns {
            nameservers: vec!["10.96.0.10".into()],
            domain: Some("cluster.local".into()),
            search: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        })
    );
    assert_eq!(
        c.runtime_config,
        RuntimeConfig {
            ips: vec![net("10.244.1.9/24"), net("fd00::9/64")],
            mac: Some("0a:58:0a:f4:01:09".parse().unwrap()),
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: PortProtocol::Tcp,
                host_ip: None,
            }],
        }
    );
    assert_eq!(
        c.requested_ips().unwrap(),
        vec![ip("10.244.1.9"), ip("fd00::9"), ip("10.244.1.10")]
    );
    assert_eq!(c.raw, doc);
}

fn expected_prev() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "veth3243".into(),
                mac: "55:44:33:22:11:11".into(),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: "99:88:77:66:55:44".into(),
                sandbox: Some("/var/run/netns/blue".into()),
                ..Interface::default()
            },
        ],
        ips: vec![IpConfig {
            address: net("10.1.0.5/16"),
            gateway: "10.1.0.1".parse().ok(),
            interface: Some(1),
        }],
        routes: vec![Route::new(net("0.0.0.0/0"), None)],
        dns: Dns {
            nameservers: vec!["10.1.0.1".into()],
            ..Dns::default()
        },
    }
}

#[test]
fn prev_result_in_0_4_0_format() {
    let prev = json!({
        "cniVersion": "0.4.0",
        "interfaces": [
            {"name": "veth3243", "mac": "55:44:33:22:11:11"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
        ],
        "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]}
    });
    let doc = json!({"cniVersion": "0.4.0", "name": "n", "type": "podnet", "prevResult": prev});
    let c = parse(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.prev_result, Some(expected_prev()));
    // Without its own cniVersion the prevResult is read in the config's version.
    let mut prev_nov = prev.clone();
    if let Some(o) = prev_nov.as_object_mut() {
        o.remove("cniVersion");
    }
    let doc = with(doc, "prevResult", prev_nov);
    assert_eq!(
        parse(&doc).ok().and_then(|c| c.prev_result),
        Some(expected_prev())
    );
}

#[test]
fn prev_result_in_1_0_0_format() {
    let doc = json!({
        "cniVersion": "1.0.0", "name": "n", "type": "podnet",
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "veth3243", "mac": "55:44:33:22:11:11"},
                {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
            ],
            "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.1.0.1"]}
        }
    });
    let c = parse(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.prev_result, Some(expected_prev()));
}

#[test]
fn empty_or_null_prev_result_is_none() {
    for prev in [json!({}), Value::Null] {
        let c = parse(&with(minimal(), "prevResult", prev.clone()));
        assert_eq!(c.ok().map(|c| c.prev_result), Some(None), "{prev}");
    }
}

#[test]
fn bad_prev_result() {
    let bad = with(
        minimal(),
        "prevResult",
        json!({"ips": [{"address": "nope"}]}),
    );
    let err = parse(&bad).err();
    assert!(matches!(err, Some(ConfigError::PrevResult(_))), "{err:?}");
    assert_eq!(err.map(|e| e.code()), Some(ErrorCode::INVALID_CONFIG));
    let old = with(
        minimal(),
        "prevResult",
        json!({"cniVersion": "0.2.0", "ip4": {}}),
    );
    assert_eq!(code_of(&old), Some(ErrorCode::INCOMPATIBLE_VERSION));
}

#[test]
fn gc_config_with_valid_attachments() {
    let doc = json!({
        "cniVersion": "1.1.0", "name": "podnet", "type": "podnet",
        "cni.dev/valid-attachments": [
            {"containerID": "c0ffee", "ifname": "eth0"},
            {"containerID": "d00d", "ifname": "net1", "future": 1}
        ]
    });
    let c = parse(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.valid_attachments,
        Some(vec![
            Attachment {
                container_id: "c0ffee".into(),
                ifname: "eth0".into()
            },
            Attachment {
                container_id: "d00d".into(),
                ifname: "net1".into()
            },
        ])
    );
    let none_valid = with(minimal(), "cni.dev/valid-attachments", json!([]));
    assert_eq!(
        parse(&none_valid).ok().map(|c| c.valid_attachments),
        Some(Some(vec![]))
    );
    let bad = with(
        minimal(),
        "cni.dev/valid-attachments",
        json!([{"containerID": "x"}]),
    );
    let err = parse(&bad).err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("[0].ifname")),
        "{err:?}"
    );
    assert_eq!(err.map(|e| e.code()), Some(ErrorCode::INVALID_CONFIG));
}

#[test]
fn runtime_config_ips_with_and_without_prefix() {
    let doc = with(
        minimal(),
        "runtimeConfig",
        json!({"ips": ["10.1.2.3/24", "10.1.2.4", "fd00::4", "fd00::5/64"]}),
    );
    let c = parse(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.runtime_config.ips,
        vec![
            net("10.1.2.3/24"),
            net("10.1.2.4/32"),
            net("fd00::4/128"),
            net("fd00::5/64")
        ]
    );
    for bad in [
        json!({"ips": ["10.1.2.300"]}),
        json!({"ips": "10.1.2.3"}),
        json!({"ips": [7]}),
    ] {
        let doc = with(minimal(), "runtimeConfig", bad.clone());
        assert_eq!(code_of(&doc), Some(ErrorCode::INVALID_CONFIG), "{bad}");
    }
}

#[test]
fn runtime_config_mac() {
    for (mac, ok) in [
        ("0a:58:0a:f4:01:09", true),
        ("0A-58-0A-F4-01-09", true),
        ("01:00:5e:00:00:01", false), // multicast
        ("00:00:00:00:00:00", false),
        ("0a:58:0a:f4:01", false),
        ("0a:58:0a:f4:01:9", false),
        ("zz:58:0a:f4:01:09", false),
    ] {
        let doc = with(minimal(), "runtimeConfig", json!({"mac": mac}));
        let r = parse(&doc);
        assert_eq!(r.is_ok(), ok, "{mac}: {r:?}");
        if let Ok(c) = r {
            let want: MacAddr = mac.parse().unwrap();
            assert_eq!(c.runtime_config.mac, Some(want));
        }
    }
}

#[test]
fn malformed_json_is_code_6() {
    for bad in [
        &b""[..],
        b"{",
        b"{\"cniVersion\": }",
        b"not json",
        b"{} trailing",
    ] {
        let err = NetConf::parse(bad).err();
        assert!(matches!(err, Some(ConfigError::Malformed(_))), "{err:?}");
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::DECODE));
    }
    assert_eq!(code_of(&json!(["x"])), Some(ErrorCode::DECODE));
}

#[test]
fn missing_name_or_type_is_code_7() {
    for key in ["name", "type"] {
        let mut doc = minimal();
        if let Some(o) = doc.as_object_mut() {
            o.remove(key);
        }
        let err = parse(&doc).err();
        assert!(
            matches!(err, Some(ConfigError::MissingField(k)) if k == key),
            "{err:?}"
        );
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::INVALID_CONFIG));
        assert_eq!(
            code_of(&with(minimal(), key, json!(""))),
            Some(ErrorCode::INVALID_CONFIG)
        );
    }
}

#[test]
fn network_name_rules() {
    for (name, ok) in [
        ("a", true),
        ("k8s-pod_network.1", true),
        ("9net", true),
        ("-net", false),
        ("_net", false),
        ("net work", false),
        ("net/work", false),
        ("nét", false),
    ] {
        let r = parse(&with(minimal(), "name", json!(name)));
        assert_eq!(r.is_ok(), ok, "{name}: {r:?}");
        if !ok {
            assert_eq!(r.err().map(|e| e.code()), Some(ErrorCode::INVALID_CONFIG));
        }
    }
    assert_eq!(
        code_of(&with(minimal(), "type", json!("../x"))),
        Some(ErrorCode::INVALID_CONFIG)
    );
}

#[test]
fn unsupported_versions_are_code_1() {
    for v in ["9.9.9", "0.2.0", "0.1.0", "garbage", "1.1"] {
        let err = parse(&with(minimal(), "cniVersion", json!(v))).err();
        assert!(
            matches!(&err, Some(ConfigError::UnknownVersion(s)) if s == v),
            "{v}: {err:?}"
        );
        let msg = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(v) && msg.contains("1.1.0"), "{msg}");
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::INCOMPATIBLE_VERSION));
    }
    let mut doc = minimal();
    if let Some(o) = doc.as_object_mut() {
        o.remove("cniVersion");
    }
    assert_eq!(code_of(&doc), Some(ErrorCode::INCOMPATIBLE_VERSION));
    for v in CniVersion::ALL {
        let c = parse(&with(minimal(), "cniVersion", json!(v.as_str())));
        assert_eq!(c.ok().map(|c| c.cni_version), Some(v));
    }
}

#[test]
fn unknown_top_level_key_is_code_2() {
    let err = parse(&with(minimal(), "hairpinmode", json!(true))).err();
    let msg = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("\"hairpinmode\""), "{msg}");
    assert!(msg.contains("true"), "the value must be named: {msg}");
    assert!(
        msg.contains("\"hairpinMode\"") && msg.contains("\"bridge\""),
        "{msg}"
    );
    assert_eq!(err.map(|e| e.code()), Some(ErrorCode::UNSUPPORTED_FIELD));
    // A version problem wins over an unknown key, as the version is checked first.
    let both = with(
        with(minimal(), "cniVersion", json!("0.2.0")),
        "typo",
        json!(1),
    );
    assert_eq!(code_of(&both), Some(ErrorCode::INCOMPATIBLE_VERSION));
}

#[test]
fn namespaced_keys_are_accepted() {
    let doc = with(minimal(), "cni.dev/some-future-key", json!({"x": 1}));
    assert!(parse(&doc).is_ok());
    let doc = with(minimal(), "podnet.io/debug", json!(true));
    assert!(parse(&doc).is_ok());
}

#[test]
fn bad_bridge_name_is_code_7() {
    for bad in [json!("toolongname12345"), json!("a/b"), json!(""), json!(3)] {
        let err = parse(&with(minimal(), "bridge", bad.clone())).err();
        let msg = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("bridge"), "{msg}");
        assert_eq!(
            err.map(|e| e.code()),
            Some(ErrorCode::INVALID_CONFIG),
            "{bad}"
        );
    }
}

#[test]
fn mtu_range() {
    for (mtu, ok) in [
        (json!(0), false),
        (json!(67), false),
        (json!(68), true),
        (json!(9000), true),
        (json!(65535), true),
        (json!(65536), false),
        (json!(-1), false),
        (json!(1500.5), false),
        (json!("1500"), false),
    ] {
        let r = parse(&with(minimal(), "mtu", mtu.clone()));
        assert_eq!(r.is_ok(), ok, "{mtu}: {r:?}");
        if !ok {
            assert_eq!(r.err().map(|e| e.code()), Some(ErrorCode::INVALID_CONFIG));
        }
    }
}

#[test]
fn ipam_without_type_is_code_7() {
    for ipam in [
        json!({}),
        json!({"type": ""}),
        json!({"subnet": "10.0.0.0/8"}),
        json!({"type": "a/b"}),
        json!("host-local"),
    ] {
        let err = parse(&with(minimal(), "ipam", ipam.clone())).err();
        let msg = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("ipam"), "{msg}");
        assert_eq!(
            err.map(|e| e.code()),
            Some(ErrorCode::INVALID_CONFIG),
            "{ipam}"
        );
    }
}

#[test]
fn wrong_types_are_code_7() {
    for (key, v) in [
        ("hairpinMode", json!("yes")),
        ("dns", json!(["1.1.1.1"])),
        ("dns", json!({"nameservers": "1.1.1.1"})),
        ("runtimeConfig", json!([])),
        ("args", json!("K8S_POD_NAME=x")),
        ("prevResult", json!([])),
        ("cni.dev/valid-attachments", json!({})),
        (
            "cni.dev/valid-attachments",
            json!([{"containerID": "../c1", "ifname": "eth0"}]),
        ),
        (
            "cni.dev/valid-attachments",
            json!([{"containerID": "c1", "ifname": "eth0:1"}]),
        ),
    ] {
        assert_eq!(
            code_of(&with(minimal(), key, v.clone())),
            Some(ErrorCode::INVALID_CONFIG),
            "{key}: {v}"
        );
    }
    // Null reads as absent.
    let c = parse(&with(
        with(minimal(), "mtu", Value::Null),
        "dns",
        Value::Null,
    ));
    assert_eq!(c.ok().map(|c| (c.mtu, c.dns)), Some((None, None)));
}

#[test]
fn version_request() {
    let r = |b: &[u8]| VersionRequest::parse(b).ok().map(|r| r.cni_version);
    assert_eq!(r(b""), Some(None));
    assert_eq!(r(b"  \n"), Some(None));
    assert_eq!(r(b"{}"), Some(None));
    assert_eq!(
        r(br#"{"cniVersion": "1.0.0", "name": "x", "other": [1]}"#),
        Some(Some("1.0.0".into()))
    );
    // Unsupported versions are still reported back; the caller decides.
    assert_eq!(r(br#"{"cniVersion": "0.2.0"}"#), Some(Some("0.2.0".into())));
    let err = VersionRequest::parse(b"{oops").err();
    assert_eq!(err.map(|e| e.code()), Some(ErrorCode::DECODE));
    let err = VersionRequest::parse(br#"{"cniVersion": 1}"#).err();
    assert_eq!(err.map(|e| e.code()), Some(ErrorCode::INVALID_CONFIG));
}

#[test]
fn port_mappings_read_and_refused() {
    let doc = with(
        minimal(),
        "runtimeConfig",
        json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "UDP", "hostIP": "10.0.0.1"},
            {"hostPort": 9090, "containerPort": 90, "protocol": "", "hostIP": "0.0.0.0"},
            {"hostPort": 7070, "containerPort": 70, "protocol": "sctp", "hostIP": "fd00::1"},
        ]}),
    );
    let got = parse(&doc)
        .unwrap_or_else(|e| panic!("{e}"))
        .runtime_config
        .port_mappings;
    assert_eq!(got[0].protocol, PortProtocol::Udp);
    assert_eq!(got[0].host_ip, Some(ip("10.0.0.1")));
    assert_eq!((got[1].protocol, got[1].host_ip), (PortProtocol::Tcp, None));
    assert_eq!(got[2].protocol, PortProtocol::Sctp);
    for (bad, says) in [
        (json!({"hostPort": 0, "containerPort": 80}), "hostPort"),
        (json!({"hostPort": 70000, "containerPort": 80}), "hostPort"),
        (json!({"hostPort": 80}), "containerPort"),
        (
            json!({"hostPort": 80, "containerPort": 80, "protocol": "icmp"}),
            "protocol",
        ),
        (
            json!({"hostPort": 80, "containerPort": 80, "hostIP": "node"}),
            "hostIP",
        ),
    ] {
        let doc = with(minimal(), "runtimeConfig", json!({"portMappings": [bad]}));
        let e = parse(&doc).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}
