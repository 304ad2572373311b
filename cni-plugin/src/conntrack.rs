//! Forgetting a released address's connections: the kernel's connection
//! tracking entries whose original or reply direction names the address,
//! removed through ctnetlink (NETLINK_NETFILTER, subsystem CTNETLINK).
//!
//! Without this, an entry of a pod that is gone (a UDP flow to it, a
//! hostPort or Service DNAT towards it) lives on until its timeout, and the
//! next pod given the same address receives the old flow's packets, a known
//! failure of other pod networks. Messages are written here directly, as
//! the nf_tables ones are (`linux/netfilter/nfnetlink_conntrack.h`).
//!
//! Equivalent to `conntrack -D -s ADDR; conntrack -D -d ADDR` (and the
//! reply direction), in the node's namespace.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::Socket;

use crate::netlink::NetlinkError;

use super::nfnetlink::{self, NLA_F_NESTED, NLMSG_HDRLEN};

// nfnetlink.h, nfnetlink_conntrack.h
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NFGENMSG_LEN: usize = 4;
const RECV_BUF: usize = 256 * 1024;

/// One tracked connection, as much of it as deleting it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The addresses of both directions (source and destination of each).
    pub addresses: Vec<IpAddr>,
    /// `CTA_TUPLE_ORIG` as the kernel sent it (its attributes), which is
    /// what identifies the entry to delete.
    orig: Vec<u8>,
    /// `CTA_ZONE`, when the entry has one.
    zone: Option<Vec<u8>>,
}

/// Every tracked connection of the calling thread's namespace.
pub fn list() -> Result<Vec<Entry>, NetlinkError> {
    let mut sock = nfnetlink::open()?;
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        let msg = message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, family, &[]);
        sock.send(&msg, 0).map_err(|e| kernel("conntrack -L", e))?;
        receive(&mut sock, "conntrack -L", |payload| {
            if let Some(entry) = parse_entry(payload) {
                out.push(entry);
            }
        })?;
    }
    Ok(out)
}

/// Removes every entry naming one of `ips` in either direction; returns
/// how many. An entry that went away meanwhile is not an error.
pub fn forget(ips: &[IpAddr]) -> Result<usize, NetlinkError> {
    if ips.is_empty() {
        return Ok(0);
    }
    let victims: Vec<Entry> = list()?
        .into_iter()
        .filter(|e| e.addresses.iter().any(|a| ips.contains(a)))
        .collect();
    if victims.is_empty() {
        return Ok(0);
    }
    let mut sock = nfnetlink::open()?;
    let mut removed = 0;
    for v in &victims {
        let family = if v.addresses.first().is_some_and(IpAddr::is_ipv6) {
            AF_INET6
        } else {
            AF_INET
        };
        let mut attrs = Vec::new();
        push_attr(&mut attrs, CTA_TUPLE_ORIG | NLA_F_NESTED, &v.orig);
        if let Some(zone) = &v.zone {
            push_attr(&mut attrs, CTA_ZONE, zone);
        }
        let msg = message(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            family,
            &attrs,
        );
        let op = format!("conntrack -D (an entry of {:?})", v.addresses);
        sock.send(&msg, 0).map_err(|e| kernel(&op, e))?;
        match receive(&mut sock, &op, |_| {}) {
            Ok(()) => removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn kernel(op: &str, e: io::Error) -> NetlinkError {
    NetlinkError::kernel(op.to_string(), e)
}

/// A ctnetlink message: netlink header, nfgenmsg (family, version 0,
/// resource id 0), attributes.
fn message(kind: u16, flags: u16, family: u8, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel fills it
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

/// Reads replies until the dump ends (`NLMSG_DONE`) or the request is
/// acknowledged; hands each conntrack message's payload (after nfgenmsg)
/// to `each`. An error reply becomes the error.
fn receive(sock: &mut Socket, op: &str, mut each: impl FnMut(&[u8])) -> Result<(), NetlinkError> {
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = sock.recv(&mut &mut buf[..], 0).map_err(|e| kernel(op, e))?;
        let mut at = 0;
        while at + NLMSG_HDRLEN <= n {
            let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < NLMSG_HDRLEN || at + len > n {
                return Err(NetlinkError::Decode(format!(
                    "{op}: a truncated netlink message"
                )));
            }
            let body = &buf[at + NLMSG_HDRLEN..at + len];
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = body
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(kernel(op, io::Error::from_raw_os_error(-code)))
                    };
                }
                _ if kind == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                    if let Some(payload) = body.get(NFGENMSG_LEN..) {
                        each(payload);
                    }
                }
                _ => {}
            }
            at += (len + 3) & !3;
        }
    }
}

/// The attributes of `buf`, as (type without flags, value).
fn attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > buf.len() {
            break;
        }
        out.push((kind, &buf[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

fn parse_entry(payload: &[u8]) -> Option<Entry> {
    let mut addresses = Vec::new();
    let mut orig = None;
    let mut zone = None;
    for (kind, value) in attrs(payload) {
        match kind {
            CTA_TUPLE_ORIG | CTA_TUPLE_REPLY => {
                if kind == CTA_TUPLE_ORIG {
                    orig = Some(value.to_vec());
                }
                for (t, ips) in attrs(value) {
                    if t != CTA_TUPLE_IP {
                        continue;
                    }
                    for (a, bytes) in attrs(ips) {
                        match (a, bytes.len()) {
                            (CTA_IP_V4_SRC | CTA_IP_V4_DST, 4) => {
                                let b: [u8; 4] = bytes.try_into().ok()?;
                                addresses.push(IpAddr::from(b));
                            }
                            (CTA_IP_V6_SRC | CTA_IP_V6_DST, 16) => {
                                let b: [u8; 16] = bytes.try_into().ok()?;
                                addresses.push(IpAddr::from(b));
                            }
                            _ => {}
                        }
                    }
                }
            }
            CTA_ZONE => zone = Some(value.to_vec()),
            _ => {}
        }
    }
    Some(Entry {
        addresses,
        orig: orig?,
        zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_from_the_kernels_layout() {
        // CTA_TUPLE_ORIG { CTA_TUPLE_IP { V4_SRC 10.0.0.1, V4_DST 10.244.0.5 } },
        // CTA_TUPLE_REPLY { CTA_TUPLE_IP { V4_SRC 10.244.0.5, V4_DST 10.0.0.1 } }.
        let tuple = |src: [u8; 4], dst: [u8; 4]| {
            let mut ip = Vec::new();
            push_attr(&mut ip, CTA_IP_V4_SRC, &src);
            push_attr(&mut ip, CTA_IP_V4_DST, &dst);
            let mut t = Vec::new();
            push_attr(&mut t, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
            t
        };
        let mut payload = Vec::new();
        push_attr(
            &mut payload,
            CTA_TUPLE_ORIG | NLA_F_NESTED,
            &tuple([10, 0, 0, 1], [10, 244, 0, 5]),
        );
        push_attr(
            &mut payload,
            CTA_TUPLE_REPLY | NLA_F_NESTED,
            &tuple([10, 244, 0, 5], [10, 0, 0, 1]),
        );
        let e = parse_entry(&payload).unwrap();
        assert!(e.addresses.contains(&IpAddr::from([10, 244, 0, 5])));
        assert!(e.addresses.contains(&IpAddr::from([10, 0, 0, 1])));
        assert_eq!(e.orig, tuple([10, 0, 0, 1], [10, 244, 0, 5]));
        assert!(e.zone.is_none());
    }
}
