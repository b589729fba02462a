//! The conformance suite against the in-memory backend.
use std::sync::Arc;

use yunhan_store::{MemStore, Store};

async fn make() -> (Arc<dyn Store>, ()) {
    (Arc::new(MemStore::new()), ())
}

yunhan_store::store_conformance!(make());
