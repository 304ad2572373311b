//! Port specs to port matches: numbers and ranges as they stand, names
//! resolved against the destination pod.

use super::model::{Pod, PortRef, PortSpec, Protocol};
use super::ruleset::PortMatch;

/// The match of a spec that needs no destination pod: a number, a range,
/// or (no port) every port of the protocol. `None` for a named port.
pub(crate) fn numeric(spec: &PortSpec) -> Option<PortMatch> {
    let (first, last) = match &spec.port {
        None => (0, u16::MAX),
        // A range that ends before it starts is refused by the API server
        // and by `convert`; here it is only its first port.
        Some(PortRef::Number(n)) => (*n, spec.end_port.filter(|end| end >= n).unwrap_or(*n)),
        Some(PortRef::Name(_)) => return None,
    };
    Some(PortMatch {
        protocol: spec.protocol,
        first,
        last,
    })
}

/// The named port of a spec, with its protocol.
pub(crate) fn name(spec: &PortSpec) -> Option<(Protocol, &str)> {
    match &spec.port {
        Some(PortRef::Name(name)) => Some((spec.protocol, name)),
        _ => None,
    }
}

/// The match of a spec on one destination pod (named ports resolved
/// against its container ports, name and protocol both); `None` when the
/// name means nothing there.
pub(crate) fn on_pod(spec: &PortSpec, destination: &Pod) -> Option<PortMatch> {
    numeric(spec).or_else(|| {
        let (protocol, name) = name(spec)?;
        let port = destination.named_port(name, protocol)?;
        Some(PortMatch {
            protocol,
            first: port,
            last: port,
        })
    })
}

/// Whether a spec allows `port`/`protocol`, its name (if any) resolved
/// against `destination`; a destination that is no pod has no names.
pub(crate) fn allows(
    spec: &PortSpec,
    destination: Option<&Pod>,
    port: u16,
    protocol: Protocol,
) -> bool {
    let matched = match destination {
        Some(pod) => on_pod(spec, pod),
        None => numeric(spec),
    };
    matched.is_some_and(|m| m.contains(protocol, port))
}

/// Sorted, with overlapping and adjacent ranges of a protocol joined.
pub(crate) fn normalize(mut ports: Vec<PortMatch>) -> Vec<PortMatch> {
    ports.sort_unstable();
    let mut out: Vec<PortMatch> = Vec::with_capacity(ports.len());
    for m in ports {
        match out.last_mut() {
            Some(prev)
                if prev.protocol == m.protocol
                    && u32::from(prev.last) + 1 >= u32::from(m.first) =>
            {
                prev.last = prev.last.max(m.last);
            }
            _ => out.push(m),
        }
    }
    out
}
