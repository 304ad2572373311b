//! Cleanup when a harness program is interrupted: `Drop` does not run on
//! a signal (nor on a panic under `panic = "abort"`), so the processes it
//! started are recorded here by pid, the directories it must not leave by
//! path, and its namespaces are known by their `pnt<pid>-` prefix.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
/// Set when a signal arrived: what fails afterwards is the cleanup's doing.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Set by the emergency cleanup: no new operation should start, so nothing
/// writes into the directories it is removing.
static ABORTING: AtomicBool = AtomicBool::new(false);

/// A lock that cannot stay poisoned: the pids and paths stay valid.
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn register_pid(pid: u32) {
    locked(&PIDS).push(pid);
}

/// Called before the child is reaped, so a listed pid is always still ours.
pub fn unregister_pid(pid: u32) {
    locked(&PIDS).retain(|x| *x != pid);
}

/// A directory the emergency cleanup removes (a daemon's state, a bench's
/// data); one already gone is skipped.
pub fn register_dir(path: &Path) {
    locked(&DIRS).push(path.to_path_buf());
}

/// Work the emergency cleanup does first, for what no registered pid
/// names: containerd's shims outlive containerd, and what they run keeps
/// the namespaces busy.
pub fn before_emergency(hook: fn()) {
    locked(&HOOKS).push(hook);
}

/// Whether a signal is being handled (the program is about to exit).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Whether the emergency cleanup has begun: start no new work.
pub fn aborting() -> bool {
    ABORTING.load(Ordering::SeqCst)
}

/// Stops a child the harness started: SIGTERM by its pid, up to `grace`
/// for it to exit, then SIGKILL; reaped either way and no longer listed
/// for emergency cleanup.
pub fn stop_child(child: &mut std::process::Child, grace: Duration) {
    unregister_pid(child.id());
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills what this process started (by pid), lets the rest of its children
/// (plugin processes) finish, deletes its namespaces and registered
/// directories.
pub fn emergency_cleanup() {
    ABORTING.store(true, Ordering::SeqCst);
    let hooks = locked(&HOOKS).clone();
    for hook in hooks {
        hook();
    }
    {
        // Signalled under the lock: a pid is unregistered before it is
        // reaped, so no pid signalled here can have been reused.
        let pids = locked(&PIDS);
        for pid in pids.iter() {
            if let Ok(pid) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    wait_for_children();
    let prefix = format!("pnt{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ = Command::new("ip").args(["netns", "del", &name]).output();
            }
        }
    }
    let dirs = locked(&DIRS).clone();
    for dir in dirs.iter().filter(|d| d.exists()) {
        // Once more if a last writer (sled's flusher) raced the first.
        if std::fs::remove_dir_all(dir).is_err() {
            std::thread::sleep(Duration::from_millis(100));
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Waits (a few seconds at most) until no unreaped child of ours is still
/// running: plugin processes already started finish on their own.
fn wait_for_children() {
    let me = std::process::id().to_string();
    let running_child = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
                std::fs::read_to_string(e.path().join("stat"))
                    .ok()
                    .and_then(|t| {
                        let mut rest = t.rsplit_once(')')?.1.split_whitespace();
                        let state = rest.next()?;
                        Some(state != "Z" && rest.next()? == me)
                    })
                    .unwrap_or(false)
            })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && running_child() {
        std::thread::sleep(Duration::from_millis(20));
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
            STOPPING.store(true, Ordering::SeqCst);
            eprintln!("{program}: {sig}; stopping what it started and removing its namespaces");
            emergency_cleanup();
            std::process::exit(130);
        }
    });
}

/// `on_signal_clean_up`, and the same cleanup after a panic (the release
/// profile aborts on panic, so no drop would run). Call first in `main`.
pub fn on_signal_or_panic_clean_up(program: &'static str) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if stopping() {
            // Fallout of the signal thread's cleanup, which will exit.
            loop {
                std::thread::park();
            }
        }
        default(info);
        eprintln!("{program}: panicked; stopping what it started and removing its namespaces");
        emergency_cleanup();
        std::process::exit(101);
    }));
    on_signal_clean_up(program);
}
