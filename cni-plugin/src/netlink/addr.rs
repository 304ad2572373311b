//! Interface addresses.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::AddressMessageBuilder;

use super::{Netlink, NetlinkError};

/// `addr` on the interface `index`, as an address message.
fn message(index: u32, addr: IpNetwork) -> AddressMessage {
    match addr.ip() {
        IpAddr::V4(ip) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(index)
            .address(ip, addr.prefix())
            .build(),
        IpAddr::V6(ip) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(index)
            .address(ip, addr.prefix())
            .build(),
    }
}

/// IPv6 addresses are added with IFA_F_NODAD: duplicate address detection
/// would hold the address tentative for 1-2 s, and IPAM already guarantees
/// uniqueness on the segment.
///
/// Equivalent to `ip addr add ADDR/PREFIX dev INDEX [nodad]`.
pub fn add_address(nl: &mut Netlink, index: u32, addr: IpNetwork) -> Result<(), NetlinkError> {
    let mut msg = message(index, addr);
    if addr.is_ipv6() {
        msg.header.flags |= AddressHeaderFlags::Nodad;
    }
    nl.execute(
        &format!("ip addr add {addr} dev {index}"),
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// [`add_address`], where the address being there already is success.
pub fn ensure_address(nl: &mut Netlink, index: u32, addr: IpNetwork) -> Result<(), NetlinkError> {
    match add_address(nl, index, addr) {
        Err(e) if e.is_exists() => Ok(()),
        other => other,
    }
}

/// Equivalent to `ip addr del ADDR/PREFIX dev INDEX`; an address that is not
/// there is success.
pub fn remove_address(nl: &mut Netlink, index: u32, addr: IpNetwork) -> Result<(), NetlinkError> {
    match nl.execute(
        &format!("ip addr del {addr} dev {index}"),
        RouteNetlinkMessage::DelAddress(message(index, addr)),
        0,
    ) {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Equivalent to `ip addr show dev INDEX` (global and link scope alike).
pub fn list_addresses(nl: &mut Netlink, index: u32) -> Result<Vec<IpNetwork>, NetlinkError> {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Unspec;
    msg.header.index = index;
    let replies = nl.dump(
        &format!("ip addr show dev {index}"),
        RouteNetlinkMessage::GetAddress(msg),
    )?;
    let mut out = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewAddress(m) = reply else {
            continue;
        };
        if m.header.index != index {
            continue;
        }
        // IFA_LOCAL is the interface's own address on point-to-point links;
        // IFA_ADDRESS is it everywhere else.
        let mut local = None;
        let mut address = None;
        for attr in &m.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                _ => {}
            }
        }
        if let Some(ip) = local.or(address) {
            if let Ok(net) = IpNetwork::new(ip, m.header.prefix_len) {
                out.push(net);
            }
        }
    }
    Ok(out)
}
