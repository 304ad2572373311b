//! `/metrics`, `/healthz` and `/readyz` on hyper's HTTP/1 server.
//!
//! The port listens on every address of the node (the DaemonSet's
//! `0.0.0.0:9402`), so anyone who reaches the node reaches it: a client
//! gets [`Limits::header_read`] to send its request head and
//! [`Limits::connection`] for the whole exchange, and connections above
//! [`Limits::max_connections`] are closed at accept. One request per
//! connection: a scrape every few seconds costs a handshake, and a
//! keep-alive connection could not be told apart from an idle one holding
//! a place.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use podnet_ipam::pool::PoolStore;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::Format;
use crate::readiness::Readiness;
use crate::service::Service;

const PLAIN: &str = "text/plain; charset=utf-8";

/// What one client may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From accept to the end of the request head.
    pub header_read: Duration,
    /// From accept to the last byte of the response.
    pub connection: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
}

impl Default for Limits {
    /// A kubelet probe times out after 1 s by default and a Prometheus
    /// scrape after 10 s: a client slower than that is not one of them.
    /// A node has one kubelet and a few scrapers.
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(5),
            connection: Duration::from_secs(15),
            max_connections: 32,
        }
    }
}

/// What the endpoints answer from.
pub struct Endpoints<S: PoolStore> {
    pub svc: Arc<Service<S>>,
    pub readiness: Arc<Readiness>,
}

/// Serves until the listener fails for good (never, in practice: accept
/// errors such as running out of descriptors are waited out).
pub async fn serve<S: PoolStore + 'static>(
    listener: TcpListener,
    endpoints: Arc<Endpoints<S>>,
    limits: Limits,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept on the metrics port failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Closing at once, rather than queueing, keeps a flood from
        // holding descriptors the IPAM socket needs.
        let Ok(place) = places.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many metrics connections; closing");
            continue;
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .keep_alive(false)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| {
                        let endpoints = endpoints.clone();
                        async move { Ok::<_, Infallible>(respond(&endpoints, &req).await) }
                    }),
                );
            match tokio::time::timeout(limits.connection, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics connection cut at its deadline"),
            }
            drop(place);
        });
    }
}

async fn respond<S: PoolStore + 'static>(
    endpoints: &Arc<Endpoints<S>>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            metrics(endpoints, Format::from_accept(accept)).await
        }
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        "/readyz" => match endpoints.readiness.check().await {
            Ok(()) => plain(StatusCode::OK, "ok\n"),
            Err(not) => plain(StatusCode::SERVICE_UNAVAILABLE, not.to_string()),
        },
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The registry, with the pool's usage read from the database (off the
/// async threads: it walks every allocation).
async fn metrics<S: PoolStore + 'static>(
    endpoints: &Arc<Endpoints<S>>,
    format: Format,
) -> Response<Full<Bytes>> {
    let svc = endpoints.svc.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let usage = svc.pool.usage().unwrap_or_default();
        let outside = svc.pool.outside_ranges().map_or(0, |a| a.len());
        svc.metrics.render(&usage, outside, format)
    })
    .await;
    match rendered {
        Ok(Ok(text)) => respond_with(StatusCode::OK, format.content_type(), text),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "encoding the metrics failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
        }
        Err(e) => {
            tracing::warn!(error = %e, "the metrics task failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics task failed\n")
        }
    }
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    respond_with(status, PLAIN, body.into())
}

fn respond_with(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
