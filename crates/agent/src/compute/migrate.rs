//! Live migration, the agents' part (the orchestrator in
//! `controller/src/migration.rs` decides and moves the binding):
//!
//! - source, first: publishes the VM's hot-plugged devices and their ports
//!   (`status.migration.devices`, read from QEMU: `layout.rs`);
//! - target: once they are there, starts an identical QEMU (same plan: RBD
//!   root, NICs' TAPs on this host, the hot-plugged NICs and volumes on the
//!   same ports) with `-incoming tcp:<address>:<port>` and reports `Incoming`;
//! - source: sets the downtime limit, bandwidth cap and auto-converge, runs
//!   `migrate`, reports progress while it copies (`Running`), honours a cancel
//!   request (`migrate_cancel`), and on completion reports the total time and
//!   downtime (`Completed`) and only then quits its now-paused QEMU.
//!
//! A failure at any step leaves the VM running on the source: QEMU resumes the
//! source when a migration fails or is cancelled, and the target's copy is
//! removed by the target agent once the migration is no longer in flight.
//! Design note: `docs/migration.md`.

use std::time::{Duration, Instant};

use yunhan_model::{Instance, MigrationPhase, MigrationStatus};
use yunhan_qmp::{
    MigrateStartPostcopy, MigrationCapabilityStatus, MigrationParameters, MigrationStatus as Qemu,
    Qmp, QmpError,
};
use yunhan_store::objects::{ObjectError, Objects};

use super::layout::{self, LayoutError};
use super::runtime::RuntimeError;
use super::{Doc, Inner, StartError};

const MIB: u64 = 1 << 20;
/// The bandwidth cap when the request sets none (QEMU's own default, 128 MiB/s,
/// would make big guests slow to move on a fast network).
const UNCAPPED: u64 = 10 << 30;
/// How often the source polls QEMU and reports progress.
const POLL: Duration = Duration::from_millis(200);
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Why this host's part of a live migration failed; the text becomes the migration's
/// status message.
#[derive(Debug, thiserror::Error)]
enum MigrationError {
    #[error("no port for the incoming migration on {address}: {source}")]
    NoPort {
        address: String,
        source: std::io::Error,
    },
    /// The target's copy of the VM could not be planned.
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("reading the VM's hot-plugged devices: {0}")]
    ReadLayout(QmpError),
    #[error("the target host could not start QEMU: {0}")]
    TargetQemu(RuntimeError),
    #[error("post-copy is not available on the target host: {0}")]
    NoPostcopy(Box<MigrationError>),
    /// QEMU reported the migration failed (its description).
    #[error("QEMU: {0}; the VM runs on the source")]
    Failed(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error(transparent)]
    Store(#[from] ObjectError),
}

/// The migration this host has a part in, if any: (its status, are we the target).
pub(super) fn part<'a>(inst: &'a Doc<Instance>, me: &str) -> Option<(&'a MigrationStatus, bool)> {
    let m = inst.status.migration.as_ref()?;
    if m.target == me {
        Some((m, true))
    } else if m.source == me {
        Some((m, false))
    } else {
        None
    }
}

/// The VM must be left alone by the ordinary start/stop decisions: a copy is
/// being prepared or sent, or the source has handed over and awaits the rebind.
pub(super) fn in_flight(inst: &Doc<Instance>) -> bool {
    inst.status.migration.as_ref().is_some_and(|m| {
        m.phase.active()
            || (m.phase == MigrationPhase::Completed
                && inst.status.host.as_deref() == Some(m.source.as_str()))
    })
}

/// CAS-updates the migration status while it is still request `request`.
async fn set(
    objects: &Objects,
    id: &str,
    request: u64,
    f: impl Fn(&mut MigrationStatus) + Send + Sync,
) -> Result<bool, ObjectError> {
    objects
        .modify::<Instance>(id, |d| match d.status.migration.as_mut() {
            Some(m) if m.request == request => {
                let before = m.clone();
                f(m);
                *m != before
            }
            _ => false,
        })
        .await
        .map(|d| d.is_some())
}

fn fail(m: &mut MigrationStatus, why: String) {
    m.phase = MigrationPhase::Failed;
    m.message = why;
}

impl Inner {
    /// Target: an identical QEMU waiting for the VM's state.
    pub(super) async fn prepare_incoming(&self, objects: &Objects, inst: Doc<Instance>) {
        let id = inst.metadata.id.clone();
        let Some(request) = inst.status.migration.as_ref().map(|m| m.request) else {
            return;
        };
        let r = async {
            let port = std::net::TcpListener::bind((self.cfg.address.as_str(), 0))
                .and_then(|l| l.local_addr())
                .map_err(|source| MigrationError::NoPort {
                    address: self.cfg.address.clone(),
                    source,
                })?
                .port();
            let uri = format!("tcp:{}:{port}", self.cfg.address);
            let accel = self.accelerator().await;
            let mut req = self.start_request(objects, &inst, accel).await?;
            let devices = (inst.status.migration.as_ref())
                .and_then(|m| m.devices.clone())
                .unwrap_or_default();
            self.lay_out(objects, &inst, &mut req.plan, &devices)
                .await?;
            req.plan.incoming = Some(uri.clone());
            self.rt
                .start(&req)
                .await
                .map_err(MigrationError::TargetQemu)?;
            if inst.spec.migration.as_ref().is_some_and(|m| m.postcopy) {
                // Both sides must allow post-copy; the target says at once if it cannot.
                let enabled = async {
                    let qmp = self.rt.qmp(&id).await?;
                    qmp.migrate_set_capabilities(&[MigrationCapabilityStatus::new(
                        "postcopy-ram",
                        true,
                    )])
                    .await?;
                    Ok::<_, MigrationError>(())
                }
                .await;
                if let Err(e) = enabled {
                    let _ = self.rt.destroy(&id).await;
                    return Err(MigrationError::NoPostcopy(Box::new(e)));
                }
            }
            self.nics
                .set(&id, req.plan.nics.iter().map(|n| n.id.clone()).collect());
            Ok::<_, MigrationError>(uri)
        }
        .await;
        let written = match r {
            Ok(uri) => {
                tracing::info!(instance = %id, %uri, "incoming migration ready");
                set(objects, &id, request, |m| {
                    if m.phase == MigrationPhase::Preparing {
                        m.phase = MigrationPhase::Incoming;
                        m.incoming = uri.clone();
                    }
                })
                .await
            }
            Err(why) => set(objects, &id, request, |m| fail(m, why.to_string())).await,
        };
        if let Err(e) = written {
            tracing::warn!(instance = %id, error = %e, "reporting the incoming migration failed");
        }
    }

    /// Source: publishes the VM's hot-plugged devices for the target.
    pub(super) async fn publish_layout(&self, objects: &Objects, inst: Doc<Instance>) {
        let id = inst.metadata.id.clone();
        let Some(request) = inst.status.migration.as_ref().map(|m| m.request) else {
            return;
        };
        let read = async {
            let qmp = self.rt.qmp(&id).await?;
            layout::read(&qmp).await.map_err(MigrationError::ReadLayout)
        }
        .await;
        let written = match read {
            Ok(devices) => {
                tracing::info!(instance = %id, ?devices, "hot-plugged devices published for the target");
                set(objects, &id, request, |m| {
                    if m.phase == MigrationPhase::Preparing {
                        m.devices = Some(devices.clone());
                    }
                })
                .await
            }
            Err(why) => set(objects, &id, request, |m| fail(m, why.to_string())).await,
        };
        if let Err(e) = written {
            tracing::warn!(instance = %id, error = %e, "publishing the VM's devices failed");
        }
    }

    /// Source: sends the VM to the target and reports how it goes.
    pub(super) async fn migrate_out(&self, objects: &Objects, inst: Doc<Instance>) {
        let id = inst.metadata.id.clone();
        let (Some(m), Some(want)) = (inst.status.migration.clone(), inst.spec.migration.clone())
        else {
            return;
        };
        let request = m.request;
        // Running already: an agent restarted mid-copy follows the migration QEMU runs.
        let start = m.phase == MigrationPhase::Incoming;
        let outcome = self
            .send(objects, &id, start.then_some(m.incoming.as_str()), &want)
            .await;
        let r = match outcome {
            Ok(done) => {
                let phase = done.phase;
                let r = set(objects, &id, request, |s| {
                    s.phase = done.phase;
                    s.total_ms = done.total_ms;
                    s.downtime_ms = done.downtime_ms;
                    s.transferred_bytes = done.transferred_bytes;
                    s.remaining_bytes = 0;
                    s.message = done.message.clone();
                })
                .await;
                if phase == MigrationPhase::Completed {
                    tracing::info!(instance = %id, total_ms = ?done.total_ms, downtime_ms = ?done.downtime_ms, "live migration completed");
                    // The target runs the VM now: the paused source copy goes.
                    if let Err(e) = self.rt.kill(&id).await {
                        tracing::warn!(instance = %id, error = %e, "stopping the migrated-away QEMU failed");
                    }
                }
                r
            }
            Err(why) => {
                tracing::warn!(instance = %id, "live migration failed: {why}");
                set(objects, &id, request, |s| fail(s, why.to_string())).await
            }
        };
        if let Err(e) = r {
            tracing::warn!(instance = %id, error = %e, "reporting the migration failed");
        }
    }

    /// Runs QMP `migrate` to `uri` (None: one already runs) until QEMU says it
    /// is over.
    async fn send(
        &self,
        objects: &Objects,
        id: &str,
        uri: Option<&str>,
        want: &yunhan_model::MigrationSpec,
    ) -> Result<MigrationStatus, MigrationError> {
        let qmp = self.rt.qmp(id).await?;
        let request = want.request;
        if let Some(uri) = uri {
            qmp.migrate_set_capabilities(&[
                MigrationCapabilityStatus::new("events", true),
                MigrationCapabilityStatus::new("auto-converge", true),
                MigrationCapabilityStatus::new("postcopy-ram", want.postcopy),
            ])
            .await?;
            qmp.migrate_set_parameters(MigrationParameters {
                downtime_limit: Some(want.max_downtime_ms),
                // Always set: QEMU keeps the last migration's cap otherwise.
                max_bandwidth: Some(want.bandwidth_mib_s.map_or(UNCAPPED, |b| b * MIB)),
                ..Default::default()
            })
            .await?;
            qmp.migrate(uri).await?;
            set(objects, id, request, |m| m.phase = MigrationPhase::Running).await?;
        }
        let mut reported = Instant::now();
        let mut cancelling = false;
        let mut postcopy = false;
        loop {
            tokio::time::sleep(POLL).await;
            let info = qmp.query_migrate().await?;
            let ram = info.ram.clone().unwrap_or_default();
            match info.status {
                Some(Qemu::Completed) => {
                    return Ok(MigrationStatus {
                        phase: MigrationPhase::Completed,
                        total_ms: info.total_time,
                        downtime_ms: info.downtime,
                        transferred_bytes: ram.transferred,
                        ..Default::default()
                    })
                }
                Some(Qemu::Cancelled) => {
                    return Ok(MigrationStatus {
                        phase: MigrationPhase::Cancelled,
                        message: "cancelled; the VM runs on the source".into(),
                        ..Default::default()
                    })
                }
                Some(Qemu::Failed) => {
                    return Err(MigrationError::Failed(
                        info.error_desc.unwrap_or_else(|| "migration failed".into()),
                    ))
                }
                _ => {}
            }
            // Post-copy once the first pass over memory is done.
            if want.postcopy && !postcopy && !cancelling && ram.dirty_sync_count >= 2 {
                postcopy = true;
                qmp.execute(&MigrateStartPostcopy).await?;
                tracing::info!(instance = id, "live migration switched to post-copy");
            }
            if reported.elapsed() >= REPORT_EVERY {
                reported = Instant::now();
                set(objects, id, request, |m| {
                    m.transferred_bytes = ram.transferred;
                    m.remaining_bytes = ram.remaining;
                    m.dirty_pages_rate = ram.dirty_pages_rate;
                })
                .await?;
                let cancel = objects
                    .get::<Instance>(id)
                    .await?
                    .and_then(|i| i.spec.migration)
                    .is_some_and(|m| m.request == request && m.cancel);
                if cancel && !cancelling {
                    cancelling = true;
                    qmp.migrate_cancel().await?;
                }
            }
        }
    }
}
