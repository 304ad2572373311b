//! The harness's small C programs (assets/*.c), built as static binaries
//! with gcc once per target directory and again when their source changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bins;

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

/// A directory of its own next to the workspace's binaries.
pub(crate) fn out_dir(name: &str) -> PathBuf {
    let dir = bins::podnet().parent().expect("target dir").join(name);
    std::fs::create_dir_all(&dir).expect("asset output dir");
    dir
}

/// `assets/<source>` built as `dir/<name>`, unless that is newer than
/// the source. Built under a per-process name and renamed into place, so
/// concurrent test binaries never see half a file.
pub(crate) fn static_binary(source: &str, dir: &Path, name: &str) -> PathBuf {
    let src = assets().join(source);
    let bin = dir.join(name);
    if !newer(&bin, &src) {
        let tmp = dir.join(format!("{name}.{}", std::process::id()));
        run(Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&tmp)
            .arg(&src));
        std::fs::rename(&tmp, &bin).expect("rename a built asset");
    }
    bin
}
