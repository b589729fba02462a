//! The conformance suite against a real Ceph cluster (`scripts/ceph-dev run`:
//! 1 mon, 1 mgr, 3 bluestore OSDs on loopback), started once for this test
//! binary — one test, since nextest runs each test in its own process — plus
//! the admin side: pools with a CRUSH failure domain, the EC profile, health.
//! The cluster is `yunhan_testkit::DevCeph`, torn down with the test.
use std::sync::Arc;
use std::time::{Duration, Instant};

use yunhan_storage::ceph::PoolRedundancy;
use yunhan_storage::{
    CephCluster, CephDriver, FailureDomain, PoolSpec, StorageError, VolumeDriver,
};
use yunhan_testkit::DevCeph;

const POOL: &str = "volumes";

fn cluster(ceph: &DevCeph) -> CephCluster {
    CephCluster::admin(ceph.conf())
}

async fn make() -> (Arc<dyn VolumeDriver>, DevCeph) {
    yunhan_testkit::require_binary("qemu-io", "qemu-utils").unwrap();
    let ceph = tokio::task::spawn_blocking(DevCeph::start).await.unwrap();
    let cluster = cluster(&ceph);
    cluster
        .ensure_pool(&PoolSpec::replicated(POOL, FailureDomain::Osd))
        .await
        .unwrap();
    let driver = CephDriver::open(cluster, POOL).await.unwrap();
    (Arc::new(driver), ceph)
}

/// The pool the admin config asked for: size 3 / min_size 2 over a rule whose
/// failure domain is the configured one; re-applying is idempotent.
async fn pools_have_the_configured_redundancy(ceph: &DevCeph) {
    let c = cluster(ceph);
    let r = c.pool_redundancy(POOL).await.unwrap();
    assert_eq!(
        r,
        PoolRedundancy {
            size: 3,
            min_size: 2,
            crush_rule: "yunhan-replicated-osd".into(),
            failure_domain: Some("osd".into()),
        }
    );
    c.ensure_pool(&PoolSpec::replicated(POOL, FailureDomain::Osd))
        .await
        .unwrap();
    // A rack rule can be created before the racks exist.
    assert_eq!(
        c.ensure_replicated_rule(FailureDomain::Rack).await.unwrap(),
        "yunhan-replicated-rack"
    );
    let bad = PoolSpec {
        min_size: 4,
        ..PoolSpec::replicated("bad", FailureDomain::Host)
    };
    assert!(matches!(
        c.ensure_pool(&bad).await,
        Err(StorageError::Invalid { .. })
    ));
    assert!(
        !c.pool_exists("bad").await.unwrap(),
        "a refused pool is not created"
    );
}

async fn ec_profile_k4_m2(ceph: &DevCeph) {
    let c = cluster(ceph);
    c.ensure_ec_profile("yunhan-ec-k4m2", 4, 2, FailureDomain::Osd)
        .await
        .unwrap();
    c.ensure_ec_profile("yunhan-ec-k4m2", 4, 2, FailureDomain::Osd)
        .await
        .unwrap();
    assert_eq!(
        c.ec_profile("yunhan-ec-k4m2").await.unwrap(),
        (4, 2, "osd".to_string())
    );
    assert!(matches!(
        c.ensure_ec_profile("e", 1, 0, FailureDomain::Host).await,
        Err(StorageError::Invalid { .. })
    ));
}

async fn missing_pool_is_a_clear_error(ceph: &DevCeph) {
    let err = match CephDriver::open(cluster(ceph), "no-such-pool").await {
        Err(e) => e,
        Ok(_) => panic!("opened a pool that does not exist"),
    };
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), "pool `no-such-pool` does not exist");
    assert!(matches!(
        cluster(ceph).pool_redundancy("no-such-pool").await,
        Err(StorageError::NotFound { .. })
    ));
}

async fn health_and_capacity(ceph: &DevCeph) {
    let h = cluster(ceph).health().await.unwrap();
    assert!(h.status.starts_with("HEALTH_"), "{h:?}");
    assert!(h.total_bytes >= 3 * (9 << 30), "3 x 10 GiB OSDs: {h:?}");
    assert!(h.avail_bytes > 0 && h.avail_bytes <= h.total_bytes);
}

async fn root_disk_is_a_cow_clone(ceph: &DevCeph) {
    let d = CephDriver::open(cluster(ceph), POOL).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    assert!(d.import_image(&img, "cow-base").await.unwrap());
    let t = Instant::now();
    let v = d
        .clone_for_root("cow-base", "cow-root", 20 << 30)
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(v.parent.as_deref(), Some("cow-base@base"), "{v:?}");
    assert!(
        took < Duration::from_secs(10),
        "a 20 GiB CoW root disk took {took:?}"
    );
    assert_eq!(d.usage("cow-root").await.unwrap().physical_bytes, 0);
    d.delete("cow-root").await.unwrap();
    d.delete_image("cow-base").await.unwrap();
}

yunhan_storage::volume_conformance!(
    all e2e_ceph_conformance,
    make(),
    also = [
        pools_have_the_configured_redundancy,
        ec_profile_k4_m2,
        missing_pool_is_a_clear_error,
        health_and_capacity,
        root_disk_is_a_cow_clone,
    ]
);
