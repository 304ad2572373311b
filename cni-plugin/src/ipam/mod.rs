//! Addresses for a pod: from podnetd directly when `ipam.type` is
//! `podnet-ipam` (no second process on the ADD path), otherwise from the
//! IPAM plugin `ipam.type` names, executed as the spec describes.

pub mod delegated;
pub mod native;

use crate::error::PluginError;
use crate::skel::Args;
use crate::spec::{CniResult, IpamConf, NetConf};

pub(crate) fn ipam_of(conf: &NetConf) -> Result<&IpamConf, PluginError> {
    conf.ipam.as_ref().ok_or(PluginError::NoIpam)
}

fn native_conf(conf: &NetConf) -> Result<Option<native::NativeConf>, PluginError> {
    let ipam = ipam_of(conf)?;
    if ipam.plugin_type == native::PLUGIN_TYPE {
        native::NativeConf::parse(&ipam.raw).map(Some)
    } else {
        Ok(None)
    }
}

/// An IPAM ADD under way: the request is out, the answer not read yet.
pub enum PendingAdd {
    Native(native::PendingAdd),
    Delegated(delegated::PendingAdd),
}

/// Sends the IPAM ADD and returns without waiting for its answer.
pub fn start_add(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<PendingAdd, PluginError> {
    Ok(match native_conf(conf)? {
        Some(n) => PendingAdd::Native(native::start_add(args, conf, &n)?),
        None => PendingAdd::Delegated(delegated::start_add(args, conf, stdin)?),
    })
}

impl PendingAdd {
    pub fn finish(self) -> Result<CniResult, PluginError> {
        match self {
            Self::Native(p) => p.finish(),
            Self::Delegated(p) => p.finish(),
        }
    }
}

pub fn del(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), PluginError> {
    match native_conf(conf)? {
        Some(n) => native::del(args, &n),
        None => delegated::forward("DEL", args, conf, stdin),
    }
}

pub fn check(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), PluginError> {
    match native_conf(conf)? {
        Some(n) => native::check(args, conf, &n),
        None => delegated::forward("CHECK", args, conf, stdin),
    }
}

pub fn status(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), PluginError> {
    match native_conf(conf)? {
        Some(n) => native::status(&n),
        None => delegated::forward_if_supported("STATUS", args, conf, stdin),
    }
}

pub fn gc(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), PluginError> {
    match native_conf(conf)? {
        Some(n) => native::gc(conf, &n),
        None => delegated::forward_if_supported("GC", args, conf, stdin),
    }
}

/// Tells podnetd how long an ADD or DEL took, for its metrics; only when
/// podnetd is the IPAM (it is then known to be there), and never holding
/// the verb up for long.
pub fn report(conf: &NetConf, verb: crate::skel::Command, took: std::time::Duration, ok: bool) {
    if let Ok(Some(n)) = native_conf(conf) {
        native::report(&n, verb.as_str(), took, ok);
    }
}
