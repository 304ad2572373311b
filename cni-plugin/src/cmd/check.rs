//! CHECK: what ADD created is still there, as prevResult describes it.

use crate::args::CmdArgs;
use crate::error::{CheckFailure, PluginError};
use crate::ipam;
use crate::names;
use crate::netlink::netns::NetNs;
use crate::netlink::{addr, link, route, Netlink};
use crate::spec::{CniResult, NetConf};

pub fn check(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or(PluginError::MissingPrevResult { verb: "CHECK" })?;
    check_pod_side(args, prev)?;
    check_node_side(args, conf)?;
    let owner = crate::hostport::owner(args.container_id(), args.ifname());
    crate::hostport::check(&owner, &conf.runtime_config.port_mappings)?;
    ipam::check(args, conf)
}

/// The pod's interface, its MAC, addresses and routes.
fn check_pod_side(args: &CmdArgs, prev: &CniResult) -> Result<(), PluginError> {
    let ifname = args.ifname();
    let netns_path = args.netns.clone().unwrap_or_default();
    let netns = NetNs::open(&netns_path).map_err(PluginError::from_netns)?;
    let mut pod_nl = netns.netlink().map_err(PluginError::from_netns)?;

    let pod =
        link::get_link(&mut pod_nl, ifname)?.ok_or_else(|| CheckFailure::InterfaceMissing {
            ifname: ifname.to_string(),
            netns: netns_path.display().to_string(),
        })?;
    let pod_index_in_result = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.is_some());
    if let Some(i) = pod_index_in_result {
        let want = &prev.interfaces[i].mac;
        if !want.is_empty() && !want.eq_ignore_ascii_case(&pod.mac_string()) {
            return Err(CheckFailure::MacDiffers {
                ifname: ifname.to_string(),
                actual: pod.mac_string(),
                expected: want.clone(),
            }
            .into());
        }
    }

    let present = addr::list_addresses(&mut pod_nl, pod.index)?;
    let ours = |i: Option<usize>| i.is_none() || i == pod_index_in_result;
    if let Some(ip) = prev
        .ips
        .iter()
        .find(|ip| ours(ip.interface) && !present.contains(&ip.address))
    {
        return Err(CheckFailure::AddressMissing {
            address: ip.address,
            ifname: ifname.to_string(),
        }
        .into());
    }

    let mut routes = route::list_routes(&mut pod_nl, false)?;
    routes.extend(route::list_routes(&mut pod_nl, true)?);
    let missing = prev.routes.iter().find(|want| {
        !routes.iter().any(|r| {
            r.dst == want.dst && (want.gw.is_none() || r.gw == want.gw) && r.oif == Some(pod.index)
        })
    });
    match missing {
        Some(want) => Err(CheckFailure::RouteMissing {
            dst: want.dst,
            gw: want.gw,
            ifname: ifname.to_string(),
        }
        .into()),
        None => Ok(()),
    }
}

/// The host end of the veth, on the bridge, both up.
fn check_node_side(args: &CmdArgs, conf: &NetConf) -> Result<(), PluginError> {
    let mut host_nl = Netlink::open()?;
    let host_name = names::host_veth_name(args.container_id(), args.ifname());
    let bridge_name = conf.bridge.to_string();
    let host = link::get_link(&mut host_nl, &host_name)?
        .ok_or_else(|| CheckFailure::HostVethMissing(host_name.clone()))?;
    let bridge = link::get_link(&mut host_nl, &bridge_name)?
        .ok_or_else(|| CheckFailure::BridgeMissing(bridge_name.clone()))?;
    if host.controller != Some(bridge.index) {
        return Err(CheckFailure::NotOnBridge {
            veth: host_name,
            bridge: bridge_name,
        }
        .into());
    }
    if !bridge.up || !host.up {
        return Err(CheckFailure::Down {
            bridge: bridge_name,
            veth: host_name,
        }
        .into());
    }
    Ok(())
}
