//! podnet, the CNI plugin: veth pairs from a node bridge into pod network
//! namespaces, addressed by a delegated IPAM plugin.

pub mod args;
pub mod cmd;
pub mod conntrack;
pub mod delegate;
pub mod error;
pub mod hostport;
pub mod ipam;
pub mod ipam_plugin;
pub mod logging;
pub mod mac;
pub mod names;
pub mod netlink;
pub mod nfnetlink;
pub mod nft;
pub mod skel;
pub mod spec;
