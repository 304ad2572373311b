//! `podnet-ipam`, the CNI IPAM plugin: podnetd's addresses for any main
//! plugin that delegates IPAM (the reference `bridge`, `ptp`, ...).

use crate::error::PluginError;
use crate::ipam::native::{self, NativeConf};
use crate::skel::{Args, Plugin};
use crate::spec::{CniResult, NetConf};

fn native_conf(conf: &NetConf) -> Result<NativeConf, PluginError> {
    let ipam = crate::ipam::ipam_of(conf)?;
    NativeConf::parse(&ipam.raw)
}

fn add(args: &Args, conf: &NetConf, _stdin: &[u8]) -> Result<CniResult, PluginError> {
    native::add(args, conf, &native_conf(conf)?)
}

fn del(args: &Args, conf: &NetConf, _stdin: &[u8]) -> Result<(), PluginError> {
    native::del(args, &native_conf(conf)?)
}

fn check(args: &Args, conf: &NetConf, _stdin: &[u8]) -> Result<(), PluginError> {
    if !conf.cni_version.has_check() {
        return Err(PluginError::VerbNotInVersion {
            verb: "CHECK",
            version: conf.cni_version.as_str(),
        });
    }
    native::check(args, conf, &native_conf(conf)?)
}

fn status(_args: &Args, conf: &NetConf, _stdin: &[u8]) -> Result<(), PluginError> {
    if !conf.cni_version.has_status_and_gc() {
        return Err(PluginError::VerbNotInVersion {
            verb: "STATUS",
            version: conf.cni_version.as_str(),
        });
    }
    native::status(&native_conf(conf)?)
}

fn gc(_args: &Args, conf: &NetConf, _stdin: &[u8]) -> Result<(), PluginError> {
    if !conf.cni_version.has_status_and_gc() {
        return Err(PluginError::VerbNotInVersion {
            verb: "GC",
            version: conf.cni_version.as_str(),
        });
    }
    native::gc(conf, &native_conf(conf)?)
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
