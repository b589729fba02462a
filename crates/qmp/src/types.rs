//! Data types of QMP replies and events.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// QEMU's run state (`query-status`, QAPI `RunState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Debug,
    Inmigrate,
    InternalError,
    IoError,
    Paused,
    Postmigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
    /// A state this client does not know (newer QEMU).
    #[serde(other)]
    Unknown,
}

/// Reply of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub status: RunState,
    pub running: bool,
}

/// `{"major": 10, "minor": 0, "micro": 2}`
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionTriple {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// Reply of `query-version`, also part of the greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub qemu: VersionTriple,
    #[serde(default)]
    pub package: String,
}

/// The server's greeting: `{"QMP": {"version": ..., "capabilities": [...]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeting {
    pub version: VersionInfo,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Migration state (QAPI `MigrationStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationStatus {
    None,
    Setup,
    Cancelling,
    Cancelled,
    Active,
    PostcopyActive,
    PostcopyPaused,
    PostcopyRecoverSetup,
    PostcopyRecover,
    Completed,
    Failed,
    Colo,
    PreSwitchover,
    Device,
    WaitUnplug,
    #[serde(other)]
    Unknown,
}

impl MigrationStatus {
    /// No further state change will happen without a new command.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::None
        )
    }
}

/// RAM statistics of `query-migrate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationRamStats {
    #[serde(default)]
    pub transferred: u64,
    #[serde(default)]
    pub remaining: u64,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub duplicate: u64,
    #[serde(default)]
    pub normal: u64,
    #[serde(default)]
    pub mbps: f64,
    #[serde(default)]
    pub dirty_sync_count: u64,
    #[serde(default)]
    pub postcopy_requests: u64,
    /// Pages dirtied per second by the guest while it is copied.
    #[serde(default)]
    pub dirty_pages_rate: u64,
}

/// Reply of `query-migrate` (all fields optional: QEMU returns `{}` before
/// the first migration).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    pub status: Option<MigrationStatus>,
    /// Milliseconds since the migration started (or its total, once completed).
    pub total_time: Option<u64>,
    /// Milliseconds the guest was stopped (completed migrations).
    pub downtime: Option<u64>,
    pub expected_downtime: Option<u64>,
    pub setup_time: Option<u64>,
    pub ram: Option<MigrationRamStats>,
    pub error_desc: Option<String>,
}

/// One entry of `migrate-set-capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationCapabilityStatus {
    /// e.g. `events`, `postcopy-ram`, `auto-converge`, `xbzrle`.
    pub capability: String,
    pub state: bool,
}

impl MigrationCapabilityStatus {
    pub fn new(capability: impl Into<String>, state: bool) -> Self {
        Self {
            capability: capability.into(),
            state,
        }
    }
}

/// Arguments of `migrate-set-parameters` (every field optional; only the set
/// ones are sent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationParameters {
    /// Bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multifd_channels: Option<u32>,
    /// Bytes per second during postcopy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_postcopy_bandwidth: Option<u64>,
    /// Any other parameter, sent as is.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `{"seconds": ..., "microseconds": ...}` of an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub microseconds: i64,
}

/// An asynchronous QMP event, as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// e.g. `SHUTDOWN`, `STOP`, `RESUME`, `DEVICE_DELETED`, `MIGRATION`.
    #[serde(rename = "event")]
    pub name: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub timestamp: Timestamp,
}

/// The events the compute/storage/migration code cares about, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `guest` is true when the guest asked for it (e.g. ACPI poweroff).
    Shutdown {
        guest: bool,
        reason: String,
    },
    Powerdown,
    Reset {
        guest: bool,
        reason: String,
    },
    Stop,
    Resume,
    /// `device` is the id given to `device_add` (absent for backend-only paths).
    DeviceDeleted {
        device: Option<String>,
        path: String,
    },
    Migration {
        status: MigrationStatus,
    },
    /// `MIGRATION_PASS`
    MigrationPass {
        pass: u64,
    },
    /// `BLOCK_JOB_COMPLETED`
    BlockJobCompleted {
        device: String,
        error: Option<String>,
    },
    GuestPanicked,
    Other,
}

impl Event {
    fn str_field(&self, key: &str) -> Option<String> {
        self.data
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Parses the events this crate knows; unknown ones are `EventKind::Other`.
    pub fn kind(&self) -> EventKind {
        let guest = self
            .data
            .get("guest")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let reason = self.str_field("reason").unwrap_or_default();
        match self.name.as_str() {
            "SHUTDOWN" => EventKind::Shutdown { guest, reason },
            "POWERDOWN" => EventKind::Powerdown,
            "RESET" => EventKind::Reset { guest, reason },
            "STOP" => EventKind::Stop,
            "RESUME" => EventKind::Resume,
            "DEVICE_DELETED" => EventKind::DeviceDeleted {
                device: self.str_field("device"),
                path: self.str_field("path").unwrap_or_default(),
            },
            "MIGRATION" => EventKind::Migration {
                status: self
                    .data
                    .get("status")
                    .and_then(|s| serde_json::from_value(s.clone()).ok())
                    .unwrap_or(MigrationStatus::Unknown),
            },
            "MIGRATION_PASS" => EventKind::MigrationPass {
                pass: self.data.get("pass").and_then(Value::as_u64).unwrap_or(0),
            },
            "BLOCK_JOB_COMPLETED" => EventKind::BlockJobCompleted {
                device: self.str_field("device").unwrap_or_default(),
                error: self.str_field("error"),
            },
            "GUEST_PANICKED" => EventKind::GuestPanicked,
            _ => EventKind::Other,
        }
    }
}

/// One entry of a `qom-list` reply: a child object (`type` `child<virtio-net-pci>`)
/// or a property.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QomProperty {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl QomProperty {
    /// The QOM type of a child object (`virtio-net-pci` for `child<virtio-net-pci>`).
    pub fn child_type(&self) -> Option<&str> {
        self.kind.strip_prefix("child<")?.strip_suffix('>')
    }
}
