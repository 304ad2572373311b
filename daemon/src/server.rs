//! The daemon's listeners: the IPAM socket (root-only) and, when asked,
//! the metrics and health endpoints.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use podnet_ipam::pool::PoolStore;
use podnet_ipam::proto::{ErrorKind, Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::error::DaemonError;
use crate::service::Service;

/// A request line longer than this is not one of ours.
const MAX_REQUEST: u64 = 1 << 20;

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

pub async fn serve_ipam<S: PoolStore + 'static>(listener: UnixListener, svc: Arc<Service<S>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let svc = svc.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, svc).await {
                        tracing::debug!(error = %e, "IPAM connection ended early");
                    }
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
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => tokio::task::spawn_blocking(move || svc.handle(req))
            .await
            .unwrap_or_else(|e| Response::Error {
                kind: ErrorKind::Internal,
                message: format!("request handler failed: {e}"),
            }),
        Err(e) => Response::Error {
            kind: ErrorKind::InvalidRequest,
            message: format!("unreadable request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// `/metrics` (Prometheus text), `/healthz` and `/readyz`: a few lines of
/// HTTP/1.0, which is all a scraper and a kubelet probe need.
pub async fn serve_metrics<S: PoolStore + 'static>(listener: TcpListener, svc: Arc<Service<S>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => {
                    let usage = svc.pool.usage().unwrap_or_default();
                    let outside = svc.pool.outside_ranges().map_or(0, |a| a.len());
                    ("200 OK", svc.metrics.render(&usage, outside))
                }
                "/healthz" | "/readyz" => ("200 OK", "ok\n".to_string()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let reply = format!(
                "HTTP/1.0 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        });
    }
}
