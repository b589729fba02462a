//! Object storage (docs/object-storage.md): S3 buckets and S3 keys on Ceph's own
//! gateway (RGW). A project is an RGW tenant; its buckets are platform resources with
//! a quota of bytes and objects and a visibility; a user's S3 keys are keys of the
//! tenant. The object-storage controller realises both; the API keeps keys' secrets
//! out of every document.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::kind_consts;
use crate::{ApiError, Kind, Usage};

/// The S3 endpoint's address inside every VPC: each host's agent answers on it, port 80,
/// in the VPC's router namespace and passes the connection to the gateway, so a guest
/// with no elastic IP or NAT gateway reaches object storage too.
pub const S3_VPC_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(100, 100, 100, 100);

/// The S3 endpoint guests in VPCs use (path-style).
pub const S3_VPC_ENDPOINT: &str = "http://100.100.100.100";

/// The largest per-bucket byte quota (1 PiB) and object quota.
pub const MAX_BUCKET_BYTES: u64 = 1 << 50;
pub const MAX_BUCKET_OBJECTS: u64 = 1 << 40;

/// Who may read a bucket's objects without a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    /// Only the project's S3 keys (and presigned URLs they sign).
    #[default]
    Private,
    /// Anyone may GET objects and list the bucket, anonymously.
    PublicRead,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// The most bytes the bucket may hold (none: only the project's `object_bytes`
    /// quota limits it). An upload beyond it is refused with 403 `QuotaExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// The most objects the bucket may hold (none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_objects: Option<u64>,
    #[serde(default)]
    pub visibility: Visibility,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BucketPhase {
    /// Written; the gateway has not made it yet.
    #[default]
    Creating,
    /// In the gateway, with the spec's quota and visibility.
    Active,
    /// The gateway refused or could not be reached (`status.message` says why); the
    /// controller tries again.
    Failed,
    /// Being deleted (with its objects when asked `force`).
    Deleting,
}

/// What a bucket holds, as the gateway counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketUsage {
    /// Bytes of the objects (their logical size).
    pub bytes: u64,
    pub objects: u64,
    /// When the gateway was asked (RFC 3339 UTC).
    pub measured_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BucketStatus {
    pub phase: BucketPhase,
    /// Why the bucket is Failed, or why a deletion was not done.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The S3 endpoint (path-style: `<endpoint>/<bucket>/<key>` with the project's keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket's anonymous URL (`<endpoint>/<tenant>:<bucket>`), for public-read
    /// buckets and presigned requests made outside the project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Refreshed every few seconds while the bucket is Active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<BucketUsage>,
    /// Set by `DELETE …?force=true`: the bucket goes with its objects.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_delete: bool,
}

pub struct Bucket;
impl Kind for Bucket {
    kind_consts!("Bucket", "buckets", "bkt", Project, admin_write: false);
    type Spec = BucketSpec;
    type Status = BucketStatus;
    fn validate(spec: &BucketSpec) -> Result<(), ApiError> {
        check_quota("spec.quota_bytes", spec.quota_bytes, MAX_BUCKET_BYTES)?;
        check_quota("spec.quota_objects", spec.quota_objects, MAX_BUCKET_OBJECTS)
    }
    fn usage(_spec: &BucketSpec, _status: &BucketStatus) -> Usage {
        Usage {
            buckets: 1,
            ..Usage::default()
        }
    }
}

fn check_quota(field: &str, value: Option<u64>, max: u64) -> Result<(), ApiError> {
    match value {
        Some(v) if v == 0 || v > max => Err(ApiError::invalid_field(
            field,
            format!("{field} is 1 to {max} (leave it out for no limit), not {v}"),
        )),
        _ => Ok(()),
    }
}

/// A project's S3 traffic through the gateway, from its usage log: totals since the
/// tenant's first request (counters, for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Traffic {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Why `name` cannot name a bucket (S3's rules for DNS-compatible names), if it cannot:
/// 3–63 characters of lowercase letters, digits, `-` and `.`, starting and ending with
/// a letter or digit, no `..`, `.-` or `-.`, and not shaped like an IPv4 address.
pub fn bucket_name_error(name: &str) -> Option<String> {
    let why = if !(3..=63).contains(&name.len()) {
        "is 3 to 63 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        "has only lowercase letters, digits, '-' and '.'"
    } else if !alnum_at_ends(name) {
        "starts and ends with a lowercase letter or a digit"
    } else if ["..", ".-", "-."].iter().any(|p| name.contains(p)) {
        "has no '..', '.-' or '-.'"
    } else if name.parse::<std::net::Ipv4Addr>().is_ok() {
        "is not an IP address"
    } else {
        return None;
    };
    Some(format!(
        "bucket name {name:?} is not valid in S3: a bucket name {why}"
    ))
}

fn alnum_at_ends(name: &str) -> bool {
    let ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok(name.as_bytes().first()) && ok(name.as_bytes().last())
}

/// The RGW tenant of a project: its id with `_` for `-` (tenants are `[A-Za-z0-9_]`).
pub fn tenant_of(project: &str) -> String {
    project.replace('-', "_")
}

/// The anonymous URL of `bucket` of `project` at `endpoint`: other tenants and anonymous
/// clients name a tenant's bucket `<tenant>:<bucket>`.
pub fn bucket_public_url(endpoint: &str, project: &str, bucket: &str) -> String {
    format!("{endpoint}/{}:{bucket}", tenant_of(project))
}

/// The label a bucket the platform found in the gateway (made straight through S3)
/// carries, with the value `s3`.
pub const ORIGIN_LABEL: &str = "origin";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum S3KeyPhase {
    /// Written; the gateway does not know it yet.
    #[default]
    Creating,
    /// Requests signed with it are accepted.
    Active,
    /// The gateway could not take it (`status.message`); the controller tries again.
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3KeySpec {
    /// Admins: the user (id or name) the key is for; members' keys are their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A note for people (what the key is used for).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3KeyStatus {
    /// The key's owner (a user id).
    pub user: String,
    /// The S3 access key id; the secret is shown once, when the key is created.
    pub access_key: String,
    #[serde(default)]
    pub phase: S3KeyPhase,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The S3 endpoint to use the key with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// The most S3 keys one user holds.
pub const MAX_S3_KEYS_PER_USER: usize = 10;

/// The longest description of an S3 key.
pub const MAX_S3_KEY_DESCRIPTION: usize = 256;

pub struct S3Key;
impl Kind for S3Key {
    kind_consts!("S3Key", "s3-keys", "s3k", Project, admin_write: false);
    type Spec = S3KeySpec;
    type Status = S3KeyStatus;
    fn validate(spec: &S3KeySpec) -> Result<(), ApiError> {
        if spec.description.chars().count() > MAX_S3_KEY_DESCRIPTION {
            return Err(ApiError::invalid_field(
                "spec.description",
                format!("a description is at most {MAX_S3_KEY_DESCRIPTION} characters"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["photos", "a.b-c", "abc", "my-bucket-2026", &"a".repeat(63)] {
            assert_eq!(bucket_name_error(ok), None, "{ok}");
        }
        let refused = [
            ("ab", "3 to 63"),
            ("Photos", "lowercase"),
            ("under_score", "lowercase"),
            ("-photos", "starts and ends"),
            ("photos.", "starts and ends"),
            ("a..b", "'..'"),
            ("a.-b", "'..'"),
            ("192.168.5.4", "IP address"),
        ];
        for (name, why) in refused {
            let e = bucket_name_error(name).unwrap_or_default();
            assert!(e.contains(why), "{name}: {e}");
        }
    }

    #[test]
    fn quotas_are_positive_and_bounded() {
        let spec = |b, o| BucketSpec {
            quota_bytes: b,
            quota_objects: o,
            ..Default::default()
        };
        assert!(Bucket::validate(&spec(Some(100 << 20), Some(3))).is_ok());
        assert!(Bucket::validate(&spec(None, None)).is_ok());
        assert!(Bucket::validate(&spec(Some(0), None)).is_err());
        assert!(Bucket::validate(&spec(None, Some(MAX_BUCKET_OBJECTS + 1))).is_err());
    }

    #[test]
    fn tenants_are_rgw_safe() {
        assert_eq!(tenant_of("prj-0123abcd"), "prj_0123abcd");
    }

    proptest! {
        #[test]
        fn accepted_names_are_s3_safe(name in "[a-z0-9.-]{1,70}") {
            if bucket_name_error(&name).is_none() {
                prop_assert!((3..=63).contains(&name.len()));
                prop_assert!(!name.contains(".."));
                prop_assert!(!name.starts_with(['.', '-']) && !name.ends_with(['.', '-']));
            }
        }
    }
}
