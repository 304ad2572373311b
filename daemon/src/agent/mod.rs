//! `podnetd run`: the daemon's life as named steps. Discover the node,
//! open its state, connect the cluster store, serve IPAM, prepare the
//! node's kernel, start the tasks, write the CNI configuration (last, so
//! the kubelet sees the node ready only once an ADD can be served), then
//! wait for the end.

mod background;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use podnet_cni::spec::CniVersion;
use podnet_ipam::pool::{Pool, PoolConfig, SledPoolStore};
use podnet_ipam::spool::Spool;
use podnet_ipam::ClusterConfig;

use crate::cniconf;
use crate::config::{ConflistVersion, DaemonConfig, StoreKind};
use crate::error::DaemonError;
use crate::http;
use crate::kernel::policy::PolicyTable;
use crate::metrics::Metrics;
use crate::netpol::{Allocations, PolicyAgent};
use crate::node_setup;
use crate::nodenet::NodeNet;
use crate::readiness::Readiness;
use crate::routes::Underlay;
use crate::server;
use crate::service::Service;
use crate::store::etcd::{EtcdBackend, EtcdOptions};
use crate::store::kube::{KubeBackend, KubeOptions};
use crate::store::local::LocalBackend;
use crate::store::{Backend, NodeRecord};

/// sled's page cache: far above what a node's allocations take, far below
/// the DaemonSet's memory limit.
const SLED_CACHE_BYTES: u64 = 8 << 20;

/// This node as found on its own links.
struct Found {
    node: String,
    underlay: Underlay,
    underlay_mtu: u32,
    node_ip: IpAddr,
}

/// The node's durable state.
struct State {
    db: sled::Db,
    path: PathBuf,
}

impl State {
    fn db_error(&self) -> impl FnOnce(sled::Error) -> DaemonError {
        let path = self.path.clone();
        move |source| DaemonError::Db { path, source }
    }
}

/// What preparing the node's kernel decided.
struct Prepared {
    vxlan: Option<u32>,
    pod_mtu: u32,
}

pub async fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    config.validate()?;
    let _lock = server::lock_run_dir(&config.run_dir)?;
    let cluster = config.cluster()?;
    let nodenet = Arc::new(NodeNet::open(config.netns.as_deref())?);

    let found = discover_node(&config, &nodenet).await?;
    let state = open_state(&config)?;
    let backend = Arc::new(connect_store(&config, cluster, &state).await?);
    let me = backend
        .register(NodeRecord {
            node: found.node.clone(),
            cidrs: Vec::new(),
            addresses: vec![found.node_ip],
            vtep_mac: Some(podnet_cni::mac::format_mac(&podnet_cni::names::vtep_mac(
                &found.node,
            ))),
        })
        .await?;
    backend.reach().reached();
    tracing::info!(node = %found.node, cidrs = ?me.cidrs, "node CIDR");

    let metrics = Arc::new(Metrics::default());
    let svc = open_ipam(&config, &found, &me.cidrs, &state, &metrics, &nodenet)?;
    let readiness = Arc::new(Readiness::new(
        backend.reach().clone(),
        svc.storage.clone(),
        Some(Readiness::probe_tree(&state.db).map_err(state.db_error())?),
    ));
    readiness.set_node_cidr(!me.cidrs.is_empty());
    let prepared = prepare_node(&config, &found, &me.cidrs, &nodenet).await?;
    serve_endpoints(&config, &svc, &readiness).await?;
    start_tasks(
        &config, &found, &prepared, &svc, &backend, &metrics, &nodenet, me,
    )
    .await?;
    let conflist = write_cni_config(&config, prepared.pod_mtu).await?;
    readiness.set_conflist(conflist);

    tokio::select! {
        () = background::shutdown_signal() => {}
        () = svc.storage.failed() => return Err(DaemonError::StateUnwritable { path: state.path }),
    }
    leave(&config, &backend, &nodenet).await;
    Ok(())
}

/// Runs blocking work (netlink, sled, files) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DaemonError> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Config(format!("a blocking task failed: {e}")))?
}

/// The node's name, and the link and address its peers reach it by.
async fn discover_node(
    config: &DaemonConfig,
    nodenet: &Arc<NodeNet>,
) -> Result<Found, DaemonError> {
    let node = config.node_name()?;
    let (net, node_ip) = (nodenet.clone(), config.node_ip);
    let found = blocking(move || {
        let mut nl = net.netlink()?;
        Ok(node_setup::find_underlay(&mut nl, node_ip)?)
    })
    .await;
    let (underlay, underlay_mtu, node_ip) = match found {
        Ok(u) => u,
        // A single node needs no underlay: nothing routes to peers.
        Err(e) if !config.store.multi_node() && config.node_ip.is_none() => {
            tracing::warn!(error = %e, "no underlay; fine for a single node");
            let none = Underlay {
                index: 0,
                subnets: Vec::new(),
            };
            (none, 1500, IpAddr::from([127, 0, 0, 1]))
        }
        Err(e) => return Err(e),
    };
    tracing::info!(node = %node, %node_ip, underlay = underlay.index, mtu = underlay_mtu, "node");
    Ok(Found {
        node,
        underlay,
        underlay_mtu,
        node_ip,
    })
}

fn open_state(config: &DaemonConfig) -> Result<State, DaemonError> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(DaemonError::io("creating", &config.state_dir))?;
    let path = config.state_dir.join("ipam.db");
    // The IPAM database is a few hundred bytes per pod: a small cache holds
    // all of it. sled's default (1 GiB) exceeds a pod's memory limit, which
    // sled then reports at every start as an ERROR (it caps the cache to the
    // cgroup's limit), a false alarm for an operator.
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(SLED_CACHE_BYTES)
        .open()
        .map_err(|source| DaemonError::Db {
            path: path.clone(),
            source,
        })?;
    Ok(State { db, path })
}

async fn connect_store(
    config: &DaemonConfig,
    cluster: ClusterConfig,
    state: &State,
) -> Result<Backend, DaemonError> {
    Ok(match config.store {
        StoreKind::Kubernetes => Backend::Kube(
            KubeBackend::connect(KubeOptions {
                kubeconfig: config.kubeconfig.clone(),
                config: cluster,
            })
            .await?,
        ),
        StoreKind::Etcd => Backend::Etcd(
            EtcdBackend::connect(EtcdOptions {
                endpoints: config.etcd_endpoints.clone(),
                prefix: config.etcd_prefix.clone(),
                lease_ttl_secs: config.lease_ttl_secs,
                config: cluster,
            })
            .await?,
        ),
        StoreKind::Local => {
            let tree = state.db.open_tree("cluster").map_err(state.db_error())?;
            Backend::Local(LocalBackend::new(cluster, tree))
        }
    })
}

/// The address pool on the node's CIDRs, with the releases spooled while
/// the daemon was down applied before anything is served.
fn open_ipam(
    config: &DaemonConfig,
    found: &Found,
    cidrs: &[ipnetwork::IpNetwork],
    state: &State,
    metrics: &Arc<Metrics>,
    nodenet: &Arc<NodeNet>,
) -> Result<Arc<Service<SledPoolStore>>, DaemonError> {
    let pool = Pool::new(
        PoolConfig {
            ranges: cidrs.to_vec(),
            reserved: config.reserved_ips.clone(),
        },
        SledPoolStore::open(&state.db)?,
    )?;
    let svc = Arc::new(Service {
        node: found.node.clone(),
        pool,
        metrics: metrics.clone(),
        storage: Default::default(),
        released: Some(background::forget_connections(nodenet.clone())),
    });
    svc.drain_spool(&Spool::new(&config.spool_dir));
    Ok(svc)
}

/// The bridge, forwarding, masquerade, and the overlay device when peers
/// may sit on other segments.
async fn prepare_node(
    config: &DaemonConfig,
    found: &Found,
    cidrs: &[ipnetwork::IpNetwork],
    nodenet: &Arc<NodeNet>,
) -> Result<Prepared, DaemonError> {
    let multi_node = config.store.multi_node();
    let (net, cidrs, ranges, bridge, masq) = (
        nodenet.clone(),
        cidrs.to_vec(),
        config.cluster_cidr.clone(),
        config.bridge.clone(),
        config.masquerade,
    );
    let (node, underlay, underlay_mtu, node_ip) = (
        found.node.clone(),
        found.underlay.clone(),
        found.underlay_mtu,
        found.node_ip,
    );
    let vxlan = blocking(move || {
        let mut nl = net.netlink()?;
        node_setup::ensure_bridge(&mut nl, &bridge, &cidrs)?;
        node_setup::ensure_forwarding_and_masquerade(&net, &ranges, masq)?;
        if !multi_node {
            return Ok(None);
        }
        let vx =
            node_setup::ensure_vxlan(&mut nl, &node, &underlay, underlay_mtu, node_ip, &cidrs)?;
        Ok(Some(vx))
    })
    .await?;
    let pod_mtu = if multi_node {
        crate::kernel::vxlan::overlay_mtu(found.underlay_mtu, found.node_ip)
    } else {
        found.underlay_mtu
    };
    Ok(Prepared { vxlan, pod_mtu })
}

/// `/metrics`, `/healthz` and `/readyz`, when asked for: before the
/// conflist, so that `/readyz` says why the node is not ready yet.
async fn serve_endpoints(
    config: &DaemonConfig,
    svc: &Arc<Service<SledPoolStore>>,
    readiness: &Arc<Readiness>,
) -> Result<(), DaemonError> {
    let Some(addr) = config.metrics_addr else {
        return Ok(());
    };
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(DaemonError::io("binding metrics on", addr.to_string()))?;
    let endpoints = Arc::new(http::Endpoints {
        svc: svc.clone(),
        readiness: readiness.clone(),
    });
    tokio::spawn(http::serve(tcp, endpoints, http::Limits::default()));
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(())
}

/// IPAM on its socket, the reclaimer, the route reconciler, the follower
/// of this node's own record, and the store's recovery probe.
#[allow(clippy::too_many_arguments)]
async fn start_tasks(
    config: &DaemonConfig,
    found: &Found,
    prepared: &Prepared,
    svc: &Arc<Service<SledPoolStore>>,
    backend: &Arc<Backend>,
    metrics: &Arc<Metrics>,
    nodenet: &Arc<NodeNet>,
    me: NodeRecord,
) -> Result<(), DaemonError> {
    let listener = server::bind_ipam_socket(&config.socket())?;
    tracing::info!(socket = %config.socket().display(), "serving IPAM");
    let budget = server::connection_budget();
    tracing::debug!(connections = budget, "IPAM connections served at once");
    let policy = start_policy(config, found, svc, backend, metrics, nodenet).await?;
    tokio::spawn(server::serve_ipam(listener, svc.clone(), policy, budget));
    tokio::spawn(background::store_recovery(backend.clone()));
    let spool = Spool::new(&config.spool_dir);
    tokio::spawn(background::reclaim_loop(svc.clone(), spool, config.clone()));
    let (me_seen, me_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(crate::reconciler::run(
        backend.clone(),
        nodenet.clone(),
        crate::reconciler::Topology {
            me: found.node.clone(),
            underlay: found.underlay.clone(),
            vxlan: prepared.vxlan,
        },
        metrics.clone(),
        config.resync_interval(),
        me_seen,
    ));
    tokio::spawn(crate::follow::run(
        backend.clone(),
        svc.clone(),
        crate::follow::NodeKernel {
            net: nodenet.clone(),
            bridge: config.bridge.clone(),
            vxlan: prepared.vxlan.map(|_| crate::follow::VxlanSetup {
                node: found.node.clone(),
                underlay: found.underlay.clone(),
                underlay_mtu: found.underlay_mtu,
                local: found.node_ip,
            }),
        },
        me,
        me_rx,
    ));
    Ok(())
}

/// NetworkPolicy's agent, on a node that enforces it (the Kubernetes
/// store, `--network-policy true`); elsewhere podnet's policy table, if
/// a previous run left one, is removed.
async fn start_policy(
    config: &DaemonConfig,
    found: &Found,
    svc: &Arc<Service<SledPoolStore>>,
    backend: &Arc<Backend>,
    metrics: &Arc<Metrics>,
    nodenet: &Arc<NodeNet>,
) -> Result<Option<Arc<PolicyAgent>>, DaemonError> {
    if let (Backend::Kube(kube), true) = (&**backend, config.network_policy) {
        let allocations = Box::new(Held(svc.clone()));
        tracing::info!(
            "enforcing NetworkPolicy once the API's policies, namespaces and pods are listed"
        );
        return Ok(Some(PolicyAgent::start(
            kube.client(),
            found.node.clone(),
            nodenet.clone(),
            metrics.clone(),
            allocations,
            config.resync_interval(),
        )));
    }
    let net = nodenet.clone();
    let removed = blocking(move || {
        net.run(|| PolicyTable::new().remove())?
            .map_err(|e| DaemonError::Kernel(e.into()))
    })
    .await?;
    if removed {
        tracing::info!("NetworkPolicy not enforced here: removed podnet's policy table");
    }
    Ok(None)
}

/// The plugins (when asked) and the conflist, in the version the node's
/// runtime reads; returns the conflist's path.
async fn write_cni_config(config: &DaemonConfig, pod_mtu: u32) -> Result<PathBuf, DaemonError> {
    if config.install_plugins {
        let installed = cniconf::install_plugins(&config.cni_bin_dir)?;
        tracing::info!(?installed, "installed the plugins");
    }
    let (cni_version, settled) = conflist_version(config).await;
    let path = background::write_conflist(config, pod_mtu, cni_version)?;
    if !settled {
        tokio::spawn(background::settle_conflist_version(
            config.clone(),
            pod_mtu,
            cni_version,
        ));
    }
    tracing::info!(path = %path.display(), mtu = pod_mtu, "ready: CNI configuration written");
    Ok(path)
}

/// The version to write, and whether it is settled (false: the runtime
/// could not be asked yet).
async fn conflist_version(config: &DaemonConfig) -> (CniVersion, bool) {
    let socket = match (config.conflist_cni_version, &config.cri_socket) {
        (ConflistVersion::V1_0_0, _) => return (CniVersion::V1_0_0, true),
        (ConflistVersion::V1_1_0, _) | (ConflistVersion::Auto, None) => {
            return (CniVersion::LATEST, true)
        }
        (ConflistVersion::Auto, Some(socket)) => socket,
    };
    match crate::cri::runtime(socket).await {
        Ok((name, version)) => {
            let v = cniconf::version_for_runtime(&name, &version);
            tracing::info!(runtime = %name, %version, cni_version = %v, "conflist version for this runtime");
            (v, true)
        }
        Err(e) => {
            let v = cniconf::version_without_runtime(&config.cni_conf_dir);
            tracing::warn!(error = %e, cni_version = %v, "cannot ask the runtime its version yet; keeping the previous choice");
            (v, false)
        }
    }
}

/// On SIGTERM: clean the node if podnet's DaemonSet is being deleted, else
/// leave everything (pods keep working while the daemon restarts, and a
/// restart removes nothing valid).
async fn leave(config: &DaemonConfig, backend: &Arc<Backend>, nodenet: &Arc<NodeNet>) {
    if let (Backend::Kube(kube), Some(ds)) = (&**backend, &config.daemonset) {
        use crate::store::kube::Removal;
        match kube.removal(ds).await {
            Removal::Requested(why) => {
                tracing::info!(daemonset = %ds, %why, "podnet is being removed: cleaning this node");
                let (net, cfg) = (nodenet.clone(), config.clone());
                // Each failed step is logged by clean_node; the pod goes
                // away either way.
                let _ = tokio::task::spawn_blocking(move || {
                    net.retire(|| crate::uninstall::clean_node(&net, &cfg))
                })
                .await;
                return;
            }
            Removal::NotRequested => {}
            Removal::Unknown(why) => {
                tracing::warn!(daemonset = %ds, %why, "cannot tell whether podnet is being removed; keeping everything")
            }
        }
    }
    tracing::info!("shutting down");
}

/// The node's IPAM, as NetworkPolicy's agent asks it.
struct Held(Arc<Service<SledPoolStore>>);

impl Allocations for Held {
    fn holds(&self, key: &podnet_ipam::attachment::AttachmentKey) -> bool {
        // An unreadable record is kept: forgetting a pod's rules would
        // let its traffic through.
        !matches!(self.0.pool.get(key), Ok(None))
    }

    fn releases(&self) -> u64 {
        self.0.pool.releases()
    }
}
