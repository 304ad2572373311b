//! The nf_tables transaction as bytes: netlink messages with their
//! attributes, framed by BATCH_BEGIN and BATCH_END.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};

use super::{Rule, CHAIN, TABLE};
use crate::kernel::nfnetlink::NLA_F_NESTED;

// nfnetlink.h
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNETLINK_V0: u8 = 0;
// nf_tables.h: message types (in the low byte, the subsystem in the high one)
pub(super) const NFT_MSG_NEWTABLE: u16 = 0;
pub(super) const NFT_MSG_DELTABLE: u16 = 2;
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

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A netlink message under construction: header, nfgenmsg, attributes.
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
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

    pub(super) fn attr(&mut self, kind: u16, value: &[u8]) {
        self.align();
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.align();
    }

    /// A NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING want.
    pub(super) fn attr_str(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    /// nf_tables integers are big-endian.
    fn attr_be32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    pub(super) fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Self)) {
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
pub(super) struct Batch {
    w: Writer,
    seq: u32,
    begin_seq: u32,
    /// Each message that must be acknowledged, with its `nft` equivalent.
    ops: Vec<(u32, String)>,
}

impl Batch {
    pub(super) fn new() -> Self {
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

    pub(super) fn table(&mut self, kind: u16, flags: u16, op: &str) {
        self.message(kind, flags, op.to_string(), |w| {
            w.attr_str(NFTA_TABLE_NAME, TABLE)
        });
    }

    pub(super) fn chain(&mut self) {
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

    pub(super) fn rule(&mut self, rule: &Rule) {
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

    pub(super) fn finish(mut self) -> (Vec<u8>, u32, Vec<(u32, String)>) {
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
