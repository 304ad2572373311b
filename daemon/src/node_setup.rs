//! Preparing the node: the bridge with the gateway addresses, forwarding,
//! masquerade for traffic leaving the cluster, the VXLAN device.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use podnet_cni::names;
use podnet_cni::netlink::{addr, link, route, Netlink, NetlinkError};

use crate::kernel::{masquerade, sysctl, vxlan};

use crate::nodenet::NodeNet;
use crate::routes::Underlay;

/// The VXLAN device's name, port and VNI (the port is the Linux default,
/// which flannel uses too; 4789 is IANA's).
pub const VXLAN_NAME: &str = "podnet.vx";
pub const VXLAN_PORT: u16 = 8472;
pub const VXLAN_VNI: u32 = 1;

/// 169.254.0.0/16 and fe80::/10: the kernel's own, never podnet's.
fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The node's underlay: the interface that holds `node_ip` (else the
/// default route's), its index, MTU and connected subnets.
pub fn find_underlay(
    nl: &mut Netlink,
    node_ip: Option<IpAddr>,
) -> Result<(Underlay, u32, IpAddr), NetlinkError> {
    let links = link::list_links(nl)?;
    let mut candidates = Vec::new();
    if let Some(oif) = route::default_route_oif(nl)? {
        candidates.push(oif);
    }
    candidates.extend(links.iter().map(|l| l.index));
    for index in candidates {
        let subnets: Vec<IpNetwork> = addr::list_addresses(nl, index)?
            .into_iter()
            .filter(|a| !a.ip().is_loopback() && !is_link_local(a.ip()))
            .collect();
        let ip = match node_ip {
            Some(ip) if subnets.iter().any(|s| s.ip() == ip) => ip,
            Some(_) => continue,
            None => match subnets.first() {
                Some(s) => s.ip(),
                None => continue,
            },
        };
        let mtu = links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.mtu)
            .unwrap_or(1500);
        let subnets = subnets
            .iter()
            .filter_map(|s| IpNetwork::new(s.network(), s.prefix()).ok())
            .collect();
        return Ok((Underlay { index, subnets }, mtu, ip));
    }
    Err(NetlinkError::Missing {
        what: "the node's underlay interface".into(),
        reason: match node_ip {
            Some(ip) => format!("no interface holds the node address {ip}"),
            None => "no default route and no interface with a global address".to_string(),
        },
    })
}

/// Bridge up with a fixed MAC and the gateway address of every node CIDR.
pub fn ensure_bridge(
    nl: &mut Netlink,
    bridge: &str,
    cidrs: &[IpNetwork],
) -> Result<u32, NetlinkError> {
    let br = link::ensure_bridge(nl, bridge, names::bridge_mac(bridge), None)?;
    let mut want = Vec::with_capacity(cidrs.len());
    for cidr in cidrs {
        let gateway = podnet_ipam::first_host(cidr)
            .and_then(|gw| IpNetwork::new(gw, cidr.prefix()).ok())
            .ok_or_else(|| NetlinkError::Invalid {
                op: format!("gateway address of {cidr}"),
                reason: "the CIDR has no room for a gateway".into(),
            })?;
        want.push(gateway);
    }
    ensure_only_addresses(nl, br.index, &want)?;
    Ok(br.index)
}

/// `want` on the device, and no other global address: the bridge and the
/// VXLAN device are podnet's own, and an address of a former node CIDR left
/// on them would claim addresses the controller may give another node.
/// IPv6 link-local addresses are the kernel's and stay.
fn ensure_only_addresses(
    nl: &mut Netlink,
    index: u32,
    want: &[IpNetwork],
) -> Result<(), NetlinkError> {
    for a in want {
        addr::ensure_address(nl, index, *a)?;
    }
    for have in addr::list_addresses(nl, index)? {
        if !is_link_local(have.ip()) && !want.contains(&have) {
            tracing::info!(index, address = %have, "removing an address of a former node CIDR");
            addr::remove_address(nl, index, have)?;
        }
    }
    Ok(())
}

/// Forwarding on, masquerade for traffic leaving the cluster ranges: both
/// inside the node's namespace.
pub fn ensure_forwarding_and_masquerade(
    node: &NodeNet,
    cluster: &[IpNetwork],
    masquerade_on: bool,
) -> Result<(), NetlinkError> {
    let v6 = cluster.iter().any(|c| c.is_ipv6());
    let cluster = cluster.to_vec();
    node.run(move || -> Result<(), NetlinkError> {
        sysctl::ensure("net/ipv4/ip_forward", "1")?;
        if v6 {
            sysctl::ensure("net/ipv6/conf/all/forwarding", "1")?;
        }
        if masquerade_on {
            masquerade::ensure_masquerade(&cluster)?;
        }
        Ok(())
    })?
}

/// The VXLAN device for peers on other segments, addressed with the
/// network address of each node CIDR (the next hop peers route to).
pub fn ensure_vxlan(
    nl: &mut Netlink,
    node: &str,
    underlay: &Underlay,
    underlay_mtu: u32,
    local: IpAddr,
    cidrs: &[IpNetwork],
) -> Result<u32, NetlinkError> {
    let vx = vxlan::ensure_vxlan(
        nl,
        &vxlan::VxlanSpec {
            name: VXLAN_NAME,
            vni: VXLAN_VNI,
            local,
            port: VXLAN_PORT,
            underlay_index: Some(underlay.index),
            mtu: vxlan::overlay_mtu(underlay_mtu, local),
            mac: names::vtep_mac(node),
        },
    )?;
    let mut want = Vec::with_capacity(cidrs.len());
    for cidr in cidrs {
        let host = if cidr.is_ipv6() { 128 } else { 32 };
        want.push(
            IpNetwork::new(cidr.network(), host).map_err(|e| NetlinkError::Invalid {
                op: "vxlan address".into(),
                reason: e.to_string(),
            })?,
        );
    }
    ensure_only_addresses(nl, vx.index, &want)?;
    Ok(vx.index)
}
