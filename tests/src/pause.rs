//! The pod sandbox ("pause") image for the containerd tests: no registry
//! can be reached, so a tiny static pause program (assets/pause.c) is
//! built here and packed as an OCI image layout tar (assets/oci-image.py),
//! cached in the target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::bins;

/// The image reference containerd's `sandbox_image` names.
pub const PAUSE_IMAGE: &str = "podnet.test/pause:1";

pub(crate) fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

pub(crate) fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/install-deps installs gcc and python3)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn newer(a: &Path, b: &Path) -> bool {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((m(a), m(b)), (Some(a), Some(b)) if a >= b)
}

/// The OCI image layout tar holding the pause image, built once per
/// target directory (again when pause.c or oci-image.py change).
pub fn image_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = bins::podnet()
            .parent()
            .expect("target dir")
            .join("pause-image");
        std::fs::create_dir_all(&dir).expect("pause-image dir");
        let src = assets().join("pause.c");
        let packer = assets().join("oci-image.py");
        let bin = dir.join("pause");
        let tar = dir.join("pause-oci.tar");
        if !(newer(&bin, &src) && newer(&tar, &bin) && newer(&tar, &packer)) {
            // Per-process temporary names, renamed into place: concurrent
            // test binaries never see half a file.
            let tmp_bin = dir.join(format!("pause.{}", std::process::id()));
            run(Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(&tmp_bin)
                .arg(&src));
            std::fs::rename(&tmp_bin, &bin).expect("rename pause");
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
