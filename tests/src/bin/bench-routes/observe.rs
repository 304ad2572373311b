//! How the bench sees what podnetd did: route dumps of the node, podnetd's
//! memory, its metrics and its own log lines.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podnet_cni::netlink::route::RouteEntry;
use podnet_cni::netlink::Netlink;
use podnet_tests::churn;

use crate::setup::ours;
use crate::POLL;

/// Polls until `done` holds for podnet's routes; `None` after `timeout`.
pub fn poll_until(
    nl: &mut Netlink,
    from: Instant,
    timeout: Duration,
    max_dump: &mut Duration,
    mut done: impl FnMut(&[RouteEntry]) -> bool,
) -> Option<Duration> {
    loop {
        let dumped = Instant::now();
        let routes = ours(nl);
        *max_dump = (*max_dump).max(dumped.elapsed());
        let at = from.elapsed();
        if done(&routes) {
            return Some(at);
        }
        if at > timeout {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// What the route dumps saw while podnetd started.
#[derive(Default)]
pub struct Watched {
    pub first: Option<Instant>,
    pub all: Option<Instant>,
    pub count: usize,
    pub last_dump: Duration,
    pub max_dump: Duration,
}

/// Dumps podnet's routes every millisecond until there are `want` of them.
pub fn watch_routes(mut nl: Netlink, want: usize, deadline: Instant) -> Watched {
    let mut w = Watched::default();
    loop {
        let started = Instant::now();
        w.count = ours(&mut nl).len();
        let now = Instant::now();
        w.last_dump = now - started;
        w.max_dump = w.max_dump.max(w.last_dump);
        if w.count > 0 && w.first.is_none() {
            w.first = Some(now);
        }
        if w.count >= want {
            w.all = Some(now);
            return w;
        }
        if now > deadline {
            return w;
        }
        std::thread::sleep(POLL);
    }
}

/// podnetd's memory at one moment of the run.
pub struct Memory {
    pub when: String,
    pub peers: usize,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32, peers: usize, when: &str) -> Memory {
    let usage = churn::process_use(pid).unwrap_or_else(|| panic!("/proc/{pid}/status"));
    Memory {
        when: when.to_string(),
        peers,
        rss_kib: usage.rss_kib,
        hwm_kib: usage.peak_kib,
    }
}

/// A few of podnetd's metrics, scraped from its loopback port.
#[derive(Default)]
pub struct Scrape {
    values: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(f64::NAN)
    }
}

pub fn scrape(port: u16) -> Scrape {
    let wanted = [
        "podnet_reconcile_duration_seconds_sum",
        "podnet_reconcile_duration_seconds_count",
        "podnet_reconcile_errors_total",
        "podnet_routes",
        "podnet_peers",
        "podnet_route_changes_total",
    ];
    let mut text = String::new();
    let fetched = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        s.read_to_string(&mut text)
    });
    let mut out = Scrape::default();
    if let Err(e) = fetched {
        eprintln!("bench-routes: scraping 127.0.0.1:{port}/metrics: {e}");
        return out;
    }
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
            if wanted.contains(&name) {
                if let Ok(v) = value.parse() {
                    out.values.insert(name.to_string(), v);
                }
            }
        }
    }
    out
}

/// Seconds since midnight UTC of a tracing timestamp at the start of `line`
/// (`2025-01-01T12:34:56.123456Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut hms = time.split(':');
    let h: f64 = hms.next()?.parse().ok()?;
    let m: f64 = hms.next()?.parse().ok()?;
    let s: f64 = hms.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// What podnetd's own log says about a cold start, relative to `spawned`.
#[derive(Default)]
pub struct LogTimes {
    pub registered_ms: Option<f64>,
    pub ready_ms: Option<f64>,
    pub reconciled_ms: Option<f64>,
    pub reconcile_took_ms: Option<f64>,
    pub reconcile_added: Option<usize>,
}

pub fn log_times(log: &str, spawned: SystemTime) -> LogTimes {
    let since = spawned
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let spawn_of_day = since % 86_400.0;
    let rel = |line: &str| {
        log_time(line).map(|t| {
            let mut d = t - spawn_of_day;
            if d < -43_200.0 {
                d += 86_400.0; // midnight passed
            }
            d * 1e3
        })
    };
    let mut out = LogTimes::default();
    for line in log.lines() {
        if out.registered_ms.is_none() && line.contains("registered in etcd") {
            out.registered_ms = rel(line);
        }
        if out.ready_ms.is_none() && line.contains("ready: CNI configuration written") {
            out.ready_ms = rel(line);
        }
        if out.reconciled_ms.is_none()
            && line.contains("routes reconciled")
            && field(line, "added").is_some_and(|a| a != "0")
        {
            out.reconciled_ms = rel(line);
            out.reconcile_took_ms = field(line, "took_ms").and_then(|v| v.parse().ok());
            out.reconcile_added = field(line, "added").and_then(|v| v.parse().ok());
        }
    }
    out
}
