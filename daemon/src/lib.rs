//! podnetd: obtains the node's pod CIDR, serves IPAM to the plugins over a
//! root-only unix socket, applies spooled releases and reclaims leaked
//! addresses.

pub mod admin;
pub mod agent;
pub mod cli;
pub mod cniconf;
pub mod config;
pub mod cri;
pub mod error;
pub mod follow;
pub mod http;
pub mod kernel;
pub mod metrics;
pub mod netpol;
pub mod node_setup;
pub mod nodenet;
pub mod policy;
pub mod readiness;
pub mod reclaim;
pub mod reconciler;
pub mod retry;
pub mod routes;
pub mod server;
pub mod service;
pub mod store;
pub mod uninstall;
