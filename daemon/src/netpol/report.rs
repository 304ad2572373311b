//! The admin view's answers (`podnetd policy explain`, `podnetd list`),
//! from the snapshot the kernel's table was compiled from, so that they
//! say what is enforced.

use std::net::IpAddr;

use podnet_ipam::proto::PodName;
use serde::{Deserialize, Serialize};

use super::{lock, sync::isolating, PolicyAgent, PolicyError};
use crate::policy::{explain, Explanation, PodRef, PolicyRef, PolicyType, Protocol};

/// One of this node's pods, as policy treats it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub ingress: DirectionState,
    pub egress: DirectionState,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionState {
    /// Empty: not isolated, everything passes.
    pub isolated_by: Vec<PolicyRef>,
    /// Packets of new connections the pod's chain let through and
    /// dropped, since the table was last replaced.
    pub allowed_packets: u64,
    pub dropped_packets: u64,
}

impl PolicyAgent {
    /// Whether `from` may open a connection to `to` on `port`/`protocol`,
    /// and which policies decide it.
    pub fn explain(
        &self,
        from: &PodName,
        to: &PodName,
        port: u16,
        protocol: &str,
    ) -> Result<Explanation, PolicyError> {
        let protocol = match protocol.to_ascii_uppercase().as_str() {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            _ => return Err(PolicyError::Protocol(protocol.to_owned())),
        };
        let snapshot = lock(&self.kernel).snapshot.clone();
        Ok(explain(
            &snapshot,
            (&from.namespace, &from.name),
            (&to.namespace, &to.name),
            port,
            protocol,
        )?)
    }

    /// Each pod of this node with an address, sorted by namespace and name.
    pub fn pod_states(&self) -> Vec<PodState> {
        let mut kernel = lock(&self.kernel);
        let snapshot = kernel.snapshot.clone();
        let table = &mut kernel.table;
        // Counters are a convenience here: without them the state stands.
        let counters = self
            .nodenet
            .run(|| table.counters())
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        drop(kernel);
        let mut states: Vec<PodState> = snapshot
            .pods
            .iter()
            .filter(|p| p.node == self.node && p.is_selectable())
            .map(|p| {
                let pod = PodRef {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                };
                let side = |direction| {
                    let mut state = DirectionState {
                        isolated_by: isolating(&snapshot, &pod, direction),
                        ..Default::default()
                    };
                    for c in counters
                        .iter()
                        .filter(|c| c.pod == pod && c.direction == direction)
                    {
                        state.allowed_packets +=
                            c.allowed.iter().map(|(_, n)| n.packets).sum::<u64>();
                        state.dropped_packets += c.dropped.packets;
                    }
                    state
                };
                PodState {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    ips: p.ips.clone(),
                    ingress: side(PolicyType::Ingress),
                    egress: side(PolicyType::Egress),
                }
            })
            .collect();
        states.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        states
    }
}
