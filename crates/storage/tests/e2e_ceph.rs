//! The conformance suite against a real Ceph cluster (`scripts/ceph-dev run`:
//! 1 mon, 1 mgr, 3 bluestore OSDs on loopback), started once for this test
//! binary — one test, since nextest runs each test in its own process — plus
//! the admin side: pools with a CRUSH failure domain, the EC profile, health.
//!
//! The cluster cannot outlive the test: the script runs as a child spawned
//! with PR_SET_PDEATHSIG (`yunhan_testkit::spawn_owned`) and starts its
//! daemons the same way, and the guard's Drop (also run while unwinding from
//! a panic) asks the script to tear down (stop by pid file, remove the dir).
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use yunhan_storage::ceph::PoolRedundancy;
use yunhan_storage::{
    CephCluster, CephDriver, FailureDomain, PoolSpec, StorageError, VolumeDriver,
};

struct DevCeph {
    child: Child,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl DevCeph {
    fn start() -> DevCeph {
        for (bin, pkg) in [
            ("ceph-mon", "ceph-mon"),
            ("rbd", "ceph-common"),
            ("qemu-io", "qemu-utils"),
        ] {
            yunhan_testkit::require_binary(bin, pkg).unwrap();
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ceph-dev");
        let dir = tempfile::Builder::new()
            .prefix("yunhan-ceph-")
            .tempdir()
            .unwrap();
        let cluster_dir = dir.path().join("cluster");
        let mut cmd = Command::new(script);
        cmd.arg("run")
            .arg(&cluster_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let t = Instant::now();
        let mut child = yunhan_testkit::spawn_owned(cmd).expect("spawn scripts/ceph-dev");
        // The script has its own deadline; it prints the conf path when healthy
        // and exits (closing stdout) when it gives up.
        let stdout = child.stdout.take().unwrap();
        let conf = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.ends_with("ceph.conf"))
            .map(PathBuf::from);
        let Some(conf) = conf else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scripts/ceph-dev run did not reach HEALTH_OK (its log is above)");
        };
        eprintln!(
            "ceph-dev cluster healthy in {:.1?}: {}",
            t.elapsed(),
            conf.display()
        );
        DevCeph {
            child,
            conf,
            _dir: dir,
        }
    }

    fn cluster(&self) -> CephCluster {
        CephCluster::admin(&self.conf)
    }
}

impl Drop for DevCeph {
    fn drop(&mut self) {
        // SIGTERM: the script stops its daemons by pid file and removes the dir.
        let pid = self.child.id() as i32;
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let done =
            yunhan_testkit::wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
                matches!(self.child.try_wait(), Ok(Some(_)))
            });
        if !done || Instant::now() > deadline {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const POOL: &str = "volumes";

async fn make() -> (Arc<dyn VolumeDriver>, DevCeph) {
    let ceph = tokio::task::spawn_blocking(DevCeph::start).await.unwrap();
    let cluster = ceph.cluster();
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
    let c = ceph.cluster();
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
    let c = ceph.cluster();
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
    let err = match CephDriver::open(ceph.cluster(), "no-such-pool").await {
        Err(e) => e,
        Ok(_) => panic!("opened a pool that does not exist"),
    };
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), "pool `no-such-pool` does not exist");
    assert!(matches!(
        ceph.cluster().pool_redundancy("no-such-pool").await,
        Err(StorageError::NotFound { .. })
    ));
}

async fn health_and_capacity(ceph: &DevCeph) {
    let h = ceph.cluster().health().await.unwrap();
    assert!(h.status.starts_with("HEALTH_"), "{h:?}");
    assert!(h.total_bytes >= 3 * (9 << 30), "3 x 10 GiB OSDs: {h:?}");
    assert!(h.avail_bytes > 0 && h.avail_bytes <= h.total_bytes);
}

async fn root_disk_is_a_cow_clone(ceph: &DevCeph) {
    let d = CephDriver::open(ceph.cluster(), POOL).await.unwrap();
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
