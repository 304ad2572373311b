//! The keys a runtime injects into the configuration: capability
//! arguments (`runtimeConfig`), `args` and GC's `cni.dev/valid-attachments`.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use super::{invalid, present, show, ConfigError};
use crate::mac::{BadMac, MacAddr};
use crate::spec::result::parse_cidr;

/// Capability arguments podnet consumes from `runtimeConfig`; other
/// capabilities (bandwidth, ...) are for chained plugins and are ignored.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RuntimeConfig {
    /// `ips` capability: "10.1.2.3/24" or bare "10.1.2.3" (read as /32 or /128).
    pub ips: Vec<IpNetwork>,
    /// `mac` capability: a unicast 48-bit MAC address.
    pub mac: Option<MacAddr>,
    /// `portMappings` capability: the pod's hostPorts.
    pub port_mappings: Vec<PortMapping>,
}

/// One `portMappings` entry: connections to `host_port` (on `host_ip`, or
/// on any of the node's addresses) go to the pod's `container_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: PortProtocol,
    pub host_ip: Option<IpAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortProtocol {
    Tcp,
    Udp,
    Sctp,
}

impl PortProtocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            // The runtimes send "" for Kubernetes' default.
            "" | "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            "sctp" => Some(Self::Sctp),
            _ => None,
        }
    }
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
    let port_mappings = match present(o, "portMappings") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(n, v)| parse_port_mapping(n, v))
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(invalid(
                "runtimeConfig.portMappings",
                format!("must be an array, got {}", show(v)),
            ))
        }
    };
    Ok(RuntimeConfig {
        ips,
        mac,
        port_mappings,
    })
}

fn parse_port_mapping(n: usize, v: &Value) -> Result<PortMapping, ConfigError> {
    let field = |key: &str| format!("runtimeConfig.portMappings[{n}].{key}");
    let o = v.as_object().ok_or_else(|| {
        invalid(
            format!("runtimeConfig.portMappings[{n}]"),
            format!("must be an object, got {}", show(v)),
        )
    })?;
    let port = |key: &str| match present(o, key) {
        Some(Value::Number(p)) => p
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(field(key), format!("{p} is not a port (1-65535)"))),
        Some(other) => Err(invalid(
            field(key),
            format!("must be a port number, got {}", show(other)),
        )),
        None => Err(invalid(field(key), "is missing")),
    };
    let protocol = match present(o, "protocol") {
        None => PortProtocol::Tcp,
        Some(Value::String(s)) => PortProtocol::parse(s)
            .ok_or_else(|| invalid(field("protocol"), format!("{s:?} is not tcp, udp or sctp")))?,
        Some(other) => {
            return Err(invalid(
                field("protocol"),
                format!("must be a string, got {}", show(other)),
            ))
        }
    };
    let host_ip = match present(o, "hostIP") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| invalid(field("hostIP"), format!("{s:?} is not an IP address")))?;
            // The unspecified address means every address of the node.
            (!ip.is_unspecified()).then_some(ip)
        }
        Some(other) => {
            return Err(invalid(
                field("hostIP"),
                format!("must be a string, got {}", show(other)),
            ))
        }
    };
    Ok(PortMapping {
        host_port: port("hostPort")?,
        container_port: port("containerPort")?,
        protocol,
        host_ip,
    })
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
