//! [`RgwAdmin`]: the [`ObjectGateway`] over `radosgw-admin` and a few S3
//! calls made with the tenant's platform key.
//!
//! RGW 16.2 quirks handled here:
//! - `bucket rm` on a non-empty bucket prints an error but exits 0, so a
//!   delete without purge is S3 DeleteBucket (409 `BucketNotEmpty`), and a
//!   purge is checked with `bucket stats` afterwards;
//! - `quota set` on a missing bucket exits 0 too: it only runs after
//!   `bucket stats` found the bucket;
//! - a missing bucket is exit status 210 (RGW's error 2002 truncated) with
//!   `(2002)` in stderr; a missing user is 2 or 22 depending on the command.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::json::{BucketStats, Quota, UsageShow, UserInfo};
use super::s3::{S3Client, S3Credentials, S3Request, S3Response};
use super::{
    validate_access_key, validate_bucket, validate_secret_key, validate_tenant, BucketSettings,
    BucketUsage, ObjectGateway, RgwError, TenantLimits, TenantTraffic, PLATFORM_KEY_PREFIX,
    PROJECT_UID,
};
use crate::{cmd, sizes, CephCluster, StorageError};

/// How long one `radosgw-admin` run may take (the first one on a fresh
/// cluster creates RGW's pools).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The concrete [`ObjectGateway`]: `radosgw-admin` with the cluster's
/// identity, S3 at `endpoint`.
pub struct RgwAdmin {
    cluster: CephCluster,
    endpoint: String,
    /// `None` if `endpoint` is not a usable URL (every S3 call then says so).
    s3: Option<S3Client>,
    /// The platform key of each tenant seen so far.
    keys: Mutex<HashMap<String, S3Credentials>>,
}

/// One finished `radosgw-admin` run.
struct Ran {
    command: String,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    fn backend(&self) -> RgwError {
        StorageError::Backend {
            command: self.command.clone(),
            stderr: self.stderr.clone(),
        }
        .into()
    }

    /// stdout as JSON (not quoted in the error: it may hold secrets).
    fn json<T: DeserializeOwned>(&self) -> Result<T, RgwError> {
        serde_json::from_slice(&self.stdout).map_err(|e| {
            StorageError::Backend {
                command: self.command.clone(),
                stderr: format!("unparsable JSON output ({e})"),
            }
            .into()
        })
    }
}

/// The user of a command failing because it does not exist.
fn user_missing(code: Option<i32>, stderr: &str) -> bool {
    code == Some(ENOENT)
        || [
            "no user info saved",
            "user not found",
            "user does not exist",
            "user info was not populated",
            "could not find user",
        ]
        .iter()
        .any(|s| stderr.contains(s))
}

/// The bucket of a command failing because it does not exist.
fn bucket_missing(code: Option<i32>, stderr: &str) -> bool {
    code == Some(ENOENT) || code == Some(2002 & 0xff) || stderr.contains("(2002)")
}

/// The exit status of a command failing with ENOENT.
const ENOENT: i32 = nix::errno::Errno::ENOENT as i32;

/// RGW's `max_buckets` for a limit: 0 is unlimited there, negative forbids
/// creating buckets.
fn rgw_max_buckets(limit: Option<u64>) -> i64 {
    match limit {
        None => 0,
        Some(0) => -1,
        Some(n) => i64::from(i32::try_from(n).unwrap_or(i32::MAX)),
    }
}

/// Refuses a quota below what the bucket holds.
fn check_quota_fits(bucket: &str, usage: BucketUsage, want: &Quota) -> Result<(), RgwError> {
    let over = |limit: i64, held: u64| want.enabled && limit >= 0 && held > limit as u64;
    let held = if over(want.max_objects, usage.objects) {
        format!("{} objects", usage.objects)
    } else if over(want.max_size, usage.bytes) {
        sizes::human(usage.bytes)
    } else {
        return Ok(());
    };
    Err(RgwError::QuotaBelowUsage {
        bucket: bucket.to_string(),
        held,
    })
}

/// Anonymous read and list of one bucket of a tenant.
fn public_read_policy(tenant: &str, bucket: &str) -> String {
    let arn = format!("arn:aws:s3::{tenant}:{bucket}");
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": [format!("{arn}/*")]},
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:ListBucket"], "Resource": [arn]},
        ]
    })
    .to_string()
}

/// A fresh platform key: `YHP` + 17 upper-case letters/digits, 40-character secret.
fn new_platform_key() -> S3Credentials {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..17)
        .map(|_| UPPER[rng.gen_range(0..UPPER.len())] as char)
        .collect();
    let secret: String = (0..40)
        .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
        .collect();
    S3Credentials::new(format!("{PLATFORM_KEY_PREFIX}{suffix}"), secret)
}

/// An argument as error messages show it: secrets hidden.
fn redact(arg: &str) -> &str {
    match arg.starts_with("--secret-key=") {
        true => "--secret-key=<redacted>",
        false => arg,
    }
}

fn user_args(tenant: &str) -> Vec<String> {
    vec![format!("--tenant={tenant}"), format!("--uid={PROJECT_UID}")]
}

fn bucket_arg(tenant: &str, bucket: &str) -> String {
    format!("--bucket={tenant}/{bucket}")
}

/// `radosgw-admin` arguments from words and argument lists.
macro_rules! args {
    ($($a:expr),* $(,)?) => {{
        let mut v: Vec<String> = Vec::new();
        $(args!(@push v, $a);)*
        v
    }};
    (@push $v:ident, $a:expr) => { $v.extend(IntoArgs::into_args($a)) };
}

trait IntoArgs {
    fn into_args(self) -> Vec<String>;
}

impl IntoArgs for &str {
    fn into_args(self) -> Vec<String> {
        vec![self.to_string()]
    }
}

impl IntoArgs for String {
    fn into_args(self) -> Vec<String> {
        vec![self]
    }
}

impl IntoArgs for Vec<String> {
    fn into_args(self) -> Vec<String> {
        self
    }
}

impl RgwAdmin {
    /// `cluster` is the existing [`CephCluster`] (conf, cephx user, keyring);
    /// endpoint is the S3 URL.
    pub fn new(cluster: CephCluster, endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        RgwAdmin {
            s3: S3Client::new(&endpoint).ok(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cluster,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn s3(&self) -> Result<&S3Client, RgwError> {
        match &self.s3 {
            Some(c) => Ok(c),
            None => Err(S3Client::new(&self.endpoint)
                .err()
                .unwrap_or_else(|| StorageError::invalid("unusable S3 endpoint").into())),
        }
    }

    /// Runs `radosgw-admin args…`; any exit status is `Ok`.
    async fn run(&self, args: Vec<String>) -> Result<Ran, RgwError> {
        let mut c = self.cluster.base("radosgw-admin");
        let shown: Vec<&str> = args.iter().map(|a| redact(a)).collect();
        let command = format!("{} {}", cmd::render(&c), shown.join(" "));
        c.args(&args);
        let failed = |stderr| StorageError::Backend {
            command: command.clone(),
            stderr,
        };
        let out = match tokio::time::timeout(ADMIN_TIMEOUT, cmd::output(&mut c)).await {
            Err(_) => return Err(failed(format!("no answer within {ADMIN_TIMEOUT:?}")).into()),
            // Its own rendering of the command would show the secrets.
            Ok(Err(StorageError::Backend { stderr, .. })) => return Err(failed(stderr).into()),
            Ok(other) => other?,
        };
        Ok(Ran {
            command,
            code: out.status.code(),
            stderr: cmd::stderr_of(&out),
            stdout: out.stdout,
        })
    }

    /// Runs `radosgw-admin args…`; a failure is `Backend`.
    async fn run_ok(&self, args: Vec<String>) -> Result<Ran, RgwError> {
        let ran = self.run(args).await?;
        match ran.ok() {
            true => Ok(ran),
            false => Err(ran.backend()),
        }
    }

    async fn user_info(&self, tenant: &str) -> Result<Option<UserInfo>, RgwError> {
        let ran = self.run(args!["user", "info", user_args(tenant)]).await?;
        match ran.ok() {
            true => ran.json().map(Some),
            false if user_missing(ran.code, &ran.stderr) => Ok(None),
            false => Err(ran.backend()),
        }
    }

    /// Creates the tenant's user with a platform key (none of RGW's random ones).
    async fn create_user(&self, tenant: &str) -> Result<UserInfo, RgwError> {
        let key = new_platform_key();
        let ran = self
            .run(args![
                "user",
                "create",
                user_args(tenant),
                format!("--display-name=Yunhan project {tenant}"),
                format!("--access-key={}", key.access_key),
                format!("--secret-key={}", key.secret_key),
            ])
            .await?;
        if ran.ok() {
            return ran.json();
        }
        // Created meanwhile by someone else (EEXIST): use theirs.
        match self.user_info(tenant).await? {
            Some(info) => Ok(info),
            None => Err(ran.backend()),
        }
    }

    async fn add_key(&self, tenant: &str, key: &S3Credentials) -> Result<Ran, RgwError> {
        self.run(args![
            "key",
            "create",
            user_args(tenant),
            "--key-type=s3",
            format!("--access-key={}", key.access_key),
            format!("--secret-key={}", key.secret_key),
        ])
        .await
    }

    fn cached_key(&self, tenant: &str) -> Option<S3Credentials> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(tenant).cloned()
    }

    pub(super) fn cache_key(&self, tenant: &str, key: Option<S3Credentials>) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(k) => keys.insert(tenant.to_string(), k),
            None => keys.remove(tenant),
        };
    }

    /// The platform key on `info`'s user, added if it has none; cached.
    async fn ensure_platform_key(
        &self,
        tenant: &str,
        info: &UserInfo,
    ) -> Result<S3Credentials, RgwError> {
        let key = match info.platform_key() {
            Some(k) => k,
            None => {
                let k = new_platform_key();
                let ran = self.add_key(tenant, &k).await?;
                if !ran.ok() {
                    return Err(ran.backend());
                }
                k
            }
        };
        self.cache_key(tenant, Some(key.clone()));
        Ok(key)
    }

    /// The tenant's platform key: cached, else from `user info`.
    pub(super) async fn platform_key(&self, tenant: &str) -> Result<S3Credentials, RgwError> {
        if let Some(k) = self.cached_key(tenant) {
            return Ok(k);
        }
        match self.user_info(tenant).await? {
            Some(info) => self.ensure_platform_key(tenant, &info).await,
            None => Err(StorageError::not_found("tenant", tenant).into()),
        }
    }

    /// Sends `req` with the tenant's platform key. A key refused as unknown
    /// (the tenant was re-created elsewhere) is looked up again, once.
    pub(super) async fn s3_platform(
        &self,
        tenant: &str,
        req: &S3Request,
    ) -> Result<S3Response, RgwError> {
        let key = self.platform_key(tenant).await?;
        let resp = self.s3()?.send(req, Some(&key)).await?;
        let stale = matches!(
            resp.error_code().as_deref(),
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch")
        );
        if !stale {
            return Ok(resp);
        }
        self.cache_key(tenant, None);
        let key = self.platform_key(tenant).await?;
        self.s3()?.send(req, Some(&key)).await
    }

    /// Sets a quota (`scope`: `--quota-scope=…` and the user or bucket).
    async fn set_quota(&self, scope: Vec<String>, q: Quota) -> Result<(), RgwError> {
        self.run_ok(args![
            "quota",
            "set",
            scope.clone(),
            format!("--max-size={}", q.max_size),
            format!("--max-objects={}", q.max_objects),
        ])
        .await?;
        let verb = if q.enabled { "enable" } else { "disable" };
        self.run_ok(args!["quota", verb, scope]).await.map(drop)
    }

    async fn apply_limits(
        &self,
        tenant: &str,
        info: &UserInfo,
        limits: TenantLimits,
    ) -> Result<(), RgwError> {
        let want = Quota::from_limits(limits.max_bytes, None);
        if !info.user_quota.same_effect(&want) {
            let scope = args!["--quota-scope=user", user_args(tenant)];
            self.set_quota(scope, want).await?;
        }
        let max_buckets = rgw_max_buckets(limits.max_buckets);
        if info.max_buckets != max_buckets {
            self.run_ok(args![
                "user",
                "modify",
                user_args(tenant),
                format!("--max-buckets={max_buckets}"),
            ])
            .await?;
        }
        Ok(())
    }

    async fn bucket_stats(
        &self,
        tenant: &str,
        bucket: &str,
    ) -> Result<Option<BucketStats>, RgwError> {
        let ran = self
            .run(args!["bucket", "stats", bucket_arg(tenant, bucket)])
            .await?;
        match ran.ok() {
            true => ran.json().map(Some),
            false if bucket_missing(ran.code, &ran.stderr) => Ok(None),
            false => Err(ran.backend()),
        }
    }

    /// The bucket's stats, after creating it if missing. (Not CreateBucket
    /// regardless: RGW checks `max_buckets` before it looks whether the
    /// bucket exists, so a tenant at its limit could not re-apply settings.)
    async fn existing_bucket(&self, tenant: &str, bucket: &str) -> Result<BucketStats, RgwError> {
        if let Some(stats) = self.bucket_stats(tenant, bucket).await? {
            return Ok(stats);
        }
        self.create_bucket(tenant, bucket).await?;
        self.bucket_stats(tenant, bucket)
            .await?
            .ok_or_else(|| RgwError::NoSuchBucket(bucket.to_string()))
    }

    /// S3 CreateBucket; one the tenant already has is fine.
    async fn create_bucket(&self, tenant: &str, bucket: &str) -> Result<(), RgwError> {
        let resp = self
            .s3_platform(tenant, &S3Request::new(Method::PUT, format!("/{bucket}")))
            .await?;
        match resp.is_success() || resp.error_code().as_deref() == Some("BucketAlreadyOwnedByYou") {
            true => Ok(()),
            false => Err(resp.into_error("CreateBucket")),
        }
    }

    async fn apply_bucket_quota(
        &self,
        tenant: &str,
        bucket: &str,
        stats: &BucketStats,
        settings: &BucketSettings,
    ) -> Result<(), RgwError> {
        let want = Quota::from_limits(settings.max_bytes, settings.max_objects);
        if stats.bucket_quota.same_effect(&want) {
            return Ok(());
        }
        check_quota_fits(bucket, stats.usage(), &want)?;
        let scope = args!["--quota-scope=bucket", bucket_arg(tenant, bucket)];
        self.set_quota(scope, want).await
    }

    /// PutBucketPolicy (public) or DeleteBucketPolicy (private).
    async fn apply_visibility(
        &self,
        tenant: &str,
        bucket: &str,
        public_read: bool,
    ) -> Result<(), RgwError> {
        let path = format!("/{bucket}");
        let (op, req) = match public_read {
            true => (
                "PutBucketPolicy",
                S3Request::new(Method::PUT, path).body(public_read_policy(tenant, bucket)),
            ),
            false => ("DeleteBucketPolicy", S3Request::new(Method::DELETE, path)),
        };
        let resp = self.s3_platform(tenant, &req.query("policy", "")).await?;
        let absent = resp.error_code().as_deref() == Some("NoSuchBucketPolicy");
        match resp.is_success() || (!public_read && absent) {
            true => Ok(()),
            false if resp.error_code().as_deref() == Some("NoSuchBucket") => {
                Err(RgwError::NoSuchBucket(bucket.to_string()))
            }
            false => Err(resp.into_error(op)),
        }
    }

    /// `bucket rm --purge-objects`, then a check that it is gone (16.2 exits
    /// 0 on some failures).
    async fn purge_bucket(&self, tenant: &str, bucket: &str) -> Result<(), RgwError> {
        let ran = self
            .run(args![
                "bucket",
                "rm",
                bucket_arg(tenant, bucket),
                "--purge-objects"
            ])
            .await?;
        if !ran.ok() && !bucket_missing(ran.code, &ran.stderr) {
            return Err(ran.backend());
        }
        match self.bucket_stats(tenant, bucket).await? {
            None => Ok(()),
            Some(_) => Err(StorageError::Backend {
                command: ran.command,
                stderr: format!("the bucket is still there afterwards: {}", ran.stderr),
            }
            .into()),
        }
    }

    /// S3 DeleteBucket: refused (409 BucketNotEmpty) while objects remain.
    async fn delete_empty_bucket(&self, tenant: &str, bucket: &str) -> Result<(), RgwError> {
        let req = S3Request::new(Method::DELETE, format!("/{bucket}"));
        let resp = match self.s3_platform(tenant, &req).await {
            Err(RgwError::Storage(e)) if e.is_not_found() => return Ok(()), // no tenant
            other => other?,
        };
        match resp.error_code().as_deref() {
            _ if resp.is_success() => Ok(()),
            Some("NoSuchBucket") => Ok(()),
            Some("BucketNotEmpty") => Err(RgwError::NotEmpty(bucket.to_string())),
            _ => Err(resp.into_error("DeleteBucket")),
        }
    }
}

#[async_trait]
impl ObjectGateway for RgwAdmin {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn ensure_tenant(&self, tenant: &str, limits: TenantLimits) -> Result<(), RgwError> {
        validate_tenant(tenant)?;
        let info = match self.user_info(tenant).await? {
            Some(info) => info,
            None => self.create_user(tenant).await?,
        };
        self.ensure_platform_key(tenant, &info).await?;
        self.apply_limits(tenant, &info, limits).await
    }

    async fn remove_tenant(&self, tenant: &str) -> Result<(), RgwError> {
        validate_tenant(tenant)?;
        self.cache_key(tenant, None);
        let ran = self
            .run(args!["user", "rm", user_args(tenant), "--purge-data"])
            .await?;
        if !ran.ok() && !user_missing(ran.code, &ran.stderr) {
            return Err(ran.backend());
        }
        match self.user_info(tenant).await? {
            None => Ok(()),
            Some(_) => Err(ran.backend()),
        }
    }

    async fn put_key(
        &self,
        tenant: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Result<(), RgwError> {
        validate_tenant(tenant)?;
        validate_access_key(access_key)?;
        validate_secret_key(secret_key)?;
        let ran = self
            .add_key(tenant, &S3Credentials::new(access_key, secret_key))
            .await?;
        match ran.ok() {
            true => Ok(()),
            false if user_missing(ran.code, &ran.stderr) => {
                Err(StorageError::not_found("tenant", tenant).into())
            }
            false if ran.stderr.contains("existing S3 key") => {
                Err(StorageError::exists("access key", access_key).into())
            }
            false => Err(ran.backend()),
        }
    }

    async fn remove_key(&self, tenant: &str, access_key: &str) -> Result<(), RgwError> {
        validate_tenant(tenant)?;
        validate_access_key(access_key)?;
        let ran = self
            .run(args![
                "key",
                "rm",
                user_args(tenant),
                "--key-type=s3",
                format!("--access-key={access_key}"),
            ])
            .await?;
        if ran.ok() {
            return Ok(());
        }
        match self.user_info(tenant).await? {
            Some(info) if info.has_key(access_key) => Err(ran.backend()),
            _ => Ok(()), // no such user or key: gone already
        }
    }

    async fn ensure_bucket(
        &self,
        tenant: &str,
        bucket: &str,
        settings: &BucketSettings,
    ) -> Result<(), RgwError> {
        validate_tenant(tenant)?;
        validate_bucket(bucket)?;
        let stats = self.existing_bucket(tenant, bucket).await?;
        self.apply_bucket_quota(tenant, bucket, &stats, settings)
            .await?;
        self.apply_visibility(tenant, bucket, settings.public_read)
            .await
    }

    async fn bucket_usage(
        &self,
        tenant: &str,
        bucket: &str,
    ) -> Result<Option<BucketUsage>, RgwError> {
        validate_tenant(tenant)?;
        validate_bucket(bucket)?;
        Ok(self.bucket_stats(tenant, bucket).await?.map(|s| s.usage()))
    }

    async fn list_buckets(&self, tenant: &str) -> Result<Vec<String>, RgwError> {
        validate_tenant(tenant)?;
        let ran = self.run(args!["bucket", "list", user_args(tenant)]).await?;
        if ran.ok() {
            let mut names: Vec<String> = ran.json()?;
            names.sort();
            return Ok(names);
        }
        match self.user_info(tenant).await? {
            None => Ok(Vec::new()),
            Some(_) => Err(ran.backend()),
        }
    }

    async fn delete_bucket(&self, tenant: &str, bucket: &str, purge: bool) -> Result<(), RgwError> {
        validate_tenant(tenant)?;
        validate_bucket(bucket)?;
        match purge {
            true => self.purge_bucket(tenant, bucket).await,
            false => self.delete_empty_bucket(tenant, bucket).await,
        }
    }

    async fn traffic(&self, tenant: &str) -> Result<TenantTraffic, RgwError> {
        validate_tenant(tenant)?;
        let user = format!("{tenant}${PROJECT_UID}");
        let ran = self
            .run_ok(args![
                "usage",
                "show",
                format!("--uid={user}"),
                "--show-log-entries=false",
            ])
            .await?;
        Ok(ran.json::<UsageShow>()?.traffic_of(&user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_things_are_recognised() {
        assert!(user_missing(
            Some(22),
            "could not fetch user info: no user info saved"
        ));
        assert!(user_missing(
            Some(2),
            "could not remove user: unable to remove user, user does not exist"
        ));
        assert!(user_missing(
            Some(22),
            "could not remove key: unable to parse request, user info was not populated"
        ));
        assert!(user_missing(
            Some(254),
            "ERROR: could not find user: prj_none$project"
        ));
        assert!(!user_missing(Some(1), "(110) Connection timed out"));
        assert!(bucket_missing(
            Some(210),
            "failure: (2002) Unknown error 2002: "
        ));
        assert!(bucket_missing(Some(2), ""));
        assert!(!bucket_missing(Some(1), "(5) Input/output error"));
    }

    #[test]
    fn max_buckets_mapping() {
        assert_eq!(rgw_max_buckets(None), 0);
        assert_eq!(rgw_max_buckets(Some(0)), -1);
        assert_eq!(rgw_max_buckets(Some(7)), 7);
        assert_eq!(rgw_max_buckets(Some(u64::MAX)), i64::from(i32::MAX));
    }

    #[test]
    fn quota_below_usage_is_refused() {
        let usage = BucketUsage {
            bytes: 3 << 20,
            objects: 5,
        };
        let fits = |b, o| check_quota_fits("photos", usage, &Quota::from_limits(b, o));
        assert!(fits(None, None).is_ok());
        assert!(fits(Some(3 << 20), Some(5)).is_ok());
        let e = fits(None, Some(4)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the quota of bucket `photos` cannot be below what it holds (5 objects)"
        );
        let e = fits(Some(1 << 20), None).unwrap_err();
        assert!(
            matches!(e, RgwError::QuotaBelowUsage { ref held, .. } if held.contains("3")),
            "{e}"
        );
    }

    #[test]
    fn policy_names_the_tenanted_bucket() {
        let p: serde_json::Value =
            serde_json::from_str(&public_read_policy("prj_a", "photos")).unwrap();
        assert_eq!(
            p["Statement"][0]["Resource"][0],
            "arn:aws:s3::prj_a:photos/*"
        );
        assert_eq!(p["Statement"][0]["Principal"], "*");
        assert_eq!(p["Statement"][1]["Action"][0], "s3:ListBucket");
        assert_eq!(p["Statement"][1]["Resource"][0], "arn:aws:s3::prj_a:photos");
    }

    #[test]
    fn platform_keys_look_right() {
        let a = new_platform_key();
        let b = new_platform_key();
        assert!(a.access_key.starts_with(PLATFORM_KEY_PREFIX) && a.access_key.len() == 20);
        assert!(a
            .access_key
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(a.secret_key.len(), 40);
        assert_ne!(a, b);
        assert!(
            validate_access_key(&a.access_key).is_err(),
            "users cannot take it"
        );
    }

    #[test]
    fn arguments() {
        let v = args![
            "quota",
            "set",
            user_args("prj_a"),
            format!("--max-size={}", -1)
        ];
        assert_eq!(
            v,
            [
                "quota",
                "set",
                "--tenant=prj_a",
                "--uid=project",
                "--max-size=-1"
            ]
        );
        assert_eq!(bucket_arg("prj_a", "photos"), "--bucket=prj_a/photos");
        assert_eq!(redact("--secret-key=s3cr3t"), "--secret-key=<redacted>");
        assert_eq!(redact("--access-key=AK"), "--access-key=AK");
    }

    #[tokio::test]
    async fn errors_never_show_secrets() {
        let gw = RgwAdmin::new(
            CephCluster::admin("/nonexistent/ceph.conf"),
            "http://127.0.0.1:1",
        );
        let key = S3Credentials::new("AKIAX", "s3cr3t-value");
        let e = match gw.add_key("prj_a", &key).await {
            Ok(ran) => ran.backend(),
            Err(e) => e,
        };
        let text = e.to_string();
        assert!(text.contains("--secret-key=<redacted>"), "{text}");
        assert!(!text.contains("s3cr3t-value"), "{text}");
    }
}
