//! Validated Linux interface names.

use std::fmt;

/// A Linux network interface name, validated once
/// ([`podnet_ipam::ident::check_ifname`], the rule podnetd applies too).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IfName(String);

impl IfName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn validate(name: &str) -> Result<(), String> {
        podnet_ipam::ident::check_ifname(name)
    }
}

impl TryFrom<&str> for IfName {
    type Error = String;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        Self::validate(name)?;
        Ok(IfName(name.to_owned()))
    }
}

impl TryFrom<String> for IfName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::validate(&name)?;
        Ok(IfName(name))
    }
}

impl AsRef<str> for IfName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for IfName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        IfName::try_from(s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for IfName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_reject_table() {
        let table: &[(&str, bool)] = &[
            ("eth0", true),
            ("podnet0", true),
            ("a", true),
            ("veth1234567890a", true), // exactly 15 bytes
            ("...", true),
            (".a", true),
            ("eth0.100", true),
            ("eth-0_x@y", true),
            ("", false),
            ("toolongname12345", false), // 16 bytes
            (".", false),
            ("..", false),
            ("a/b", false),
            ("eth0:1", false),
            ("eth 0", false),
            ("eth0\t", false),
            ("\neth0", false),
            ("eth\u{a0}0", false), // NBSP is whitespace for Go's unicode.IsSpace too
            ("eth\u{2003}", false),
            ("eth\0", false),
            ("e\u{e0}", false),  // 'à' is 0xC3 0xA0: the kernel's isspace(0xA0)
            ("e\u{e1}", true),   // 'á' is 0xC3 0xA1
            ("ééééééé", true),   // 14 bytes
            ("éééééééé", false), // 8 chars but 16 bytes: the limit is in bytes
        ];
        for &(name, ok) in table {
            let got = IfName::try_from(name);
            assert_eq!(got.is_ok(), ok, "{name:?}: {got:?}");
            if let Ok(n) = got {
                assert_eq!(n.as_str(), name);
                assert_eq!(n.to_string(), name);
            }
        }
    }

    #[test]
    fn error_messages_are_human() {
        let e = IfName::try_from("toolongname12345")
            .err()
            .unwrap_or_default();
        assert!(e.contains("too long") && e.contains("15"), "{e}");
        let e = IfName::try_from("a/b").err().unwrap_or_default();
        assert!(e.contains("'/'"), "{e}");
    }

    #[test]
    fn serde_uses_validation() {
        let ok: Result<IfName, _> = serde_json::from_str("\"eth0\"");
        assert_eq!(ok.ok().map(|n| n.0), Some("eth0".to_owned()));
        let bad: Result<IfName, _> = serde_json::from_str("\"a:b\"");
        assert!(bad.is_err());
        let bad: Result<IfName, _> = serde_json::from_str("7");
        assert!(bad.is_err());
        let n = IfName::try_from("eth1").ok();
        assert_eq!(
            n.and_then(|n| serde_json::to_string(&n).ok()).as_deref(),
            Some("\"eth1\"")
        );
    }
}
