//! The daemon's metrics, in a `prometheus-client` registry: the names,
//! types and text encodings are the Prometheus project's own, not ours to
//! get wrong. Counters end in `_total` (the library adds it), durations
//! are histograms in `_seconds`.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use podnet_ipam::attachment::RangeUsage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Bucket bounds in seconds: from a fast ADD (1 ms) to a slow resync.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// A number of things (peers, routes, pods): never negative.
pub type Count = Gauge<u64, AtomicU64>;

/// An IPv6 node CIDR (a /64) holds more addresses than a u64 counts:
/// capacities are floats, as every Prometheus value is in the end.
type Capacity = Gauge<f64, AtomicU64>;

/// A gauge's value for `n` things.
pub fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabel {
    verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RangeLabel {
    range: String,
}

/// The exposition formats a scraper may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4: what every scraper and `curl` reads.
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper whose `Accept` names it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub allocations: Counter,
    pub releases: Counter,
    pub allocation_errors: Counter,
    pub reclaimed: Counter,
    pub spool_applied: Counter,
    pub gc_released: Counter,
    pub peers: Count,
    pub routes: Count,
    pub route_changes: Counter,
    pub reconcile_errors: Counter,
    pub reconcile: Histogram,
    /// ADD and DEL as the plugin measured them (reported after each call).
    pub plugin_add: Histogram,
    pub plugin_del: Histogram,
    pub plugin_add_errors: Counter,
    pub plugin_del_errors: Counter,
    /// NetworkPolicy's (`crate::netpol`).
    pub policy: crate::netpol::PolicyMetrics,
    pool: PoolGauges,
    /// The pool gauges are set from the database at each scrape: two
    /// scrapes at once must not encode each other's half-set families.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Reg(Registry::default());
        let allocations = r.counter("podnet_ipam_allocations", "Addresses handed out");
        let releases = r.counter("podnet_ipam_releases", "Attachments released by DEL");
        let allocation_errors =
            r.counter("podnet_ipam_allocation_errors", "ADDs that got no address");
        let reclaimed = r.counter(
            "podnet_ipam_reclaimed",
            "Leaked attachments the reclaimer released",
        );
        let spool_applied = r.counter("podnet_ipam_spool_applied", "Spooled releases applied");
        let gc_released = r.counter("podnet_ipam_gc_released", "Attachments released by CNI GC");
        let pool = PoolGauges::register(&mut r);
        let peers = r.count("podnet_peers", "Other nodes known from the cluster store");
        let routes = r.count("podnet_routes", "Routes to other nodes' pods podnetd holds");
        let route_changes = r.counter(
            "podnet_route_changes",
            "Routes added, replaced or removed by the reconciler",
        );
        let reconcile_errors = r.counter("podnet_reconcile_errors", "Reconcile passes that failed");
        let reconcile = Histogram::new(BUCKETS);
        r.0.register_with_unit(
            "podnet_reconcile_duration",
            "Time of a route reconcile pass",
            Unit::Seconds,
            reconcile.clone(),
        );
        let (plugin_add, plugin_del, plugin_add_errors, plugin_del_errors) = register_cni(&mut r.0);
        let policy = crate::netpol::PolicyMetrics::register(&mut r.0);
        Self {
            registry: r.0,
            allocations,
            releases,
            allocation_errors,
            reclaimed,
            spool_applied,
            gc_released,
            peers,
            routes,
            route_changes,
            reconcile_errors,
            reconcile,
            plugin_add,
            plugin_del,
            plugin_add_errors,
            plugin_del_errors,
            policy,
            pool,
            scrape: Mutex::new(()),
        }
    }

    /// The registry in `format`, with the pool's current `usage` and
    /// `outside_node_cidr`: pods whose address is outside the node's
    /// current CIDRs (see `Pool::outside_ranges`).
    pub fn render(
        &self,
        usage: &[RangeUsage],
        outside_node_cidr: usize,
        format: Format,
    ) -> Result<String, std::fmt::Error> {
        let _one = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.pool.set(usage, outside_node_cidr);
        let mut out = String::new();
        match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
        }
        Ok(out)
    }
}

/// Registers metrics and hands back their handles.
struct Reg(Registry);

impl Reg {
    fn counter(&mut self, name: &str, help: &str) -> Counter {
        let c = Counter::default();
        self.0.register(name, help, c.clone());
        c
    }

    fn count(&mut self, name: &str, help: &str) -> Count {
        let g = Count::default();
        self.0.register(name, help, g.clone());
        g
    }
}

/// The pool's use, read from the database at each scrape.
struct PoolGauges {
    used: Family<RangeLabel, Count>,
    capacity: Family<RangeLabel, Capacity>,
    outside_node_cidr: Count,
}

impl PoolGauges {
    fn register(r: &mut Reg) -> Self {
        let used = Family::<RangeLabel, Count>::default();
        r.0.register(
            "podnet_ipam_pool_used",
            "Addresses in use per node CIDR",
            used.clone(),
        );
        let capacity = Family::<RangeLabel, Capacity>::default();
        r.0.register(
            "podnet_ipam_pool_capacity",
            "Usable addresses per node CIDR",
            capacity.clone(),
        );
        let outside_node_cidr = r.count(
            "podnet_ipam_outside_node_cidr",
            "Pods holding an address outside the node's current CIDRs (from before the Node's podCIDRs changed): peers no longer route to them; recreate them",
        );
        Self {
            used,
            capacity,
            outside_node_cidr,
        }
    }

    fn set(&self, usage: &[RangeUsage], outside_node_cidr: usize) {
        // A node CIDR given up (the Node's podCIDRs changed) leaves no
        // series behind.
        self.used.clear();
        self.capacity.clear();
        for u in usage {
            let range = RangeLabel {
                range: u.range.to_string(),
            };
            self.used
                .get_or_create(&range)
                .set(u64::try_from(u.used).unwrap_or(u64::MAX));
            // Exact up to 2^53 addresses; past that no one counts singly.
            self.capacity.get_or_create(&range).set(u.capacity as f64);
        }
        self.outside_node_cidr.set(count(outside_node_cidr));
    }
}

/// `podnet_cni_duration_seconds` and `podnet_cni_errors_total`, one series
/// per verb, created now so that both verbs show from the first scrape.
fn register_cni(r: &mut Registry) -> (Histogram, Histogram, Counter, Counter) {
    let durations =
        Family::<VerbLabel, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
    r.register_with_unit(
        "podnet_cni_duration",
        "ADD and DEL as the plugin measured them",
        Unit::Seconds,
        durations.clone(),
    );
    let errors = Family::<VerbLabel, Counter>::default();
    r.register(
        "podnet_cni_errors",
        "ADD and DEL that failed, as the plugin reported",
        errors.clone(),
    );
    let (add, del) = (VerbLabel { verb: "ADD" }, VerbLabel { verb: "DEL" });
    (
        durations.get_or_create_owned(&add),
        durations.get_or_create_owned(&del),
        errors.get_or_create_owned(&add),
        errors.get_or_create_owned(&del),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        m.render(&[], 0, Format::Prometheus).unwrap()
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_in_seconds() {
        let m = Metrics::default();
        m.reconcile.observe(0.0015);
        m.reconcile.observe(0.030);
        let text = text(&m);
        assert!(text.contains("# TYPE podnet_reconcile_duration_seconds histogram"));
        assert!(text.contains("podnet_reconcile_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("podnet_reconcile_duration_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("podnet_reconcile_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("podnet_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("podnet_reconcile_duration_seconds_count 2"));
    }

    #[test]
    fn cni_latencies_per_verb_from_the_first_scrape() {
        let m = Metrics::default();
        let before = text(&m);
        assert!(before.contains("podnet_cni_duration_seconds_count{verb=\"ADD\"} 0"));
        assert!(before.contains("podnet_cni_duration_seconds_count{verb=\"DEL\"} 0"));
        m.plugin_add.observe(0.004);
        m.plugin_del_errors.inc();
        let after = text(&m);
        assert!(after.contains("podnet_cni_duration_seconds_bucket{verb=\"ADD\",le=\"0.005\"} 1"));
        assert!(after.contains("podnet_cni_duration_seconds_count{verb=\"ADD\"} 1"));
        assert!(after.contains("podnet_cni_errors_total{verb=\"DEL\"} 1"));
        assert!(after.contains("podnet_cni_errors_total{verb=\"ADD\"} 0"));
    }

    #[test]
    fn counters_end_in_total_and_gauges_do_not() {
        let m = Metrics::default();
        m.allocations.inc();
        m.route_changes.inc_by(3);
        m.peers.set(count(2));
        let text = text(&m);
        for want in [
            "# TYPE podnet_ipam_allocations_total counter",
            "podnet_ipam_allocations_total 1",
            "podnet_route_changes_total 3",
            "podnet_ipam_reclaimed_total 0",
            "podnet_peers 2",
            // The library ends each help text with its period.
            "# HELP podnet_peers Other nodes known from the cluster store.",
            "podnet_routes 0",
            "podnet_ipam_outside_node_cidr 0",
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "missing {want} in:\n{text}"
            );
        }
    }

    #[test]
    fn pool_gauges_follow_the_current_ranges_only() {
        let m = Metrics::default();
        let usage = |range: &str, used| RangeUsage {
            range: range.parse().unwrap(),
            capacity: 253,
            used,
        };
        let first = m
            .render(&[usage("10.244.1.0/24", 4)], 1, Format::Prometheus)
            .unwrap();
        assert!(first.contains("podnet_ipam_pool_used{range=\"10.244.1.0/24\"} 4"));
        assert!(first.contains("podnet_ipam_pool_capacity{range=\"10.244.1.0/24\"} 253"));
        assert!(first
            .lines()
            .any(|l| l == "podnet_ipam_outside_node_cidr 1"));
        let moved = m
            .render(&[usage("10.244.2.0/24", 0)], 0, Format::Prometheus)
            .unwrap();
        assert!(!moved.contains("10.244.1.0/24"), "{moved}");
        assert!(moved.contains("podnet_ipam_pool_used{range=\"10.244.2.0/24\"} 0"));
    }

    #[test]
    fn openmetrics_when_asked() {
        let m = Metrics::default();
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        let text = m.render(&[], 0, Format::OpenMetrics).unwrap();
        assert!(text.contains("# UNIT podnet_reconcile_duration_seconds seconds"));
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains(".."), "{text}");
    }
}
