//! Typed async QMP (QEMU Machine Protocol) client, the [`Qmp`] trait the
//! agent programs against, and (with the `test-util` feature)
//! `fake::FakeQmpServer`, a real UNIX-socket server speaking the protocol for
//! tests. Design notes: `docs/qmp.md`.
//!
//! ```no_run
//! # async fn demo() -> yunhan_qmp::Result<()> {
//! use yunhan_qmp::{Qmp, QmpClient, RunState};
//! let qmp = QmpClient::connect("/run/yunhan/vm-1/qmp.sock").await?;
//! let mut events = qmp.events();
//! qmp.stop().await?;
//! events.wait_for_name("STOP", std::time::Duration::from_secs(5)).await?;
//! assert_eq!(qmp.query_status().await?.status, RunState::Paused);
//! # Ok(()) }
//! ```
mod client;
pub mod commands;
mod error;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod types;

#[cfg(test)]
mod tests;

use async_trait::async_trait;

pub use client::{ConnectOptions, EventStream, QmpClient, EVENT_BUFFER};
pub use commands::{
    BlockdevAdd, Command, DeviceAdd, Empty, MigrateStartPostcopy, NetdevAddTap, NetdevDel, QomGet,
    QomList,
};
pub use error::{QmpError, Result};
pub use types::{
    Event, EventKind, Greeting, MigrationCapabilityStatus, MigrationInfo, MigrationParameters,
    MigrationStatus, QomProperty, RunState, StatusInfo, VersionInfo,
};

use commands as c;

/// The high-level QMP operations the compute, storage and migration code use.
/// [`QmpClient`] implements it; tests can implement it in memory or point a
/// `QmpClient` at a `fake::FakeQmpServer` (feature `test-util`).
#[async_trait]
pub trait Qmp: Send + Sync {
    async fn query_status(&self) -> Result<StatusInfo>;
    async fn query_version(&self) -> Result<VersionInfo>;
    /// Resume (emits `RESUME`).
    async fn cont(&self) -> Result<()>;
    /// Pause (emits `STOP`).
    async fn stop(&self) -> Result<()>;
    /// ACPI power button: a request to the guest (emits `POWERDOWN`).
    async fn system_powerdown(&self) -> Result<()>;
    async fn system_reset(&self) -> Result<()>;
    /// Exit QEMU now (the connection closes).
    async fn quit(&self) -> Result<()>;
    /// HMP escape hatch; returns the command's text output.
    async fn human_monitor_command(&self, command_line: &str) -> Result<String>;
    async fn blockdev_add(&self, options: BlockdevAdd) -> Result<()>;
    async fn blockdev_del(&self, node_name: &str) -> Result<()>;
    async fn device_add(&self, device: DeviceAdd) -> Result<()>;
    /// Request an unplug; done when `DEVICE_DELETED` arrives.
    async fn device_del(&self, id: &str) -> Result<()>;
    async fn block_resize(&self, node_name: &str, size: u64) -> Result<()>;
    /// Start a migration to `uri`; follow it with `query_migrate`/`MIGRATION` events.
    async fn migrate(&self, uri: &str) -> Result<()>;
    async fn migrate_set_capabilities(&self, caps: &[MigrationCapabilityStatus]) -> Result<()>;
    async fn migrate_set_parameters(&self, params: MigrationParameters) -> Result<()>;
    async fn query_migrate(&self) -> Result<MigrationInfo>;
    async fn migrate_cancel(&self) -> Result<()>;
    /// Subscribe to events from now on.
    fn events(&self) -> EventStream;
}

#[async_trait]
impl Qmp for QmpClient {
    async fn query_status(&self) -> Result<StatusInfo> {
        self.execute(&c::QueryStatus).await
    }
    async fn query_version(&self) -> Result<VersionInfo> {
        self.execute(&c::QueryVersion).await
    }
    async fn cont(&self) -> Result<()> {
        self.execute(&c::Cont).await.map(drop)
    }
    async fn stop(&self) -> Result<()> {
        self.execute(&c::Stop).await.map(drop)
    }
    async fn system_powerdown(&self) -> Result<()> {
        self.execute(&c::SystemPowerdown).await.map(drop)
    }
    async fn system_reset(&self) -> Result<()> {
        self.execute(&c::SystemReset).await.map(drop)
    }
    async fn quit(&self) -> Result<()> {
        match self.execute(&c::Quit).await {
            // QEMU may close the socket before the reply reaches us.
            Ok(_) | Err(QmpError::Disconnected) => Ok(()),
            Err(e) => Err(e),
        }
    }
    async fn human_monitor_command(&self, command_line: &str) -> Result<String> {
        self.execute(&c::HumanMonitorCommand {
            command_line: command_line.into(),
        })
        .await
    }
    async fn blockdev_add(&self, options: BlockdevAdd) -> Result<()> {
        self.execute(&options).await.map(drop)
    }
    async fn blockdev_del(&self, node_name: &str) -> Result<()> {
        self.execute(&c::BlockdevDel {
            node_name: node_name.into(),
        })
        .await
        .map(drop)
    }
    async fn device_add(&self, device: DeviceAdd) -> Result<()> {
        self.execute(&device).await.map(drop)
    }
    async fn device_del(&self, id: &str) -> Result<()> {
        self.execute(&c::DeviceDel { id: id.into() })
            .await
            .map(drop)
    }
    async fn block_resize(&self, node_name: &str, size: u64) -> Result<()> {
        self.execute(&c::BlockResize {
            node_name: node_name.into(),
            size,
        })
        .await
        .map(drop)
    }
    async fn migrate(&self, uri: &str) -> Result<()> {
        self.execute(&c::Migrate { uri: uri.into() })
            .await
            .map(drop)
    }
    async fn migrate_set_capabilities(&self, caps: &[MigrationCapabilityStatus]) -> Result<()> {
        self.execute(&c::MigrateSetCapabilities {
            capabilities: caps.to_vec(),
        })
        .await
        .map(drop)
    }
    async fn migrate_set_parameters(&self, params: MigrationParameters) -> Result<()> {
        self.execute(&c::MigrateSetParameters(params))
            .await
            .map(drop)
    }
    async fn query_migrate(&self) -> Result<MigrationInfo> {
        self.execute(&c::QueryMigrate).await
    }
    async fn migrate_cancel(&self) -> Result<()> {
        self.execute(&c::MigrateCancel).await.map(drop)
    }
    fn events(&self) -> EventStream {
        QmpClient::events(self)
    }
}
