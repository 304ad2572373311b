//! `podnet-ipam`, the CNI IPAM plugin: podnetd's addresses for any main
//! plugin that delegates IPAM (the reference `bridge`, `ptp`, ...).

use crate::args::CmdArgs;
use crate::error::PluginError;
use crate::ipam::native;
use crate::skel::Plugin;
use crate::spec::{CniResult, IpamConf, NativeConf, NetConf};

/// The settings of this plugin's own section, which
/// [`NetConf::parse_for_ipam`] reads as `podnet-ipam`'s whatever name the
/// binary was installed under.
fn native_conf(conf: &NetConf) -> Result<&NativeConf, PluginError> {
    conf.ipam
        .as_ref()
        .and_then(IpamConf::native)
        .ok_or(PluginError::NoIpam)
}

fn add(args: &CmdArgs, conf: &NetConf) -> Result<CniResult, PluginError> {
    native::add(args, conf, native_conf(conf)?)
}

fn del(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    native::del(args, native_conf(conf)?)
}

fn check(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    native::check(args, conf, native_conf(conf)?)
}

fn status(_args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    native::status(native_conf(conf)?)
}

fn gc(_args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    native::gc(conf, native_conf(conf)?)
}

pub const PODNET_IPAM: Plugin = Plugin {
    parse: NetConf::parse_for_ipam,
    add,
    del,
    check,
    status,
    gc,
    report: None,
};
