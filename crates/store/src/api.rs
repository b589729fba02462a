use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

/// A lease id (etcd's i64 lease ids).
pub type LeaseId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the transaction that created the key (0 for a deletion event).
    pub create_revision: u64,
    /// Revision of the last change: the compare-and-swap token and fencing token.
    pub mod_revision: u64,
    /// Number of puts since creation (1 after creation).
    pub version: u64,
    /// Lease the key is attached to, if any: the key is deleted when it expires.
    pub lease: Option<LeaseId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals this; 0 means "the key does not exist".
    ModRevision(String, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// If every compare holds, apply `success`, otherwise `failure` — atomically,
/// at one new revision (when anything changed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }
    pub fn when(mut self, c: Compare) -> Txn {
        self.compares.push(c);
        self
    }
    pub fn then(mut self, op: Op) -> Txn {
        self.success.push(op);
        self
    }
    pub fn otherwise(mut self, op: Op) -> Txn {
        self.failure.push(op);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: u64,
}

/// One page of a prefix range, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePage {
    pub kvs: Vec<KeyValue>,
    /// More keys follow the last one returned.
    pub more: bool,
    /// The store revision the page was read at.
    pub revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For deletes: key and `mod_revision` (the deletion's revision) only.
    pub kv: KeyValue,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("revision {requested} has been compacted (oldest available: {oldest}); re-list and watch from the current revision")]
    Compacted { requested: u64, oldest: u64 },
    #[error("lease {0} not found or expired")]
    LeaseNotFound(LeaseId),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store's data is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid request to the store: {0}")]
    Invalid(String),
}

/// An ordered, gap-free stream of events from a prefix watch.
pub struct Watch {
    pub(crate) rx: mpsc::UnboundedReceiver<Result<Event, StoreError>>,
}

impl Watch {
    pub(crate) fn channel() -> (mpsc::UnboundedSender<Result<Event, StoreError>>, Watch) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Watch { rx })
    }

    /// The next event; `None` when the store closed the watch, `Some(Err)` when
    /// it was cancelled (e.g. compaction): re-list and watch again.
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        self.rx.recv().await
    }
}

/// Etcd semantics, whatever the backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, in order, after `start_after` (exclusive),
    /// at most `limit` (0 = no limit).
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangePage, StoreError>;

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError>;

    /// Every change under `prefix` with revision ≥ `from_revision`, in order,
    /// with no gaps; `from_revision = 0` means "changes after now".
    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError>;

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError>;
    /// Renews the lease for its full TTL; `LeaseNotFound` once it expired.
    async fn lease_keepalive(&self, id: LeaseId) -> Result<(), StoreError>;
    /// Ends the lease now, deleting its keys.
    async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError>;

    async fn current_revision(&self) -> Result<u64, StoreError>;

    /// Forgets history up to `revision`: watches from older revisions then
    /// fail with [`StoreError::Compacted`].
    async fn compact(&self, revision: u64) -> Result<(), StoreError>;
}

/// Conveniences built only on the trait.
#[async_trait]
pub trait StoreExt: Store {
    /// Creates `key` only if it does not exist; false if it does.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<bool, StoreError> {
        let r = self
            .txn(
                Txn::new()
                    .when(Compare::ModRevision(key.into(), 0))
                    .then(Op::put(key, value)),
            )
            .await?;
        Ok(r.succeeded)
    }

    /// Replaces `key` only if it is still at `revision`.
    async fn update(&self, key: &str, value: Vec<u8>, revision: u64) -> Result<bool, StoreError> {
        let r = self
            .txn(
                Txn::new()
                    .when(Compare::ModRevision(key.into(), revision))
                    .then(Op::put(key, value)),
            )
            .await?;
        Ok(r.succeeded)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        Ok(self
            .txn(Txn::new().then(Op::put(key, value)))
            .await?
            .revision)
    }

    async fn delete(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.txn(Txn::new().then(Op::delete(key))).await?.revision)
    }

    /// Every key under `prefix`, reading page by page.
    async fn range_all(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.range(prefix, after.as_deref(), 1000).await?;
            after = page.kvs.last().map(|kv| kv.key.clone());
            out.extend(page.kvs);
            if !page.more {
                return Ok(out);
            }
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// The smallest key greater than every key with `prefix` (etcd's range end).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
