//! `yunhan snapshot …`: point-in-time snapshots of volumes (and `snapshot policy`:
//! `snapshot_policy.rs`).

use clap::{Args, Subcommand};
use yunhan_model::{Doc, Snapshot, SnapshotPhase, SnapshotSpec};

use crate::client::ClientError;
use crate::commands::snapshot_policy::{self, SnapshotPolicyCommand};
use crate::commands::volume::{wait_storage, Fallible};
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{bytes, cell, col, Column};
use crate::wait::WaitArgs;

/// Point-in-time snapshots of volumes (restore with 'yunhan volume restore',
/// or create a volume from one with 'yunhan volume create --snapshot')
#[derive(Subcommand, Debug, Clone)]
pub enum SnapshotCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(SnapshotCreate),
    #[command(subcommand)]
    Policy(SnapshotPolicyCommand),
}

#[derive(Args, Debug, Clone)]
pub struct SnapshotCreate {
    pub name: String,
    /// The volume to snapshot (name or id)
    #[arg(long)]
    pub volume: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

impl Shown for Snapshot {
    const NOUN: &'static str = "snapshot";
    const COLUMNS: &'static [Column<Doc<Snapshot>>] = &[
        col!("NAME", metadata.name),
        col!("VOLUME", spec.volume),
        bytes!("SIZE", status.size_bytes),
        col!("STATUS", status.phase),
        col!("ID", metadata.id),
        col!("MESSAGE", status.message),
    ];
}

impl Fallible for Snapshot {
    fn failure(doc: &Doc<Snapshot>) -> Option<String> {
        (doc.status.phase == SnapshotPhase::Failed).then(|| cell(&doc.status.message))
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: SnapshotCommand) -> Result<(), ClientError> {
    match cmd {
        SnapshotCommand::Common(verb) => ctx.common::<Snapshot>(verb).await,
        SnapshotCommand::Create(a) => {
            let spec = SnapshotSpec { volume: a.volume };
            let v = ctx.create::<Snapshot>(&a.name, spec).await?;
            let taken = |c: &Doc<Snapshot>| c.status.phase == SnapshotPhase::Available;
            let v = wait_storage::<Snapshot>(ctx, v, &a.wait, "taken", taken).await?;
            ctx.print::<Snapshot>(&v);
            Ok(())
        }
        SnapshotCommand::Policy(c) => snapshot_policy::run(ctx, c).await,
    }
}
