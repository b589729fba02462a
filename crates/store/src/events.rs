//! The audit trail in the store (model: `model/src/event.rs`). Keys:
//! `/yunhan/events/<scope>/<unix time in ns, 20 digits>-<4 random hex digits>`, scope the
//! project's id or [`PLATFORM_SCOPE`], so a scope's events are in time order. Each event
//! is put under a lease that expires [`EVENT_RETENTION_SECS`] after the hour it was
//! granted in (one lease per hour: a week of events holds 169 leases at most), so old
//! events go without a sweep.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use yunhan_model::{AuditEvent, EVENT_RETENTION_SECS};

use crate::{LeaseId, Op, Store, StoreError, Txn};

pub const EVENTS_PREFIX: &str = "/yunhan/events/";
/// The scope of events without a project (an admin's writes).
pub const PLATFORM_SCOPE: &str = "_platform";
/// How long one lease takes new events.
const LEASE_FOR: Duration = Duration::from_secs(3600);

/// Records and reads events (one per API server; cheap to share).
pub struct EventLog {
    store: Arc<dyn Store>,
    lease: tokio::sync::Mutex<Option<(LeaseId, Instant)>>,
}

fn nanos_since_epoch(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn scope_prefix(scope: &str) -> String {
    format!("{EVENTS_PREFIX}{scope}/")
}

impl EventLog {
    pub fn new(store: Arc<dyn Store>) -> EventLog {
        EventLog {
            store,
            lease: tokio::sync::Mutex::new(None),
        }
    }

    /// Keeps `event` in `scope` (a project id, or [`PLATFORM_SCOPE`]).
    pub async fn record(&self, scope: &str, event: &AuditEvent) -> Result<(), StoreError> {
        let lease = self.lease().await?;
        let key = format!(
            "{}{:020}-{:04x}",
            scope_prefix(scope),
            nanos_since_epoch(SystemTime::now()),
            rand::random::<u16>()
        );
        let value = serde_json::to_vec(event).unwrap_or_default();
        let put = Op::Put {
            key,
            value,
            lease: Some(lease),
        };
        self.store.txn(Txn::new().then(put)).await.map(drop)
    }

    /// The lease of this hour's events (granted when the last one is an hour old).
    async fn lease(&self) -> Result<LeaseId, StoreError> {
        let mut cur = self.lease.lock().await;
        if let Some((id, at)) = *cur {
            if at.elapsed() < LEASE_FOR {
                return Ok(id);
            }
        }
        let ttl = Duration::from_secs(EVENT_RETENTION_SECS) + LEASE_FOR;
        let id = self.store.lease_grant(ttl).await?;
        *cur = Some((id, Instant::now()));
        Ok(id)
    }

    /// The events of `scopes` (every scope: `None`) since `since`, oldest first, at most
    /// the newest `limit` of them.
    pub async fn list(
        &self,
        scopes: Option<&[String]>,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let from = format!("{:020}", nanos_since_epoch(since));
        let prefixes = match scopes {
            Some(s) => s.iter().map(|s| scope_prefix(s)).collect(),
            None => vec![EVENTS_PREFIX.to_string()],
        };
        let mut found: Vec<(String, AuditEvent)> = Vec::new();
        for prefix in prefixes {
            self.read(&prefix, &from, &mut found).await?;
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let skip = found.len().saturating_sub(limit);
        Ok(found.into_iter().skip(skip).map(|(_, e)| e).collect())
    }

    /// The events under `prefix` whose time is `from` or later, into `found` (with their
    /// time). Within one scope, reading starts at `from` (keys are in time order).
    async fn read(
        &self,
        prefix: &str,
        from: &str,
        found: &mut Vec<(String, AuditEvent)>,
    ) -> Result<(), StoreError> {
        let scoped = prefix != EVENTS_PREFIX;
        let mut after = scoped.then(|| format!("{prefix}{from}"));
        loop {
            let page = self.store.range(prefix, after.as_deref(), 1000).await?;
            after = page.kvs.last().map(|kv| kv.key.clone());
            for kv in &page.kvs {
                let time = kv.key.rsplit('/').next().unwrap_or_default();
                if time < from {
                    continue;
                }
                if let Ok(e) = serde_json::from_slice(&kv.value) {
                    found.push((time.to_string(), e));
                }
            }
            if !page.more {
                return Ok(());
            }
        }
    }
}
