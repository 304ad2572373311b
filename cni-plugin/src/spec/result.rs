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
mod tests {
    use super::*;
    use serde_json::json;

    const FIXTURES: [(CniVersion, &str); 5] = [
        (
            CniVersion::V0_3_0,
            include_str!("fixtures/result-0.3.0.json"),
        ),
        (
            CniVersion::V0_3_1,
            include_str!("fixtures/result-0.3.1.json"),
        ),
        (
            CniVersion::V0_4_0,
            include_str!("fixtures/result-0.4.0.json"),
        ),
        (
            CniVersion::V1_0_0,
            include_str!("fixtures/result-1.0.0.json"),
        ),
        (
            CniVersion::V1_1_0,
            include_str!("fixtures/result-1.1.0.json"),
        ),
    ];

    fn net(s: &str) -> IpNetwork {
        parse_cidr(s, false).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn doc(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    const NETNS: &str = "/var/run/netns/cni-7f1c9a3e-1b2d-4c5e-8f60-0123456789ab";

    /// The full 1.1.0 model that the fixtures describe.
    fn full() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "veth5f3c2a1b".into(),
                    mac: "a6:1f:44:9c:0e:21".into(),
                    mtu: Some(1450),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "3e:8d:12:7a:b0:05".into(),
                    mtu: Some(1450),
                    sandbox: Some(NETNS.into()),
                    ..Interface::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: net("10.244.1.5/24"),
                    gateway: Some(ip("10.244.1.1")),
                    interface: Some(1),
                },
                IpConfig {
                    address: net("fd00:10:244:1::5/64"),
                    gateway: Some(ip("fd00:10:244:1::1")),
                    interface: Some(1),
                },
            ],
            routes: vec![
                Route {
                    mtu: Some(1450),
                    table: Some(254),
                    scope: Some(0),
                    ..Route::new(net("0.0.0.0/0"), Some(ip("10.244.1.1")))
                },
                Route {
                    advmss: Some(1380),
                    priority: Some(1024),
                    ..Route::new(net("::/0"), Some(ip("fd00:10:244:1::1")))
                },
            ],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into(), "fd00:10:96::a".into()],
                domain: Some("cluster.local".into()),
                search: vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            },
        }
    }

    /// `full()` with the fields version `v` cannot carry removed.
    fn full_as_seen_by(v: CniVersion) -> CniResult {
        let mut r = full();
        if v < CniVersion::V1_1_0 {
            for i in &mut r.interfaces {
                i.mtu = None;
                i.socket_path = None;
                i.pci_id = None;
            }
            for rt in &mut r.routes {
                *rt = Route::new(rt.dst, rt.gw);
            }
        }
        r
    }

    #[test]
    fn to_json_matches_golden_fixture_for_every_version() {
        for (v, text) in FIXTURES {
            assert_eq!(full().to_json(v), doc(text), "version {v}");
        }
    }

    #[test]
    fn from_json_reads_every_fixture() {
        for (v, text) in FIXTURES {
            // The fallback must not matter: every fixture carries its cniVersion.
            let got = CniResult::from_json(&doc(text), CniVersion::V0_3_0);
            assert_eq!(got.ok(), Some(full_as_seen_by(v)), "version {v}");
        }
    }

    #[test]
    fn round_trip_through_every_version() {
        for v in CniVersion::ALL {
            let back = CniResult::from_json(&full().to_json(v), CniVersion::LATEST);
            assert_eq!(back.ok(), Some(full_as_seen_by(v)), "version {v}");
        }
    }

    #[test]
    fn missing_cni_version_uses_fallback() {
        let mut d = doc(FIXTURES[2].1);
        if let Some(o) = d.as_object_mut() {
            o.remove("cniVersion");
        }
        let got = CniResult::from_json(&d, CniVersion::V0_4_0);
        assert_eq!(got.ok(), Some(full_as_seen_by(CniVersion::V0_4_0)));
        let d = json!({"cniVersion": "", "ips": [{"address": "10.0.0.2/8"}]});
        assert!(CniResult::from_json(&d, CniVersion::V1_0_0).is_ok());
    }

    #[test]
    fn unknown_versions_are_code_1() {
        for v in ["0.2.0", "0.1.0", "9.9.9", "1.1"] {
            let d = json!({"cniVersion": v});
            let err = CniResult::from_json(&d, CniVersion::LATEST).err();
            assert!(
                matches!(&err, Some(ResultError::UnknownVersion(s)) if s == v),
                "{v}: {err:?}"
            );
            assert_eq!(err.map(|e| e.code()), Some(ErrorCode::INCOMPATIBLE_VERSION));
        }
    }

    #[test]
    fn empty_result_shape() {
        let empty = CniResult::default();
        assert_eq!(
            empty.to_json(CniVersion::V1_1_0),
            json!({"cniVersion": "1.1.0"})
        );
        assert_eq!(
            empty.to_json(CniVersion::V1_0_0),
            json!({"cniVersion": "1.0.0"})
        );
        // Go's 0.4.0 Result has no fix-up for the empty DNS struct.
        assert_eq!(
            empty.to_json(CniVersion::V0_4_0),
            json!({"cniVersion": "0.4.0", "dns": {}})
        );
        for v in CniVersion::ALL {
            let back = CniResult::from_json(&empty.to_json(v), v);
            assert_eq!(back.ok(), Some(CniResult::default()));
        }
    }

    #[test]
    fn index_zero_and_zero_pointers_are_written_zero_ints_are_not() {
        let r = CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mtu: Some(0),
                sandbox: Some(String::new()),
                socket_path: Some("/run/vhost/sock0".into()),
                pci_id: Some("0000:03:00.1".into()),
                ..Interface::default()
            }],
            ips: vec![IpConfig {
                address: net("10.0.0.2/8"),
                gateway: None,
                interface: Some(0),
            }],
            routes: vec![Route {
                mtu: Some(0),
                advmss: Some(0),
                priority: Some(0),
                table: Some(0),
                scope: Some(253),
                ..Route::new(net("10.0.0.0/8"), None)
            }],
            dns: Dns::default(),
        };
        assert_eq!(
            r.to_json(CniVersion::V1_1_0),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "socketPath": "/run/vhost/sock0", "pciID": "0000:03:00.1"}],
                "ips": [{"interface": 0, "address": "10.0.0.2/8"}],
                "routes": [{"dst": "10.0.0.0/8", "table": 0, "scope": 253}]
            })
        );
        assert_eq!(
            r.to_json(CniVersion::V0_3_1),
            json!({
                "cniVersion": "0.3.1",
                "interfaces": [{"name": "eth0"}],
                "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/8"}],
                "routes": [{"dst": "10.0.0.0/8"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn abbreviated_ipam_result() {
        // Section 4: IPAM results have no interfaces and no interface index.
        let d = json!({
            "cniVersion": "1.1.0",
            "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.1.0.1"]}
        });
        let r = CniResult::from_json(&d, CniVersion::V1_1_0);
        let want = CniResult {
            interfaces: vec![],
            ips: vec![IpConfig {
                address: net("10.1.0.5/16"),
                gateway: Some(ip("10.1.0.1")),
                interface: None,
            }],
            routes: vec![Route::new(net("0.0.0.0/0"), None)],
            dns: Dns {
                nameservers: vec!["10.1.0.1".into()],
                ..Dns::default()
            },
        };
        assert_eq!(r.ok(), Some(want.clone()));
        assert_eq!(want.to_json(CniVersion::V1_1_0), d);
    }

    #[test]
    fn host_bits_are_kept() {
        let a = net("10.244.1.5/24");
        assert_eq!(a.ip(), ip("10.244.1.5"));
        assert_eq!(a.prefix(), 24);
        assert_eq!(cidr_string(&a), "10.244.1.5/24");
    }

    #[test]
    fn tolerant_reading_like_go() {
        // null lists, empty gateway, zero ints, unknown keys, 1.1 fields in an older version.
        let d = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "", "mtu": 0, "extra": true}],
            "ips": [{"version": "4", "address": "10.0.0.2/8", "gateway": "", "interface": null}],
            "routes": [{"dst": "10.0.0.0/8", "gw": null, "mtu": 1400}],
            "dns": {"nameservers": null, "domain": "", "search": ["a"]}
        });
        let r = CniResult::from_json(&d, CniVersion::V0_4_0);
        let want = CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                ..Interface::default()
            }],
            ips: vec![IpConfig {
                address: net("10.0.0.2/8"),
                gateway: None,
                interface: None,
            }],
            routes: vec![Route {
                mtu: Some(1400),
                ..Route::new(net("10.0.0.0/8"), None)
            }],
            dns: Dns {
                search: vec!["a".into()],
                ..Dns::default()
            },
        };
        assert_eq!(r.ok(), Some(want));
    }

    #[test]
    fn decode_errors_are_code_6_with_clear_messages() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "JSON object"),
            (json!({"cniVersion": 1}), "cniVersion"),
            (json!({"ips": {}}), "ips must be an array"),
            (json!({"ips": [{}]}), "ips[0].address is missing"),
            (
                json!({"ips": [{"address": "10.0.0.300/8"}]}),
                "bad address \"10.0.0.300/8\"",
            ),
            (json!({"ips": [{"address": "10.0.0.3"}]}), "CIDR notation"),
            (
                json!({"ips": [{"address": "10.0.0.3/33"}]}),
                "prefix length",
            ),
            (
                json!({"ips": [{"address": "10.0.0.3/8", "gateway": "x"}]}),
                "ips[0].gateway",
            ),
            (
                json!({"ips": [{"address": "10.0.0.3/8", "interface": 1}]}),
                "ips[0].interface is 1, but the result has 0 interface(s)",
            ),
            (
                json!({"interfaces": [{"name": "a"}], "ips": [{"address": "10.0.0.3/8", "interface": -1}]}),
                "non-negative integer",
            ),
            (
                json!({"routes": [{"gw": "10.0.0.1"}]}),
                "routes[0].dst is missing",
            ),
            (
                json!({"routes": [{"dst": "10.0.0.0/8", "scope": 256}]}),
                "routes[0].scope",
            ),
            (
                json!({"routes": [{"dst": "10.0.0.0/8", "mtu": 1.5}]}),
                "routes[0].mtu",
            ),
            (
                json!({"interfaces": ["eth0"]}),
                "interfaces[0] must be an object",
            ),
            (json!({"dns": {"nameservers": "1.1.1.1"}}), "dns"),
            (
                json!({"cniVersion": "0.4.0", "ips": [{"version": "5", "address": "10.0.0.3/8"}]}),
                "ips[0].version",
            ),
        ];
        for (d, needle) in cases {
            let err = CniResult::from_json(&d, CniVersion::V1_1_0).err();
            let msg = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(needle), "{d}: {msg:?} lacks {needle:?}");
            assert_eq!(err.map(|e| e.code()), Some(ErrorCode::DECODE), "{d}");
        }
    }

    #[test]
    fn parse_cidr_rules() {
        assert_eq!(parse_cidr("10.1.2.3", true).ok(), Some(net("10.1.2.3/32")));
        assert_eq!(parse_cidr("fd00::1", true).ok(), Some(net("fd00::1/128")));
        for bad in [
            "",
            "/24",
            "10.1.2.3/",
            "10.1.2.3/+4",
            "10.1.2.3/-1",
            "fd00::1/129",
        ] {
            assert!(parse_cidr(bad, true).is_err(), "{bad:?}");
        }
        assert!(parse_cidr("10.1.2.3/255.255.255.0", false).is_err());
        assert!(parse_cidr("10.1.2.3", false).is_err());
    }

    #[test]
    fn dns_serde_uses_spec_keys_and_omits_empty() {
        let d = Dns {
            nameservers: vec!["10.0.0.10".into()],
            domain: Some(String::new()),
            search: vec![],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            serde_json::to_value(&d).ok(),
            Some(json!({"nameservers": ["10.0.0.10"], "options": ["ndots:5"]}))
        );
        assert!(!d.is_empty());
        assert!(Dns {
            domain: Some(String::new()),
            ..Dns::default()
        }
        .is_empty());
        let back: Option<Dns> =
            serde_json::from_value(json!({"domain": "x", "search": ["a", "b"]})).ok();
        assert_eq!(
            back,
            Some(Dns {
                domain: Some("x".into()),
                search: vec!["a".into(), "b".into()],
                ..Dns::default()
            })
        );
    }
}
