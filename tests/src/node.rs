//! A simulated node: a network namespace with podnet's bridge, the plugins
//! on a CNI_PATH, and a host-local data directory of its own.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::bins;
use crate::netns::TestNetns;
use crate::plugin::{self, Invocation, PluginOutput};

pub struct TestNode {
    pub ns: TestNetns,
    pub data_dir: TempDir,
    /// The third octet of this node's pod subnet, 10.244.N.0/24.
    pub subnet: u8,
    cni_path: String,
}

impl TestNode {
    pub fn new(subnet: u8) -> Self {
        crate::require_root();
        let podnet = bins::podnet();
        let own_dir = podnet.parent().expect("bin dir").display().to_string();
        bins::reference("host-local");
        Self {
            ns: TestNetns::new("node"),
            data_dir: TempDir::new().expect("tempdir"),
            subnet,
            cni_path: format!("{own_dir}:{}", bins::REFERENCE_PLUGINS),
        }
    }

    pub fn cni_path(&self) -> &str {
        &self.cni_path
    }

    pub fn subnet4(&self) -> String {
        format!("10.244.{}.0/24", self.subnet)
    }

    pub fn subnet6(&self) -> String {
        format!("fd00:10:244:{}::/64", self.subnet)
    }

    /// host-local's section for this node, dual-stack unless `v4_only`.
    pub fn host_local(&self, v4_only: bool) -> Value {
        let mut ranges = vec![json!([{ "subnet": self.subnet4() }])];
        if !v4_only {
            ranges.push(json!([{ "subnet": self.subnet6() }]));
        }
        json!({
            "type": "host-local",
            "ranges": ranges,
            "dataDir": self.data_dir.path(),
        })
    }

    /// A podnet network configuration on host-local IPAM.
    pub fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "podnet",
            "type": "podnet",
            "bridge": "podnet0",
            "ipam": self.host_local(false),
        })
    }

    pub fn invoke(
        &self,
        plugin: &Path,
        command: &str,
        container_id: &str,
        netns: Option<&str>,
        conf: &Value,
    ) -> PluginOutput {
        let stdin = conf.to_string();
        plugin::exec(
            &self.ns,
            &Invocation {
                plugin,
                command,
                container_id,
                netns,
                ifname: "eth0",
                cni_path: &self.cni_path,
                stdin: stdin.as_bytes(),
                env: &[],
            },
        )
    }

    /// podnet for one verb.
    pub fn podnet(
        &self,
        command: &str,
        container_id: &str,
        netns: Option<&str>,
        conf: &Value,
    ) -> PluginOutput {
        self.invoke(&bins::podnet(), command, container_id, netns, conf)
    }

    /// ADD `pod` with podnet; asserts success, returns the result.
    pub fn add(&self, pod: &TestNetns, container_id: &str, conf: &Value) -> Value {
        self.podnet("ADD", container_id, Some(&path_str(pod.path())), conf)
            .ok()
    }

    /// DEL with podnet; asserts success.
    pub fn del(&self, pod: Option<&TestNetns>, container_id: &str, conf: &Value) {
        let netns = pod.map(|p| path_str(p.path()));
        self.podnet("DEL", container_id, netns.as_deref(), conf)
            .ok();
    }

    /// The addresses host-local has reserved for network `name`.
    pub fn reserved(&self, name: &str) -> Vec<String> {
        let dir: PathBuf = self.data_dir.path().join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut ips: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        ips.sort();
        ips
    }

    /// Host-side veths podnet created (name prefix `pn`).
    pub fn host_veths(&self) -> Vec<String> {
        self.ns
            .link_names()
            .into_iter()
            .filter(|n| n.starts_with(podnet_cni::names::HOST_VETH_PREFIX))
            .collect()
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
