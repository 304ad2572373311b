//! ADD: a veth pair from the node bridge into the pod, addressed by IPAM.
//!
//! It reads top to bottom: refusals that change nothing, then the IPAM
//! request with the links wired while it is worked on, then the addresses.
//! Whatever fails after the refusals, one rollback undoes exactly what this
//! ADD created (its veth, its IPAM reservation) and nothing else.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::args::CmdArgs;
use crate::error::PluginError;
use crate::ipam;
use crate::mac::MacAddr;
use crate::names;
use crate::netlink::netns::NetNs;
use crate::netlink::{addr, link, route, Netlink, NetlinkError};
use crate::spec::{CniResult, Interface, IpConfig, NetConf, Route};

/// Used when neither the config nor the node's default route gives an MTU.
const FALLBACK_MTU: u32 = 1500;

pub fn add(args: &CmdArgs, conf: &NetConf) -> Result<CniResult, PluginError> {
    let mut attempt = Attempt::prepare(args, conf)?;
    let mut made = Made::default();
    match attempt.run(&mut made) {
        Ok(result) => Ok(result),
        Err(error) => Err(made.roll_back(&mut attempt, error)),
    }
}

/// One ADD once its refusals are behind it.
struct Attempt<'a> {
    args: &'a CmdArgs,
    conf: &'a NetConf,
    netns: NetNs,
    host_nl: Netlink,
    pod_nl: Netlink,
    host_name: String,
}

/// What this ADD created, so that a failure undoes exactly that. The
/// bridge and its gateway addresses are the node's, shared by every pod,
/// and stay.
#[derive(Default)]
struct Made {
    veth: bool,
    ipam_reservation: bool,
}

impl Made {
    /// Undoes what was made and returns the failure, with the rollback's
    /// own failures beside it when there are any.
    fn roll_back(self, attempt: &mut Attempt, error: PluginError) -> PluginError {
        let mut cleanup = Vec::new();
        // The host end takes the pod end with it.
        if self.veth {
            if let Err(e) = link::remove_link(&mut attempt.host_nl, &attempt.host_name) {
                cleanup.push(PluginError::Kernel(e));
            }
        }
        if self.ipam_reservation {
            if let Err(e) = ipam::del(attempt.args, attempt.conf) {
                cleanup.push(e);
            }
        }
        if cleanup.is_empty() {
            return error;
        }
        PluginError::RolledBackBadly {
            error: Box::new(error),
            cleanup,
        }
    }
}

impl<'a> Attempt<'a> {
    /// The checks that refuse an ADD before anything is created, so these
    /// errors change nothing.
    fn prepare(args: &'a CmdArgs, conf: &'a NetConf) -> Result<Self, PluginError> {
        let netns_path = args.netns.clone().unwrap_or_default();
        let netns = NetNs::open(&netns_path).map_err(PluginError::from_netns)?;
        let mut pod_nl = netns.netlink_in_place().map_err(PluginError::from_netns)?;
        if netns.is_current()? {
            return Err(PluginError::NetnsIsNode(netns_path.display().to_string()));
        }
        if link::get_link(&mut pod_nl, args.ifname())?.is_some() {
            return Err(PluginError::InterfaceExists {
                ifname: args.ifname().to_string(),
                netns: netns_path.display().to_string(),
            });
        }
        let mut host_nl = Netlink::open()?;
        // The host end's name too: a live attachment of this (container
        // id, ifname) in another namespace, or a foreign link of that name,
        // is refused here, so the rollback only ever meets what this ADD
        // created.
        let host_name = names::host_veth_name(args.container_id(), args.ifname());
        if link::get_link(&mut host_nl, &host_name)?.is_some() {
            return Err(PluginError::InterfaceExists {
                ifname: host_name,
                netns: "the node".to_string(),
            });
        }
        Ok(Self {
            args,
            conf,
            netns,
            host_nl,
            pod_nl,
            host_name,
        })
    }

    fn run(&mut self, made: &mut Made) -> Result<CniResult, PluginError> {
        // The IPAM answer (a process or a daemon round trip) is most of an
        // ADD's time: the request goes out first and the links are wired
        // while it is worked on, so our own work hides behind it. No
        // thread is needed: the request runs in another process.
        let pending = ipam::start_add(self.args, self.conf);
        let wired = match &pending {
            Ok(_) => self.wire(made),
            Err(_) => Ok(None),
        };
        // Read before any failure is acted on, so that a rollback's release
        // always follows the allocation it releases.
        let answer = pending.and_then(ipam::PendingAdd::finish);
        made.ipam_reservation = answer
            .as_ref()
            .map_or_else(PluginError::ipam_may_have_reserved, |_| true);
        // The host end's name taken since `prepare`: a concurrent ADD of the
        // same attachment, whose reservation (IPAM answers per attachment)
        // this one must not release.
        if matches!(wired, Err(PluginError::InterfaceExists { .. })) {
            made.ipam_reservation = false;
        }
        let answer = answer?;
        let wired = match wired? {
            Some(w) => w,
            None => self.wire_first_pod(made)?,
        };
        let result = self.address(wired, answer.result)?;
        // podnetd puts the pod's NetworkPolicy in while the interface is
        // configured; the ADD returns, and the pod's containers start,
        // only once it is in.
        if let Some(policy) = answer.policy {
            policy.wait()?;
        }
        self.map_host_ports(&result)?;
        Ok(result)
    }

    /// The pod's hostPorts (`portMappings`), in one transaction: the last
    /// step, so a refusal leaves nothing of them for the rollback.
    fn map_host_ports(&self, result: &CniResult) -> Result<(), PluginError> {
        let mappings = &self.conf.runtime_config.port_mappings;
        if mappings.is_empty() {
            return Ok(());
        }
        let ips: Vec<IpNetwork> = result.ips.iter().map(|i| i.address).collect();
        if ips.iter().any(IpNetwork::is_ipv4) {
            crate::hostport::allow_localhost(self.conf.bridge.as_str())?;
        }
        let owner = crate::hostport::owner(self.args.container_id(), self.args.ifname());
        crate::hostport::add(&owner, mappings, &ips)
    }

    /// The first pod of the node: the bridge is created only once IPAM has
    /// answered, so an ADD refused by IPAM never leaves one behind.
    fn wire_first_pod(&mut self, made: &mut Made) -> Result<Wired, PluginError> {
        let bridge = self.conf.bridge.as_str();
        link::ensure_bridge(&mut self.host_nl, bridge, names::bridge_mac(bridge), None)?;
        self.wire(made)?.ok_or_else(|| {
            PluginError::Kernel(NetlinkError::Vanished {
                what: format!("bridge {bridge}"),
            })
        })
    }
}

/// The MTU of the interface the node's traffic leaves by: a FIB lookup of
/// an address no node routes specially (TEST-NET-1; nothing is sent), so
/// the cost does not grow with the node's routing table.
fn detect_mtu(host_nl: &mut Netlink) -> Result<u32, NetlinkError> {
    let probe = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    let oif = match route::lookup_oif(host_nl, probe) {
        Ok(Some(oif)) => Some(oif),
        // No IPv4 route out (an IPv6-only node): the default route then.
        Ok(None) | Err(_) => route::default_route_oif(host_nl)?,
    };
    let Some(oif) = oif else {
        return Ok(FALLBACK_MTU);
    };
    Ok(link::get_link_by_index(host_nl, oif)?
        .map(|l| l.mtu)
        .unwrap_or(FALLBACK_MTU))
}

/// The links of one attachment, wired before the addresses are known.
struct Wired {
    bridge_index: u32,
    mtu: u32,
    host_name: String,
    host_mac: [u8; 6],
    pod: link::Link,
}

impl Attempt<'_> {
    /// The veth pair: host end on the bridge, pod end in the pod, both up.
    /// `None` when the bridge does not exist yet.
    fn wire(&mut self, made: &mut Made) -> Result<Option<Wired>, PluginError> {
        let (args, conf) = (self.args, self.conf);
        let host_nl = &mut self.host_nl;
        let host_name = self.host_name.as_str();
        let ifname = args.ifname();
        let container_id = args.container_id();
        let Some(bridge) = link::get_link(host_nl, conf.bridge.as_str())? else {
            return Ok(None);
        };
        if bridge.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::WrongKind {
                name: conf.bridge.to_string(),
                kind: bridge.kind.unwrap_or_else(|| "plain".into()),
                want: "bridge",
            }
            .into());
        }
        if !bridge.up {
            link::set_up(host_nl, bridge.index)?;
        }
        let mtu = match conf.mtu {
            Some(m) => m,
            None => detect_mtu(host_nl)?,
        };
        let host_mac = names::host_veth_mac(container_id, ifname);
        let pair = link::VethPair {
            host_name,
            host_mac,
            pod_name: ifname,
            pod_mac: conf.runtime_config.mac,
            pod_netns: self.netns.fd(),
            mtu,
            bridge_index: bridge.index,
        };
        match link::add_veth(host_nl, &pair) {
            Err(e) if e.is_exists() => {
                return Err(PluginError::InterfaceExists {
                    ifname: host_name.to_string(),
                    netns: "the node".to_string(),
                })
            }
            other => other?,
        }
        made.veth = true;
        link::set_up_quiet(host_nl, host_name)?;
        // A pod reaching its own hostPort comes back by the port it left.
        if conf.hairpin_mode || !conf.runtime_config.port_mappings.is_empty() {
            if let Some(host) = link::get_link(host_nl, host_name)? {
                link::set_hairpin(host_nl, host.index, true)?;
            }
        }
        let pod_nl = &mut self.pod_nl;
        let pod = link::get_link(pod_nl, ifname)?.ok_or_else(|| {
            PluginError::Kernel(NetlinkError::Vanished {
                what: format!("pod interface {ifname}"),
            })
        })?;
        // Quiet until IPAM's answer says whether the pod has IPv6 at all.
        link::set_up_quiet(pod_nl, ifname)?;
        Ok(Some(Wired {
            bridge_index: bridge.index,
            mtu,
            host_name: host_name.to_string(),
            host_mac,
            pod,
        }))
    }

    /// Addresses and routes from IPAM's answer, and the result.
    fn address(&mut self, wired: Wired, ipam: CniResult) -> Result<CniResult, PluginError> {
        let (args, conf) = (self.args, self.conf);
        let (host_nl, pod_nl) = (&mut self.host_nl, &mut self.pod_nl);
        let gateways: Vec<Option<IpAddr>> = ipam.ips.iter().map(gateway_of).collect();
        for (ip, gw) in ipam.ips.iter().zip(&gateways) {
            if let Some(gw) = gw {
                let on_bridge = IpNetwork::new(*gw, ip.address.prefix()).map_err(|_| {
                    PluginError::IpamGateway {
                        gateway: *gw,
                        address: ip.address,
                    }
                })?;
                addr::ensure_address(host_nl, wired.bridge_index, on_bridge)?;
            }
        }
        let pod = &wired.pod;
        // An IPv6 pod gets the link-local address its interface, up quiet,
        // did not make: the one the kernel makes by default (eui64). An
        // IPv4-only pod has no IPv6 address on it to announce.
        if ipam.ips.iter().any(|ip| ip.address.is_ipv6()) {
            let mac = <[u8; 6]>::try_from(pod.mac.as_slice()).map(MacAddr);
            // A prefix of 64 always fits, so the `Err`s are never taken.
            if let Ok(Ok(ll)) = mac.map(|m| IpNetwork::new(m.link_local().into(), 64)) {
                addr::ensure_address(pod_nl, pod.index, ll)?;
            }
        }
        for ip in &ipam.ips {
            addr::add_address(pod_nl, pod.index, ip.address)?;
        }
        let routes = routes_for(&ipam, &gateways);
        for r in &routes {
            let mut entry = route::RouteEntry::new(r.dst, r.gw, Some(pod.index));
            entry.mtu = r.mtu;
            entry.advmss = r.advmss;
            entry.priority = r.priority;
            if let Some(t) = r.table {
                entry.table = t;
            }
            if let Some(s) = r.scope {
                entry.scope = s;
            }
            route::add_route(pod_nl, &entry)?;
        }
        wait_operational(host_nl, &wired.host_name, pod_nl, pod.index)?;

        let host_if = Interface {
            name: wired.host_name,
            mac: crate::mac::format_mac(&wired.host_mac),
            mtu: Some(wired.mtu),
            ..Default::default()
        };
        let pod_if = Interface {
            name: args.ifname().to_string(),
            mac: pod.mac_string(),
            mtu: Some(pod.mtu),
            sandbox: Some(self.netns.path().display().to_string()),
            ..Default::default()
        };
        let ips = ipam
            .ips
            .iter()
            .zip(&gateways)
            .map(|(ip, gw)| IpConfig {
                address: ip.address,
                gateway: *gw,
                interface: Some(1),
            })
            .collect();
        let dns = match &conf.dns {
            Some(d) if !d.is_empty() => d.clone(),
            _ => ipam.dns.clone(),
        };
        Ok(CniResult {
            interfaces: vec![host_if, pod_if],
            ips,
            routes,
            dns,
        })
    }
}

/// How long ADD waits for the kernel to finish bringing the veth up.
const OPERATIONAL_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Returns once both ends of the pair pass packets (the kernel activates
/// a link's queue asynchronously after it comes up), so that the pod's
/// first packet and the first reply to it are not dropped. Usually at
/// once; past [`OPERATIONAL_PATIENCE`] ADD goes on anyway, with a warning:
/// a late link costs a retransmission, not the pod.
fn wait_operational(
    host_nl: &mut Netlink,
    host_name: &str,
    pod_nl: &mut Netlink,
    pod_index: u32,
) -> Result<(), NetlinkError> {
    let pod_ready = link::wait_operational(pod_nl, pod_index, OPERATIONAL_PATIENCE)?;
    let host_ready = match link::get_link(host_nl, host_name)? {
        Some(host) => link::wait_operational(host_nl, host.index, OPERATIONAL_PATIENCE)?,
        None => false,
    };
    if !(pod_ready && host_ready) {
        tracing::warn!(
            pod_ready,
            host_ready,
            "the veth is not fully up yet; going on"
        );
    }
    Ok(())
}

/// The gateway of one address: IPAM's, else the first host of its subnet.
fn gateway_of(ip: &IpConfig) -> Option<IpAddr> {
    ip.gateway.or_else(|| podnet_ipam::first_host(&ip.address))
}

/// IPAM's routes, each with its family's gateway when it names none, plus
/// a default route per family that IPAM did not already route.
fn routes_for(ipam: &CniResult, gateways: &[Option<IpAddr>]) -> Vec<Route> {
    let family_gw = |v6: bool| {
        gateways
            .iter()
            .flatten()
            .find(|g| g.is_ipv6() == v6)
            .copied()
    };
    let mut routes: Vec<Route> = ipam
        .routes
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r.gw.is_none() {
                r.gw = family_gw(r.dst.is_ipv6());
            }
            r
        })
        .collect();
    for v6 in [false, true] {
        let has_family = ipam.ips.iter().any(|ip| ip.address.is_ipv6() == v6);
        let has_default = routes
            .iter()
            .any(|r| r.dst.is_ipv6() == v6 && r.dst.prefix() == 0);
        if let (true, false, Some(gw)) = (has_family, has_default, family_gw(v6)) {
            let any = if v6 {
                IpNetwork::V6(ipnetwork::Ipv6Network::from(
                    std::net::Ipv6Addr::UNSPECIFIED,
                ))
            } else {
                IpNetwork::V4(ipnetwork::Ipv4Network::from(
                    std::net::Ipv4Addr::UNSPECIFIED,
                ))
            };
            let dst = IpNetwork::new(any.ip(), 0).unwrap_or(any);
            routes.push(Route::new(dst, Some(gw)));
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipc(addr: &str, gw: Option<&str>) -> IpConfig {
        IpConfig {
            address: addr.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            interface: None,
        }
    }

    #[test]
    fn gateway_defaults_to_first_host() {
        assert_eq!(
            gateway_of(&ipc("10.1.2.7/24", None)),
            Some("10.1.2.1".parse().unwrap())
        );
        assert_eq!(
            gateway_of(&ipc("10.1.2.7/24", Some("10.1.2.254"))),
            Some("10.1.2.254".parse().unwrap())
        );
        assert_eq!(
            gateway_of(&ipc("fd00::5/64", None)),
            Some("fd00::1".parse().unwrap())
        );
        assert_eq!(gateway_of(&ipc("10.1.2.7/32", None)), None);
    }

    #[test]
    fn default_routes_per_family_unless_ipam_gave_them() {
        let ipam = CniResult {
            ips: vec![ipc("10.1.2.7/24", None), ipc("fd00::5/64", None)],
            routes: vec![Route::new("0.0.0.0/0".parse().unwrap(), None)],
            ..Default::default()
        };
        let gws: Vec<_> = ipam.ips.iter().map(gateway_of).collect();
        let routes = routes_for(&ipam, &gws);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].gw, Some("10.1.2.1".parse().unwrap()));
        assert_eq!(routes[1].dst, "::/0".parse().unwrap());
        assert_eq!(routes[1].gw, Some("fd00::1".parse().unwrap()));
    }
}
