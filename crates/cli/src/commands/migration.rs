//! `yunhan vm migrate`: live migration requests and following their progress
//! (also what `host drain` does for each VM).

use std::time::Duration;

use clap::Args;
use yunhan_model::{Doc, Instance, InstancePhase, MigrationPhase, MigrationSpec};

use crate::client::{Client, ClientError};
use crate::ctx::Ctx;
use crate::kind::Obj;
use crate::output::cell;
use crate::wait::{parse_duration, wait_showing, Verdict};

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    pub name: String,
    /// Target host (name or id) [default: the scheduler's choice]
    #[arg(long, conflicts_with = "cancel")]
    pub to: Option<String>,
    /// Cancel the migration in progress (the VM stays on its host)
    #[arg(long)]
    pub cancel: bool,
    /// Bandwidth cap in MiB/s [default: QEMU's]
    #[arg(long, value_name = "MIB_S")]
    pub bandwidth: Option<u64>,
    /// Longest pause allowed for the final switch-over, in ms
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub max_downtime: u64,
    /// Switch to post-copy after the first pass (busy guests: the VM runs on the
    /// target at once and pulls the rest of its memory)
    #[arg(long)]
    pub postcopy: bool,
    /// Wait until it is done, showing transferred/remaining memory and the dirty rate
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl MigrateArgs {
    /// A plain migration of `vm` to wherever the scheduler picks (`host drain`).
    pub(crate) fn to_anywhere(vm: &str, timeout: Duration) -> MigrateArgs {
        MigrateArgs {
            name: vm.to_string(),
            to: None,
            cancel: false,
            bandwidth: None,
            max_downtime: 50,
            postcopy: false,
            wait: true,
            timeout,
        }
    }
}

/// `vm migrate`: a new request (or a cancel of the current one) in
/// `spec.migration`; with --wait, follows `status.migration`.
pub(crate) async fn migrate(ctx: &Ctx, a: &MigrateArgs) -> Result<(), ClientError> {
    let (request, mut v) = request_migration(ctx, a).await?;
    if a.wait {
        let by_id = format!("/v1/instances/{}", v.metadata.id);
        v = wait_migrated(&ctx.client, &by_id, &a.name, request, a.cancel, a.timeout).await?;
        if let Some(m) = v
            .status
            .migration
            .as_ref()
            .filter(|m| m.phase == MigrationPhase::Completed)
        {
            eprintln!(
                "migrated {} to {} in {} ms (downtime {} ms)",
                a.name,
                cell(&v.status.host),
                m.total_ms.unwrap_or(0),
                m.downtime_ms.unwrap_or(0)
            );
        }
    }
    ctx.print::<Instance>(&v);
    Ok(())
}

/// Writes the request (or the cancel) into `spec.migration`; returns the
/// request number and the instance as written.
pub(crate) async fn request_migration(
    ctx: &Ctx,
    a: &MigrateArgs,
) -> Result<(u64, Obj<Instance>), ClientError> {
    let mut request = 0;
    let v = ctx
        .update_spec::<Instance>(&a.name, |spec| {
            let last = spec.migration.as_ref().map_or(0, |m| m.request);
            match (a.cancel, spec.migration.as_mut()) {
                (true, Some(m)) if last != 0 => {
                    m.cancel = true;
                    request = last;
                }
                (true, _) => {
                    return Err(ClientError::Usage(format!(
                        "{} has no migration to cancel",
                        a.name
                    )))
                }
                (false, _) => {
                    spec.migration = Some(MigrationSpec {
                        request: last + 1,
                        to: a.to.clone(),
                        cancel: false,
                        bandwidth_mib_s: a.bandwidth,
                        postcopy: a.postcopy,
                        max_downtime_ms: a.max_downtime,
                    });
                    request = last + 1;
                }
            }
            Ok(())
        })
        .await?;
    Ok((request, v))
}

/// Follows migration `request` of the instance at `path` until it is over,
/// showing transferred/remaining memory and the dirty rate; a failure (or a
/// cancel that was not asked for) is an error.
pub(crate) async fn wait_migrated(
    client: &Client,
    path: &str,
    name: &str,
    request: u64,
    cancel: bool,
    timeout: Duration,
) -> Result<Obj<Instance>, ClientError> {
    let what = format!("VM {name} to migrate");
    let progress = move |v: &Doc<Instance>| match mine(v, request) {
        None => "Accepted".into(),
        Some(m) => format!(
            "{} {} MiB sent, {} MiB left, {} dirty pages/s",
            cell(&m.phase),
            m.transferred_bytes >> 20,
            m.remaining_bytes >> 20,
            m.dirty_pages_rate
        ),
    };
    let done = move |cur: Option<&Doc<Instance>>| migrated(cur?, name, request, cancel);
    let v = wait_showing(client, path, &what, timeout, progress, done).await?;
    v.ok_or_else(|| ClientError::Usage(format!("VM {name} is gone")))
}

/// The instance's migration status, if it is about `request`.
fn mine(v: &Doc<Instance>, request: u64) -> Option<&yunhan_model::MigrationStatus> {
    v.status.migration.as_ref().filter(|m| m.request == request)
}

/// Whether migration `request` is over, and how it ended.
fn migrated(cur: &Doc<Instance>, name: &str, request: u64, cancel: bool) -> Verdict {
    let m = mine(cur, request)?;
    match m.phase {
        // Done once the binding moved and the target reports the VM running (or, moved
        // cold, still stopped).
        MigrationPhase::Completed
            if cur.status.host.as_deref() == Some(m.target.as_str())
                && (cur.status.phase == InstancePhase::Running
                    || (m.cold && cur.status.phase == InstancePhase::Stopped)) =>
        {
            Some(Ok(()))
        }
        MigrationPhase::Failed => Some(Err(format!(
            "migration of {name} failed: {}",
            cell(&m.message)
        ))),
        MigrationPhase::Cancelled if cancel => Some(Ok(())),
        MigrationPhase::Cancelled => Some(Err(format!(
            "migration of {name} was cancelled: {}",
            cell(&m.message)
        ))),
        _ => None,
    }
}
