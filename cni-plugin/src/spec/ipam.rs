//! The `ipam` section, read once: podnet's own IPAM (`podnet-ipam`, a
//! request to podnetd) with its settings checked, or the name of a plugin
//! to delegate to with the section left for that plugin to read.

use std::path::PathBuf;

use ipnetwork::IpNetwork;
use podnet_ipam::proto::DEFAULT_SOCKET;
use podnet_ipam::spool::DEFAULT_SPOOL_DIR;
use serde::Deserialize;
use serde_json::Value;

use super::config::ConfigError;
use super::result::Route;

/// `ipam.type` of podnet's own IPAM.
pub const NATIVE_TYPE: &str = "podnet-ipam";

/// The `ipam` section.
#[derive(Clone, Debug, PartialEq)]
pub struct IpamConf {
    /// `type`: the IPAM plugin binary's name.
    pub plugin_type: String,
    pub kind: IpamKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IpamKind {
    /// `podnet-ipam`: podnetd answers, in process.
    Native(NativeConf),
    /// Any other plugin, run from `CNI_PATH` with the whole configuration.
    Delegated,
}

/// The settings of `podnet-ipam`.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeConf {
    pub socket: PathBuf,
    pub spool_dir: PathBuf,
    pub routes: Vec<Route>,
}

/// The section as written. Ours, so unknown keys are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConf {
    #[serde(rename = "type")]
    _type: String,
    socket: Option<PathBuf>,
    spool_dir: Option<PathBuf>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    dst: IpNetwork,
    gw: Option<std::net::IpAddr>,
}

impl IpamConf {
    pub(super) fn parse(plugin_type: String, section: &Value) -> Result<Self, ConfigError> {
        let kind = if plugin_type == NATIVE_TYPE {
            IpamKind::Native(NativeConf::parse(section)?)
        } else {
            IpamKind::Delegated
        };
        Ok(Self { plugin_type, kind })
    }

    pub(super) fn parse_native(plugin_type: String, section: &Value) -> Result<Self, ConfigError> {
        let kind = IpamKind::Native(NativeConf::parse(section)?);
        Ok(Self { plugin_type, kind })
    }

    pub fn native(&self) -> Option<&NativeConf> {
        match &self.kind {
            IpamKind::Native(n) => Some(n),
            IpamKind::Delegated => None,
        }
    }
}

impl NativeConf {
    fn parse(section: &Value) -> Result<Self, ConfigError> {
        let conf = RawConf::deserialize(section).map_err(|e| {
            let message = e.to_string();
            match unknown_field(&message) {
                Some(key) => ConfigError::IpamUnsupportedField { key },
                None => ConfigError::InvalidField {
                    field: "ipam".into(),
                    reason: message,
                },
            }
        })?;
        Ok(Self {
            socket: conf.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            spool_dir: conf
                .spool_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR)),
            routes: conf
                .routes
                .into_iter()
                .map(|r| Route::new(r.dst, r.gw))
                .collect(),
        })
    }
}

/// The key serde's `deny_unknown_fields` names ("unknown field `x`, ...").
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(key, _)| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn native_section_gets_its_defaults_and_routes() {
        let section = json!({"type": "podnet-ipam", "routes": [{"dst": "10.96.0.0/12"}]});
        let conf = IpamConf::parse(NATIVE_TYPE.into(), &section).unwrap();
        let native = conf.native().unwrap();
        assert_eq!(native.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(native.spool_dir, PathBuf::from(DEFAULT_SPOOL_DIR));
        assert_eq!(
            native.routes,
            vec![Route::new("10.96.0.0/12".parse().unwrap(), None)]
        );
    }

    #[test]
    fn native_section_refuses_unknown_keys_by_name() {
        let section = json!({"type": "podnet-ipam", "subnet": "10.0.0.0/8"});
        let err = IpamConf::parse(NATIVE_TYPE.into(), &section).unwrap_err();
        assert!(matches!(&err, ConfigError::IpamUnsupportedField { key } if key == "subnet"));
        assert_eq!(err.code(), super::super::ErrorCode::UNSUPPORTED_FIELD);
        let bad = json!({"type": "podnet-ipam", "routes": [{"dst": "nope"}]});
        let err = IpamConf::parse(NATIVE_TYPE.into(), &bad).unwrap_err();
        assert_eq!(err.code(), super::super::ErrorCode::INVALID_CONFIG);
    }

    #[test]
    fn another_plugins_section_is_not_read() {
        let section = json!({"type": "host-local", "subnet": "10.0.0.0/8", "anything": 1});
        let conf = IpamConf::parse("host-local".into(), &section).unwrap();
        assert_eq!(conf.kind, IpamKind::Delegated);
    }
}
