//! What `radosgw-admin` prints (JSON), read into the few fields the driver
//! uses. Unknown fields are ignored; missing ones take RGW's defaults.

use serde::Deserialize;

use super::{BucketUsage, TenantTraffic, PLATFORM_KEY_PREFIX};
use crate::rgw::S3Credentials;

/// A quota as RGW stores it: `-1` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct Quota {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "unlimited")]
    pub max_size: i64,
    #[serde(default = "unlimited")]
    pub max_objects: i64,
}

fn unlimited() -> i64 {
    -1
}

impl Default for Quota {
    fn default() -> Self {
        Quota::from_limits(None, None)
    }
}

impl Quota {
    /// Enabled iff any limit is set; absent limits are `-1`.
    pub fn from_limits(max_bytes: Option<u64>, max_objects: Option<u64>) -> Self {
        let as_i64 = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        Quota {
            enabled: max_bytes.is_some() || max_objects.is_some(),
            max_size: as_i64(max_bytes),
            max_objects: as_i64(max_objects),
        }
    }

    /// The same limits in effect: a disabled quota limits nothing whatever
    /// its values, and so does an enabled one without limits.
    pub fn same_effect(&self, other: &Quota) -> bool {
        let norm = |q: &Quota| match q.enabled && (q.max_size >= 0 || q.max_objects >= 0) {
            true => (q.max_size.max(-1), q.max_objects.max(-1)),
            false => (-1, -1),
        };
        norm(self) == norm(other)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Key {
    access_key: String,
    secret_key: String,
}

/// `radosgw-admin user info` / `user create`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UserInfo {
    #[serde(default)]
    keys: Vec<Key>,
    #[serde(default)]
    pub max_buckets: i64,
    #[serde(default)]
    pub user_quota: Quota,
}

impl UserInfo {
    /// The platform's key (the first `YHP…` key).
    pub fn platform_key(&self) -> Option<S3Credentials> {
        self.keys
            .iter()
            .find(|k| k.access_key.starts_with(PLATFORM_KEY_PREFIX))
            .map(|k| S3Credentials::new(&k.access_key, &k.secret_key))
    }

    pub fn has_key(&self, access_key: &str) -> bool {
        self.keys.iter().any(|k| k.access_key == access_key)
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct Category {
    #[serde(default)]
    size: u64,
    #[serde(default)]
    num_objects: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct StatsUsage {
    #[serde(rename = "rgw.main", default)]
    main: Category,
}

/// `radosgw-admin bucket stats --bucket tenant/bucket`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BucketStats {
    #[serde(default)]
    usage: StatsUsage,
    #[serde(default)]
    pub bucket_quota: Quota,
}

impl BucketStats {
    /// `rgw.main`; an empty bucket has no `rgw.main` at all.
    pub fn usage(&self) -> BucketUsage {
        BucketUsage {
            bytes: self.usage.main.size,
            objects: self.usage.main.num_objects,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct Totals {
    #[serde(default)]
    bytes_sent: u64,
    #[serde(default)]
    bytes_received: u64,
    #[serde(default)]
    ops: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct UserSummary {
    user: String,
    #[serde(default)]
    total: Totals,
}

/// `radosgw-admin usage show --uid <user>`: the `summary` totals of `user`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UsageShow {
    #[serde(default)]
    summary: Vec<UserSummary>,
}

impl UsageShow {
    pub fn traffic_of(&self, user: &str) -> TenantTraffic {
        self.summary
            .iter()
            .filter(|s| s.user == user)
            .fold(TenantTraffic::default(), |t, s| TenantTraffic {
                requests: t.requests + s.total.ops,
                bytes_sent: t.bytes_sent + s.total.bytes_sent,
                bytes_received: t.bytes_received + s.total.bytes_received,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn user_info_keys_and_limits() {
        let u: UserInfo = parse(include_str!("testdata/user_info.json"));
        let k = u.platform_key().unwrap();
        assert_eq!(k.access_key, "YHPEXAMPLE0PLATFORM1");
        assert_eq!(k.secret_key, "platformSecretExample000000000000000000");
        assert!(u.has_key("AKIAUSEREXAMPLE00001") && !u.has_key("AKIA"));
        assert_eq!(u.max_buckets, 5);
        assert_eq!(
            u.user_quota,
            Quota {
                enabled: true,
                max_size: 1 << 30,
                max_objects: -1
            }
        );
        assert!(u
            .user_quota
            .same_effect(&Quota::from_limits(Some(1 << 30), None)));
    }

    #[test]
    fn fresh_user_has_no_platform_key() {
        let u: UserInfo = parse(include_str!("testdata/user_create.json"));
        assert!(u.platform_key().is_none());
        assert_eq!(u.max_buckets, 1000);
        assert!(u.user_quota.same_effect(&Quota::default()));
        assert!(!u.user_quota.same_effect(&Quota::from_limits(Some(0), None)));
    }

    #[test]
    fn bucket_stats_usage_and_quota() {
        let s: BucketStats = parse(include_str!("testdata/bucket_stats.json"));
        assert_eq!(
            s.usage(),
            BucketUsage {
                bytes: 12,
                objects: 2
            }
        );
        assert_eq!(s.bucket_quota, Quota::from_limits(Some(1 << 20), Some(2)));
        let empty: BucketStats = parse(include_str!("testdata/bucket_stats_empty.json"));
        assert_eq!(empty.usage(), BucketUsage::default());
        assert!(empty
            .bucket_quota
            .same_effect(&Quota::from_limits(None, None)));
    }

    #[test]
    fn usage_show_totals() {
        let u: UsageShow = parse(include_str!("testdata/usage_show.json"));
        assert_eq!(
            u.traffic_of("prj_a$project"),
            TenantTraffic {
                requests: 13,
                bytes_sent: 2145,
                bytes_received: 12
            }
        );
        assert_eq!(u.traffic_of("prj_b$project"), TenantTraffic::default());
        let none: UsageShow = parse(r#"{"entries": [], "summary": []}"#);
        assert_eq!(none.traffic_of("x$project"), TenantTraffic::default());
    }

    #[test]
    fn quota_effects() {
        let disabled_with_values = Quota {
            enabled: false,
            max_size: 5,
            max_objects: 2,
        };
        assert!(disabled_with_values.same_effect(&Quota::default()));
        let enabled_without_limits = Quota {
            enabled: true,
            max_size: -1,
            max_objects: -1,
        };
        assert!(enabled_without_limits.same_effect(&Quota::default()));
        assert_eq!(Quota::from_limits(Some(u64::MAX), None).max_size, i64::MAX);
        assert!(!Quota::from_limits(None, Some(2)).same_effect(&Quota::from_limits(None, Some(3))));
    }
}
