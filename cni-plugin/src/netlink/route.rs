//! Routes.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::RouteMessageBuilder;

use super::{Netlink, NetlinkError};

/// A route as podnet installs and reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
    pub protocol: u8,
    pub priority: Option<u32>,
    pub scope: u8,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// The gateway is on the link even though no address says so (routes
    /// into an overlay device).
    pub onlink: bool,
}

impl RouteEntry {
    /// A route in the main table, as `ip route add` makes one.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>, oif: Option<u32>) -> Self {
        Self {
            dst,
            gw,
            oif,
            table: u32::from(RouteHeader::RT_TABLE_MAIN),
            protocol: u8::from(RouteProtocol::Boot),
            priority: None,
            scope: if gw.is_some() {
                u8::from(RouteScope::Universe)
            } else {
                u8::from(RouteScope::Link)
            },
            mtu: None,
            advmss: None,
            onlink: false,
        }
    }

    fn to_message(&self) -> Result<RouteMessage, NetlinkError> {
        let op = || format!("ip route {}", self.dst);
        // rtnetlink does not export its error type; its message is enough.
        let bad = |reason: String| NetlinkError::Invalid { op: op(), reason };
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(self.dst.network(), self.dst.prefix())
            .map_err(|e| bad(e.to_string()))?
            .table_id(self.table)
            .protocol(RouteProtocol::from(self.protocol))
            .scope(RouteScope::from(self.scope));
        if let Some(gw) = self.gw {
            b = b.gateway(gw).map_err(|e| bad(e.to_string()))?;
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if let Some(p) = self.priority {
            b = b.priority(p);
        }
        if self.onlink {
            b = b.onlink();
        }
        let mut msg = b.build();
        let mut metrics = Vec::new();
        if let Some(mtu) = self.mtu {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if let Some(advmss) = self.advmss {
            metrics.push(RouteMetric::Advmss(advmss));
        }
        if !metrics.is_empty() {
            msg.attributes.push(RouteAttribute::Metrics(metrics));
        }
        Ok(msg)
    }

    fn from_message(msg: RouteMessage) -> Option<Self> {
        let mut dst_ip = None;
        let mut gw = None;
        let mut oif = None;
        let mut table = u32::from(msg.header.table);
        let mut priority = None;
        let mut mtu = None;
        let mut advmss = None;
        for attr in msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst_ip = route_ip(a),
                RouteAttribute::Gateway(a) => gw = route_ip(a),
                RouteAttribute::Oif(i) => oif = Some(i),
                RouteAttribute::Table(t) => table = t,
                RouteAttribute::Priority(p) => priority = Some(p),
                RouteAttribute::Metrics(ms) => {
                    for m in ms {
                        match m {
                            RouteMetric::Mtu(v) => mtu = Some(v),
                            RouteMetric::Advmss(v) => advmss = Some(v),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let dst_ip = match (dst_ip, msg.header.address_family) {
            (Some(ip), _) => ip,
            (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
            (None, AddressFamily::Inet6) => IpAddr::from([0u16; 8]),
            (None, _) => return None,
        };
        let dst = IpNetwork::new(dst_ip, msg.header.destination_prefix_length).ok()?;
        let onlink = msg.header.flags.contains(RouteFlags::Onlink);
        Some(Self {
            dst,
            gw,
            oif,
            table,
            protocol: u8::from(msg.header.protocol),
            priority,
            scope: u8::from(msg.header.scope),
            mtu,
            advmss,
            onlink,
        })
    }
}

fn route_ip(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// Equivalent to `ip route add DST [via GW] [dev OIF] [proto P] [table T]`.
pub fn add_route(nl: &mut Netlink, route: &RouteEntry) -> Result<(), NetlinkError> {
    nl.execute(
        &format!("ip route add {}", route.dst),
        RouteNetlinkMessage::NewRoute(route.to_message()?),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Equivalent to `ip route replace ...`: adds, or corrects in place, with
/// no instant where the destination has no route.
pub fn replace_route(nl: &mut Netlink, route: &RouteEntry) -> Result<(), NetlinkError> {
    nl.execute(
        &format!("ip route replace {}", route.dst),
        RouteNetlinkMessage::NewRoute(route.to_message()?),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Equivalent to `ip route del ...`; a route already gone is success.
pub fn remove_route(nl: &mut Netlink, route: &RouteEntry) -> Result<bool, NetlinkError> {
    match nl.execute(
        &format!("ip route del {}", route.dst),
        RouteNetlinkMessage::DelRoute(route.to_message()?),
        0,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Equivalent to `ip [-6] route show table all` for one address family.
pub fn list_routes(nl: &mut Netlink, ipv6: bool) -> Result<Vec<RouteEntry>, NetlinkError> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let replies = nl.dump("ip route show", RouteNetlinkMessage::GetRoute(msg))?;
    Ok(replies
        .into_iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewRoute(m) => RouteEntry::from_message(m),
            _ => None,
        })
        .collect())
}

/// The interface the kernel would send a packet to `dst` through: a FIB
/// lookup, one reply however many routes the node holds (no packet is sent).
///
/// Equivalent to `ip route get DST`.
pub fn lookup_oif(nl: &mut Netlink, dst: IpAddr) -> Result<Option<u32>, NetlinkError> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if dst.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    msg.header.destination_prefix_length = if dst.is_ipv6() { 128 } else { 32 };
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    let reply = nl.get(
        &format!("ip route get {dst}"),
        RouteNetlinkMessage::GetRoute(msg),
    )?;
    Ok(reply.and_then(|r| match r {
        RouteNetlinkMessage::NewRoute(m) => RouteEntry::from_message(m).and_then(|e| e.oif),
        _ => None,
    }))
}

/// The interface of the IPv4 (else IPv6) default route in the main table,
/// whose MTU pods should inherit.
pub fn default_route_oif(nl: &mut Netlink) -> Result<Option<u32>, NetlinkError> {
    for ipv6 in [false, true] {
        let found = list_routes(nl, ipv6)?
            .into_iter()
            .find(|r| r.dst.prefix() == 0 && r.table == u32::from(RouteHeader::RT_TABLE_MAIN));
        if let Some(oif) = found.and_then(|r| r.oif) {
            return Ok(Some(oif));
        }
    }
    Ok(None)
}
