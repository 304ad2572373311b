//! MAC addresses: read once, in the forms runtimes and people write them
//! (`0a:58:0a:f4:01:09`, `0A-58-0A-F4-01-09`), and written the one way the
//! CNI result and the kernel's tools do (lower case, colons).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address like 0a:58:0a:f4:01:05")]
pub struct BadMac(pub String);

impl MacAddr {
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }

    /// The IPv6 link-local address the kernel would make from this MAC
    /// (modified EUI-64, RFC 4291 appendix A): `fe80::` and the MAC with
    /// `ff:fe` in its middle and the universal/local bit flipped.
    pub fn link_local(self) -> std::net::Ipv6Addr {
        let m = self.0;
        std::net::Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }
}

impl FromStr for MacAddr {
    type Err = BadMac;

    /// Six two-digit hex octets separated by `:` or `-` (one kind only).
    fn from_str(text: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(text.to_string());
        let sep = if text.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = text.split(sep);
        for o in &mut octets {
            let part = parts.next().ok_or_else(bad)?;
            // from_str_radix alone would take "+a".
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *o = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(MacAddr(octets)),
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_mac(&self.0))
    }
}

/// Any link-layer address as the tools print it (a link's address from
/// netlink need not be 6 bytes).
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colons_and_dashes_read_the_same_and_print_one_way() {
        let a: MacAddr = "0a:58:0A:f4:01:09".parse().unwrap();
        let b: MacAddr = "0A-58-0A-F4-01-09".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "0a:58:0a:f4:01:09");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "0a:58:0a:f4:01",
            "0a:58:0a:f4:01:9",
            "0a:58:0a:f4:01:09:00",
            "zz:58:0a:f4:01:09",
            "0a:58-0a:f4:01:09",
            "+a:58:0a:f4:01:09",
            "0a:58:0a:f4:01:09:",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
