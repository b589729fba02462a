//! Typed QMP commands: each is a struct serialised as the command's
//! `arguments`, with its reply type.
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::{
    MigrationCapabilityStatus, MigrationInfo, MigrationParameters, StatusInfo, VersionInfo,
};

/// A QMP command. Arguments are the struct's serde serialisation (unit
/// structs and empty objects send no `arguments`).
pub trait Command: Serialize + Send + Sync {
    /// The wire name, e.g. `query-status`.
    const NAME: &'static str;
    /// What `return` deserialises to.
    type Response: DeserializeOwned + Send + 'static;
}

/// The `{}` reply of commands that return nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `impl Command for $ty`: wire name `$name`, reply `$resp` ([`Empty`] if not given).
macro_rules! command {
    ($ty:ident, $name:literal) => {
        command!($ty, $name, Empty);
    };
    ($ty:ident, $name:literal, $resp:ty) => {
        impl Command for $ty {
            const NAME: &'static str = $name;
            type Response = $resp;
        }
    };
}

/// A command without arguments.
macro_rules! unit_command {
    ($(#[$m:meta])* $ty:ident, $name:literal, $resp:ty) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct $ty;
        command!($ty, $name, $resp);
    };
}

unit_command!(
    /// Capabilities negotiation; the client sends it on connect.
    QmpCapabilities, "qmp_capabilities", Empty);
unit_command!(QueryStatus, "query-status", StatusInfo);
unit_command!(QueryVersion, "query-version", VersionInfo);
unit_command!(
    /// Resume a paused VM (emits `RESUME`).
    Cont, "cont", Empty);
unit_command!(
    /// Pause the VM (emits `STOP`).
    Stop, "stop", Empty);
unit_command!(
    /// Press the ACPI power button (emits `POWERDOWN`; the guest decides).
    SystemPowerdown, "system_powerdown", Empty);
unit_command!(
    /// Hard reset (emits `RESET`).
    SystemReset, "system_reset", Empty);
unit_command!(
    /// Exit QEMU immediately (emits `SHUTDOWN`, then the socket closes).
    Quit, "quit", Empty);
unit_command!(QueryMigrate, "query-migrate", MigrationInfo);
unit_command!(
    /// The current migration parameters, as QEMU reports them.
    QueryMigrateParameters, "query-migrate-parameters", Map<String, Value>);
unit_command!(MigrateCancel, "migrate_cancel", Empty);
unit_command!(
    /// Switch a running pre-copy migration (with `postcopy-ram` set on both
    /// sides) to post-copy: the target runs at once and pulls the pages left.
    MigrateStartPostcopy, "migrate-start-postcopy", Empty);

/// `human-monitor-command`: run an HMP command, returns its text output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HumanMonitorCommand {
    pub command_line: String,
}
command!(HumanMonitorCommand, "human-monitor-command", String);

/// `blockdev-add`. The options are driver-specific (QAPI `BlockdevOptions`),
/// so this is a JSON object with helpers for the common shapes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct BlockdevAdd(pub Map<String, Value>);

impl BlockdevAdd {
    /// Any driver: `{"driver": driver, "node-name": node_name}` plus `set`s.
    pub fn new(driver: &str, node_name: &str) -> Self {
        let mut m = Map::new();
        m.insert("driver".into(), driver.into());
        m.insert("node-name".into(), node_name.into());
        Self(m)
    }
    /// A host file (protocol node).
    pub fn file(node_name: &str, filename: &str) -> Self {
        Self::new("file", node_name).set("filename", filename)
    }
    /// A format node (`raw`, `qcow2`) on top of another node.
    pub fn format(driver: &str, node_name: &str, file_node: &str) -> Self {
        Self::new(driver, node_name).set("file", file_node)
    }
    /// A `null-co` node of `size` bytes (reads zeroes, discards writes).
    pub fn null(node_name: &str, size: u64) -> Self {
        Self::new("null-co", node_name).set("size", size)
    }
    pub fn read_only(self, ro: bool) -> Self {
        self.set("read-only", ro)
    }
    /// Sets any option.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }
    pub fn node_name(&self) -> Option<&str> {
        self.0.get("node-name").and_then(Value::as_str)
    }
}
command!(BlockdevAdd, "blockdev-add");

/// `blockdev-del`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockdevDel {
    pub node_name: String,
}
command!(BlockdevDel, "blockdev-del");

/// `device_add`: `driver`, `id` and driver properties (`drive`, `bus`, `addr`,
/// `mac`, `netdev`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceAdd {
    pub driver: String,
    pub id: String,
    #[serde(flatten)]
    pub props: Map<String, Value>,
}
impl DeviceAdd {
    pub fn new(driver: &str, id: &str) -> Self {
        Self {
            driver: driver.into(),
            id: id.into(),
            props: Map::new(),
        }
    }
    pub fn prop(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.props.insert(key.into(), value.into());
        self
    }
}
command!(DeviceAdd, "device_add");

/// `device_del`: a request; completion is the `DEVICE_DELETED` event (the
/// guest must cooperate for PCI devices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceDel {
    pub id: String,
}
command!(DeviceDel, "device_del");

/// `netdev_add` of a TAP backend whose descriptor was handed over with
/// `getfd` ([`crate::QmpClient::send_fd`]) under the name `fd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetdevAddTap {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub fd: String,
    /// virtio-net offloads through the TAP's vnet header.
    pub vhost: bool,
}
impl NetdevAddTap {
    pub fn new(id: &str, fdname: &str) -> Self {
        Self {
            kind: "tap",
            id: id.into(),
            fd: fdname.into(),
            vhost: false,
        }
    }
}
command!(NetdevAddTap, "netdev_add");

/// `netdev_del`: removes a network backend (after its device is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetdevDel {
    pub id: String,
}
command!(NetdevDel, "netdev_del");

/// `qom-list` of a QOM path, e.g. `/machine/peripheral` (the devices created with
/// an id, on the command line or by `device_add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QomList {
    pub path: String,
}
command!(QomList, "qom-list", Vec<crate::types::QomProperty>);

/// `qom-get` of one property of a QOM object, e.g. a device's `parent_bus`
/// (`/machine/peripheral/hp1/hp1` for a device on root port `hp1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QomGet {
    pub path: String,
    pub property: String,
}
command!(QomGet, "qom-get", serde_json::Value);

/// `block_resize` of a node to `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockResize {
    pub node_name: String,
    pub size: u64,
}
command!(BlockResize, "block_resize");

/// `migrate` to a URI (`tcp:host:port`, `unix:path`, `exec:cmd`, `file:path`).
/// Returns at once; progress is `query-migrate` / `MIGRATION` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migrate {
    pub uri: String,
}
command!(Migrate, "migrate");

/// `migrate-set-capabilities`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrateSetCapabilities {
    pub capabilities: Vec<MigrationCapabilityStatus>,
}
command!(MigrateSetCapabilities, "migrate-set-capabilities");

/// `migrate-set-parameters`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct MigrateSetParameters(pub MigrationParameters);
command!(MigrateSetParameters, "migrate-set-parameters");
