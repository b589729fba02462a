//! Platform resources: hosts (written by agents), flavors, images, instances and
//! placement groups. Volumes and snapshots are in `storage.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{validate_name, ApiError, Kind, Scope, Usage};

// ---------------------------------------------------------------- hosts

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub hostname: String,
    /// Address other hosts and the control plane reach this host's agent at.
    pub address: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// False in maintenance mode: the scheduler places nothing new here.
    #[serde(default = "yes")]
    pub schedulable: bool,
    /// PCI addresses of GPUs this host passes through to instances (VFIO).
    #[serde(default)]
    pub gpus: Vec<String>,
}

fn yes() -> bool {
    true
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HostPhase {
    /// The agent holds its lease.
    Ready,
    /// The agent's lease expired (agent dead, host down or partitioned).
    #[default]
    NotReady,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostStatus {
    #[serde(default)]
    pub phase: HostPhase,
    /// When the phase last changed, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default)]
    pub agent_version: String,
    /// The store lease the agent keeps alive (liveness).
    #[serde(default)]
    pub lease: i64,
    /// The storage pools this host's agent serves, as last measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::PoolReport>,
}

pub struct Host;
impl Kind for Host {
    const KIND: &'static str = "Host";
    const PLURAL: &'static str = "hosts";
    const ID_PREFIX: &'static str = "hst";
    const SCOPE: Scope = Scope::Global;
    const ADMIN_WRITE: bool = true;
    /// Tenants do not see the hypervisors.
    const ADMIN_READ: bool = true;
    type Spec = HostSpec;
    type Status = HostStatus;
    fn validate(spec: &HostSpec) -> Result<(), ApiError> {
        if spec.hostname.is_empty() || spec.hostname.len() > 253 {
            return Err(ApiError::invalid_field(
                "spec.hostname",
                "hostname is 1–253 characters",
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- flavors

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
    const KIND: &'static str = "Flavor";
    const PLURAL: &'static str = "flavors";
    const ID_PREFIX: &'static str = "flv";
    const SCOPE: Scope = Scope::Global;
    const ADMIN_WRITE: bool = true;
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

// ---------------------------------------------------------------- images

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Visible to every project (admins only).
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub os: String,
    /// Kernel command line of a direct-kernel image (kernel + initrd, like
    /// OpenStack's AKI/ARI); absent for disk images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_cmdline: Option<String>,
    /// Smallest root disk (GiB) instances of this image may have (0 = the image's size).
    #[serde(default)]
    #[schemars(range(max = 65536))]
    pub min_disk_gib: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageStatus {
    /// `Pending` (no data yet), `Active` (usable) or `Failed` (see `message`).
    #[serde(default)]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Format the data was uploaded in (`raw`, `qcow2`); stored as RAW.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_format: String,
    /// Virtual size of the disk, bytes.
    #[serde(default)]
    pub size_bytes: u64,
    /// Bytes actually allocated in the image store (thin).
    #[serde(default)]
    pub allocated_bytes: u64,
    /// `sha256:<hex>` of the stored RAW disk (or kernel for direct-kernel images).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checksum: String,
    /// Bytes this image holds in the image store (disk, kernel and initrd as
    /// stored), charged to its project's `image_bytes` quota; while a disk
    /// converts, its virtual size is reserved here instead.
    #[serde(default)]
    pub stored_bytes: u64,
    /// Where the server keeps the RAW disk (on the image store). Shown to
    /// platform admins only; members' responses leave the server paths out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
}

pub struct Image;
impl Kind for Image {
    const KIND: &'static str = "Image";
    const PLURAL: &'static str = "images";
    const ID_PREFIX: &'static str = "img";
    const SCOPE: Scope = Scope::Project;
    const ADMIN_WRITE: bool = false;
    type Spec = ImageSpec;
    type Status = ImageStatus;
    fn validate(spec: &ImageSpec) -> Result<(), ApiError> {
        if spec.os.chars().count() > 64 || spec.os.chars().any(char::is_control) {
            return Err(ApiError::invalid_field(
                "spec.os",
                "os is at most 64 printable characters",
            ));
        }
        Ok(())
    }
    /// One image, and the bytes it holds (or has reserved) in the image store.
    fn usage(_spec: &ImageSpec, status: &ImageStatus) -> Usage {
        Usage {
            images: 1,
            image_bytes: status.stored_bytes,
            ..Usage::default()
        }
    }
}

// ---------------------------------------------------------------- instances

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Flavor name or id.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
    )]
    pub flavor: String,
    /// Image name or id.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
    )]
    pub image: String,
    /// Desired power state: true = running.
    #[serde(default = "yes")]
    pub running: bool,
    /// Placement group of the instance's project (name or id) whose anti-affinity
    /// rule applies; stored as the group's id. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group: Option<String>,
    /// cloud-init user-data (a `#!` script or `#cloud-config`), at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// SSH public keys authorised for root in the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// Bump to request a reboot (the agent reboots once per new value).
    #[serde(default)]
    pub reboot_generation: u64,
    /// The requested reboot is a hard reset rather than a guest (ACPI) reboot.
    #[serde(default)]
    pub reboot_hard: bool,
    /// A live migration request (admins only): bump `request` to migrate, set
    /// `cancel` on the same request to stop it. Progress is in `status.migration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationSpec>,
    /// High availability: when the instance's host is lost, fence it and start the
    /// instance on another host (its disks must all be on shared storage; otherwise it is
    /// marked HostDown with the reason).
    #[serde(default)]
    pub ha: bool,
    /// Boot from this bootable volume (name or id; a Ceph pool) instead of a copy of the
    /// image; e.g. a copy-on-write clone made with `yunhan volume create --image`. Cannot
    /// change; the volume outlives the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_volume: Option<String>,
    /// A primary NIC to create with the instance (deleted with it). Cannot change; attach
    /// more NICs by setting their `spec.instance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<crate::network::PrimaryNic>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InstancePhase {
    #[default]
    Pending,
    Scheduled,
    Starting,
    Running,
    Stopping,
    Stopped,
    Deleting,
    Unschedulable,
    Failed,
    /// Its host was lost and it cannot (or may not) be restarted elsewhere; the reason is
    /// in `message`. It comes back when the host does.
    HostDown,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceStatus {
    #[serde(default)]
    pub phase: InstancePhase,
    /// The host the scheduler bound the instance to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Why the instance is in its phase (e.g. the scheduler's reason).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Resources resolved from the flavor at creation (what the quota charged).
    #[serde(default)]
    pub vcpus: u32,
    #[serde(default)]
    pub memory_mib: u64,
    #[serde(default)]
    pub disk_gib: u64,
    #[serde(default)]
    pub gpus: u32,
    /// PCI addresses of the host GPUs given to this instance (by the scheduler).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_devices: Vec<String>,
    /// Accelerator QEMU runs with (`kvm` or `tcg`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub accel: String,
    /// Path of the serial console log on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<String>,
    /// UNIX socket of the interactive serial console on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_socket: Option<String>,
    /// The latest live migration: where it stands, its progress and its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// How many times the HA monitor moved it off a lost host: the fencing epoch (a
    /// host that comes back never runs a copy bound before the latest failover).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failovers: u64,
    /// The last `spec.reboot_generation` the agent carried out.
    #[serde(default)]
    pub reboot_generation: u64,
    /// When the VM last started, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

pub struct Instance;
impl Kind for Instance {
    const KIND: &'static str = "Instance";
    const PLURAL: &'static str = "instances";
    const ID_PREFIX: &'static str = "ins";
    const SCOPE: Scope = Scope::Project;
    const ADMIN_WRITE: bool = false;
    type Spec = InstanceSpec;
    type Status = InstanceStatus;
    fn validate(spec: &InstanceSpec) -> Result<(), ApiError> {
        validate_name("spec.flavor", &spec.flavor)?;
        validate_name("spec.image", &spec.image)?;
        if let Some(g) = &spec.placement_group {
            validate_name("spec.placement_group", g)?;
        }
        if let Some(v) = &spec.boot_volume {
            validate_name("spec.boot_volume", v)?;
        }
        if let Some(m) = &spec.migration {
            m.validate()?;
        }
        if let Some(n) = &spec.nic {
            n.validate()?;
        }
        if spec.user_data.as_ref().is_some_and(|u| u.len() > 64 * 1024) {
            return Err(ApiError::invalid_field(
                "spec.user_data",
                "user_data is at most 64 KiB",
            ));
        }
        if spec.ssh_keys.len() > 16
            || spec
                .ssh_keys
                .iter()
                .any(|k| k.len() > 8192 || k.chars().any(char::is_control))
        {
            return Err(ApiError::invalid_field(
                "spec.ssh_keys",
                "at most 16 single-line SSH public keys",
            ));
        }
        Ok(())
    }
    fn usage(_spec: &InstanceSpec, status: &InstanceStatus) -> Usage {
        Usage {
            instances: 1,
            vcpus: status.vcpus as u64,
            memory_mib: status.memory_mib,
            ..Usage::default()
        }
    }
}

// ---------------------------------------------------------------- live migration

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
    fn validate(&self) -> Result<(), ApiError> {
        if let Some(to) = &self.to {
            validate_name("spec.migration.to", to)?;
        }
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
}

// ---------------------------------------------------------------- placement groups

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// Members never share a host; a member that cannot be placed is Unschedulable.
    #[default]
    HardAntiAffinity,
    /// Members avoid sharing a host when another host fits.
    SoftAntiAffinity,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementGroupSpec {
    #[serde(default)]
    pub policy: PlacementPolicy,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementGroupStatus {}

/// A "business group": instances spread over hosts for availability.
pub struct PlacementGroup;
impl Kind for PlacementGroup {
    const KIND: &'static str = "PlacementGroup";
    const PLURAL: &'static str = "placement-groups";
    const ID_PREFIX: &'static str = "pg";
    const SCOPE: Scope = Scope::Project;
    const ADMIN_WRITE: bool = false;
    type Spec = PlacementGroupSpec;
    type Status = PlacementGroupStatus;
    fn validate(_spec: &PlacementGroupSpec) -> Result<(), ApiError> {
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
