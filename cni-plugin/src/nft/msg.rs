//! Netlink framing for nf_tables: messages with their `nfgenmsg` header,
//! attributes written (4-byte aligned, nests flagged) and read back.

use super::uapi::NFNETLINK_V0;
use crate::nfnetlink::{NLA_F_NESTED, NLMSG_HDRLEN};

/// The attribute type without the nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `struct nfgenmsg`: family, version, resource id.
pub const NFGENMSG_LEN: usize = 4;

/// Messages under construction, one after another in one buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    fn align(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// Starts a message; returns its offset for [`Writer::end_msg`].
    /// `res_id` is big-endian on the wire, as the kernel reads it.
    pub fn begin_msg(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
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

    pub fn end_msg(&mut self, start: usize) {
        self.align();
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// An attribute; its length counts the value, not the padding after it.
    pub fn attr(&mut self, kind: u16, value: &[u8]) {
        self.align();
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.align();
    }

    /// A NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING want.
    pub fn attr_str(&mut self, kind: u16, value: &str) {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.attr(kind, &v);
    }

    /// nf_tables integers are big-endian.
    pub fn attr_be32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    pub fn attr_be64(&mut self, kind: u16, value: u64) {
        self.attr(kind, &value.to_be_bytes());
    }

    pub fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Self)) {
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
}

/// The attributes of a message body or a nest, in order. A truncated
/// attribute ends the walk: [`Attrs::truncated`] tells the reader.
pub struct Attrs<'a> {
    rest: &'a [u8],
    truncated: bool,
}

impl<'a> Attrs<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            truncated: false,
        }
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<'a> Iterator for Attrs<'a> {
    /// The type (flags masked off) and the value.
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([self.rest[0], self.rest[1]]));
        let kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > self.rest.len() {
            self.truncated = true;
            self.rest = &[];
            return None;
        }
        let value = &self.rest[4..len];
        let next = ((len + 3) & !3).min(self.rest.len());
        self.rest = &self.rest[next..];
        Some((kind, value))
    }
}

/// The first attribute of `kind` in `bytes`.
pub fn find(bytes: &[u8], kind: u16) -> Option<&[u8]> {
    Attrs::new(bytes).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

pub fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

pub fn be64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// A NUL-terminated string attribute's text.
pub fn string(value: &[u8]) -> Option<String> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    std::str::from_utf8(&value[..end]).ok().map(String::from)
}

/// One netlink message found in a received datagram.
pub struct Received<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// Everything after the netlink header.
    pub payload: &'a [u8],
}

/// Splits a datagram into its messages; `None` on a length that does not
/// fit, which only a corrupted reply has.
pub fn messages(datagram: &[u8]) -> Option<Vec<Received<'_>>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + NLMSG_HDRLEN <= datagram.len() {
        let h = &datagram[offset..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || len > h.len() {
            return None;
        }
        out.push(Received {
            kind: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
            payload: &h[NLMSG_HDRLEN..len],
        });
        offset += (len + 3) & !3;
    }
    Some(out)
}
