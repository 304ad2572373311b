//! STATUS: whether an ADD would succeed now. podnet itself needs nothing
//! but the kernel; readiness is the IPAM plugin's to tell.

use crate::args::CmdArgs;
use crate::error::PluginError;
use crate::ipam;
use crate::spec::NetConf;

pub fn status(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    ipam::status(args, conf)
}
