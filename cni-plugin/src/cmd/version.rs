//! VERSION: the versions this plugin reads configurations in and writes
//! results in.

use crate::spec::CniVersion;

/// The reply echoes the version the runtime asked in, as the spec says
/// (Go's skel always answers its own latest instead).
pub fn version(requested: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": requested.unwrap_or(CniVersion::LATEST.as_str()),
        "supportedVersions": CniVersion::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}
