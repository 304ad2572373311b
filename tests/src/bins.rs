//! Where the binaries under test and the reference plugins are.

use std::path::{Path, PathBuf};

/// Debian's containernetworking-plugins install here.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The cargo target directory the running test binary was built into
/// (`target/<profile>/deps/<test>` -> `target/<profile>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test binary has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A binary of this workspace; built by `cargo build` before the tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PODNET_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(target_dir);
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests (or set PODNET_BIN_DIR)",
        path.display()
    );
    path
}

pub fn podnet() -> PathBuf {
    workspace_bin("podnet")
}

/// A reference plugin from Debian's containernetworking-plugins.
pub fn reference(name: &str) -> PathBuf {
    let path = Path::new(REFERENCE_PLUGINS).join(name);
    assert!(
        path.is_file(),
        "{} is missing: install Debian's containernetworking-plugins (.ci/run does)",
        path.display()
    );
    path
}

/// How a binary is linked, for bench reports: a dynamically linked ELF
/// names its loader (`.interp`, within the first page); a static one does
/// not. The plugin's exec time depends on it (see scripts/build-static).
pub fn linkage(path: &Path) -> &'static str {
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    if n == 0 {
        "unknown linkage"
    } else if head[..n].windows(8).any(|w| w == b"ld-linux") {
        "dynamically linked"
    } else {
        "static"
    }
}
