//! `/metrics`, `/healthz` and `/readyz` over a real socket on 127.0.0.1,
//! as a scraper, a kubelet or a hostile client meets them. No root needed.

// Test code: a helper that cannot set up fails the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_ipam::attachment::AttachmentKey;
use podnet_ipam::pool::{AllocateRequest, MemoryPoolStore, Pool, PoolConfig};
use podnetd::http::{self, Endpoints, Limits};
use podnetd::metrics::Metrics;
use podnetd::readiness::Readiness;
use podnetd::service::{Service, StorageHealth};
use podnetd::store::StoreReach;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Site {
    addr: SocketAddr,
    svc: Arc<Service<MemoryPoolStore>>,
    readiness: Arc<Readiness>,
    store: StoreReach,
    _db: sled::Db,
}

async fn start(limits: Limits) -> Site {
    let pool = Pool::new(
        PoolConfig {
            ranges: vec!["10.244.1.0/24".parse().unwrap()],
            reserved: Vec::new(),
        },
        MemoryPoolStore::default(),
    )
    .unwrap();
    let storage = Arc::new(StorageHealth::default());
    let svc = Arc::new(Service {
        node: "n1".into(),
        pool,
        metrics: Arc::new(Metrics::default()),
        storage: storage.clone(),
        released: None,
    });
    let db = sled::Config::new().temporary(true).open().unwrap();
    let store = StoreReach::default();
    let readiness = Arc::new(Readiness::new(
        store.clone(),
        storage,
        Some(Readiness::probe_tree(&db).unwrap()),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoints = Arc::new(Endpoints {
        svc: svc.clone(),
        readiness: readiness.clone(),
    });
    tokio::spawn(http::serve(listener, endpoints, limits));
    Site {
        addr,
        svc,
        readiness,
        store,
        _db: db,
    }
}

/// Sends `request` and reads until the server closes: (status, body).
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut reply))
        .await
        .expect("the server closes after one response")
        .unwrap();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    exchange(addr, &format!("GET {path} HTTP/1.0\r\n\r\n")).await
}

/// How long the server takes to close a connection on which nothing is
/// sent; `None` if it is still open after `within`.
async fn closed_within(mut s: TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // A 408 or similar before closing is fine too.
            Ok(Ok(_)) => continue,
        }
    }
}

fn limits() -> Limits {
    Limits {
        header_read: Duration::from_millis(300),
        connection: Duration::from_secs(5),
        max_connections: 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_with_conventional_names() {
    let site = start(limits()).await;
    site.svc
        .pool
        .allocate(&AllocateRequest {
            key: AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth0".into(),
            },
            netns: None,
            requested: Vec::new(),
        })
        .unwrap();
    site.svc.metrics.allocations.inc();
    site.svc.metrics.plugin_add.observe(0.012);
    site.svc.metrics.reconcile.observe(0.003);
    let (status, text) = get(site.addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    for want in [
        "# TYPE podnet_ipam_allocations_total counter",
        "podnet_ipam_allocations_total 1",
        "podnet_ipam_pool_used{range=\"10.244.1.0/24\"} 1",
        "podnet_cni_duration_seconds_bucket{verb=\"ADD\",le=\"0.02\"} 1",
        "podnet_cni_duration_seconds_count{verb=\"ADD\"} 1",
        "podnet_cni_duration_seconds_count{verb=\"DEL\"} 0",
        "podnet_cni_errors_total{verb=\"ADD\"} 0",
        "podnet_reconcile_duration_seconds_bucket{le=\"0.005\"} 1",
        "podnet_reconcile_errors_total 0",
        "podnet_peers 0",
        "podnet_routes 0",
        "podnet_ipam_outside_node_cidr 0",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing {want} in:\n{text}"
        );
    }
    // A scraper that prefers OpenMetrics gets it.
    let (status, om) = exchange(
        site.addr,
        "GET /metrics HTTP/1.1\r\nHost: n1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(om.contains("# EOF"), "{om}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_what_is_missing_until_everything_holds() {
    let site = start(limits()).await;
    assert_eq!(get(site.addr, "/healthz").await, (200, "ok\n".into()));
    let (status, body) = get(site.addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("not ready: node CIDR"), "{body}");
    assert!(body.contains("not ready: CNI configuration"), "{body}");
    assert!(
        body.contains("not ready: cluster store: not contacted yet"),
        "{body}"
    );

    let dir = tempfile::tempdir().unwrap();
    let conflist = dir.path().join("10-podnet.conflist");
    std::fs::write(&conflist, "{}").unwrap();
    site.readiness.set_node_cidr(true);
    site.readiness.set_conflist(conflist);
    site.store.reached();
    assert_eq!(get(site.addr, "/readyz").await, (200, "ok\n".into()));

    site.store
        .lost("Node watch interrupted: connection refused");
    let (status, body) = get(site.addr, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "not ready: cluster store: Node watch interrupted: connection refused\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_are_refused() {
    let site = start(limits()).await;
    assert_eq!(get(site.addr, "/").await.0, 404);
    assert_eq!(get(site.addr, "/metrics/../etc").await.0, 404);
    let (status, _) = exchange(site.addr, "POST /metrics HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 405);
    // HTTP/1.1 asks to keep the connection: it is closed all the same
    // (`exchange` reads to the end).
    let (status, _) = exchange(site.addr, "GET /healthz HTTP/1.1\r\nHost: n1\r\n\r\n").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_nothing_is_cut_off_at_the_read_timeout() {
    let site = start(limits()).await;
    let silent = TcpStream::connect(site.addr).await.unwrap();
    let took = closed_within(silent, Duration::from_secs(3))
        .await
        .expect("a silent client is disconnected");
    assert!(took >= Duration::from_millis(250), "closed early: {took:?}");
    // Half a request line, then nothing: the same.
    let mut slow = TcpStream::connect(site.addr).await.unwrap();
    slow.write_all(b"GET /metr").await.unwrap();
    assert!(closed_within(slow, Duration::from_secs(3)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_cap_are_closed_at_once() {
    let site = start(Limits {
        header_read: Duration::from_secs(20),
        connection: Duration::from_secs(30),
        max_connections: 2,
    })
    .await;
    let held = [
        TcpStream::connect(site.addr).await.unwrap(),
        TcpStream::connect(site.addr).await.unwrap(),
    ];
    // Both places taken once the server has accepted them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = TcpStream::connect(site.addr).await.unwrap();
    let took = closed_within(third, Duration::from_secs(3))
        .await
        .expect("a connection above the cap is closed");
    assert!(took < Duration::from_secs(3));
    // Places come back when their clients leave.
    drop(held);
    let started = Instant::now();
    loop {
        let mut s = TcpStream::connect(site.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply).await;
        if reply.contains(" 200 ") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no place freed: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
