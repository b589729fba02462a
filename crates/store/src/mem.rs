use std::time::Duration;

use async_trait::async_trait;

use crate::api::{KeyValue, LeaseId, RangePage, Store, StoreError, Txn, TxnResult, Watch};
use crate::local::{Batch, Durable, Engine, Snapshot};

/// In-memory store with full etcd semantics, for unit tests and `--store mem://`.
pub struct MemStore {
    pub(crate) engine: Engine,
}

struct Volatile;
impl Durable for Volatile {
    fn commit(&mut self, _batch: &Batch) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore {
            engine: Engine::start(Snapshot::default(), Box::new(Volatile)),
        }
    }
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

/// Implements [`Store`] for a type holding an [`Engine`] in `self.engine`.
macro_rules! engine_store {
    ($ty:ty) => {
        #[async_trait]
        impl Store for $ty {
            async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
                Ok(self.engine.get(key))
            }
            async fn range(
                &self,
                prefix: &str,
                start_after: Option<&str>,
                limit: usize,
            ) -> Result<RangePage, StoreError> {
                Ok(self.engine.range(prefix, start_after, limit))
            }
            async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
                self.engine.txn(txn).await
            }
            async fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
                self.engine.watch(prefix, from_revision)
            }
            async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
                self.engine.lease_grant(ttl).await
            }
            async fn lease_keepalive(&self, id: LeaseId) -> Result<(), StoreError> {
                self.engine.lease_keepalive(id)
            }
            async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
                self.engine.lease_revoke(id).await
            }
            async fn current_revision(&self) -> Result<u64, StoreError> {
                Ok(self.engine.revision())
            }
            async fn compact(&self, revision: u64) -> Result<(), StoreError> {
                self.engine.compact(revision)
            }
        }
    };
}
pub(crate) use engine_store;

engine_store!(MemStore);
