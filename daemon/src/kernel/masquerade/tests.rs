//! The rules and their bytes, without a kernel; in a kernel:
//! tests/tests/netlink_extras.rs.

use ipnetwork::IpNetwork;

use super::batch::{
    Batch, Writer, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NFT_MSG_DELTABLE,
};
use super::{rules, Rule};
use crate::kernel::nfnetlink::NLA_F_NESTED;

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
    let text: Vec<String> = r.iter().map(Rule::describe).collect();
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
fn attributes_are_padded_and_nests_flagged() {
    let mut w = Writer { buf: Vec::new() };
    w.nest(7, |w| w.attr_str(1, "nat"));
    // nest header (4) + attr header (4) + "nat\0" (4)
    assert_eq!(w.buf.len(), 12);
    assert_eq!(u16::from_ne_bytes([w.buf[0], w.buf[1]]), 12);
    assert_eq!(u16::from_ne_bytes([w.buf[2], w.buf[3]]), 7 | NLA_F_NESTED);
    assert_eq!(u16::from_ne_bytes([w.buf[4], w.buf[5]]), 8);
    assert_eq!(&w.buf[8..12], b"nat\0");
    w.attr(2, &[1]);
    assert_eq!(w.buf.len(), 20, "a 1-byte value is padded to 4");
}

#[test]
fn a_batch_is_framed_by_begin_and_end_for_nf_tables() {
    let mut b = Batch::new();
    b.table(NFT_MSG_DELTABLE, 0, "nft delete table inet podnet");
    let (bytes, begin_seq, ops) = b.finish();
    assert_eq!(ops.len(), 1);
    let mut offset = 0;
    let mut kinds = Vec::new();
    while offset < bytes.len() {
        let len = u32::from_ne_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        kinds.push(u16::from_ne_bytes([bytes[offset + 4], bytes[offset + 5]]));
        // res_id of batch messages names the subsystem, big-endian
        if offset == 0 {
            assert_eq!(&bytes[18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
            assert_eq!(
                u32::from_ne_bytes(bytes[8..12].try_into().unwrap()),
                begin_seq
            );
        }
        offset += len;
    }
    assert_eq!(
        kinds,
        [
            NFNL_MSG_BATCH_BEGIN,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE,
            NFNL_MSG_BATCH_END
        ]
    );
}
