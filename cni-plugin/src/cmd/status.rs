//! STATUS: whether an ADD would succeed now. podnet itself needs nothing
//! but the kernel; readiness is the IPAM plugin's to tell.

use crate::error::PluginError;
use crate::ipam;
use crate::skel::Args;
use crate::spec::NetConf;

pub fn status(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), PluginError> {
    if !conf.cni_version.has_status_and_gc() {
        return Err(PluginError::VerbNotInVersion {
            verb: "STATUS",
            version: conf.cni_version.as_str(),
        });
    }
    ipam::status(args, conf, stdin)
}
