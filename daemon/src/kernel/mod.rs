//! The node's kernel work, which only podnetd does: masquerade and NetworkPolicy on
//! nf_tables, the VXLAN device with its FDB and neighbour entries, and sysctls. It shares
//! the plugin crate's netlink socket layer (`podnet_cni::netlink`) and error type, and its
//! nf_tables and connection tracking layers (`nft`, `conntrack`: the plugin's hostPort
//! needs them too, with podnetd down), re-exported here.

pub mod masquerade;
pub mod neigh;
pub mod policy;
pub mod sysctl;
pub mod vxlan;

pub use podnet_cni::{conntrack, nfnetlink, nft};
