//! Static forwarding (FDB) and neighbour entries: how the VXLAN device
//! learns, without flooding or learning, which node holds a peer's overlay
//! MAC (FDB) and which MAC a peer's overlay address has (neighbour), as
//! flannel's vxlan backend programs them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use podnet_cni::mac::format_mac;
use podnet_cni::netlink::{Netlink, NetlinkError};

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// A bridge-family (FDB) message on the device itself (`self`, NTF_SELF),
/// not on a bridge it might be a port of.
fn fdb_message(dev_index: u32, mac: [u8; 6], dst: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = dev_index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
    msg
}

/// Adds the entry, or points an existing one for `mac` at `dst` in place,
/// so a peer that changed address never loses its entry.
///
/// Equivalent to `bridge fdb replace MAC dev INDEX dst IP self permanent`.
pub fn replace_fdb(
    nl: &mut Netlink,
    dev_index: u32,
    mac: [u8; 6],
    dst: IpAddr,
) -> Result<(), NetlinkError> {
    nl.execute(
        &format!(
            "bridge fdb replace {} dev {dev_index} dst {dst} self permanent",
            format_mac(&mac)
        ),
        RouteNetlinkMessage::NewNeighbour(fdb_message(dev_index, mac, dst)),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Returns whether there was such an entry: one already gone is success.
///
/// Equivalent to `bridge fdb del MAC dev INDEX dst IP self`.
pub fn remove_fdb(
    nl: &mut Netlink,
    dev_index: u32,
    mac: [u8; 6],
    dst: IpAddr,
) -> Result<bool, NetlinkError> {
    match nl.execute(
        &format!(
            "bridge fdb del {} dev {dev_index} dst {dst} self",
            format_mac(&mac)
        ),
        RouteNetlinkMessage::DelNeighbour(fdb_message(dev_index, mac, dst)),
        0,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The device's FDB entries that have a remote (`dst`), one per (MAC,
/// remote) pair; local and multicast addresses of the device are left out.
///
/// Equivalent to `bridge fdb show dev INDEX` filtered on `dst`.
pub fn list_fdb(nl: &mut Netlink, dev_index: u32) -> Result<Vec<([u8; 6], IpAddr)>, NetlinkError> {
    dump_entries(
        nl,
        AddressFamily::Bridge,
        &format!("bridge fdb show dev {dev_index}"),
        dev_index,
        |_| true,
    )
}

/// The (MAC, address) pairs of one device's neighbour-table dump in
/// `family` (bridge: FDB entries and their remotes) that `keep` accepts.
fn dump_entries(
    nl: &mut Netlink,
    family: AddressFamily,
    op: &str,
    dev_index: u32,
    keep: impl Fn(&NeighbourMessage) -> bool,
) -> Result<Vec<([u8; 6], IpAddr)>, NetlinkError> {
    let mut req = NeighbourMessage::default();
    req.header.family = family;
    // With strict checking the kernel filters on the attribute (the header's
    // index must stay 0); the loop below filters again for older kernels.
    req.attributes.push(NeighbourAttribute::IfIndex(dev_index));
    let replies = nl.dump(op, RouteNetlinkMessage::GetNeighbour(req))?;
    let mut out = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewNeighbour(m) = reply else {
            continue;
        };
        if m.header.ifindex != dev_index || !keep(&m) {
            continue;
        }
        let mut mac = None;
        let mut ip = None;
        for attr in &m.attributes {
            match attr {
                NeighbourAttribute::LinkLayerAddress(a) => mac = <[u8; 6]>::try_from(&a[..]).ok(),
                NeighbourAttribute::Destination(a) => ip = neighbour_ip(a),
                _ => {}
            }
        }
        if let (Some(mac), Some(ip)) = (mac, ip) {
            out.push((mac, ip));
        }
    }
    Ok(out)
}

/// A neighbour address as an IP: bridge-family messages carry it untyped,
/// told apart by length.
fn neighbour_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        NeighbourAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(&bytes[..])
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            16 => <[u8; 16]>::try_from(&bytes[..])
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        },
        _ => None,
    }
}

fn neigh_message(dev_index: u32, ip: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family(ip);
    msg.header.ifindex = dev_index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    msg
}

/// Adds the entry or corrects its MAC in place; permanent, so the kernel
/// never probes or ages it (there is no one to answer ARP on the overlay).
///
/// Equivalent to `ip neigh replace IP lladdr MAC dev INDEX nud permanent`.
pub fn replace_neigh(
    nl: &mut Netlink,
    dev_index: u32,
    ip: IpAddr,
    mac: [u8; 6],
) -> Result<(), NetlinkError> {
    let mut msg = neigh_message(dev_index, ip);
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    nl.execute(
        &format!(
            "ip neigh replace {ip} lladdr {} dev {dev_index} nud permanent",
            format_mac(&mac)
        ),
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Returns whether there was such an entry: one already gone is success.
///
/// Equivalent to `ip neigh del IP dev INDEX`.
pub fn remove_neigh(nl: &mut Netlink, dev_index: u32, ip: IpAddr) -> Result<bool, NetlinkError> {
    match nl.execute(
        &format!("ip neigh del {ip} dev {dev_index}"),
        RouteNetlinkMessage::DelNeighbour(neigh_message(dev_index, ip)),
        0,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The device's permanent neighbour entries (IPv4 and IPv6): the ones
/// podnet programs; learned (reachable, stale, ...) entries are left out.
///
/// Equivalent to `ip neigh show dev INDEX nud permanent`.
pub fn list_neigh(
    nl: &mut Netlink,
    dev_index: u32,
) -> Result<Vec<(IpAddr, [u8; 6])>, NetlinkError> {
    let entries = dump_entries(
        nl,
        AddressFamily::Unspec,
        &format!("ip neigh show dev {dev_index} nud permanent"),
        dev_index,
        |m| m.header.state == NeighbourState::Permanent,
    )?;
    Ok(entries.into_iter().map(|(mac, ip)| (ip, mac)).collect())
}
