//! `podnetd list`: the node's allocations and pool use, asked of the
//! running daemon.

use std::fmt::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use podnet_ipam::client::Client;
use podnet_ipam::proto::{Request, Response};

use crate::error::DaemonError;

pub fn list(socket: &Path) -> Result<String, DaemonError> {
    let resp = Client::new(socket).call(&Request::List)?;
    let Response::Listing {
        node,
        node_cidrs,
        allocations,
        usage,
    } = resp
    else {
        return Err(DaemonError::Config(format!("unexpected answer {resp:?}")));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut out = String::new();
    let cidrs: Vec<String> = node_cidrs.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(out, "node {node}  CIDRs {}", cidrs.join(", "));
    for u in &usage {
        let pct = if u.capacity == 0 {
            0.0
        } else {
            u.used as f64 * 100.0 / u.capacity as f64
        };
        let _ = writeln!(
            out,
            "  {:<28} {:>6} of {:>8} used ({pct:.1}%)",
            u.range.to_string(),
            u.used,
            u.capacity
        );
    }
    let _ = writeln!(out, "{} allocations", allocations.len());
    let stale = allocations
        .iter()
        .filter(|a| !a.within(&node_cidrs))
        .count();
    if stale > 0 {
        let _ = writeln!(
            out,
            "{stale} on a former node CIDR (marked *): peers no longer route to them; recreate these pods"
        );
    }
    let _ = writeln!(
        out,
        "  {:<24} {:<8} {:<40} {:>7}  netns",
        "container", "ifname", "addresses", "age"
    );
    for a in &allocations {
        let ips: Vec<String> = a.ips.iter().map(|i| i.to_string()).collect();
        let id: String = a.key.container_id.chars().take(24).collect();
        let mark = if a.within(&node_cidrs) { ' ' } else { '*' };
        let _ = writeln!(
            out,
            "{mark} {:<24} {:<8} {:<40} {:>6}s  {}",
            id,
            a.key.ifname,
            ips.join(","),
            now.saturating_sub(a.created_unix),
            a.netns.as_deref().unwrap_or("-")
        );
    }
    Ok(out)
}
