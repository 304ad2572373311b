//! The keys a runtime injects into the configuration: capability
//! arguments (`runtimeConfig`), `args` and GC's `cni.dev/valid-attachments`.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use super::{invalid, present, show, ConfigError};
use crate::mac::{BadMac, MacAddr};
use crate::spec::result::parse_cidr;

/// Capability arguments podnet consumes from `runtimeConfig`; other
/// capabilities (portMappings, bandwidth, ...) are for chained plugins and are ignored.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RuntimeConfig {
    /// `ips` capability: "10.1.2.3/24" or bare "10.1.2.3" (read as /32 or /128).
    pub ips: Vec<IpNetwork>,
    /// `mac` capability: a unicast 48-bit MAC address.
    pub mac: Option<MacAddr>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// A MAC address an interface can carry: unicast, not all zeros.
fn parse_mac(field: &str, text: &str) -> Result<MacAddr, ConfigError> {
    let mac: MacAddr = text
        .parse()
        .map_err(|e: BadMac| invalid(field, e.to_string()))?;
    if mac.is_multicast() {
        return Err(invalid(
            field,
            format!("{text:?} is a multicast address; an interface needs a unicast one"),
        ));
    }
    if mac.is_zero() {
        return Err(invalid(field, format!("{text:?} is the all-zero address")));
    }
    Ok(mac)
}

/// `args.cni.ips` (CONVENTIONS) in the configuration `doc`: addresses,
/// with or without a prefix length. Absent or null: none.
pub(super) fn parse_args_ips(doc: &Value) -> Result<Vec<IpAddr>, ConfigError> {
    let list = match doc.pointer("/args/cni/ips") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(invalid(
                "args.cni.ips",
                format!("must be an array of addresses, got {}", show(other)),
            ))
        }
    };
    list.iter()
        .enumerate()
        .map(|(n, v)| {
            v.as_str()
                .and_then(|text| text.split('/').next())
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| {
                    invalid(
                        format!("args.cni.ips[{n}]"),
                        format!("{} is not an IP address", show(v)),
                    )
                })
        })
        .collect()
}

pub(super) fn parse_valid_attachments(
    obj: &Map<String, Value>,
) -> Result<Option<Vec<Attachment>>, ConfigError> {
    match present(obj, "cni.dev/valid-attachments") {
        None => Ok(None),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(n, v)| parse_attachment(n, v))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(invalid(
            "cni.dev/valid-attachments",
            format!("must be an array, got {}", show(v)),
        )),
    }
}

pub(super) fn parse_runtime_config(o: &Map<String, Value>) -> Result<RuntimeConfig, ConfigError> {
    let ips = match present(o, "ips") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(n, v)| {
                let field = format!("runtimeConfig.ips[{n}]");
                match v {
                    Value::String(s) => {
                        parse_cidr(s, true).map_err(|e| invalid(field, format!("{s:?}: {e}")))
                    }
                    other => Err(invalid(
                        field,
                        format!("must be a string, got {}", show(other)),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(invalid(
                "runtimeConfig.ips",
                format!("must be an array of addresses, got {}", show(v)),
            ))
        }
    };
    let mac = match present(o, "mac") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(parse_mac("runtimeConfig.mac", s)?),
        Some(v) => {
            return Err(invalid(
                "runtimeConfig.mac",
                format!("must be a string, got {}", show(v)),
            ))
        }
    };
    Ok(RuntimeConfig { ips, mac })
}

fn parse_attachment(n: usize, v: &Value) -> Result<Attachment, ConfigError> {
    let field = format!("cni.dev/valid-attachments[{n}]");
    let o = v
        .as_object()
        .ok_or_else(|| invalid(field.clone(), format!("must be an object, got {}", show(v))))?;
    let get = |key: &str| match present(o, key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid(
            format!("{field}.{key}"),
            "must be a non-empty string",
        )),
    };
    // A malformed entry makes the whole list untrustworthy: GC refuses
    // rather than treat the attachment it names as not valid (and delete a
    // live pod's link).
    let container_id = get("containerID")?;
    if container_id.len() > podnet_ipam::ident::MAX_CONTAINER_ID
        || !podnet_ipam::ident::is_cni_identifier(&container_id)
    {
        return Err(invalid(
            format!("{field}.containerID"),
            format!("{container_id:?} is not a CNI container id"),
        ));
    }
    let ifname = get("ifname")?;
    podnet_ipam::ident::check_ifname(&ifname)
        .map_err(|reason| invalid(format!("{field}.ifname"), reason))?;
    Ok(Attachment {
        container_id,
        ifname,
    })
}
