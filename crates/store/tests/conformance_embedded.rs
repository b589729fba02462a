//! The conformance suite against the embedded (redb) backend, plus what only
//! a durable backend promises: everything acknowledged survives a reopen.
use std::sync::Arc;

use yunhan_store::{EmbeddedStore, Store, StoreExt};

async fn make() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(EmbeddedStore::open(dir.path()).unwrap()), dir)
}

yunhan_store::store_conformance!(make());

#[tokio::test]
async fn reopen_keeps_data_and_revision_and_refuses_old_watch() {
    let dir = tempfile::tempdir().unwrap();
    let rev = {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        for i in 0..100 {
            s.put(&format!("/k/{i:03}"), vec![i as u8]).await.unwrap();
        }
        s.delete("/k/050").await.unwrap()
    };
    let s = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), rev);
    let all = s.range_all("/k/").await.unwrap();
    assert_eq!(all.len(), 99);
    assert_eq!(s.get("/k/007").await.unwrap().unwrap().value, vec![7]);
    // New writes continue the revision sequence.
    assert_eq!(s.put("/k/new", vec![]).await.unwrap(), rev + 1);
    // History before the restart is gone: a clear error, not a silent gap.
    let err = s
        .watch("/k/", 1)
        .await
        .err()
        .expect("old revision must fail");
    assert!(matches!(err, yunhan_store::StoreError::Compacted { .. }));
}
