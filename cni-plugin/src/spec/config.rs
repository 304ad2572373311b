//! The network configuration podnet receives on stdin.
//!
//! This is a single plugin configuration as a runtime derives it from a
//! configuration list (spec section 3): `cniVersion`, `name`, `type`, the
//! plugin's own keys, and the keys the runtime injects (`runtimeConfig`,
//! `prevResult`, `args`, `cni.dev/valid-attachments` for GC).

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::error::ErrorCode;
use super::ifname::IfName;
use super::ipam::IpamConf;
use super::result::{supported_list, CniResult, Dns, ResultError};
use super::version::CniVersion;

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
    /// The whole input document, untouched (conventions read where they
    /// are used, such as `args.cni.ips`).
    pub raw: Value,
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
    #[error("unsupported field {key:?} in the ipam section; podnet-ipam's fields are \"type\", \"socket\", \"spoolDir\", \"routes\"")]
    IpamUnsupportedField { key: String },
    #[error("invalid prevResult")]
    PrevResult(#[source] ResultError),
}

impl ConfigError {
    /// Whether the error is in the `ipam` section, which DEL can do without.
    pub fn in_ipam_section(&self) -> bool {
        match self {
            Self::IpamUnsupportedField { .. } => true,
            Self::InvalidField { field, .. } => field == "ipam" || field.starts_with("ipam."),
            Self::Malformed(_)
            | Self::NotAnObject
            | Self::MissingVersion
            | Self::UnknownVersion(_)
            | Self::MissingField(_)
            | Self::UnsupportedField { .. }
            | Self::PrevResult(_) => false,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ConfigError::Malformed(_) | ConfigError::NotAnObject => ErrorCode::DECODE,
            ConfigError::MissingVersion | ConfigError::UnknownVersion(_) => {
                ErrorCode::INCOMPATIBLE_VERSION
            }
            ConfigError::UnsupportedField { .. } | ConfigError::IpamUnsupportedField { .. } => {
                ErrorCode::UNSUPPORTED_FIELD
            }
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
        let cni_version = parse_version(obj)?;
        if own {
            refuse_unknown_keys(obj)?;
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
        let own_settings = if own {
            OwnSettings::parse(obj)?
        } else {
            OwnSettings::default_for_ipam()?
        };
        let ipam = match present(obj, "ipam") {
            None => None,
            Some(section @ Value::Object(o)) => Some(parse_ipam(section, o, own)?),
            Some(v) => return Err(not_an_object("ipam", v)),
        };
        let dns = match present(obj, "dns") {
            None => None,
            Some(v @ Value::Object(_)) => {
                Some(Dns::deserialize_value(v).map_err(|e| invalid("dns", e))?)
                    .filter(|d| !d.is_empty())
            }
            Some(v) => return Err(not_an_object("dns", v)),
        };
        let prev_result = match present(obj, "prevResult") {
            None => None,
            Some(Value::Object(o)) if o.is_empty() => None,
            Some(v @ Value::Object(_)) => {
                Some(CniResult::from_json(v, cni_version).map_err(ConfigError::PrevResult)?)
            }
            Some(v) => return Err(not_an_object("prevResult", v)),
        };
        let runtime_config = match object(obj, "runtimeConfig")? {
            None => RuntimeConfig::default(),
            Some(o) => parse_runtime_config(o)?,
        };
        // `args` is read where it is used (`requested_ips`): a value only
        // ADD's IPAM needs must not stand in the way of DEL.
        object(obj, "args")?;
        let valid_attachments = parse_valid_attachments(obj)?;
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            bridge: own_settings.bridge,
            mtu: own_settings.mtu,
            hairpin_mode: own_settings.hairpin_mode,
            ipam,
            dns,
            prev_result,
            runtime_config,
            valid_attachments,
            raw,
        })
    }

    /// Static addresses asked for: the `ips` capability first, then the
    /// CONVENTIONS' `args.cni.ips`, each address once.
    pub fn requested_ips(&self) -> Result<Vec<IpAddr>, ConfigError> {
        let mut ips: Vec<IpAddr> = self.runtime_config.ips.iter().map(|n| n.ip()).collect();
        for ip in parse_args_ips(&self.raw)? {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        Ok(ips)
    }
}

fn parse_version(obj: &Map<String, Value>) -> Result<CniVersion, ConfigError> {
    match present(obj, "cniVersion") {
        None => Err(ConfigError::MissingVersion),
        Some(Value::String(s)) if s.is_empty() => Err(ConfigError::MissingVersion),
        Some(Value::String(s)) => {
            CniVersion::parse(s).ok_or_else(|| ConfigError::UnknownVersion(s.clone()))
        }
        Some(v) => Err(invalid(
            "cniVersion",
            format!("must be a string, got {}", show(v)),
        )),
    }
}

/// An explicit allowlist rather than serde's deny_unknown_fields: the spec's
/// reserved/well-known keys and any namespaced key must pass, only real
/// unknowns fail.
fn refuse_unknown_keys(obj: &Map<String, Value>) -> Result<(), ConfigError> {
    match obj.iter().find(|(k, _)| {
        !k.contains('/') && !OWN_KEYS.contains(&k.as_str()) && !SPEC_KEYS.contains(&k.as_str())
    }) {
        Some((key, value)) => Err(ConfigError::UnsupportedField {
            key: key.clone(),
            value: show(value),
        }),
        None => Ok(()),
    }
}

/// podnet's own top-level keys.
struct OwnSettings {
    bridge: IfName,
    mtu: Option<u32>,
    hairpin_mode: bool,
}

impl OwnSettings {
    fn default_for_ipam() -> Result<Self, ConfigError> {
        Ok(Self {
            bridge: IfName::try_from(DEFAULT_BRIDGE).map_err(|e| invalid("bridge", e))?,
            mtu: None,
            hairpin_mode: false,
        })
    }

    fn parse(obj: &Map<String, Value>) -> Result<Self, ConfigError> {
        let bridge = match present(obj, "bridge") {
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
        let mtu = match present(obj, "mtu") {
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
        let hairpin_mode = match present(obj, "hairpinMode") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(invalid(
                    "hairpinMode",
                    format!("must be true or false, got {}", show(v)),
                ))
            }
        };
        Ok(Self {
            bridge,
            mtu,
            hairpin_mode,
        })
    }
}

/// `key` as a JSON object: `None` when absent or null, an error when it is
/// anything but an object.
fn object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ConfigError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(not_an_object(key, v)),
    }
}

fn not_an_object(key: &str, v: &Value) -> ConfigError {
    invalid(key, format!("must be an object, got {}", show(v)))
}

/// The section is podnet-ipam's own when podnet-ipam reads it (`own` is
/// false), whatever name its binary was installed under.
fn parse_ipam(section: &Value, o: &Map<String, Value>, own: bool) -> Result<IpamConf, ConfigError> {
    let t = required_string(o, "type").map_err(|_| {
        invalid(
            "ipam.type",
            "the ipam section needs a non-empty \"type\" naming the IPAM plugin",
        )
    })?;
    check_plugin_type("ipam.type", &t)?;
    if own {
        IpamConf::parse(t, section)
    } else {
        IpamConf::parse_native(t, section)
    }
}

mod runtime;
use runtime::{parse_args_ips, parse_runtime_config, parse_valid_attachments};
pub use runtime::{Attachment, PortMapping, PortProtocol, RuntimeConfig};

#[cfg(test)]
mod tests;
