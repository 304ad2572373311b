//! The netfilter netlink socket that nf_tables (masquerade) and ctnetlink
//! (conntrack) share, and the framing constants both need.

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::netlink::NetlinkError;

/// Marks an attribute whose payload is more attributes (netlink.h).
pub const NLA_F_NESTED: u16 = 0x8000;
/// A netlink message header's length (netlink.h).
pub const NLMSG_HDRLEN: usize = 16;
/// A kernel that answers nothing must not hang the daemon.
const RECV_TIMEOUT_SECS: i64 = 5;

/// A netfilter socket in the calling thread's namespace, with extended
/// acks (the kernel's reason for an error) and a receive deadline.
pub fn open() -> Result<Socket, NetlinkError> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NetlinkError::Socket)?;
    socket.bind_auto().map_err(NetlinkError::Socket)?;
    let _ = socket.set_ext_ack(true);
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(NetlinkError::Socket)?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(RECV_TIMEOUT_SECS, 0),
    )
    .map_err(|e| NetlinkError::Socket(e.into()))?;
    Ok(socket)
}
