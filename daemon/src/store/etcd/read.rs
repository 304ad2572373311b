//! Reading etcd: every key under a prefix, page by page at one revision,
//! and the node records among them.

use etcd_client::{GetOptions, KeyValue};

use super::{warn_corrupt, Inner};
use crate::store::{NodeRecord, StoreError};

/// Keys per range request when listing, so a large cluster never exceeds
/// the gRPC message limit (4 MiB).
const PAGE_SIZE: i64 = 1000;

impl Inner {
    /// Every key under `prefix`, page by page at one revision; returns the
    /// revision read.
    pub(super) async fn get_prefix(
        &self,
        prefix: &str,
        at_revision: Option<i64>,
    ) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let end = prefix_end(prefix.as_bytes());
        let mut client = self.client.clone();
        let mut revision = at_revision;
        let mut from = prefix.as_bytes().to_vec();
        let mut kvs = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_SIZE);
            if let Some(revision) = revision {
                options = options.with_revision(revision);
            }
            let mut response = self.call(client.get(from.clone(), Some(options))).await?;
            let read_at = revision
                .or_else(|| response.header().map(|h| h.revision()))
                .unwrap_or(0);
            revision = Some(read_at);
            let more = response.more();
            let page = response.take_kvs();
            if let Some(last) = page.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            let empty = page.is_empty();
            kvs.extend(page);
            if !more || empty {
                return Ok((kvs, read_at));
            }
        }
    }

    /// Every readable node record and the revision they were read at.
    pub(super) async fn list_at(&self) -> Result<(Vec<NodeRecord>, i64), StoreError> {
        let prefix = self.nodes_prefix();
        let (kvs, revision) = self.get_prefix(&prefix, None).await?;
        let records = kvs
            .iter()
            .filter_map(|kv| self.parse_node(&prefix, kv))
            .filter_map(|parsed| parsed.map_err(warn_corrupt).ok())
            .collect();
        Ok((records, revision))
    }

    /// `None` for a key that is not a node's (deeper under the prefix).
    pub(super) fn parse_node(
        &self,
        prefix: &str,
        kv: &KeyValue,
    ) -> Option<Result<NodeRecord, StoreError>> {
        let key = String::from_utf8_lossy(kv.key());
        let node = key.strip_prefix(prefix)?;
        if node.is_empty() || node.contains('/') {
            return None;
        }
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        Some(
            serde_json::from_slice::<NodeRecord>(kv.value())
                .map_err(|e| corrupt(e.to_string()))
                .and_then(|record| {
                    if record.node == node {
                        Ok(record)
                    } else {
                        Err(corrupt(format!("record names node {:?}", record.node)))
                    }
                }),
        )
    }
}

/// The end of the key range holding every key that starts with `prefix`
/// (the prefix with its last byte below 0xff incremented), as etcd's own
/// client computes it; `\0` (every key) when there is no such byte.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
