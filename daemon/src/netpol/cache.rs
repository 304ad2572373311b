//! What the engine reads from the API: NetworkPolicies, Namespaces and
//! Pods, each kept by kube-runtime's reflector (a watcher feeding a
//! store: list, watch, relist on 410, backoff on errors), and one GET for
//! a pod at its ADD when the watch has not shown it yet.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use podnet_ipam::proto::PodName;
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Notify};

use super::memo::Memo;
use super::PolicyError;
use crate::policy::convert::{self, Converted};
use crate::policy::Snapshot;

/// How long a GET of a pod at its ADD may take.
const READ_POD_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Cache {
    client: kube::Client,
    policies: Store<NetworkPolicy>,
    namespaces: Store<Namespace>,
    pods: Store<Pod>,
    /// Set once every store holds its first complete list.
    listed: watch::Receiver<bool>,
    /// Events the stores have applied: while it stays the same, so does
    /// the snapshot.
    events: Arc<AtomicU64>,
}

impl Cache {
    /// Starts the three reflectors; `changed` is notified after every
    /// event any of them applies.
    pub fn start(client: kube::Client, changed: Arc<Notify>) -> Self {
        let events = Arc::new(AtomicU64::new(0));
        let seen = Seen {
            changed,
            events: events.clone(),
        };
        let policies = reflect(Api::all(client.clone()), seen.clone(), "NetworkPolicy");
        let namespaces = reflect(Api::all(client.clone()), seen.clone(), "Namespace");
        let pods = reflect(Api::all(client.clone()), seen, "Pod");
        // `Store::wait_until_ready` wakes only the last of several tasks
        // waiting at once (one waker slot): it is awaited by this task
        // alone, which tells everyone else through a watch channel.
        let (tx, listed) = watch::channel(false);
        let stores = (policies.clone(), namespaces.clone(), pods.clone());
        tokio::spawn(async move {
            // A store's writer is dropped only when its task ends, which
            // it never does while the daemon runs.
            let _ = stores.0.wait_until_ready().await;
            let _ = stores.1.wait_until_ready().await;
            let _ = stores.2.wait_until_ready().await;
            let _ = tx.send(true);
        });
        Self {
            policies,
            namespaces,
            pods,
            client,
            listed,
            events,
        }
    }

    /// Returns once every store holds its first complete list.
    pub async fn ready(&self) {
        let mut listed = self.listed.clone();
        // The sender lives in a task that ends only once it has sent.
        let _ = listed.wait_for(|l| *l).await;
    }

    /// Events the stores have applied so far: while it stays the same, so
    /// does [`Self::snapshot`].
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::SeqCst)
    }

    /// Everything the stores hold, as the engine's snapshot, and what
    /// the conversion left out; `memo` keeps the conversions between
    /// calls.
    pub fn snapshot(&self, memo: &mut Memos) -> (Snapshot, Vec<String>) {
        // Read before the stores: an event applied meanwhile bumps it
        // after, and the next call assembles again.
        let events = self.events.load(Ordering::SeqCst);
        if let Some((at, snapshot, left_out)) = &memo.last {
            if *at == events {
                return (snapshot.clone(), left_out.clone());
            }
        }
        let mut snapshot = Snapshot::default();
        let mut left_out = Vec::new();
        memo.namespaces.update(
            &self.namespaces.state(),
            Arc::make_mut(&mut snapshot.namespaces),
            &mut left_out,
        );
        memo.pods
            .update(&self.pods.state(), &mut snapshot.pods, &mut left_out);
        memo.policies.update(
            &self.policies.state(),
            Arc::make_mut(&mut snapshot.policies),
            &mut left_out,
        );
        memo.last = Some((events, snapshot.clone(), left_out.clone()));
        (snapshot, left_out)
    }

    /// The pod as the engine sees it: from the watch, or read once.
    pub async fn pod(&self, name: &PodName) -> Result<crate::policy::Pod, PolicyError> {
        let cached = self
            .pods
            .get(&ObjectRef::new(&name.name).within(&name.namespace));
        let object = match cached {
            Some(pod) => pod,
            None => Arc::new(self.read_pod(name).await?),
        };
        let converted = convert::pod(&object).map_err(|e| PolicyError::Unreadable {
            pod: name.to_string(),
            reason: e.to_string(),
        })?;
        for left_out in &converted.left_out {
            tracing::warn!(pod = %name, problem = %left_out, "part of a pod left out of policy");
        }
        Ok(converted.value)
    }

    async fn read_pod(&self, name: &PodName) -> Result<Pod, PolicyError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &name.namespace);
        match tokio::time::timeout(READ_POD_TIMEOUT, api.get_opt(&name.name)).await {
            Ok(Ok(Some(pod))) => Ok(pod),
            Ok(Ok(None)) => Err(PolicyError::PodNotFound {
                pod: name.to_string(),
            }),
            Ok(Err(source)) => Err(PolicyError::ReadPod {
                pod: name.to_string(),
                source: Box::new(source),
            }),
            Err(_) => Err(PolicyError::ReadPodTimeout {
                pod: name.to_string(),
                after: READ_POD_TIMEOUT,
            }),
        }
    }
}

/// The conversions of each kind, kept between syncs.
pub(super) struct Memos {
    namespaces: Memo<Namespace, crate::policy::Namespace>,
    pods: Memo<Pod, crate::policy::Pod>,
    policies: Memo<NetworkPolicy, crate::policy::NetworkPolicy>,
    /// The last snapshot assembled, at that count of events, and what
    /// it left out.
    last: Option<(u64, Snapshot, Vec<String>)>,
}

impl Default for Memos {
    fn default() -> Self {
        Self {
            namespaces: Memo::new(|ns| {
                convert::namespace(ns).map(|value| Converted {
                    value,
                    left_out: Vec::new(),
                })
            }),
            pods: Memo::new(convert::pod),
            policies: Memo::new(convert::network_policy),
            last: None,
        }
    }
}

/// Told of every event a store applies.
#[derive(Clone)]
struct Seen {
    changed: Arc<Notify>,
    events: Arc<AtomicU64>,
}

/// A store of every `K` in the cluster, kept by a reflector task. Managed
/// fields and annotations (often the largest part of an object, and never
/// read by policy) are dropped on the way in: a node holds every pod of
/// the cluster.
fn reflect<K>(api: Api<K>, seen: Seen, kind: &'static str) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object: &mut K| {
            object.managed_fields_mut().clear();
            object.annotations_mut().clear();
        });
    let stream = reflector::reflector(writer, stream);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // The reflector has applied the event to the store.
                Ok(_) => {
                    seen.events.fetch_add(1, Ordering::SeqCst);
                    seen.changed.notify_one();
                }
                Err(e) => tracing::warn!(error = %e, kind, "watch interrupted; retrying"),
            }
        }
    });
    reader
}
