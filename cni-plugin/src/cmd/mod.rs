//! One file per CNI verb, and the `podnet` plugin as the skeleton runs it.
//! Each verb takes the typed invocation, so tests call them without
//! environment variables. VERSION is the skeleton's own.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;

use crate::skel::Plugin;
use crate::spec::NetConf;

/// The `podnet` plugin.
pub const PODNET: Plugin = Plugin {
    parse: NetConf::parse,
    add: add::add,
    del: del::del,
    check: check::check,
    status: status::status,
    gc: gc::gc,
    report: Some(crate::ipam::report),
};
