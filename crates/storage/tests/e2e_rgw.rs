//! The RGW driver against a real radosgw on a real Ceph cluster
//! (`scripts/ceph-dev run`: 1 mon, 1 mgr, 3 OSDs), both started once for
//! this file — one test with steps, since nextest runs each test in its own
//! process. Everything goes through the `ObjectGateway` trait; the S3 calls a
//! user would make are signed with the driver's own SigV4 (`rgw::s3`).
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use yunhan_storage::rgw::{
    BucketSettings, BucketUsage, Method, ObjectGateway, RgwAdmin, RgwDaemon, RgwDaemonConfig,
    RgwError, S3Client, S3Credentials, S3Request, TenantLimits,
};
use yunhan_storage::{CephCluster, StorageError};
use yunhan_testkit::DevCeph;

const A: &str = "prj_e2e0000000000a";
const B: &str = "prj_e2e0000000000b";
const BODY: &[u8] = b"hello from yunhan\n";

/// The gateway under test, a second driver instance (its own key cache), the
/// S3 endpoint, and the keys users hold.
struct World {
    gw: Arc<dyn ObjectGateway>,
    other: Arc<dyn ObjectGateway>,
    s3: S3Client,
    key_a: S3Credentials,
    key_b: S3Credentials,
}

impl World {
    async fn put(&self, key: &S3Credentials, path: &str, body: &[u8]) -> (u16, Option<String>) {
        let r = S3Request::new(Method::PUT, path).body(body.to_vec());
        let resp = self.s3.send(&r, Some(key)).await.unwrap();
        (resp.status, resp.error_code())
    }

    /// GET status and body, signed with `key` or anonymous.
    async fn get(&self, key: Option<&S3Credentials>, path: &str) -> (u16, Vec<u8>) {
        let resp = self
            .s3
            .send(&S3Request::new(Method::GET, path), key)
            .await
            .unwrap();
        (resp.status, resp.body)
    }
}

fn settings(max_objects: Option<u64>, public_read: bool) -> BucketSettings {
    BucketSettings {
        max_bytes: None,
        max_objects,
        public_read,
    }
}

fn step(name: &str, t0: Instant) {
    eprintln!("[{:>5.1?}] {name}", t0.elapsed());
}

async fn start(dir: &Path) -> (DevCeph, RgwDaemon, CephCluster) {
    yunhan_testkit::require_binary("radosgw", "radosgw").unwrap();
    yunhan_testkit::require_binary("radosgw-admin", "ceph-common").unwrap();
    let ceph = tokio::task::spawn_blocking(DevCeph::start).await.unwrap();
    let cluster = CephCluster::admin(ceph.conf());
    let t = Instant::now();
    let daemon = RgwDaemon::start(RgwDaemonConfig {
        cluster: cluster.clone(),
        name: "e2e".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("rgw"),
    })
    .await
    .unwrap();
    eprintln!(
        "radosgw (pid {}) at {} in {:.1?}",
        daemon.pid(),
        daemon.endpoint(),
        t.elapsed()
    );
    (ceph, daemon, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_rgw_tenants_keys_buckets_quotas_and_traffic() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (ceph, daemon, cluster) = start(dir.path()).await;
    let keyring = dir.path().join("rgw/keyring");
    let mode = std::os::unix::fs::PermissionsExt::mode(&keyring.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the radosgw keyring is private");
    let w = World {
        gw: Arc::new(RgwAdmin::new(cluster.clone(), daemon.endpoint())),
        other: Arc::new(RgwAdmin::new(cluster, daemon.endpoint())),
        s3: S3Client::new(&daemon.endpoint()).unwrap(),
        key_a: S3Credentials::new(
            "AKIAE2ETENANTA000001",
            "secretOfTenantA/0000000000000000000000+",
        ),
        key_b: S3Credentials::new(
            "AKIAE2ETENANTB000001",
            "secretOfTenantB/0000000000000000000000+",
        ),
    };
    assert_eq!(w.gw.endpoint(), daemon.endpoint());

    step("tenants and keys", t0);
    tenants_and_keys(&w).await;
    step("bucket quota", t0);
    bucket_quota(&w).await;
    step("visibility", t0);
    visibility(&w).await;
    step("usage and listing", t0);
    usage_and_listing(&w).await;
    step("tenant limits", t0);
    tenant_limits(&w).await;
    step("key removal", t0);
    key_removal(&w).await;
    step("bucket deletion", t0);
    bucket_deletion(&w).await;
    step("traffic", t0);
    traffic(&w).await;
    step("stale platform key", t0);
    stale_platform_key(&w).await;
    step("tenant removal", t0);
    tenant_removal(&w).await;
    step("done", t0);

    step("a second radosgw on a taken port", t0);
    second_daemon_on_a_taken_port(&daemon, &ceph, dir.path()).await;

    drop(w);
    let pid = daemon.pid();
    drop(daemon);
    let proc = format!("/proc/{pid}");
    assert!(
        !Path::new(&proc).exists(),
        "radosgw stopped and reaped on drop"
    );
    drop(ceph);
    eprintln!("[{:>5.1?}] torn down", t0.elapsed());
}

async fn second_daemon_on_a_taken_port(first: &RgwDaemon, ceph: &DevCeph, dir: &Path) {
    let listen = first
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let err = RgwDaemon::start(RgwDaemonConfig {
        cluster: CephCluster::admin(ceph.conf()),
        name: "e2e-second".into(),
        listen,
        data_dir: dir.join("rgw-second"),
    })
    .await
    .err()
    .expect("a second radosgw on a taken port");
    let text = err.to_string();
    assert!(
        text.contains(&format!("listen on {listen} for radosgw")),
        "{text}"
    );
}

async fn tenants_and_keys(w: &World) {
    let limits = TenantLimits {
        max_bytes: Some(1 << 30),
        max_buckets: Some(10),
    };
    w.gw.ensure_tenant(A, limits).await.unwrap();
    w.gw.ensure_tenant(A, limits).await.unwrap();
    w.gw.ensure_tenant(B, TenantLimits::default())
        .await
        .unwrap();
    for (t, k) in [(A, &w.key_a), (A, &w.key_a), (B, &w.key_b)] {
        w.gw.put_key(t, &k.access_key, &k.secret_key).await.unwrap();
    }
    let taken = w.gw.put_key(B, &w.key_a.access_key, "another-secret").await;
    assert!(
        matches!(
            taken,
            Err(RgwError::Storage(StorageError::AlreadyExists { .. }))
        ),
        "{taken:?}"
    );
    let nobody = w.gw.put_key("prj_nobody", "AKIANOBODY", "s").await;
    assert!(
        matches!(
            nobody,
            Err(RgwError::Storage(StorageError::NotFound { .. }))
        ),
        "{nobody:?}"
    );
    let reserved = w.gw.put_key(A, "YHPMINE", "s").await;
    assert!(
        matches!(
            reserved,
            Err(RgwError::Storage(StorageError::Invalid { .. }))
        ),
        "{reserved:?}"
    );
    // A fresh tenant has no buckets; its key works for S3.
    assert!(w.gw.list_buckets(B).await.unwrap().is_empty());
    assert_eq!(w.get(Some(&w.key_b), "/").await.0, 200);
}

async fn bucket_quota(w: &World) {
    w.gw.ensure_bucket(A, "photos", &settings(Some(2), false))
        .await
        .unwrap();
    w.gw.ensure_bucket(A, "photos", &settings(Some(2), false))
        .await
        .unwrap();
    assert_eq!(w.put(&w.key_a, "/photos/a.txt", BODY).await.0, 200);
    assert_eq!(w.put(&w.key_a, "/photos/b.txt", BODY).await.0, 200);
    assert_eq!(
        w.put(&w.key_a, "/photos/c.txt", BODY).await,
        (403, Some("QuotaExceeded".into())),
        "max_objects 2"
    );
    let lower =
        w.gw.ensure_bucket(A, "photos", &settings(Some(1), false))
            .await;
    assert!(
        matches!(lower, Err(RgwError::QuotaBelowUsage { .. })),
        "{lower:?}"
    );
}

async fn visibility(w: &World) {
    let anon = format!("/{A}:photos/a.txt");
    assert_eq!(w.get(None, &anon).await.0, 403, "private by default");
    w.gw.ensure_bucket(A, "photos", &settings(Some(2), true))
        .await
        .unwrap();
    assert_eq!(w.get(None, &anon).await, (200, BODY.to_vec()));
    let (status, listing) = w.get(None, &format!("/{A}:photos")).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&listing).contains("<Key>b.txt</Key>"));
    // Public means readable, not writable.
    let r = S3Request::new(Method::PUT, format!("/{A}:photos/x.txt")).body(BODY.to_vec());
    assert_eq!(w.s3.send(&r, None).await.unwrap().status, 403);
    w.gw.ensure_bucket(A, "photos", &settings(Some(2), false))
        .await
        .unwrap();
    assert_eq!(w.get(None, &anon).await.0, 403, "private again");
    assert_eq!(w.get(Some(&w.key_b), &anon).await.0, 403, "tenant B");
    assert_eq!(
        w.get(Some(&w.key_a), "/photos/a.txt").await,
        (200, BODY.to_vec())
    );
}

async fn usage_and_listing(w: &World) {
    let usage = w.gw.bucket_usage(A, "photos").await.unwrap();
    let want = BucketUsage {
        bytes: 2 * BODY.len() as u64,
        objects: 2,
    };
    assert_eq!(usage, Some(want));
    assert_eq!(w.gw.bucket_usage(A, "nothere").await.unwrap(), None);
    assert_eq!(
        w.gw.bucket_usage("prj_nobody", "photos").await.unwrap(),
        None
    );
    // A bucket made directly through S3 is listed too.
    assert_eq!(w.put(&w.key_a, "/docs", b"").await.0, 200);
    assert_eq!(w.gw.list_buckets(A).await.unwrap(), ["docs", "photos"]);
    assert!(w.gw.list_buckets("prj_nobody").await.unwrap().is_empty());
    let bad = w.gw.bucket_usage(A, "Bad_Name").await;
    assert!(matches!(
        bad,
        Err(RgwError::Storage(StorageError::Invalid { .. }))
    ));
}

async fn tenant_limits(w: &World) {
    let one_bucket = TenantLimits {
        max_bytes: Some(10),
        max_buckets: Some(1),
    };
    w.gw.ensure_tenant(B, one_bucket).await.unwrap();
    w.gw.ensure_bucket(B, "only", &BucketSettings::default())
        .await
        .unwrap();
    let second =
        w.gw.ensure_bucket(B, "second", &BucketSettings::default())
            .await;
    assert_eq!(
        second.as_ref().err().and_then(|e| e.s3_code()),
        Some("TooManyBuckets"),
        "{second:?}"
    );
    // At its limit, the tenant's bucket still takes new settings, although
    // RGW refuses CreateBucket even for a bucket the tenant has.
    w.gw.ensure_bucket(B, "only", &settings(Some(10), true))
        .await
        .unwrap();
    let again = w.put(&w.key_b, "/only", b"").await;
    assert_eq!(again, (400, Some("TooManyBuckets".into())));
    let (status, code) = w.put(&w.key_b, "/only/big", &[7; 20]).await;
    assert_eq!(
        (status, code.as_deref()),
        (403, Some("QuotaExceeded")),
        "user quota 10 B"
    );
    w.gw.ensure_tenant(B, TenantLimits::default())
        .await
        .unwrap();
    assert_eq!(
        w.put(&w.key_b, "/only/big", &[7; 20]).await.0,
        200,
        "unlimited again"
    );
}

async fn key_removal(w: &World) {
    let extra = S3Credentials::new(
        "AKIAE2ETENANTA000002",
        "secondSecretOfTenantA00000000000000000",
    );
    w.gw.put_key(A, &extra.access_key, &extra.secret_key)
        .await
        .unwrap();
    assert_eq!(w.get(Some(&extra), "/photos/a.txt").await.0, 200);
    w.gw.remove_key(A, &extra.access_key).await.unwrap();
    assert_eq!(w.get(Some(&extra), "/photos/a.txt").await.0, 403);
    w.gw.remove_key(A, &extra.access_key).await.unwrap();
    w.gw.remove_key("prj_nobody", &extra.access_key)
        .await
        .unwrap();
    assert_eq!(
        w.get(Some(&w.key_a), "/photos/a.txt").await.0,
        200,
        "the other key still works"
    );
}

async fn bucket_deletion(w: &World) {
    let full = w.gw.delete_bucket(A, "photos", false).await;
    assert!(
        matches!(full, Err(RgwError::NotEmpty(ref b)) if b == "photos"),
        "{full:?}"
    );
    w.gw.delete_bucket(A, "docs", false).await.unwrap();
    w.gw.delete_bucket(A, "docs", false).await.unwrap();
    // An unfinished multipart upload goes with a purge too.
    let init = S3Request::new(Method::POST, "/photos/big").query("uploads", "");
    let resp = w.s3.send(&init, Some(&w.key_a)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    w.gw.delete_bucket(A, "photos", true).await.unwrap();
    w.gw.delete_bucket(A, "photos", true).await.unwrap();
    assert_eq!(w.gw.bucket_usage(A, "photos").await.unwrap(), None);
    assert!(w.gw.list_buckets(A).await.unwrap().is_empty());
    w.gw.delete_bucket("prj_nobody", "photos", false)
        .await
        .unwrap();
}

async fn traffic(w: &World) {
    let gw = w.gw.clone();
    let t = yunhan_testkit::wait_for_some(
        "tenant A's requests in the usage log",
        Duration::from_secs(15),
        Duration::from_millis(500),
        || {
            let gw = gw.clone();
            async move {
                let t = gw.traffic(A).await.unwrap();
                (t.requests >= 10 && t.bytes_received >= 2 * BODY.len() as u64).then_some(t)
            }
        },
    )
    .await;
    assert!(t.bytes_sent > 0, "{t:?}");
    assert_eq!(w.gw.traffic("prj_nobody").await.unwrap().requests, 0);
}

/// A driver whose cached platform key went stale (the tenant was removed and
/// made again through another instance) looks the key up again.
async fn stale_platform_key(w: &World) {
    w.other
        .ensure_tenant(A, TenantLimits::default())
        .await
        .unwrap();
    w.gw.remove_tenant(A).await.unwrap();
    w.gw.ensure_tenant(A, TenantLimits::default())
        .await
        .unwrap();
    w.other
        .ensure_bucket(A, "again", &BucketSettings::default())
        .await
        .unwrap();
    assert_eq!(w.gw.list_buckets(A).await.unwrap(), ["again"]);
    let gone = w.get(Some(&w.key_a), "/").await.0;
    assert_eq!(gone, 403, "user keys went with the tenant");
}

async fn tenant_removal(w: &World) {
    // B still has a bucket with an object: the purge takes it.
    w.gw.remove_tenant(B).await.unwrap();
    w.gw.remove_tenant(B).await.unwrap();
    assert!(w.gw.list_buckets(B).await.unwrap().is_empty());
    assert_eq!(w.gw.bucket_usage(B, "only").await.unwrap(), None);
    assert_eq!(w.get(Some(&w.key_b), "/").await.0, 403);
    w.gw.remove_tenant(A).await.unwrap();
    let missing =
        w.gw.ensure_bucket(B, "only", &BucketSettings::default())
            .await;
    assert!(
        matches!(
            missing,
            Err(RgwError::Storage(StorageError::NotFound { .. }))
        ),
        "{missing:?}"
    );
}
