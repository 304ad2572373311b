//! The network configuration podnet receives on stdin.
//!
//! This is a single plugin configuration as a runtime derives it from a
//! configuration list (spec section 3): `cniVersion`, `name`, `type`, the
//! plugin's own keys, and the keys the runtime injects (`runtimeConfig`,
//! `prevResult`, `args`, `cni.dev/valid-attachments` for GC).

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use super::error::ErrorCode;
use super::ifname::IfName;
use super::result::{parse_cidr, supported_list, CniResult, Dns, ResultError};
use super::version::CniVersion;
use crate::mac::{BadMac, MacAddr};

/// podnet's own top-level keys.
const OWN_KEYS: [&str; 3] = ["bridge", "mtu", "hairpinMode"];

/// Keys defined by the specification (required, protocol, reserved and
/// well-known) that may appear in a plugin configuration.
const SPEC_KEYS: [&str; 14] = [
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "ipam",
    "dns",
    "prevResult",
    "runtimeConfig",
    "args",
    "capabilities",
    "ipMasq",
    "disableCheck",
    "disableGC",
    "loadOnlyInlinedPlugins",
];

const DEFAULT_BRIDGE: &str = "podnet0";
const MTU_MIN: u64 = 68;
const MTU_MAX: u64 = 65535;

/// The VERSION verb's stdin: `{"cniVersion": "..."}`. Empty stdin and unknown keys are tolerated.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VersionRequest {
    pub cni_version: Option<String>,
}

impl VersionRequest {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(VersionRequest::default());
        }
        let doc: Value = serde_json::from_slice(bytes).map_err(ConfigError::Malformed)?;
        let obj = doc.as_object().ok_or(ConfigError::NotAnObject)?;
        let cni_version = match present(obj, "cniVersion") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(invalid("cniVersion", "must be a string")),
        };
        Ok(VersionRequest { cni_version })
    }
}

/// A parsed network configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    /// The network name (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`).
    pub name: String,
    /// `type`: the plugin binary's name.
    pub plugin_type: String,
    /// `bridge`, default `podnet0`.
    pub bridge: IfName,
    /// `mtu`, 68..=65535 when given.
    pub mtu: Option<u32>,
    /// `hairpinMode`, default false.
    pub hairpin_mode: bool,
    pub ipam: Option<IpamConf>,
    /// `dns`; `None` when absent, null or empty.
    pub dns: Option<Dns>,
    /// `prevResult`, read in the config's `cniVersion` unless it names its own;
    /// absent, null and `{}` are `None`.
    pub prev_result: Option<CniResult>,
    pub runtime_config: RuntimeConfig,
    /// `cni.dev/valid-attachments` (GC only). `Some(vec![])` means "nothing is valid".
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The whole input document, untouched (for delegating to IPAM plugins).
    pub raw: Value,
}

/// The `ipam` section.
#[derive(Clone, Debug, PartialEq)]
pub struct IpamConf {
    /// `type`: the IPAM plugin binary's name.
    pub plugin_type: String,
    /// The `ipam` object as given.
    pub raw: Value,
}

/// Capability arguments podnet consumes from `runtimeConfig`; other
/// capabilities (portMappings, bandwidth, ...) are for chained plugins and are ignored.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RuntimeConfig {
    /// `ips` capability: "10.1.2.3/24" or bare "10.1.2.3" (read as /32 or /128).
    pub ips: Vec<IpNetwork>,
    /// `mac` capability: a unicast 48-bit MAC address.
    pub mac: Option<MacAddr>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// Why a network configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("network configuration is not valid JSON: {0}")]
    Malformed(serde_json::Error),
    #[error("network configuration must be a JSON object")]
    NotAnObject,
    #[error("network configuration has no cniVersion (read as 0.1.0, which podnet does not support; podnet supports {list})", list = supported_list())]
    MissingVersion,
    #[error("unsupported cniVersion {0:?}; podnet supports {list}", list = supported_list())]
    UnknownVersion(String),
    #[error("network configuration is missing required field {0:?}")]
    MissingField(&'static str),
    #[error("invalid {field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("unsupported field {key:?} (value {value}) in network configuration; podnet's own fields are {own}", own = own_keys())]
    UnsupportedField { key: String, value: String },
    #[error("invalid prevResult: {0}")]
    PrevResult(ResultError),
}

impl ConfigError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ConfigError::Malformed(_) | ConfigError::NotAnObject => ErrorCode::DECODE,
            ConfigError::MissingVersion | ConfigError::UnknownVersion(_) => {
                ErrorCode::INCOMPATIBLE_VERSION
            }
            ConfigError::UnsupportedField { .. } => ErrorCode::UNSUPPORTED_FIELD,
            ConfigError::MissingField(_) | ConfigError::InvalidField { .. } => {
                ErrorCode::INVALID_CONFIG
            }
            ConfigError::PrevResult(e) => {
                if e.code() == ErrorCode::INCOMPATIBLE_VERSION {
                    ErrorCode::INCOMPATIBLE_VERSION
                } else {
                    ErrorCode::INVALID_CONFIG
                }
            }
        }
    }
}

fn own_keys() -> String {
    OWN_KEYS
        .iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// `None` for an absent key or JSON null.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A value for an error message: compact JSON, cut to a readable length.
fn show(v: &Value) -> String {
    const MAX: usize = 60;
    let s = v.to_string();
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

/// Network names as libcni validates them: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn valid_network_name(name: &str) -> bool {
    podnet_ipam::ident::is_cni_identifier(name)
}

/// A plugin binary name: non-empty, nothing a file path would split on.
fn check_plugin_type(field: &str, t: &str) -> Result<(), ConfigError> {
    if t.contains(['/', '\\', '\0']) || t == "." || t == ".." {
        return Err(invalid(
            field,
            format!("{t:?} is not a plugin binary name (no '/' or '\\' allowed)"),
        ));
    }
    Ok(())
}

fn required_string(obj: &Map<String, Value>, key: &'static str) -> Result<String, ConfigError> {
    match present(obj, key) {
        None => Err(ConfigError::MissingField(key)),
        Some(Value::String(s)) if s.is_empty() => Err(ConfigError::MissingField(key)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(invalid(key, format!("must be a string, got {}", show(v)))),
    }
}

/// A MAC address an interface can carry: unicast, not all zeros.
fn parse_mac(field: &str, text: &str) -> Result<MacAddr, ConfigError> {
    let mac: MacAddr = text
        .parse()
        .map_err(|e: BadMac| invalid(field, e.to_string()))?;
    if mac.is_multicast() {
        return Err(invalid(
            field,
            format!("{text:?} is a multicast address; an interface needs a unicast one"),
        ));
    }
    if mac.is_zero() {
        return Err(invalid(field, format!("{text:?} is the all-zero address")));
    }
    Ok(mac)
}

impl NetConf {
    /// The configuration of podnet itself: its own keys are checked and
    /// unknown top-level keys refused.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, ConfigError> {
        Self::parse_with(bytes, true)
    }

    /// The configuration as an IPAM plugin sees it: the top level belongs
    /// to whichever plugin delegated to us (bridge, ptp, ...), so its keys
    /// are neither checked nor refused, and podnet's own keys keep their
    /// defaults.
    pub fn parse_for_ipam(bytes: &[u8]) -> Result<NetConf, ConfigError> {
        Self::parse_with(bytes, false)
    }

    fn parse_with(bytes: &[u8], own: bool) -> Result<NetConf, ConfigError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(ConfigError::Malformed)?;
        let obj = raw.as_object().ok_or(ConfigError::NotAnObject)?;

        let cni_version = match present(obj, "cniVersion") {
            None => return Err(ConfigError::MissingVersion),
            Some(Value::String(s)) if s.is_empty() => return Err(ConfigError::MissingVersion),
            Some(Value::String(s)) => {
                CniVersion::parse(s).ok_or_else(|| ConfigError::UnknownVersion(s.clone()))?
            }
            Some(v) => {
                return Err(invalid(
                    "cniVersion",
                    format!("must be a string, got {}", show(v)),
                ))
            }
        };

        // An explicit allowlist rather than serde's deny_unknown_fields: the spec's
        // reserved/well-known keys and any namespaced key must pass, only real unknowns fail.
        if let Some((key, value)) = obj.iter().find(|(k, _)| {
            own && !k.contains('/')
                && !OWN_KEYS.contains(&k.as_str())
                && !SPEC_KEYS.contains(&k.as_str())
        }) {
            return Err(ConfigError::UnsupportedField {
                key: key.clone(),
                value: show(value),
            });
        }

        let name = required_string(obj, "name")?;
        if !valid_network_name(&name) {
            return Err(invalid(
                "name",
                format!("{name:?} must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"),
            ));
        }
        let plugin_type = required_string(obj, "type")?;
        check_plugin_type("type", &plugin_type)?;

        // Another plugin's keys of the same names are not ours to read.
        let mine = |key: &str| if own { present(obj, key) } else { None };
        let bridge = match mine("bridge") {
            None => IfName::try_from(DEFAULT_BRIDGE).map_err(|e| invalid("bridge", e))?,
            Some(Value::String(s)) => {
                IfName::try_from(s.as_str()).map_err(|e| invalid("bridge", e))?
            }
            Some(v) => {
                return Err(invalid(
                    "bridge",
                    format!("must be a string, got {}", show(v)),
                ))
            }
        };

        let mtu = match mine("mtu") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(n) if (MTU_MIN..=MTU_MAX).contains(&n) => u32::try_from(n).ok(),
                _ => {
                    return Err(invalid(
                        "mtu",
                        format!("{} is not an integer from {MTU_MIN} to {MTU_MAX}", show(v)),
                    ))
                }
            },
        };

        let hairpin_mode = match mine("hairpinMode") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(invalid(
                    "hairpinMode",
                    format!("must be true or false, got {}", show(v)),
                ))
            }
        };

        let ipam = match present(obj, "ipam") {
            None => None,
            Some(v @ Value::Object(o)) => {
                let t = required_string(o, "type").map_err(|_| {
                    invalid(
                        "ipam.type",
                        "the ipam section needs a non-empty \"type\" naming the IPAM plugin",
                    )
                })?;
                check_plugin_type("ipam.type", &t)?;
                Some(IpamConf {
                    plugin_type: t,
                    raw: v.clone(),
                })
            }
            Some(v) => {
                return Err(invalid(
                    "ipam",
                    format!("must be an object, got {}", show(v)),
                ))
            }
        };

        let dns = match present(obj, "dns") {
            None => None,
            Some(v @ Value::Object(_)) => {
                Some(Dns::deserialize_value(v).map_err(|e| invalid("dns", e))?)
                    .filter(|d| !d.is_empty())
            }
            Some(v) => {
                return Err(invalid(
                    "dns",
                    format!("must be an object, got {}", show(v)),
                ))
            }
        };

        let prev_result = match present(obj, "prevResult") {
            None => None,
            Some(Value::Object(o)) if o.is_empty() => None,
            Some(v @ Value::Object(_)) => {
                Some(CniResult::from_json(v, cni_version).map_err(ConfigError::PrevResult)?)
            }
            Some(v) => {
                return Err(invalid(
                    "prevResult",
                    format!("must be an object, got {}", show(v)),
                ))
            }
        };

        let runtime_config = match present(obj, "runtimeConfig") {
            None => RuntimeConfig::default(),
            Some(Value::Object(o)) => parse_runtime_config(o)?,
            Some(v) => {
                return Err(invalid(
                    "runtimeConfig",
                    format!("must be an object, got {}", show(v)),
                ))
            }
        };

        if let Some(v) = present(obj, "args") {
            if !v.is_object() {
                return Err(invalid(
                    "args",
                    format!("must be an object, got {}", show(v)),
                ));
            }
        }

        let valid_attachments = match present(obj, "cni.dev/valid-attachments") {
            None => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .enumerate()
                    .map(|(n, v)| parse_attachment(n, v))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(v) => {
                return Err(invalid(
                    "cni.dev/valid-attachments",
                    format!("must be an array, got {}", show(v)),
                ))
            }
        };

        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            bridge,
            mtu,
            hairpin_mode,
            ipam,
            dns,
            prev_result,
            runtime_config,
            valid_attachments,
            raw,
        })
    }
}

fn parse_runtime_config(o: &Map<String, Value>) -> Result<RuntimeConfig, ConfigError> {
    let ips = match present(o, "ips") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(n, v)| {
                let field = format!("runtimeConfig.ips[{n}]");
                match v {
                    Value::String(s) => {
                        parse_cidr(s, true).map_err(|e| invalid(field, format!("{s:?}: {e}")))
                    }
                    other => Err(invalid(
                        field,
                        format!("must be a string, got {}", show(other)),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(invalid(
                "runtimeConfig.ips",
                format!("must be an array of addresses, got {}", show(v)),
            ))
        }
    };
    let mac = match present(o, "mac") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(parse_mac("runtimeConfig.mac", s)?),
        Some(v) => {
            return Err(invalid(
                "runtimeConfig.mac",
                format!("must be a string, got {}", show(v)),
            ))
        }
    };
    Ok(RuntimeConfig { ips, mac })
}

fn parse_attachment(n: usize, v: &Value) -> Result<Attachment, ConfigError> {
    let field = format!("cni.dev/valid-attachments[{n}]");
    let o = v
        .as_object()
        .ok_or_else(|| invalid(field.clone(), format!("must be an object, got {}", show(v))))?;
    let get = |key: &str| match present(o, key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid(
            format!("{field}.{key}"),
            "must be a non-empty string",
        )),
    };
    // A malformed entry makes the whole list untrustworthy: GC refuses
    // rather than treat the attachment it names as not valid (and delete a
    // live pod's link).
    let container_id = get("containerID")?;
    if container_id.len() > podnet_ipam::ident::MAX_CONTAINER_ID
        || !podnet_ipam::ident::is_cni_identifier(&container_id)
    {
        return Err(invalid(
            format!("{field}.containerID"),
            format!("{container_id:?} is not a CNI container id"),
        ));
    }
    let ifname = get("ifname")?;
    podnet_ipam::ident::check_ifname(&ifname)
        .map_err(|reason| invalid(format!("{field}.ifname"), reason))?;
    Ok(Attachment {
        container_id,
        ifname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::result::{Interface, IpConfig, Route};
    use serde_json::json;

    fn parse(v: &Value) -> Result<NetConf, ConfigError> {
        NetConf::parse(v.to_string().as_bytes())
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
            "ipam": {"type": "podnet-ipam", "subnet": "10.244.1.0/24", "ranges": [[{"subnet": "fd00::/64"}]]},
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"], "options": ["ndots:5"], "domain": "cluster.local"},
            "runtimeConfig": {
                "ips": ["10.244.1.9/24", "fd00::9/64"],
                "mac": "0a:58:0a:f4:01:09",
                "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                "bandwidth": {"ingressRate": 1000}
            },
            "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}},
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
                plugin_type: "podnet-ipam".into(),
                raw: doc["ipam"].clone()
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
            }
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
}
