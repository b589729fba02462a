//! Flavors: the sizes instances come in (vCPUs, memory, disk, GPUs).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::kind_consts;
use crate::{ApiError, Kind};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavorSpec {
    #[schemars(range(min = 1, max = 256))]
    pub vcpus: u32,
    #[schemars(range(min = 64, max = 4194304))]
    pub memory_mib: u64,
    #[schemars(range(min = 1, max = 65536))]
    pub disk_gib: u64,
    #[serde(default)]
    #[schemars(range(max = 4))]
    pub gpus: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavorStatus {}

/// The GPU shapes the reference platform allows: (GPUs, vCPUs, memory GiB).
pub const GPU_SHAPES: [(u32, u32, u64); 12] = [
    (1, 4, 8),
    (1, 4, 16),
    (1, 8, 16),
    (1, 8, 32),
    (2, 8, 16),
    (2, 8, 32),
    (2, 16, 32),
    (2, 16, 64),
    (4, 16, 32),
    (4, 16, 64),
    (4, 32, 64),
    (4, 32, 128),
];

pub struct Flavor;
impl Kind for Flavor {
    kind_consts!("Flavor", "flavors", "flv", Global, admin_write: true);
    type Spec = FlavorSpec;
    type Status = FlavorStatus;
    fn validate(spec: &FlavorSpec) -> Result<(), ApiError> {
        if !(1..=256).contains(&spec.vcpus) {
            return Err(ApiError::invalid_field("spec.vcpus", "vcpus must be 1–256"));
        }
        if !(64..=4 * 1024 * 1024).contains(&spec.memory_mib) {
            return Err(ApiError::invalid_field(
                "spec.memory_mib",
                "memory_mib must be 64–4194304 (4 TiB)",
            ));
        }
        if !(1..=65536).contains(&spec.disk_gib) {
            return Err(ApiError::invalid_field(
                "spec.disk_gib",
                "disk_gib must be 1–65536",
            ));
        }
        if spec.gpus > 0 && !GPU_SHAPES.contains(&(spec.gpus, spec.vcpus, spec.memory_mib / 1024)) {
            let allowed: Vec<String> = GPU_SHAPES
                .iter()
                .filter(|(g, _, _)| *g == spec.gpus)
                .map(|(g, c, m)| format!("{g} GPU / {c} vCPU / {m} GiB"))
                .collect();
            let msg = if allowed.is_empty() {
                "GPU flavors have 1, 2 or 4 GPUs".to_string()
            } else {
                format!(
                    "a {}-GPU flavor must be one of: {}",
                    spec.gpus,
                    allowed.join(", ")
                )
            };
            return Err(ApiError::invalid_field("spec.gpus", msg));
        }
        if spec.gpus > 0 && !spec.memory_mib.is_multiple_of(1024) {
            return Err(ApiError::invalid_field(
                "spec.memory_mib",
                "GPU flavors have whole GiB of memory",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(gpus: u32, vcpus: u32, gib: u64) -> FlavorSpec {
        FlavorSpec {
            vcpus,
            memory_mib: gib * 1024,
            disk_gib: 20,
            gpus,
        }
    }

    #[test]
    fn gpu_flavors_accept_only_reference_shapes() {
        for (g, c, m) in GPU_SHAPES {
            Flavor::validate(&flavor(g, c, m)).unwrap();
        }
        for (g, c, m) in [
            (1, 2, 8),
            (1, 4, 32),
            (2, 4, 16),
            (3, 16, 32),
            (4, 16, 16),
            (8, 64, 256),
        ] {
            let err = Flavor::validate(&flavor(g, c, m)).unwrap_err();
            assert_eq!(err.details["field"], "spec.gpus", "{g}/{c}/{m}");
        }
        Flavor::validate(&flavor(0, 3, 5)).unwrap();
    }
}
