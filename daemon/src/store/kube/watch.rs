//! The watch of Nodes: kube-runtime's watcher, its events as
//! [`StoreEvent`]s, and short jittered retries while the API is away.

use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::watcher;
use tokio::sync::mpsc;

use super::{KubeBackend, WatchState, WATCH_RETRY_MAX, WATCH_RETRY_MIN};
use crate::retry::{jittered, Backoff};
use crate::store::StoreEvent;

impl KubeBackend {
    /// Sends a `Resync` of every Node with CIDRs, then every change, until
    /// `tx` is closed; a relist (after a desync) sends a fresh `Resync`.
    /// While the API is unreachable it logs, backs off and sends nothing.
    pub async fn watch(&self, tx: mpsc::Sender<StoreEvent>) {
        loop {
            let mut state = WatchState::default();
            let stream = watcher(self.nodes.clone(), watcher::Config::default());
            let mut stream = std::pin::pin!(stream);
            let mut retry = Backoff::new(WATCH_RETRY_MIN, WATCH_RETRY_MAX);
            loop {
                let item = tokio::select! {
                    () = tx.closed() => return,
                    item = stream.next() => item,
                };
                match item {
                    Some(Ok(event)) => {
                        retry.reset();
                        self.reach.reached();
                        if let Some(event) = state.apply(event) {
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                    // The API is back but our resourceVersion is older than
                    // its watch cache (normal after an outage): the watcher
                    // relists at the next poll, which must not wait.
                    Some(Err(watcher::Error::WatchError(resp))) if resp.code == 410 => {
                        tracing::info!("Node watch expired (410 Gone); listing again");
                    }
                    Some(Err(err)) => {
                        let delay = jittered(retry.next_delay());
                        tracing::warn!(error = %err, retry_in = ?delay, "Node watch interrupted");
                        self.reach.lost(&err);
                        tokio::select! {
                            () = tx.closed() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    // The watcher never ends by itself; start over if it does.
                    None => break,
                }
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
