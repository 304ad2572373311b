//! Command line: `podnetd run` and `podnetd list`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use podnet_ipam::pool::{Pool, PoolConfig, SledPoolStore};
use podnet_ipam::spool::Spool;

use crate::cniconf;
use crate::config::DaemonConfig;
use crate::error::DaemonError;
use crate::metrics::Metrics;
use crate::node_setup;
use crate::nodenet::NodeNet;
use crate::reclaim::Reclaimer;
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

#[derive(Parser)]
#[command(name = "podnetd", about = "podnet node daemon", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run(Box<DaemonConfig>),
    /// Remove podnet from this node (what podnetd does by itself when its
    /// DaemonSet is deleted): the CNI configuration, the plugins, routes,
    /// bridge, VXLAN device, nftables table and state. Takes `run`'s flags.
    Uninstall(Box<DaemonConfig>),
    /// Copy the `podnet` and `podnet-ipam` plugins next to this binary into
    /// the CNI bin dir (the DaemonSet's init step).
    Install {
        #[arg(long, env = "PODNET_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
        cni_bin_dir: PathBuf,
    },
    /// List this node's allocations and pool use.
    List {
        /// The daemon's IPAM socket.
        #[arg(long, default_value = podnet_ipam::proto::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let outcome = match cli.command {
        Command::Install { cni_bin_dir } => cniconf::install_plugins(&cni_bin_dir).map(|paths| {
            for p in paths {
                println!("installed {}", p.display());
            }
        }),
        Command::List { socket } => crate::admin::list(&socket).map(|text| print!("{text}")),
        Command::Run(config) => run(*config),
        Command::Uninstall(config) => uninstall(&config),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "podnetd failed");
            eprintln!("podnetd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn uninstall(config: &DaemonConfig) -> Result<(), DaemonError> {
    let net = NodeNet::open(config.netns.as_deref())?;
    crate::uninstall::clean_node(&net, config)
}

fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(run_async(config))
}

/// Runs blocking work (netlink, sled, files) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DaemonError> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Config(format!("a blocking task failed: {e}")))?
}

async fn run_async(config: DaemonConfig) -> Result<(), DaemonError> {
    config.validate()?;
    let _lock = server::lock_run_dir(&config.run_dir)?;
    let node = config.node_name()?;
    let cluster = config.cluster()?;
    let nodenet = Arc::new(NodeNet::open(config.netns.as_deref())?);

    let multi_node = config.store != "local";
    let net = nodenet.clone();
    let node_ip = config.node_ip;
    let found = blocking(move || {
        let mut nl = net.netlink()?;
        Ok(node_setup::find_underlay(&mut nl, node_ip)?)
    })
    .await;
    let (underlay, underlay_mtu, node_ip) = match found {
        Ok(u) => u,
        // A single node needs no underlay: nothing routes to peers.
        Err(e) if !multi_node && config.node_ip.is_none() => {
            tracing::warn!(error = %e, "no underlay; fine for a single node");
            (
                Underlay {
                    index: 0,
                    subnets: Vec::new(),
                },
                1500,
                std::net::IpAddr::from([127, 0, 0, 1]),
            )
        }
        Err(e) => return Err(e),
    };
    tracing::info!(node = %node, %node_ip, underlay = underlay.index, mtu = underlay_mtu, "node");

    std::fs::create_dir_all(&config.state_dir)
        .map_err(DaemonError::io("creating", &config.state_dir))?;
    let db_path = config.state_dir.join("ipam.db");
    // The IPAM database is a few hundred bytes per pod: a small cache holds
    // all of it. sled's default (1 GiB) exceeds a pod's memory limit, which
    // sled then reports at every start as an ERROR (it caps the cache to the
    // cgroup's limit), a false alarm for an operator.
    let db = sled::Config::new()
        .path(&db_path)
        .cache_capacity(SLED_CACHE_BYTES)
        .open()
        .map_err(|source| DaemonError::Db {
            path: db_path.clone(),
            source,
        })?;
    let backend = Arc::new(if config.store == "kubernetes" {
        Backend::Kube(
            KubeBackend::connect(KubeOptions {
                kubeconfig: config.kubeconfig.clone(),
                config: cluster.clone(),
            })
            .await?,
        )
    } else if multi_node {
        Backend::Etcd(
            EtcdBackend::connect(EtcdOptions {
                endpoints: config.etcd_endpoints.clone(),
                prefix: config.etcd_prefix.clone(),
                lease_ttl_secs: config.lease_ttl_secs,
                config: cluster.clone(),
            })
            .await?,
        )
    } else {
        let tree = db.open_tree("cluster").map_err(|source| DaemonError::Db {
            path: db_path.clone(),
            source,
        })?;
        Backend::Local(LocalBackend::new(cluster.clone(), tree))
    });
    let me = backend
        .register(NodeRecord {
            node: node.clone(),
            cidrs: Vec::new(),
            addresses: vec![node_ip],
            vtep_mac: Some(podnet_cni::netlink::link::format_mac(
                &podnet_cni::names::vtep_mac(&node),
            )),
        })
        .await?;
    tracing::info!(node = %node, cidrs = ?me.cidrs, "node CIDR");

    let pool = Pool::new(
        PoolConfig {
            ranges: me.cidrs.clone(),
            reserved: config.reserved_ips.clone(),
        },
        SledPoolStore::open(&db)?,
    )?;
    let metrics = Arc::new(Metrics::default());
    let svc = Arc::new(Service {
        node: node.clone(),
        pool,
        metrics: metrics.clone(),
        storage: Default::default(),
        released: Some(forget_connections(nodenet.clone())),
    });
    let spool = Spool::new(&config.spool_dir);
    svc.drain_spool(&spool);

    // The node: bridge, forwarding, masquerade, and the overlay device
    // when peers may sit on other segments.
    let (net, cidrs, ranges, bridge, masq, node_name) = (
        nodenet.clone(),
        me.cidrs.clone(),
        config.cluster_cidr.clone(),
        config.bridge.clone(),
        config.masquerade,
        node.clone(),
    );
    let ul = underlay.clone();
    let vxlan = blocking(move || {
        let mut nl = net.netlink()?;
        node_setup::ensure_bridge(&mut nl, &bridge, &cidrs)?;
        node_setup::ensure_forwarding_and_masquerade(&net, &ranges, masq)?;
        let vx = if multi_node {
            Some(node_setup::ensure_vxlan(
                &mut nl,
                &node_name,
                &ul,
                underlay_mtu,
                node_ip,
                &cidrs,
            )?)
        } else {
            None
        };
        Ok(vx)
    })
    .await?;
    let pod_mtu = if multi_node {
        underlay_mtu.saturating_sub(if node_ip.is_ipv6() {
            node_setup::VXLAN_OVERHEAD_V6
        } else {
            node_setup::VXLAN_OVERHEAD_V4
        })
    } else {
        underlay_mtu
    };

    let listener = server::bind_ipam_socket(&config.socket())?;
    tracing::info!(socket = %config.socket().display(), "serving IPAM");
    let budget = server::connection_budget();
    tracing::debug!(connections = budget, "IPAM connections served at once");
    tokio::spawn(server::serve_ipam(listener, svc.clone(), budget));
    if let Some(addr) = config.metrics_addr {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(DaemonError::io("binding metrics on", addr.to_string()))?;
        tokio::spawn(server::serve_metrics(tcp, svc.clone()));
    }
    tokio::spawn(reclaim_loop(svc.clone(), spool, config.clone()));
    let (me_seen, me_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(crate::reconciler::run(
        backend.clone(),
        nodenet.clone(),
        crate::reconciler::Topology {
            me: node.clone(),
            underlay: underlay.clone(),
            vxlan,
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
            vxlan: vxlan.map(|_| crate::follow::VxlanSetup {
                node: node.clone(),
                underlay,
                underlay_mtu,
                local: node_ip,
            }),
        },
        me.clone(),
        me_rx,
    ));

    // Last: the plugins and their configuration appear only once an ADD
    // can be served, so the kubelet keeps the node NotReady until then.
    if config.install_plugins {
        let installed = cniconf::install_plugins(&config.cni_bin_dir)?;
        tracing::info!(?installed, "installed the plugins");
    }
    let portmap = config.cni_bin_dir.join("portmap").is_file();
    let mut runtime_unknown = false;
    let cni_version = match (&config.conflist_cni_version[..], &config.cri_socket) {
        ("1.0.0", _) => podnet_cni::spec::CniVersion::V1_0_0,
        ("1.1.0", _) | (_, None) => podnet_cni::spec::CniVersion::LATEST,
        (_, Some(socket)) => match crate::cri::runtime(socket).await {
            Ok((name, version)) => {
                let v = cniconf::version_for_runtime(&name, &version);
                tracing::info!(runtime = %name, %version, cni_version = %v, "conflist version for this runtime");
                v
            }
            Err(e) => {
                runtime_unknown = true;
                let v = cniconf::version_without_runtime(&config.cni_conf_dir);
                tracing::warn!(error = %e, cni_version = %v, "cannot ask the runtime its version yet; keeping the previous choice");
                v
            }
        },
    };
    let path = write_conflist(&config, pod_mtu, portmap, cni_version)?;
    if runtime_unknown {
        tokio::spawn(settle_conflist_version(
            config.clone(),
            pod_mtu,
            portmap,
            cni_version,
        ));
    }
    tracing::info!(path = %path.display(), mtu = pod_mtu, "ready: CNI configuration written");

    tokio::select! {
        () = shutdown_signal() => {}
        () = svc.storage.failed() => return Err(DaemonError::StateUnwritable { path: db_path }),
    }
    if let (Backend::Kube(kube), Some(ds)) = (&*backend, &config.daemonset) {
        use crate::store::kube::Removal;
        match kube.removal(ds).await {
            Removal::Requested(why) => {
                tracing::info!(daemonset = %ds, %why, "podnet is being removed: cleaning this node");
                let net = nodenet.clone();
                let cfg = config.clone();
                // Each failed step is logged by clean_node; the pod goes
                // away either way.
                let _ = tokio::task::spawn_blocking(move || {
                    net.retire(|| crate::uninstall::clean_node(&net, &cfg))
                })
                .await;
                return Ok(());
            }
            Removal::NotRequested => {}
            Removal::Unknown(why) => {
                tracing::warn!(daemonset = %ds, %why, "cannot tell whether podnet is being removed; keeping everything")
            }
        }
    }
    // Routes, the bridge and the configuration stay: pods keep working
    // while the daemon restarts, and a restart removes nothing valid.
    tracing::info!("shutting down");
    Ok(())
}

/// A thread that forgets the connection tracking entries of released
/// addresses, in the node's namespace, off the IPAM path: a release is
/// acknowledged at once, and a burst of them costs one conntrack dump.
fn forget_connections(net: Arc<NodeNet>) -> std::sync::mpsc::Sender<Vec<std::net::IpAddr>> {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<std::net::IpAddr>>();
    std::thread::spawn(move || {
        while let Ok(mut ips) = rx.recv() {
            while let Ok(more) = rx.try_recv() {
                ips.extend(more);
            }
            match net.run(|| crate::kernel::conntrack::forget(&ips)) {
                Ok(Ok(n)) if n > 0 => {
                    tracing::debug!(
                        ?ips,
                        entries = n,
                        "forgot the connections of released addresses"
                    )
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(?ips, error = %e, "cannot forget the connections of released addresses")
                }
            }
        }
    });
    tx
}

fn write_conflist(
    config: &DaemonConfig,
    mtu: u32,
    portmap: bool,
    cni_version: podnet_cni::spec::CniVersion,
) -> Result<std::path::PathBuf, DaemonError> {
    cniconf::write_conflist(
        &config.cni_conf_dir,
        &cniconf::ConfList {
            bridge: &config.bridge,
            mtu,
            socket: &config.socket(),
            spool_dir: &config.spool_dir,
            portmap,
            cni_version,
        },
    )
}

/// Asks the runtime again until it answers (it may be restarting with
/// podnetd), then rewrites the conflist if its version was not the one
/// this runtime needs.
async fn settle_conflist_version(
    config: DaemonConfig,
    mtu: u32,
    portmap: bool,
    written: podnet_cni::spec::CniVersion,
) {
    let Some(socket) = config.cri_socket.clone() else {
        return;
    };
    let mut pause = std::time::Duration::from_millis(500);
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(30));
        let Ok((name, version)) = crate::cri::runtime(&socket).await else {
            continue;
        };
        let wanted = cniconf::version_for_runtime(&name, &version);
        if wanted != written {
            match write_conflist(&config, mtu, portmap, wanted) {
                Ok(_) => {
                    tracing::info!(runtime = %name, %version, cni_version = %wanted, "the runtime answered: conflist rewritten")
                }
                Err(e) => {
                    tracing::error!(error = %e, "rewriting the conflist for the runtime failed")
                }
            }
        }
        return;
    }
}

async fn reclaim_loop(svc: Arc<Service<SledPoolStore>>, spool: Spool, config: DaemonConfig) {
    let mut reclaimer = Reclaimer::default();
    let spool = Arc::new(spool);
    loop {
        tokio::time::sleep(config.reclaim_interval()).await;
        // A runtime that cannot be asked says nothing about its pods.
        let live = match &config.cri_socket {
            Some(socket) => match crate::cri::sandbox_ids(socket).await {
                Ok(ids) => Some(ids),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list pod sandboxes; judging by namespaces only");
                    None
                }
            },
            None => None,
        };
        let (svc2, spool2) = (svc.clone(), spool.clone());
        let grace = config.reclaim_grace();
        // The pass touches the filesystem and sled: off the async threads.
        let r = tokio::task::spawn_blocking(move || {
            svc2.drain_spool(&spool2);
            let released = reclaimer.pass(&svc2, grace, std::time::Instant::now(), live.as_ref());
            (reclaimer, released)
        })
        .await;
        match r {
            Ok((back, _)) => reclaimer = back,
            Err(e) => {
                tracing::warn!(error = %e, "reclaim pass failed");
                reclaimer = Reclaimer::default();
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
