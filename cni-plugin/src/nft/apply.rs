//! Talking to the kernel: a batch sent and every message's answer read,
//! and dumps (listings) read to their end.

use std::io;

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::Socket;
use nix::sys::socket::{setsockopt, sockopt};

use super::batch::Batch;
use super::error::NftError;
use super::msg::{self, Attrs, Received, Writer, NFGENMSG_LEN};
use super::uapi::*;
use crate::nfnetlink::{self, NLMSG_HDRLEN};

const RECV_BUF: usize = 64 * 1024;
/// What one queued acknowledgement costs the receive buffer: its socket
/// buffer's overhead, not its 36 bytes. The kernel drops answers that do
/// not fit, so the buffer is sized for the whole batch before sending.
const ACK_COST: usize = 1024;
/// Below this, the system's default buffers do.
const DEFAULT_BUF: usize = 208 * 1024;
/// Listings retried when the ruleset changed under them.
const DUMP_ATTEMPTS: usize = 3;

/// A netfilter socket whose acknowledgements carry only the request's
/// header, not the whole request echoed back.
pub(super) fn open() -> Result<Socket, NftError> {
    let socket = nfnetlink::open()?;
    let _ = socket.set_cap_ack(true);
    Ok(socket)
}

/// Grows a buffer past the system's limit when root may (as `nft` does
/// for large rulesets); otherwise as far as the limit allows.
fn grow_buffers(socket: &Socket, send: usize, recv: usize) {
    if send > DEFAULT_BUF && setsockopt(socket, sockopt::SndBufForce, &send).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &send);
    }
    if recv > DEFAULT_BUF && setsockopt(socket, sockopt::RcvBufForce, &recv).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &recv);
    }
}

/// Sends the batch on `socket` (a [`super::Session`]'s) and waits for the
/// answer to each message. The kernel reports every message before
/// committing or aborting, so the first error (in batch order) is
/// returned once all are in; an error on the batch itself (BATCH_BEGIN's
/// sequence) ends the wait at once. Once it returns `Ok`, every answer
/// has been read and the socket can carry the next batch; after an error
/// some may be left unread.
pub(super) fn commit(socket: &Socket, batch: &Batch) -> Result<(), NftError> {
    if batch.ops.is_empty() {
        return Ok(());
    }
    let whole = || {
        format!(
            "nft -f ({} messages, from {})",
            batch.ops.len(),
            op_text(batch, 0)
        )
    };
    let op = |i: usize| op_text(batch, i);
    grow_buffers(
        socket,
        batch.bytes.len() + RECV_BUF,
        batch.ops.len() * ACK_COST + RECV_BUF,
    );
    socket
        .send(&batch.bytes, 0)
        .map_err(|source| NftError::Io {
            op: whole(),
            source,
        })?;

    let mut answered = vec![false; batch.ops.len()];
    let mut left = batch.ops.len();
    let mut first_error: Option<(usize, NftError)> = None;
    let mut buf = vec![0u8; RECV_BUF];
    while left > 0 {
        let n = socket
            .recv(&mut &mut buf[..], 0)
            .map_err(|source| NftError::Io {
                op: whole(),
                source,
            })?;
        let received = msg::messages(&buf[..n]).ok_or_else(|| NftError::Decode {
            op: whole(),
            reason: "bad message length".into(),
        })?;
        for m in received.iter().filter(|m| m.kind == NLMSG_ERROR) {
            let (code, reason) = ack(m);
            if m.seq == batch.begin_seq && code != 0 {
                return Err(NftError::BatchRefused {
                    messages: batch.ops.len(),
                    source: io::Error::from_raw_os_error(-code),
                });
            }
            let Some(i) = batch.ops.iter().position(|(s, _)| *s == m.seq) else {
                continue;
            };
            if std::mem::replace(&mut answered[i], true) {
                continue;
            }
            left -= 1;
            let earlier = first_error.as_ref().is_some_and(|(j, _)| *j < i);
            if code != 0 && !earlier {
                let e = NftError::Rejected {
                    op: op(i),
                    index: i + 1,
                    source: io::Error::from_raw_os_error(-code),
                    reason,
                };
                first_error = Some((i, e));
            }
        }
    }
    first_error.map_or(Ok(()), |(_, e)| Err(e))
}

/// The `nft` command of the batch's message `i`.
fn op_text(batch: &Batch, i: usize) -> String {
    batch
        .ops
        .get(i)
        .map(|(_, op)| op.clone())
        .unwrap_or_else(|| "nft -f".into())
}

/// An acknowledgement's error code (0 for success) and the kernel's
/// extended-ack message, if any.
fn ack(m: &Received<'_>) -> (i32, Option<String>) {
    let Some(code) = m.payload.get(..4) else {
        return (0, None);
    };
    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    if m.flags & NLM_F_ACK_TLVS == 0 {
        return (code, None);
    }
    // After the code: the request's header, or all of it if not capped.
    let echoed = if m.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        m.payload
            .get(4..8)
            .map(|l| u32::from_ne_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .unwrap_or(NLMSG_HDRLEN)
    };
    let tlvs = m.payload.get(4 + ((echoed + 3) & !3)..).unwrap_or(&[]);
    let reason = Attrs::new(tlvs)
        .find(|(k, _)| *k == NLMSGERR_ATTR_MSG)
        .and_then(|(_, v)| msg::string(v));
    (code, reason)
}

/// One object of a listing: its family and its attributes.
pub(super) struct Listed {
    pub family: u8,
    pub attrs: Vec<u8>,
}

/// Lists objects (`kind` is a GET message) of `family` (`NFPROTO_UNSPEC`
/// for all), narrowed by the attributes `filter` writes, on `socket`. A
/// listing the ruleset changed under is read again. As with [`commit`],
/// the socket can carry the next request once it returns `Ok`.
pub(super) fn dump(
    socket: &Socket,
    op: &str,
    kind: u16,
    family: u8,
    filter: impl Fn(&mut Writer),
) -> Result<Vec<Listed>, NftError> {
    for _ in 0..DUMP_ATTEMPTS {
        let mut w = Writer::default();
        let start = w.begin_msg(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            family,
            0,
        );
        filter(&mut w);
        w.end_msg(start);
        socket.send(&w.buf, 0).map_err(|source| NftError::Io {
            op: op.into(),
            source,
        })?;
        if let Some(listed) = read_dump(socket, op)? {
            return Ok(listed);
        }
    }
    Err(NftError::Interrupted { op: op.into() })
}

/// The dump's objects, or `None` when the kernel flagged it interrupted.
fn read_dump(socket: &Socket, op: &str) -> Result<Option<Vec<Listed>>, NftError> {
    let mut out = Vec::new();
    let mut interrupted = false;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = socket
            .recv(&mut &mut buf[..], 0)
            .map_err(|source| NftError::Io {
                op: op.into(),
                source,
            })?;
        let received = msg::messages(&buf[..n]).ok_or_else(|| NftError::Decode {
            op: op.into(),
            reason: "bad message length".into(),
        })?;
        for m in received {
            interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
            match m.kind {
                NLMSG_DONE => return Ok((!interrupted).then_some(out)),
                NLMSG_ERROR => {
                    let (code, _) = ack(&m);
                    if code != 0 {
                        return Err(NftError::Io {
                            op: op.into(),
                            source: io::Error::from_raw_os_error(-code),
                        });
                    }
                }
                _ if m.payload.len() >= NFGENMSG_LEN => out.push(Listed {
                    family: m.payload[0],
                    attrs: m.payload[NFGENMSG_LEN..].to_vec(),
                }),
                _ => {}
            }
        }
    }
}
