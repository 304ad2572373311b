//! The names an attachment is known by, checked the one way every part of
//! podnet checks them: the plugin when it parses its input, podnetd when a
//! request arrives.

/// The longest container id podnetd takes. CNI sets no limit; this one
/// only bounds what a request can make the daemon hold.
pub const MAX_CONTAINER_ID: usize = 4096;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1), in bytes.
pub const MAX_IFNAME: usize = 15;

/// CNI's identifier pattern, `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`: container
/// ids (CNI_CONTAINERID) and network names.
pub fn is_cni_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A Linux interface name, as the CNI reference
/// (`utils.ValidateInterfaceName`) and the kernel's `dev_valid_name` check
/// it: non-empty, at most 15 bytes, not `.` or `..`, no `/`, `:` or
/// whitespace; NUL too (the kernel would cut the name there), and the byte
/// 0xA0, which the kernel's byte-wise `isspace()` takes for a space (inside
/// a UTF-8 character such as 'à', 0xC3 0xA0).
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("interface name is empty".to_owned());
    }
    if name.len() > MAX_IFNAME {
        return Err(format!(
            "interface name {name:?} is too long: {} bytes, at most {MAX_IFNAME} allowed",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("interface name must not be {name:?}"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(format!(
            "interface name {name:?} contains {c:?}; '/', ':' and whitespace are not allowed"
        ));
    }
    if name.bytes().any(|b| b == 0xA0) {
        return Err(format!(
            "interface name {name:?} contains the byte 0xA0, which the kernel takes for a space"
        ));
    }
    Ok(())
}
