//! Following this node's own record in the cluster store.
//!
//! A Node can be deleted and registered again (a node rebuilt, or its
//! kubelet re-registering after the object was removed); the
//! controller-manager then gives it a new podCIDR, and the object has lost
//! podnet's VTEP annotation. Peers follow the store at once, so this node
//! must too: register again (adopting the new CIDRs, annotating again),
//! stop handing out addresses of the old CIDR, and move the bridge's
//! gateway and the VXLAN device's address to the new one. Pods still on the
//! old CIDR cannot be renumbered under a running process: they are
//! reported (log, `podnet_ipam_outside_node_cidr`, `podnetd list`) to be
//! recreated. Masquerade is by cluster range and the conflist names no CIDR:
//! neither changes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::sync::watch;

use crate::error::DaemonError;
use crate::node_setup;
use crate::nodenet::NodeNet;
use crate::routes::Underlay;
use crate::service::Service;
use crate::store::{Backend, NodeRecord};

/// Between two registrations while the store keeps disagreeing (a Node
/// deleted and not back yet, an API that refuses the patch).
const RETRY: Duration = Duration::from_secs(2);

/// What the follower needs to redo the node's kernel setup for new CIDRs.
pub struct NodeKernel {
    pub net: Arc<NodeNet>,
    pub bridge: String,
    /// Set when the node has a VXLAN device (peers on other segments).
    pub vxlan: Option<VxlanSetup>,
}

#[derive(Clone)]
pub struct VxlanSetup {
    pub node: String,
    pub underlay: Underlay,
    pub underlay_mtu: u32,
    pub local: IpAddr,
}

/// True when the store's view of this node (`seen`, from the watch) asks
/// for registering again: other CIDRs than the ones held, or our VTEP MAC
/// gone from the record. A record absent from the store (a Node deleted,
/// or not yet given CIDRs) waits for it to come back.
pub fn needs_registering(seen: Option<&NodeRecord>, held: &NodeRecord) -> bool {
    match seen {
        None => false,
        Some(r) => r.cidrs != held.cidrs || (held.vtep_mac.is_some() && r.vtep_mac.is_none()),
    }
}

/// Runs until `seen` closes: each time the store's record of this node
/// disagrees with `held`, registers again and applies what changed.
pub async fn run(
    backend: Arc<Backend>,
    svc: Arc<Service>,
    kernel: NodeKernel,
    mut held: NodeRecord,
    mut seen: watch::Receiver<Option<NodeRecord>>,
) {
    loop {
        let current = seen.borrow_and_update().clone();
        if needs_registering(current.as_ref(), &held) {
            tracing::info!(
                held = ?held.cidrs,
                store = ?current.as_ref().map(|r| &r.cidrs),
                "this node's record changed in the cluster store; registering again"
            );
            match follow(&backend, &svc, &kernel, &held).await {
                Ok(now) => held = now,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?RETRY, "following this node's record failed");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        if seen.changed().await.is_err() {
            return;
        }
    }
}

/// Registers again and moves IPAM and the node's devices to the CIDRs the
/// store now gives this node. Returns the record now held.
async fn follow(
    backend: &Backend,
    svc: &Arc<Service>,
    kernel: &NodeKernel,
    held: &NodeRecord,
) -> Result<NodeRecord, DaemonError> {
    let now = backend.register(held.clone()).await?;
    if now.cidrs == held.cidrs {
        return Ok(now);
    }
    let old = held.cidrs.clone();
    // New allocations first: from here on no pod gets an old address.
    svc.pool.set_ranges(now.cidrs.clone())?;
    let (net, bridge, vxlan, cidrs) = (
        kernel.net.clone(),
        kernel.bridge.clone(),
        kernel.vxlan.clone(),
        now.cidrs.clone(),
    );
    tokio::task::spawn_blocking(move || move_devices(&net, &bridge, vxlan.as_ref(), &cidrs))
        .await
        .map_err(|e| DaemonError::Config(format!("moving the node's devices: {e}")))??;
    report_outside(svc, &old, &now.cidrs);
    Ok(now)
}

fn move_devices(
    net: &NodeNet,
    bridge: &str,
    vxlan: Option<&VxlanSetup>,
    cidrs: &[IpNetwork],
) -> Result<(), DaemonError> {
    // Nothing to move on a node podnet is being removed from.
    net.change(|| {
        let mut nl = net.netlink()?;
        node_setup::ensure_bridge(&mut nl, bridge, cidrs)?;
        if let Some(v) = vxlan {
            node_setup::ensure_vxlan(
                &mut nl,
                &v.node,
                &v.underlay,
                v.underlay_mtu,
                v.local,
                cidrs,
            )?;
        }
        Ok(())
    })
    .unwrap_or(Ok(()))
}

fn report_outside(svc: &Service, old: &[IpNetwork], new: &[IpNetwork]) {
    let outside = match svc.pool.outside_ranges() {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the pods left on the former node CIDR");
            return;
        }
    };
    tracing::warn!(
        ?old,
        ?new,
        pods_on_former_cidr = outside.len(),
        "node CIDRs changed: new pods get addresses from the new CIDRs; pods on the former ones are unreachable from other nodes and must be recreated"
    );
    for a in &outside {
        tracing::warn!(
            container = %a.key.container_id,
            ifname = %a.key.ifname,
            ips = ?a.ips,
            "pod on a former node CIDR: recreate it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cidr: &str, vtep: Option<&str>) -> NodeRecord {
        NodeRecord {
            node: "n1".into(),
            cidrs: vec![cidr.parse().unwrap()],
            addresses: vec![IpAddr::from([192, 168, 0, 1])],
            vtep_mac: vtep.map(str::to_string),
        }
    }

    #[test]
    fn registers_again_on_new_cidrs_or_a_lost_vtep_mac_only() {
        let held = record("10.244.2.0/24", Some("0e:00:00:00:00:01"));
        assert!(!needs_registering(Some(&held), &held));
        assert!(!needs_registering(None, &held), "a deleted Node waits");
        let moved = record("10.244.3.0/24", Some("0e:00:00:00:00:01"));
        assert!(needs_registering(Some(&moved), &held));
        let recreated = record("10.244.2.0/24", None);
        assert!(needs_registering(Some(&recreated), &held));
        // A store that keeps no VTEP MAC (one node, no overlay) never loops.
        let plain = record("10.244.2.0/24", None);
        assert!(!needs_registering(Some(&plain), &plain));
    }
}
