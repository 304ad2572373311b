//! The one place that talks to the kernel: network namespaces, links, veth
//! pairs, bridges, addresses, routes, sysctls, the VXLAN overlay (device,
//! FDB and neighbour entries) and masquerade (nf_tables).
//!
//! Everything here is synchronous. The plugin is a one-shot process that
//! sends a handful of requests, so a blocking netlink socket needs no async
//! runtime; and a socket opened inside another namespace is just a file
//! descriptor that any thread may use afterwards (ARCHITECTURE.md, decision 5).

pub mod addr;
pub mod error;
pub mod link;
pub mod masquerade;
pub mod neigh;
pub mod netns;
pub mod route;
pub mod socket;
pub mod sysctl;
pub mod vxlan;

pub use error::NetlinkError;
pub use socket::Netlink;
