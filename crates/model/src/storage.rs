//! Block storage resources: volumes (thin disks in a storage pool, bound to a
//! host, attached to at most one instance) and their snapshots. Design:
//! docs/storage.md.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{kind_consts, validate_optional_name};
use crate::{validate_name, ApiError, ErrorCode, Kind, Resource, Usage};

pub use yunhan_types::sizes::MAX_VOLUME_BYTES;

/// The pool every cloud has: sparse RAW files on the volume's host.
pub const DEFAULT_POOL: &str = "local";

fn default_pool() -> String {
    DEFAULT_POOL.into()
}

/// What a new volume's content comes from (absent: zeroes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VolumeSource {
    /// A snapshot (name or id) of a volume in the same pool; stored as its id.
    Snapshot(String),
    /// An Active disk image (name or id); stored as its id.
    Image(String),
}

/// A request to roll the volume back to a snapshot: carried out once per
/// `generation` (bump it to restore again). The volume must be detached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeRestore {
    /// A snapshot (name or id) of this volume; stored as its id.
    pub snapshot: String,
    pub generation: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// Size in bytes (whole 512-byte sectors, at most 64 TiB). Raise it to
    /// extend the volume online; it never shrinks.
    #[schemars(range(min = 512, max = 70368744177664u64))]
    pub size_bytes: u64,
    /// The storage pool (`local`, or a Ceph pool the cloud was started with).
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Create from a snapshot or an image instead of zeroes (cannot change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<VolumeSource>,
    #[serde(default)]
    pub bootable: bool,
    /// The instance (name or id) the volume is attached to; clear it to detach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Roll back to a snapshot (the volume must be detached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<VolumeRestore>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumePhase {
    /// Waiting for a host (no Ready host yet).
    #[default]
    Pending,
    Creating,
    Available,
    Attaching,
    InUse,
    Detaching,
    Extending,
    Restoring,
    Deleting,
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeStatus {
    pub phase: VolumePhase,
    /// Why the volume is in its phase (e.g. the backend's error).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The host whose agent manages the volume (written once by the volume
    /// binder; a local volume lives there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The instance the volume is plugged into right now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<String>,
    /// `status.started_at` of that instance when it was plugged: a restarted
    /// QEMU has lost the device, and the agent plugs it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_since: Option<String>,
    /// The disk's serial number in the guest (`/sys/block/vdX/serial`,
    /// `/dev/disk/by-id/virtio-<serial>`), while attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Size of the volume in the backend.
    pub size_bytes: u64,
    /// What the guest sees (thin provisioning: see `physical_bytes`).
    pub logical_bytes: u64,
    /// What the volume really occupies in the pool.
    pub physical_bytes: u64,
    /// The last `spec.restore.generation` carried out.
    pub restore_generation: u64,
}

pub struct Volume;
impl Kind for Volume {
    kind_consts!("Volume", "volumes", "vol", Project, admin_write: false);
    type Spec = VolumeSpec;
    type Status = VolumeStatus;
    fn validate(spec: &VolumeSpec) -> Result<(), ApiError> {
        yunhan_types::sizes::validate_size(spec.size_bytes)
            .map_err(|e| ApiError::invalid_field("spec.size_bytes", storage_why(e)))?;
        validate_name("spec.pool", &spec.pool)?;
        match &spec.source {
            Some(VolumeSource::Snapshot(s)) => validate_name("spec.source.snapshot", s)?,
            Some(VolumeSource::Image(i)) => validate_name("spec.source.image", i)?,
            None => {}
        }
        validate_optional_name("spec.instance", spec.instance.as_deref())?;
        if let Some(r) = &spec.restore {
            validate_name("spec.restore.snapshot", &r.snapshot)?;
        }
        Ok(())
    }
    /// Charged in whole GiB, rounded up.
    fn usage(spec: &VolumeSpec, _status: &VolumeStatus) -> Usage {
        Usage {
            volume_gib: spec.size_bytes.div_ceil(yunhan_types::sizes::GIB),
            ..Usage::default()
        }
    }
}

/// The human part of a refused size (what is wrong and what would be accepted).
pub fn storage_why(e: yunhan_types::SizeError) -> String {
    e.why
}

/// A storage pool as a host's agent last measured it (in `Host.status.pools`):
/// thin-provisioning figures and, for Ceph, the cluster's health and the
/// pool's redundancy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolReport {
    pub name: String,
    /// `local` or `ceph`.
    pub driver: String,
    /// Sum of the logical sizes of the pool's volumes and images.
    #[serde(default)]
    pub logical_allocated_bytes: u64,
    /// Physical bytes in use (local: the host file system; ceph: stored, before replication).
    #[serde(default)]
    pub physical_used_bytes: u64,
    #[serde(default)]
    pub capacity_bytes: u64,
    /// `logical_allocated / capacity` (above 1 is normal with thin provisioning).
    #[serde(default)]
    pub overcommit_ratio: f64,
    /// `physical_used / capacity`.
    #[serde(default)]
    pub used_ratio: f64,
    /// Physical usage at or above 80 % of capacity.
    #[serde(default)]
    pub warning: bool,
    /// e.g. `replicated size 3 min_size 2, failure domain host`; `host file system` for local.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub redundancy: String,
    /// Ceph: `HEALTH_OK` etc. followed by the check messages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health: String,
    /// Why the figures could not be measured.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

// ---------------------------------------------------------------- snapshots

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSpec {
    /// The volume (name or id); stored as its id. Cannot change.
    pub volume: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SnapshotPhase {
    #[default]
    Creating,
    Available,
    Deleting,
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotStatus {
    pub phase: SnapshotPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The volume's size when the snapshot was taken.
    pub size_bytes: u64,
}

/// Whether a snapshot of `vol` (asked for as `asked`) can be taken now: 409
/// `conflict` while it is being deleted or is not Available or InUse. The API and the
/// snapshot-policy controller both ask this before they write a snapshot.
pub fn check_snapshottable(
    asked: &str,
    vol: &Resource<VolumeSpec, VolumeStatus>,
) -> Result<(), ApiError> {
    let refuse = |why: String| Err(ApiError::new(ErrorCode::Conflict, why));
    if vol.metadata.deleting.is_some() {
        return refuse(format!("volume {asked:?} is being deleted"));
    }
    if !matches!(
        vol.status.phase,
        VolumePhase::Available | VolumePhase::InUse
    ) {
        return refuse(format!(
            "volume {asked:?} is {:?}; snapshots are taken of Available or InUse volumes",
            vol.status.phase
        ));
    }
    Ok(())
}

/// Whether `vol` is being restored from the snapshot `snap` (a restore asked for and
/// not carried out yet): that snapshot must not be deleted meanwhile.
pub fn restoring_from(vol: &Resource<VolumeSpec, VolumeStatus>, snap: &str) -> bool {
    (vol.spec.restore.as_ref())
        .is_some_and(|r| r.snapshot == snap && r.generation > vol.status.restore_generation)
}

pub struct Snapshot;
impl Kind for Snapshot {
    kind_consts!("Snapshot", "snapshots", "snap", Project, admin_write: false);
    type Spec = SnapshotSpec;
    type Status = SnapshotStatus;
    fn validate(spec: &SnapshotSpec) -> Result<(), ApiError> {
        validate_name("spec.volume", &spec.volume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size_bytes: u64) -> VolumeSpec {
        VolumeSpec {
            size_bytes,
            pool: DEFAULT_POOL.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sizes_are_checked_and_charged_in_whole_gib() {
        for bad in [0, 1, 513, MAX_VOLUME_BYTES + 512] {
            let e = Volume::validate(&spec(bad)).unwrap_err();
            assert_eq!(e.details["field"], "spec.size_bytes", "{bad}");
        }
        Volume::validate(&spec(512 << 20)).unwrap();
        let gib = |b| Volume::usage(&spec(b), &VolumeStatus::default()).volume_gib;
        assert_eq!(gib(512 << 20), 1);
        assert_eq!(gib(1 << 30), 1);
        assert_eq!(gib((1 << 30) + 512), 2);
    }

    #[test]
    fn spec_json_shape() {
        let s: VolumeSpec = serde_json::from_value(serde_json::json!({
            "size_bytes": 1073741824u64,
            "source": {"snapshot": "s1"},
            "restore": {"snapshot": "s1", "generation": 2}
        }))
        .unwrap();
        assert_eq!(s.pool, "local");
        assert_eq!(s.source, Some(VolumeSource::Snapshot("s1".into())));
        assert!(serde_json::from_value::<VolumeSpec>(
            serde_json::json!({"size_bytes": 512, "colour": "red"})
        )
        .is_err());
    }
}
