//! The rules and their bytes, without a kernel; in a kernel:
//! tests/tests/netlink_extras.rs.

use ipnetwork::IpNetwork;

use super::{rules, table, transaction};

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

#[test]
fn one_rule_per_range_excluding_every_range_of_its_family() {
    let r = rules(&[
        net("10.244.0.0/16"),
        net("fd00:10:244::/56"),
        net("10.96.0.5/12"),
        net("10.244.0.0/16"),
    ]);
    let text: Vec<String> = r.iter().map(|r| r.to_nft(&table()).describe()).collect();
    assert_eq!(
        text,
        [
            "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 10.96.0.0/12 masquerade",
            "ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 masquerade",
            "ip saddr 10.96.0.0/12 ip daddr != 10.244.0.0/16 ip daddr != 10.96.0.0/12 masquerade",
        ]
    );
}

#[test]
fn no_ranges_no_rules() {
    assert!(rules(&[]).is_empty());
}

#[test]
fn the_table_is_replaced_whole_then_chain_then_one_rule_a_range() {
    let tx = transaction(&[net("10.244.0.0/16"), net("fd00:10:244::/56")]);
    let ops = crate::kernel::nft::tests_support::ops(tx).unwrap();
    assert_eq!(
        ops,
        [
            "nft add table inet podnet",
            "nft delete table inet podnet",
            "nft create table inet podnet",
            "nft create chain inet podnet postrouting { type nat hook postrouting priority 100; policy accept; }",
            "nft add rule inet podnet postrouting ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade",
            "nft add rule inet podnet postrouting ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 masquerade",
        ]
    );
}
