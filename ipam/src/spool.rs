//! Releases that could not reach podnetd. DEL must succeed even when the
//! daemon is down, and the address must not leak: the release is written
//! here and the daemon applies it when it starts.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::pool::AttachmentKey;

/// Where the plugins spool unless told otherwise.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/podnet/spool";

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File names come from the key; container ids and ifnames never
    /// contain '/' (the plugin checks both), so they are safe path parts.
    fn path_for(&self, key: &AttachmentKey) -> PathBuf {
        self.dir
            .join(format!("release.{}.{}.json", key.container_id, key.ifname))
    }

    /// Records a release durably: written to a temp file in the same
    /// directory, synced, then renamed, so the daemon never reads half a
    /// record.
    pub fn record_release(&self, key: &AttachmentKey) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path_for(key);
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(key).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        // The rename itself must survive a crash too.
        fs::File::open(&self.dir)?.sync_all()
    }

    /// The releases waiting to be applied (unreadable files are skipped
    /// and left for a human, never deleted).
    pub fn pending(&self) -> std::io::Result<Vec<(PathBuf, AttachmentKey)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            match serde_json::from_slice::<AttachmentKey>(&bytes) {
                Ok(key) => out.push((path, key)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable spool record")
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes an applied record.
    pub fn done(&self, path: &Path) -> std::io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_and_are_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        assert!(spool.pending().unwrap().is_empty());
        let key = AttachmentKey {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        spool.record_release(&key).unwrap();
        spool.record_release(&key).unwrap();
        let pending = spool.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1, key);
        spool.done(&pending[0].0).unwrap();
        spool.done(&pending[0].0).unwrap();
        assert!(spool.pending().unwrap().is_empty());
    }
}
