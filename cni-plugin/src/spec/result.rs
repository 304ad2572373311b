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
use serde_json::{Map, Value};

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

fn cidr_string(n: &IpNetwork) -> String {
    format!("{}/{}", n.ip(), n.prefix())
}

impl CniResult {
    /// The result as a JSON document in version `v`, with "cniVersion": v.
    /// Fields the version does not know are left out (see the module docs).
    pub fn to_json(&self, v: CniVersion) -> Value {
        let v11 = v >= CniVersion::V1_1_0;
        let legacy = v < CniVersion::V1_0_0;
        let mut doc = Map::new();
        doc.insert("cniVersion".into(), v.as_str().into());

        if !self.interfaces.is_empty() {
            let list = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut o = Map::new();
                    o.insert("name".into(), i.name.clone().into());
                    put_str(&mut o, "mac", Some(&i.mac));
                    if v11 {
                        put_nonzero(&mut o, "mtu", i.mtu);
                    }
                    put_str(&mut o, "sandbox", i.sandbox.as_ref());
                    if v11 {
                        put_str(&mut o, "socketPath", i.socket_path.as_ref());
                        put_str(&mut o, "pciID", i.pci_id.as_ref());
                    }
                    Value::Object(o)
                })
                .collect();
            doc.insert("interfaces".into(), Value::Array(list));
        }

        if !self.ips.is_empty() {
            let list = self
                .ips
                .iter()
                .map(|ip| {
                    let mut o = Map::new();
                    if legacy {
                        let family = if ip.address.is_ipv4() { "4" } else { "6" };
                        o.insert("version".into(), family.into());
                    }
                    if let Some(idx) = ip.interface {
                        o.insert("interface".into(), idx.into());
                    }
                    o.insert("address".into(), cidr_string(&ip.address).into());
                    if let Some(gw) = ip.gateway {
                        o.insert("gateway".into(), gw.to_string().into());
                    }
                    Value::Object(o)
                })
                .collect();
            doc.insert("ips".into(), Value::Array(list));
        }

        if !self.routes.is_empty() {
            let list = self
                .routes
                .iter()
                .map(|r| {
                    let mut o = Map::new();
                    o.insert("dst".into(), cidr_string(&r.dst).into());
                    if let Some(gw) = r.gw {
                        o.insert("gw".into(), gw.to_string().into());
                    }
                    if v11 {
                        put_nonzero(&mut o, "mtu", r.mtu);
                        put_nonzero(&mut o, "advmss", r.advmss);
                        put_nonzero(&mut o, "priority", r.priority);
                        if let Some(t) = r.table {
                            o.insert("table".into(), t.into());
                        }
                        if let Some(s) = r.scope {
                            o.insert("scope".into(), s.into());
                        }
                    }
                    Value::Object(o)
                })
                .collect();
            doc.insert("routes".into(), Value::Array(list));
        }

        if legacy || !self.dns.is_empty() {
            doc.insert("dns".into(), dns_to_json(&self.dns));
        }
        Value::Object(doc)
    }

    /// Parses a result of any supported version (reads its "cniVersion"; a
    /// result without one, or with an empty one, is read as `fallback`).
    pub fn from_json(doc: &Value, fallback: CniVersion) -> Result<CniResult, ResultError> {
        let obj = doc.as_object().ok_or(ResultError::NotAnObject)?;
        let version = match present(obj.get("cniVersion")) {
            None => fallback,
            Some(Value::String(s)) if s.is_empty() => fallback,
            Some(Value::String(s)) => {
                CniVersion::parse(s).ok_or_else(|| ResultError::UnknownVersion(s.clone()))?
            }
            Some(_) => return Err(wrong_type("cniVersion", "a string")),
        };

        let interfaces = array(obj, "interfaces")?
            .iter()
            .enumerate()
            .map(|(n, v)| parse_interface(v, &format!("interfaces[{n}]")))
            .collect::<Result<Vec<_>, _>>()?;

        let ips = array(obj, "ips")?
            .iter()
            .enumerate()
            .map(|(n, v)| parse_ip(v, n, version, interfaces.len()))
            .collect::<Result<Vec<_>, _>>()?;

        let routes = array(obj, "routes")?
            .iter()
            .enumerate()
            .map(|(n, v)| parse_route(v, &format!("routes[{n}]")))
            .collect::<Result<Vec<_>, _>>()?;

        let dns = match present(obj.get("dns")) {
            None => Dns::default(),
            Some(v @ Value::Object(_)) => {
                Dns::deserialize_value(v).map_err(|reason| ResultError::InvalidValue {
                    field: "dns".into(),
                    reason,
                })?
            }
            Some(_) => return Err(wrong_type("dns", "an object")),
        };

        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns,
        })
    }
}

impl Dns {
    /// Reads a `dns` object; the error is a human message.
    pub(crate) fn deserialize_value(v: &Value) -> Result<Dns, String> {
        serde::Deserialize::deserialize(v).map_err(|e: serde_json::Error| e.to_string())
    }
}

fn dns_to_json(dns: &Dns) -> Value {
    let mut o = Map::new();
    let list = |l: &[String]| Value::Array(l.iter().cloned().map(Value::String).collect());
    if !dns.nameservers.is_empty() {
        o.insert("nameservers".into(), list(&dns.nameservers));
    }
    put_str(&mut o, "domain", dns.domain.as_ref());
    if !dns.search.is_empty() {
        o.insert("search".into(), list(&dns.search));
    }
    if !dns.options.is_empty() {
        o.insert("options".into(), list(&dns.options));
    }
    Value::Object(o)
}

fn put_str(o: &mut Map<String, Value>, key: &str, v: Option<&String>) {
    if let Some(s) = v.filter(|s| !s.is_empty()) {
        o.insert(key.into(), s.clone().into());
    }
}

fn put_nonzero(o: &mut Map<String, Value>, key: &str, v: Option<u32>) {
    if let Some(n) = v.filter(|&n| n != 0) {
        o.insert(key.into(), n.into());
    }
}

/// `None` for an absent key or JSON null (Go reads null as the zero value).
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn wrong_type(field: impl Into<String>, expected: &'static str) -> ResultError {
    ResultError::WrongType {
        field: field.into(),
        expected,
    }
}

fn array<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], ResultError> {
    match present(obj.get(key)) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(wrong_type(key, "an array")),
    }
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ResultError> {
    v.as_object().ok_or_else(|| wrong_type(field, "an object"))
}

fn opt_string(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, ResultError> {
    match present(o.get(key)) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(format!("{at}.{key}"), "a string")),
    }
}

fn opt_u64(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u64>, ResultError> {
    match present(o.get(key)) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| wrong_type(format!("{at}.{key}"), "a non-negative integer")),
    }
}

fn opt_u32(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u32>, ResultError> {
    opt_u64(o, key, at)?
        .map(|n| {
            u32::try_from(n).map_err(|_| ResultError::InvalidValue {
                field: format!("{at}.{key}"),
                reason: format!("{n} is out of range"),
            })
        })
        .transpose()
}

/// Go `int` fields with `omitempty`: 0 means unset.
fn opt_nonzero_u32(
    o: &Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<u32>, ResultError> {
    Ok(opt_u32(o, key, at)?.filter(|&n| n != 0))
}

fn cidr(o: &Map<String, Value>, key: &str, at: &str) -> Result<IpNetwork, ResultError> {
    let field = format!("{at}.{key}");
    match present(o.get(key)) {
        None => Err(ResultError::MissingField(field)),
        Some(Value::String(s)) => parse_cidr(s, false).map_err(|reason| ResultError::BadAddress {
            field,
            value: s.clone(),
            reason,
        }),
        Some(_) => Err(wrong_type(field, "a string in CIDR notation")),
    }
}

/// An optional IP; "" reads as unset, as Go's `net.IP` does.
fn opt_ip(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<IpAddr>, ResultError> {
    let field = format!("{at}.{key}");
    match present(o.get(key)) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| ResultError::BadAddress {
            field,
            value: s.clone(),
            reason: "not an IPv4 or IPv6 address".into(),
        }),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

fn parse_interface(v: &Value, at: &str) -> Result<Interface, ResultError> {
    let o = object(v, at)?;
    Ok(Interface {
        name: opt_string(o, "name", at)?.unwrap_or_default(),
        mac: opt_string(o, "mac", at)?.unwrap_or_default(),
        mtu: opt_nonzero_u32(o, "mtu", at)?,
        sandbox: opt_string(o, "sandbox", at)?,
        socket_path: opt_string(o, "socketPath", at)?,
        pci_id: opt_string(o, "pciID", at)?,
    })
}

fn parse_ip(
    v: &Value,
    n: usize,
    version: CniVersion,
    interface_count: usize,
) -> Result<IpConfig, ResultError> {
    let at = format!("ips[{n}]");
    let o = object(v, &at)?;
    let address = cidr(o, "address", &at)?;
    if version < CniVersion::V1_0_0 {
        // Only checked for being well-formed; the address is authoritative.
        match opt_string(o, "version", &at)?.as_deref() {
            None | Some("4") | Some("6") => {}
            Some(other) => {
                return Err(ResultError::InvalidValue {
                    field: format!("{at}.version"),
                    reason: format!("{other:?} is neither \"4\" nor \"6\""),
                })
            }
        }
    }
    let interface = match opt_u64(o, "interface", &at)? {
        None => None,
        Some(idx) => match usize::try_from(idx) {
            Ok(i) if i < interface_count => Some(i),
            _ => {
                return Err(ResultError::InterfaceOutOfRange {
                    ip: n,
                    index: usize::try_from(idx).unwrap_or(usize::MAX),
                    count: interface_count,
                })
            }
        },
    };
    Ok(IpConfig {
        address,
        gateway: opt_ip(o, "gateway", &at)?,
        interface,
    })
}

fn parse_route(v: &Value, at: &str) -> Result<Route, ResultError> {
    let o = object(v, at)?;
    let scope = opt_u64(o, "scope", at)?
        .map(|s| {
            u8::try_from(s).map_err(|_| ResultError::InvalidValue {
                field: format!("{at}.scope"),
                reason: format!("{s} is not a route scope (0-255)"),
            })
        })
        .transpose()?;
    Ok(Route {
        dst: cidr(o, "dst", at)?,
        gw: opt_ip(o, "gw", at)?,
        mtu: opt_nonzero_u32(o, "mtu", at)?,
        advmss: opt_nonzero_u32(o, "advmss", at)?,
        priority: opt_nonzero_u32(o, "priority", at)?,
        table: opt_u32(o, "table", at)?,
        scope,
    })
}

#[cfg(test)]
mod tests;
