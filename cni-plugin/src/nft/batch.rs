//! The transaction: BATCH_BEGIN, nf_tables messages, BATCH_END, sent as one
//! datagram and committed by the kernel as a whole or not at all.

use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};

use super::elem;
use super::error::NftError;
use super::msg::Writer;
use super::object::{Chain, Table};
use super::rule::Rule;
use super::set::{Element, Set};
use super::uapi::*;

/// An nf_tables transaction under construction. Every method adds one
/// message (a long element list a few), each named by its `nft` command
/// for errors; nothing reaches the kernel before [`Transaction::commit`].
///
/// A request that cannot be expressed (an element that does not fit its
/// set, a rule the builder refused) is reported by `commit`, naming it.
#[derive(Debug)]
pub struct Transaction {
    w: Writer,
    seq: u32,
    begin_seq: u32,
    /// Each message with its `nft` equivalent.
    ops: Vec<(u32, String)>,
    next_set_id: u32,
    invalid: Option<NftError>,
}

/// A finished transaction's bytes and what each message was.
#[derive(Debug)]
pub(super) struct Batch {
    pub bytes: Vec<u8>,
    pub begin_seq: u32,
    pub ops: Vec<(u32, String)>,
}

impl Default for Transaction {
    fn default() -> Self {
        Self::new()
    }
}

impl Transaction {
    pub fn new() -> Self {
        let mut t = Self {
            w: Writer::default(),
            seq: 0,
            begin_seq: 0,
            ops: Vec::new(),
            next_set_id: 0,
            invalid: None,
        };
        t.begin_seq = t.framing(NFNL_MSG_BATCH_BEGIN);
        t
    }

    /// BATCH_BEGIN and BATCH_END name the subsystem in `res_id`.
    fn framing(&mut self, kind: u16) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        let start = self.w.begin_msg(
            kind,
            NLM_F_REQUEST,
            self.seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end_msg(start);
        self.seq
    }

    /// How many nf_tables messages the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn message(
        &mut self,
        kind: u16,
        flags: u16,
        table: &Table,
        op: String,
        attrs: impl FnOnce(&mut Writer),
    ) -> &mut Self {
        self.seq = self.seq.wrapping_add(1);
        let start = self.w.begin_msg(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            self.seq,
            table.family.raw(),
            0,
        );
        attrs(&mut self.w);
        self.w.end_msg(start);
        self.ops.push((self.seq, op));
        self
    }

    fn refuse(&mut self, op: String, reason: String) -> &mut Self {
        if self.invalid.is_none() {
            self.invalid = Some(NftError::Invalid { op, reason });
        }
        self
    }

    /// Creates the table unless it exists. `nft add table FAMILY NAME`.
    pub fn add_table(&mut self, t: &Table) -> &mut Self {
        let op = format!("nft add table {}", t.describe());
        self.message(NFT_MSG_NEWTABLE, NLM_F_CREATE, t, op, |w| t.encode(w))
    }

    /// Creates the table; fails (`EEXIST`) if it exists. `nft create table`.
    pub fn create_table(&mut self, t: &Table) -> &mut Self {
        let op = format!("nft create table {}", t.describe());
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.message(NFT_MSG_NEWTABLE, flags, t, op, |w| t.encode(w))
    }

    /// Deletes the table with everything in it. `nft delete table`.
    pub fn delete_table(&mut self, t: &Table) -> &mut Self {
        let op = format!("nft delete table {}", t.describe());
        self.message(NFT_MSG_DELTABLE, 0, t, op, |w| {
            w.attr_str(NFTA_TABLE_NAME, &t.name)
        })
    }

    /// Deletes every rule of every chain of the table, keeping chains and
    /// sets. `nft flush table`.
    pub fn flush_table(&mut self, t: &Table) -> &mut Self {
        let op = format!("nft flush table {}", t.describe());
        self.message(NFT_MSG_DELRULE, 0, t, op, |w| {
            w.attr_str(NFTA_RULE_TABLE, &t.name)
        })
    }

    /// Creates the chain, or updates a base chain's policy if it exists.
    /// `nft add chain`.
    pub fn add_chain(&mut self, c: &Chain) -> &mut Self {
        let op = format!("nft add chain {}", c.describe());
        self.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, &c.table, op, |w| {
            c.encode(w)
        })
    }

    /// Creates the chain; fails (`EEXIST`) if it exists. `nft create chain`.
    pub fn create_chain(&mut self, c: &Chain) -> &mut Self {
        let op = format!("nft create chain {}", c.describe());
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.message(NFT_MSG_NEWCHAIN, flags, &c.table, op, |w| c.encode(w))
    }

    /// Deletes the chain and its rules; the kernel refuses (`EBUSY`) while
    /// a rule or map element elsewhere jumps to it. `nft delete chain`.
    pub fn delete_chain(&mut self, c: &Chain) -> &mut Self {
        let op = format!("nft delete chain {} {}", c.table.describe(), c.name);
        self.message(NFT_MSG_DELCHAIN, 0, &c.table, op, |w| c.encode_ref(w))
    }

    /// Deletes the chain's rules. `nft flush chain`.
    pub fn flush_chain(&mut self, c: &Chain) -> &mut Self {
        let op = format!("nft flush chain {} {}", c.table.describe(), c.name);
        self.message(NFT_MSG_DELRULE, 0, &c.table, op, |w| {
            w.attr_str(NFTA_RULE_TABLE, &c.table.name);
            w.attr_str(NFTA_RULE_CHAIN, &c.name);
        })
    }

    /// Creates the set or map unless it exists with the same definition.
    /// `nft add set` / `nft add map`.
    pub fn add_set(&mut self, s: &Set) -> &mut Self {
        self.next_set_id += 1;
        let id = self.next_set_id;
        let op = format!("nft add {}", s.describe());
        self.message(NFT_MSG_NEWSET, NLM_F_CREATE, &s.table, op, |w| {
            s.encode(w, id)
        })
    }

    /// `nft delete set`; refused (`EBUSY`) while a rule uses it.
    pub fn delete_set(&mut self, s: &Set) -> &mut Self {
        let op = format!("nft delete set {}", s.describe_ref());
        self.message(NFT_MSG_DELSET, 0, &s.table, op, |w| {
            s.encode_ref(w, NFTA_SET_TABLE, NFTA_SET_NAME)
        })
    }

    /// Deletes every element. `nft flush set`.
    pub fn flush_set(&mut self, s: &Set) -> &mut Self {
        let op = format!("nft flush set {}", s.describe_ref());
        self.message(NFT_MSG_DELSETELEM, 0, &s.table, op, |w| {
            s.encode_ref(w, NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET)
        })
    }

    /// `nft add element`: an element already there with the same data is
    /// no error. No elements, no message.
    pub fn add_elements(&mut self, s: &Set, elems: &[Element]) -> &mut Self {
        self.elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, "add", s, elems)
    }

    /// `nft delete element`: each must be there (`ENOENT`). No elements,
    /// no message (an empty list would flush the set).
    pub fn delete_elements(&mut self, s: &Set, elems: &[Element]) -> &mut Self {
        self.elements(NFT_MSG_DELSETELEM, 0, "delete", s, elems)
    }

    fn elements(
        &mut self,
        kind: u16,
        flags: u16,
        verb: &str,
        s: &Set,
        elems: &[Element],
    ) -> &mut Self {
        let wire = match elem::wire(s, elems, kind == NFT_MSG_NEWSETELEM) {
            Ok(wire) => wire,
            Err(reason) => {
                let op = format!("nft {verb} element {}", s.describe_ref());
                return self.refuse(op, reason);
            }
        };
        for chunk in elem::chunks(&wire) {
            let op = describe_elements(verb, s, elems, chunk);
            self.message(kind, flags, &s.table, op, |w| {
                s.encode_ref(w, NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET);
                elem::encode(w, chunk);
            });
        }
        self
    }

    /// Appends the rule to its chain. `nft add rule`.
    pub fn add_rule(&mut self, r: &Rule) -> &mut Self {
        self.rule(r, "add", NLM_F_CREATE | NLM_F_APPEND, None)
    }

    /// Puts the rule first in its chain. `nft insert rule`.
    pub fn insert_rule(&mut self, r: &Rule) -> &mut Self {
        self.rule(r, "insert", NLM_F_CREATE, None)
    }

    /// Puts the rule right after the rule `handle`. `nft add rule ...
    /// position HANDLE`.
    pub fn add_rule_after(&mut self, r: &Rule, handle: u64) -> &mut Self {
        self.rule(r, "add", NLM_F_CREATE | NLM_F_APPEND, Some(handle))
    }

    fn rule(&mut self, r: &Rule, verb: &str, flags: u16, position: Option<u64>) -> &mut Self {
        let at = position
            .map(|h| format!(" position {h}"))
            .unwrap_or_default();
        let op = format!(
            "nft {verb} rule {} {}{at} {}",
            r.table.describe(),
            r.chain,
            r.describe()
        );
        if let Some(reason) = r.invalid() {
            let reason = reason.to_string();
            return self.refuse(op, reason);
        }
        self.message(NFT_MSG_NEWRULE, flags, &r.table, op, |w| {
            r.encode(w, position)
        })
    }

    /// `nft delete rule FAMILY TABLE CHAIN handle HANDLE`.
    pub fn delete_rule(&mut self, table: &Table, chain: &str, handle: u64) -> &mut Self {
        let op = format!(
            "nft delete rule {} {chain} handle {handle}",
            table.describe()
        );
        self.message(NFT_MSG_DELRULE, 0, table, op, |w| {
            w.attr_str(NFTA_RULE_TABLE, &table.name);
            w.attr_str(NFTA_RULE_CHAIN, chain);
            w.attr_be64(NFTA_RULE_HANDLE, handle);
        })
    }

    /// The bytes to send, or the first request that could not be built.
    pub(super) fn finish(mut self) -> Result<Batch, NftError> {
        if let Some(e) = self.invalid.take() {
            return Err(e);
        }
        self.framing(NFNL_MSG_BATCH_END);
        Ok(Batch {
            bytes: self.w.buf,
            begin_seq: self.begin_seq,
            ops: self.ops,
        })
    }

    /// Sends the transaction in the calling thread's network namespace
    /// and waits for the kernel's answer to every message: all of it is
    /// committed, or (on the first error, which is returned) none of it.
    ///
    /// Equivalent to `nft -f FILE` with the commands named in the batch.
    pub fn commit(self) -> Result<(), NftError> {
        super::Session::new().commit(self)
    }
}

/// `nft add element inet t s { a, b, c, ... }` with the first few of the
/// elements a message carries.
fn describe_elements(verb: &str, s: &Set, elems: &[Element], chunk: &[elem::Wire]) -> String {
    const SHOWN: usize = 3;
    let mut sources: Vec<usize> = chunk.iter().map(|w| w.source).collect();
    sources.dedup();
    let mut shown: Vec<String> = sources
        .iter()
        .take(SHOWN)
        .filter_map(|&i| elems.get(i).map(Element::describe))
        .collect();
    if sources.len() > SHOWN {
        shown.push(format!("... ({} more)", sources.len() - SHOWN));
    }
    format!(
        "nft {verb} element {} {{ {} }}",
        s.describe_ref(),
        shown.join(", ")
    )
}
