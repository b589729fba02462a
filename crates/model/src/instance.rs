//! Instances (virtual machines): what a user asks for and what the scheduler and the host
//! agent report. Their sizes are flavors (`flavor.rs`), live migration requests and
//! progress are in `migration.rs`, anti-affinity groups in `placement.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{kind_consts, name_schema, validate_optional_name, yes};
use crate::migration::{MigrationSpec, MigrationStatus};
use crate::{validate_name, ApiError, Kind, Usage};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Flavor name or id.
    #[schemars(schema_with = "name_schema")]
    pub flavor: String,
    /// Image name or id.
    #[schemars(schema_with = "name_schema")]
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
    /// Bump to rebuild: the agent stops the VM, replaces its root disk with a fresh copy
    /// of `image` (which may change with the same request) and starts it again if it is
    /// to run; id, NICs and addresses, volumes and elastic IPs stay. The NoCloud seed
    /// is written anew at every start, so new `ssh_keys` or `user_data` apply too.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rebuild_generation: u64,
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
#[serde(default, deny_unknown_fields)]
pub struct InstanceStatus {
    pub phase: InstancePhase,
    /// The host the scheduler bound the instance to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Why the instance is in its phase (e.g. the scheduler's reason).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Resources resolved from the flavor at creation (what the quota charged).
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub gpus: u32,
    /// PCI addresses of the host GPUs given to this instance (by the scheduler).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpu_devices: Vec<String>,
    /// Accelerator QEMU runs with (`kvm` or `tcg`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub accel: String,
    /// Path of the serial console log on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_log: Option<String>,
    /// UNIX socket of the interactive serial console on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_socket: Option<String>,
    /// The latest live migration: where it stands, its progress and its result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// How many times the HA monitor moved it off a lost host: the fencing epoch (a
    /// host that comes back never runs a copy bound before the latest failover).
    #[serde(skip_serializing_if = "is_zero")]
    pub failovers: u64,
    /// The last `spec.reboot_generation` the agent carried out.
    pub reboot_generation: u64,
    /// The last `spec.rebuild_generation` the agent carried out.
    #[serde(skip_serializing_if = "is_zero")]
    pub rebuild_generation: u64,
    /// When the VM last started, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the VM last stopped (or its QEMU was found dead), RFC 3339: with `started_at`,
    /// the time it ran, which metering bills (docs/metering.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
}

pub struct Instance;
impl Kind for Instance {
    kind_consts!("Instance", "instances", "ins", Project, admin_write: false);
    type Spec = InstanceSpec;
    type Status = InstanceStatus;
    fn validate(spec: &InstanceSpec) -> Result<(), ApiError> {
        validate_name("spec.flavor", &spec.flavor)?;
        validate_name("spec.image", &spec.image)?;
        validate_optional_name("spec.placement_group", spec.placement_group.as_deref())?;
        validate_optional_name("spec.boot_volume", spec.boot_volume.as_deref())?;
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
