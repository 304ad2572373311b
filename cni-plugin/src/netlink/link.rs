//! Links: lookups, the node bridge, veth pairs, removal.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridgePort, InfoData, InfoKind, InfoPortData,
    InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec};

use crate::mac::{format_mac, MacAddr};

use super::error::libc_errno;
use super::{Netlink, NetlinkError};

/// What podnet needs to know of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    /// The bridge (or other controller) this link is attached to.
    pub controller: Option<u32>,
    pub kind: Option<String>,
    /// For a veth: the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// Whether the kernel has finished bringing the link up: operstate up
    /// and a real queueing discipline attached. Until then (the kernel's
    /// link watcher runs later, on a work queue) packets sent out of the
    /// link meet the `noop` qdisc and are dropped without a trace.
    pub operational: bool,
}

impl Link {
    fn from_message(msg: LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: Vec::new(),
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            controller: None,
            kind: None,
            peer_index: None,
            operational: false,
        };
        let (mut oper_up, mut queue) = (false, false);
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Address(a) => link.mac = a,
                LinkAttribute::Mtu(m) => link.mtu = m,
                LinkAttribute::Controller(c) => link.controller = Some(c),
                LinkAttribute::Link(l) => link.peer_index = Some(l),
                LinkAttribute::OperState(state) => oper_up = state == State::Up,
                LinkAttribute::Qdisc(q) => queue = q != "noop",
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link.operational = oper_up && queue;
        link
    }

    /// The MAC as the CNI result writes it: lower-case, colon separated.
    pub fn mac_string(&self) -> String {
        format_mac(&self.mac)
    }
}

/// Equivalent to `ip link show dev NAME`; `None` when there is none.
pub fn get_link(nl: &mut Netlink, name: &str) -> Result<Option<Link>, NetlinkError> {
    let msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(name.to_string())
        .build();
    let reply = nl.get(
        &format!("ip link show {name}"),
        RouteNetlinkMessage::GetLink(msg),
    )?;
    Ok(reply.and_then(|r| match r {
        RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
        _ => None,
    }))
}

/// Equivalent to `ip link show dev INDEX`; `None` when there is none.
pub fn get_link_by_index(nl: &mut Netlink, index: u32) -> Result<Option<Link>, NetlinkError> {
    let msg = LinkUnspec::new_with_index(index).build();
    let reply = nl.get(
        &format!("ip link show {index}"),
        RouteNetlinkMessage::GetLink(msg),
    )?;
    Ok(reply.and_then(|r| match r {
        RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
        _ => None,
    }))
}

/// Equivalent to `ip link show` (every link of the namespace).
pub fn list_links(nl: &mut Netlink) -> Result<Vec<Link>, NetlinkError> {
    let msg = LinkMessage::default();
    let replies = nl.dump("ip link show", RouteNetlinkMessage::GetLink(msg))?;
    Ok(replies
        .into_iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
            _ => None,
        })
        .collect())
}

/// Creates the bridge if missing, up, with a fixed MAC: a bridge without
/// one takes the lowest MAC of its ports and changes it as pods come and go,
/// which leaves stale gateway entries in every pod's neighbour table.
///
/// Equivalent to `ip link add NAME address MAC mtu MTU type bridge; ip link set NAME up`.
pub fn ensure_bridge(
    nl: &mut Netlink,
    name: &str,
    mac: [u8; 6],
    mtu: Option<u32>,
) -> Result<Link, NetlinkError> {
    if let Some(link) = get_link(nl, name)? {
        if link.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::WrongKind {
                name: name.to_string(),
                kind: link.kind.unwrap_or_else(|| "plain".into()),
                want: "bridge",
            });
        }
        if !link.up {
            set_up(nl, link.index)?;
        }
        return Ok(link);
    }
    let mut builder = LinkBridge::new(name).address(mac.to_vec()).up();
    if let Some(mtu) = mtu {
        builder = builder.mtu(mtu);
    }
    match nl.execute(
        &format!("ip link add {name} type bridge"),
        RouteNetlinkMessage::NewLink(builder.build()),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        // Another plugin process created it between our lookup and our add.
        Err(e) if e.is_exists() => {}
        other => other?,
    }
    get_link(nl, name)?.ok_or_else(|| NetlinkError::Vanished {
        what: format!("bridge {name}"),
    })
}

/// The two ends of a pod's veth pair, created in one request.
pub struct VethPair<'a> {
    pub host_name: &'a str,
    pub host_mac: [u8; 6],
    pub pod_name: &'a str,
    pub pod_mac: Option<MacAddr>,
    pub pod_netns: BorrowedFd<'a>,
    pub mtu: u32,
    pub bridge_index: u32,
}

/// Creates the pair with the pod end already inside the pod's namespace and
/// the host end already on the bridge: one round trip instead of the
/// create/move/attach sequence. Both ends stay down, for [`set_up_quiet`]
/// (the kernel refuses, ENOTCONN, to bring up a peer created in another
/// namespace).
///
/// Equivalent to `ip link add HOST address MAC mtu MTU master BRIDGE type
/// veth peer name POD mtu MTU netns PODNS`.
pub fn add_veth(nl: &mut Netlink, pair: &VethPair<'_>) -> Result<(), NetlinkError> {
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(pair.pod_name.to_string())
        .mtu(pair.mtu)
        .setns_by_fd(pair.pod_netns.as_raw_fd());
    if let Some(mac) = pair.pod_mac {
        peer = peer.address(mac.octets().to_vec());
    }
    let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(pair.host_name.to_string())
        .address(pair.host_mac.to_vec())
        .mtu(pair.mtu)
        .controller(pair.bridge_index)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build();
    nl.execute(
        &format!(
            "ip link add {} type veth peer name {}",
            pair.host_name, pair.pod_name
        ),
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Brings link `name` up with IPv6 address generation off: the kernel
/// makes no link-local address for it, so it has none to announce. Left
/// to the default, each end of a new pod's veth takes one once the pair
/// is up and announces it (duplicate address detection, MLD reports,
/// router solicitations), each packet flooded to every pod of the bridge:
/// with 200 pods on a node that took 14-18 % of the CPU while pods were
/// added, the more so through bridge netfilter (NetworkPolicy on).
///
/// The mode goes in a message of its own, before the one that brings the
/// link up: within one message the kernel applies the flags first, and a
/// pod end coming up has carrier at once (its peer is up), so an address
/// could be made in between. A kernel without IPv6 on the link refuses
/// the mode (EAFNOSUPPORT, before changing anything): the link is brought
/// up as it is.
///
/// Equivalent to `ip link set NAME addrgenmode none; ip link set NAME up`.
pub fn set_up_quiet(nl: &mut Netlink, name: &str) -> Result<(), NetlinkError> {
    let quiet =
        LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]);
    let named = || LinkMessageBuilder::<LinkUnspec>::new().name(name.to_string());
    let msg = named().append_extra_attribute(quiet).build();
    let op = format!("ip link set {name} addrgenmode none");
    match nl.execute(&op, RouteNetlinkMessage::SetLink(msg), 0) {
        Err(e) if e.errno() == Some(libc_errno::EAFNOSUPPORT) => {}
        other => other?,
    }
    nl.execute(
        &format!("ip link set {name} up"),
        RouteNetlinkMessage::SetLink(named().up().build()),
        0,
    )
}

/// Equivalent to `ip link set dev INDEX up`.
pub fn set_up(nl: &mut Netlink, index: u32) -> Result<(), NetlinkError> {
    let msg = LinkUnspec::new_with_index(index).up().build();
    nl.execute(
        &format!("ip link set {index} up"),
        RouteNetlinkMessage::SetLink(msg),
        0,
    )
}

/// Waits until link `index` is [operational](Link::operational), up to
/// `patience`; returns whether it is. A link brought up a moment ago may
/// not be yet: a pod's first packets (or the replies to them, through the
/// host end) would be dropped, costing its first connection a one-second
/// retransmission.
pub fn wait_operational(
    nl: &mut Netlink,
    index: u32,
    patience: std::time::Duration,
) -> Result<bool, NetlinkError> {
    let started = std::time::Instant::now();
    loop {
        match get_link_by_index(nl, index)? {
            Some(link) if link.operational => return Ok(true),
            None => return Ok(false),
            Some(_) if started.elapsed() >= patience => return Ok(false),
            Some(_) => std::thread::sleep(std::time::Duration::from_micros(200)),
        }
    }
}

/// Lets traffic leave a bridge port on the port it came in by, so a pod can
/// reach itself through a service address.
///
/// Equivalent to `ip link set dev INDEX type bridge_slave hairpin on`.
pub fn set_hairpin(nl: &mut Netlink, index: u32, on: bool) -> Result<(), NetlinkError> {
    let msg = LinkUnspec::new_with_index(index)
        .set_port_kind(InfoPortKind::Bridge)
        .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )]))
        .build();
    nl.execute(
        &format!("ip link set {index} type bridge_slave hairpin {on}"),
        RouteNetlinkMessage::NewLink(msg),
        0,
    )
}

/// Equivalent to `ip link del NAME`. Returns whether there was one: a link
/// that is already gone is success.
pub fn remove_link(nl: &mut Netlink, name: &str) -> Result<bool, NetlinkError> {
    let msg = LinkMessageBuilder::<LinkUnspec>::new()
        .name(name.to_string())
        .build();
    match nl.execute(
        &format!("ip link del {name}"),
        RouteNetlinkMessage::DelLink(msg),
        0,
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
