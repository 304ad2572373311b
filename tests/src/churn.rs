//! Pod churn on one simulated node, shared by the crash-injection tool and
//! the soak: plugin processes started without waiting (so they can be
//! killed mid-flight), and the node's state observed from outside
//! (podnetd's allocations, host veths, routes, conntrack, nftables).

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::bins;
use crate::daemon::TestDaemon;
use crate::netns::TestNetns;

/// A small, seedable generator (xorshift64*): runs are repeatable from the
/// seed a report prints, without another dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// A seed from the clock, for runs not asked to repeat one.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// One plugin process in flight.
pub struct Running {
    pub child: Child,
    pub verb: &'static str,
    pub container_id: String,
}

/// How a plugin process ended.
pub struct Ended {
    pub verb: &'static str,
    pub container_id: String,
    /// Exit status 0 and, for ADD, the pod's first address.
    pub ok: bool,
    pub address: Option<IpAddr>,
    /// Ended by a signal (our SIGKILL).
    pub killed: bool,
    pub stdout: String,
}

/// Starts `podnet VERB` inside `node` for a pod at `netns` (its stdin
/// written and closed), without waiting for it.
pub fn spawn_plugin(
    node: &TestNetns,
    verb: &'static str,
    container_id: &str,
    netns: &Path,
    conf: &[u8],
) -> Running {
    let mut cmd = Command::new(bins::podnet());
    cmd.env_clear()
        .env("CNI_COMMAND", verb)
        .env("CNI_PATH", bins::REFERENCE_PLUGINS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // GC concerns the whole network, not one attachment.
    if verb != "GC" {
        cmd.env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0");
    }
    let mut child = node
        .run(|| cmd.spawn())
        .unwrap_or_else(|e| panic!("spawn podnet: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin killed before reading its stdin closes the pipe.
        let _ = stdin.write_all(conf);
    }
    Running {
        child,
        verb,
        container_id: container_id.to_string(),
    }
}

impl Running {
    /// Waits (at most `limit`: a plugin that hangs is a finding, and is
    /// killed so the run can report it).
    pub fn finish(mut self, limit: Duration) -> Result<Ended, String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "{} {} still running after {limit:?}",
                        self.verb, self.container_id
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => return Err(format!("wait for podnet: {e}")),
            }
        }
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| format!("podnet output: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let ok = out.status.success();
        let address = if ok && self.verb == "ADD" {
            first_address(&stdout)
        } else {
            None
        };
        Ok(Ended {
            verb: self.verb,
            container_id: self.container_id,
            ok,
            address,
            killed: out.status.code().is_none(),
            stdout,
        })
    }
}

/// The first address of an ADD result.
fn first_address(stdout: &str) -> Option<IpAddr> {
    let doc: Value = serde_json::from_str(stdout).ok()?;
    let cidr: IpNetwork = doc["ips"][0]["address"].as_str()?.parse().ok()?;
    Some(cidr.ip())
}

/// What podnetd holds: address -> every key holding it.
pub fn holders(daemon: &TestDaemon) -> HashMap<IpAddr, Vec<String>> {
    let mut out: HashMap<IpAddr, Vec<String>> = HashMap::new();
    for a in daemon.allocations() {
        for ip in &a.ips {
            out.entry(ip.ip())
                .or_default()
                .push(format!("{}/{}", a.key.container_id, a.key.ifname));
        }
    }
    out
}

/// The node's kernel objects a pod can leave behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelObjects {
    pub host_veths: usize,
    /// Routes (any table) to a single pod address inside the node CIDRs.
    pub pod_routes: usize,
    /// All routes, all tables.
    pub routes: usize,
    /// Tracked connections in the node's namespace (`None`: no conntrack).
    pub conntrack: Option<u64>,
    /// nftables rules plus set and map elements in the node's namespace.
    pub nft_objects: usize,
}

pub fn kernel_objects(node: &TestNetns, node_cidrs: &[IpNetwork]) -> KernelObjects {
    let host_veths = node
        .link_names()
        .iter()
        .filter(|n| n.starts_with(podnet_cni::names::HOST_VETH_PREFIX))
        .count();
    let mut routes = 0;
    let mut pod_routes = 0;
    for family in ["-4", "-6"] {
        let listed = node.ip_json(&[family, "route", "show", "table", "all"]);
        for r in listed.as_array().into_iter().flatten() {
            routes += 1;
            // The gateway's local and broadcast routes belong to the bridge.
            if r["type"].as_str().is_some_and(|t| t != "unicast") {
                continue;
            }
            let single = r["dst"]
                .as_str()
                .and_then(|d| d.parse::<IpAddr>().ok())
                .or_else(|| {
                    let net: IpNetwork = r["dst"].as_str()?.parse().ok()?;
                    (net.prefix() == if net.is_ipv4() { 32 } else { 128 }).then(|| net.ip())
                });
            if single.is_some_and(|ip| node_cidrs.iter().any(|c| c.contains(ip))) {
                pod_routes += 1;
            }
        }
    }
    let conntrack = node.run(|| {
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    KernelObjects {
        host_veths,
        pod_routes,
        routes,
        conntrack,
        nft_objects: nft_objects(node),
    }
}

/// Rules and elements in the namespace's ruleset (`nft -j`, observing only).
fn nft_objects(node: &TestNetns) -> usize {
    let out = node.exec("nft", &["-j", "list", "ruleset"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            if item.get("rule").is_some() {
                1
            } else {
                ["set", "map"]
                    .iter()
                    .filter_map(|k| item.get(k)?.get("elem")?.as_array().map(Vec::len))
                    .sum()
            }
        })
        .sum()
}

/// A process's resident memory (KiB) now and at its peak, open files and
/// threads.
#[derive(Clone, Copy, Debug)]
pub struct ProcessUse {
    pub rss_kib: u64,
    /// VmHWM: the most it was resident since it started.
    pub peak_kib: u64,
    pub open_files: usize,
    pub threads: u64,
}

pub fn process_use(pid: u32) -> Option<ProcessUse> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(ProcessUse {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
        open_files: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count(),
    })
}

/// Bytes of the files under `dir` (the database's size on disk).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The podnet configuration a runtime would pass for `daemon`'s network.
pub fn conf(daemon: &TestDaemon) -> Vec<u8> {
    daemon.net_conf("1.1.0").to_string().into_bytes()
}
