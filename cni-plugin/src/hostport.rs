//! hostPort (the `portMappings` capability), served by the plugin itself:
//! connections to a port of the node go to the pod, through nf_tables in
//! podnet's own table, one transaction per pod.
//!
//! ```text
//! table inet podnet-hostport {
//!     chain prerouting  { type nat hook prerouting priority dstnat;  fib daddr type local jump hostports }
//!     chain output      { type nat hook output priority dstnat;      fib daddr type local jump hostports }
//!     chain postrouting { type nat hook postrouting priority srcnat; jump snat }
//!     chain hostports {
//!         meta nfproto ipv4 meta l4proto tcp th dport 8080 dnat ip to 10.244.0.5:80 comment "c1/eth0 tcp * 8080"
//!     }
//!     chain snat {
//!         ct status dnat ip saddr 10.244.0.0/24 ip daddr 10.244.0.5 masquerade comment "c1/eth0 pods"
//!         ct status dnat ip saddr 127.0.0.0/8 ip daddr 10.244.0.5 masquerade comment "c1/eth0 localhost"
//!     }
//! }
//! ```
//!
//! Each rule's comment names the attachment (`CONTAINER/IFNAME`): DEL,
//! CHECK and GC find a pod's rules by it, in the kernel, so DEL needs
//! neither podnetd nor the pod's namespace. The node's own addresses come
//! from `fib daddr type local`, so they may change without a rule
//! changing. Two masquerades make the replies come back through the node,
//! where the DNAT is undone: for a pod of the node's bridge reaching a
//! hostPort (its own, hairpin, or a neighbour's, whose reply would
//! otherwise cross the bridge straight back), and for a connection from
//! the node's localhost (with `route_localnet` on the bridge, as
//! `portmap` sets it). Clients of other nodes and of the network keep
//! their source address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::{CheckFailure, PluginError};
use ipnetwork::IpNetwork;

use crate::nft::{
    Atom, BaseChain, Chain, ChainType, CmpOp, Family, Field, Hook, ListedRule, NftError, Policy,
    Rule, Session, Table, Transaction, Verdict,
};
use crate::spec::PortMapping;

/// podnet's hostPort table; nothing else of the ruleset is touched.
pub const TABLE: &str = "podnet-hostport";
const DNAT_CHAIN: &str = "hostports";
const SNAT_CHAIN: &str = "snat";
/// Where ADDs of the node take turns: between reading the rules (for a
/// taken port) and writing them, no other ADD may write.
const LOCK: &str = "/run/podnet-hostport.lock";

fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

/// Whose a rule is: `CONTAINER/IFNAME`.
pub fn owner(container_id: &str, ifname: &str) -> String {
    format!("{container_id}/{ifname}")
}

/// One mapping as its DNAT rule's comment says it: `OWNER PROTO HOSTIP|* PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mapped {
    owner: String,
    protocol: String,
    host_ip: Option<IpAddr>,
    host_port: u16,
}

impl Mapped {
    fn of(owner: &str, m: &PortMapping) -> Self {
        Self {
            owner: owner.to_owned(),
            protocol: m.protocol.as_str().to_owned(),
            host_ip: m.host_ip,
            host_port: m.host_port,
        }
    }

    fn comment(&self) -> String {
        let ip = self.host_ip.map_or("*".to_owned(), |ip| ip.to_string());
        format!("{} {} {ip} {}", self.owner, self.protocol, self.host_port)
    }

    fn parse(comment: &str) -> Option<Self> {
        let mut words = comment.split(' ');
        let (owner, protocol, ip, port) =
            (words.next()?, words.next()?, words.next()?, words.next()?);
        Some(Self {
            owner: owner.to_owned(),
            protocol: protocol.to_owned(),
            host_ip: match ip {
                "*" => None,
                ip => Some(ip.parse().ok()?),
            },
            host_port: port.parse().ok()?,
        })
    }

    /// Whether both would take the same connections.
    fn overlaps(&self, other: &Self) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    fn describe(&self) -> String {
        let ip = self.host_ip.map_or("*".to_owned(), |ip| ip.to_string());
        format!("{}/{} on {ip}", self.host_port, self.protocol)
    }
}

/// The rules of the attachment `owner`: its mappings to `pod_ips` (each
/// mapping to the pod's address of the same IP version as its hostIP, or
/// to every address when it has none), and the masquerades they need.
fn rules(owner: &str, mappings: &[PortMapping], pod_ips: &[IpNetwork]) -> Vec<Rule> {
    let t = table();
    let mut out = Vec::new();
    for m in mappings {
        let comment = Mapped::of(owner, m).comment();
        for ip in pod_ips.iter().map(IpNetwork::ip) {
            if m.host_ip.is_some_and(|h| h.is_ipv4() != ip.is_ipv4()) {
                continue;
            }
            let (version, daddr) = match ip {
                IpAddr::V4(_) => (Family::Ip, Field::Ip4Daddr),
                IpAddr::V6(_) => (Family::Ip6, Field::Ip6Daddr),
            };
            let mut r = Rule::new(&t, DNAT_CHAIN).nfproto(version);
            if let Some(h) = m.host_ip {
                r = r.cmp(daddr, CmpOp::Eq, Atom::Addr(h));
            }
            let r = r
                .l4proto(m.protocol.number())
                .cmp(Field::Dport, CmpOp::Eq, Atom::Port(m.host_port))
                .dnat(SocketAddr::new(ip, m.container_port))
                .comment(comment.clone());
            out.push(r);
        }
    }
    if !mappings.is_empty() {
        for net in pod_ips {
            // The pod's own subnet: itself (hairpin) and its neighbours on
            // the bridge, whose replies would otherwise not come back
            // through the node.
            let subnet = IpNetwork::new(net.network(), net.prefix()).unwrap_or(*net);
            out.push(snat(owner, subnet, net.ip(), "pods"));
            if net.is_ipv4() {
                let localhost =
                    IpNetwork::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).unwrap_or(*net);
                out.push(snat(owner, localhost, net.ip(), "localhost"));
            }
        }
    }
    out
}

/// `ct status dnat ip saddr FROM ip daddr POD masquerade`.
fn snat(owner: &str, from: IpNetwork, pod: IpAddr, what: &str) -> Rule {
    let (saddr, daddr) = match pod {
        IpAddr::V4(_) => (Field::Ip4Saddr, Field::Ip4Daddr),
        IpAddr::V6(_) => (Field::Ip6Saddr, Field::Ip6Daddr),
    };
    Rule::new(&table(), SNAT_CHAIN)
        .ct_dnat()
        .prefix(saddr, CmpOp::Eq, from)
        .cmp(daddr, CmpOp::Eq, Atom::Addr(pod))
        .masquerade()
        .comment(format!("{owner} {what}"))
}

/// The table and its chains, each made only if missing (`add`).
fn skeleton(tx: &mut Transaction) {
    let t = table();
    let base = |name: &str, hook, priority| {
        Chain::base(
            &t,
            name,
            BaseChain {
                kind: ChainType::Nat,
                hook,
                priority,
                policy: Policy::Accept,
            },
        )
    };
    tx.add_table(&t);
    for c in [
        base("prerouting", Hook::Prerouting, -100),
        base("output", Hook::Output, -100),
        base("postrouting", Hook::Postrouting, 100),
        Chain::regular(&t, DNAT_CHAIN),
        Chain::regular(&t, SNAT_CHAIN),
    ] {
        tx.add_chain(&c);
    }
}

/// The rules that send traffic into the per-mapping chains, written once
/// (when the table is made).
fn dispatch(tx: &mut Transaction) {
    let t = table();
    let jump = Verdict::Jump(DNAT_CHAIN.into());
    for chain in ["prerouting", "output"] {
        tx.add_rule(
            &Rule::new(&t, chain)
                .to_local_address()
                .verdict(jump.clone()),
        );
    }
    tx.add_rule(&Rule::new(&t, "postrouting").verdict(Verdict::Jump(SNAT_CHAIN.into())));
}

/// The listed rules of both per-mapping chains, with their chain; none
/// when the table does not exist.
fn listed(nft: &mut Session) -> Result<Vec<(&'static str, ListedRule)>, NftError> {
    let t = table();
    let mut out = Vec::new();
    for chain in [DNAT_CHAIN, SNAT_CHAIN] {
        match nft.list_rules(&t, chain) {
            Ok(rules) => out.extend(rules.into_iter().map(|r| (chain, r))),
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Whose `rule` is: the first word of its comment.
fn owner_of(rule: &ListedRule) -> Option<&str> {
    rule.comment.as_deref()?.split(' ').next()
}

fn is_owners(rule: &ListedRule, owner: &str) -> bool {
    owner_of(rule) == Some(owner)
}

/// ADD: the attachment's mappings, replacing any it had, in one
/// transaction; refused (and nothing written) when another pod has one
/// of its ports.
pub fn add(
    owner: &str,
    mappings: &[PortMapping],
    pod_ips: &[IpNetwork],
) -> Result<(), PluginError> {
    if mappings.is_empty() {
        return Ok(());
    }
    // Declared first, dropped last: the socket's close, which may wait for
    // the kernel to free this commit, comes after the node's turn is given
    // back, not while other pods' ADDs wait for it.
    let mut nft = Session::new();
    let _turn = Turn::take();
    // The dispatch rules come with the table, once (a rule dump of a
    // missing table is empty, not an error: the tables are asked).
    let fresh = !nft
        .list_tables()
        .map_err(PluginError::HostPort)?
        .contains(&table());
    let existing = listed(&mut nft).map_err(PluginError::HostPort)?;
    for (_, rule) in &existing {
        let Some(theirs) = rule.comment.as_deref().and_then(Mapped::parse) else {
            continue;
        };
        if theirs.owner == owner {
            continue;
        }
        if let Some(m) = mappings
            .iter()
            .map(|m| Mapped::of(owner, m))
            .find(|m| m.overlaps(&theirs))
        {
            return Err(PluginError::HostPortTaken {
                mapping: m.describe(),
                owner: theirs.owner,
            });
        }
    }
    let mut tx = Transaction::new();
    skeleton(&mut tx);
    if fresh {
        dispatch(&mut tx);
    }
    let t = table();
    for (chain, rule) in existing.iter().filter(|(_, r)| is_owners(r, owner)) {
        tx.delete_rule(&t, chain, rule.handle);
    }
    for r in rules(owner, mappings, pod_ips) {
        tx.add_rule(&r);
    }
    nft.commit(tx).map_err(PluginError::HostPort)
}

/// DEL: every rule of the attachment removed, in one transaction, and the
/// connections tracked to the pod's addresses forgotten (a UDP flow would
/// otherwise keep going to an address that may be another pod's next);
/// `pod_ips` are what the rules name. Nothing to do is success.
pub fn del(owner: &str) -> Result<(), PluginError> {
    del_in(&mut Session::new(), owner)
}

fn del_in(nft: &mut Session, owner: &str) -> Result<(), PluginError> {
    let mine: Vec<_> = listed(nft)
        .map_err(PluginError::HostPort)?
        .into_iter()
        .filter(|(_, r)| is_owners(r, owner))
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    let pod_ips = dnat_targets(mine.iter().map(|(_, r)| r));
    let t = table();
    let mut tx = Transaction::new();
    for (chain, rule) in &mine {
        tx.delete_rule(&t, chain, rule.handle);
    }
    nft.commit(tx).map_err(PluginError::HostPort)?;
    crate::conntrack::forget(&pod_ips)?;
    Ok(())
}

/// The pod addresses the DNAT rules among `rules` send to.
fn dnat_targets<'a>(rules: impl Iterator<Item = &'a ListedRule>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for r in rules {
        let mut loaded = None;
        for e in &r.exprs {
            match e {
                crate::nft::Expr::Immediate {
                    dreg,
                    data: crate::nft::Data::Value(v),
                } if *dreg == crate::nft::Reg::R1 => loaded = addr_of(v),
                crate::nft::Expr::Dnat { .. } => out.extend(loaded),
                _ => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn addr_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// CHECK: each mapping has its rule.
pub fn check(owner: &str, mappings: &[PortMapping]) -> Result<(), PluginError> {
    if mappings.is_empty() {
        return Ok(());
    }
    let have: Vec<Mapped> = listed(&mut Session::new())
        .map_err(PluginError::HostPort)?
        .iter()
        .filter_map(|(_, r)| r.comment.as_deref().and_then(Mapped::parse))
        .collect();
    match mappings
        .iter()
        .map(|m| Mapped::of(owner, m))
        .find(|m| !have.contains(m))
    {
        Some(m) => Err(CheckFailure::HostPortMissing(m.describe()).into()),
        None => Ok(()),
    }
}

/// GC: the rules of every attachment not in `valid` removed.
pub fn gc(valid: &[String]) -> Result<(), PluginError> {
    let mut nft = Session::new();
    let stale: std::collections::BTreeSet<String> = listed(&mut nft)
        .map_err(PluginError::HostPort)?
        .iter()
        .filter_map(|(_, r)| owner_of(r).map(str::to_owned))
        .filter(|o| !valid.contains(o))
        .collect();
    let mut failed = Vec::new();
    for owner in &stale {
        tracing::info!(%owner, "GC: hostPort rules of a gone attachment removed");
        if let Err(e) = del_in(&mut nft, owner) {
            failed.push(e);
        }
    }
    match failed.len() {
        0 => Ok(()),
        _ => Err(PluginError::Several(failed)),
    }
}

/// The whole table, with every pod's mappings (`podnetd uninstall`);
/// whether there was one.
pub fn remove_all() -> Result<bool, NftError> {
    crate::nft::remove_table(&table())
}

/// Lets the bridge's `route_localnet` be on, so that a connection from the
/// node's localhost, sent to the pod after DNAT, is not dropped as
/// martian (its source is masqueraded on the way).
pub fn allow_localhost(bridge: &str) -> Result<(), PluginError> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    match std::fs::read(&path) {
        Ok(v) if v.starts_with(b"1") => Ok(()),
        _ => std::fs::write(&path, b"1")
            .map_err(|source| PluginError::RouteLocalnet { path, source }),
    }
}

/// One ADD's turn at the hostPort rules: an exclusive lock on a file of
/// the node, released when dropped (or when the process ends).
struct Turn {
    _lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Turn {
    fn take() -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK);
        // Without the lock, two ADDs might both find a port free: the
        // worst is a conflict not refused, logged here.
        let lock = match file {
            Ok(f) => match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive) {
                Ok(l) => Some(l),
                Err((_, e)) => {
                    tracing::warn!(error = %e, "cannot lock {LOCK}");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot open {LOCK}");
                None
            }
        };
        Self { _lock: lock }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PortProtocol;

    fn m(host_port: u16, protocol: PortProtocol, host_ip: Option<&str>) -> PortMapping {
        PortMapping {
            host_port,
            container_port: 80,
            protocol,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
        }
    }

    #[test]
    fn a_comment_says_the_mapping_back() {
        for mapping in [
            m(8080, PortProtocol::Tcp, None),
            m(53, PortProtocol::Udp, Some("fd00::1")),
        ] {
            let mapped = Mapped::of("c1/eth0", &mapping);
            assert_eq!(Mapped::parse(&mapped.comment()), Some(mapped));
        }
        assert_eq!(Mapped::parse("c1/eth0 hairpin"), None);
    }

    #[test]
    fn overlaps_are_same_port_protocol_and_address_or_any() {
        let a = Mapped::of("a", &m(80, PortProtocol::Tcp, None));
        assert!(a.overlaps(&Mapped::of(
            "b",
            &m(80, PortProtocol::Tcp, Some("10.0.0.1"))
        )));
        assert!(!a.overlaps(&Mapped::of("b", &m(80, PortProtocol::Udp, None))));
        assert!(!a.overlaps(&Mapped::of("b", &m(81, PortProtocol::Tcp, None))));
        let x = Mapped::of("a", &m(80, PortProtocol::Tcp, Some("10.0.0.1")));
        assert!(!x.overlaps(&Mapped::of(
            "b",
            &m(80, PortProtocol::Tcp, Some("10.0.0.2"))
        )));
    }

    #[test]
    fn a_mapping_goes_to_the_pods_address_of_its_version() {
        let ips: Vec<IpNetwork> = vec![
            "10.244.0.5/24".parse().unwrap(),
            "fd00::5/64".parse().unwrap(),
        ];
        let words = |mapping| {
            rules("c1/eth0", &[mapping], &ips)
                .iter()
                .map(Rule::describe)
                .collect::<Vec<_>>()
        };
        let any = words(m(8080, PortProtocol::Tcp, None));
        assert!(
            any.iter().any(|r| r.contains("dnat ip to 10.244.0.5:80")),
            "{any:?}"
        );
        assert!(
            any.iter().any(|r| r.contains("dnat ip6 to [fd00::5]:80")),
            "{any:?}"
        );
        let v6 = words(m(8080, PortProtocol::Udp, Some("fd00::1")));
        assert!(!v6.iter().any(|r| r.contains("dnat ip to")), "{v6:?}");
        assert!(rules("c1/eth0", &[], &ips).is_empty());
    }
}
