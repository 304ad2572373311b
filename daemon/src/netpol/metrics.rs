//! NetworkPolicy's metrics: how long syncs take, how big the table is,
//! and what each policy allowed and dropped (the table's counters, read
//! back from the kernel).

use std::collections::HashMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::kernel::policy::{PodCounters, TableSize};
use crate::metrics::{count, Count};
use crate::policy::{PodRef, PolicyRef, PolicyType};

/// From a sync of a handful of pods (a millisecond) to a slow full one.
const SYNC_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    /// `NAMESPACE/NAME`.
    policy: String,
    /// `ingress` or `egress`.
    direction: &'static str,
}

pub struct PolicyMetrics {
    pub sync: Histogram,
    pub sync_errors: Counter,
    /// ADDs refused because the pod's policy could not be put in place.
    pub refused: Counter,
    policies: Count,
    chains: Count,
    rules: Count,
    elements: Count,
    allowed: Family<PolicyLabel, Counter>,
    dropped: Family<PolicyLabel, Counter>,
}

/// The counter values last read, per chain and rule, so that what the
/// kernel counted since is added (a smaller value is a reset: the table
/// was replaced).
#[derive(Debug, Default)]
pub(super) struct LastCounts(HashMap<(String, usize), u64>);

impl PolicyMetrics {
    pub fn register(r: &mut Registry) -> Self {
        let sync = Histogram::new(SYNC_BUCKETS);
        r.register_with_unit(
            "podnet_policy_sync_duration",
            "Time of a successful policy sync: snapshot, compile and its nftables transaction",
            Unit::Seconds,
            sync.clone(),
        );
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Count::default();
            r.register(name, help, g.clone());
            g
        };
        let sync_errors = counter(
            r,
            "podnet_policy_sync_errors",
            "Policy syncs that failed (the table keeps its previous rules)",
        );
        let refused = counter(
            r,
            "podnet_policy_refused_pods",
            "ADDs refused because the pod's policy could not be put in place",
        );
        let policies = gauge(
            r,
            "podnet_policy_network_policies",
            "NetworkPolicies in force on this node (all namespaces, as of the last successful sync)",
        );
        let chains = gauge(
            r,
            "podnet_policy_chains",
            "Pod chains in the policy table (one per isolated pod and direction)",
        );
        let rules = gauge(
            r,
            "podnet_policy_rules",
            "Rules in the policy table's pod chains",
        );
        let elements = gauge(
            r,
            "podnet_policy_set_elements",
            "Elements of the policy table's peer sets and verdict maps",
        );
        let allowed = Family::<PolicyLabel, Counter>::default();
        r.register(
            "podnet_policy_allowed_packets",
            "New connections' packets a policy's rules allowed on this node",
            allowed.clone(),
        );
        let dropped = Family::<PolicyLabel, Counter>::default();
        r.register(
            "podnet_policy_dropped_packets",
            "New connections' packets dropped on this node for a pod this policy isolates (every isolating policy of the pod counts the drop)",
            dropped.clone(),
        );
        Self {
            sync,
            sync_errors,
            refused,
            policies,
            chains,
            rules,
            elements,
            allowed,
            dropped,
        }
    }

    /// What the last successful sync put in force: `policies`
    /// NetworkPolicies, in a table of `size`.
    pub fn set_enforced(&self, policies: usize, size: TableSize) {
        self.policies.set(count(policies));
        self.chains.set(count(size.chains));
        self.rules.set(count(size.rules));
        self.elements.set(count(size.elements));
    }

    /// Adds what the counters counted since `last`; `isolating` names the
    /// policies that isolate each pod in each direction.
    pub(super) fn add_counts(
        &self,
        counters: &[PodCounters],
        isolating: impl Fn(&PodRef, PolicyType) -> Vec<PolicyRef>,
        last: &mut LastCounts,
    ) {
        let mut seen = HashMap::new();
        for chain in counters {
            let direction = match chain.direction {
                PolicyType::Ingress => "ingress",
                PolicyType::Egress => "egress",
            };
            let mut since = |rule: usize, packets: u64| {
                let key = (chain.chain.clone(), rule);
                let before = last.0.get(&key).copied().unwrap_or(0);
                seen.insert(key, packets);
                if packets >= before {
                    packets - before
                } else {
                    packets
                }
            };
            for (i, (policies, c)) in chain.allowed.iter().enumerate() {
                let delta = since(i, c.packets);
                for p in policies.iter().filter(|_| delta > 0) {
                    let label = PolicyLabel {
                        policy: p.to_string(),
                        direction,
                    };
                    self.allowed.get_or_create(&label).inc_by(delta);
                }
            }
            let delta = since(usize::MAX, chain.dropped.packets);
            if delta == 0 {
                continue;
            }
            for p in isolating(&chain.pod, chain.direction) {
                let label = PolicyLabel {
                    policy: p.to_string(),
                    direction,
                };
                self.dropped.get_or_create(&label).inc_by(delta);
            }
        }
        last.0 = seen;
    }
}
