//! DEL: best effort to the fullest extent. Whatever is already gone is
//! success; a failing step does not stop the next one.

use crate::args::CmdArgs;
use crate::error::PluginError;
use crate::ipam;
use crate::names;
use crate::netlink::netns::NetNs;
use crate::netlink::{link, Netlink};
use crate::spec::NetConf;

pub fn del(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    // The hostPorts and the release run while the kernel deletes the veth
    // (its ~10-20 ms are DEL's floor, spent inside one blocking netlink
    // request): neither waits for the other. A thread, because starting
    // the IPAM plugin from this one would hold the deletion back until the
    // plugin's exec.
    let (links, (unmapped, released)) = std::thread::scope(|s| {
        let other = s.spawn(|| {
            // Found by their owner in the kernel: with podnetd down, the
            // pod's namespace gone, or runtimeConfig not passed again.
            // Before the release, so no traffic for this pod's hostPorts
            // reaches a pod given its address next.
            let owner = crate::hostport::owner(args.container_id(), args.ifname());
            let unmapped = crate::hostport::del(&owner);
            (unmapped, ipam::del(args, conf))
        });
        let links = remove_links(args);
        let other = (other.join()).unwrap_or((Ok(()), Err(PluginError::IpamThread)));
        (links, other)
    });
    let mut errors = links;
    errors.extend(unmapped.err());
    // Always, so the address is released even when the namespace is gone.
    errors.extend(released.err());
    PluginError::all(errors)
}

fn remove_links(args: &CmdArgs) -> Vec<PluginError> {
    let mut errors = Vec::new();

    // Deleting the host end takes the pod end with it, wherever the pod's
    // namespace is, and works when that namespace is already gone.
    let host_name = names::host_veth_name(args.container_id(), args.ifname());
    let removed = match Netlink::open().and_then(|mut nl| link::remove_link(&mut nl, &host_name)) {
        Ok(removed) => removed,
        Err(e) => {
            errors.push(PluginError::Kernel(e));
            false
        }
    };
    if !removed {
        if let Err(e) = remove_pod_end(args) {
            errors.push(e);
        }
    }
    errors
}

/// A pod end whose host end is missing (deleted by hand, say): removed
/// when the namespace still exists and the interface is a veth.
fn remove_pod_end(args: &CmdArgs) -> Result<(), PluginError> {
    let Some(path) = &args.netns else {
        return Ok(());
    };
    let netns = match NetNs::open(path) {
        Ok(ns) => ns,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(PluginError::from_netns(e)),
    };
    let mut nl = match netns.netlink() {
        Ok(nl) => nl,
        // Not a namespace (any more): nothing of ours can be in it.
        Err(crate::netlink::NetlinkError::NotNetns { .. }) => return Ok(()),
        Err(e) => return Err(PluginError::from_netns(e)),
    };
    if let Some(pod) = link::get_link(&mut nl, args.ifname())? {
        if pod.kind.as_deref() == Some("veth") {
            link::remove_link(&mut nl, args.ifname())?;
        }
    }
    Ok(())
}
