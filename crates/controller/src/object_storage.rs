//! The object-storage controller (docs/object-storage.md), on the leader: makes the
//! API's buckets and S3 keys real in the S3 gateway and keeps their status true.
//!
//! - A project with a bucket or a key is an RGW tenant whose limits follow the
//!   project's quota (`buckets`, `object_bytes`); when the project is deleted, so is the
//!   tenant (one this leader made: a tenant of a project deleted while no leader ran stays).
//! - A key is given to the gateway with the secret the API kept beside it; a deleted
//!   key is taken out of the gateway, then its document and secret go.
//! - A bucket is made (or adopted, if the project made it through S3 already) with
//!   its spec's quota and visibility, and made again whenever the spec changes; its
//!   usage is read every few seconds and written when it moved. A deleted bucket is
//!   removed with its objects when the deletion was forced; one that turns out to hold
//!   objects stays, with why in `status.message`.
//! - Each tenant's traffic (requests, bytes in and out) is read from the gateway's usage
//!   log with the usage and kept in the store for `/metrics`.
//! - Buckets a project makes or deletes straight through S3 (`aws s3 mb`) follow: found in
//!   the gateway, they become documents labelled `origin=s3`; an Active bucket the
//!   gateway no longer has loses its document.
//!
//! What to do with each object is [`bucket_step`] / [`key_step`] (pure); a failure
//! marks that object Failed with the gateway's words and is retried after
//! [`RETRY`]; the others go on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use yunhan_model::{
    bucket_name_error, bucket_public_url, new_id, now, tenant_of, Bucket, BucketPhase, BucketSpec,
    BucketStatus, BucketUsage, Doc, Kind, Metadata, Project, Quota, Resource, S3Key, S3KeyPhase,
    S3Traffic, Visibility, ORIGIN_LABEL,
};
use yunhan_storage::rgw::{BucketSettings, ObjectGateway, RgwError, TenantLimits};
use yunhan_store::objects::{
    object_prefix, s3_key_secret_key, ObjectError, Objects, S3_TRAFFIC_PREFIX,
};
use yunhan_store::reconcile::Reconciler;
use yunhan_store::StoreExt;

/// How long a Failed bucket or key waits before the next attempt.
pub const RETRY: Duration = Duration::from_secs(15);

/// How often buckets' usage is read from the gateway.
pub const USAGE_EVERY: Duration = Duration::from_secs(5);

/// What a bucket needs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketStep {
    /// Create it, or apply a changed spec.
    Ensure,
    /// Remove it from the gateway (`purge`: with its objects), then the document.
    Remove { purge: bool },
    /// Read its usage.
    Measure,
    /// Nothing (failed recently: wait for the retry).
    Wait,
}

/// The step of bucket `b`, given the spec last applied to the gateway (this leader's
/// memory: none after a restart, so everything is applied once again, idempotently)
/// and whether a retry is due.
pub fn bucket_step(b: &Doc<Bucket>, applied: Option<&BucketSpec>, retry_due: bool) -> BucketStep {
    if b.metadata.deleting.is_some() {
        return BucketStep::Remove {
            purge: b.status.force_delete,
        };
    }
    let failed = b.status.phase == BucketPhase::Failed;
    match applied {
        _ if failed && !retry_due => BucketStep::Wait,
        Some(spec) if *spec == b.spec && !failed => BucketStep::Measure,
        _ => BucketStep::Ensure,
    }
}

/// What a key needs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStep {
    Put,
    Remove,
    Nothing,
}

/// The step of key `k`; `known`: this leader gave it to the gateway already.
pub fn key_step(k: &Doc<S3Key>, known: bool, retry_due: bool) -> KeyStep {
    match (k.metadata.deleting.is_some(), k.status.phase) {
        (true, _) => KeyStep::Remove,
        (false, S3KeyPhase::Failed) if !retry_due => KeyStep::Nothing,
        (false, S3KeyPhase::Active) if known => KeyStep::Nothing,
        _ => KeyStep::Put,
    }
}

/// The gateway's settings of a bucket spec.
pub fn settings_of(spec: &BucketSpec) -> BucketSettings {
    BucketSettings {
        max_bytes: spec.quota_bytes,
        max_objects: spec.quota_objects,
        public_read: spec.visibility == Visibility::PublicRead,
    }
}

/// A tenant's limits from its project's quota.
pub fn limits_of(quota: &Quota) -> TenantLimits {
    TenantLimits {
        max_bytes: Some(quota.object_bytes),
        max_buckets: Some(quota.buckets),
    }
}

/// What this leader has done (forgotten with it: the next leader applies all again).
#[derive(Default)]
struct Memory {
    tenants: HashMap<String, TenantLimits>,
    buckets: HashMap<String, BucketSpec>,
    keys: HashMap<String, String>,
    failed_at: HashMap<String, Instant>,
    measured_at: Option<Instant>,
    traffic: HashMap<String, S3Traffic>,
}

pub struct ObjectStorage {
    gateway: Arc<dyn ObjectGateway>,
    memory: Mutex<Memory>,
}

impl ObjectStorage {
    pub fn new(gateway: Arc<dyn ObjectGateway>) -> Self {
        ObjectStorage {
            gateway,
            memory: Mutex::new(Memory::default()),
        }
    }

    fn remember<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        f(&mut self.memory.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn retry_due(&self, id: &str) -> bool {
        self.remember(|m| m.failed_at.get(id).is_none_or(|t| t.elapsed() >= RETRY))
    }
}

#[async_trait::async_trait]
impl Reconciler for ObjectStorage {
    fn name(&self) -> &'static str {
        "object-storage"
    }

    fn watches(&self) -> Vec<String> {
        vec![
            object_prefix::<Bucket>(None),
            object_prefix::<S3Key>(None),
            object_prefix::<Project>(None),
        ]
    }

    fn resync(&self) -> Duration {
        USAGE_EVERY
    }

    /// Every bucket and key on its own: one that fails says why, the others go on.
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let keys = objects.list_all::<S3Key>(None).await?;
        let buckets = objects.list_all::<Bucket>(None).await?;
        let projects: HashMap<String, Quota> = (objects.list_all::<Project>(None).await?)
            .into_iter()
            .map(|p| (p.metadata.id, p.spec.quota))
            .collect();
        self.tenants(objects, &projects, &keys, &buckets).await?;
        for k in &keys {
            self.key(objects, k).await?;
        }
        let measure = self.remember(|m| {
            let due = m.measured_at.is_none_or(|t| t.elapsed() >= USAGE_EVERY);
            if due {
                m.measured_at = Some(Instant::now());
            }
            due
        });
        for b in &buckets {
            self.bucket(objects, b, measure).await?;
        }
        if measure {
            self.adopt(objects, &buckets).await?;
            self.traffic(objects).await?;
        }
        Ok(())
    }
}

impl ObjectStorage {
    /// Each project holding a bucket or key is a tenant with its quota's limits.
    async fn tenants(
        &self,
        objects: &Objects,
        quotas: &HashMap<String, Quota>,
        keys: &[Doc<S3Key>],
        buckets: &[Doc<Bucket>],
    ) -> Result<(), ObjectError> {
        let mut projects: Vec<&str> = keys
            .iter()
            .filter_map(|k| k.metadata.project.as_deref())
            .chain(buckets.iter().filter_map(|b| b.metadata.project.as_deref()))
            .collect();
        projects.sort_unstable();
        projects.dedup();
        self.forget_deleted_projects(objects, quotas).await?;
        for id in projects {
            let Some(quota) = quotas.get(id) else {
                continue;
            };
            let limits = limits_of(quota);
            if self.remember(|m| m.tenants.get(id) == Some(&limits)) {
                continue;
            }
            match self.gateway.ensure_tenant(&tenant_of(id), limits).await {
                Ok(()) => self.remember(|m| m.tenants.insert(id.to_string(), limits)),
                Err(e) => {
                    tracing::warn!(project = id, error = %e, "object storage tenant not ready");
                    None
                }
            };
        }
        Ok(())
    }

    /// A tenant this leader made whose project is gone goes from the gateway too (the
    /// API deletes a project only once it holds nothing and has no users).
    async fn forget_deleted_projects(
        &self,
        objects: &Objects,
        quotas: &HashMap<String, Quota>,
    ) -> Result<(), ObjectError> {
        let known: Vec<String> = self.remember(|m| m.tenants.keys().cloned().collect());
        for id in known.into_iter().filter(|id| !quotas.contains_key(id)) {
            match self.gateway.remove_tenant(&tenant_of(&id)).await {
                Ok(()) => {
                    self.remember(|m| m.tenants.remove(&id));
                    let key = format!("{S3_TRAFFIC_PREFIX}{id}");
                    objects.store().delete(&key).await?;
                }
                Err(e) => tracing::warn!(project = %id, error = %e, "tenant not removed"),
            }
        }
        Ok(())
    }

    /// Buckets a project made straight through S3 become documents (labelled
    /// [`ORIGIN_LABEL`] `s3`, their spec taken as applied: the bucket is left as it is).
    async fn adopt(&self, objects: &Objects, buckets: &[Doc<Bucket>]) -> Result<(), ObjectError> {
        let projects: Vec<String> = self.remember(|m| m.tenants.keys().cloned().collect());
        for p in projects {
            let found = match self.gateway.list_buckets(&tenant_of(&p)).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(project = %p, error = %e, "buckets not listed");
                    continue;
                }
            };
            let known = |name: &str| {
                (buckets.iter())
                    .any(|b| b.metadata.project.as_deref() == Some(&p) && b.metadata.name == name)
            };
            for name in found.iter().filter(|n| !known(n)) {
                self.adopt_one(objects, &p, name).await?;
            }
        }
        Ok(())
    }

    async fn adopt_one(
        &self,
        objects: &Objects,
        project: &str,
        name: &str,
    ) -> Result<(), ObjectError> {
        if bucket_name_error(name).is_some() {
            return Ok(()); // RGW's names are S3's; one we could not name stays unlisted
        }
        let endpoint = self.gateway.endpoint();
        let mut metadata = Metadata::new(new_id(Bucket::ID_PREFIX), name, Some(project.into()));
        metadata.labels.insert(ORIGIN_LABEL.into(), "s3".into());
        let doc = Resource {
            metadata,
            spec: BucketSpec::default(),
            status: BucketStatus {
                phase: BucketPhase::Active,
                endpoint: Some(endpoint.to_string()),
                public_url: Some(bucket_public_url(endpoint, project, name)),
                ..Default::default()
            },
        };
        match objects.create::<Bucket>(doc).await {
            Ok(d) => {
                self.remember(|m| m.buckets.insert(d.metadata.id.clone(), d.spec.clone()));
                let what = "made through S3: listed from now on".to_string();
                crate::events::platform_event::<Bucket>(objects, &d, "bucket-adopted", what).await;
            }
            // Made through the API meanwhile, or over the project's quota: not listed.
            Err(e) => tracing::debug!(project, bucket = name, error = %e, "bucket not adopted"),
        }
        Ok(())
    }

    /// Each tenant's traffic from the gateway's usage log, written when it moved.
    async fn traffic(&self, objects: &Objects) -> Result<(), ObjectError> {
        let projects: Vec<String> = self.remember(|m| m.tenants.keys().cloned().collect());
        for p in projects {
            let t = match self.gateway.traffic(&tenant_of(&p)).await {
                Ok(t) => S3Traffic {
                    requests: t.requests,
                    bytes_sent: t.bytes_sent,
                    bytes_received: t.bytes_received,
                },
                Err(e) => {
                    tracing::warn!(project = %p, error = %e, "S3 traffic not read");
                    continue;
                }
            };
            if self.remember(|m| m.traffic.insert(p.clone(), t)) == Some(t) {
                continue;
            }
            let value = serde_json::to_vec(&t).unwrap_or_default();
            let key = format!("{S3_TRAFFIC_PREFIX}{p}");
            objects.store().put(&key, value).await?;
        }
        Ok(())
    }

    async fn key(&self, objects: &Objects, k: &Doc<S3Key>) -> Result<(), ObjectError> {
        let id = &k.metadata.id;
        let known = self.remember(|m| m.keys.contains_key(id));
        let tenant = tenant_of(k.metadata.project.as_deref().unwrap_or_default());
        match key_step(k, known, self.retry_due(id)) {
            KeyStep::Nothing => Ok(()),
            KeyStep::Remove => {
                let access = &k.status.access_key;
                if let Err(e) = self.gateway.remove_key(&tenant, access).await {
                    return self.key_failed(objects, k, e).await;
                }
                objects.store().delete(&s3_key_secret_key(id)).await?;
                self.remember(|m| m.keys.remove(id));
                objects.delete_latest::<S3Key>(id).await
            }
            KeyStep::Put => self.put_key(objects, k, &tenant).await,
        }
    }

    async fn put_key(
        &self,
        objects: &Objects,
        k: &Doc<S3Key>,
        tenant: &str,
    ) -> Result<(), ObjectError> {
        let id = &k.metadata.id;
        let Some(secret) = objects.store().get(&s3_key_secret_key(id)).await? else {
            let e = RgwError::S3 {
                op: "put key".into(),
                status: 0,
                code: "NoSecret".into(),
                message: "the key's secret is lost; delete the key and create another".into(),
            };
            return self.key_failed(objects, k, e).await;
        };
        let secret = String::from_utf8_lossy(&secret.value).into_owned();
        let put = self.gateway.put_key(tenant, &k.status.access_key, &secret);
        if let Err(e) = put.await {
            return self.key_failed(objects, k, e).await;
        }
        self.remember(|m| {
            m.failed_at.remove(id);
            m.keys.insert(id.clone(), k.status.access_key.clone())
        });
        let endpoint = self.gateway.endpoint().to_string();
        objects
            .modify::<S3Key>(id, |d| {
                let changed = d.status.phase != S3KeyPhase::Active || !d.status.message.is_empty();
                d.status.phase = S3KeyPhase::Active;
                d.status.message.clear();
                d.status.endpoint = Some(endpoint.clone());
                changed
            })
            .await
            .map(drop)
    }

    async fn key_failed(
        &self,
        objects: &Objects,
        k: &Doc<S3Key>,
        e: RgwError,
    ) -> Result<(), ObjectError> {
        tracing::warn!(key = %k.metadata.id, error = %e, "S3 key not realised");
        self.remember(|m| m.failed_at.insert(k.metadata.id.clone(), Instant::now()));
        let why = e.to_string();
        objects
            .modify::<S3Key>(&k.metadata.id, |d| {
                let changed = d.status.message != why;
                if d.metadata.deleting.is_none() {
                    d.status.phase = S3KeyPhase::Failed;
                }
                d.status.message = why.clone();
                changed
            })
            .await
            .map(drop)
    }

    async fn bucket(
        &self,
        objects: &Objects,
        b: &Doc<Bucket>,
        measure: bool,
    ) -> Result<(), ObjectError> {
        let id = &b.metadata.id;
        let applied = self.remember(|m| m.buckets.get(id).cloned());
        let tenant = tenant_of(b.metadata.project.as_deref().unwrap_or_default());
        let name = &b.metadata.name;
        match bucket_step(b, applied.as_ref(), self.retry_due(id)) {
            BucketStep::Wait => Ok(()),
            BucketStep::Measure if !measure => Ok(()),
            BucketStep::Measure => match self.gateway.bucket_usage(&tenant, name).await {
                Ok(usage) => write_usage(objects, b, usage).await,
                Err(e) => {
                    tracing::warn!(bucket = %id, error = %e, "bucket usage not read");
                    Ok(())
                }
            },
            BucketStep::Ensure => {
                let made = self
                    .gateway
                    .ensure_bucket(&tenant, name, &settings_of(&b.spec))
                    .await;
                match made {
                    Ok(()) => self.bucket_ready(objects, b).await,
                    Err(e) => self.bucket_failed(objects, b, e).await,
                }
            }
            BucketStep::Remove { purge } => {
                match self.gateway.delete_bucket(&tenant, name, purge).await {
                    Ok(()) => {
                        self.remember(|m| m.buckets.remove(id));
                        objects.delete_latest::<Bucket>(id).await
                    }
                    Err(RgwError::NotEmpty(_)) => keep_bucket(objects, b).await,
                    Err(e) => self.bucket_failed(objects, b, e).await,
                }
            }
        }
    }

    async fn bucket_ready(&self, objects: &Objects, b: &Doc<Bucket>) -> Result<(), ObjectError> {
        let id = &b.metadata.id;
        self.remember(|m| {
            m.failed_at.remove(id);
            m.buckets.insert(id.clone(), b.spec.clone())
        });
        let tenant = tenant_of(b.metadata.project.as_deref().unwrap_or_default());
        let usage = self.gateway.bucket_usage(&tenant, &b.metadata.name).await;
        objects
            .modify::<Bucket>(id, |d| {
                if d.metadata.deleting.is_some() {
                    return false;
                }
                d.status.phase = BucketPhase::Active;
                d.status.message.clear();
                if let Ok(Some(u)) = &usage {
                    d.status.usage = Some(usage_of(*u));
                }
                true
            })
            .await
            .map(drop)
    }

    async fn bucket_failed(
        &self,
        objects: &Objects,
        b: &Doc<Bucket>,
        e: RgwError,
    ) -> Result<(), ObjectError> {
        tracing::warn!(bucket = %b.metadata.id, error = %e, "bucket not realised");
        self.remember(|m| m.failed_at.insert(b.metadata.id.clone(), Instant::now()));
        let why = e.to_string();
        let first = b.status.message != why;
        objects
            .modify::<Bucket>(&b.metadata.id, |d| {
                let changed = d.status.message != why;
                if d.metadata.deleting.is_none() {
                    d.status.phase = BucketPhase::Failed;
                }
                d.status.message = why.clone();
                changed
            })
            .await?;
        if first {
            let what = format!("the S3 gateway refused it: {why}");
            crate::events::platform_event::<Bucket>(objects, b, "bucket-failed", what).await;
        }
        Ok(())
    }
}

fn usage_of(u: yunhan_storage::rgw::BucketUsage) -> BucketUsage {
    BucketUsage {
        bytes: u.bytes,
        objects: u.objects,
        measured_at: now(),
    }
}

/// Writes a bucket's usage when it moved.
async fn write_usage(
    objects: &Objects,
    b: &Doc<Bucket>,
    usage: Option<yunhan_storage::rgw::BucketUsage>,
) -> Result<(), ObjectError> {
    let Some(u) = usage else {
        return bucket_gone(objects, b).await;
    };
    let same = |old: &Option<BucketUsage>| {
        old.as_ref()
            .is_some_and(|o| (o.bytes, o.objects) == (u.bytes, u.objects))
    };
    if same(&b.status.usage) {
        return Ok(());
    }
    objects
        .modify::<Bucket>(&b.metadata.id, |d| {
            let changed = !same(&d.status.usage) && d.metadata.deleting.is_none();
            d.status.usage = Some(usage_of(u));
            changed
        })
        .await
        .map(drop)
}

/// An Active bucket the gateway no longer has was deleted through S3: so is its document.
async fn bucket_gone(objects: &Objects, b: &Doc<Bucket>) -> Result<(), ObjectError> {
    if b.status.phase != BucketPhase::Active {
        return Ok(());
    }
    objects.delete_latest::<Bucket>(&b.metadata.id).await?;
    let what = "deleted through S3".to_string();
    crate::events::platform_event::<Bucket>(objects, b, "bucket-gone", what).await;
    Ok(())
}

/// A deletion (not forced) found objects in the bucket: it stays, and says why.
async fn keep_bucket(objects: &Objects, b: &Doc<Bucket>) -> Result<(), ObjectError> {
    let why = "not deleted: the bucket holds objects; delete them first, or delete the bucket with them (yunhan bucket delete --force)";
    objects
        .modify::<Bucket>(&b.metadata.id, |d| {
            if d.status.force_delete {
                return false; // forced meanwhile: the next pass purges it
            }
            d.metadata.deleting = None;
            d.status.phase = BucketPhase::Active;
            d.status.message = why.to_string();
            true
        })
        .await
        .map(drop)
}

#[cfg(test)]
mod tests;
