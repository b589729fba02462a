//! The store: one trait with etcd semantics (revisions, compare-and-swap
//! transactions, ordered resumable watches, leases) and three backends —
//! [`MemStore`] for tests, [`EmbeddedStore`] (redb on disk, the single-node
//! default) and [`EtcdStore`] (a real etcd cluster). [`conformance`] holds the
//! one test suite every backend must pass.

mod api;
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod embedded;
mod etcd;
pub mod events;
mod local;
mod mem;
pub mod metering;
pub mod objects;
pub mod reconcile;

pub use api::{
    prefix_end, Compare, Event, EventKind, KeyValue, LeaseId, Op, RangePage, Store, StoreError,
    StoreExt, Txn, TxnResult, Watch,
};
pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;
pub use mem::MemStore;

use std::sync::Arc;

/// Opens a store from a URL: `mem://`, `embedded:///path/to/dir` (or a bare
/// path) or `etcd://host:port[,host:port…]`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url == "mem://" || url == "mem" {
        Ok(Arc::new(MemStore::new()))
    } else if let Some(endpoints) = url.strip_prefix("etcd://") {
        let endpoints: Vec<String> = endpoints
            .split(',')
            .filter(|e| !e.is_empty())
            .map(|e| format!("http://{e}"))
            .collect();
        Ok(Arc::new(EtcdStore::connect(&endpoints).await?))
    } else {
        let path = url.strip_prefix("embedded://").unwrap_or(url);
        Ok(Arc::new(EmbeddedStore::open(std::path::Path::new(path))?))
    }
}
