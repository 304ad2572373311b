//! Routes to every other node's pods, owned and fully reconciled.
//!
//! Every route podnetd installs carries its own rtnetlink protocol number,
//! so the kernel can list exactly ours: missing ones are added, wrong ones
//! replaced in place (never deleted first: no instant without a route),
//! stale ones deleted, including those of nodes that left while the daemon
//! was down.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use podnet_cni::netlink::route::{self, RouteEntry};
use podnet_cni::netlink::{Netlink, NetlinkError};

use crate::kernel::neigh;

use crate::store::NodeRecord;

/// podnet's rtnetlink protocol number (`ip route show proto 157`); not in
/// iproute2's rt_protos list, so it collides with no routing daemon.
pub const ROUTE_PROTOCOL: u8 = 157;

/// The node's side of the underlay: the interface and its subnets. A peer
/// with an address inside one of them is on the same L2 segment.
#[derive(Clone, Debug)]
pub struct Underlay {
    pub index: u32,
    pub subnets: Vec<IpNetwork>,
}

/// Everything the kernel should hold for the current set of peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub routes: Vec<RouteEntry>,
    /// Overlay next hop -> peer VTEP MAC, on the VXLAN device.
    pub neighs: BTreeMap<IpAddr, [u8; 6]>,
    /// Peer VTEP MAC -> peer underlay address, on the VXLAN device.
    pub fdb: BTreeMap<[u8; 6], IpAddr>,
}

/// A peer's VTEP MAC from its record; `None` when it is not one.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    text.parse::<podnet_cni::mac::MacAddr>()
        .ok()
        .map(|m| m.octets())
}

fn ours(dst: IpNetwork, gw: IpAddr, oif: u32, onlink: bool) -> RouteEntry {
    let mut r = RouteEntry::new(dst, Some(gw), Some(oif));
    r.protocol = ROUTE_PROTOCOL;
    r.onlink = onlink;
    r
}

/// What the kernel should hold: host-gw for peers on our segment, VXLAN
/// (when there is a device) for the others. Pure, so it is tested alone.
pub fn desired(me: &str, peers: &[NodeRecord], underlay: &Underlay, vxlan: Option<u32>) -> Desired {
    let mut want = Desired::default();
    for peer in peers.iter().filter(|p| p.node != me) {
        let on_segment = |v6: bool| {
            peer.addresses
                .iter()
                .find(|a| a.is_ipv6() == v6 && underlay.subnets.iter().any(|s| s.contains(**a)))
                .copied()
        };
        for cidr in &peer.cidrs {
            if let Some(gw) = on_segment(cidr.is_ipv6()) {
                want.routes.push(ours(*cidr, gw, underlay.index, false));
                continue;
            }
            // The overlay: the peer's CIDR network address is its VXLAN
            // device's address, reached through a permanent neighbour entry
            // and an FDB entry pointing at the peer's underlay address.
            let (Some(vx), Some(mac), Some(remote)) = (
                vxlan,
                peer.vtep_mac.as_deref().and_then(parse_mac),
                peer.addresses.first().copied(),
            ) else {
                tracing::warn!(peer = %peer.node, %cidr, "peer is off our segment and has no VXLAN endpoint: not routed");
                continue;
            };
            let next_hop = cidr.network();
            want.routes.push(ours(*cidr, next_hop, vx, true));
            want.neighs.insert(next_hop, mac);
            want.fdb.insert(mac, remote);
        }
    }
    want.routes.sort_by_key(|r| r.dst);
    want
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: usize,
    pub replaced: usize,
    pub removed: usize,
    pub routes: usize,
}

fn same(have: &RouteEntry, want: &RouteEntry) -> bool {
    have.dst == want.dst && have.gw == want.gw && have.oif == want.oif && have.onlink == want.onlink
}

/// Our routes as the kernel has them.
pub fn current(nl: &mut Netlink) -> Result<Vec<RouteEntry>, NetlinkError> {
    let mut all = route::list_routes(nl, false)?;
    all.extend(route::list_routes(nl, true)?);
    all.retain(|r| r.protocol == ROUTE_PROTOCOL);
    Ok(all)
}

/// Makes the kernel hold exactly `want`.
pub fn reconcile(
    nl: &mut Netlink,
    want: &Desired,
    vxlan: Option<u32>,
) -> Result<Applied, NetlinkError> {
    let mut applied = Applied {
        routes: want.routes.len(),
        ..Default::default()
    };
    // Neighbours and FDB first: a new overlay route must find its next hop.
    if let Some(vx) = vxlan {
        let have_fdb = neigh::list_fdb(nl, vx)?;
        for (mac, dst) in &want.fdb {
            if !have_fdb.contains(&(*mac, *dst)) {
                neigh::replace_fdb(nl, vx, *mac, *dst)?;
            }
        }
        let have_neigh = neigh::list_neigh(nl, vx)?;
        for (ip, mac) in &want.neighs {
            if !have_neigh.contains(&(*ip, *mac)) {
                neigh::replace_neigh(nl, vx, *ip, *mac)?;
            }
        }
    }
    let have = current(nl)?;
    // By destination: thousands of peers must not mean millions of compares.
    let by_dst: std::collections::HashMap<IpNetwork, &RouteEntry> =
        have.iter().map(|h| (h.dst, h)).collect();
    for w in &want.routes {
        match by_dst.get(&w.dst).copied() {
            Some(h) if same(h, w) => {}
            Some(_) => {
                route::replace_route(nl, w)?;
                applied.replaced += 1;
            }
            None => {
                route::replace_route(nl, w)?;
                applied.added += 1;
            }
        }
    }
    let wanted: BTreeSet<IpNetwork> = want.routes.iter().map(|r| r.dst).collect();
    for h in have.iter().filter(|h| !wanted.contains(&h.dst)) {
        if route::remove_route(nl, h)? {
            applied.removed += 1;
        }
    }
    if let Some(vx) = vxlan {
        for (ip, _) in neigh::list_neigh(nl, vx)? {
            if !want.neighs.contains_key(&ip) {
                neigh::remove_neigh(nl, vx, ip)?;
            }
        }
        for (mac, dst) in neigh::list_fdb(nl, vx)? {
            if want.fdb.get(&mac) != Some(&dst) {
                neigh::remove_fdb(nl, vx, mac, dst)?;
            }
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, cidr: &str, addr: &str) -> NodeRecord {
        NodeRecord {
            node: node.into(),
            cidrs: vec![cidr.parse().unwrap()],
            addresses: vec![addr.parse().unwrap()],
            vtep_mac: Some("02:00:00:00:00:0b".into()),
        }
    }

    #[test]
    fn same_segment_is_host_gw_others_go_through_vxlan() {
        let underlay = Underlay {
            index: 2,
            subnets: vec!["192.168.1.0/24".parse().unwrap()],
        };
        let peers = vec![
            rec("me", "10.244.0.0/24", "192.168.1.10"),
            rec("near", "10.244.1.0/24", "192.168.1.11"),
            rec("far", "10.244.2.0/24", "192.168.2.12"),
        ];
        let want = desired("me", &peers, &underlay, Some(9));
        assert_eq!(want.routes.len(), 2);
        let near = &want.routes[0];
        assert_eq!(near.gw, Some("192.168.1.11".parse().unwrap()));
        assert_eq!(near.oif, Some(2));
        assert!(!near.onlink);
        let far = &want.routes[1];
        assert_eq!(far.gw, Some("10.244.2.0".parse().unwrap()));
        assert_eq!(far.oif, Some(9));
        assert!(far.onlink);
        assert_eq!(far.protocol, ROUTE_PROTOCOL);
        assert_eq!(
            want.fdb.get(&[2, 0, 0, 0, 0, 0x0b]),
            Some(&"192.168.2.12".parse().unwrap())
        );
        // Without a VXLAN device the far peer is not routed at all.
        assert_eq!(desired("me", &peers, &underlay, None).routes.len(), 1);
    }
}
