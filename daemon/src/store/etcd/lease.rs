//! The node's etcd lease: granted with the record, refreshed every TTL/3
//! by a task of its own, and replaced by a new registration when etcd
//! reports it lost (see the module docs of `etcd`).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};

use super::{timed_out, Inner, Registration, BACKOFF_MIN};
use crate::retry::Backoff;
use crate::store::StoreError;

/// Why one keep-alive stream ended.
enum LeaseEnd {
    /// etcd no longer knows the lease: its keys are gone.
    Lost,
    /// The connection failed; the lease may well be alive.
    Broken(etcd_client::Error),
}

/// Keeps `lease` alive for as long as the backend lives; registers again
/// under a new lease when etcd reports it lost. Never returns on error.
pub(super) async fn keep_alive(inner: Arc<Inner>, mut lease: i64, mut ttl: i64) {
    let mut backoff = Backoff::new(BACKOFF_MIN, refresh_interval(ttl));
    loop {
        match inner.keep_lease(lease, ttl, &mut backoff).await {
            LeaseEnd::Broken(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    endpoints = %inner.endpoints,
                    lease = format_args!("{lease:x}"),
                    error = %err,
                    retry_in = ?delay,
                    "etcd lease keep-alive interrupted; reconnecting"
                );
                tokio::time::sleep(delay).await;
            }
            LeaseEnd::Lost => {
                tracing::warn!(
                    endpoints = %inner.endpoints,
                    lease = format_args!("{lease:x}"),
                    "etcd lease lost (expired while etcd was unreachable); registering again"
                );
                let Some(registration) = register_again(&inner, lease, &mut backoff).await else {
                    return;
                };
                (lease, ttl) = (registration.lease, registration.ttl);
                backoff = Backoff::new(BACKOFF_MIN, refresh_interval(ttl));
            }
        }
    }
}

/// Registers again after the lease `lost` expired, until etcd takes it;
/// `None` once the registration was replaced or deregistered meanwhile
/// (no longer this task's to keep).
async fn register_again(inner: &Inner, lost: i64, backoff: &mut Backoff) -> Option<Registration> {
    loop {
        match inner.reregister(lost).await {
            Ok(registration) => return registration,
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    endpoints = %inner.endpoints,
                    error = %err,
                    retry_in = ?delay,
                    "registering again after a lost lease failed; retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A third of the TTL, as etcd's own client does: two refreshes may be lost
/// before the lease is in danger.
pub(super) fn refresh_interval(ttl: i64) -> Duration {
    let millis = u64::try_from(ttl.saturating_mul(1000) / 3).unwrap_or(0);
    Duration::from_millis(millis.max(100))
}

impl Inner {
    pub(super) async fn grant(&self) -> Result<(i64, i64), StoreError> {
        let mut client = self.client.clone();
        let granted = self.call(client.lease_grant(self.ttl, None)).await?;
        Ok((granted.id(), granted.ttl()))
    }

    /// Best effort: a lease nobody keeps alive expires anyway.
    pub(super) async fn revoke_quietly(&self, lease: i64) {
        let mut client = self.client.clone();
        if let Err(err) = self.call(client.lease_revoke(lease)).await {
            tracing::debug!(lease = format_args!("{lease:x}"), error = %err, "revoking an unused lease failed");
        }
    }

    /// Registers the current record again under a new lease, unless the
    /// registration no longer uses `lost` (then `None`: the caller's task is
    /// stale).
    async fn reregister(&self, lost: i64) -> Result<Option<Registration>, StoreError> {
        let mut current = self.current.lock().await;
        let Some(registration) = current.as_ref().filter(|r| r.lease == lost).cloned() else {
            return Ok(None);
        };
        let (lease, ttl) = self.grant().await?;
        let previous = registration.record.cidrs.clone();
        let record = match self.claim(registration.record, lease, &previous).await {
            Ok(record) => record,
            Err(err) => {
                self.revoke_quietly(lease).await;
                return Err(err);
            }
        };
        tracing::info!(
            node = %record.node,
            cidrs = ?record.cidrs,
            lease = format_args!("{lease:x}"),
            same_cidrs = record.cidrs == previous,
            "registered in etcd again after losing the lease"
        );
        let registration = Registration { record, lease, ttl };
        *current = Some(registration.clone());
        Ok(Some(registration))
    }

    /// Refreshes `lease` every TTL/3 until the stream breaks or etcd says
    /// the lease is gone.
    async fn keep_lease(&self, lease: i64, ttl: i64, backoff: &mut Backoff) -> LeaseEnd {
        let every = refresh_interval(ttl);
        // The answer must come back well within the TTL to be of any use.
        let deadline = every.max(Duration::from_millis(500));
        let mut client = self.client.clone();
        let (mut keeper, mut stream) =
            match tokio::time::timeout(deadline, client.lease_keep_alive(lease)).await {
                Err(_) => return LeaseEnd::Broken(timed_out(deadline)),
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(reason)))
                    if reason == "lease not found" =>
                {
                    return LeaseEnd::Lost
                }
                Ok(Err(err)) => return LeaseEnd::Broken(err),
                Ok(Ok(pair)) => pair,
            };
        backoff.reset();
        loop {
            tokio::time::sleep(every).await;
            if let Some(end) = refresh(&mut keeper, &mut stream, deadline).await {
                return end;
            }
        }
    }
}

/// Sends one keep-alive and waits for its answer.
async fn refresh(
    keeper: &mut LeaseKeeper,
    stream: &mut LeaseKeepAliveStream,
    deadline: Duration,
) -> Option<LeaseEnd> {
    if let Err(err) = keeper.keep_alive().await {
        return Some(LeaseEnd::Broken(err));
    }
    match tokio::time::timeout(deadline, stream.message()).await {
        Err(_) => Some(LeaseEnd::Broken(timed_out(deadline))),
        Ok(Err(err)) => Some(LeaseEnd::Broken(err)),
        Ok(Ok(None)) => Some(LeaseEnd::Broken(etcd_client::Error::LeaseKeepAliveError(
            "keep-alive stream ended".to_string(),
        ))),
        Ok(Ok(Some(answer))) if answer.ttl() <= 0 => Some(LeaseEnd::Lost),
        Ok(Ok(Some(_))) => None,
    }
}
