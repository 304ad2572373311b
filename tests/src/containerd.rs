//! A real containerd (Debian `containerd` + `runc`) per simulated node:
//! its own root, state dir, socket and CNI dirs under a tempdir, running
//! inside the node's network namespace (entered with `nsenter --net`, not
//! `ip netns exec`, which remounts /sys and hides the cgroup v1 mounts),
//! with the CRI plugin loading the conflist the node's podnetd wrote. Pod
//! namespaces are pinned under its state dir (`netns_mounts_under_state_dir`),
//! not in /run/netns, so whatever containerd leaves goes with the tempdir.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podnet_cni::netlink::netns::NetNs;
use tempfile::TempDir;

use crate::bins;
use crate::cri::CriClient;
use crate::pause;

/// Plugins the tests never use: off, so containerd starts fast and quiet.
/// (Not `io.containerd.runtime.v1.linux`: 1.6's tasks service, hence CRI,
/// fails to load without it.)
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
    "io.containerd.internal.v1.opt",
];

/// Reference plugins linked into every containerd's CNI bin dir: containerd
/// always runs `loopback`; podnet's conflist chains `portmap`; the bench's
/// reference network is `bridge` + `host-local`.
const REFERENCE: &[&str] = &["loopback", "portmap", "host-local", "bridge"];

/// Settings for one containerd.
#[derive(Clone, Debug)]
pub struct ContainerdOpts {
    /// The CNI conf dir containerd loads (the node's podnetd's, or the
    /// bench's reference conflist's).
    pub cni_conf_dir: PathBuf,
    /// Serve Prometheus metrics on 127.0.0.1:<free port> in the node.
    pub metrics: bool,
    /// Force a snapshotter; by default overlayfs, native when it fails.
    pub snapshotter: Option<String>,
}

pub struct TestContainerd {
    pub dir: TempDir,
    netns: PathBuf,
    pub opts: ContainerdOpts,
    child: Option<Child>,
    log: PathBuf,
    /// The snapshotter in use ("overlayfs" or "native").
    pub snapshotter: String,
    /// Where containerd serves metrics (inside the node's namespace).
    pub metrics_addr: Option<SocketAddr>,
    cri: CriClient,
}

impl TestContainerd {
    /// Starts containerd inside the namespace at `netns` and waits until
    /// its CRI answers, then imports the pause image.
    pub fn start(netns: &Path, opts: ContainerdOpts) -> Self {
        crate::require_root();
        let dir = TempDir::new().expect("tempdir");
        let bin_dir = dir.path().join("cni-bin");
        std::fs::create_dir_all(&bin_dir).expect("cni bin dir");
        for name in ["podnet", "podnet-ipam"] {
            std::os::unix::fs::symlink(bins::workspace_bin(name), bin_dir.join(name))
                .expect("link plugin");
        }
        for name in REFERENCE {
            std::os::unix::fs::symlink(bins::reference(name), bin_dir.join(name))
                .expect("link reference plugin");
        }
        let metrics_addr = opts.metrics.then(|| free_port_in(netns));
        let cri = CriClient::new(&dir.path().join("containerd.sock"));
        let mut c = Self {
            log: dir.path().join("containerd.log"),
            dir,
            netns: netns.to_path_buf(),
            snapshotter: opts
                .snapshotter
                .clone()
                .unwrap_or_else(|| "overlayfs".into()),
            opts,
            child: None,
            metrics_addr,
            cri,
        };
        c.launch();
        if c.opts.snapshotter.is_none() && !c.snapshotter_ok("overlayfs") {
            c.stop_process();
            c.snapshotter = "native".into();
            c.launch();
        }
        c
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn cni_bin_dir(&self) -> PathBuf {
        self.dir.path().join("cni-bin")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn cri(&self) -> &CriClient {
        &self.cri
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn config_toml(&self) -> String {
        let q = |p: PathBuf| format!("{:?}", p.display().to_string());
        let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| format!("{p:?}")).collect();
        let metrics = match self.metrics_addr {
            Some(a) => format!("[metrics]\n  address = \"{a}\"\n  grpc_histogram = false\n"),
            None => String::new(),
        };
        format!(
            r#"version = 2
root = {root}
state = {state}
disabled_plugins = [{disabled}]

[grpc]
  address = {sock}

[ttrpc]
  address = {ttrpc}

{metrics}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {bin}
    conf_dir = {conf}
    max_conf_num = 1
"#,
            root = q(self.root()),
            state = q(self.state()),
            disabled = disabled.join(", "),
            sock = q(self.socket()),
            ttrpc = q(self.dir.path().join("containerd.ttrpc.sock")),
            image = pause::PAUSE_IMAGE,
            snapshotter = self.snapshotter,
            bin = q(self.cni_bin_dir()),
            conf = q(self.opts.cni_conf_dir.clone()),
        )
    }

    /// Starts the process (on whatever root and state are there), waits
    /// for CRI Version, imports the pause image.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "containerd already running");
        let config = self.dir.path().join("config.toml");
        std::fs::write(&config, self.config_toml()).expect("containerd config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("containerd log");
        // nsenter execs containerd: the child's pid is containerd's.
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .arg("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd (scripts/install-deps installs it)");
        crate::cleanup::register_pid(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.cri.version().is_ok() {
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("containerd exited with {status}: {}", self.log_tail(30));
            }
            assert!(
                Instant::now() < deadline,
                "containerd's CRI did not answer: {}",
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.ctr(&[
            "images",
            "import",
            "--all-platforms",
            "--snapshotter",
            &self.snapshotter.clone(),
            &pause::image_tar().display().to_string(),
        ]);
    }

    /// `ctr --address SOCK -n k8s.io ARGS`; panics on failure.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `ctr plugins ls` shows the snapshotter loaded ("ok").
    fn snapshotter_ok(&self, name: &str) -> bool {
        self.ctr(&["plugins", "ls"]).lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 4 && f[0] == "io.containerd.snapshotter.v1" && f[1] == name && f[3] == "ok"
        })
    }

    /// containerd's Prometheus metrics text (scraped inside the node).
    pub fn metrics(&self) -> String {
        let addr = self.metrics_addr.expect("started without metrics");
        let ns = NetNs::open(&self.netns).expect("node netns");
        ns.run(|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(s, "GET /v1/metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })
        .expect("enter node netns")
        .unwrap_or_else(|e| panic!("scrape {addr}: {e}"))
    }

    /// SIGKILL containerd only, the way a crash looks: its shims and pods
    /// keep running, nothing gets a CNI DEL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::unregister_pid(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// After `kill9`: kills the shims and sandbox processes it left (by the
    /// pids in its state dir), unmounts and deletes its root and state, so
    /// that the next `launch` knows nothing of the old pods. The pods'
    /// network namespaces stay (as after a node's disk is wiped).
    pub fn wipe_state(&mut self) {
        assert!(self.child.is_none(), "kill9 first");
        self.kill_leftovers(false);
        // Everything but the pinned pod namespaces.
        let _ = std::fs::remove_dir_all(self.root());
        for entry in read_dir(&self.state()) {
            if entry.file_name() == Some("io.containerd.grpc.v1.cri".as_ref()) {
                for inner in read_dir(&entry) {
                    if inner != self.netns_dir() {
                        let _ = std::fs::remove_dir_all(&inner);
                    }
                }
            } else {
                let _ = std::fs::remove_dir_all(&entry);
            }
        }
    }

    /// Where containerd pins its pods' network namespaces.
    pub fn netns_dir(&self) -> PathBuf {
        self.state().join("io.containerd.grpc.v1.cri").join("netns")
    }

    /// Kills every shim and task process recorded under the state dir,
    /// removes their cgroups, unmounts everything under the tempdir (but
    /// the pinned pod namespaces unless `netns`).
    fn kill_leftovers(&self, netns: bool) {
        let tasks = self.state().join("io.containerd.runtime.v2.task");
        let mut ids = Vec::new();
        for ns in read_dir(&tasks) {
            for bundle in read_dir(&ns) {
                if let Some(pid) = std::fs::read_to_string(bundle.join("init.pid"))
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                {
                    sigkill(pid);
                }
                if let (Some(ns), Some(id)) = (ns.file_name(), bundle.file_name()) {
                    ids.push((ns.to_os_string(), id.to_os_string()));
                }
            }
        }
        // 1.6's runc v2 shims write no pid file: they are known by the
        // address of this containerd on their command line.
        for pid in shim_pids(&self.socket()) {
            sigkill(pid);
        }
        std::thread::sleep(Duration::from_millis(100));
        for (ns, id) in &ids {
            for controller in read_dir(Path::new("/sys/fs/cgroup")) {
                let _ = std::fs::remove_dir(controller.join(ns).join(id));
            }
        }
        let keep = (!netns).then(|| self.netns_dir());
        unmount_under(self.dir.path(), keep.as_deref());
    }

    /// Best effort, while containerd still runs: stop and remove every
    /// sandbox (so CNI DEL runs and no pod outlives the test).
    fn remove_all_sandboxes(&self) {
        let Ok(list) = self.cri.list_pod_sandbox() else {
            return;
        };
        for s in list {
            let _ = self.cri.stop_pod_sandbox(&s.id);
            let _ = self.cri.remove_pod_sandbox(&s.id);
        }
    }

    fn stop_process(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::stop_child(&mut child, Duration::from_secs(10));
        }
    }

    /// Removes what pods are left, then SIGTERM (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if self.child.is_some() {
            self.remove_all_sandboxes();
        }
        self.stop_process();
        self.kill_leftovers(true);
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shims serving the containerd at `socket` (`containerd-shim-runc-v2
/// ... -address <socket>`): 1.6's runc v2 shims write no pid file.
pub fn shim_pids(socket: &Path) -> Vec<i32> {
    let socket = socket.as_os_str().as_encoded_bytes();
    read_dir(Path::new("/proc"))
        .into_iter()
        .filter_map(|p| {
            let pid: i32 = p.file_name()?.to_str()?.parse().ok()?;
            let cmdline = std::fs::read(p.join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args.first()?.ends_with(b"containerd-shim-runc-v2");
            let ours = args
                .windows(2)
                .any(|w| w[0] == b"-address" && w[1] == socket);
            (is_shim && ours).then_some(pid)
        })
        .collect()
}

/// SIGKILL by pid.
pub fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Lazily unmounts every mount point under `dir` (but `keep`), deepest
/// first.
fn unmount_under(dir: &Path, keep: Option<&Path>) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir) && !keep.is_some_and(|k| p.starts_with(k)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A free TCP port on 127.0.0.1 inside the namespace at `netns`.
fn free_port_in(netns: &Path) -> SocketAddr {
    let ns = NetNs::open(netns).expect("node netns");
    ns.run(|| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()))
        .expect("enter node netns")
        .expect("free port")
}

/// A network namespace someone else made (a pod's, which containerd
/// created and pinned under its state dir): entered, never deleted.
pub struct ForeignNetns {
    path: PathBuf,
}

impl crate::net::Namespace for ForeignNetns {
    fn label(&self) -> String {
        self.path.display().to_string()
    }

    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.run(f)
    }
}

impl ForeignNetns {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        NetNs::open(&self.path)
            .and_then(|ns| ns.run(f))
            .unwrap_or_else(|e| panic!("entering {}: {e}", self.path.display()))
    }

    /// Unpins the namespace (unmount and remove its file): once no
    /// process is in it, it and its links go, as on a node's reboot.
    pub fn unpin(&self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}
