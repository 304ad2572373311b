//! podnetd's settings, from flags or the environment (a DaemonSet sets
//! them from a ConfigMap and the downward API).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ipnetwork::IpNetwork;
use podnet_ipam::cidr::{node_prefix_v4, ClusterConfig, DEFAULT_NODE_PREFIX_V6};

use crate::error::DaemonError;

#[derive(Clone, Debug, Args)]
pub struct DaemonConfig {
    /// This node's name in the cluster.
    #[arg(long, env = "PODNET_NODE_NAME")]
    pub node_name: Option<String>,

    /// The cluster's pod range(s), IPv4 and/or IPv6; node CIDRs are carved
    /// from them. Repeat or separate with commas.
    #[arg(
        long,
        env = "PODNET_CLUSTER_CIDR",
        value_delimiter = ',',
        default_value = "10.244.0.0/16"
    )]
    pub cluster_cidr: Vec<IpNetwork>,

    /// Pods per node; sizes the IPv4 node CIDR (110 -> /24, as GKE does).
    #[arg(long, env = "PODNET_MAX_PODS", default_value_t = 110)]
    pub max_pods: u32,

    /// Prefix length of each node's IPv6 CIDR.
    #[arg(long, env = "PODNET_NODE_PREFIX_V6", default_value_t = DEFAULT_NODE_PREFIX_V6)]
    pub node_prefix_v6: u8,

    /// Addresses in the node CIDR never handed to pods (beyond the network,
    /// gateway and broadcast addresses, which never are).
    #[arg(long, env = "PODNET_RESERVED_IPS", value_delimiter = ',')]
    pub reserved_ips: Vec<std::net::IpAddr>,

    /// Where the sled database lives.
    #[arg(long, env = "PODNET_STATE_DIR", default_value = "/var/lib/podnet")]
    pub state_dir: PathBuf,

    /// Where the IPAM socket is created (the directory is made root-only).
    #[arg(long, env = "PODNET_RUN_DIR", default_value = "/run/podnet")]
    pub run_dir: PathBuf,

    /// Releases the plugins wrote while the daemon was unreachable.
    #[arg(long, env = "PODNET_SPOOL_DIR", default_value = podnet_ipam::spool::DEFAULT_SPOOL_DIR)]
    pub spool_dir: PathBuf,

    /// How often the leak reclaimer looks, in seconds.
    #[arg(long, env = "PODNET_RECLAIM_INTERVAL", default_value_t = 30)]
    pub reclaim_interval_secs: u64,

    /// How long a pod's namespace must have been gone before its addresses
    /// are reclaimed, in seconds (a DEL on its way gets this long).
    #[arg(long, env = "PODNET_RECLAIM_GRACE", default_value_t = 60)]
    pub reclaim_grace_secs: u64,

    /// The cluster store: `local` (embedded, one node), `etcd`, or
    /// `kubernetes` (the API server's Nodes, as on kind).
    #[arg(long, env = "PODNET_STORE", value_enum, default_value_t = StoreKind::Local)]
    pub store: StoreKind,

    /// A kubeconfig for `--store kubernetes`; without it, the in-cluster
    /// config (the pod's service account).
    #[arg(long, env = "PODNET_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// etcd client URLs, for `--store etcd`.
    #[arg(long, env = "PODNET_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,

    /// Key prefix in etcd (several clusters can share one etcd).
    #[arg(long, env = "PODNET_ETCD_PREFIX", default_value = "/podnet")]
    pub etcd_prefix: String,

    /// Seconds a node's lease lives without keep-alive; a node gone this
    /// long is removed from every peer's routes.
    #[arg(long, env = "PODNET_LEASE_TTL", default_value_t = 15)]
    pub lease_ttl_secs: i64,

    /// Manage the node given as a network namespace path instead of the
    /// daemon's own namespace (simulated nodes, tests, the demo).
    #[arg(long, env = "PODNET_NETNS")]
    pub netns: Option<PathBuf>,

    /// The node's underlay address (default: the first global address of
    /// the default route's interface).
    #[arg(long, env = "PODNET_NODE_IP")]
    pub node_ip: Option<std::net::IpAddr>,

    /// The node bridge pods attach to.
    #[arg(long, env = "PODNET_BRIDGE", default_value = "podnet0")]
    pub bridge: String,

    /// Where the CNI configuration is written once the daemon can serve ADD.
    #[arg(long, env = "PODNET_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,

    /// Where the plugin binaries live (and are installed with
    /// `--install-plugins`).
    #[arg(long, env = "PODNET_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,

    /// The conflist's `cniVersion`: `auto` asks the runtime (--cri-socket)
    /// and writes 1.0.0 for containerd before 2.0, which rejects 1.1.0
    /// results; 1.1.0 otherwise. `cniVersions` always lists up to 1.1.0.
    #[arg(long, env = "PODNET_CONFLIST_CNI_VERSION", value_enum, default_value_t = ConflistVersion::Auto)]
    pub conflist_cni_version: ConflistVersion,

    /// Copy `podnet` and `podnet-ipam` from next to podnetd into the CNI bin dir.
    #[arg(long, env = "PODNET_INSTALL_PLUGINS")]
    pub install_plugins: bool,

    /// Masquerade pod traffic leaving the cluster ranges.
    #[arg(long, env = "PODNET_MASQUERADE", default_value_t = true, action = clap::ArgAction::Set)]
    pub masquerade: bool,

    /// Enforce Kubernetes NetworkPolicy on this node's pods (with `--store
    /// kubernetes`, the only store that has policies). `false` removes
    /// podnet's policy table at start.
    #[arg(long, env = "PODNET_NETWORK_POLICY", default_value_t = true, action = clap::ArgAction::Set)]
    pub network_policy: bool,

    /// Seconds between full route and policy resyncs (events apply at
    /// once anyway).
    #[arg(long, env = "PODNET_RESYNC_INTERVAL", default_value_t = 30)]
    pub resync_interval_secs: u64,

    /// The container runtime's CRI socket (e.g. containerd's). When set,
    /// the reclaimer also releases addresses of pods the runtime no longer
    /// lists, not only of pods whose network namespace is gone.
    #[arg(long, env = "PODNET_CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,

    /// This daemon's DaemonSet, `NAMESPACE/NAME` (with `--store
    /// kubernetes`). At SIGTERM podnetd asks whether it is going away: if
    /// so (uninstall), podnetd removes podnet from the node; if not (a
    /// restart, a rolling update), everything stays in place.
    #[arg(long, env = "PODNET_DAEMONSET")]
    pub daemonset: Option<String>,

    /// Prometheus metrics and health endpoints (`/metrics`, `/healthz`,
    /// `/readyz`); off unless given.
    #[arg(long, env = "PODNET_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl DaemonConfig {
    pub fn resync_interval(&self) -> Duration {
        Duration::from_secs(self.resync_interval_secs.max(1))
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("ipam.sock")
    }

    pub fn reclaim_interval(&self) -> Duration {
        Duration::from_secs(self.reclaim_interval_secs.max(1))
    }

    pub fn reclaim_grace(&self) -> Duration {
        Duration::from_secs(self.reclaim_grace_secs)
    }

    /// The node name: as configured, else the host name.
    pub fn node_name(&self) -> Result<String, DaemonError> {
        if let Some(n) = &self.node_name {
            return Ok(n.clone());
        }
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| DaemonError::Config("no --node-name and no host name".into()))
    }

    /// Checks what the flags can only get wrong together, before anything
    /// is touched.
    pub fn validate(&self) -> Result<(), DaemonError> {
        if self.store == StoreKind::Etcd && self.etcd_endpoints.is_empty() {
            return Err(DaemonError::Config(
                "--store etcd needs --etcd-endpoints (e.g. http://127.0.0.1:2379)".into(),
            ));
        }
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains('/') {
            return Err(DaemonError::Config(format!(
                "--bridge {:?} is not an interface name (1-15 bytes, no '/')",
                self.bridge
            )));
        }
        self.cluster().map(|_| ())
    }

    pub fn cluster(&self) -> Result<ClusterConfig, DaemonError> {
        let v4 = node_prefix_v4(self.max_pods)?;
        Ok(ClusterConfig::new(
            self.cluster_cidr.clone(),
            v4,
            self.node_prefix_v6,
        )?)
    }
}

/// Where the cluster's node records live (`--store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// Embedded in podnetd's database: one node.
    Local,
    Etcd,
    /// The API server's Node objects (`spec.podCIDRs`), as on kind.
    Kubernetes,
}

impl StoreKind {
    /// Peers may exist, so routes, an underlay and VXLAN are needed.
    pub fn multi_node(self) -> bool {
        self != StoreKind::Local
    }
}

/// The conflist's `cniVersion` (`--conflist-cni-version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConflistVersion {
    /// Ask the runtime (`--cri-socket`); 1.1.0 without one.
    Auto,
    #[value(name = "1.0.0")]
    V1_0_0,
    #[value(name = "1.1.0")]
    V1_1_0,
}
