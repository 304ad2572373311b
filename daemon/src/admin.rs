//! `podnetd list` (the node's allocations, pool use and pods' policy
//! state) and `podnetd policy explain`, asked of the running daemon.

use std::fmt::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use podnet_ipam::client::{Client, ClientError};
use podnet_ipam::proto::{PodName, Request, Response};

use crate::error::DaemonError;
use crate::netpol::{DirectionState, PodState};
use crate::policy::{Decision, Explanation, PolicyRef, Verdict};

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
    out.push_str(&policy_state(socket)?);
    Ok(out)
}

/// Each pod's NetworkPolicy state, or why there is none.
fn policy_state(socket: &Path) -> Result<String, DaemonError> {
    let mut out = String::from("NetworkPolicy: ");
    let states: Vec<PodState> = match Client::new(socket).call(&Request::PolicyState) {
        Ok(Response::Policy { report }) => serde_json::from_value(report)
            .map_err(|e| DaemonError::Config(format!("unreadable policy state: {e}")))?,
        // Not enforced here: the listing above stands alone.
        Err(ClientError::Daemon { message, .. }) => return Ok(format!("{message}\n")),
        Ok(other) => return Err(DaemonError::Config(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(e.into()),
    };
    let isolated = states
        .iter()
        .filter(|s| !s.ingress.isolated_by.is_empty() || !s.egress.isolated_by.is_empty())
        .count();
    let _ = writeln!(out, "{} pods, {isolated} isolated", states.len());
    let _ = writeln!(
        out,
        "  {:<40} {:<18} {:<34} egress",
        "pod", "address", "ingress"
    );
    for s in &states {
        let ip = s.ips.first().map(|i| i.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<40} {:<18} {:<34} {}",
            format!("{}/{}", s.namespace, s.name),
            ip,
            direction(&s.ingress),
            direction(&s.egress)
        );
    }
    Ok(out)
}

/// `open`, or the isolating policies and what was dropped.
fn direction(d: &DirectionState) -> String {
    if d.isolated_by.is_empty() {
        return "open".into();
    }
    format!(
        "isolated by {} ({} dropped)",
        names(&d.isolated_by),
        d.dropped_packets
    )
}

fn names(policies: &[PolicyRef]) -> String {
    policies
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `podnetd policy explain`: ALLOW or DENY, then each side's reason.
pub fn explain(
    socket: &Path,
    from: PodName,
    to: PodName,
    (port, protocol): (u16, String),
) -> Result<String, DaemonError> {
    let request = Request::PolicyExplain {
        from: from.clone(),
        to: to.clone(),
        port,
        protocol: protocol.clone(),
    };
    let e: Explanation = match Client::new(socket).call(&request)? {
        Response::Policy { report } => serde_json::from_value(report)
            .map_err(|e| DaemonError::Config(format!("unreadable explanation: {e}")))?,
        other => return Err(DaemonError::Config(format!("unexpected answer {other:?}"))),
    };
    let verdict = match e.verdict {
        Verdict::Allow => "ALLOW",
        Verdict::Deny => "DENY",
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{verdict} {from} ({}) -> {to} ({}) {port}/{protocol}",
        e.src, e.dst
    );
    let _ = writeln!(out, "  egress of {from}: {}", decision(&e.egress));
    let _ = writeln!(out, "  ingress of {to}: {}", decision(&e.ingress));
    Ok(out)
}

fn decision(d: &Decision) -> String {
    match d {
        Decision::NotIsolated => "not isolated: allowed".into(),
        Decision::Allowed { by } => format!("allowed by {}", names(by)),
        Decision::Denied { isolated_by } => {
            format!(
                "denied: isolated by {}, none of which allows it",
                names(isolated_by)
            )
        }
        Decision::HostNetwork => {
            "a hostNetwork pod: its traffic is the node's, no policy polices it".into()
        }
        Decision::FromOwnNode => "from the destination's own node: always allowed".into(),
        Decision::Loopback => "a pod to itself: never leaves the pod".into(),
    }
}

/// `NAMESPACE/POD`.
pub fn parse_pod(text: &str) -> Result<PodName, String> {
    let (namespace, name) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not NAMESPACE/POD"))?;
    let pod = PodName {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    pod.validate()?;
    Ok(pod)
}

/// `PORT/PROTOCOL`, or `PORT` for TCP.
pub fn parse_port(text: &str) -> Result<(u16, String), String> {
    let (port, protocol) = text.split_once('/').unwrap_or((text, "TCP"));
    let port = port
        .parse::<u16>()
        .map_err(|e| format!("{port:?} is not a port: {e}"))?;
    let protocol = protocol.to_ascii_uppercase();
    match protocol.as_str() {
        "TCP" | "UDP" | "SCTP" => Ok((port, protocol)),
        _ => Err(format!("{protocol:?} is not TCP, UDP or SCTP")),
    }
}
