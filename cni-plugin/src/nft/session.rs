//! [`Session`]: one netfilter socket for many transactions and listings.

use netlink_sys::Socket;

use super::apply;
use super::batch::Transaction;
use super::error::NftError;
use super::list::{rules_on, tables_on, ListedRule};
use super::object::Table;

/// A netfilter socket kept open across transactions and listings: for a
/// process that commits again and again (podnetd's policy syncs), and for
/// a plugin's several listings and its commit (one close instead of one
/// per request).
///
/// Closing a netfilter socket is not free: the kernel's nf_tables first
/// finishes freeing every earlier transaction of the namespace, which
/// waits out an RCU grace period (5-30 ms measured on a 2-CPU node).
/// A socket per transaction pays that at every close, on the caller's
/// clock; a session pays it once, when it ends.
///
/// The socket belongs to the network namespace of the thread that opened
/// it, whichever thread uses it later. After any error the socket may
/// hold answers not read yet: it is closed, and the next call opens
/// another (in the namespace of that call).
#[derive(Debug, Default)]
pub struct Session {
    socket: Option<Socket>,
}

impl Session {
    /// A session whose socket is opened by its first call.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Transaction::commit`] on this session's socket.
    pub fn commit(&mut self, tx: Transaction) -> Result<(), NftError> {
        let batch = tx.finish()?;
        // Nothing to send: no socket opened for it.
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.with(|socket| apply::commit(socket, &batch))
    }

    /// [`super::list_tables`] on this session's socket.
    pub fn list_tables(&mut self) -> Result<Vec<Table>, NftError> {
        self.with(tables_on)
    }

    /// [`super::list_rules`] on this session's socket.
    pub fn list_rules(&mut self, table: &Table, chain: &str) -> Result<Vec<ListedRule>, NftError> {
        self.with(|socket| rules_on(socket, table, chain))
    }

    fn with<T>(&mut self, f: impl FnOnce(&Socket) -> Result<T, NftError>) -> Result<T, NftError> {
        let socket = match self.socket.take() {
            Some(s) => s,
            None => apply::open()?,
        };
        let out = f(&socket)?;
        self.socket = Some(socket);
        Ok(out)
    }
}
