//! Address arithmetic on `u128`, so IPv4 and IPv6 share one code path and a v6 /0 cannot overflow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

pub(crate) fn bits(v4: bool) -> u8 {
    if v4 {
        32
    } else {
        128
    }
}

pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Callers only pass values taken from a network of the same family, so the v4 truncation never
/// drops set bits.
pub(crate) fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// All-ones in the host part of a `prefix`-long network; `u128::MAX` for a v6 /0.
pub(crate) fn host_mask(prefix: u8, v4: bool) -> u128 {
    let host_bits = u32::from(bits(v4).saturating_sub(prefix));
    1u128
        .checked_shl(host_bits)
        .map_or(u128::MAX, |size| size - 1)
}

/// First and last address of `net` (network and broadcast for IPv4).
pub(crate) fn span(net: &IpNetwork) -> (u128, u128) {
    let first = to_u128(net.network());
    (first, first | host_mask(net.prefix(), net.is_ipv4()))
}

/// The first host of `net`, network + 1: the gateway of a pod subnet (the
/// node's bridge address). `None` for a v4 /31 or /32 and a v6 /127 or
/// /128, which have no room for a gateway and a pod besides.
pub fn first_host(net: &IpNetwork) -> Option<IpAddr> {
    let (first, last) = span(net);
    (last - first >= 3).then(|| from_u128(first + 1, net.is_ipv4()))
}

/// `net` with its host bits cleared (`10.244.1.7/16` -> `10.244.0.0/16`).
pub(crate) fn normalise(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

pub(crate) fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    if a.is_ipv4() != b.is_ipv4() {
        return false;
    }
    let (a0, a1) = span(a);
    let (b0, b1) = span(b);
    a0 <= b1 && b0 <= a1
}

pub(crate) fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}
