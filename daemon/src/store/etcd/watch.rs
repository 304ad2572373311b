//! The watch of node records: list, `Resync`, then every change from the
//! next revision; after any interruption, back off and start over.

use etcd_client::{Event, EventType, WatchOptions};
use tokio::sync::mpsc;

use super::{warn_corrupt, EtcdBackend, Inner, BACKOFF_MAX, BACKOFF_MIN};
use crate::retry::Backoff;
use crate::store::StoreEvent;
use crate::store::StoreReach;

impl EtcdBackend {
    /// Sends a `Resync` of every node, then every change, until `tx` is
    /// closed. After any interruption it backs off (100 ms doubling to 5 s),
    /// lists again and sends a fresh `Resync`; while etcd is unreachable it
    /// sends nothing at all.
    pub async fn watch(&self, tx: mpsc::Sender<StoreEvent>) {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            let interrupted = tokio::select! {
                () = tx.closed() => return,
                interrupted = self.inner.watch_once(&tx, &mut backoff, &self.reach) => interrupted,
            };
            let Some(reason) = interrupted else { return };
            self.reach.lost(&reason);
            let delay = backoff.next_delay();
            tracing::warn!(
                endpoints = %self.inner.endpoints,
                %reason,
                retry_in = ?delay,
                "etcd watch interrupted; will list again and resync"
            );
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

impl Inner {
    /// One pass of the watch: list, `Resync`, watch from the next revision.
    /// `None` when `tx` is closed, otherwise why it stopped.
    async fn watch_once(
        &self,
        tx: &mpsc::Sender<StoreEvent>,
        backoff: &mut Backoff,
        reach: &StoreReach,
    ) -> Option<String> {
        let (records, revision) = match self.list_at().await {
            Ok(listed) => listed,
            Err(err) => return Some(format!("list failed: {err}")),
        };
        reach.reached();
        tx.send(StoreEvent::Resync(records)).await.ok()?;
        let prefix = self.nodes_prefix();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut client = self.client.clone();
        let mut stream = match self.call(client.watch(prefix.clone(), Some(options))).await {
            Ok(stream) => stream,
            Err(err) => return Some(format!("watch failed: {err}")),
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Some("watch stream ended".to_string()),
                Err(err) => return Some(format!("watch stream failed: {}", self.error(err))),
            };
            if response.canceled() {
                return Some(format!(
                    "watch canceled by etcd: {} (compact revision {})",
                    response.cancel_reason(),
                    response.compact_revision()
                ));
            }
            if response.created() {
                backoff.reset();
            }
            for event in response.events() {
                if let Some(event) = self.store_event(&prefix, event) {
                    tx.send(event).await.ok()?;
                }
            }
        }
    }

    /// What a watched change under `prefix` means for the node set; `None`
    /// for a key that is not a node's, or an unreadable record (warned).
    fn store_event(&self, prefix: &str, event: &Event) -> Option<StoreEvent> {
        let kv = event.kv()?;
        match event.event_type() {
            EventType::Put => match self.parse_node(prefix, kv)? {
                Ok(record) => Some(StoreEvent::Upsert(record)),
                Err(err) => {
                    warn_corrupt(err);
                    None
                }
            },
            EventType::Delete => {
                let key = String::from_utf8_lossy(kv.key());
                match key.strip_prefix(prefix) {
                    Some(node) if !node.is_empty() && !node.contains('/') => {
                        Some(StoreEvent::Removed(node.to_string()))
                    }
                    _ => None,
                }
            }
        }
    }
}
