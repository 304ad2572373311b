//! A result read from any supported version, every field checked.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use super::{parse_cidr, CniResult, Dns, Interface, IpConfig, ResultError, Route};
use crate::spec::version::CniVersion;

impl CniResult {
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
