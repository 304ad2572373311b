//! The node's network namespace: the daemon's own, or one given by path
//! (ARCHITECTURE.md decision 8: several simulated nodes on one machine,
//! each managed by a podnetd running outside it).

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use podnet_cni::netlink::netns::NetNs;
use podnet_cni::netlink::{Netlink, NetlinkError};

pub struct NodeNet {
    netns: Option<NetNs>,
    /// Set once podnet is being removed from the node: the daemon's tasks
    /// that change the node's kernel state (routes, devices) then stop, so
    /// none of them puts back what the uninstall removed.
    retired: Mutex<bool>,
}

impl NodeNet {
    pub fn open(netns: Option<&Path>) -> Result<Self, NetlinkError> {
        Ok(Self {
            netns: netns.map(NetNs::open).transpose()?,
            retired: Mutex::new(false),
        })
    }

    /// Runs `f`, a change of the node's kernel state, unless the node was
    /// retired; changes and the retirement never overlap.
    pub fn change<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        let retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        (!*retired).then(f)
    }

    /// Retires the node (no `change` runs after this) and runs `f`, the
    /// removal of podnet, once any change in progress has finished.
    pub fn retire<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        *retired = true;
        f()
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
