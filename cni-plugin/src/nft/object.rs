//! Tables and chains: what they are, and their attributes.

use super::msg::Writer;
use super::uapi::*;

/// The nf_tables families podnet uses. `Inet` sees IPv4 and IPv6 alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Inet,
    Ip,
    Ip6,
}

impl Family {
    pub fn raw(self) -> u8 {
        match self {
            Self::Inet => NFPROTO_INET,
            Self::Ip => NFPROTO_IPV4,
            Self::Ip6 => NFPROTO_IPV6,
        }
    }

    pub fn from_raw(raw: u8) -> Option<Self> {
        [Self::Inet, Self::Ip, Self::Ip6]
            .into_iter()
            .find(|f| f.raw() == raw)
    }

    /// As `nft` writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inet => "inet",
            Self::Ip => "ip",
            Self::Ip6 => "ip6",
        }
    }
}

/// A table: the unit podnet owns, replaces and removes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Table {
    pub family: Family,
    pub name: String,
}

impl Table {
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Self {
            family,
            name: name.into(),
        }
    }

    /// `inet podnet`, as `nft` commands name it.
    pub fn describe(&self) -> String {
        format!("{} {}", self.family.name(), self.name)
    }

    pub(super) fn encode(&self, w: &mut Writer) {
        w.attr_str(NFTA_TABLE_NAME, &self.name);
        w.attr_be32(NFTA_TABLE_FLAGS, 0);
    }
}

/// What a base chain may do to packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainType {
    Filter,
    Nat,
}

impl ChainType {
    fn name(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Nat => "nat",
        }
    }
}

/// Netfilter's hooks of the IPv4/IPv6 stacks (`enum nf_inet_hooks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Self::Prerouting => "prerouting",
            Self::Input => "input",
            Self::Forward => "forward",
            Self::Output => "output",
            Self::Postrouting => "postrouting",
        }
    }
}

/// What a base chain does with a packet no rule decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

/// Where packets enter a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BaseChain {
    pub kind: ChainType,
    pub hook: Hook,
    /// Lower runs first: filter is 0, srcnat 100, dstnat -100.
    pub priority: i32,
    pub policy: Policy,
}

/// A chain: a base chain hooked into the stack, or a regular chain that
/// only jumps and gotos reach.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chain {
    pub table: Table,
    pub name: String,
    pub base: Option<BaseChain>,
}

impl Chain {
    pub fn regular(table: &Table, name: impl Into<String>) -> Self {
        Self {
            table: table.clone(),
            name: name.into(),
            base: None,
        }
    }

    pub fn base(table: &Table, name: impl Into<String>, base: BaseChain) -> Self {
        Self {
            table: table.clone(),
            name: name.into(),
            base: Some(base),
        }
    }

    /// `inet podnet fw { type filter hook forward priority 0; policy drop; }`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.table.describe(), self.name);
        if let Some(b) = &self.base {
            let policy = match b.policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            };
            s.push_str(&format!(
                " {{ type {} hook {} priority {}; policy {policy}; }}",
                b.kind.name(),
                b.hook.name(),
                b.priority
            ));
        }
        s
    }

    /// Table, name, then for a base chain its type, policy and hook, the
    /// order `nft` sends. The policy is always sent (`nft` leaves out one
    /// not written): adding a chain that exists updates it, and a policy
    /// left out would keep the old one.
    pub(super) fn encode(&self, w: &mut Writer) {
        w.attr_str(NFTA_CHAIN_TABLE, &self.table.name);
        w.attr_str(NFTA_CHAIN_NAME, &self.name);
        if let Some(b) = &self.base {
            w.attr_str(NFTA_CHAIN_TYPE, b.kind.name());
            let policy = match b.policy {
                Policy::Accept => NF_ACCEPT,
                Policy::Drop => NF_DROP,
            };
            w.attr_be32(NFTA_CHAIN_POLICY, policy as u32);
            w.nest(NFTA_CHAIN_HOOK, |w| {
                w.attr_be32(NFTA_HOOK_HOOKNUM, b.hook as u32);
                w.attr(NFTA_HOOK_PRIORITY, &b.priority.to_be_bytes());
            });
        }
    }

    /// Table and name only: what deleting or flushing needs.
    pub(super) fn encode_ref(&self, w: &mut Writer) {
        w.attr_str(NFTA_CHAIN_TABLE, &self.table.name);
        w.attr_str(NFTA_CHAIN_NAME, &self.name);
    }
}
