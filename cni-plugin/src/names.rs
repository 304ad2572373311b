//! Deterministic names and MAC addresses of what podnet creates.
//!
//! Derived from (container id, ifname), so DEL and GC find the host end of
//! a pod's veth without any state, and an orphan is recognisable by its
//! `pn` prefix.

/// Prefix of every host-side veth podnet creates.
pub const HOST_VETH_PREFIX: &str = "pn";

/// FNV-1a, 64 bit: stable across releases and platforms, unlike std's
/// hasher, which is all that matters for names.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A separator no container id or ifname contains.
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// `pn` + 13 hex digits (52 bits of hash): 15 bytes, the kernel's limit.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let h = fnv1a(&[container_id, ifname]) & ((1u64 << 52) - 1);
    format!("{HOST_VETH_PREFIX}{h:013x}")
}

/// A locally administered unicast MAC derived from `parts`.
fn mac_from(parts: &[&str]) -> [u8; 6] {
    let h = fnv1a(parts).to_be_bytes();
    // 0x02: locally administered; bit 0 clear: unicast.
    [(h[0] & 0xfc) | 0x02, h[1], h[2], h[3], h[4], h[5]]
}

/// The host end's MAC, fixed so the result can be written without asking
/// the kernel for it.
pub fn host_veth_mac(container_id: &str, ifname: &str) -> [u8; 6] {
    mac_from(&["host-veth", container_id, ifname])
}

/// The node's VXLAN device MAC, derived from the node name so a restarted
/// daemon keeps it and peers' FDB entries stay right.
pub fn vtep_mac(node: &str) -> [u8; 6] {
    mac_from(&["vtep", node])
}

/// The node bridge's MAC (see `netlink::link::ensure_bridge` for why it is set).
pub fn bridge_mac(bridge: &str) -> [u8; 6] {
    mac_from(&["bridge", bridge])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_name_is_stable_short_and_distinct() {
        let a = host_veth_name("abc123", "eth0");
        assert_eq!(a, host_veth_name("abc123", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("pn"));
        assert_ne!(a, host_veth_name("abc123", "eth1"));
        assert_ne!(a, host_veth_name("abc124", "eth0"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(host_veth_name("ab", "c"), host_veth_name("a", "bc"));
    }

    #[test]
    fn golden_name_never_changes_between_releases() {
        // Pods created by one release are deleted by the next: the name
        // derivation is a compatibility contract.
        // The values a released podnet computes (worked out independently).
        assert_eq!(host_veth_name("c1", "eth0"), "pn778a1816a5823");
        let hex = |m: [u8; 6]| crate::mac::format_mac(&m);
        assert_eq!(hex(host_veth_mac("c1", "eth0")), "76:c2:17:b2:39:00");
        assert_eq!(hex(vtep_mac("node-a")), "7a:d8:d3:59:55:10");
        assert_eq!(hex(bridge_mac("podnet0")), "46:14:e8:4c:4d:8f");
        assert_eq!(fnv1a(&["a"]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn macs_are_locally_administered_unicast() {
        for m in [host_veth_mac("x", "eth0"), bridge_mac("podnet0")] {
            assert_eq!(m[0] & 0x01, 0, "unicast");
            assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        }
        assert_ne!(host_veth_mac("x", "eth0"), host_veth_mac("y", "eth0"));
    }
}
