//! What can go wrong talking nf_tables, and the one place its errno is
//! classified.

use std::io;

use crate::netlink::NetlinkError;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The kernel refused one message of a batch, so it committed none of
    /// them. `op` is the message as an `nft` command, `index` its place in
    /// the batch (from 1), `reason` the kernel's own words when it gave any.
    #[error("{op} (message {index} of the batch): {source}{}", reason_suffix(.reason))]
    Rejected {
        op: String,
        index: usize,
        #[source]
        source: io::Error,
        reason: Option<String>,
    },
    /// The kernel refused the batch as a whole, before any message.
    #[error("nf_tables batch of {messages} messages: {source}")]
    BatchRefused {
        messages: usize,
        #[source]
        source: io::Error,
    },
    /// Sending or receiving failed (a timeout included): for a batch, the
    /// outcome is unknown.
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    /// A request podnet could not build from what it was given.
    #[error("{op}: {reason}")]
    Invalid { op: String, reason: String },
    #[error("malformed nf_tables reply to {op}: {reason}")]
    Decode { op: String, reason: String },
    /// The ruleset kept changing while it was being listed.
    #[error("{op}: the ruleset kept changing during the listing")]
    Interrupted { op: String },
    /// Opening the netfilter socket.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

fn reason_suffix(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

impl NftError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Rejected { source, .. }
            | Self::BatchRefused { source, .. }
            | Self::Io { source, .. } => source.raw_os_error(),
            Self::Netlink(e) => e.errno(),
            Self::Invalid { .. } | Self::Decode { .. } | Self::Interrupted { .. } => None,
        }
    }

    /// A table, chain, set, element or rule named is not there.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::ENOENT as i32)
    }

    /// What an exclusive create found already there.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::EEXIST as i32)
    }
}

/// For callers in the netlink error domain (node set-up): the same
/// operation text and errno.
impl From<NftError> for NetlinkError {
    fn from(e: NftError) -> Self {
        match e {
            NftError::Rejected { op, source, .. } | NftError::Io { op, source } => {
                NetlinkError::kernel(op, source)
            }
            NftError::BatchRefused { source, .. } => NetlinkError::kernel("nft -f", source),
            NftError::Invalid { op, reason } => NetlinkError::Invalid { op, reason },
            NftError::Decode { op, reason } => NetlinkError::Decode(format!("{op}: {reason}")),
            NftError::Interrupted { op } => NetlinkError::Contended { what: op },
            NftError::Netlink(e) => e,
        }
    }
}
