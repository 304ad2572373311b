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

use std::io;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{
    NLMSG_ERROR, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_sys::Socket;

use podnet_cni::netlink::NetlinkError;

use super::nfnetlink::{self, NLA_F_NESTED, NLMSG_HDRLEN};

/// The table podnet owns; nothing else of the ruleset is touched.
pub const TABLE: &str = "podnet";
/// Its one chain.
pub const CHAIN: &str = "postrouting";

// nfnetlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNETLINK_V0: u8 = 0;
// nf_tables.h: message types (in the low byte, the subsystem in the high one)
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
// netfilter.h: families and hooks
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_POST_ROUTING: u32 = 4;
/// `srcnat`: where NAT rewrites sources (NF_IP_PRI_NAT_SRC).
const PRIORITY_SRCNAT: i32 = 100;
// Attributes.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_NFPROTO: u32 = 15;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
/// The first 16-byte data register (NFT_REG_1).
const REG_1: u32 = 1;

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

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A netlink message under construction: header, nfgenmsg, attributes.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn align(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// Starts a message; returns its offset for [`Writer::end_msg`].
    fn begin_msg(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        self.align();
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set at the end
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    fn end_msg(&mut self, start: usize) {
        self.align();
        self.set_len32(start);
    }

    fn set_len32(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        self.align();
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.align();
    }

    /// A NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING want.
    fn attr_str(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    /// nf_tables integers are big-endian.
    fn attr_be32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Self)) {
        self.align();
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        inner(self);
        self.align();
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// One expression of a rule: its name and its type-specific data.
    fn expr(&mut self, name: &str, data: impl FnOnce(&mut Self)) {
        self.nest(NFTA_LIST_ELEM, |w| {
            w.attr_str(NFTA_EXPR_NAME, name);
            w.nest(NFTA_EXPR_DATA, data);
        });
    }

    fn data_value(&mut self, kind: u16, value: &[u8]) {
        self.nest(kind, |w| w.attr(NFTA_DATA_VALUE, value));
    }

    fn cmp(&mut self, op: u32, value: &[u8]) {
        self.expr("cmp", |w| {
            w.attr_be32(NFTA_CMP_SREG, REG_1);
            w.attr_be32(NFTA_CMP_OP, op);
            w.data_value(NFTA_CMP_DATA, value);
        });
    }

    /// `meta nfproto FAMILY`: an inet chain sees IPv4 and IPv6 alike.
    fn match_nfproto(&mut self, nfproto: u8) {
        self.expr("meta", |w| {
            w.attr_be32(NFTA_META_KEY, NFT_META_NFPROTO);
            w.attr_be32(NFTA_META_DREG, REG_1);
        });
        self.cmp(NFT_CMP_EQ, &[nfproto]);
    }

    /// `ip saddr NET` / `ip daddr != NET` (ip6 alike): load the address,
    /// mask off the host bits, compare with the network.
    fn match_addr(&mut self, offset: u32, net: IpNetwork, op: u32) {
        let bytes = addr_bytes(net.network());
        let len = bytes.len() as u32;
        self.expr("payload", |w| {
            w.attr_be32(NFTA_PAYLOAD_DREG, REG_1);
            w.attr_be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
            w.attr_be32(NFTA_PAYLOAD_OFFSET, offset);
            w.attr_be32(NFTA_PAYLOAD_LEN, len);
        });
        if u32::from(net.prefix()) < len * 8 {
            let mask = addr_bytes(net.mask());
            self.expr("bitwise", |w| {
                w.attr_be32(NFTA_BITWISE_SREG, REG_1);
                w.attr_be32(NFTA_BITWISE_DREG, REG_1);
                w.attr_be32(NFTA_BITWISE_LEN, len);
                w.data_value(NFTA_BITWISE_MASK, &mask);
                w.data_value(NFTA_BITWISE_XOR, &vec![0u8; mask.len()]);
            });
        }
        self.cmp(op, &bytes);
    }
}

/// A transaction: BATCH_BEGIN, the nf_tables messages, BATCH_END, sent as
/// one datagram and committed by the kernel as a whole.
struct Batch {
    w: Writer,
    seq: u32,
    begin_seq: u32,
    /// Each message that must be acknowledged, with its `nft` equivalent.
    ops: Vec<(u32, String)>,
}

impl Batch {
    fn new() -> Self {
        let mut b = Self {
            w: Writer { buf: Vec::new() },
            seq: 0,
            begin_seq: 0,
            ops: Vec::new(),
        };
        b.begin_seq = b.next_seq();
        let start = b.w.begin_msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            b.begin_seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        b.w.end_msg(start);
        b
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn message(&mut self, kind: u16, flags: u16, op: String, attrs: impl FnOnce(&mut Writer)) {
        let seq = self.next_seq();
        let start = self.w.begin_msg(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            NFPROTO_INET,
            0,
        );
        attrs(&mut self.w);
        self.w.end_msg(start);
        self.ops.push((seq, op));
    }

    fn table(&mut self, kind: u16, flags: u16, op: &str) {
        self.message(kind, flags, op.to_string(), |w| {
            w.attr_str(NFTA_TABLE_NAME, TABLE)
        });
    }

    fn chain(&mut self) {
        self.message(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE | NLM_F_EXCL,
            format!(
                "nft add chain inet {TABLE} {CHAIN} {{ type nat hook postrouting priority srcnat; }}"
            ),
            |w| {
                w.attr_str(NFTA_CHAIN_TABLE, TABLE);
                w.attr_str(NFTA_CHAIN_NAME, CHAIN);
                w.nest(NFTA_CHAIN_HOOK, |w| {
                    w.attr_be32(NFTA_HOOK_HOOKNUM, NF_INET_POST_ROUTING);
                    w.attr(NFTA_HOOK_PRIORITY, &PRIORITY_SRCNAT.to_be_bytes());
                });
                w.attr_str(NFTA_CHAIN_TYPE, "nat");
            },
        );
    }

    fn rule(&mut self, rule: &Rule) {
        let (nfproto, saddr_off, daddr_off) = if rule.saddr.is_ipv4() {
            (NFPROTO_IPV4, 12, 16)
        } else {
            (NFPROTO_IPV6, 8, 24)
        };
        self.message(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            format!("nft add rule inet {TABLE} {CHAIN} {}", rule.describe()),
            |w| {
                w.attr_str(NFTA_RULE_TABLE, TABLE);
                w.attr_str(NFTA_RULE_CHAIN, CHAIN);
                w.nest(NFTA_RULE_EXPRESSIONS, |w| {
                    w.match_nfproto(nfproto);
                    w.match_addr(saddr_off, rule.saddr, NFT_CMP_EQ);
                    for &e in &rule.excluded {
                        w.match_addr(daddr_off, e, NFT_CMP_NEQ);
                    }
                    w.expr("masq", |_| {});
                });
            },
        );
    }

    fn finish(mut self) -> (Vec<u8>, u32, Vec<(u32, String)>) {
        let seq = self.next_seq();
        let start = self.w.begin_msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end_msg(start);
        (self.w.buf, self.begin_seq, self.ops)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn one_rule_per_range_excluding_every_range_of_its_family() {
        let r = rules(&[
            net("10.244.0.0/16"),
            net("fd00:10:244::/56"),
            net("10.96.0.5/12"),
            net("10.244.0.0/16"),
        ]);
        let text: Vec<String> = r.iter().map(Rule::describe).collect();
        assert_eq!(
            text,
            [
                "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 10.96.0.0/12 masquerade",
                "ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 masquerade",
                "ip saddr 10.96.0.0/12 ip daddr != 10.244.0.0/16 ip daddr != 10.96.0.0/12 masquerade",
            ]
        );
    }

    #[test]
    fn no_ranges_no_rules() {
        assert!(rules(&[]).is_empty());
    }

    #[test]
    fn attributes_are_padded_and_nests_flagged() {
        let mut w = Writer { buf: Vec::new() };
        w.nest(7, |w| w.attr_str(1, "nat"));
        // nest header (4) + attr header (4) + "nat\0" (4)
        assert_eq!(w.buf.len(), 12);
        assert_eq!(u16::from_ne_bytes([w.buf[0], w.buf[1]]), 12);
        assert_eq!(u16::from_ne_bytes([w.buf[2], w.buf[3]]), 7 | NLA_F_NESTED);
        assert_eq!(u16::from_ne_bytes([w.buf[4], w.buf[5]]), 8);
        assert_eq!(&w.buf[8..12], b"nat\0");
        w.attr(2, &[1]);
        assert_eq!(w.buf.len(), 20, "a 1-byte value is padded to 4");
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end_for_nf_tables() {
        let mut b = Batch::new();
        b.table(NFT_MSG_DELTABLE, 0, "nft delete table inet podnet");
        let (bytes, begin_seq, ops) = b.finish();
        assert_eq!(ops.len(), 1);
        let mut offset = 0;
        let mut kinds = Vec::new();
        while offset < bytes.len() {
            let len = u32::from_ne_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            kinds.push(u16::from_ne_bytes([bytes[offset + 4], bytes[offset + 5]]));
            // res_id of batch messages names the subsystem, big-endian
            if offset == 0 {
                assert_eq!(&bytes[18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
                assert_eq!(
                    u32::from_ne_bytes(bytes[8..12].try_into().unwrap()),
                    begin_seq
                );
            }
            offset += len;
        }
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE,
                NFNL_MSG_BATCH_END
            ]
        );
    }
}
