//! Facts about the machine and the build that every report records: on a
//! small shared machine, figures compare only between runs whose facts
//! (load, nice value, build) match.

use std::path::Path;
use std::process::Command;

/// A command's trimmed stdout, or "unknown" when it fails.
pub fn shell(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

pub fn date_utc() -> String {
    shell("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
}

pub fn nproc() -> String {
    shell("nproc", &[])
}

pub fn kernel() -> String {
    shell("uname", &["-r"])
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_string())
}

/// This process's nice value (the processes it starts inherit it).
pub fn niceness() -> String {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| {
            // Field 19; fields after "(comm)" start at 3.
            t.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(16)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The checkout's short revision, and whether it has uncommitted changes.
pub fn git_revision() -> (String, bool) {
    let repo = env!("CARGO_MANIFEST_DIR");
    let rev = shell("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
    let dirty = !shell("git", &["-C", repo, "status", "--porcelain"]).is_empty();
    (rev, dirty)
}

/// The cargo profile the bench was built with; the binaries it measures
/// are taken from next to it unless `PODNET_BIN_DIR` says otherwise.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Filesystem type and device holding `path` ("ext4 on /dev/vda"): sled's
/// flushes cost what the filesystem makes them cost.
pub fn filesystem(path: &Path) -> String {
    shell(
        "findmnt",
        &[
            "-n",
            "-o",
            "FSTYPE,SOURCE",
            "--target",
            &path.display().to_string(),
        ],
    )
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" on ")
}

/// A Debian package's installed version.
pub fn package_version(package: &str) -> String {
    shell("dpkg-query", &["-W", "-f", "${Version}", package])
}
