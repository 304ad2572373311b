//! Masquerade for pod traffic leaving the cluster ranges, through the
//! kernel's nf_tables netlink API (NETLINK_NETFILTER), never a firewall
//! binary.
//!
//! The transaction is built with `kernel::nft`, podnet's own nf_tables
//! encoder.
//!
//! The ruleset podnet owns is one table, replaced whole in one transaction:
//!
//! ```text
//! table inet podnet {
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade
//!     }
//! }
//! ```

#[cfg(test)]
mod tests;

use ipnetwork::IpNetwork;

use podnet_cni::netlink::NetlinkError;

use super::nft::{
    BaseChain, Chain, ChainType, CmpOp, Family, Field, Hook, Policy, Rule as NftRule, Table,
    Transaction,
};

/// The table podnet owns; nothing else of the ruleset is touched.
pub const TABLE: &str = "podnet";
/// Its one chain.
pub const CHAIN: &str = "postrouting";
/// `srcnat`: where NAT rewrites sources (NF_IP_PRI_NAT_SRC).
const PRIORITY_SRCNAT: i32 = 100;

fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

fn chain(table: &Table) -> Chain {
    Chain::base(
        table,
        CHAIN,
        BaseChain {
            kind: ChainType::Nat,
            hook: Hook::Postrouting,
            priority: PRIORITY_SRCNAT,
            policy: Policy::Accept,
        },
    )
}

/// Pods' traffic to destinations outside the cluster ranges leaves with the
/// node's address; traffic between pod ranges keeps its source.
///
/// One table `podnet` (family inet), chain `postrouting` (type nat, hook
/// postrouting, priority srcnat=100): per cluster range R of a family, `ip
/// saddr R ip daddr != R1 ip daddr != R2 ... masquerade` with every cluster
/// range of that family excluded as destination.
///
/// Idempotent and atomic: the whole table is replaced in one nfnetlink batch
/// (created if absent so its deletion cannot fail, deleted, created again
/// with its chain and rules); the kernel commits a batch all at once or not
/// at all, so there is no instant without the rules.
///
/// Works in the calling thread's network namespace.
///
/// Equivalent to `nft -f -` of `add table inet podnet; delete table inet
/// podnet; table inet podnet { chain postrouting { type nat hook postrouting
/// priority srcnat; ... masquerade } }`.
pub fn ensure_masquerade(cluster_ranges: &[IpNetwork]) -> Result<(), NetlinkError> {
    Ok(transaction(cluster_ranges).commit()?)
}

/// The transaction [`ensure_masquerade`] sends.
fn transaction(cluster_ranges: &[IpNetwork]) -> Transaction {
    let table = table();
    let mut tx = Transaction::new();
    tx.add_table(&table)
        .delete_table(&table)
        .create_table(&table)
        .create_chain(&chain(&table));
    for rule in rules(cluster_ranges) {
        tx.add_rule(&rule.to_nft(&table));
    }
    tx
}

/// Removes podnet's table, its chain and rules with it. Returns whether it
/// was there: a table already gone is success.
///
/// Equivalent to `nft delete table inet podnet`.
pub fn remove_masquerade() -> Result<bool, NetlinkError> {
    Ok(super::nft::remove_table(&table())?)
}

/// One masquerade rule: traffic from `saddr` to none of `excluded`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    saddr: IpNetwork,
    excluded: Vec<IpNetwork>,
}

impl Rule {
    /// The rule for nf_tables: the builder adds the `meta nfproto` check
    /// an inet table needs before an address.
    fn to_nft(&self, table: &Table) -> NftRule {
        let (saddr, daddr) = if self.saddr.is_ipv4() {
            (Field::Ip4Saddr, Field::Ip4Daddr)
        } else {
            (Field::Ip6Saddr, Field::Ip6Daddr)
        };
        let mut rule = NftRule::new(table, CHAIN).prefix(saddr, CmpOp::Eq, self.saddr);
        for &e in &self.excluded {
            rule = rule.prefix(daddr, CmpOp::Neq, e);
        }
        rule.masquerade()
    }
}

/// Ranges in canonical form (host bits cleared), without duplicates, one
/// rule per range excluding every range of its family as destination.
fn rules(cluster_ranges: &[IpNetwork]) -> Vec<Rule> {
    let mut ranges: Vec<IpNetwork> = Vec::new();
    for r in cluster_ranges {
        if let Ok(canonical) = IpNetwork::new(r.network(), r.prefix()) {
            if !ranges.contains(&canonical) {
                ranges.push(canonical);
            }
        }
    }
    ranges
        .iter()
        .map(|&saddr| Rule {
            saddr,
            excluded: ranges
                .iter()
                .copied()
                .filter(|r| r.is_ipv4() == saddr.is_ipv4())
                .collect(),
        })
        .collect()
}
