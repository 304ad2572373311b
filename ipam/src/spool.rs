//! Releases that could not reach podnetd. DEL must succeed even when the
//! daemon is down, and the address must not leak: the release is written
//! here and the daemon applies it when it starts.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::attachment::AttachmentKey;

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

    /// A name of its own for every record: a short hash of the key (for a
    /// human looking), then the time and the writer's pid. Never the key
    /// itself: keys that differ only in where a '.' falls would share a
    /// name, and a long container id (CNI sets no limit) would exceed the
    /// file system's 255 bytes. Two records of one key are two releases,
    /// which is harmless: the second finds nothing to release.
    fn path_for(&self, key: &AttachmentKey) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.dir.join(format!(
            "release.{:016x}.{nanos}.{}.json",
            key_hash(key),
            std::process::id()
        ))
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
            match parse_record(&bytes) {
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

/// One record's key: its JSON, and a key podnetd would accept (a record
/// is a file anyone with root could have written).
pub fn parse_record(bytes: &[u8]) -> Result<AttachmentKey, String> {
    let key: AttachmentKey = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    key.validate()?;
    Ok(key)
}

/// FNV-1a over the key's fields, each length-prefixed: stable across
/// processes and releases (std's hasher is seeded per process).
fn key_hash(key: &AttachmentKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for field in [&key.container_id, &key.ifname] {
        let len = (field.len() as u64).to_le_bytes();
        for b in len.iter().chain(field.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_with_a_bad_key_is_never_applied() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        std::fs::write(
            dir.path().join("release.0.0.0.json"),
            br#"{"container_id":"../../etc","ifname":"eth0"}"#,
        )
        .unwrap();
        assert!(spool.pending().unwrap().is_empty());
        assert!(parse_record(br#"{"container_id":"c1","ifname":"eth0"}"#).is_ok());
    }

    #[test]
    fn a_record_is_listed_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        assert!(spool.pending().unwrap().is_empty());
        let key = AttachmentKey {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        spool.record_release(&key).unwrap();
        let pending = spool.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1, key);
        spool.done(&pending[0].0).unwrap();
        spool.done(&pending[0].0).unwrap();
        assert!(spool.pending().unwrap().is_empty());
    }

    #[test]
    fn keys_that_differ_by_a_dot_and_long_ids_are_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        let key = |c: &str, i: &str| AttachmentKey {
            container_id: c.into(),
            ifname: i.into(),
        };
        let keys = [
            key("col.x", "y"),
            key("col", "x.y"),
            key(&"c".repeat(300), "eth0"),
        ];
        for k in &keys {
            spool.record_release(k).unwrap();
        }
        let mut got: Vec<AttachmentKey> = spool
            .pending()
            .unwrap()
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        got.sort();
        let mut want = keys.to_vec();
        want.sort();
        assert_eq!(got, want);
    }
}
