//! Command line: `podnetd run` and `podnetd list`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use podnet_ipam::cluster::{NodeCidrAllocator, SledClusterStore};
use podnet_ipam::pool::{Pool, PoolConfig, SledPoolStore};
use podnet_ipam::spool::Spool;

use crate::config::DaemonConfig;
use crate::error::DaemonError;
use crate::metrics::Metrics;
use crate::reclaim::Reclaimer;
use crate::server;
use crate::service::Service;

#[derive(Parser)]
#[command(name = "podnetd", about = "podnet node daemon", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run(DaemonConfig),
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
        Command::List { socket } => crate::admin::list(&socket).map(|text| print!("{text}")),
        Command::Run(config) => run(config),
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

/// Opens the state, claims the node CIDR, applies the spool, then serves.
pub fn build_service(config: &DaemonConfig) -> Result<Service<SledPoolStore>, DaemonError> {
    let node = config.node_name()?;
    let cluster = config.cluster()?;
    std::fs::create_dir_all(&config.state_dir)
        .map_err(DaemonError::io("creating", &config.state_dir))?;
    let db_path = config.state_dir.join("ipam.db");
    let db = sled::open(&db_path).map_err(|source| DaemonError::Db {
        path: db_path.clone(),
        source,
    })?;
    let tree = db.open_tree("cluster").map_err(|source| DaemonError::Db {
        path: db_path.clone(),
        source,
    })?;
    let lease = NodeCidrAllocator::new(cluster, SledClusterStore::open(tree)).allocate(&node)?;
    tracing::info!(node = %node, cidrs = ?lease.cidrs, "node CIDR");
    let pool = Pool::new(
        PoolConfig {
            ranges: lease.cidrs.clone(),
            reserved: config.reserved_ips.clone(),
        },
        SledPoolStore::open(&db)?,
    )?;
    Ok(Service {
        node,
        node_cidrs: lease.cidrs,
        pool,
        metrics: Arc::new(Metrics::default()),
    })
}

fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    let svc = Arc::new(build_service(&config)?);
    let spool = Spool::new(&config.spool_dir);
    svc.drain_spool(&spool);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(async move {
        let listener = server::bind_ipam_socket(&config.socket())?;
        tracing::info!(socket = %config.socket().display(), "serving IPAM");
        if let Some(addr) = config.metrics_addr {
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(DaemonError::io("binding metrics on", addr.to_string()))?;
            tokio::spawn(server::serve_metrics(tcp, svc.clone()));
        }
        tokio::spawn(reclaim_loop(svc.clone(), spool, config.clone()));
        tokio::select! {
            _ = server::serve_ipam(listener, svc.clone()) => {}
            _ = shutdown_signal() => tracing::info!("shutting down"),
        }
        Ok(())
    })
}

async fn reclaim_loop(svc: Arc<Service<SledPoolStore>>, spool: Spool, config: DaemonConfig) {
    let mut reclaimer = Reclaimer::default();
    let spool = Arc::new(spool);
    loop {
        tokio::time::sleep(config.reclaim_interval()).await;
        let (svc2, spool2) = (svc.clone(), spool.clone());
        let grace = config.reclaim_grace();
        // The pass touches the filesystem and sled: off the async threads.
        let r = tokio::task::spawn_blocking(move || {
            svc2.drain_spool(&spool2);
            let released = reclaimer.pass(&svc2, grace, std::time::Instant::now());
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
