//! CNI error codes and the error document a plugin prints on stdout.

use std::fmt;

/// A CNI error code. 0-99 are reserved by the specification; 100+ are podnet's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: Self = Self(1);
    /// Unsupported field in network configuration (message names key and value).
    pub const UNSUPPORTED_FIELD: Self = Self(2);
    /// Container unknown or does not exist (runtime need not clean up).
    pub const UNKNOWN_CONTAINER: Self = Self(3);
    /// Invalid necessary environment variables (message names them).
    pub const INVALID_ENV: Self = Self(4);
    /// I/O failure, e.g. reading stdin.
    pub const IO: Self = Self(5);
    /// Failed to decode content.
    pub const DECODE: Self = Self(6);
    /// Invalid network config.
    pub const INVALID_CONFIG: Self = Self(7);
    /// Transient condition; the runtime should retry later.
    pub const TRY_AGAIN_LATER: Self = Self(11);
    /// STATUS: the plugin cannot service ADD requests.
    pub const NOT_AVAILABLE: Self = Self(50);
    /// STATUS: not available, and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: Self = Self(51);
    /// podnet: a kernel (netlink, sysctl, namespace) operation failed.
    pub const KERNEL: Self = Self(100);
    /// podnet: the interface to create already exists in the container.
    pub const INTERFACE_EXISTS: Self = Self(101);
    /// podnet: address management failed.
    pub const IPAM: Self = Self(102);
    /// CHECK found something ADD created missing or changed.
    pub const CHECK_FAILED: Self = Self(103);
    /// podnet: a failure inside podnet itself (a worker thread that died, a
    /// netlink reply it could not read), not the kernel's or the input's.
    pub const INTERNAL: Self = Self(104);
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The error document of the specification (section 5, "Error").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorReply {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl ErrorReply {
    pub fn new(
        version: &str,
        code: ErrorCode,
        msg: impl Into<String>,
        details: impl Into<String>,
    ) -> Self {
        Self {
            cni_version: version.to_owned(),
            code: code.0,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Compact JSON, e.g. `{"cniVersion":"1.1.0","code":7,"msg":"...","details":"..."}`.
    pub fn to_json(&self) -> String {
        // Built by hand so that serialization cannot fail (and no unwrap is needed).
        let mut obj = serde_json::Map::new();
        obj.insert("cniVersion".into(), self.cni_version.clone().into());
        obj.insert("code".into(), self.code.into());
        obj.insert("msg".into(), self.msg.clone().into());
        if !self.details.is_empty() {
            obj.insert("details".into(), self.details.clone().into());
        }
        serde_json::Value::Object(obj).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn golden_with_details() {
        let e = ErrorReply::new(
            "1.1.0",
            ErrorCode::INVALID_CONFIG,
            "Invalid Configuration",
            "Network 192.168.0.0/31 too small to allocate from.",
        );
        assert_eq!(
            parse(&e.to_json()),
            parse(
                r#"{"cniVersion":"1.1.0","code":7,"msg":"Invalid Configuration","details":"Network 192.168.0.0/31 too small to allocate from."}"#
            )
        );
        // serde derive and to_json agree.
        assert_eq!(serde_json::to_value(&e).ok(), Some(parse(&e.to_json())));
    }

    #[test]
    fn details_omitted_when_empty() {
        let e = ErrorReply::new("0.4.0", ErrorCode::NOT_AVAILABLE, "bridge missing", "");
        let s = e.to_json();
        assert!(!s.contains("details"), "{s}");
        assert_eq!(
            parse(&s),
            parse(r#"{"cniVersion":"0.4.0","code":50,"msg":"bridge missing"}"#)
        );
        assert_eq!(serde_json::to_value(&e).ok(), Some(parse(&s)));
    }

    #[test]
    fn escapes_and_round_trips() {
        let e = ErrorReply::new("1.0.0", ErrorCode::IPAM, "quote \" and\nnewline", "x");
        let back: Option<ErrorReply> = serde_json::from_str(&e.to_json()).ok();
        assert_eq!(back, Some(e));
        let no_details: Option<ErrorReply> =
            serde_json::from_str(r#"{"cniVersion":"1.1.0","code":2,"msg":"m"}"#).ok();
        assert_eq!(no_details.map(|e| e.details), Some(String::new()));
    }

    #[test]
    fn code_values() {
        let codes = [
            (ErrorCode::INCOMPATIBLE_VERSION, 1),
            (ErrorCode::UNSUPPORTED_FIELD, 2),
            (ErrorCode::UNKNOWN_CONTAINER, 3),
            (ErrorCode::INVALID_ENV, 4),
            (ErrorCode::IO, 5),
            (ErrorCode::DECODE, 6),
            (ErrorCode::INVALID_CONFIG, 7),
            (ErrorCode::TRY_AGAIN_LATER, 11),
            (ErrorCode::NOT_AVAILABLE, 50),
            (ErrorCode::LIMITED_CONNECTIVITY, 51),
            (ErrorCode::KERNEL, 100),
            (ErrorCode::INTERFACE_EXISTS, 101),
            (ErrorCode::IPAM, 102),
            (ErrorCode::CHECK_FAILED, 103),
            (ErrorCode::INTERNAL, 104),
        ];
        for (c, n) in codes {
            assert_eq!(c.0, n);
            assert_eq!(c.to_string(), n.to_string());
        }
    }
}
