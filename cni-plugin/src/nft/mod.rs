//! nf_tables through its netlink API (NETLINK_NETFILTER), never a firewall
//! binary: tables, chains, sets and maps with their elements, and rules,
//! changed together in one atomic transaction; and the ruleset read back.
//!
//! The messages are written here directly, as `nft` (through libnftnl)
//! writes them, attribute for attribute: the uapi is small and stable
//! (`linux/netfilter/nf_tables.h`), and the only permissively licensed
//! Rust option binds the C libnftnl, which would make the static daemon
//! depend on system libraries. The unit tests hold `nft`'s own bytes.
//!
//! ```no_run
//! use podnet_cni::nft::*;
//! # fn main() -> Result<(), NftError> {
//! let t = Table::new(Family::Inet, "podnet-policy");
//! let fw = Chain::base(&t, "forward", BaseChain {
//!     kind: ChainType::Filter, hook: Hook::Forward, priority: 0, policy: Policy::Accept,
//! });
//! let allowed = Set::new(&t, "allowed", &[KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService])
//!     .interval();
//! let mut tx = Transaction::new();
//! tx.add_table(&t).delete_table(&t).add_table(&t) // replace whole
//!     .add_chain(&fw)
//!     .add_set(&allowed)
//!     .add_elements(&allowed, &[Element::new([
//!         Part::Prefix("10.0.0.0/24".parse().unwrap()),
//!         Part::Single(Atom::Proto(6)),
//!         Part::Range(Atom::Port(80), Atom::Port(81)),
//!     ])])
//!     .add_rule(&Rule::new(&t, "forward").ct_state(CtState::ESTABLISHED | CtState::RELATED).accept())
//!     .add_rule(&Rule::new(&t, "forward")
//!         .in_set(&[Field::Ip4Saddr, Field::L4Proto, Field::Dport], "allowed")
//!         .counter().accept().comment("policy default/web"));
//! tx.commit()?; // all of it, or (first error returned) none of it
//! for r in list_rules(&t, "forward")? {
//!     println!("{:?} {:?}", r.comment, r.counter());
//! }
//! # Ok(()) }
//! ```
//!
//! Everything works in the calling thread's network namespace. A
//! process that commits again and again keeps one socket in a
//! [`Session`]: closing a netfilter socket after a commit waits for the
//! kernel to finish with the earlier transactions (an RCU grace period).

mod apply;
mod batch;
mod elem;
mod error;
mod expr;
mod list;
mod msg;
mod object;
mod rule;
mod session;
mod set;
mod uapi;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_expr;
#[cfg(test)]
mod tests_set;

pub use batch::Transaction;
pub use error::NftError;
pub use expr::{CmpOp, CtKey, Data, Expr, MetaKey, PayloadBase, Reg, Verdict};
pub use list::{list_rules, list_tables, ListedRule};
pub use object::{BaseChain, Chain, ChainType, Family, Hook, Policy, Table};
pub use rule::{CtState, Field, Rule};
pub use session::Session;
pub use set::{Atom, ElemData, Element, KeyType, MapData, Part, Set};

/// Removes `table` with everything in it, in one transaction; whether it
/// was there (a table already gone is success).
///
/// Equivalent to `nft delete table FAMILY NAME`.
pub fn remove_table(table: &Table) -> Result<bool, NftError> {
    let mut tx = Transaction::new();
    tx.delete_table(table);
    match tx.commit() {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// What unit tests (podnetd's too) read of a transaction.
#[doc(hidden)]
pub mod tests_support {
    /// Each message as its `nft` command.
    pub fn ops(tx: super::Transaction) -> Result<Vec<String>, super::NftError> {
        Ok(tx.finish()?.ops.into_iter().map(|(_, op)| op).collect())
    }
}
