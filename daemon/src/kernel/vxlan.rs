//! The VXLAN overlay device that carries pod traffic to peers on another L2
//! segment (one device per node, FDB and neighbour entries per peer: see
//! `neigh.rs`).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkUnspec, LinkVxlan};

use podnet_cni::netlink::link::{self, Link};
use podnet_cni::netlink::{Netlink, NetlinkError};

/// The UDP port the Linux kernel, flannel and Cilium use for VXLAN (chosen
/// before IANA assigned 4789). Every node of a cluster must use the same.
pub const DEFAULT_PORT: u16 = 8472;
/// The IANA-assigned VXLAN port (RFC 7348), what Calico and OVS use.
pub const IANA_PORT: u16 = 4789;

/// Bytes VXLAN adds to every inner frame over an IPv4 underlay: outer IPv4
/// (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const OVERHEAD_V4: u32 = 50;
/// The same over an IPv6 underlay (outer IPv6 header is 40 bytes).
pub const OVERHEAD_V6: u32 = 70;

/// The largest MTU a VXLAN device (and the pods routed through it) can use
/// without fragmenting the underlay: the underlay's MTU minus the overhead
/// of the underlay's address family.
pub fn overlay_mtu(underlay_mtu: u32, local: IpAddr) -> u32 {
    let overhead = if local.is_ipv6() {
        OVERHEAD_V6
    } else {
        OVERHEAD_V4
    };
    underlay_mtu.saturating_sub(overhead)
}

/// What the node's VXLAN device must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    /// The node's underlay address: the outer source of encapsulated packets.
    pub local: IpAddr,
    pub port: u16,
    /// The underlay device to send through; `None` lets routing choose.
    pub underlay_index: Option<u32>,
    pub mtu: u32,
    /// A fixed MAC: peers' FDB and neighbour entries point at it, so it must
    /// survive a recreation of the device (derive it from the node).
    pub mac: [u8; 6],
}

/// The tunnel parameters of an existing device that only a recreation can
/// change (the kernel refuses to change a VXLAN's VNI, port or local address).
#[derive(Debug, Default, PartialEq, Eq)]
struct Tunnel {
    vni: Option<u32>,
    local: Option<IpAddr>,
    port: Option<u16>,
    underlay_index: Option<u32>,
    learning: Option<bool>,
}

impl Tunnel {
    fn wanted(spec: &VxlanSpec<'_>) -> Self {
        Self {
            vni: Some(spec.vni),
            local: Some(spec.local),
            port: Some(spec.port),
            underlay_index: spec.underlay_index.filter(|&i| i != 0),
            learning: Some(false),
        }
    }

    fn from_message(msg: &LinkMessage) -> Option<Self> {
        let infos = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        })?;
        let data = infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(data)) => Some(data),
            _ => None,
        })?;
        let mut t = Tunnel::default();
        for d in data {
            match d {
                InfoVxlan::Id(v) => t.vni = Some(*v),
                InfoVxlan::Local(ip) => t.local = Some(IpAddr::V4(*ip)),
                InfoVxlan::Local6(ip) => t.local = Some(IpAddr::V6(*ip)),
                InfoVxlan::Port(p) => t.port = Some(*p),
                InfoVxlan::Link(i) if *i != 0 => t.underlay_index = Some(*i),
                InfoVxlan::Learning(l) => t.learning = Some(*l),
                _ => {}
            }
        }
        Some(t)
    }
}

/// Creates the node's VXLAN device, or keeps an existing one whose
/// parameters match. A device whose tunnel parameters differ is deleted and
/// created again (its FDB and neighbour entries go with it: re-add them);
/// a wrong MTU or MAC, or a device that is down, is corrected in place.
/// Learning is off: podnet programs every peer's FDB entry itself.
///
/// Equivalent to `ip link add NAME address MAC mtu MTU type vxlan id VNI
/// local IP dstport PORT dev UNDERLAY nolearning; ip link set NAME up`.
pub fn ensure_vxlan(nl: &mut Netlink, spec: &VxlanSpec<'_>) -> Result<Link, NetlinkError> {
    let name = spec.name;
    let op = || {
        format!(
            "ip link add {name} type vxlan id {} local {} dstport {}",
            spec.vni, spec.local, spec.port
        )
    };
    // Two rounds at most: one to clear a mismatching device (or lose a
    // creation race), one to create.
    for _ in 0..2 {
        if let Some(current) = get_vxlan(nl, name)? {
            let (link, tunnel) = current;
            if link.kind.as_deref() != Some("vxlan") {
                return Err(NetlinkError::WrongKind {
                    name: name.to_string(),
                    kind: link.kind.unwrap_or_else(|| "plain".into()),
                    want: "vxlan",
                });
            }
            if tunnel.as_ref() == Some(&Tunnel::wanted(spec)) {
                return fix_in_place(nl, link, spec);
            }
            link::remove_link(nl, name)?;
        }
        let mut builder = LinkVxlan::new(name, spec.vni)
            .port(spec.port)
            .learning(false)
            .address(spec.mac.to_vec())
            .mtu(spec.mtu)
            .up();
        builder = match spec.local {
            IpAddr::V4(ip) => builder.local(ip),
            IpAddr::V6(ip) => builder.local6(ip),
        };
        if let Some(dev) = spec.underlay_index.filter(|&i| i != 0) {
            builder = builder.dev(dev);
        }
        match nl.execute(
            &op(),
            RouteNetlinkMessage::NewLink(builder.build()),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            // Created by someone else in between: verify it next round.
            Err(e) if e.is_exists() => continue,
            other => other?,
        }
        return link::get_link(nl, name)?.ok_or_else(|| NetlinkError::Vanished {
            what: format!("vxlan device {name}"),
        });
    }
    Err(NetlinkError::Contended {
        what: format!("vxlan device {name}"),
    })
}

/// The link and, for a VXLAN device, its tunnel parameters.
fn get_vxlan(nl: &mut Netlink, name: &str) -> Result<Option<(Link, Option<Tunnel>)>, NetlinkError> {
    let Some(link) = link::get_link(nl, name)? else {
        return Ok(None);
    };
    let msg = LinkUnspec::new_with_index(link.index).build();
    let reply = nl.get(
        &format!("ip -d link show {name}"),
        RouteNetlinkMessage::GetLink(msg),
    )?;
    let tunnel = match reply {
        Some(RouteNetlinkMessage::NewLink(m)) => Tunnel::from_message(&m),
        _ => None,
    };
    Ok(Some((link, tunnel)))
}

/// MTU, MAC and up: what `ip link set` can change without a recreation.
fn fix_in_place(nl: &mut Netlink, link: Link, spec: &VxlanSpec<'_>) -> Result<Link, NetlinkError> {
    if link.mtu == spec.mtu && link.mac == spec.mac && link.up {
        return Ok(link);
    }
    let msg = LinkUnspec::new_with_index(link.index)
        .mtu(spec.mtu)
        .address(spec.mac.to_vec())
        .up()
        .build();
    nl.execute(
        &format!(
            "ip link set {} address {} mtu {} up",
            spec.name,
            podnet_cni::mac::format_mac(&spec.mac),
            spec.mtu
        ),
        RouteNetlinkMessage::SetLink(msg),
        0,
    )?;
    link::get_link(nl, spec.name)?.ok_or_else(|| NetlinkError::Vanished {
        what: format!("vxlan device {}", spec.name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_mtu_subtracts_the_underlay_family_overhead() {
        assert_eq!(overlay_mtu(1500, "192.0.2.1".parse().unwrap()), 1450);
        assert_eq!(overlay_mtu(1500, "2001:db8::1".parse().unwrap()), 1430);
        assert_eq!(overlay_mtu(9001, "192.0.2.1".parse().unwrap()), 8951);
        assert_eq!(overlay_mtu(20, "192.0.2.1".parse().unwrap()), 0);
    }
}
