//! A podnetd the test starts, and always stops, by its pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podnet_ipam::client::Client;
use podnet_ipam::proto::{Request, Response};
use tempfile::TempDir;

use crate::bins;
use crate::netns::TestNetns;

/// Settings a test may change before starting the daemon.
#[derive(Clone)]
pub struct DaemonOpts {
    pub node_name: String,
    pub cluster_cidr: String,
    pub max_pods: u32,
    pub reclaim_interval_secs: u64,
    pub reclaim_grace_secs: u64,
    pub metrics_addr: Option<String>,
    /// `Some`: run podnetd outside the node, managing it through
    /// `--netns` (it then reaches etcd on the machine's loopback).
    pub manage_netns: Option<PathBuf>,
    pub etcd_endpoint: Option<String>,
    /// `--store kubernetes` with this kubeconfig (a fake API server's).
    pub kubeconfig: Option<PathBuf>,
    /// `--daemonset NAMESPACE/NAME` (with `kubeconfig`).
    pub daemonset: Option<String>,
    pub node_ip: Option<String>,
    pub lease_ttl_secs: i64,
    pub resync_interval_secs: u64,
    /// The container runtime's CRI socket (`--cri-socket`): the reclaimer
    /// then also releases pods the runtime no longer lists.
    pub cri_socket: Option<PathBuf>,
    /// Open-files limit (soft and hard) to run podnetd under, as a unit
    /// file or a container runtime may set it (`prlimit`).
    pub nofile: Option<u64>,
    /// Run podnetd in the mount namespace (and root directory) of this
    /// process (`nsenter -t PID -m -r`), e.g. one where its state directory
    /// is a small file system of the test's.
    pub mount_ns_of: Option<u32>,
    /// The state directory, instead of one in the daemon's temp dir.
    pub state_dir: Option<PathBuf>,
    /// `PODNET_LOG`: debug for tests (their failures show the daemon's
    /// reasoning); benches use podnetd's own default, info.
    pub log: String,
}

/// The daemon's log level in benches: podnetd's own default, so the
/// figures are the ones a node would see.
pub const BENCH_LOG: &str = "info";

impl Default for DaemonOpts {
    fn default() -> Self {
        Self {
            node_name: "node-a".into(),
            cluster_cidr: "10.244.0.0/16,fd00:10:244::/56".into(),
            max_pods: 110,
            reclaim_interval_secs: 30,
            reclaim_grace_secs: 60,
            metrics_addr: None,
            manage_netns: None,
            etcd_endpoint: None,
            kubeconfig: None,
            daemonset: None,
            node_ip: None,
            lease_ttl_secs: 15,
            resync_interval_secs: 30,
            cri_socket: None,
            nofile: None,
            mount_ns_of: None,
            state_dir: None,
            log: "debug".into(),
        }
    }
}

/// The daemon's directories outlive restarts; the process does not.
pub struct TestDaemon {
    pub opts: DaemonOpts,
    pub dir: TempDir,
    child: Option<Child>,
    log: PathBuf,
}

impl TestDaemon {
    pub fn state_dir(&self) -> PathBuf {
        self.opts
            .state_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("state"))
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("ipam.sock")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts a daemon inside `node` and waits until it serves.
    pub fn start(node: &TestNetns, opts: DaemonOpts) -> Self {
        crate::require_root();
        let dir = TempDir::new().expect("tempdir");
        crate::cleanup::register_dir(dir.path());
        let log = dir.path().join("podnetd.log");
        let mut d = Self {
            opts,
            dir,
            child: None,
            log,
        };
        d.restart(node);
        d
    }

    /// Starts the process again on the same state.
    pub fn restart(&mut self, node: &TestNetns) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let argv = self.wrapped_podnetd();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .args(self.run_args())
            .env("PODNET_LOG", &self.opts.log)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = match &self.opts.manage_netns {
            Some(path) => {
                cmd.arg("--netns").arg(path);
                cmd.spawn()
            }
            None => node.run(|| cmd.spawn()),
        }
        .expect("spawn podnetd");
        crate::cleanup::register_pid(child.id());
        self.child = Some(child);
        self.wait_ready();
    }

    /// podnetd, behind the wrappers the options ask for; they exec it, so
    /// the pid stays the daemon's.
    fn wrapped_podnetd(&self) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(pid) = self.opts.mount_ns_of {
            // The root too: entering a mount namespace alone would leave a
            // chroot (CI's fresh root) for the namespace's own root.
            argv.extend(["nsenter".into(), "-t".into(), pid.to_string().into()]);
            argv.extend(["-m".into(), "-r".into(), "-w".into(), "--".into()]);
        }
        if let Some(n) = self.opts.nofile {
            argv.extend([
                "prlimit".into(),
                format!("--nofile={n}:{n}").into(),
                "--".into(),
            ]);
        }
        argv.push(bins::workspace_bin("podnetd").into());
        argv
    }

    /// `podnetd run` and its flags, from the options.
    fn run_args(&self) -> Vec<std::ffi::OsString> {
        let o = &self.opts;
        let mut args: Vec<std::ffi::OsString> = vec!["run".into()];
        let mut flag = |name: &str, value: std::ffi::OsString| {
            args.push(format!("--{name}").into());
            args.push(value);
        };
        flag("node-name", o.node_name.clone().into());
        flag("cluster-cidr", o.cluster_cidr.clone().into());
        flag("max-pods", o.max_pods.to_string().into());
        flag("state-dir", self.state_dir().into());
        flag("run-dir", self.run_dir().into());
        flag("spool-dir", self.spool_dir().into());
        flag(
            "reclaim-interval-secs",
            o.reclaim_interval_secs.to_string().into(),
        );
        flag(
            "reclaim-grace-secs",
            o.reclaim_grace_secs.to_string().into(),
        );
        flag("cni-conf-dir", self.cni_conf_dir().into());
        flag("cni-bin-dir", bins::REFERENCE_PLUGINS.into());
        flag("lease-ttl-secs", o.lease_ttl_secs.to_string().into());
        flag(
            "resync-interval-secs",
            o.resync_interval_secs.to_string().into(),
        );
        if let Some(addr) = &o.metrics_addr {
            flag("metrics-addr", addr.clone().into());
        }
        if let Some(ep) = &o.etcd_endpoint {
            flag("store", "etcd".into());
            flag("etcd-endpoints", ep.clone().into());
        }
        if let Some(kubeconfig) = &o.kubeconfig {
            flag("store", "kubernetes".into());
            flag("kubeconfig", kubeconfig.clone().into());
        }
        if let Some(ds) = &o.daemonset {
            flag("daemonset", ds.clone().into());
        }
        if let Some(ip) = &o.node_ip {
            flag("node-ip", ip.clone().into());
        }
        if let Some(socket) = &o.cri_socket {
            flag("cri-socket", socket.clone().into());
        }
        args
    }

    /// Ready as the kubelet sees it: IPAM answers and this run has written
    /// the CNI configuration (the last step of podnetd's start).
    fn wait_ready(&mut self) {
        let started = std::time::SystemTime::now() - Duration::from_millis(50);
        let conflist = self.cni_conf_dir().join("10-podnet.conflist");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let written = std::fs::metadata(&conflist)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= started);
            if written {
                if let Ok(Response::Status { ready: true, .. }) =
                    Client::new(self.socket()).call(&Request::Status)
                {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("podnetd exited with {status}: {}", self.log_text());
                }
            }
            assert!(
                Instant::now() < deadline,
                "podnetd not ready: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the daemon to exit by itself; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("a running daemon");
            if let Some(status) = child.try_wait().expect("wait for podnetd") {
                crate::cleanup::unregister_pid(child.id());
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "podnetd still running: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, the way a crash looks.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::unregister_pid(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait, the way a rolling update looks.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::stop_child(&mut child, Duration::from_secs(10));
        }
    }

    /// The running process's pid (`None` once stopped or killed), e.g. for
    /// a bench's emergency cleanup, which cannot rely on `Drop`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The podnet plugin configuration the daemon wrote, as libcni would
    /// hand it to the first plugin of the list.
    pub fn written_conf(&self) -> serde_json::Value {
        let path = self.cni_conf_dir().join("10-podnet.conflist");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let list: serde_json::Value = serde_json::from_str(&text).expect("conflist JSON");
        let mut conf = list["plugins"][0].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        conf
    }

    pub fn client(&self) -> Client {
        Client::new(self.socket())
    }

    /// The daemon's allocations as (container id, addresses).
    pub fn allocations(&self) -> Vec<podnet_ipam::attachment::Allocation> {
        match self.client().call(&Request::List).expect("list") {
            Response::Listing { allocations, .. } => allocations,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The node's CIDRs, as the daemon reports them.
    pub fn allocations_cidrs(&self) -> Vec<ipnetwork::IpNetwork> {
        match self.client().call(&Request::Status).expect("status") {
            Response::Status { node_cidrs, .. } => node_cidrs,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// podnet's network configuration on this daemon's IPAM, in `version`.
    pub fn net_conf(&self, version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": version,
            "name": "podnet",
            "type": "podnet",
            "bridge": "podnet0",
            "ipam": self.ipam_conf(),
        })
    }

    /// The ipam section of a network configuration using this daemon.
    pub fn ipam_conf(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "podnet-ipam",
            "socket": self.socket(),
            "spoolDir": self.spool_dir(),
        })
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
