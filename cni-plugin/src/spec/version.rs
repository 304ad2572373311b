//! The CNI specification versions podnet supports.
//!
//! 0.1.0 and 0.2.0 (the `ip4`/`ip6` result shape) are not supported. Version
//! strings are matched exactly, as the Go reference's version reconciler does.

use std::fmt;

/// A CNI specification version podnet can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    /// Every supported version, oldest first (the order of VERSION's `supportedVersions`).
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The newest version podnet implements.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    /// The version as it appears in JSON, e.g. `"0.4.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Parses an exact version string; anything not in [`CniVersion::ALL`] is `None`.
    pub fn parse(s: &str) -> Option<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn has_status_and_gc(self) -> bool {
        self >= CniVersion::V1_1_0
    }
}

/// VERSION's answer: the versions podnet reads configurations in and
/// writes results in. It echoes the version the runtime asked in, as the
/// spec says (Go's skel always answers its own latest instead).
pub fn version_reply(requested: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": requested.unwrap_or(CniVersion::LATEST.as_str()),
        "supportedVersions": CniVersion::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for CniVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_every_version() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()), Some(v));
            assert_eq!(v.to_string(), v.as_str());
        }
    }

    #[test]
    fn all_is_sorted_and_latest_is_last() {
        let mut sorted = CniVersion::ALL;
        sorted.sort();
        assert_eq!(sorted, CniVersion::ALL);
        assert_eq!(
            CniVersion::ALL[CniVersion::ALL.len() - 1],
            CniVersion::LATEST
        );
        assert_eq!(CniVersion::LATEST, CniVersion::V1_1_0);
    }

    #[test]
    fn rejects_unsupported_and_inexact_strings() {
        for s in [
            "",
            "0.1.0",
            "0.2.0",
            "9.9.9",
            "1.1",
            "1.0",
            "v1.0.0",
            " 1.0.0",
            "1.0.0 ",
            "1.1.0-rc1",
            "garbage",
        ] {
            assert_eq!(CniVersion::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn capabilities_by_version() {
        let check: Vec<_> = CniVersion::ALL.iter().map(|v| v.has_check()).collect();
        assert_eq!(check, [false, false, true, true, true]);
        let sg: Vec<_> = CniVersion::ALL
            .iter()
            .map(|v| v.has_status_and_gc())
            .collect();
        assert_eq!(sg, [false, false, false, false, true]);
    }

    #[test]
    fn serializes_as_string() {
        let json = serde_json::to_string(&CniVersion::V0_3_1).ok();
        assert_eq!(json.as_deref(), Some("\"0.3.1\""));
    }
}
