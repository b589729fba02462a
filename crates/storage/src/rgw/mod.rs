//! `rgw`: S3 object storage on Ceph's own gateway, radosgw.
//!
//! **Tenancy.** Each Yunhan project gets an RGW *tenant* (e.g.
//! `prj_0123abcd0123abcd`) holding exactly one RGW user, `<tenant>$project`
//! ([`PROJECT_UID`]), which owns every bucket of the tenant. Tenants are RGW's
//! own namespaces: two projects may both have a bucket `photos`, and the
//! tenant's own keys address it as `/photos` while anyone else (anonymous
//! readers of a public bucket, other tenants) writes `/<tenant>:photos/key`.
//! The S3 keys users create are keys of that one RGW user; their scope is the
//! whole project.
//!
//! **The platform key.** Some settings only exist on the S3 side (creating a
//! bucket, its bucket policy), so the driver keeps one key of its own on each
//! tenant's user: access key `YHP…` ([`PLATFORM_KEY_PREFIX`]), random secret.
//! It never leaves the driver: it is found again with `radosgw-admin user
//! info` and cached in memory, and user keys may not use that prefix (so a
//! user can neither shadow nor remove it).
//!
//! **Control.** Everything else goes through `radosgw-admin -c conf --id user`
//! (users, keys, quotas, bucket stats and removal, the usage log), and the few
//! S3 calls are signed here with AWS Signature V4 ([`sigv4`], [`s3`]).
//! [`RgwDaemon`] runs one radosgw process for dev clusters and tests.
//!
//! RGW 16.2 quirks the driver works around are noted where they matter
//! (`radosgw-admin bucket rm` and `quota set` exit 0 on some failures; see
//! `admin.rs`).
#![warn(missing_docs)]

mod admin;
mod daemon;
mod json;
mod objects;
pub mod s3;
pub mod sigv4;

use async_trait::async_trait;

pub use admin::RgwAdmin;
pub use daemon::{RgwDaemon, RgwDaemonConfig};
pub use objects::{
    validate_object_key, ByteStream, ListObjects, ObjectData, ObjectEntry, ObjectListing,
    ObjectUpload, MAX_KEY_BYTES, MAX_LIST_KEYS,
};
pub use s3::{Method, S3Client, S3Credentials, S3Request, S3Response, StreamingRequest};

use crate::StorageError;

/// The uid of the one RGW user of every tenant (`<tenant>$project`).
pub const PROJECT_UID: &str = "project";

/// Access keys starting with this belong to the platform (one per tenant).
pub const PLATFORM_KEY_PREFIX: &str = "YHP";

/// Limits of a whole tenant. `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantLimits {
    /// The user quota: logical bytes across all the tenant's buckets.
    pub max_bytes: Option<u64>,
    /// How many buckets the tenant may have. Beyond it CreateBucket is
    /// refused with `TooManyBuckets`; with `Some(0)` (none at all) RGW says
    /// `AccessDenied` instead.
    pub max_buckets: Option<u64>,
}

/// What [`ObjectGateway::ensure_bucket`] applies to a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BucketSettings {
    /// Bucket quota in logical bytes (`None` = unlimited).
    pub max_bytes: Option<u64>,
    /// Bucket quota in objects (`None` = unlimited).
    pub max_objects: Option<u64>,
    /// Anyone may read (GetObject) and list (ListBucket) the bucket.
    pub public_read: bool,
}

/// A bucket's content as RGW accounts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BucketUsage {
    /// Logical bytes (`rgw.main` `size`; the parts of unfinished multipart
    /// uploads count too).
    pub bytes: u64,
    /// Objects (`rgw.main` `num_objects`).
    pub objects: u64,
}

/// Request/byte counters of a tenant from RGW's usage log (for metering):
/// totals since the log began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantTraffic {
    /// Every request, successful or not (anonymous requests count for the
    /// bucket's owner).
    pub requests: u64,
    /// Bytes the gateway sent (response bodies).
    pub bytes_sent: u64,
    /// Bytes the gateway received (request bodies it accepted).
    pub bytes_received: u64,
}

/// What an object gateway operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RgwError {
    /// Deleting (without purge) a bucket that still holds objects.
    #[error("bucket `{0}` is not empty")]
    NotEmpty(String),
    /// The bucket is not there (e.g. removed while being configured).
    #[error("bucket `{0}` does not exist")]
    NoSuchBucket(String),
    /// Lowering a bucket's quota below its current content.
    #[error("the quota of bucket `{bucket}` cannot be below what it holds ({held})")]
    QuotaBelowUsage {
        /// The bucket.
        bucket: String,
        /// What it holds, e.g. `5 objects` or `3.0 MiB`.
        held: String,
    },
    /// The gateway answered an S3 call with an error (`code` is S3's, e.g.
    /// `TooManyBuckets`, `AccessDenied`).
    #[error("the S3 gateway refused `{op}`: {code} {message}")]
    S3 {
        /// The S3 operation, e.g. `CreateBucket`.
        op: String,
        /// The HTTP status.
        status: u16,
        /// S3's `<Code>` (`HTTP <status>` if the body had none).
        code: String,
        /// S3's `<Message>` (RGW often leaves it empty).
        message: String,
    },
    /// No HTTP answer from the gateway.
    #[error("the S3 gateway at {endpoint} cannot be reached: {why}")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// The HTTP client's error, or what the gateway's start-up said.
        why: String,
    },
    /// `radosgw-admin`/`ceph` failures (`Backend { command, stderr }`), bad
    /// input (`Invalid`), a missing tenant (`NotFound`), local I/O.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RgwError {
    /// The S3 error code, if the gateway refused an S3 call.
    pub fn s3_code(&self) -> Option<&str> {
        match self {
            RgwError::S3 { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An S3 object store with per-project tenants (see the module doc).
#[async_trait]
pub trait ObjectGateway: Send + Sync {
    /// The S3 endpoint clients use, e.g. "http://127.0.0.1:7480".
    fn endpoint(&self) -> &str;
    /// Creates the tenant's RGW user (and the platform's key) if missing;
    /// sets its user quota (max size) and max_buckets. Idempotent.
    async fn ensure_tenant(&self, tenant: &str, limits: TenantLimits) -> Result<(), RgwError>;
    /// Removes the tenant's user, its keys and (purging) any bucket left.
    /// Idempotent (gone = Ok).
    async fn remove_tenant(&self, tenant: &str) -> Result<(), RgwError>;
    /// Adds an S3 key (given access key + secret) to the tenant's user.
    /// Idempotent (same pair present = Ok; a new secret for a key of this
    /// tenant replaces the old one). A key of another tenant is
    /// `Storage(AlreadyExists)`, a missing tenant `Storage(NotFound)`, an
    /// access key that [`validate_access_key`] refuses (e.g. the platform's
    /// `YHP` prefix) `Storage(Invalid)`.
    async fn put_key(
        &self,
        tenant: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Result<(), RgwError>;
    /// Removes an S3 key. Idempotent (gone = Ok). After it returns, requests
    /// signed with it get 403. The platform's key cannot be named
    /// (`Storage(Invalid)`).
    async fn remove_key(&self, tenant: &str, access_key: &str) -> Result<(), RgwError>;
    /// Creates the bucket if missing (S3 CreateBucket with the platform key,
    /// path-style), then applies settings: the bucket quota and visibility
    /// (public_read = a bucket policy allowing anonymous s3:GetObject on
    /// `arn:aws:s3::<tenant>:<bucket>/*` and s3:ListBucket on the bucket;
    /// private = no policy). Idempotent. Changing the quota to below what the
    /// bucket holds is `QuotaBelowUsage` (re-applying an unchanged quota never
    /// is).
    async fn ensure_bucket(
        &self,
        tenant: &str,
        bucket: &str,
        settings: &BucketSettings,
    ) -> Result<(), RgwError>;
    /// Bytes (rgw.main "size", the logical bytes) and object count; None if
    /// the bucket does not exist.
    async fn bucket_usage(
        &self,
        tenant: &str,
        bucket: &str,
    ) -> Result<Option<BucketUsage>, RgwError>;
    /// Names of the tenant's buckets (whoever created them, e.g. directly
    /// through S3), sorted; empty for a tenant that does not exist.
    async fn list_buckets(&self, tenant: &str) -> Result<Vec<String>, RgwError>;
    /// Deletes the bucket; with purge its objects (and incomplete multipart
    /// uploads) go too; without, a bucket with objects is Err(NotEmpty)
    /// (unfinished multipart uploads alone are aborted, as S3 does). Gone
    /// already = Ok.
    async fn delete_bucket(&self, tenant: &str, bucket: &str, purge: bool) -> Result<(), RgwError>;
    /// The tenant's traffic from the usage log (`radosgw-admin usage show
    /// --uid <tenant>$project`), summed.
    async fn traffic(&self, tenant: &str) -> Result<TenantTraffic, RgwError>;
}

/// A tenant name: `[A-Za-z0-9_]+`, at most 64 characters.
pub fn validate_tenant(tenant: &str) -> Result<(), StorageError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(StorageError::invalid(format!(
            "tenant `{tenant}`: use 1-64 letters, digits and `_`"
        ))),
    }
}

/// An S3 bucket name as RGW accepts it by default: 3-63 characters of
/// `a-z 0-9 . -`, starting and ending with a letter or digit, no `..`, not an
/// IPv4 address.
pub fn validate_bucket(bucket: &str) -> Result<(), StorageError> {
    let b = bucket.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=63).contains(&b.len())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && edge(b.first())
        && edge(b.last())
        && !bucket.contains("..")
        && bucket.parse::<std::net::Ipv4Addr>().is_err();
    match ok {
        true => Ok(()),
        false => Err(StorageError::invalid(format!(
            "bucket `{bucket}`: use 3-63 lowercase letters, digits, `.` and `-`, \
             starting and ending with a letter or digit"
        ))),
    }
}

/// A user's access key: 1-128 ASCII letters and digits, not starting with
/// [`PLATFORM_KEY_PREFIX`].
pub fn validate_access_key(access_key: &str) -> Result<(), StorageError> {
    if access_key.starts_with(PLATFORM_KEY_PREFIX) {
        return Err(StorageError::invalid(format!(
            "access key `{access_key}`: the prefix `{PLATFORM_KEY_PREFIX}` is reserved for the platform"
        )));
    }
    let ok = (1..=128).contains(&access_key.len())
        && access_key.bytes().all(|b| b.is_ascii_alphanumeric());
    match ok {
        true => Ok(()),
        false => Err(StorageError::invalid(format!(
            "access key `{access_key}`: use 1-128 ASCII letters and digits"
        ))),
    }
}

/// A secret key: 1-128 visible ASCII characters (no spaces).
pub fn validate_secret_key(secret_key: &str) -> Result<(), StorageError> {
    let ok =
        (1..=128).contains(&secret_key.len()) && secret_key.bytes().all(|b| b.is_ascii_graphic());
    match ok {
        true => Ok(()),
        false => Err(StorageError::invalid(
            "secret key: use 1-128 visible ASCII characters (no spaces)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        assert!(validate_tenant("prj_0123abcd0123abcd").is_ok());
        for bad in ["", "a-b", "a$b", "a/b", "a:b", &"x".repeat(65)] {
            assert!(validate_tenant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_names() {
        for good in ["photos", "a.b-c", "123", &"b".repeat(63)] {
            assert!(validate_bucket(good).is_ok(), "{good}");
        }
        let bad = [
            "ab", "Photos", "-ab", "ab-", "a..b", "a_b", "10.0.0.1", "a/b", "a:b",
        ];
        for bad in bad {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
        assert!(validate_bucket(&"b".repeat(64)).is_err());
    }

    #[test]
    fn keys() {
        assert!(validate_access_key("AKIAIOSFODNN7EXAMPLE").is_ok());
        let err = validate_access_key("YHPABC").unwrap_err().to_string();
        assert!(err.contains("reserved for the platform"), "{err}");
        for bad in ["", "a b", "--x", "ak/1"] {
            assert!(validate_access_key(bad).is_err(), "{bad}");
        }
        assert!(validate_secret_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").is_ok());
        for bad in ["", "a b", "tab\t"] {
            assert!(validate_secret_key(bad).is_err(), "{bad:?}");
        }
    }
}
