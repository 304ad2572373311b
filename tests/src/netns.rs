//! Network namespaces a test creates and always removes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use podnet_cni::netlink::netns::NetNs;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named namespace (`/run/netns/NAME`), deleted on drop, so a failing
/// test leaves nothing behind.
pub struct TestNetns {
    name: String,
    path: PathBuf,
}

impl TestNetns {
    /// A fresh namespace named `pnt<pid>-<role><n>`.
    pub fn new(role: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("pnt{}-{role}{n}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from("/run/netns").join(&name);
        let ns = Self { name, path };
        // Loopback up, as a runtime's loopback plugin would.
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        NetNs::open(&self.path)
            .and_then(|ns| ns.run(f))
            .unwrap_or_else(|e| panic!("entering {}: {e}", self.name))
    }

    /// `ip netns exec NAME ...`, for observing.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {program}: {e}", self.name))
    }

    /// `ip ARGS` inside the namespace; panics on failure, returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = self.exec("ip", args);
        assert!(
            out.status.success(),
            "ip {} in {}: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A veth pair: `name` here, `peer_name` in `peer`, both down and
    /// without addresses.
    pub fn veth_to(&self, name: &str, peer: &TestNetns, peer_name: &str) {
        self.ip(&[
            "link",
            "add",
            "name",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer_name,
            "netns",
            peer.name(),
        ]);
    }

    /// `ip -j ARGS` parsed.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let text = self.ip(&full);
        if text.trim().is_empty() {
            return serde_json::Value::Array(vec![]);
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}"))
    }

    /// Names of the links in this namespace.
    pub fn link_names(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| l["ifname"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The global addresses on `dev`, as "addr/prefix".
    pub fn addresses(&self, dev: &str) -> Vec<String> {
        self.ip_json(&["addr", "show", "dev", dev])
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] == "global")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
            .collect()
    }

    /// Deletes the namespace now (as a pod's would vanish).
    pub fn delete(self) {
        drop(self)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
