//! The live-migration orchestrator (leader). It owns the decisions and the
//! binding; the agents do the moving:
//!
//! 1. A new request (`spec.migration.request` above `status.migration.request`)
//!    is checked: the VM runs, its disks are all on shared storage, the target
//!    (given or chosen by placement without the source) is Ready and fits.
//!    Refused → `Failed` with the reason; accepted → `Preparing` (source, target).
//! 2. The target's agent starts an identical QEMU listening for the incoming
//!    migration → `Incoming` with its address.
//! 3. The source's agent runs QMP `migrate`, reports progress (`Running`), and
//!    once QEMU reports completion (the target runs the VM) → `Completed` with
//!    the total time and downtime, then quits the paused source QEMU.
//! 4. Here: `Completed` moves the binding (`status.host`) to the target, which
//!    moves the VM's network port with it (the SDN controller compiles ports from
//!    the binding).
//!
//! Cancelling before memory moves is done here (`Cancelled`); during the copy
//! the source agent runs `migrate_cancel`. A failed or cancelled migration
//! leaves the VM running on the source; the target removes its copy. The VM is
//! never on neither host: the source QEMU only goes away after the target runs.
//! Design note: `docs/migration.md`.

use std::sync::Arc;

use async_trait::async_trait;
use yunhan_model::{Doc, Instance, InstancePhase, MigrationPhase, MigrationStatus};
use yunhan_store::objects::{object_prefix, ObjectError, Objects};

use crate::ha::{SharedStorage, SharedStorageError};
use yunhan_model::scheduling::{demand, place, PlacementError, Policy};

use crate::scheduler;
use crate::Reconciler;

pub struct Migrations {
    pub policy: Policy,
    pub storage: Arc<dyn SharedStorage>,
}

/// What to do about one instance's migration (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Check a new request and pick the target.
    Plan,
    /// Cancel before the copy started.
    Cancel,
    /// Completed: bind the instance to the target.
    Rebind(String),
}

pub fn step(inst: &Doc<Instance>) -> Step {
    let Some(want) = &inst.spec.migration else {
        return Step::Nothing;
    };
    let st = inst.status.migration.as_ref();
    match st {
        Some(s) if s.request >= want.request => {
            if s.request == want.request
                && want.cancel
                && matches!(
                    s.phase,
                    MigrationPhase::Preparing | MigrationPhase::Incoming
                )
            {
                Step::Cancel
            } else if s.phase == MigrationPhase::Completed
                && inst.status.host.as_deref() == Some(s.source.as_str())
            {
                Step::Rebind(s.target.clone())
            } else {
                Step::Nothing
            }
        }
        // A new request waits while an older one is in flight.
        Some(s) if s.phase.active() => Step::Nothing,
        _ if want.cancel => Step::Nothing,
        _ => Step::Plan,
    }
}

#[async_trait]
impl Reconciler for Migrations {
    fn name(&self) -> &'static str {
        "migrations"
    }
    fn watches(&self) -> Vec<String> {
        vec![object_prefix::<Instance>(None)]
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let instances = objects.list_all::<Instance>(None).await?;
        for inst in instances {
            match step(&inst) {
                Step::Nothing => {}
                Step::Plan => self.plan(objects, &inst).await?,
                Step::Cancel => {
                    set(objects, &inst, |m| {
                        m.phase = MigrationPhase::Cancelled;
                        m.message = "cancelled before memory was copied".into();
                    })
                    .await?
                }
                Step::Rebind(target) => rebind(objects, &inst, target).await?,
            }
        }
        Ok(())
    }
}

/// Why a migration request is refused; the text becomes the migration's status message.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the VM is {0:?}: running VMs move live and stopped ones cold, nothing else")]
    NotRunning(InstancePhase),
    #[error(
        "moving a VM needs every disk on shared storage (block migration is not supported): {0}"
    )]
    NotPortable(SharedStorageError),
    #[error("the VM already runs on that host")]
    SameHost,
    #[error("no host {0:?}")]
    NoSuchHost(String),
    #[error("no host can take it: {0}")]
    NoRoom(PlacementError),
}

impl Migrations {
    async fn plan(&self, objects: &Objects, inst: &Doc<Instance>) -> Result<(), ObjectError> {
        let Some(want) = inst.spec.migration.clone() else {
            return Ok(());
        };
        let source = inst.status.host.clone().unwrap_or_default();
        let decision = self
            .check(objects, inst, &source, want.to.as_deref())
            .await?;
        let request = want.request;
        let id = inst.metadata.id.clone();
        let written = objects
            .modify::<Instance>(&id, |d| {
                let fresh = d.spec.migration.as_ref().map(|m| m.request) == Some(request)
                    && d.status
                        .migration
                        .as_ref()
                        .is_none_or(|m| m.request < request);
                if !fresh {
                    return false;
                }
                let mut m = match &decision {
                    Ok(target) => MigrationStatus {
                        request,
                        phase: MigrationPhase::Preparing,
                        source: source.clone(),
                        target: target.clone(),
                        ..Default::default()
                    },
                    Err(why) => MigrationStatus {
                        request,
                        phase: MigrationPhase::Failed,
                        source: source.clone(),
                        message: why.to_string(),
                        ..Default::default()
                    },
                };
                if decision.is_ok() && cold(inst) {
                    move_cold(d, &mut m);
                }
                d.status.migration = Some(m);
                true
            })
            .await?;
        let moved_cold = (written.and_then(|d| d.status.migration))
            .is_some_and(|m| m.cold && m.phase == MigrationPhase::Completed);
        match decision {
            Ok(t) if moved_cold => {
                let what = format!("moved while stopped from host {source} to host {t}");
                crate::events::platform_event::<Instance>(objects, inst, "migrated", what).await;
            }
            Ok(t) => {
                tracing::info!(instance = %inst.metadata.name, target = %t, "live migration accepted")
            }
            Err(why) => {
                tracing::info!(instance = %inst.metadata.name, "live migration refused: {why}")
            }
        }
        Ok(())
    }

    /// The target host, or why the request is refused.
    async fn check(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        source: &str,
        to: Option<&str>,
    ) -> Result<Result<String, Refusal>, ObjectError> {
        if !(live(inst) || cold(inst)) || source.is_empty() {
            return Ok(Err(Refusal::NotRunning(inst.status.phase)));
        }
        if let Err(why) = self.storage.portable(objects, inst).await {
            return Ok(Err(Refusal::NotPortable(why)));
        }
        if to == Some(source) {
            return Ok(Err(Refusal::SameHost));
        }
        let (cap, _, _) = scheduler::load(objects).await?;
        // The VM is counted on its source only: the target must hold it besides its own.
        let d = demand(inst, &cap.groups);
        let placed = match to {
            // One given target: weighing it alone is the scan of one host.
            Some(t) => match cap.host(t) {
                Some(host) => place(std::slice::from_ref(host), &d, &self.policy),
                None => return Ok(Err(Refusal::NoSuchHost(t.to_string()))),
            },
            None => cap.place_elsewhere(&d, &self.policy, source),
        };
        Ok(match placed {
            Ok(p) => Ok(p.host.id.clone()),
            Err(why) => Err(Refusal::NoRoom(why)),
        })
    }
}

fn live(inst: &Doc<Instance>) -> bool {
    inst.status.phase == InstancePhase::Running
}

/// Stopped and meant to stay so: moved by moving its binding.
fn cold(inst: &Doc<Instance>) -> bool {
    inst.status.phase == InstancePhase::Stopped && !inst.spec.running
}

/// A cold move, done in the same write that accepts it: the binding moves to `target`
/// while the VM is still stopped (else the request fails: it started meanwhile).
fn move_cold(d: &mut Doc<Instance>, m: &mut MigrationStatus) {
    if !cold(d) {
        m.phase = MigrationPhase::Failed;
        m.message = "the VM started while its cold move was planned; move it live instead".into();
        return;
    }
    m.cold = true;
    m.phase = MigrationPhase::Completed;
    m.total_ms = Some(0);
    m.message = "moved while stopped: its disks are on shared storage, nothing to copy".into();
    d.status.host = Some(m.target.clone());
    d.status.console_log = None;
    d.status.console_socket = None;
}

/// CAS-updates the current migration status of `inst`.
async fn set(
    objects: &Objects,
    inst: &Doc<Instance>,
    f: impl Fn(&mut MigrationStatus) + Send + Sync,
) -> Result<(), ObjectError> {
    let request = inst.status.migration.as_ref().map(|m| m.request);
    objects
        .modify::<Instance>(&inst.metadata.id, |d| {
            match d.status.migration.as_mut() {
                Some(m) if Some(m.request) == request => f(m),
                _ => return false,
            }
            true
        })
        .await
        .map(drop)
}

/// Moves the binding to the target once it runs the VM. The target's agent
/// reports Running again with its own console paths.
async fn rebind(
    objects: &Objects,
    inst: &Doc<Instance>,
    target: String,
) -> Result<(), ObjectError> {
    let source = inst.status.host.clone();
    let moved = objects
        .modify::<Instance>(&inst.metadata.id, |d| {
            if d.status.host != source {
                return false;
            }
            d.status.host = Some(target.clone());
            d.status.phase = InstancePhase::Starting;
            d.status.console_log = None;
            d.status.console_socket = None;
            true
        })
        .await?;
    if moved.is_some() {
        tracing::info!(instance = %inst.metadata.name, %target, "live migration completed: binding moved");
        let from = source.as_deref().unwrap_or("-");
        let what = format!("live-migrated from host {from} to host {target}");
        crate::events::platform_event::<Instance>(objects, inst, "migrated", what).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::{InstanceSpec, InstanceStatus, Metadata, MigrationSpec, Resource};

    fn inst(want: Option<(u64, bool)>, st: Option<(u64, MigrationPhase)>) -> Doc<Instance> {
        Resource {
            metadata: Metadata {
                created: String::new(),
                revision: 1,
                ..Metadata::new("ins-1", "a", None)
            },
            spec: InstanceSpec {
                migration: want.map(|(request, cancel)| MigrationSpec {
                    request,
                    cancel,
                    ..Default::default()
                }),
                ..Default::default()
            },
            status: InstanceStatus {
                host: Some("src".into()),
                migration: st.map(|(request, phase)| MigrationStatus {
                    request,
                    phase,
                    source: "src".into(),
                    target: "dst".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_cold_move_rebinds_a_stopped_vm_at_once_and_only_a_stopped_one() {
        let mut d = inst(Some((1, false)), None);
        d.status.phase = InstancePhase::Stopped;
        let planned = MigrationStatus {
            request: 1,
            source: "src".into(),
            target: "dst".into(),
            ..Default::default()
        };
        let mut m = planned.clone();
        move_cold(&mut d, &mut m);
        assert_eq!((m.phase, m.cold), (MigrationPhase::Completed, true));
        assert_eq!(d.status.host.as_deref(), Some("dst"));
        d.status.migration = Some(m);
        assert_eq!(step(&d), Step::Nothing, "nothing left to rebind");

        let mut started = inst(Some((1, false)), None);
        started.status.phase = InstancePhase::Stopped;
        started.spec.running = true;
        let mut m = planned;
        move_cold(&mut started, &mut m);
        assert_eq!(m.phase, MigrationPhase::Failed);
        assert_eq!(started.status.host.as_deref(), Some("src"));
    }

    #[test]
    fn requests_cancels_and_rebinds() {
        use MigrationPhase::*;
        assert_eq!(step(&inst(None, None)), Step::Nothing);
        assert_eq!(step(&inst(Some((1, false)), None)), Step::Plan);
        assert_eq!(step(&inst(Some((2, false)), Some((1, Failed)))), Step::Plan);
        // One at a time.
        assert_eq!(
            step(&inst(Some((2, false)), Some((1, Running)))),
            Step::Nothing
        );
        assert_eq!(
            step(&inst(Some((1, false)), Some((1, Running)))),
            Step::Nothing
        );
        assert_eq!(
            step(&inst(Some((1, true)), Some((1, Incoming)))),
            Step::Cancel
        );
        // During the copy the source agent cancels.
        assert_eq!(
            step(&inst(Some((1, true)), Some((1, Running)))),
            Step::Nothing
        );
        assert_eq!(
            step(&inst(Some((1, false)), Some((1, Completed)))),
            Step::Rebind("dst".into())
        );
        let mut done = inst(Some((1, false)), Some((1, Completed)));
        done.status.host = Some("dst".into());
        assert_eq!(step(&done), Step::Nothing);
        assert_eq!(
            step(&inst(Some((3, true)), Some((2, Completed)))),
            Step::Nothing
        );
    }
}
