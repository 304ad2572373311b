//! Removing podnet from a node: the node left as it was before podnet, so
//! the kubelet reports it NotReady until another pod network is installed
//! (a node that keeps a dead conflist claims Ready while every new pod
//! fails ADD).
//!
//! Run by podnetd at SIGTERM when its DaemonSet is going away (see
//! `store::kube::Removal`), and by `podnetd uninstall` by hand. A restart
//! or a rolling update never comes here: pods keep working through them.
//! Pods that still run keep their interfaces until they are deleted.

use std::path::{Path, PathBuf};

use podnet_cni::netlink::{link, route};

use crate::kernel::masquerade;

use crate::cniconf;
use crate::config::DaemonConfig;
use crate::error::DaemonError;
use crate::node_setup::VXLAN_NAME;
use crate::nodenet::NodeNet;
use crate::routes;

/// The plugin binaries podnet installs into the CNI bin dir.
pub const PLUGINS: [&str; 2] = ["podnet", "podnet-ipam"];

/// Removes everything podnet put on the node, first the CNI configuration
/// (no new pod is sent to podnet from then on), then the plugins, routes,
/// devices, the nftables table and the daemon's state. Keeps going past a
/// failed step, logging each; returns the first failure.
pub fn clean_node(net: &NodeNet, config: &DaemonConfig) -> Result<(), DaemonError> {
    let mut errors = Vec::new();
    let mut files: Vec<PathBuf> = vec![config.cni_conf_dir.join(cniconf::CONFLIST_NAME)];
    files.extend(PLUGINS.iter().map(|p| config.cni_bin_dir.join(p)));
    files.push(config.socket());
    files.push(config.run_dir.join("podnetd.lock"));
    for f in &files {
        remove_file(f, &mut errors);
    }
    if let Err(e) = clean_kernel(net, &config.bridge) {
        errors.push(e);
    }
    remove_tree(&config.state_dir.join("ipam.db"), &mut errors);
    remove_tree(&config.spool_dir, &mut errors);
    // Only podnet's own entries were removed above: the directories go only
    // if nothing else is in them (and are left empty if they are mount points).
    for dir in [&config.state_dir, &config.run_dir] {
        let _ = std::fs::remove_dir(dir);
    }
    tracing::info!(failures = errors.len(), "podnet removed from this node");
    for e in &errors {
        tracing::error!(error = %e, "an uninstall step failed");
    }
    match errors.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// Routes podnet owns (protocol 157), the VXLAN device, the bridge and the
/// nftables tables (masquerade, NetworkPolicy, hostPort), in the node's namespace.
fn clean_kernel(net: &NodeNet, bridge: &str) -> Result<(), DaemonError> {
    let mut nl = net.netlink()?;
    for r in routes::current(&mut nl)? {
        route::remove_route(&mut nl, &r)?;
    }
    link::remove_link(&mut nl, VXLAN_NAME)?;
    link::remove_link(&mut nl, bridge)?;
    net.run(masquerade::remove_masquerade)??;
    net.run(|| crate::kernel::policy::PolicyTable::new().remove())?
        .map_err(podnet_cni::netlink::NetlinkError::from)?;
    net.run(podnet_cni::hostport::remove_all)?
        .map_err(podnet_cni::netlink::NetlinkError::from)?;
    Ok(())
}

fn remove_file(path: &Path, errors: &mut Vec<DaemonError>) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(DaemonError::io("removing", path)(e)),
    }
}

/// A directory of podnet's and everything in it.
fn remove_tree(path: &Path, errors: &mut Vec<DaemonError>) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(DaemonError::io("removing", path)(e)),
    }
}
