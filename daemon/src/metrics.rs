//! Counters and histograms the daemon keeps, rendered in Prometheus' text
//! format. A handful of atomics: no metrics library needed for this much.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use podnet_ipam::attachment::RangeUsage;

/// Bucket bounds in seconds: from a fast ADD (1 ms) to a slow resync.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    pub allocations: AtomicU64,
    pub releases: AtomicU64,
    pub allocation_errors: AtomicU64,
    pub reclaimed: AtomicU64,
    pub spool_applied: AtomicU64,
    pub gc_released: AtomicU64,
    pub peers: AtomicU64,
    pub routes: AtomicU64,
    pub route_changes: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub reconcile: Histogram,
    /// ADD and DEL as the plugin measured them (reported after each call).
    pub plugin_add: Histogram,
    pub plugin_del: Histogram,
    pub plugin_add_errors: AtomicU64,
    pub plugin_del_errors: AtomicU64,
}

/// The `# HELP` and `# TYPE` lines that open a metric.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
}

fn gauge(out: &mut String, name: &str, help: &str, value: u128) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

/// A gauge with one sample per node CIDR, labelled `range`.
fn range_gauge(
    out: &mut String,
    name: &str,
    help: &str,
    usage: &[RangeUsage],
    value: impl Fn(&RangeUsage) -> u128,
) {
    header(out, name, help, "gauge");
    for u in usage {
        let _ = writeln!(out, "{name}{{range=\"{}\"}} {}", u.range, value(u));
    }
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set(g: &AtomicU64, v: usize) {
        g.store(u64::try_from(v).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// `outside_node_cidr`: pods whose address is outside the node's
    /// current CIDRs (see `Pool::outside_ranges`).
    pub fn render(&self, usage: &[RangeUsage], outside_node_cidr: usize) -> String {
        let mut out = String::new();
        self.render_ipam(&mut out, usage, outside_node_cidr);
        self.render_routes(&mut out);
        self.render_cni(&mut out);
        out
    }

    fn render_ipam(&self, out: &mut String, usage: &[RangeUsage], outside_node_cidr: usize) {
        counter(
            out,
            "podnet_ipam_allocations_total",
            "Addresses handed out.",
            &self.allocations,
        );
        counter(
            out,
            "podnet_ipam_releases_total",
            "Attachments released by DEL.",
            &self.releases,
        );
        counter(
            out,
            "podnet_ipam_allocation_errors_total",
            "ADDs that got no address.",
            &self.allocation_errors,
        );
        counter(
            out,
            "podnet_ipam_reclaimed_total",
            "Leaked attachments the reclaimer released.",
            &self.reclaimed,
        );
        counter(
            out,
            "podnet_ipam_spool_applied_total",
            "Spooled releases applied.",
            &self.spool_applied,
        );
        counter(
            out,
            "podnet_ipam_gc_released_total",
            "Attachments released by CNI GC.",
            &self.gc_released,
        );
        range_gauge(
            out,
            "podnet_ipam_pool_used",
            "Addresses in use per node CIDR.",
            usage,
            |u| u.used,
        );
        range_gauge(
            out,
            "podnet_ipam_pool_capacity",
            "Usable addresses per node CIDR.",
            usage,
            |u| u.capacity,
        );
        gauge(
            out,
            "podnet_ipam_outside_node_cidr",
            "Pods holding an address outside the node's current CIDRs (from before the Node's podCIDRs changed): peers no longer route to them; recreate them.",
            outside_node_cidr as u128,
        );
    }

    fn render_routes(&self, out: &mut String) {
        gauge(
            out,
            "podnet_peers",
            "Other nodes known from the cluster store.",
            u128::from(self.peers.load(Ordering::Relaxed)),
        );
        gauge(
            out,
            "podnet_routes",
            "Routes to other nodes' pods podnetd holds.",
            u128::from(self.routes.load(Ordering::Relaxed)),
        );
        counter(
            out,
            "podnet_route_changes_total",
            "Routes added, replaced or removed by the reconciler.",
            &self.route_changes,
        );
        counter(
            out,
            "podnet_reconcile_errors_total",
            "Reconcile passes that failed.",
            &self.reconcile_errors,
        );
        let name = "podnet_reconcile_duration_seconds";
        header(out, name, "Time of a route reconcile pass.", "histogram");
        self.reconcile.render(out, name, "");
    }

    fn render_cni(&self, out: &mut String) {
        let name = "podnet_cni_duration_seconds";
        header(
            out,
            name,
            "ADD and DEL as the plugin measured them.",
            "histogram",
        );
        self.plugin_add.render(out, name, "verb=\"ADD\"");
        self.plugin_del.render(out, name, "verb=\"DEL\"");
        let name = "podnet_cni_errors_total";
        header(
            out,
            name,
            "ADD and DEL that failed, as the plugin reported.",
            "counter",
        );
        for (verb, errors) in [
            ("ADD", &self.plugin_add_errors),
            ("DEL", &self.plugin_del_errors),
        ] {
            let _ = writeln!(
                out,
                "{name}{{verb=\"{verb}\"}} {}",
                errors.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.reconcile.observe(Duration::from_micros(1500));
        m.reconcile.observe(Duration::from_millis(30));
        let text = m.render(&[], 0);
        assert!(text.contains("podnet_reconcile_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("podnet_reconcile_duration_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("podnet_reconcile_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("podnet_reconcile_duration_seconds_count 2"));
    }
}
