//! Kernel parameters under /proc/sys, written the way `sysctl -w` does.
//!
//! Networking keys belong to the network namespace of the thread that opens
//! the file, so call these inside [`podnet_cni::netlink::netns::NetNs::run`] for a
//! namespace other than the caller's.

use std::fs;

use podnet_cni::netlink::NetlinkError;

/// Equivalent to `sysctl -w key=value`, with `key` given as a path below
/// /proc/sys (e.g. `net/ipv4/ip_forward`).
pub fn set(key: &str, value: &str) -> Result<(), NetlinkError> {
    fs::write(format!("/proc/sys/{key}"), value).map_err(|source| NetlinkError::Sysctl {
        key: key.to_string(),
        source,
    })
}

/// Equivalent to `sysctl -n key`.
pub fn get(key: &str) -> Result<String, NetlinkError> {
    fs::read_to_string(format!("/proc/sys/{key}"))
        .map(|s| s.trim().to_string())
        .map_err(|source| NetlinkError::Sysctl {
            key: key.to_string(),
            source,
        })
}

/// Writes only when the value differs, so a read-only /proc/sys that
/// already has the right value is not an error.
pub fn ensure(key: &str, value: &str) -> Result<(), NetlinkError> {
    if get(key)? == value {
        return Ok(());
    }
    set(key, value)
}
