//! podnetd: obtains the node's pod CIDR, serves IPAM to the plugins over a
//! root-only unix socket, applies spooled releases and reclaims leaked
//! addresses.

pub mod admin;
pub mod cli;
pub mod config;
pub mod error;
pub mod metrics;
pub mod reclaim;
pub mod server;
pub mod service;
