//! One document that does not decode never stops a listing (controllers and agents
//! build their whole view of the cloud from `list_all`).

use std::sync::Arc;

use yunhan_model::{Flavor, FlavorSpec, Metadata, Resource};
use yunhan_store::objects::{object_key, object_prefix, Objects};
use yunhan_store::{MemStore, Op, Store, StoreExt, Txn};

fn flavor(id: &str) -> Resource<FlavorSpec, yunhan_model::FlavorStatus> {
    Resource {
        metadata: Metadata {
            created: "2026-01-01T00:00:00Z".into(),
            ..Metadata::new(id, id, None)
        },
        spec: FlavorSpec {
            vcpus: 1,
            memory_mib: 512,
            disk_gib: 1,
            gpus: 0,
        },
        status: Default::default(),
    }
}

#[tokio::test]
async fn a_document_that_does_not_decode_is_left_out_of_listings() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let objects = Objects::new(store.clone());
    objects
        .create::<Flavor>(flavor("flv-0000000000000001"))
        .await
        .unwrap();
    let bad = object_key::<Flavor>("_", "flv-00000000000000ff");
    let put = Txn::new().then(Op::put(&bad, b"{\"not\": \"a flavor\"}".to_vec()));
    assert!(store.txn(put).await.unwrap().succeeded);
    objects
        .create::<Flavor>(flavor("flv-0000000000000002"))
        .await
        .unwrap();

    let raw = store
        .range_all(&object_prefix::<Flavor>(None))
        .await
        .unwrap();
    assert_eq!(raw.len(), 3, "the bad document is among the flavors");
    let listed = objects.list_all::<Flavor>(None).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|f| f.metadata.id.as_str()).collect();
    assert_eq!(ids, ["flv-0000000000000001", "flv-0000000000000002"]);
    assert!(objects
        .get::<Flavor>("flv-0000000000000001")
        .await
        .unwrap()
        .is_some());
}
