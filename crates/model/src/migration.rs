//! Live migration of an instance: the request (`InstanceSpec.migration`) and where it
//! stands (`InstanceStatus.migration`). Design note: `docs/migration.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::validate_optional_name;
use crate::ApiError;

/// A live migration request (`InstanceSpec.migration`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    /// Request number: a value above `status.migration.request` asks for a migration.
    pub request: u64,
    /// Target host (name or id; stored as the id); absent: the scheduler's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Stop this request; the VM stays where it runs.
    #[serde(default)]
    pub cancel: bool,
    /// Bandwidth cap in MiB/s (absent: QEMU's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub bandwidth_mib_s: Option<u64>,
    /// Switch to post-copy after the first pass over memory (for guests that dirty
    /// memory faster than it can be copied): the target runs at once and pulls the
    /// remaining pages. Needs userfaultfd for QEMU on the target host.
    #[serde(default)]
    pub postcopy: bool,
    /// Longest pause allowed for the final switch-over, in ms (QEMU's downtime limit).
    #[serde(default = "default_downtime_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub max_downtime_ms: u64,
}

fn default_downtime_ms() -> u64 {
    50
}

impl MigrationSpec {
    pub(crate) fn validate(&self) -> Result<(), ApiError> {
        validate_optional_name("spec.migration.to", self.to.as_deref())?;
        if !(1..=60_000).contains(&self.max_downtime_ms) {
            return Err(ApiError::invalid_field(
                "spec.migration.max_downtime_ms",
                "max_downtime_ms is 1–60000 (ms)",
            ));
        }
        if self
            .bandwidth_mib_s
            .is_some_and(|b| !(1..=100_000).contains(&b))
        {
            return Err(ApiError::invalid_field(
                "spec.migration.bandwidth_mib_s",
                "bandwidth_mib_s is 1–100000 (MiB/s)",
            ));
        }
        Ok(())
    }
}

/// Where a live migration stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MigrationPhase {
    /// Accepted; the target host prepares an identical paused QEMU.
    #[default]
    Preparing,
    /// The target listens; the source starts sending.
    Incoming,
    /// Memory is being copied.
    Running,
    /// The target runs the VM; the binding moves to it.
    Completed,
    Failed,
    Cancelled,
}

impl MigrationPhase {
    /// Still in flight: the VM may exist on both hosts.
    pub fn active(self) -> bool {
        matches!(
            self,
            MigrationPhase::Preparing | MigrationPhase::Incoming | MigrationPhase::Running
        )
    }
}

/// `InstanceStatus.migration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationStatus {
    /// The request this is about (`spec.migration.request`).
    pub request: u64,
    pub phase: MigrationPhase,
    pub source: String,
    pub target: String,
    /// A cold move: the VM was stopped, so only its binding moved (its disks are on
    /// shared storage); it starts on the target when started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cold: bool,
    /// Where the target QEMU listens (`tcp:host:port`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incoming: String,
    #[serde(default)]
    pub transferred_bytes: u64,
    #[serde(default)]
    pub remaining_bytes: u64,
    #[serde(default)]
    pub dirty_pages_rate: u64,
    /// The whole migration, ms (when done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    /// How long the guest was paused for the switch-over, ms (when done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The devices hot-plugged into the VM and the port each sits on, published by the
    /// source while the migration is `Preparing`; the target starts its QEMU with the
    /// same layout once they are there (None: not published yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<PluggedDevice>>,
}

/// A device hot-plugged into a running VM: QEMU device `id` on hot-plug port `port`
/// (`hp<port>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluggedDevice {
    /// The NIC's or volume's id (also the QEMU device id).
    pub id: String,
    pub kind: DeviceKind,
    pub port: u32,
}

/// What a hot-plugged device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Nic,
    Volume,
}
