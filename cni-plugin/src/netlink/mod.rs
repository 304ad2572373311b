//! What a pod's ADD, DEL and CHECK ask of the kernel: network namespaces,
//! links, veth pairs, bridges, addresses and routes, over one netlink socket
//! layer that podnetd's node-level kernel work (`podnetd::kernel`) shares.
//!
//! Everything here is synchronous. The plugin is a one-shot process that
//! sends a handful of requests, so a blocking netlink socket needs no async
//! runtime; and a socket opened inside another namespace is just a file
//! descriptor that any thread may use afterwards (ARCHITECTURE.md, decision 5).

pub mod addr;
pub mod error;
pub mod link;
pub mod netns;
pub mod route;
pub mod socket;

pub use error::NetlinkError;
pub use socket::Netlink;
