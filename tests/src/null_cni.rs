//! A no-op CNI plugin (assets/null-cni.c) for bench-cri's floor: what
//! containerd and its loopback plugin cost before any plugin does work.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::bins;
use crate::pause::{assets, newer, run};

/// The plugin's type name in a conflist.
pub const NULL_CNI: &str = "null-cni";

/// The static binary, built once per target directory.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = bins::podnet()
            .parent()
            .expect("target dir")
            .join("null-cni");
        std::fs::create_dir_all(&dir).expect("null-cni dir");
        let src = assets().join("null-cni.c");
        let bin = dir.join(NULL_CNI);
        if !newer(&bin, &src) {
            let tmp = dir.join(format!("{NULL_CNI}.{}", std::process::id()));
            run(Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&tmp)
                .arg(&src));
            std::fs::rename(&tmp, &bin).expect("rename null-cni");
        }
        bin
    })
    .clone()
}
