//! Masquerade for pod traffic leaving the cluster ranges, through the
//! kernel's nf_tables netlink API (NETLINK_NETFILTER), never a firewall
//! binary.
//!
//! The messages are written here directly: the uapi is small and stable
//! (`linux/netfilter/nfnetlink.h`, `linux/netfilter/nf_tables.h`), and the
//! only permissively licensed Rust option binds the C libnftnl, which would
//! make the static plugin and daemon depend on system libraries.
//!
//! The ruleset podnet owns is one table, replaced whole in one transaction:
//!
//! ```text
//! table inet podnet {
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade
//!     }
//! }
//! ```

mod batch;
#[cfg(test)]
mod tests;

use std::io;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLMSG_ERROR, NLM_F_CREATE, NLM_F_EXCL};
use netlink_sys::Socket;

use podnet_cni::netlink::NetlinkError;

use self::batch::{Batch, NFT_MSG_DELTABLE, NFT_MSG_NEWTABLE};
use super::nfnetlink::{self, NLMSG_HDRLEN};

/// The table podnet owns; nothing else of the ruleset is touched.
pub const TABLE: &str = "podnet";
/// Its one chain.
pub const CHAIN: &str = "postrouting";

const RECV_BUF: usize = 64 * 1024;

/// Pods' traffic to destinations outside the cluster ranges leaves with the
/// node's address; traffic between pod ranges keeps its source.
///
/// One table `podnet` (family inet), chain `postrouting` (type nat, hook
/// postrouting, priority srcnat=100): per cluster range R of a family, `ip
/// saddr R ip daddr != R1 ip daddr != R2 ... masquerade` with every cluster
/// range of that family excluded as destination.
///
/// Idempotent and atomic: the whole table is replaced in one nfnetlink batch
/// (created if absent so its deletion cannot fail, deleted, created again
/// with its chain and rules); the kernel commits a batch all at once or not
/// at all, so there is no instant without the rules.
///
/// Works in the calling thread's network namespace.
///
/// Equivalent to `nft -f -` of `add table inet podnet; delete table inet
/// podnet; table inet podnet { chain postrouting { type nat hook postrouting
/// priority srcnat; ... masquerade } }`.
pub fn ensure_masquerade(cluster_ranges: &[IpNetwork]) -> Result<(), NetlinkError> {
    let mut batch = Batch::new();
    batch.table(NFT_MSG_NEWTABLE, NLM_F_CREATE, "nft add table inet podnet");
    batch.table(NFT_MSG_DELTABLE, 0, "nft delete table inet podnet");
    batch.table(
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE | NLM_F_EXCL,
        "nft add table inet podnet",
    );
    batch.chain();
    for rule in rules(cluster_ranges) {
        batch.rule(&rule);
    }
    Nfnetlink::open()?.commit(batch)
}

/// Removes podnet's table, its chain and rules with it. Returns whether it
/// was there: a table already gone is success.
///
/// Equivalent to `nft delete table inet podnet`.
pub fn remove_masquerade() -> Result<bool, NetlinkError> {
    let mut batch = Batch::new();
    batch.table(NFT_MSG_DELTABLE, 0, "nft delete table inet podnet");
    match Nfnetlink::open()?.commit(batch) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// One masquerade rule: traffic from `saddr` to none of `excluded`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    saddr: IpNetwork,
    excluded: Vec<IpNetwork>,
}

impl Rule {
    /// The rule the way `nft list ruleset` prints it.
    fn describe(&self) -> String {
        let ip = if self.saddr.is_ipv4() { "ip" } else { "ip6" };
        let mut s = format!("{ip} saddr {}", self.saddr);
        for e in &self.excluded {
            s.push_str(&format!(" {ip} daddr != {e}"));
        }
        s.push_str(" masquerade");
        s
    }
}

/// Ranges in canonical form (host bits cleared), without duplicates, one
/// rule per range excluding every range of its family as destination.
fn rules(cluster_ranges: &[IpNetwork]) -> Vec<Rule> {
    let mut ranges: Vec<IpNetwork> = Vec::new();
    for r in cluster_ranges {
        if let Ok(canonical) = IpNetwork::new(r.network(), r.prefix()) {
            if !ranges.contains(&canonical) {
                ranges.push(canonical);
            }
        }
    }
    ranges
        .iter()
        .map(|&saddr| Rule {
            saddr,
            excluded: ranges
                .iter()
                .copied()
                .filter(|r| r.is_ipv4() == saddr.is_ipv4())
                .collect(),
        })
        .collect()
}

/// A NETLINK_NETFILTER socket in the calling thread's namespace.
struct Nfnetlink {
    socket: Socket,
}

impl Nfnetlink {
    fn open() -> Result<Self, NetlinkError> {
        Ok(Self {
            socket: nfnetlink::open()?,
        })
    }

    /// Sends the batch and waits for the kernel's verdict on each message.
    /// The kernel processes the whole batch and reports every error before
    /// aborting it, so the first error is returned once all are in; an error
    /// on the batch itself (the BATCH_BEGIN sequence) ends the wait at once.
    fn commit(&self, batch: Batch) -> Result<(), NetlinkError> {
        let (bytes, begin_seq, ops) = batch.finish();
        let first_op = ops
            .first()
            .map(|(_, op)| op.clone())
            .unwrap_or_else(|| "nft".to_string());
        self.socket
            .send(&bytes, 0)
            .map_err(|e| NetlinkError::kernel(first_op.clone(), e))?;

        let mut pending: Vec<u32> = ops.iter().map(|(seq, _)| *seq).collect();
        let mut first_error: Option<NetlinkError> = None;
        let mut buf = vec![0u8; RECV_BUF];
        while !pending.is_empty() {
            let n = self
                .socket
                .recv(&mut &mut buf[..], 0)
                .map_err(|e| NetlinkError::kernel(first_op.clone(), e))?;
            let mut offset = 0;
            while offset + NLMSG_HDRLEN <= n {
                let h = &buf[offset..n];
                let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let kind = u16::from_ne_bytes([h[4], h[5]]);
                let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if len < NLMSG_HDRLEN || len > h.len() {
                    return Err(NetlinkError::Decode(format!(
                        "{first_op}: bad message length {len}"
                    )));
                }
                offset += (len + 3) & !3;
                if kind != NLMSG_ERROR || len < NLMSG_HDRLEN + 4 {
                    continue;
                }
                let code = i32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
                if seq == begin_seq && code != 0 {
                    return Err(NetlinkError::kernel(
                        first_op,
                        io::Error::from_raw_os_error(-code),
                    ));
                }
                let Some(pos) = pending.iter().position(|&s| s == seq) else {
                    continue;
                };
                pending.swap_remove(pos);
                if code != 0 && first_error.is_none() {
                    let op = ops
                        .iter()
                        .find(|(s, _)| *s == seq)
                        .map(|(_, op)| op.clone())
                        .unwrap_or_else(|| first_op.clone());
                    first_error = Some(NetlinkError::kernel(
                        op,
                        io::Error::from_raw_os_error(-code),
                    ));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
