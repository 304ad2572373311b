//! Cleanup when a harness program is interrupted: `Drop` does not run on
//! a signal (nor on a panic under `panic = "abort"`), so the processes it
//! started are recorded here by pid and its namespaces are known by their
//! `pnt<pid>-` prefix.

use std::process::Command;
use std::sync::Mutex;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub fn register_pid(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.push(pid);
    }
}

pub fn unregister_pid(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.retain(|x| *x != pid);
    }
}

/// Stops a child the harness started: SIGTERM by its pid, up to `grace`
/// for it to exit, then SIGKILL; reaped either way and no longer listed
/// for emergency cleanup.
pub fn stop_child(child: &mut std::process::Child, grace: std::time::Duration) {
    unregister_pid(child.id());
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills what this process started (by pid) and deletes its namespaces.
pub fn emergency_cleanup() {
    let pids: Vec<u32> = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let prefix = format!("pnt{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ = Command::new("ip").args(["netns", "del", &name]).output();
            }
        }
    }
}

/// Call first in `main`, before any thread starts: SIGINT, SIGTERM and
/// SIGHUP then reach only a waiting thread, which cleans up and exits.
pub fn on_signal_clean_up(program: &'static str) {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            eprintln!("{program}: {sig}; stopping what it started and removing its namespaces");
            emergency_cleanup();
            std::process::exit(130);
        }
    });
}
