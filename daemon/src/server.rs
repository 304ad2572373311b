//! The IPAM socket (root-only) and the run directory's lock. The metrics
//! and health endpoints are in `http`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use podnet_ipam::pool::PoolStore;
use podnet_ipam::proto::{ErrorKind, Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::DaemonError;
use crate::netpol::PolicyAgent;
use crate::service::Service;

/// A request line longer than this is not one of ours.
const MAX_REQUEST: u64 = 1 << 20;

/// How long a client may take to send its request line. The plugin writes
/// it at once (a few hundred bytes), so a second is ample; a stuck or
/// hostile client is cut off instead of holding a connection for ever.
const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// File descriptors kept for everything but IPAM connections (sled, netlink,
/// the API client, metrics).
const FDS_KEPT: u64 = 128;

/// Raises the open-files limit to its hard limit (systemd's default soft
/// limit is 1024) and returns how many IPAM connections to serve at once:
/// what the limit leaves, at most 4096. Beyond that, connections wait in
/// the kernel's queue until the read deadline frees a place.
pub fn connection_budget() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() => hard,
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    usize::try_from(soft.saturating_sub(FDS_KEPT).clamp(16, 4096)).unwrap_or(4096)
}

/// Holds `run_dir/podnetd.lock` for the life of the process: a second
/// podnetd given the same run directory (even with another state
/// directory) stops here instead of taking over the IPAM socket, which
/// would hand out addresses from a second database. The kernel drops the
/// lock when the process ends, however it ends.
pub fn lock_run_dir(run_dir: &Path) -> Result<Flock<std::fs::File>, DaemonError> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(run_dir).map_err(DaemonError::io("creating", run_dir))?;
    let path = run_dir.join("podnetd.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(DaemonError::io("opening", &path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut held) => {
            // The holder's pid, for the message a second daemon prints.
            let _ = held.set_len(0);
            let _ = held.rewind();
            let _ = write!(held, "{}", std::process::id());
            Ok(held)
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(DaemonError::AlreadyRunning {
                lock: path,
                holder: holder.trim().to_string(),
            })
        }
        Err((_, e)) => Err(DaemonError::io("locking", &path)(e.into())),
    }
}

/// Binds the IPAM socket: the directory 0700 and the socket 0600, so only
/// root (the runtime's plugins) can ask for addresses.
pub fn bind_ipam_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(DaemonError::io("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(DaemonError::io("restricting", dir))?;
    }
    // A socket file left by a previous run refuses the bind.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(DaemonError::io("removing the old socket", path)(e))
        }
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(DaemonError::io("binding", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(DaemonError::io("restricting", path))?;
    Ok(listener)
}

/// Serves IPAM requests, at most `budget` connections at once (see
/// [`connection_budget`]), each cut off after [`READ_DEADLINE`] without a
/// whole request.
pub async fn serve_ipam<S: PoolStore + 'static>(
    listener: UnixListener,
    svc: Arc<Service<S>>,
    policy: Option<Arc<PolicyAgent>>,
    budget: usize,
) {
    let places = Arc::new(tokio::sync::Semaphore::new(budget));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let (svc, policy) = (svc.clone(), policy.clone());
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, svc, policy).await {
                        tracing::debug!(error = %e, "IPAM connection ended early");
                    }
                    drop(place);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on the IPAM socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle<S: PoolStore + 'static>(
    stream: UnixStream,
    svc: Arc<Service<S>>,
    policy: Option<Arc<PolicyAgent>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    tokio::time::timeout(READ_DEADLINE, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request in time"))??;
    let response = match Request::decode(line.as_bytes()) {
        Ok(req) => match policy {
            Some(agent) => with_policy(req, svc, agent).await,
            None => serve(svc, req).await,
        },
        Err(message) => Response::Error {
            kind: ErrorKind::InvalidRequest,
            message,
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// The IPAM service's answer, worked out on this thread (a short sled
/// transaction and its flush): the runtime hands its other tasks to
/// another thread meanwhile, and the answer skips two thread wake-ups,
/// which on a busy node are much of an ADD's wait for its address.
async fn serve<S: PoolStore + 'static>(svc: Arc<Service<S>>, req: Request) -> Response {
    tokio::task::block_in_place(move || svc.handle(req))
}

/// An allocation's addresses, without their prefixes.
fn addresses(allocation: &podnet_ipam::attachment::Allocation) -> Vec<std::net::IpAddr> {
    allocation.ips.iter().map(|n| n.ip()).collect()
}

/// An ADD refused for its NetworkPolicy (code 11: the runtime tries again).
fn refused(message: String) -> Response {
    Response::Error {
        kind: ErrorKind::PolicyUnresolved,
        message,
    }
}

/// A request on a node that enforces NetworkPolicy: a pod's ADD is
/// answered once its rules are in the kernel (and refused when they
/// cannot be put there), or, when the plugin asks `PolicyReady` before its
/// ADD returns, once its addresses are chosen (the rules are put in
/// meanwhile); releases are forgotten by the policy agent; policy
/// questions go to it.
async fn with_policy<S: PoolStore + 'static>(
    req: Request,
    svc: Arc<Service<S>>,
    agent: Arc<PolicyAgent>,
) -> Response {
    match req {
        Request::Add {
            pod: Some(ref pod),
            ref key,
            confirm_policy,
            ..
        } => {
            let (pod, key) = (pod.clone(), key.clone());
            if confirm_policy {
                return match admit_alongside(req, svc, agent).await {
                    Response::Allocated { allocation } => Response::Admitting { allocation },
                    other => other,
                };
            }
            let answer = serve(svc.clone(), req).await;
            let Response::Allocated { allocation } = answer else {
                return answer;
            };
            let ips = addresses(&allocation);
            match agent.admit(&pod, &key, ips).await {
                Ok(()) => Response::Allocated { allocation },
                // The allocation stays: this key's may be another
                // request's (a repeated ADD gets the same addresses). The
                // plugin's rollback sends DEL, and DEL or GC release it
                // otherwise.
                Err(e) => refused(agent.refused(&pod, &e)),
            }
        }
        Request::PolicyReady { ref key, ref pod } => match agent.admitted(key).await {
            Some(Ok(())) => Response::PolicyReady,
            Some(Err(message)) => refused(message.to_string()),
            // Begun before a restart of podnetd: admitted again.
            None => match serve(svc.clone(), Request::Check { key: key.clone() }).await {
                Response::Allocated { allocation } => {
                    let ips = addresses(&allocation);
                    match agent.admit(pod, key, ips).await {
                        Ok(()) => Response::PolicyReady,
                        Err(e) => refused(agent.refused(pod, &e)),
                    }
                }
                _ => refused(format!(
                    "pod {pod} not started: its attachment {} holds no addresses",
                    key.container_id
                )),
            },
        },
        Request::Add {
            pod: None, ref key, ..
        } => {
            tracing::warn!(container = %key.container_id, "ADD without the pod's namespace and name (K8S_POD_* in CNI_ARGS): its NetworkPolicy applies once the API shows its address");
            serve(svc, req).await
        }
        Request::Del { ref key } => {
            let key = key.clone();
            let answer = serve(svc, req).await;
            agent.forget(&key);
            answer
        }
        Request::Gc { .. } => {
            let answer = serve(svc, req).await;
            if let Response::Collected { released } = &answer {
                released.iter().for_each(|a| agent.forget(&a.key));
            }
            answer
        }
        Request::PolicyExplain { .. } | Request::PolicyState => {
            tokio::task::spawn_blocking(move || crate::netpol::answer(&agent, &req))
                .await
                .unwrap_or_else(|e| Response::Error {
                    kind: ErrorKind::Internal,
                    message: format!("policy question failed: {e}"),
                })
        }
        other => serve(svc, other).await,
    }
}

/// An ADD whose pod's admission begins as soon as its addresses are
/// chosen: its rules are compiled and written while the allocation is
/// flushed and the plugin configures the interface.
async fn admit_alongside<S: PoolStore + 'static>(
    req: Request,
    svc: Arc<Service<S>>,
    agent: Arc<PolicyAgent>,
) -> Response {
    let Request::Add {
        key,
        netns,
        requested,
        pod: Some(pod),
        ..
    } = req
    else {
        return serve(svc, req).await;
    };
    let alloc = podnet_ipam::pool::AllocateRequest {
        key,
        netns,
        requested,
    };
    // On the blocking pool, not on this thread as `serve` does: the
    // admission it begins needs this worker's runtime at once (measured:
    // the policy ADD slower by half a millisecond in place).
    tokio::task::spawn_blocking(move || {
        svc.add(&alloc, |chosen| {
            let ips = addresses(chosen);
            agent.begin_admit(pod, chosen.key.clone(), ips);
        })
    })
    .await
    .unwrap_or_else(|e| Response::Error {
        kind: ErrorKind::Internal,
        message: format!("request handler failed: {e}"),
    })
}
