//! The node's network namespace: the daemon's own, or one given by path
//! (ARCHITECTURE.md decision 8: several simulated nodes on one machine,
//! each managed by a podnetd running outside it).

use std::path::Path;

use podnet_cni::netlink::netns::NetNs;
use podnet_cni::netlink::{Netlink, NetlinkError};

pub struct NodeNet {
    netns: Option<NetNs>,
}

impl NodeNet {
    pub fn open(netns: Option<&Path>) -> Result<Self, NetlinkError> {
        Ok(Self {
            netns: netns.map(NetNs::open).transpose()?,
        })
    }

    /// A netlink socket in the node's namespace.
    pub fn netlink(&self) -> Result<Netlink, NetlinkError> {
        match &self.netns {
            Some(ns) => ns.netlink(),
            None => Netlink::open(),
        }
    }

    /// Runs `f` inside the node's namespace (sysctls, netfilter).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetlinkError> {
        match &self.netns {
            Some(ns) => ns.run(f),
            None => Ok(f()),
        }
    }
}
