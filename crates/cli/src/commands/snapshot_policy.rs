//! `yunhan snapshot policy …`: snapshots taken on a schedule, the newest N kept
//! (docs/snapshot-policies.md).

use clap::{Args, Subcommand};
use yunhan_model::{Doc, SnapshotPolicy, SnapshotPolicySpec};

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{cell, col, Column};

/// Snapshot policies: snapshots of a volume (or of every disk of a VM) on a schedule
#[derive(Subcommand, Debug, Clone)]
pub enum SnapshotPolicyCommand {
    #[command(flatten)]
    Common(Common),
    /// Create a policy
    ///
    /// The policy snapshots the volume (or each volume of the VM: its boot volume and
    /// the attached ones, in the same pass) whenever the cron schedule fires, UTC,
    /// names each snapshot <policy>-<YYYYMMDDTHHMMSSZ> (-d<N> for disk N of a VM),
    /// and deletes its own snapshots beyond --keep per disk, oldest first. Snapshots
    /// are crash-consistent: the guest's file systems are not frozen first.
    ///
    /// Schedule: minute hour day-of-month month day-of-week (e.g. "0 3 * * *": every
    /// day at 03:00), or six fields with a leading second field ("*/30 * * * * *").
    ///
    /// Example:
    ///   yunhan snapshot policy create nightly --volume data1 --schedule "0 3 * * *" --keep 7
    ///   yunhan snapshot policy create web --vm web1 --schedule "*/15 * * * *" --keep 4
    ///   yunhan snapshot policy show nightly   # last run, next run, last error
    #[command(verbatim_doc_comment)]
    Create(PolicyCreate),
    /// Take no more snapshots (and delete none) until enabled
    Disable { name: String },
    /// Take snapshots again
    Enable { name: String },
}

#[derive(Args, Debug, Clone)]
pub struct PolicyCreate {
    pub name: String,
    /// The volume to snapshot (name or id)
    #[arg(long, required_unless_present = "vm", conflicts_with = "vm")]
    pub volume: Option<String>,
    /// Or the VM whose volumes to snapshot (name or id)
    #[arg(long)]
    pub vm: Option<String>,
    /// When, as cron (UTC), see above
    #[arg(long)]
    pub schedule: String,
    /// How many of the policy's snapshots to keep per disk (1-100)
    #[arg(long)]
    pub keep: u32,
}

impl Shown for SnapshotPolicy {
    const NOUN: &'static str = "snapshot policy";
    const COLUMNS: &'static [Column<Doc<SnapshotPolicy>>] = &[
        col!("NAME", metadata.name),
        Column {
            header: "OF",
            get: |p| cell(&p.spec.volume.as_ref().or(p.spec.instance.as_ref())),
        },
        col!("SCHEDULE", spec.schedule),
        col!("KEEP", spec.keep),
        col!("ENABLED", spec.enabled),
        col!("TAKEN", status.taken),
        col!("LAST RUN", status.last_run),
        col!("NEXT RUN", status.next_run),
        col!("ID", metadata.id),
        col!("LAST ERROR", status.last_error),
    ];
}

fn spec_of(a: PolicyCreate) -> SnapshotPolicySpec {
    SnapshotPolicySpec {
        volume: a.volume,
        instance: a.vm,
        schedule: a.schedule,
        keep: a.keep,
        enabled: true,
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: SnapshotPolicyCommand) -> Result<(), ClientError> {
    match cmd {
        SnapshotPolicyCommand::Common(verb) => ctx.common::<SnapshotPolicy>(verb).await,
        SnapshotPolicyCommand::Create(a) => {
            let name = a.name.clone();
            ctx.create_print::<SnapshotPolicy>(&name, spec_of(a)).await
        }
        SnapshotPolicyCommand::Disable { name } => enable(ctx, &name, false).await,
        SnapshotPolicyCommand::Enable { name } => enable(ctx, &name, true).await,
    }
}

async fn enable(ctx: &Ctx, name: &str, on: bool) -> Result<(), ClientError> {
    ctx.update_print::<SnapshotPolicy>(name, |spec| spec.enabled = on)
        .await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::commands::snapshot::SnapshotCommand;
    use crate::dispatch::Command;
    use crate::testing::Cli;

    fn create(args: &[&str]) -> PolicyCreate {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Snapshot(SnapshotCommand::Policy(SnapshotPolicyCommand::Create(a))) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    /// The command of the contract, as it is typed.
    #[test]
    fn the_contract_parses_into_a_policy() {
        let line = "yunhan snapshot policy create nightly --volume data1 --schedule";
        let mut args: Vec<&str> = line.split(' ').collect();
        args.extend(["*/1 * * * *", "--keep", "3"]);
        let spec = spec_of(create(&args));
        assert_eq!(spec.volume.as_deref(), Some("data1"));
        assert_eq!(spec.instance, None);
        assert_eq!((spec.schedule.as_str(), spec.keep), ("*/1 * * * *", 3));
        assert!(spec.enabled);
        let line = "yunhan snapshot policy create p --vm web1 --schedule @ --keep 1";
        let vm = spec_of(create(&line.split(' ').collect::<Vec<_>>()));
        assert_eq!(vm.instance.as_deref(), Some("web1"));
    }

    #[test]
    fn exactly_one_target() {
        let line = "yunhan snapshot policy create p --schedule x --keep 1";
        assert!(Cli::line(line).is_err());
        assert!(Cli::line(&format!("{line} --volume v --vm m")).is_err());
    }
}
