//! The node's kernel work, which only podnetd does: nf_tables (`nft`, and
//! masquerade and NetworkPolicy on it), the VXLAN device with its FDB and neighbour entries,
//! connection tracking, and sysctls. It shares the plugin crate's netlink socket layer
//! (`podnet_cni::netlink`) and error type.

pub mod conntrack;
pub mod masquerade;
pub mod neigh;
pub mod nfnetlink;
pub mod nft;
pub mod policy;
pub mod sysctl;
pub mod vxlan;
