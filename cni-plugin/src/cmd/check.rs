//! CHECK: what ADD created is still there, as prevResult describes it.

use crate::error::PluginError;
use crate::ipam;
use crate::names;
use crate::netlink::netns::NetNs;
use crate::netlink::{addr, link, route, Netlink};
use crate::skel::Args;
use crate::spec::NetConf;

pub fn check(args: &Args, conf: &NetConf, stdin: &[u8]) -> Result<(), PluginError> {
    if !conf.cni_version.has_check() {
        return Err(PluginError::VerbNotInVersion {
            verb: "CHECK",
            version: conf.cni_version.as_str(),
        });
    }
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or(PluginError::MissingPrevResult { verb: "CHECK" })?;
    let ifname = args.ifname();
    let netns_path = args.netns.clone().unwrap_or_default();
    let netns = NetNs::open(&netns_path).map_err(PluginError::from_netns)?;
    let mut pod_nl = netns.netlink().map_err(PluginError::from_netns)?;

    let pod = link::get_link(&mut pod_nl, ifname)?.ok_or_else(|| {
        PluginError::Check(format!(
            "interface {ifname} is missing from {}",
            netns_path.display()
        ))
    })?;
    let pod_index_in_result = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.is_some());
    if let Some(i) = pod_index_in_result {
        let want = &prev.interfaces[i].mac;
        if !want.is_empty() && !want.eq_ignore_ascii_case(&pod.mac_string()) {
            return Err(PluginError::Check(format!(
                "interface {ifname} has MAC {}, prevResult says {want}",
                pod.mac_string()
            )));
        }
    }

    let present = addr::list_addresses(&mut pod_nl, pod.index)?;
    for ip in &prev.ips {
        let ours = ip.interface.is_none() || ip.interface == pod_index_in_result;
        if ours && !present.contains(&ip.address) {
            return Err(PluginError::Check(format!(
                "address {} is missing from {ifname}",
                ip.address
            )));
        }
    }

    let mut routes = route::list_routes(&mut pod_nl, false)?;
    routes.extend(route::list_routes(&mut pod_nl, true)?);
    for want in &prev.routes {
        let found = routes.iter().any(|r| {
            r.dst == want.dst && (want.gw.is_none() || r.gw == want.gw) && r.oif == Some(pod.index)
        });
        if !found {
            let via = want.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            return Err(PluginError::Check(format!(
                "route {}{via} is missing from {ifname}",
                want.dst
            )));
        }
    }

    let mut host_nl = Netlink::open()?;
    let host_name = names::host_veth_name(args.container_id(), ifname);
    let host = link::get_link(&mut host_nl, &host_name)?
        .ok_or_else(|| PluginError::Check(format!("host veth {host_name} is missing")))?;
    let bridge = link::get_link(&mut host_nl, conf.bridge.as_str())?
        .ok_or_else(|| PluginError::Check(format!("bridge {} is missing", conf.bridge)))?;
    if host.controller != Some(bridge.index) {
        return Err(PluginError::Check(format!(
            "host veth {host_name} is not attached to bridge {}",
            conf.bridge
        )));
    }
    if !bridge.up || !host.up {
        return Err(PluginError::Check(format!(
            "bridge {} or host veth {host_name} is down",
            conf.bridge
        )));
    }

    ipam::check(args, conf, stdin)
}
