//! The pod sandbox ("pause") image for the containerd tests: no registry
//! can be reached, so a tiny static pause program (assets/pause.c) is
//! built here and packed as an OCI image layout tar (assets/oci-image.py),
//! cached in the target directory.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::cbuild::{assets, newer, out_dir, run, static_binary};

/// The image reference containerd's `sandbox_image` names.
pub const PAUSE_IMAGE: &str = "podnet.test/pause:1";

/// The OCI image layout tar holding the pause image, built once per
/// target directory (again when pause.c or oci-image.py change).
pub fn image_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = out_dir("pause-image");
        let bin = static_binary("pause.c", &dir, "pause");
        let packer = assets().join("oci-image.py");
        let tar = dir.join("pause-oci.tar");
        if !(newer(&tar, &bin) && newer(&tar, &packer)) {
            // Renamed into place, as static_binary does.
            let tmp_tar = dir.join(format!("pause-oci.{}.tar", std::process::id()));
            run(Command::new("python3")
                .arg(&packer)
                .arg(&bin)
                .arg(PAUSE_IMAGE)
                .arg(&tmp_tar));
            std::fs::rename(&tmp_tar, &tar).expect("rename pause tar");
        }
        tar
    })
    .clone()
}
