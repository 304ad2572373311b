//! The CNI configuration podnetd writes, and the plugin binaries it
//! installs: both atomically, so containerd never reads half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use podnet_cni::spec::CniVersion;
use serde_json::{json, Value};

use crate::error::DaemonError;

/// The file name sorts before other configurations: the runtime uses the
/// first one it finds.
pub const CONFLIST_NAME: &str = "10-podnet.conflist";

pub struct ConfList<'a> {
    pub bridge: &'a str,
    pub mtu: u32,
    pub socket: &'a Path,
    pub spool_dir: &'a Path,
    pub cni_version: CniVersion,
}

/// The conflist's `cniVersion` for a runtime: containerd before 2.0 (libcni
/// before 1.2) rejects a 1.1.0 result ("unsupported CNI result version")
/// and reads only `cniVersion`, so it gets 1.0.0; everything else, and an
/// unknown runtime, gets 1.1.0 (STATUS every few seconds from containerd 2).
pub fn version_for_runtime(name: &str, version: &str) -> CniVersion {
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(u32::MAX);
    if name.contains("containerd") && major < 2 {
        CniVersion::V1_0_0
    } else {
        CniVersion::LATEST
    }
}

/// The `cniVersion` of the conflist already in `conf_dir` (a previous
/// run's choice for this node's runtime), if there is a readable one.
pub fn version_on_disk(conf_dir: &Path) -> Option<CniVersion> {
    let text = std::fs::read(conf_dir.join(CONFLIST_NAME)).ok()?;
    let doc: Value = serde_json::from_slice(&text).ok()?;
    CniVersion::parse(doc["cniVersion"].as_str()?)
}

/// The version to write while the runtime cannot be asked: the previous
/// run's choice, else 1.0.0, which every runtime reads. Writing 1.1.0 to
/// containerd 1.6 would strand every pod it set up under 1.0.0: its DEL
/// cannot convert the cached 1.0.0 result to 1.1.0 and fails for good.
pub fn version_without_runtime(conf_dir: &Path) -> CniVersion {
    version_on_disk(conf_dir).unwrap_or(CniVersion::V1_0_0)
}

impl ConfList<'_> {
    pub fn to_json(&self) -> Value {
        let plugins = vec![json!({
            "type": "podnet",
            "bridge": self.bridge,
            "mtu": self.mtu,
            // kube-proxy may send a pod's connection to its own Service
            // back to that same pod: the bridge must let it out by the
            // port it came in (as kubenet and other bridge setups do).
            "hairpinMode": true,
            // hostPort is podnet's own: the runtime passes the pod's
            // portMappings to it, and no second plugin runs per pod.
            "capabilities": { "portMappings": true },
            "ipam": {
                "type": "podnet-ipam",
                "socket": self.socket,
                "spoolDir": self.spool_dir,
            },
        })];
        json!({
            // Runtimes that know CNI 1.1 pick the highest version common to
            // both sides from `cniVersions`; older ones read only
            // `cniVersion` (see `version_for_runtime`).
            "cniVersion": self.cni_version.as_str(),
            "cniVersions": ["0.3.1", "0.4.0", "1.0.0", CniVersion::LATEST.as_str()],
            "name": "podnet",
            "plugins": plugins,
        })
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory and a
/// rename: containerd 1.6 ignores a file moved in from elsewhere.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(DaemonError::io("creating", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DaemonError::io("writing", path)(e)
    })
}

pub fn write_conflist(conf_dir: &Path, conf: &ConfList<'_>) -> Result<PathBuf, DaemonError> {
    let path = conf_dir.join(CONFLIST_NAME);
    let mut text = serde_json::to_vec_pretty(&conf.to_json()).unwrap_or_default();
    text.push(b'\n');
    write_atomic(&path, &text, 0o644)?;
    Ok(path)
}

/// Removes our configuration, so the node reads as not ready.
pub fn remove_conflist(conf_dir: &Path) {
    let _ = std::fs::remove_file(conf_dir.join(CONFLIST_NAME));
}

/// Copies the plugin binaries that sit next to the running podnetd into
/// `bin_dir` (atomically each), so the image carries one set of binaries.
pub fn install_plugins(bin_dir: &Path) -> Result<Vec<PathBuf>, DaemonError> {
    let exe = std::env::current_exe().map_err(DaemonError::io("locating", "podnetd"))?;
    let src_dir = exe.parent().unwrap_or(Path::new("/"));
    let mut installed = Vec::new();
    for name in ["podnet", "podnet-ipam"] {
        let src = src_dir.join(name);
        let bytes = std::fs::read(&src).map_err(DaemonError::io("reading", &src))?;
        let dst = bin_dir.join(name);
        write_atomic(&dst, &bytes, 0o755)?;
        installed.push(dst);
    }
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ConfList<'static> {
        ConfList {
            bridge: "podnet0",
            mtu: 1450,
            socket: Path::new("/run/podnet/ipam.sock"),
            spool_dir: Path::new("/var/lib/podnet/spool"),
            cni_version: CniVersion::LATEST,
        }
    }

    #[test]
    fn conflist_is_a_valid_podnet_configuration() {
        let c = sample();
        let doc = c.to_json();
        assert_eq!(doc["cniVersion"], "1.1.0");
        assert_eq!(doc["cniVersions"][3], "1.1.0");
        assert_eq!(doc["plugins"].as_array().map(Vec::len), Some(1));
        assert_eq!(doc["plugins"][0]["capabilities"]["portMappings"], true);
        // The first plugin's configuration, as libcni would hand it to
        // podnet, parses with podnet's own strict parser.
        let mut plugin = doc["plugins"][0].clone();
        plugin["cniVersion"] = doc["cniVersion"].clone();
        plugin["name"] = doc["name"].clone();
        let conf = podnet_cni::spec::NetConf::parse(plugin.to_string().as_bytes()).unwrap();
        assert_eq!(conf.mtu, Some(1450));
        // A pod reaching itself through its own Service comes back in by
        // the port it left from.
        assert!(conf.hairpin_mode);
        assert_eq!(conf.ipam.unwrap().plugin_type, "podnet-ipam");
    }

    #[test]
    fn without_the_runtime_the_previous_choice_stands() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(version_without_runtime(dir.path()), CniVersion::V1_0_0);
        let mut conf = sample();
        conf.cni_version = CniVersion::LATEST;
        write_conflist(dir.path(), &conf).expect("write");
        assert_eq!(version_without_runtime(dir.path()), CniVersion::LATEST);
        std::fs::write(dir.path().join(CONFLIST_NAME), b"{not json").expect("write");
        assert_eq!(version_without_runtime(dir.path()), CniVersion::V1_0_0);
    }

    #[test]
    fn containerd_before_2_gets_1_0_0() {
        assert_eq!(
            version_for_runtime("containerd", "1.6.20~ds1"),
            CniVersion::V1_0_0
        );
        assert_eq!(
            version_for_runtime("containerd", "v1.7.24"),
            CniVersion::V1_0_0
        );
        assert_eq!(
            version_for_runtime("containerd", "v2.3.4"),
            CniVersion::V1_1_0
        );
        assert_eq!(version_for_runtime("cri-o", "1.31.0"), CniVersion::V1_1_0);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.conflist");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
