//! The policy engine's tests: truth tables in the manner of upstream's
//! network-policy e2e suite (namespaces x, y, z; pods a, b, c in each,
//! spread over two nodes), every table checked through the compiled
//! rulesets of both nodes, for IPv4 and IPv6, and against `explain`.

mod convert;
mod explain;
mod fixture;
pub(crate) mod incremental;
mod intervals;
mod reference;
mod scale;
mod selectors;
mod truth_basic;
mod truth_egress;
mod truth_ports;
mod truth_special;
