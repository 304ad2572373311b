//! GC: remove what podnet created for attachments the runtime no longer
//! lists as valid, then let IPAM release their addresses.

use std::collections::HashSet;

use crate::args::CmdArgs;
use crate::error::PluginError;
use crate::ipam;
use crate::names;
use crate::netlink::{link, Netlink};
use crate::spec::NetConf;

pub fn gc(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    // Without the list, "everything else" would be every pod of the node.
    let valid = conf
        .valid_attachments
        .as_ref()
        .ok_or(PluginError::NoValidAttachments)?;
    let keep: HashSet<String> = valid
        .iter()
        .map(|a| names::host_veth_name(&a.container_id, &a.ifname))
        .collect();

    let mut errors = Vec::new();
    if let Err(e) = remove_stale_veths(conf, &keep) {
        errors.push(e);
    }
    let owners: Vec<String> = valid
        .iter()
        .map(|a| crate::hostport::owner(&a.container_id, &a.ifname))
        .collect();
    if let Err(e) = crate::hostport::gc(&owners) {
        errors.push(e);
    }
    if let Err(e) = ipam::gc(args, conf) {
        errors.push(e);
    }
    PluginError::all(errors)
}

/// Host veths of ours (prefix `pn`) on this network's bridge that no valid
/// attachment accounts for.
fn remove_stale_veths(conf: &NetConf, keep: &HashSet<String>) -> Result<(), PluginError> {
    let mut nl = Netlink::open()?;
    let Some(bridge) = link::get_link(&mut nl, conf.bridge.as_str())? else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for l in link::list_links(&mut nl)? {
        let ours = l.name.starts_with(names::HOST_VETH_PREFIX)
            && l.kind.as_deref() == Some("veth")
            && l.controller == Some(bridge.index);
        if ours && !keep.contains(&l.name) {
            tracing::info!(link = %l.name, "GC removes a veth no valid attachment accounts for");
            if let Err(e) = link::remove_link(&mut nl, &l.name) {
                errors.push(PluginError::Kernel(e));
            }
        }
    }
    PluginError::all(errors)
}
