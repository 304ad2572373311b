//! Addresses for a pod: from podnetd directly when `ipam.type` is
//! `podnet-ipam` (no second process on the ADD path), otherwise from the
//! IPAM plugin `ipam.type` names, executed as the spec describes.

pub mod delegated;
pub mod native;

use crate::args::{CmdArgs, Command};
use crate::error::PluginError;
use crate::spec::{IpamConf, IpamKind, NetConf};

pub(crate) fn ipam_of(conf: &NetConf) -> Result<&IpamConf, PluginError> {
    conf.ipam.as_ref().ok_or(PluginError::NoIpam)
}

/// An IPAM ADD under way: the request is out, the answer not read yet.
pub enum PendingAdd {
    Native(native::PendingAdd),
    Delegated(delegated::PendingAdd),
}

/// Sends the IPAM ADD and returns without waiting for its answer. The
/// caller waits for the answer's `policy`, if any, before its ADD returns.
pub fn start_add(args: &CmdArgs, conf: &NetConf) -> Result<PendingAdd, PluginError> {
    let ipam = ipam_of(conf)?;
    Ok(match &ipam.kind {
        IpamKind::Native(n) => {
            PendingAdd::Native(native::start_add(args, conf, n, native::Policy::Alongside)?)
        }
        IpamKind::Delegated => PendingAdd::Delegated(delegated::start_add(args, conf, ipam)?),
    })
}

impl PendingAdd {
    pub fn finish(self) -> Result<native::Answer, PluginError> {
        match self {
            Self::Native(p) => p.finish(),
            Self::Delegated(p) => p.finish().map(|result| native::Answer {
                result,
                policy: None,
            }),
        }
    }
}

pub fn del(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    let ipam = ipam_of(conf)?;
    match &ipam.kind {
        IpamKind::Native(n) => native::del(args, n),
        IpamKind::Delegated => delegated::forward(Command::Del, args, ipam),
    }
}

pub fn check(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    let ipam = ipam_of(conf)?;
    match &ipam.kind {
        IpamKind::Native(n) => native::check(args, conf, n),
        IpamKind::Delegated => delegated::forward(Command::Check, args, ipam),
    }
}

pub fn status(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    let ipam = ipam_of(conf)?;
    match &ipam.kind {
        IpamKind::Native(n) => native::status(n),
        IpamKind::Delegated => delegated::forward_if_supported(Command::Status, args, conf, ipam),
    }
}

pub fn gc(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    let ipam = ipam_of(conf)?;
    match &ipam.kind {
        IpamKind::Native(n) => native::gc(conf, n),
        IpamKind::Delegated => delegated::forward_if_supported(Command::Gc, args, conf, ipam),
    }
}

/// Tells podnetd how long an ADD or DEL took, for its metrics; only when
/// podnetd is the IPAM (it is then known to be there), and never holding
/// the verb up for long.
pub fn report(conf: &NetConf, verb: Command, took: std::time::Duration, ok: bool) {
    if let Some(n) = conf.ipam.as_ref().and_then(IpamConf::native) {
        native::report(n, verb.as_str(), took, ok);
    }
}
