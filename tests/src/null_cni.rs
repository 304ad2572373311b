//! A no-op CNI plugin (assets/null-cni.c) for bench-cri's floor: what
//! containerd and its loopback plugin cost before any plugin does work.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::cbuild::{out_dir, static_binary};

/// The plugin's type name in a conflist.
pub const NULL_CNI: &str = "null-cni";

/// The static binary, built once per target directory.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| static_binary("null-cni.c", &out_dir("null-cni"), NULL_CNI))
        .clone()
}
