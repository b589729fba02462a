//! The conformance suite against a real single-member etcd (`etcd` on PATH;
//! `scripts/setup` installs it). Each check starts its own member — nextest
//! runs every test in its own process anyway — and the module is named
//! `e2e_…` so the checks land in nextest's limited-concurrency group.
use std::sync::Arc;

use yunhan_store::Store;
use yunhan_testkit::EtcdCluster;

async fn make() -> (Arc<dyn Store>, EtcdCluster) {
    let cluster = EtcdCluster::start(1);
    let store = yunhan_store::open(&cluster.store_url())
        .await
        .expect("connect to etcd");
    (store, cluster)
}

mod e2e_etcd_1 {
    use super::make;
    yunhan_store::store_conformance!(make());
}
