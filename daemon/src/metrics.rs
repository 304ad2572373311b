//! Counters the daemon keeps, rendered in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use podnet_ipam::pool::RangeUsage;

#[derive(Default)]
pub struct Metrics {
    pub allocations: AtomicU64,
    pub releases: AtomicU64,
    pub allocation_errors: AtomicU64,
    pub reclaimed: AtomicU64,
    pub spool_applied: AtomicU64,
    pub gc_released: AtomicU64,
}

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, usage: &[RangeUsage]) -> String {
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
        out
    }
}
