//! The `kubernetes` cluster store, on Node objects as the API serves them
//! (`tests/fixtures/kube/`: kind control-plane and worker Nodes written in
//! the API's JSON, managedFields left out).
//!
//! Two tiers. The decisions (adopt, choose, claim/confirm, watch events)
//! are pure functions, tested on the fixtures directly. The client code
//! (kubeconfig, list, merge patches with a resourceVersion, 409 retries,
//! the watcher's relist after 410 Gone) runs against `fake_api`, a tiny
//! hand-written HTTP/1.1 stand-in on 127.0.0.1: no API server exists on
//! these machines, so behaviour on a real one is not verified here.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnetwork::IpNetwork;
use podnet_ipam::cidr::ClusterConfig;
use podnetd::store::kube::k8s_openapi::api::core::v1::Node;
use podnetd::store::kube::kube::runtime::watcher::Event;
use podnetd::store::kube::{
    claim_patch, confirm_patch, plan, plan_spread, record_from_node, tidy_patch, CidrSource,
    KubeBackend, KubeOptions, Plan, WatchState, POD_CIDRS_ANNOTATION, POD_CIDRS_CLAIM_ANNOTATION,
    RBAC, VTEP_MAC_ANNOTATION,
};
use podnetd::store::{NodeRecord, StoreError, StoreEvent};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use podnet_tests::fake_api::FakeApi;

fn fixture_json(name: &str) -> Value {
    let path = format!("{}/fixtures/kube/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn fixture(name: &str) -> Node {
    serde_json::from_value(fixture_json(name)).unwrap()
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNetwork> {
    list.iter().map(|s| net(s)).collect()
}

fn config() -> ClusterConfig {
    ClusterConfig::new(vec![net("10.244.0.0/16")], 24, 64).unwrap()
}

fn dual_config() -> ClusterConfig {
    ClusterConfig::new(vec![net("10.244.0.0/16"), net("fd00:10:244::/56")], 24, 64).unwrap()
}

fn annotate(node: &mut Node, key: &str, value: &str) {
    node.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), value.to_string());
}

fn with_rv(mut node: Node, rv: &str) -> Node {
    node.metadata.resource_version = Some(rv.to_string());
    node
}

fn overlap(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

/// Every CIDR another Node holds or claims in any form.
fn all_cidrs_of(node: &Node) -> Vec<IpNetwork> {
    let mut out: Vec<IpNetwork> = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default()
        .iter()
        .map(|c| net(c))
        .collect();
    for key in [POD_CIDRS_ANNOTATION, POD_CIDRS_CLAIM_ANNOTATION] {
        if let Some(v) = node.metadata.annotations.as_ref().and_then(|a| a.get(key)) {
            out.extend(v.split(',').map(net));
        }
    }
    out
}

// ---- reading Nodes -------------------------------------------------------

#[test]
fn records_come_from_pod_cidrs_internal_ips_and_our_annotations() {
    let cp = record_from_node(&fixture("control-plane")).unwrap();
    assert_eq!(
        cp,
        NodeRecord {
            node: "podnet-control-plane".into(),
            cidrs: nets(&["10.244.0.0/24"]),
            addresses: vec!["172.18.0.3".parse().unwrap()],
            vtep_mac: None,
        }
    );
    // Both families' InternalIPs and podCIDRs; the Hostname address is not an IP.
    let dual = record_from_node(&fixture("dualstack-worker")).unwrap();
    assert_eq!(dual.cidrs, nets(&["10.244.2.0/24", "fd00:10:244:2::/64"]));
    assert_eq!(
        dual.addresses,
        vec![
            "172.18.0.4".parse::<std::net::IpAddr>().unwrap(),
            "fc00:f853:ccd:e793::4".parse().unwrap()
        ]
    );
    // No podCIDRs: our confirmed annotation, and the VTEP MAC.
    let annotated = record_from_node(&fixture("worker-annotated")).unwrap();
    assert_eq!(annotated.cidrs, nets(&["10.244.4.0/24"]));
    assert_eq!(annotated.vtep_mac.as_deref(), Some("0e:4a:91:c2:7d:33"));
    // No CIDRs at all: not routable yet, skipped.
    assert_eq!(record_from_node(&fixture("worker-no-podcidr")), None);
    // A claim is not routable either.
    let mut claimed = fixture("worker-no-podcidr");
    annotate(&mut claimed, POD_CIDRS_CLAIM_ANNOTATION, "10.244.9.0/24");
    assert_eq!(record_from_node(&claimed), None);
    // A hand-edited annotation that is not a CIDR list: skipped, not a panic.
    let mut broken = fixture("worker-no-podcidr");
    annotate(&mut broken, POD_CIDRS_ANNOTATION, "10.244.9.0/33");
    assert_eq!(record_from_node(&broken), None);
}

#[test]
fn rbac_lists_node_reads_and_patches_reads_of_the_daemonset_and_what_policy_reads() {
    assert_eq!(
        RBAC,
        &[
            ("", "nodes", &["list", "watch", "patch"][..]),
            ("apps", "daemonsets", &["get"][..]),
            (
                "networking.k8s.io",
                "networkpolicies",
                &["list", "watch"][..]
            ),
            ("", "namespaces", &["list", "watch"][..]),
            ("", "pods", &["get", "list", "watch"][..]),
        ]
    );
}

// ---- planning ------------------------------------------------------------

#[test]
fn pod_cidrs_present_are_adopted_exactly() {
    let me = fixture("worker");
    let others = [fixture("control-plane"), fixture("worker-annotated")];
    assert_eq!(
        plan(&me, &others, &config(), true).unwrap(),
        Plan::Adopt {
            cidrs: nets(&["10.244.1.0/24"]),
            source: CidrSource::Controller
        }
    );
    // Even outside the configured range, and even when a stale annotation says otherwise.
    let mut me = fixture("worker");
    annotate(&mut me, POD_CIDRS_ANNOTATION, "10.244.7.0/24");
    let other_range = ClusterConfig::new(vec![net("10.10.0.0/16")], 24, 64).unwrap();
    assert_eq!(
        plan(&me, &others, &other_range, false).unwrap(),
        Plan::Adopt {
            cidrs: nets(&["10.244.1.0/24"]),
            source: CidrSource::Controller
        }
    );
    // The stale annotation is removed, the VTEP MAC set, by one plain merge patch.
    assert_eq!(
        tidy_patch(&me, CidrSource::Controller, Some("aa:bb:cc:dd:ee:ff")).unwrap(),
        json!({"metadata": {"annotations": {
            POD_CIDRS_ANNOTATION: null, VTEP_MAC_ANNOTATION: "aa:bb:cc:dd:ee:ff"}}})
    );
    assert_eq!(
        tidy_patch(&fixture("worker"), CidrSource::Controller, None),
        None
    );
}

#[test]
fn dual_stack_pod_cidrs_are_adopted_one_per_family() {
    let me = fixture("dualstack-worker");
    assert_eq!(
        plan(&me, &[], &dual_config(), true).unwrap(),
        Plan::Adopt {
            cidrs: nets(&["10.244.2.0/24", "fd00:10:244:2::/64"]),
            source: CidrSource::Controller
        }
    );
}

#[test]
fn our_annotation_is_adopted_when_there_are_no_pod_cidrs() {
    let me = fixture("worker-annotated");
    let others = [fixture("control-plane"), fixture("worker")];
    assert_eq!(
        plan(&me, &others, &config(), true).unwrap(),
        Plan::Adopt {
            cidrs: nets(&["10.244.4.0/24"]),
            source: CidrSource::Annotation
        }
    );
    // Its own unreadable annotation is an error, never silently replaced.
    let mut broken = fixture("worker-annotated");
    annotate(
        &mut broken,
        POD_CIDRS_ANNOTATION,
        "10.244.4.0/24,not-a-cidr",
    );
    assert!(matches!(
        plan(&broken, &others, &config(), false),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn absent_pod_cidrs_are_chosen_around_every_other_nodes_cidrs() {
    let me = fixture("worker-no-podcidr");
    // .0 and .1 from the controller, .2-.3 a /23 of another size, .4 our
    // confirmed annotation, .5 another node's claim.
    let mut claimer = with_rv(fixture("worker-no-podcidr"), "900");
    claimer.metadata.name = Some("podnet-worker9".into());
    annotate(&mut claimer, POD_CIDRS_CLAIM_ANNOTATION, "10.244.5.0/24");
    let others = [
        fixture("control-plane"),
        fixture("worker"),
        fixture("worker-23"),
        fixture("worker-annotated"),
        claimer,
    ];
    // Others have controller-assigned CIDRs: first wait for ours.
    assert_eq!(plan(&me, &others, &config(), true).unwrap(), Plan::Wait);
    let Plan::Claim {
        cidrs,
        resource_version,
    } = plan(&me, &others, &config(), false).unwrap()
    else {
        panic!("expected a claim")
    };
    assert_eq!(cidrs, nets(&["10.244.6.0/24"]));
    assert_eq!(resource_version, "701");
    for other in &others {
        for theirs in all_cidrs_of(other) {
            assert!(
                !overlap(&cidrs[0], &theirs),
                "{} overlaps {theirs}",
                cidrs[0]
            );
        }
    }
    // The claim is conditional on the Node's resourceVersion.
    assert_eq!(
        claim_patch(&cidrs, &resource_version, Some("0e:00:00:00:00:01")),
        json!({"metadata": {"resourceVersion": "701", "annotations": {
            POD_CIDRS_CLAIM_ANNOTATION: "10.244.6.0/24",
            VTEP_MAC_ANNOTATION: "0e:00:00:00:00:01"}}})
    );
}

#[test]
fn absent_pod_cidrs_in_a_dual_stack_cluster_get_one_per_family() {
    let me = fixture("worker-no-podcidr");
    let others = [fixture("dualstack-worker")];
    let Plan::Claim { cidrs, .. } = plan(&me, &others, &dual_config(), false).unwrap() else {
        panic!("expected a claim")
    };
    assert_eq!(cidrs, nets(&["10.244.0.0/24", "fd00:10:244::/64"]));
}

#[test]
fn an_uncontested_claim_is_confirmed_and_a_contested_one_yields() {
    let mut me = with_rv(fixture("worker-no-podcidr"), "5");
    annotate(&mut me, POD_CIDRS_CLAIM_ANNOTATION, "10.244.0.0/24");
    let mut rival = with_rv(fixture("worker-no-podcidr"), "6");
    rival.metadata.name = Some("podnet-rival".into());
    // Alone: confirm (the read came after our claim was written).
    assert_eq!(
        plan(&me, std::slice::from_ref(&rival), &config(), false).unwrap(),
        Plan::Confirm {
            cidrs: nets(&["10.244.0.0/24"]),
            resource_version: "5".into()
        }
    );
    assert_eq!(
        confirm_patch(&nets(&["10.244.0.0/24"]), "5", None),
        json!({"metadata": {"resourceVersion": "5", "annotations": {
            POD_CIDRS_ANNOTATION: "10.244.0.0/24", POD_CIDRS_CLAIM_ANNOTATION: null}}})
    );
    // The rival claimed the same block concurrently: never both confirm.
    annotate(&mut rival, POD_CIDRS_CLAIM_ANNOTATION, "10.244.0.0/24");
    let mine = plan(&me, std::slice::from_ref(&rival), &config(), false).unwrap();
    let theirs = plan(&rival, std::slice::from_ref(&me), &config(), false).unwrap();
    assert!(!matches!(mine, Plan::Confirm { .. }), "{mine:?}");
    assert!(!matches!(theirs, Plan::Confirm { .. }), "{theirs:?}");
    assert_eq!(
        mine,
        Plan::Claim {
            cidrs: nets(&["10.244.1.0/24"]),
            resource_version: "5".into()
        }
    );
}

#[test]
fn nodes_leaving_a_contested_block_scatter() {
    let mut me = with_rv(fixture("worker-no-podcidr"), "5");
    annotate(&mut me, POD_CIDRS_CLAIM_ANNOTATION, "10.244.0.0/24");
    let mut rival = with_rv(fixture("worker-no-podcidr"), "6");
    rival.metadata.name = Some("podnet-rival".into());
    annotate(&mut rival, POD_CIDRS_CLAIM_ANNOTATION, "10.244.0.0/24");
    let others = [rival];
    // One contender: the lowest or the next free block, by the random draw.
    for (random, expected) in [
        (0, "10.244.1.0/24"),
        (1, "10.244.2.0/24"),
        (2, "10.244.1.0/24"),
    ] {
        assert_eq!(
            plan_spread(&me, &others, &config(), false, random).unwrap(),
            Plan::Claim {
                cidrs: nets(&[expected]),
                resource_version: "5".into()
            }
        );
    }
    // Nothing to scatter over: the lowest free block, not an error.
    let tiny = ClusterConfig::new(vec![net("10.244.0.0/23")], 24, 64).unwrap();
    assert_eq!(
        plan_spread(&me, &others, &tiny, false, 1).unwrap(),
        Plan::Claim {
            cidrs: nets(&["10.244.1.0/24"]),
            resource_version: "5".into()
        }
    );
}

#[test]
fn a_resource_version_conflict_is_planned_again_against_the_fresh_node() {
    let others = [fixture("control-plane"), fixture("worker")];
    let me = with_rv(fixture("worker-no-podcidr"), "1");
    let first = plan(&me, &others, &config(), false).unwrap();
    assert_eq!(
        first,
        Plan::Claim {
            cidrs: nets(&["10.244.2.0/24"]),
            resource_version: "1".into()
        }
    );
    // The patch carrying rv "1" got 409: meanwhile the kubelet updated the
    // Node (rv "2") and a competitor claimed our first choice.
    let fresh = with_rv(fixture("worker-no-podcidr"), "2");
    let mut competitor = with_rv(fixture("worker-no-podcidr"), "3");
    competitor.metadata.name = Some("podnet-worker7".into());
    annotate(&mut competitor, POD_CIDRS_CLAIM_ANNOTATION, "10.244.2.0/24");
    let mut fresh_others = others.to_vec();
    fresh_others.push(competitor);
    assert_eq!(
        plan(&fresh, &fresh_others, &config(), false).unwrap(),
        Plan::Claim {
            cidrs: nets(&["10.244.3.0/24"]),
            resource_version: "2".into()
        }
    );
}

// ---- watch events --------------------------------------------------------

fn peers_after(peers: &mut BTreeMap<String, NodeRecord>, event: StoreEvent) {
    // As the route reconciler applies them.
    match event {
        StoreEvent::Upsert(r) => {
            peers.insert(r.node.clone(), r);
        }
        StoreEvent::Removed(n) => {
            peers.remove(&n);
        }
        StoreEvent::Resync(all) => *peers = all.into_iter().map(|r| (r.node.clone(), r)).collect(),
    }
}

fn relist(state: &mut WatchState, nodes: &[Node]) -> Vec<StoreEvent> {
    let mut out: Vec<StoreEvent> = state.apply(Event::Init).into_iter().collect();
    for node in nodes {
        out.extend(state.apply(Event::InitApply(node.clone())));
    }
    out.extend(state.apply(Event::InitDone));
    out
}

#[test]
fn a_list_is_one_resync_of_nodes_with_cidrs() {
    let mut state = WatchState::default();
    let events = relist(
        &mut state,
        &[
            fixture("control-plane"),
            fixture("worker"),
            fixture("worker-no-podcidr"),
        ],
    );
    let [StoreEvent::Resync(records)] = events.as_slice() else {
        panic!("{events:?}")
    };
    let names: Vec<&str> = records.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(names, ["podnet-control-plane", "podnet-worker"]);
}

#[test]
fn a_deleted_node_is_removed_from_the_peers() {
    let mut state = WatchState::default();
    let mut peers = BTreeMap::new();
    for e in relist(&mut state, &[fixture("control-plane"), fixture("worker")]) {
        peers_after(&mut peers, e);
    }
    assert!(peers.contains_key("podnet-worker"));
    let event = state.apply(Event::Delete(fixture("worker"))).unwrap();
    assert_eq!(event, StoreEvent::Removed("podnet-worker".into()));
    peers_after(&mut peers, event);
    assert_eq!(peers.keys().collect::<Vec<_>>(), ["podnet-control-plane"]);
}

#[test]
fn node_updates_are_upserts_only_when_the_record_changes() {
    let mut state = WatchState::default();
    relist(&mut state, &[fixture("worker")]);
    // A kubelet status update: same record, nothing to do.
    let heartbeat = with_rv(fixture("worker"), "999");
    assert_eq!(state.apply(Event::Apply(heartbeat)), None);
    // A node gets its CIDRs confirmed: it becomes a peer.
    let mut joined = fixture("worker-no-podcidr");
    assert_eq!(state.apply(Event::Apply(joined.clone())), None);
    annotate(&mut joined, POD_CIDRS_ANNOTATION, "10.244.8.0/24");
    let Some(StoreEvent::Upsert(record)) = state.apply(Event::Apply(joined.clone())) else {
        panic!("expected an upsert")
    };
    assert_eq!(record.cidrs, nets(&["10.244.8.0/24"]));
    // Its address changes: an upsert again.
    let mut moved = fixture("worker");
    moved.status.as_mut().unwrap().addresses.as_mut().unwrap()[0].address = "172.18.0.9".into();
    assert!(matches!(
        state.apply(Event::Apply(moved)),
        Some(StoreEvent::Upsert(_))
    ));
    // It loses its CIDRs: no longer routable.
    joined
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove(POD_CIDRS_ANNOTATION);
    assert_eq!(
        state.apply(Event::Apply(joined)),
        Some(StoreEvent::Removed("podnet-worker3".into()))
    );
}

#[test]
fn a_watch_restart_relists_and_the_resync_replaces_the_peer_set() {
    let mut state = WatchState::default();
    let mut peers = BTreeMap::new();
    for e in relist(
        &mut state,
        &[
            fixture("control-plane"),
            fixture("worker"),
            fixture("dualstack-worker"),
        ],
    ) {
        peers_after(&mut peers, e);
    }
    assert_eq!(peers.len(), 3);
    // The watch broke (410 Gone); meanwhile podnet-worker was deleted and
    // podnet-worker4 joined. The watcher relists: one Resync, no Removed.
    let events = relist(
        &mut state,
        &[
            fixture("control-plane"),
            fixture("dualstack-worker"),
            fixture("worker-annotated"),
        ],
    );
    assert_eq!(events.len(), 1, "{events:?}");
    for e in events {
        peers_after(&mut peers, e);
    }
    assert_eq!(
        peers.keys().collect::<Vec<_>>(),
        ["podnet-control-plane", "podnet-worker2", "podnet-worker4"]
    );
}

// ---- the client against a fake API server ---------------------------------

fn my_record(node: &str) -> NodeRecord {
    NodeRecord {
        node: node.into(),
        cidrs: Vec::new(),
        addresses: vec!["172.18.0.5".parse().unwrap()],
        vtep_mac: Some("0e:11:22:33:44:55".into()),
    }
}

async fn backend(api: &FakeApi, config: ClusterConfig) -> KubeBackend {
    KubeBackend::connect(KubeOptions {
        kubeconfig: Some(api.kubeconfig()),
        config,
    })
    .await
    .unwrap()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within 20 s"))
}

#[tokio::test]
async fn client_adopts_pod_cidrs_and_annotates_the_vtep_mac() {
    let api = FakeApi::start(vec![fixture_json("control-plane"), fixture_json("worker")]).await;
    let store = backend(&api, config()).await;
    let mut record = my_record("podnet-worker");
    record.addresses = vec!["172.18.0.2".parse().unwrap()];
    let got = within("register", store.register(record)).await.unwrap();
    assert_eq!(got.cidrs, nets(&["10.244.1.0/24"]));
    api.read(|s| {
        assert_eq!(
            s.annotation("podnet-worker", VTEP_MAC_ANNOTATION)
                .as_deref(),
            Some("0e:11:22:33:44:55")
        );
        assert_eq!(s.annotation("podnet-worker", POD_CIDRS_ANNOTATION), None);
        // One list, one unconditional patch.
        assert_eq!(s.patches.len(), 1);
        assert!(s.patches[0].1["metadata"].get("resourceVersion").is_none());
    });
    let mut names: Vec<String> = within("list", store.list())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.node)
        .collect();
    names.sort();
    assert_eq!(names, ["podnet-control-plane", "podnet-worker"]);
    // Registering again changes nothing.
    let again = within("register", store.register(my_record("podnet-worker")))
        .await
        .unwrap();
    assert_eq!(again.cidrs, got.cidrs);
    assert_eq!(api.read(|s| s.patches.len()), 1);
}

#[tokio::test]
async fn client_claims_then_confirms_with_resource_versions() {
    let api = FakeApi::start(vec![
        fixture_json("worker-no-podcidr"),
        fixture_json("worker-annotated"),
    ])
    .await;
    let store = backend(&api, config()).await;
    let got = within("register", store.register(my_record("podnet-worker3")))
        .await
        .unwrap();
    assert_eq!(got.cidrs, nets(&["10.244.0.0/24"]));
    api.read(|s| {
        assert_eq!(
            s.annotation("podnet-worker3", POD_CIDRS_ANNOTATION)
                .as_deref(),
            Some("10.244.0.0/24")
        );
        assert_eq!(
            s.annotation("podnet-worker3", POD_CIDRS_CLAIM_ANNOTATION),
            None
        );
        let codes: Vec<u16> = s.patches.iter().map(|p| p.2).collect();
        assert_eq!(codes, [200, 200], "claim, confirm");
        for (_, body, _) in &s.patches {
            assert!(body["metadata"]["resourceVersion"].is_string(), "{body}");
        }
    });
    // A restart adopts it without writing.
    let again = within("register", store.register(my_record("podnet-worker3")))
        .await
        .unwrap();
    assert_eq!(again.cidrs, got.cidrs);
    assert_eq!(api.read(|s| s.patches.len()), 2);
}

#[tokio::test]
async fn client_retries_a_409_against_the_fresh_node() {
    let api = FakeApi::start(vec![
        fixture_json("worker-no-podcidr"),
        fixture_json("worker-annotated"),
    ])
    .await;
    // Just before our first claim lands: the kubelet updates our Node and
    // worker4 (a competitor) claims the block we chose.
    api.update(|s| {
        s.before_patch("podnet-worker3", |s| {
            s.modify("podnet-worker3", |n| {
                n["status"]["conditions"][3]["lastHeartbeatTime"] = json!("2025-06-02T09:26:03Z");
            });
            s.modify("podnet-worker4", |n| {
                n["metadata"]["annotations"][POD_CIDRS_CLAIM_ANNOTATION] = json!("10.244.0.0/24");
            });
        })
    });
    let store = backend(&api, config()).await;
    let got = within("register", store.register(my_record("podnet-worker3")))
        .await
        .unwrap();
    assert_eq!(got.cidrs, nets(&["10.244.1.0/24"]));
    let codes: Vec<u16> = api.read(|s| s.patches.iter().map(|p| p.2).collect());
    assert_eq!(codes, [409, 200, 200], "claim (stale), claim, confirm");
}

#[tokio::test]
async fn client_yields_a_block_claimed_concurrently() {
    let api = FakeApi::start(vec![
        fixture_json("worker-no-podcidr"),
        fixture_json("worker-annotated"),
    ])
    .await;
    // Our claim succeeds (our Node did not change), but worker4 claimed the
    // same block concurrently: the read that follows sees it, so we must
    // not confirm.
    api.update(|s| {
        s.before_patch("podnet-worker3", |s| {
            s.modify("podnet-worker4", |n| {
                n["metadata"]["annotations"][POD_CIDRS_CLAIM_ANNOTATION] = json!("10.244.0.0/24");
            });
        })
    });
    let store = backend(&api, config()).await;
    let got = within("register", store.register(my_record("podnet-worker3")))
        .await
        .unwrap();
    // It moved to one of the two lowest free blocks (one contender: it
    // scatters over two), never the contested one nor worker4's .4.
    let [cidr] = got.cidrs[..] else {
        panic!("{got:?}")
    };
    assert!(
        cidr == net("10.244.1.0/24") || cidr == net("10.244.2.0/24"),
        "{cidr}"
    );
    let claims: Vec<String> = api.read(|s| {
        s.patches
            .iter()
            .filter_map(|p| p.1["metadata"]["annotations"][POD_CIDRS_CLAIM_ANNOTATION].as_str())
            .map(str::to_string)
            .collect()
    });
    assert_eq!(claims, ["10.244.0.0/24".to_string(), cidr.to_string()]);
    assert_eq!(
        api.read(|s| s.annotation("podnet-worker3", POD_CIDRS_ANNOTATION)),
        Some(cidr.to_string())
    );
}

#[tokio::test]
async fn nodes_registering_at_once_get_distinct_cidrs() {
    let names: Vec<String> = (0..12).map(|i| format!("podnet-race{i}")).collect();
    let nodes = names
        .iter()
        .map(|name| {
            let mut n = fixture_json("worker-no-podcidr");
            n["metadata"]["name"] = json!(name);
            n
        })
        .collect();
    let api = FakeApi::start(nodes).await;
    let mut tasks = Vec::new();
    for name in &names {
        let store = backend(&api, config()).await;
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            store.register(my_record(&name)).await
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(within("register", task).await.unwrap().unwrap().cidrs);
    }
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(!overlap(a, b), "{a} and {b} overlap: {all:?}");
        }
    }
    assert_eq!(all.len(), names.len());
    // At least a claim and a confirmation each; more when they met.
    assert!(api.read(|s| s.patches.len()) >= 2 * names.len());
}

#[tokio::test]
async fn client_reports_a_missing_node_and_an_unavailable_api() {
    let api = FakeApi::start(vec![fixture_json("worker")]).await;
    let store = backend(&api, config()).await;
    let err = within("register", store.register(my_record("nope")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("there is no Node \"nope\""),
        "{err}"
    );
    api.update(|s| s.unavailable = true);
    let err = within("list", store.list()).await.unwrap_err();
    assert!(
        err.to_string().contains("503") || err.to_string().contains("fake is down"),
        "{err}"
    );
}

async fn next_event(rx: &mut mpsc::Receiver<StoreEvent>) -> StoreEvent {
    within("a watch event", rx.recv()).await.unwrap()
}

#[tokio::test]
async fn client_watch_resyncs_streams_and_relists_after_gone() {
    let api = FakeApi::start(vec![
        fixture_json("control-plane"),
        fixture_json("worker"),
        fixture_json("dualstack-worker"),
    ])
    .await;
    let store = backend(&api, config()).await;
    let (tx, mut rx) = mpsc::channel(64);
    let watch = tokio::spawn(async move { store.watch(tx).await });
    let mut peers = BTreeMap::new();

    let first = next_event(&mut rx).await;
    assert!(
        matches!(&first, StoreEvent::Resync(r) if r.len() == 3),
        "{first:?}"
    );
    peers_after(&mut peers, first);

    api.update(|s| s.delete("podnet-worker"));
    let removed = next_event(&mut rx).await;
    assert_eq!(removed, StoreEvent::Removed("podnet-worker".into()));
    peers_after(&mut peers, removed);

    // The API goes away: nothing is reported, least of all a removal.
    api.update(|s| {
        s.unavailable = true;
        s.drop_watches();
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rx.try_recv().is_err(), "no events while the API is down");

    // While it was down podnet-worker2 was deleted, podnet-worker4 joined,
    // and history was compacted: the watcher's resume gets 410 Gone and
    // relists; the Resync replaces the peer set.
    api.update(|s| {
        s.delete("podnet-worker2");
        s.put(fixture_json("worker-annotated"));
        s.compact();
        s.unavailable = false;
    });
    let resync = next_event(&mut rx).await;
    let StoreEvent::Resync(_) = &resync else {
        panic!("expected a Resync after the relist, got {resync:?}")
    };
    peers_after(&mut peers, resync);
    assert_eq!(
        peers.keys().collect::<Vec<_>>(),
        ["podnet-control-plane", "podnet-worker4"]
    );
    assert!(
        api.read(|s| s
            .requests
            .iter()
            .filter(|r| r.contains("watch=true"))
            .count())
            >= 2
    );
    drop(rx);
    within("the watch to end", watch).await.unwrap();
}
