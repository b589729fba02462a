//! `yunhan host …`: hypervisor hosts, maintenance mode and draining.

use std::time::Duration;

use clap::{Args, Subcommand};
use yunhan_model::{
    Doc, Host, HostLoad, Instance, InstancePhase, PinnedVm, RebalanceMove, RebalancePlan,
};

use crate::client::ClientError;
use crate::commands::metrics::{self, MetricsArgs};
use crate::commands::migration::{request_migration, wait_migrated, MigrateArgs};
use crate::ctx::Ctx;
use crate::kind::{Obj, Shown};
use crate::output::{cell, col, print_json, table, Column, Format};
use crate::wait::parse_duration;

/// Hypervisor hosts (agents register them)
#[derive(Subcommand, Debug, Clone)]
pub enum HostCommand {
    /// List hosts with their health (Ready / NotReady)
    #[command(alias = "ls")]
    List,
    /// Show one host, by name or id
    Show { name: String },
    /// Maintenance mode: mark the host unschedulable and move every VM off it (running
    /// ones live, stopped ones cold), showing progress; fails listing the VMs that could
    /// not move (e.g. on local disks)
    Drain {
        name: String,
        #[arg(long, default_value = "1800s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// End maintenance mode: the scheduler may place VMs on the host again
    Uncordon { name: String },
    /// Propose (and with --apply, make) the live migrations that bring every host at
    /// or under a target load (the larger of its vCPU and memory shares of its limits)
    ///
    /// A dry run by default: it prints the moves (running VMs live, stopped ones cold),
    /// every host's load before and after, and the VMs on hot hosts that cannot move
    /// (a disk on their host).
    ///
    /// Example:
    ///   yunhan host rebalance
    ///   yunhan host rebalance --target 70 --apply
    #[command(verbatim_doc_comment)]
    Rebalance(RebalanceArgs),
    /// Set a host's overcommit ratios (admins): how many vCPUs the scheduler may place
    /// per physical CPU, and how much memory it may promise per MiB; `cluster` goes back
    /// to the servers' ratios (`--cpu-overcommit`, `--memory-overcommit`)
    ///
    /// Example:
    ///   yunhan host set node-1 --cpu-overcommit 4
    ///   yunhan host set node-1 --memory-overcommit 1.5
    ///   yunhan host set node-1 --cpu-overcommit cluster
    #[command(verbatim_doc_comment)]
    Set(SetArgs),
    /// A host's CPU, memory, load, disk, network and storage pools over a window
    ///
    /// Example:
    ///   yunhan host metrics node-1 --since 10m
    ///   yunhan host metrics node-1 --since 7d --series pool -o json
    #[command(verbatim_doc_comment)]
    Metrics(MetricsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SetArgs {
    pub name: String,
    /// vCPUs per physical CPU, 1–16, or `cluster`
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio)]
    pub cpu_overcommit: Option<Ratio>,
    /// Memory multiplier, 1–4, or `cluster`
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio)]
    pub memory_overcommit: Option<Ratio>,
}

#[derive(Args, Debug, Clone)]
pub struct RebalanceArgs {
    /// The highest load a host should carry, in percent (10–100)
    #[arg(long, default_value_t = 80)]
    pub target: u8,
    /// Make the migrations, one at a time, showing progress
    #[arg(long)]
    pub apply: bool,
    /// How long each migration may take
    #[arg(long, default_value = "1800s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// A ratio an admin sets: a number, or the cluster's (`None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(Option<f64>);

fn parse_ratio(s: &str) -> Result<Ratio, String> {
    if s == "cluster" {
        return Ok(Ratio(None));
    }
    s.parse::<f64>()
        .map(|r| Ratio(Some(r)))
        .map_err(|_| format!("{s:?} is not a ratio: a number such as 4 or 1.5, or 'cluster'"))
}

impl Shown for Host {
    const NOUN: &'static str = "host";
    const COLUMNS: &'static [Column<Doc<Host>>] = &[
        col!("NAME", metadata.name),
        col!("STATUS", status.phase),
        col!("CPUS", spec.cpus),
        Column {
            header: "VCPUS_ALLOCATED",
            get: |v| out_of(v.status.allocation.vcpus, v.status.allocation.vcpu_limit),
        },
        col!("CPU_RATIO", status.allocation.cpu_ratio),
        Column {
            header: "CPU_USE",
            get: |v| (v.status.usage).map_or("-".into(), |u| format!("{}%", u.cpu_percent)),
        },
        col!("MEMORY_MIB", spec.memory_mib),
        Column {
            header: "MEMORY_ALLOCATED",
            get: |v| {
                out_of(
                    v.status.allocation.memory_mib,
                    v.status.allocation.memory_limit_mib,
                )
            },
        },
        Column {
            header: "MEMORY_USE",
            get: |v| (v.status.usage).map_or("-".into(), |u| format!("{} MiB", u.memory_used_mib)),
        },
        col!("DISK_GIB", spec.disk_gib),
        col!("INSTANCES", status.allocation.instances),
        col!("ADDRESS", spec.address),
        col!("SCHEDULABLE", spec.schedulable),
        col!("ID", metadata.id),
    ];
}

/// `3/8`: what is given out of what may be.
fn out_of(used: u64, limit: u64) -> String {
    format!("{used}/{limit}")
}

pub(crate) async fn run(ctx: &Ctx, cmd: HostCommand) -> Result<(), ClientError> {
    match cmd {
        HostCommand::List => ctx.list::<Host>().await,
        HostCommand::Show { name } => ctx.show::<Host>(&name).await,
        HostCommand::Drain { name, timeout } => drain(ctx, &name, timeout).await,
        HostCommand::Metrics(a) => metrics::show::<Host>(ctx, &a).await,
        HostCommand::Set(a) => {
            ctx.update_print::<Host>(&a.name, |spec| {
                if let Some(Ratio(r)) = a.cpu_overcommit {
                    spec.cpu_overcommit = r;
                }
                if let Some(Ratio(r)) = a.memory_overcommit {
                    spec.memory_overcommit = r;
                }
            })
            .await
        }
        HostCommand::Rebalance(a) => rebalance(ctx, &a).await,
        HostCommand::Uncordon { name } => {
            let v = set_schedulable(ctx, &name, true).await?;
            ctx.print::<Host>(&v);
            Ok(())
        }
    }
}

/// Sets a host's `spec.schedulable`; returns the host.
async fn set_schedulable(ctx: &Ctx, name: &str, on: bool) -> Result<Obj<Host>, ClientError> {
    ctx.update_spec::<Host>(name, |spec| {
        spec.schedulable = on;
        Ok(())
    })
    .await
}

/// `host drain`: unschedulable, then every VM moved away (running ones live, stopped
/// ones cold), one at a time (they would compete for bandwidth).
async fn drain(ctx: &Ctx, name: &str, timeout: Duration) -> Result<(), ClientError> {
    let host = set_schedulable(ctx, name, false).await?;
    let id = host.metadata.id.as_str();
    eprintln!("host {name} is unschedulable (maintenance mode)");
    let vms: Vec<Obj<Instance>> = ctx.client.list_as("/v1/instances").await?;
    let mut stuck = Vec::new();
    for vm in vms.iter().filter(|v| v.status.host.as_deref() == Some(id)) {
        if let Some(why) = move_off(ctx, vm, timeout).await? {
            stuck.push(why);
        }
    }
    if stuck.is_empty() {
        eprintln!("host {name} is drained");
        Ok(())
    } else {
        Err(ClientError::Usage(format!(
            "host {name} still holds {} VM(s):\n  {}",
            stuck.len(),
            stuck.join("\n  ")
        )))
    }
}

/// Moves one VM off a draining host; why not, if it cannot.
async fn move_off(
    ctx: &Ctx,
    vm: &Obj<Instance>,
    timeout: Duration,
) -> Result<Option<String>, ClientError> {
    let vm_id = &vm.metadata.id;
    let label = format!("{} ({vm_id})", vm.metadata.name);
    let stopped = vm.status.phase == InstancePhase::Stopped && !vm.spec.running;
    if vm.status.phase != InstancePhase::Running && !stopped {
        let phase = cell(&vm.status.phase);
        return Ok(Some(format!(
            "{label}: {phase} (running VMs move live, stopped ones cold; not this one)"
        )));
    }
    let args = MigrateArgs::to_anywhere(vm_id, timeout);
    let (request, _) = request_migration(ctx, &args).await?;
    let path = format!("/v1/instances/{vm_id}");
    match wait_migrated(&ctx.client, &path, &label, request, false, timeout).await {
        Ok(v) => {
            eprintln!("moved {label} to {}", cell(&v.status.host));
            Ok(None)
        }
        Err(ClientError::Usage(why)) => Ok(Some(why)),
        Err(e) => Err(e),
    }
}

/// `host rebalance`: the plan (`GET /v1/rebalance`), then, with --apply, its moves.
async fn rebalance(ctx: &Ctx, a: &RebalanceArgs) -> Result<(), ClientError> {
    let path = format!("/v1/rebalance?target={}", a.target);
    let plan = ctx.client.get_as::<RebalancePlan>(&path).await?;
    match ctx.format {
        Format::Json => print_json(&plan.raw),
        Format::Table => print!("{}", plan_text(&plan.value)),
    }
    if !a.apply {
        return Ok(());
    }
    for m in &plan.value.moves {
        let args = MigrateArgs {
            to: Some(m.to.clone()),
            ..MigrateArgs::to_anywhere(&m.instance, a.timeout)
        };
        let (request, _) = request_migration(ctx, &args).await?;
        let path = format!("/v1/instances/{}", m.instance);
        wait_migrated(&ctx.client, &path, &m.name, request, false, a.timeout).await?;
        eprintln!("moved {} to {}", m.name, m.to_name);
    }
    Ok(())
}

/// The plan for people: moves, loads, what cannot move.
fn plan_text(p: &RebalancePlan) -> String {
    let mut out = if p.moves.is_empty() {
        format!("No migration brings a host nearer {}%.\n", p.target_percent)
    } else {
        table(&MOVE_COLUMNS, &p.moves)
    };
    out.push('\n');
    out.push_str(&table(&LOAD_COLUMNS, &p.hosts));
    if !p.pinned.is_empty() {
        out.push_str("\nCannot move:\n");
        out.push_str(&table(&PINNED_COLUMNS, &p.pinned));
    }
    out
}

const MOVE_COLUMNS: [Column<RebalanceMove>; 3] = [
    col!("VM", name),
    col!("FROM", from_name),
    col!("TO", to_name),
];
const LOAD_COLUMNS: [Column<HostLoad>; 3] = [
    col!("HOST", name),
    col!("LOAD_NOW_%", before_percent),
    col!("LOAD_AFTER_%", after_percent),
];
const PINNED_COLUMNS: [Column<PinnedVm>; 3] =
    [col!("VM", name), col!("HOST", host), col!("WHY", reason)];
