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

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
}

fn gauge(out: &mut String, name: &str, help: &str, value: u128) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
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
        counter(
            &mut out,
            "podnet_ipam_allocations_total",
            "Addresses handed out.",
            &self.allocations,
        );
        counter(
            &mut out,
            "podnet_ipam_releases_total",
            "Attachments released by DEL.",
            &self.releases,
        );
        counter(
            &mut out,
            "podnet_ipam_allocation_errors_total",
            "ADDs that got no address.",
            &self.allocation_errors,
        );
        counter(
            &mut out,
            "podnet_ipam_reclaimed_total",
            "Leaked attachments the reclaimer released.",
            &self.reclaimed,
        );
        counter(
            &mut out,
            "podnet_ipam_spool_applied_total",
            "Spooled releases applied.",
            &self.spool_applied,
        );
        counter(
            &mut out,
            "podnet_ipam_gc_released_total",
            "Attachments released by CNI GC.",
            &self.gc_released,
        );
        let _ = writeln!(
            out,
            "# HELP podnet_ipam_pool_used Addresses in use per node CIDR."
        );
        let _ = writeln!(out, "# TYPE podnet_ipam_pool_used gauge");
        for u in usage {
            let _ = writeln!(
                out,
                "podnet_ipam_pool_used{{range=\"{}\"}} {}",
                u.range, u.used
            );
        }
        let _ = writeln!(
            out,
            "# HELP podnet_ipam_pool_capacity Usable addresses per node CIDR."
        );
        let _ = writeln!(out, "# TYPE podnet_ipam_pool_capacity gauge");
        for u in usage {
            let _ = writeln!(
                out,
                "podnet_ipam_pool_capacity{{range=\"{}\"}} {}",
                u.range, u.capacity
            );
        }
        gauge(
            &mut out,
            "podnet_ipam_outside_node_cidr",
            "Pods holding an address outside the node's current CIDRs (from before the Node's podCIDRs changed): peers no longer route to them; recreate them.",
            outside_node_cidr as u128,
        );
        gauge(
            &mut out,
            "podnet_peers",
            "Other nodes known from the cluster store.",
            u128::from(self.peers.load(Ordering::Relaxed)),
        );
        gauge(
            &mut out,
            "podnet_routes",
            "Routes to other nodes' pods podnetd holds.",
            u128::from(self.routes.load(Ordering::Relaxed)),
        );
        counter(
            &mut out,
            "podnet_route_changes_total",
            "Routes added, replaced or removed by the reconciler.",
            &self.route_changes,
        );
        counter(
            &mut out,
            "podnet_reconcile_errors_total",
            "Reconcile passes that failed.",
            &self.reconcile_errors,
        );
        let _ = writeln!(
            out,
            "# HELP podnet_reconcile_duration_seconds Time of a route reconcile pass."
        );
        let _ = writeln!(out, "# TYPE podnet_reconcile_duration_seconds histogram");
        self.reconcile
            .render(&mut out, "podnet_reconcile_duration_seconds", "");
        let _ = writeln!(
            out,
            "# HELP podnet_cni_duration_seconds ADD and DEL as the plugin measured them."
        );
        let _ = writeln!(out, "# TYPE podnet_cni_duration_seconds histogram");
        self.plugin_add
            .render(&mut out, "podnet_cni_duration_seconds", "verb=\"ADD\"");
        self.plugin_del
            .render(&mut out, "podnet_cni_duration_seconds", "verb=\"DEL\"");
        let _ = writeln!(
            out,
            "# HELP podnet_cni_errors_total ADD and DEL that failed, as the plugin reported."
        );
        let _ = writeln!(out, "# TYPE podnet_cni_errors_total counter");
        let _ = writeln!(
            out,
            "podnet_cni_errors_total{{verb=\"ADD\"}} {}",
            self.plugin_add_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "podnet_cni_errors_total{{verb=\"DEL\"}} {}",
            self.plugin_del_errors.load(Ordering::Relaxed)
        );
        out
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
