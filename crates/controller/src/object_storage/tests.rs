use std::collections::{BTreeMap, BTreeSet};

use yunhan_model::{BucketStatus, Metadata, ProjectSpec, Resource, S3KeySpec, S3KeyStatus};
use yunhan_storage::rgw::{BucketUsage as GwUsage, TenantTraffic};

use super::*;

/// The gateway as the controller sees it, in memory; `refuse` names buckets it
/// refuses to make.
#[derive(Default)]
struct FakeGateway {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    tenants: BTreeMap<String, TenantLimits>,
    keys: BTreeSet<(String, String, String)>,
    buckets: BTreeMap<(String, String), (BucketSettings, u64)>,
    refuse: BTreeSet<String>,
}

impl FakeGateway {
    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl ObjectGateway for FakeGateway {
    fn endpoint(&self) -> &str {
        "http://s3.test"
    }
    async fn ensure_tenant(&self, tenant: &str, limits: TenantLimits) -> Result<(), RgwError> {
        self.with(|s| s.tenants.insert(tenant.into(), limits));
        Ok(())
    }
    async fn remove_tenant(&self, tenant: &str) -> Result<(), RgwError> {
        self.with(|s| s.tenants.remove(tenant));
        Ok(())
    }
    async fn put_key(&self, tenant: &str, access: &str, secret: &str) -> Result<(), RgwError> {
        self.with(|s| s.keys.insert((tenant.into(), access.into(), secret.into())));
        Ok(())
    }
    async fn remove_key(&self, tenant: &str, access: &str) -> Result<(), RgwError> {
        self.with(|s| s.keys.retain(|k| !(k.0 == tenant && k.1 == access)));
        Ok(())
    }
    async fn ensure_bucket(
        &self,
        tenant: &str,
        bucket: &str,
        settings: &BucketSettings,
    ) -> Result<(), RgwError> {
        self.with(|s| {
            if s.refuse.contains(bucket) {
                return Err(RgwError::S3 {
                    op: "CreateBucket".into(),
                    status: 400,
                    code: "InvalidBucketName".into(),
                    message: "refused".into(),
                });
            }
            let held = s
                .buckets
                .get(&(tenant.into(), bucket.into()))
                .map_or(0, |b| b.1);
            s.buckets
                .insert((tenant.into(), bucket.into()), (settings.clone(), held));
            Ok(())
        })
    }
    async fn bucket_usage(&self, tenant: &str, bucket: &str) -> Result<Option<GwUsage>, RgwError> {
        Ok(self.with(|s| {
            let b = s.buckets.get(&(tenant.into(), bucket.into()));
            b.map(|b| GwUsage {
                bytes: b.1 * 10,
                objects: b.1,
            })
        }))
    }
    async fn list_buckets(&self, tenant: &str) -> Result<Vec<String>, RgwError> {
        Ok(self.with(|s| {
            let mine = s.buckets.keys().filter(|k| k.0 == tenant);
            mine.map(|k| k.1.clone()).collect()
        }))
    }
    async fn delete_bucket(&self, tenant: &str, bucket: &str, purge: bool) -> Result<(), RgwError> {
        self.with(|s| {
            let key = (tenant.to_string(), bucket.to_string());
            match s.buckets.get(&key) {
                Some(b) if b.1 > 0 && !purge => Err(RgwError::NotEmpty(bucket.into())),
                _ => {
                    s.buckets.remove(&key);
                    Ok(())
                }
            }
        })
    }
    async fn traffic(&self, _tenant: &str) -> Result<TenantTraffic, RgwError> {
        Ok(TenantTraffic::default())
    }
}

struct World {
    objects: Objects,
    gateway: Arc<FakeGateway>,
    controller: ObjectStorage,
}

const PROJECT: &str = "prj-0000000000000001";
const TENANT: &str = "prj_0000000000000001";

async fn world() -> World {
    let objects = Objects::new(Arc::new(yunhan_store::MemStore::new()));
    let project = Resource {
        metadata: Metadata::new(PROJECT, "demo", None),
        spec: ProjectSpec::default(),
        status: Default::default(),
    };
    objects.create::<Project>(project).await.unwrap();
    let gateway = Arc::new(FakeGateway::default());
    let controller = ObjectStorage::new(gateway.clone());
    World {
        objects,
        gateway,
        controller,
    }
}

impl World {
    async fn bucket(&self, name: &str, spec: BucketSpec) -> Doc<Bucket> {
        let doc = Resource {
            metadata: Metadata::new(format!("bkt-{name}"), name, Some(PROJECT.into())),
            spec,
            status: BucketStatus::default(),
        };
        self.objects.create::<Bucket>(doc).await.unwrap()
    }

    async fn pass(&self) {
        self.controller.reconcile(&self.objects).await.unwrap();
    }

    async fn get(&self, name: &str) -> Option<Doc<Bucket>> {
        self.objects
            .get::<Bucket>(&format!("bkt-{name}"))
            .await
            .unwrap()
    }

    /// Marks a bucket for deletion as the API does.
    async fn delete(&self, name: &str, force: bool) {
        let mut b = self.get(name).await.unwrap();
        b.metadata.deleting = Some(now());
        b.status.force_delete = force;
        self.objects.update::<Bucket>(&b).await.unwrap();
    }
}

#[tokio::test]
async fn buckets_are_made_with_their_spec_and_the_project_is_a_tenant() {
    let w = world().await;
    let spec = BucketSpec {
        quota_bytes: Some(100 << 20),
        visibility: Visibility::PublicRead,
        ..Default::default()
    };
    w.bucket("photos", spec).await;
    w.pass().await;
    let b = w.get("photos").await.unwrap();
    assert_eq!(b.status.phase, BucketPhase::Active);
    assert_eq!(b.status.usage.as_ref().map(|u| u.objects), Some(0));
    let limits = limits_of(&Quota::default());
    w.gateway.with(|s| {
        assert_eq!(s.tenants.get(TENANT), Some(&limits));
        let (settings, _) = &s.buckets[&(TENANT.to_string(), "photos".to_string())];
        assert!(settings.public_read);
        assert_eq!(settings.max_bytes, Some(100 << 20));
    });
}

#[tokio::test]
async fn a_changed_spec_is_applied_again_and_usage_follows_the_gateway() {
    let w = world().await;
    w.bucket("docs", BucketSpec::default()).await;
    w.pass().await;
    let mut b = w.get("docs").await.unwrap();
    b.spec.quota_objects = Some(5);
    w.objects.update::<Bucket>(&b).await.unwrap();
    w.gateway.with(|s| {
        s.buckets
            .get_mut(&(TENANT.to_string(), "docs".to_string()))
            .unwrap()
            .1 = 3
    });
    w.pass().await;
    w.gateway.with(|s| {
        let (settings, _) = &s.buckets[&(TENANT.to_string(), "docs".to_string())];
        assert_eq!(settings.max_objects, Some(5));
    });
    let usage = w.get("docs").await.unwrap().status.usage.unwrap();
    assert_eq!((usage.objects, usage.bytes), (3, 30));
}

#[tokio::test]
async fn a_refused_bucket_fails_with_why_and_the_others_go_on() {
    let w = world().await;
    w.gateway.with(|s| s.refuse.insert("bad".into()));
    w.bucket("bad", BucketSpec::default()).await;
    w.bucket("good", BucketSpec::default()).await;
    w.pass().await;
    let bad = w.get("bad").await.unwrap();
    assert_eq!(bad.status.phase, BucketPhase::Failed);
    assert!(
        bad.status.message.contains("InvalidBucketName"),
        "{}",
        bad.status.message
    );
    assert_eq!(
        w.get("good").await.unwrap().status.phase,
        BucketPhase::Active
    );
}

#[tokio::test]
async fn a_bucket_with_objects_is_deleted_only_when_forced() {
    let w = world().await;
    w.bucket("full", BucketSpec::default()).await;
    w.pass().await;
    w.gateway.with(|s| {
        s.buckets
            .get_mut(&(TENANT.to_string(), "full".to_string()))
            .unwrap()
            .1 = 2
    });
    w.delete("full", false).await;
    w.pass().await;
    let kept = w.get("full").await.unwrap();
    assert!(kept.metadata.deleting.is_none());
    assert!(
        kept.status.message.contains("holds objects"),
        "{}",
        kept.status.message
    );
    w.delete("full", true).await;
    w.pass().await;
    assert!(w.get("full").await.is_none());
    assert!(w.gateway.with(|s| s.buckets.is_empty()));
}

#[tokio::test]
async fn keys_reach_the_gateway_with_their_secret_and_leave_with_it() {
    let w = world().await;
    let key = Resource {
        metadata: Metadata::new("s3k-1", "ci", Some(PROJECT.into())),
        spec: S3KeySpec::default(),
        status: S3KeyStatus {
            user: "usr-1".into(),
            access_key: "YKTEST".into(),
            ..Default::default()
        },
    };
    let secret = s3_key_secret_key("s3k-1");
    w.objects
        .store()
        .put(&secret, b"sekrit".to_vec())
        .await
        .unwrap();
    w.objects.create::<S3Key>(key).await.unwrap();
    w.pass().await;
    let k = w.objects.get::<S3Key>("s3k-1").await.unwrap().unwrap();
    assert_eq!(k.status.phase, S3KeyPhase::Active);
    let held = (
        TENANT.to_string(),
        "YKTEST".to_string(),
        "sekrit".to_string(),
    );
    assert!(w.gateway.with(|s| s.keys.contains(&held)));

    let mut k = k;
    k.metadata.deleting = Some(now());
    w.objects.update::<S3Key>(&k).await.unwrap();
    w.pass().await;
    assert!(w.objects.get::<S3Key>("s3k-1").await.unwrap().is_none());
    assert!(w.objects.store().get(&secret).await.unwrap().is_none());
    assert!(w.gateway.with(|s| s.keys.is_empty()));
}

#[test]
fn steps_follow_the_document() {
    let mut b: Doc<Bucket> = Resource {
        metadata: Metadata::new("bkt-1", "b", Some(PROJECT.into())),
        spec: BucketSpec::default(),
        status: BucketStatus::default(),
    };
    assert_eq!(bucket_step(&b, None, true), BucketStep::Ensure);
    assert_eq!(
        bucket_step(&b, Some(&b.spec.clone()), true),
        BucketStep::Measure
    );
    b.status.phase = BucketPhase::Failed;
    assert_eq!(bucket_step(&b, None, false), BucketStep::Wait);
    assert_eq!(
        bucket_step(&b, Some(&b.spec.clone()), true),
        BucketStep::Ensure
    );
    b.metadata.deleting = Some(now());
    b.status.force_delete = true;
    assert_eq!(
        bucket_step(&b, None, false),
        BucketStep::Remove { purge: true }
    );
}

#[tokio::test]
async fn a_deleted_project_leaves_the_gateway() {
    let w = world().await;
    w.bucket("b", BucketSpec::default()).await;
    w.pass().await;
    w.delete("b", true).await;
    w.pass().await;
    assert!(w.gateway.with(|s| s.tenants.contains_key(TENANT)));
    let p = w.objects.get::<Project>(PROJECT).await.unwrap().unwrap();
    w.objects.delete::<Project>(&p).await.unwrap();
    w.pass().await;
    assert!(w.gateway.with(|s| s.tenants.is_empty()));
}

#[tokio::test]
async fn buckets_made_and_deleted_through_s3_follow() {
    let w = world().await;
    w.bucket("api", BucketSpec::default()).await;
    w.pass().await;
    let made = BucketSettings::default();
    w.gateway.with(|s| {
        s.buckets
            .insert((TENANT.into(), "direct".into()), (made, 0))
    });
    w.gateway.with(|s| {
        s.buckets.insert(
            (TENANT.into(), "Not_S3".into()),
            (BucketSettings::default(), 0),
        )
    });
    w.controller.remember(|m| m.measured_at = None);
    w.pass().await;
    let all = w.objects.list_all::<Bucket>(Some(PROJECT)).await.unwrap();
    let direct = all
        .iter()
        .find(|b| b.metadata.name == "direct")
        .expect("adopted");
    assert_eq!(
        direct.metadata.labels.get(ORIGIN_LABEL).map(String::as_str),
        Some("s3")
    );
    assert_eq!(direct.status.phase, BucketPhase::Active);
    assert_eq!(all.len(), 2, "a name S3 forbids stays unlisted");

    w.gateway
        .with(|s| s.buckets.remove(&(TENANT.to_string(), "api".to_string())));
    w.controller.remember(|m| m.measured_at = None);
    w.pass().await;
    assert!(w.get("api").await.is_none(), "deleted through S3");
    assert!(w
        .gateway
        .with(|s| s.buckets.contains_key(&(TENANT.into(), "direct".into()))));
}
