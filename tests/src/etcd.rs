//! A real etcd (Debian `etcd-server`) the test starts on loopback, and
//! always stops, by its pid. Its data directory outlives `stop()`, so a
//! test can take etcd away for a while and bring the same cluster back with
//! `restart()`; `pause()`/`resume()` freeze it instead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// How long a (re)started etcd may take to elect itself and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestEtcd {
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    paused: bool,
}

impl TestEtcd {
    /// Starts a one-member cluster on two free loopback ports and waits
    /// until it serves a read (named like `TestDaemon::start`).
    pub fn start() -> Self {
        // Two listeners at once, so the two ports differ; both are closed
        // before etcd binds them (etcd sets SO_REUSEADDR).
        let (client, peer) = (free_listener(), free_listener());
        let client_port = client.local_addr().expect("local addr").port();
        let peer_port = peer.local_addr().expect("local addr").port();
        drop((client, peer));
        let dir = tempfile::tempdir().expect("etcd temp dir");
        crate::cleanup::register_dir(dir.path());
        let mut etcd = Self {
            dir,
            client_port,
            peer_port,
            child: None,
            paused: false,
        };
        etcd.restart();
        etcd
    }

    /// `http://127.0.0.1:PORT`, the client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last lines etcd wrote, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts etcd again after [`stop`](Self::stop), on the same ports and
    /// data directory (same members, keys and leases); waits until it serves
    /// a read. A no-op when it is running.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(ETCD_BIN);
        cmd.arg("--name=podnet-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=podnet-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=podnet-test")
            // A faster election: a restarted member serves in well under 1 s.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("etcd log file")))
            .stderr(Stdio::from(log));
        if let Some(arch) = unsupported_arch() {
            cmd.env("ETCD_UNSUPPORTED_ARCH", arch);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD_BIN} (Debian etcd-server): {e}"));
        crate::cleanup::register_pid(child.id());
        self.child = Some(child);
        self.paused = false;
        self.wait_ready();
    }

    /// SIGTERM by pid and wait for the exit. The data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::unregister_pid(child.id());
            if self.paused {
                signal(&child, Signal::SIGCONT);
                self.paused = false;
            }
            signal(&child, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                }
            }
        }
    }

    /// SIGSTOP: etcd keeps its sockets but answers nothing, like a frozen
    /// or partitioned host.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            signal(child, Signal::SIGSTOP);
            self.paused = true;
        }
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            signal(child, Signal::SIGCONT);
            self.paused = false;
        }
    }

    /// True once etcd answers a linearizable read (which needs a leader),
    /// through its v3 JSON gateway on the client port.
    pub fn is_ready(&self) -> bool {
        let body = r#"{"key":"aGVhbHRo"}"#; // "health", base64
        let request = format!(
            "POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let addr = ([127, 0, 0, 1], self.client_port).into();
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"header\"")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!("etcd exited with {status} at start:\n{}", self.log_tail());
                }
            }
            if self.is_ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tail = self.log_tail();
        self.stop();
        panic!("etcd not ready within {READY_TIMEOUT:?}:\n{tail}");
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::unregister_pid(child.id());
            // SIGKILL by pid works on a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port")
}

fn signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

/// etcd 3.4 refuses to start on architectures other than amd64 (and, in
/// some builds, arm64) unless told to.
fn unsupported_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => None,
        "aarch64" => Some("arm64"),
        "powerpc64" => Some("ppc64le"),
        "s390x" => Some("s390x"),
        other => Some(other),
    }
}
