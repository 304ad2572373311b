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
        /// The Kubernetes pod the attachment is for (`K8S_POD_NAMESPACE`
        /// and `K8S_POD_NAME` in `CNI_ARGS`): podnetd places it under
        /// NetworkPolicy before it answers. Absent outside Kubernetes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod: Option<PodName>,
        /// The plugin asks [`Request::PolicyReady`] before its ADD returns:
        /// podnetd answers once the addresses are allocated
        /// ([`Response::Admitting`]) and puts the pod's rules in while the
        /// plugin configures its interface. Without it (an older plugin,
        /// or the `podnet-ipam` plugin), podnetd answers once they are in.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        confirm_policy: bool,
    },
    /// Waits until the pod's NetworkPolicy, begun by its ADD, is in the
    /// kernel ([`Response::PolicyReady`]), or says why it cannot be.
    PolicyReady { key: AttachmentKey, pod: PodName },
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
    /// NetworkPolicy's answer for a new connection from one pod to another
    /// (`podnetd policy explain`).
    PolicyExplain {
        from: PodName,
        to: PodName,
        port: u16,
        /// `TCP`, `UDP` or `SCTP`.
        protocol: String,
    },
    /// Each of this node's pods' policy state (`podnetd list`).
    PolicyState,
}

impl Request {
    /// Reads one request line as podnetd accepts it: the JSON, and every
    /// key in it valid (a key is never trusted, even from root's socket).
    pub fn decode(line: &[u8]) -> Result<Request, String> {
        let req: Request =
            serde_json::from_slice(line).map_err(|e| format!("unreadable request: {e}"))?;
        let keys: &[AttachmentKey] = match &req {
            Request::Add { key, .. }
            | Request::Del { key }
            | Request::Check { key }
            | Request::PolicyReady { key, .. } => std::slice::from_ref(key),
            Request::Gc { valid } => valid,
            Request::Status
            | Request::List
            | Request::Report { .. }
            | Request::PolicyExplain { .. }
            | Request::PolicyState => &[],
        };
        keys.iter().try_for_each(AttachmentKey::validate)?;
        if let Request::Add { pod: Some(pod), .. } | Request::PolicyReady { pod, .. } = &req {
            pod.validate()?;
        }
        Ok(req)
    }
}

/// A pod's namespace and name, as the runtime passed them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

impl PodName {
    /// Longest namespace (a DNS label) and pod name (a DNS subdomain) the
    /// API server accepts.
    const MAX_NAMESPACE: usize = 63;
    const MAX_NAME: usize = 253;

    /// Both are names the API server could hold: lower-case alphanumerics,
    /// `-` and (in the name) `.`, starting and ending alphanumeric.
    pub fn validate(&self) -> Result<(), String> {
        let fits = |s: &str, max: usize, dot: bool| {
            let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            !s.is_empty()
                && s.len() <= max
                && s.starts_with(alnum)
                && s.ends_with(alnum)
                && s.chars().all(|c| alnum(c) || c == '-' || (dot && c == '.'))
        };
        if !fits(&self.namespace, Self::MAX_NAMESPACE, false) {
            return Err(format!(
                "pod namespace {:?} is not a Kubernetes namespace name",
                clip(&self.namespace)
            ));
        }
        if !fits(&self.name, Self::MAX_NAME, true) {
            return Err(format!(
                "pod name {:?} is not a Kubernetes pod name",
                clip(&self.name)
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for PodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Adjacently tagged: an internally tagged enum is buffered by serde,
/// which cannot hold the u128 capacities of IPv6 pools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "data", rename_all = "snake_case")]
pub enum Response {
    Allocated {
        allocation: Allocation,
    },
    /// Allocated, and the pod's NetworkPolicy is being put in place: the
    /// plugin asks [`Request::PolicyReady`] before its ADD returns.
    Admitting {
        allocation: Allocation,
    },
    /// The pod's NetworkPolicy is in the kernel (or none is enforced).
    PolicyReady,
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
    /// An answer about NetworkPolicy, in podnetd's own JSON (the
    /// daemon's policy types are not this crate's).
    Policy {
        report: serde_json::Value,
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
    /// The pod's NetworkPolicy could not be decided or installed (its
    /// labels unknown, the policies not yet read, the kernel refusing):
    /// the pod would run unprotected, so it is not started.
    PolicyUnresolved,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_refuses_a_pod_name_the_api_server_could_not_hold() {
        let add = |pod: &str| {
            Request::decode(
                format!(r#"{{"op":"add","key":{{"container_id":"c1","ifname":"eth0"}},"netns":null,"requested":[],"pod":{pod}}}"#)
                    .as_bytes(),
            )
        };
        assert!(add(r#"{"namespace":"x","name":"web-1.a"}"#).is_ok());
        assert!(add("null").is_ok());
        for bad in [
            r#"{"namespace":"X","name":"a"}"#,
            r#"{"namespace":"x.y","name":"a"}"#,
            r#"{"namespace":"x","name":"../a"}"#,
            r#"{"namespace":"x","name":""}"#,
            r#"{"namespace":"x","name":"a-"}"#,
        ] {
            assert!(add(bad).is_err(), "{bad}");
        }
        // A plugin that predates the field is still served.
        let old = br#"{"op":"add","key":{"container_id":"c1","ifname":"eth0"},"netns":null,"requested":[]}"#;
        assert!(matches!(
            Request::decode(old),
            Ok(Request::Add { pod: None, .. })
        ));
    }

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
