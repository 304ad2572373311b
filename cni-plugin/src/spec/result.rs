//! The ADD success result, modelled on spec 1.1.0 and converted to/from every
//! supported version.
//!
//! JSON shape per version (checked against the Go reference types,
//! `pkg/types/040`, `pkg/types/100` and `pkg/types/types.go`):
//!
//! * `interfaces[]`: `name` (always), `mac`/`sandbox` omitted when empty; 1.1.0 adds
//!   `mtu` (omitted when 0), `socketPath`, `pciID` (omitted when empty).
//! * `ips[]`: `address` (always), `gateway` omitted when unset, `interface` written
//!   whenever set (a pointer in Go, so index 0 is written); 0.3.x/0.4.0 add
//!   `version` ("4"/"6", always written).
//! * `routes[]`: `dst` (always), `gw` omitted when unset; 1.1.0 adds `mtu`,
//!   `advmss`, `priority` (ints, omitted when 0) and `table`, `scope` (pointers,
//!   written whenever set, including 0).
//! * `interfaces`, `ips`, `routes` are omitted when empty.
//! * `dns`: 1.x omits it when empty; the Go 0.4.0 type has no such fix-up and
//!   always writes it (`"dns":{}`), so 0.3.x/0.4.0 output does too.
//!
//! Deviation from Go, on purpose: the Go library shares one Route type across
//! versions and one Interface type for 1.0.0/1.1.0, so it leaks 1.1.0-only
//! fields into 0.4.0/1.0.0 output. We follow the spec text of each version and
//! leave them out. Reading is liberal: every known field is read whatever the
//! document's version; unknown keys are ignored.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::error::ErrorCode;
use super::version::CniVersion;

/// A CNI ADD result (spec 1.1.0 model).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// An interface created by the attachment.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Interface {
    pub name: String,
    /// Hardware address; empty when not applicable.
    pub mac: String,
    /// 1.1.0 only. `Some(0)` is written as absent, as in Go.
    pub mtu: Option<u32>,
    /// The `CNI_NETNS` of container interfaces; `None` for host interfaces.
    pub sandbox: Option<String>,
    /// 1.1.0 only.
    pub socket_path: Option<String>,
    /// 1.1.0 only.
    pub pci_id: Option<String>,
}

/// An address assigned by the attachment.
#[derive(Clone, Debug, PartialEq)]
pub struct IpConfig {
    /// Host address with prefix, e.g. 10.244.1.5/24 (host bits kept).
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`].
    pub interface: Option<usize>,
}

/// A route created by the attachment.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
    /// 1.1.0 only. `Some(0)` is written as absent, as in Go.
    pub mtu: Option<u32>,
    /// 1.1.0 only. `Some(0)` is written as absent, as in Go.
    pub advmss: Option<u32>,
    /// 1.1.0 only. `Some(0)` is written as absent, as in Go.
    pub priority: Option<u32>,
    /// 1.1.0 only; written whenever set.
    pub table: Option<u32>,
    /// 1.1.0 only; written whenever set (0 = global, 253 = link, 254 = host).
    pub scope: Option<u8>,
}

impl Route {
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings, as in results and in the `dns` key of a network configuration.
/// Empty lists and an empty domain are omitted when serialized; `null` lists read as empty.
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Dns {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable_strings"
    )]
    pub nameservers: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "domain_is_empty",
        deserialize_with = "nonempty_string"
    )]
    pub domain: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable_strings"
    )]
    pub search: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable_strings"
    )]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && domain_is_empty(&self.domain)
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

fn domain_is_empty(d: &Option<String>) -> bool {
    d.as_deref().is_none_or(str::is_empty)
}

fn nullable_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v: Option<Vec<String>> = serde::Deserialize::deserialize(d)?;
    Ok(v.unwrap_or_default())
}

fn nonempty_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

/// Why a result document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("unsupported result cniVersion {0:?}; podnet reads {list}", list = supported_list())]
    UnknownVersion(String),
    #[error("result must be a JSON object")]
    NotAnObject,
    #[error("result field {field} must be {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("result field {0} is missing")]
    MissingField(String),
    #[error("result field {field}: bad address {value:?}: {reason}")]
    BadAddress {
        field: String,
        value: String,
        reason: String,
    },
    #[error(
        "result field ips[{ip}].interface is {index}, but the result has {count} interface(s)"
    )]
    InterfaceOutOfRange {
        ip: usize,
        index: usize,
        count: usize,
    },
    #[error("result field {field}: {reason}")]
    InvalidValue { field: String, reason: String },
}

impl ResultError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ResultError::UnknownVersion(_) => ErrorCode::INCOMPATIBLE_VERSION,
            ResultError::NotAnObject
            | ResultError::WrongType { .. }
            | ResultError::MissingField(_)
            | ResultError::BadAddress { .. }
            | ResultError::InterfaceOutOfRange { .. }
            | ResultError::InvalidValue { .. } => ErrorCode::DECODE,
        }
    }
}

pub(crate) fn supported_list() -> String {
    CniVersion::ALL
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `a.b.c.d/n` or `x::y/n` (the host bits are kept, as Go's
/// `types.ParseCIDR` does). With `allow_bare`, a plain address is accepted as
/// a host route (/32 or /128).
pub(crate) fn parse_cidr(s: &str, allow_bare: bool) -> Result<IpNetwork, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None if allow_bare => (s, None),
        None => return Err("expected CIDR notation such as 10.1.2.3/24".to_owned()),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => {
            let n = if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse::<u8>().ok()
            } else {
                None
            };
            match n {
                Some(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "prefix length {p:?} is not a number from 0 to {max}"
                    ))
                }
            }
        }
    };
    IpNetwork::new(ip, prefix).map_err(|e| e.to_string())
}

mod read;
mod render;

#[cfg(test)]
mod tests;
