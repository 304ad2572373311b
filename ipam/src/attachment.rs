//! What the plugin and podnetd exchange about one pod interface: its key
//! and its allocation (the wire and the admin view), apart from the
//! allocator that produces them.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::ident::{check_ifname, is_cni_identifier, MAX_CONTAINER_ID};

/// One pod interface, the unit of allocation (CNI's "attachment"): a repeated ADD or DEL with the
/// same key is idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentKey {
    /// The key as a plugin can send it: the container id by CNI's pattern
    /// (at most [`MAX_CONTAINER_ID`] bytes), the ifname one the kernel
    /// takes ([`check_ifname`]). The daemon checks every key it is sent.
    pub fn validate(&self) -> Result<(), String> {
        if self.container_id.len() > MAX_CONTAINER_ID || !is_cni_identifier(&self.container_id) {
            return Err(format!(
                "container id {:?} is not ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ of at most {MAX_CONTAINER_ID} bytes",
                self.container_id.chars().take(64).collect::<String>()
            ));
        }
        check_ifname(&self.ifname)
    }
}

impl fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub key: AttachmentKey,
    /// Each address with its node CIDR's prefix (`10.244.1.5/24`), one per pool range, in the
    /// order of [`PoolConfig::ranges`].
    pub ips: Vec<IpNetwork>,
    /// The gateway of each address's range, in the same order as `ips`.
    pub gateways: Vec<IpAddr>,
    /// The pod's netns path recorded at ADD, so the leak reclaimer can tell a dead pod.
    pub netns: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
}

impl Allocation {
    /// Every address inside one of `cidrs` (the node's): false for a pod
    /// left on a former node CIDR, which peers no longer route to.
    pub fn within(&self, cidrs: &[IpNetwork]) -> bool {
        self.ips
            .iter()
            .all(|ip| cidrs.iter().any(|c| c.contains(ip.ip())))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeUsage {
    pub range: IpNetwork,
    /// Addresses that can be handed out: the range minus network, gateway, IPv4 broadcast and
    /// reserved addresses.
    pub capacity: u128,
    pub used: u128,
}
