//! Reading the ruleset back: the tables there are (to find podnet's stale
//! ones), a chain's rules with their counters (for per-policy metrics).

use netlink_sys::Socket;

use super::apply::dump;
use super::error::NftError;
use super::expr::Expr;
use super::msg::{be64, find, string, Attrs};
use super::object::{Family, Table};
use super::rule::comment_from_udata;
use super::session::Session;
use super::uapi::*;

/// A rule as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedRule {
    /// What deleting it, or adding a rule after it, names.
    pub handle: u64,
    pub exprs: Vec<Expr>,
    pub comment: Option<String>,
}

impl ListedRule {
    /// The first counter's packets and bytes.
    pub fn counter(&self) -> Option<(u64, u64)> {
        self.exprs.iter().find_map(|e| match e {
            Expr::Counter { packets, bytes } => Some((*packets, *bytes)),
            _ => None,
        })
    }
}

/// Every table of the families podnet uses (inet, ip, ip6), in the
/// calling thread's namespace. Tables of other families (arp, bridge,
/// netdev) are left out: podnet never makes them.
///
/// Equivalent to `nft list tables`.
pub fn list_tables() -> Result<Vec<Table>, NftError> {
    Session::new().list_tables()
}

/// [`list_tables`] on `socket` (a [`Session`]'s).
pub(super) fn tables_on(socket: &Socket) -> Result<Vec<Table>, NftError> {
    const OP: &str = "nft list tables";
    let mut out = Vec::new();
    for listed in dump(socket, OP, NFT_MSG_GETTABLE, NFPROTO_UNSPEC, |_| {})? {
        let Some(family) = Family::from_raw(listed.family) else {
            continue;
        };
        let name = find(&listed.attrs, NFTA_TABLE_NAME)
            .and_then(string)
            .ok_or_else(|| decode(OP, "a table without a name"))?;
        out.push(Table::new(family, name));
    }
    out.sort();
    Ok(out)
}

/// The rules of `chain` in `table`, in order, with their expressions
/// (counters with the kernel's numbers) and comments.
///
/// Equivalent to `nft -a list chain FAMILY TABLE CHAIN`.
pub fn list_rules(table: &Table, chain: &str) -> Result<Vec<ListedRule>, NftError> {
    Session::new().list_rules(table, chain)
}

/// [`list_rules`] on `socket` (a [`Session`]'s).
pub(super) fn rules_on(
    socket: &Socket,
    table: &Table,
    chain: &str,
) -> Result<Vec<ListedRule>, NftError> {
    let op = format!("nft -a list chain {} {chain}", table.describe());
    let listed = dump(socket, &op, NFT_MSG_GETRULE, table.family.raw(), |w| {
        w.attr_str(NFTA_RULE_TABLE, &table.name);
        w.attr_str(NFTA_RULE_CHAIN, chain);
    })?;
    let mut out = Vec::new();
    for l in listed {
        let a = &l.attrs;
        let of_chain = find(a, NFTA_RULE_TABLE).and_then(string).as_deref() == Some(&table.name)
            && find(a, NFTA_RULE_CHAIN).and_then(string).as_deref() == Some(chain);
        if l.family != table.family.raw() || !of_chain {
            continue;
        }
        out.push(parse_rule(a).ok_or_else(|| decode(&op, "a rule podnet cannot read"))?);
    }
    Ok(out)
}

fn parse_rule(attrs: &[u8]) -> Option<ListedRule> {
    let handle = be64(find(attrs, NFTA_RULE_HANDLE)?)?;
    let mut exprs = Vec::new();
    if let Some(list) = find(attrs, NFTA_RULE_EXPRESSIONS) {
        let mut elems = Attrs::new(list);
        for (_, elem) in elems.by_ref() {
            exprs.push(Expr::decode(elem)?);
        }
        if elems.truncated() {
            return None;
        }
    }
    let comment = find(attrs, NFTA_RULE_USERDATA).and_then(comment_from_udata);
    Some(ListedRule {
        handle,
        exprs,
        comment,
    })
}

fn decode(op: &str, reason: &str) -> NftError {
    NftError::Decode {
        op: op.into(),
        reason: reason.into(),
    }
}
