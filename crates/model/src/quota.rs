use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Per-project limits. Absent fields mean the platform default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub instances: u64,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub volume_gib: u64,
    pub elastic_ips: u64,
    /// Images the project may hold (whatever their phase).
    #[serde(default = "default_images")]
    pub images: u64,
    /// Bytes the project's images may occupy in the image store (after
    /// conversion to RAW; an upload reserves its disk's virtual size while it
    /// converts).
    #[serde(default = "default_image_bytes")]
    pub image_bytes: u64,
    #[serde(default = "default_load_balancers")]
    pub load_balancers: u64,
    /// Listeners over all the project's load balancers.
    #[serde(default = "default_listeners")]
    pub listeners: u64,
    /// S3 buckets (docs/object-storage.md), whoever made them.
    #[serde(default = "default_buckets")]
    pub buckets: u64,
    /// Bytes the project's buckets may hold in all; the S3 gateway enforces it on what
    /// is stored (an upload beyond it is refused with 403 `QuotaExceeded`).
    #[serde(default = "default_object_bytes")]
    pub object_bytes: u64,
}

fn default_buckets() -> u64 {
    100
}

fn default_object_bytes() -> u64 {
    1 << 40
}

fn default_load_balancers() -> u64 {
    10
}

fn default_listeners() -> u64 {
    50
}

fn default_images() -> u64 {
    50
}

fn default_image_bytes() -> u64 {
    200 << 30
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            instances: 20,
            vcpus: 40,
            memory_mib: 80 * 1024,
            volume_gib: 2000,
            elastic_ips: 10,
            images: default_images(),
            image_bytes: default_image_bytes(),
            load_balancers: default_load_balancers(),
            listeners: default_listeners(),
            buckets: default_buckets(),
            object_bytes: default_object_bytes(),
        }
    }
}

/// What a project currently holds, in the same units as [`Quota`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Usage {
    pub instances: u64,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub volume_gib: u64,
    pub elastic_ips: u64,
    pub images: u64,
    pub image_bytes: u64,
    pub load_balancers: u64,
    pub listeners: u64,
    pub buckets: u64,
}

impl Usage {
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }

    pub fn plus(self, o: Usage) -> Usage {
        Usage {
            instances: self.instances + o.instances,
            vcpus: self.vcpus + o.vcpus,
            memory_mib: self.memory_mib + o.memory_mib,
            volume_gib: self.volume_gib + o.volume_gib,
            elastic_ips: self.elastic_ips + o.elastic_ips,
            images: self.images + o.images,
            image_bytes: self.image_bytes + o.image_bytes,
            load_balancers: self.load_balancers + o.load_balancers,
            listeners: self.listeners + o.listeners,
            buckets: self.buckets + o.buckets,
        }
    }

    pub fn minus(self, o: Usage) -> Usage {
        Usage {
            instances: self.instances.saturating_sub(o.instances),
            vcpus: self.vcpus.saturating_sub(o.vcpus),
            memory_mib: self.memory_mib.saturating_sub(o.memory_mib),
            volume_gib: self.volume_gib.saturating_sub(o.volume_gib),
            elastic_ips: self.elastic_ips.saturating_sub(o.elastic_ips),
            images: self.images.saturating_sub(o.images),
            image_bytes: self.image_bytes.saturating_sub(o.image_bytes),
            load_balancers: self.load_balancers.saturating_sub(o.load_balancers),
            listeners: self.listeners.saturating_sub(o.listeners),
            buckets: self.buckets.saturating_sub(o.buckets),
        }
    }

    /// The first resource over `quota`, as (name, used-after, limit).
    pub fn exceeds(&self, quota: &Quota) -> Option<(&'static str, u64, u64)> {
        [
            ("instances", self.instances, quota.instances),
            ("vcpus", self.vcpus, quota.vcpus),
            ("memory_mib", self.memory_mib, quota.memory_mib),
            ("volume_gib", self.volume_gib, quota.volume_gib),
            ("elastic_ips", self.elastic_ips, quota.elastic_ips),
            ("images", self.images, quota.images),
            ("image_bytes", self.image_bytes, quota.image_bytes),
            ("load_balancers", self.load_balancers, quota.load_balancers),
            ("listeners", self.listeners, quota.listeners),
            ("buckets", self.buckets, quota.buckets),
        ]
        .into_iter()
        .find(|(_, used, limit)| used > limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usage() -> impl Strategy<Value = Usage> {
        (
            0u64..1000,
            0u64..1000,
            0u64..1 << 20,
            0u64..1 << 20,
            0u64..100,
            0u64..100,
            0u64..1 << 40,
        )
            .prop_map(
                |(instances, vcpus, memory_mib, volume_gib, elastic_ips, images, image_bytes)| {
                    Usage {
                        instances,
                        vcpus,
                        memory_mib,
                        volume_gib,
                        elastic_ips,
                        images,
                        image_bytes,
                        ..Usage::default()
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn plus_then_minus_is_identity(a in usage(), b in usage()) {
            prop_assert_eq!(a.plus(b).minus(b), a);
        }
    }

    #[test]
    fn reports_first_exceeded_resource() {
        let q = Quota {
            instances: 2,
            vcpus: 4,
            memory_mib: 1024,
            volume_gib: 10,
            elastic_ips: 1,
            images: 1,
            image_bytes: 1 << 20,
            load_balancers: 1,
            listeners: 2,
            buckets: 1,
            object_bytes: 1 << 30,
        };
        let u = Usage {
            instances: 2,
            vcpus: 5,
            ..Default::default()
        };
        assert_eq!(u.exceeds(&q), Some(("vcpus", 5, 4)));
        assert_eq!(Usage::default().exceeds(&q), None);
        let images = Usage {
            images: 1,
            image_bytes: (1 << 20) + 1,
            ..Default::default()
        };
        assert_eq!(
            images.exceeds(&q),
            Some(("image_bytes", (1 << 20) + 1, 1 << 20))
        );
    }

    #[test]
    fn quotas_written_before_images_counted_get_the_image_defaults() {
        let q: Quota = serde_json::from_value(serde_json::json!({
            "instances": 1, "vcpus": 1, "memory_mib": 1, "volume_gib": 1, "elastic_ips": 1
        }))
        .unwrap();
        assert_eq!(
            (q.images, q.image_bytes, q.load_balancers, q.listeners),
            (
                Quota::default().images,
                Quota::default().image_bytes,
                10,
                50
            )
        );
    }
}
