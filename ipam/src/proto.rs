//! The wire protocol between the plugins and podnetd: one JSON request and
//! one JSON response per connection, each a single line, over the daemon's
//! root-only unix socket.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::attachment::{Allocation, AttachmentKey, RangeUsage};

/// Where podnetd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/podnet/ipam.sock";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Addresses for an attachment; repeated for the same key it returns
    /// the same addresses.
    Add {
        key: AttachmentKey,
        /// The pod's network namespace, which the leak reclaimer watches.
        netns: Option<String>,
        /// Static addresses asked for (CNI `ips` capability).
        requested: Vec<IpAddr>,
    },
    /// Releases an attachment's addresses; an unknown key is success.
    Del { key: AttachmentKey },
    /// The attachment's current allocation, if any.
    Check { key: AttachmentKey },
    /// Whether the daemon can serve ADD now.
    Status,
    /// Releases every allocation not in `valid`.
    Gc { valid: Vec<AttachmentKey> },
    /// Every allocation and the pool's usage (the admin view).
    List,
    /// The plugin's own measure of an ADD or DEL, for the daemon's metrics.
    Report { verb: String, micros: u64, ok: bool },
}

impl Request {
    /// Reads one request line as podnetd accepts it: the JSON, and every
    /// key in it valid (a key is never trusted, even from root's socket).
    pub fn decode(line: &[u8]) -> Result<Request, String> {
        let req: Request =
            serde_json::from_slice(line).map_err(|e| format!("unreadable request: {e}"))?;
        let keys: &[AttachmentKey] = match &req {
            Request::Add { key, .. } | Request::Del { key } | Request::Check { key } => {
                std::slice::from_ref(key)
            }
            Request::Gc { valid } => valid,
            Request::Status | Request::List | Request::Report { .. } => &[],
        };
        keys.iter().try_for_each(AttachmentKey::validate)?;
        Ok(req)
    }
}

/// Adjacently tagged: an internally tagged enum is buffered by serde,
/// which cannot hold the u128 capacities of IPv6 pools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "data", rename_all = "snake_case")]
pub enum Response {
    Allocated {
        allocation: Allocation,
    },
    Released {
        found: bool,
    },
    /// A report was recorded.
    Noted,
    /// CHECK of a key with no allocation.
    Unknown,
    Status {
        ready: bool,
        node: String,
        node_cidrs: Vec<IpNetwork>,
        detail: String,
    },
    Collected {
        released: Vec<Allocation>,
    },
    Listing {
        node: String,
        node_cidrs: Vec<IpNetwork>,
        allocations: Vec<Allocation>,
        usage: Vec<RangeUsage>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// What kind of failure the daemon reports, so the plugin can pick the
/// right CNI error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The node CIDR has no free address.
    Exhausted,
    /// The request itself is wrong (a static address outside the pool...).
    InvalidRequest,
    /// The daemon is up but has no node CIDR yet.
    NotReady,
    /// Storage or another internal failure.
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_refuses_any_bad_key_even_inside_a_gc_list() {
        let good = br#"{"op":"gc","valid":[{"container_id":"c1","ifname":"eth0"}]}"#;
        assert!(Request::decode(good).is_ok());
        for bad in [
            &br#"{"op":"gc","valid":[{"container_id":"c1","ifname":"eth0"},{"container_id":"../x","ifname":"eth0"}]}"#[..],
            br#"{"op":"del","key":{"container_id":"c1","ifname":""}}"#,
            br#"{"op":"add","key":{"container_id":"","ifname":"eth0"},"netns":null,"requested":[]}"#,
            br#"{"op":"nothing"}"#,
            b"\xff",
        ] {
            assert!(Request::decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn wire_shape_is_stable() {
        let req = Request::Del {
            key: AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth0".into(),
            },
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"op":"del","key":{"container_id":"c1","ifname":"eth0"}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        let resp = Response::Error {
            kind: ErrorKind::Exhausted,
            message: "full".into(),
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"result":"error","data":{"kind":"exhausted","message":"full"}}"#
        );
        let usage = Response::Listing {
            node: "n".into(),
            node_cidrs: vec![],
            allocations: vec![],
            usage: vec![RangeUsage {
                range: "fd00::/64".parse().unwrap(),
                capacity: u128::from(u64::MAX) + 10,
                used: 1,
            }],
        };
        let text = serde_json::to_string(&usage).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), usage);
    }
}
