//! What runs for the daemon's whole life once it has started: the leak
//! reclaimer, forgetting released addresses' connections, settling the
//! conflist version with a runtime that was down, and the stop signal.

use std::sync::Arc;
use std::time::Duration;

use podnet_ipam::pool::SledPoolStore;
use podnet_ipam::spool::Spool;

use crate::cniconf;
use crate::config::DaemonConfig;
use crate::error::DaemonError;
use crate::nodenet::NodeNet;
use crate::reclaim::Reclaimer;
use crate::retry::Backoff;
use crate::service::Service;
use crate::store::Backend;

/// Between two probes of a store marked lost.
const STORE_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Releases arriving within this long of the first of a burst share one
/// conntrack dump. A dump walks the node's whole table, so one per release
/// kept a CPU busy under churn and slowed concurrent releases fortyfold
/// (bench-ipam). The allocator rests a freed address while unused ones
/// remain, so the delay leaves no stale entry in a new pod's way.
const FORGET_BATCH: std::time::Duration = std::time::Duration::from_millis(100);

/// A thread that forgets the connection tracking entries of released
/// addresses, in the node's namespace, off the IPAM path: a release is
/// acknowledged at once, and a burst of them costs one conntrack dump.
pub fn forget_connections(net: Arc<NodeNet>) -> std::sync::mpsc::Sender<Vec<std::net::IpAddr>> {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<std::net::IpAddr>>();
    std::thread::spawn(move || {
        while let Ok(mut ips) = rx.recv() {
            let until = std::time::Instant::now() + FORGET_BATCH;
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(more) => ips.extend(more),
                    Err(_) => break,
                }
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

pub fn write_conflist(
    config: &DaemonConfig,
    mtu: u32,
    cni_version: podnet_cni::spec::CniVersion,
) -> Result<std::path::PathBuf, DaemonError> {
    cniconf::write_conflist(
        &config.cni_conf_dir,
        &cniconf::ConfList {
            bridge: &config.bridge,
            mtu,
            socket: &config.socket(),
            spool_dir: &config.spool_dir,
            cni_version,
        },
    )
}

/// Asks the runtime again until it answers (it may be restarting with
/// podnetd), then rewrites the conflist if its version was not the one
/// this runtime needs.
pub async fn settle_conflist_version(
    config: DaemonConfig,
    mtu: u32,
    written: podnet_cni::spec::CniVersion,
) {
    let Some(socket) = config.cri_socket.clone() else {
        return;
    };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        tokio::time::sleep(backoff.next_delay()).await;
        let Ok((name, version)) = crate::cri::runtime(&socket).await else {
            continue;
        };
        let wanted = cniconf::version_for_runtime(&name, &version);
        if wanted != written {
            match write_conflist(&config, mtu, wanted) {
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

pub async fn reclaim_loop(svc: Arc<Service<SledPoolStore>>, spool: Spool, config: DaemonConfig) {
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

/// While the store is marked lost, asks it something cheap every few
/// seconds: a watch that resumes with no change to report tells nobody that
/// the store answers again.
pub async fn store_recovery(backend: Arc<Backend>) {
    loop {
        tokio::time::sleep(STORE_PROBE_EVERY).await;
        if backend.reach().is_lost() && backend.ping().await.is_ok() {
            backend.reach().reached();
        }
    }
}

pub async fn shutdown_signal() {
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
