//! `yunhan vm …`: virtual machines (the API's instances): create, power,
//! reboot, console and log; live migration is in `migration.rs`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use yunhan_model::network::PrimaryNic;
use yunhan_model::{Doc, Instance, InstancePhase, InstanceSpec};

use crate::client::ClientError;
use crate::commands::metrics::{self, MetricsArgs};
use crate::commands::migration::{migrate, MigrateArgs};
use crate::ctx::{Common, Ctx};
use crate::kind::{path_of, Obj, Shown};
use crate::output::{cell, col, Column};
use crate::wait::{parse_duration, wait_for};

/// Virtual machines
// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug, Clone)]
pub enum VmCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(VmCreate),
    /// Shut a VM down (ACPI power button, then forced after a timeout)
    Stop(PowerArgs),
    /// Start a stopped VM
    Start(PowerArgs),
    /// Reboot a VM (guest reboot; --hard for a reset)
    Reboot {
        #[command(flatten)]
        power: PowerArgs,
        /// Reset the VM instead of asking the guest to reboot
        #[arg(long)]
        hard: bool,
    },
    /// Change a VM's flavor: its vCPUs, memory and root disk size
    ///
    /// The VM must be stopped (its QEMU has no spare CPU or memory slots to hot-add):
    /// stop it first, or pass --restart to stop it, resize it and start it again. The
    /// root disk only grows (the guest sees the larger disk at its next boot); the
    /// project's quota and the room on the VM's host are checked first.
    ///
    /// Example:
    ///   yunhan vm stop web1 --wait && yunhan vm resize web1 --flavor medium --wait
    ///   yunhan vm resize web1 --flavor large --restart --wait
    #[command(verbatim_doc_comment)]
    Resize(ResizeArgs),
    /// Reinstall a VM's root disk from an image (the same one, or --image another)
    ///
    /// The VM keeps its id, NICs and addresses, volumes and elastic IPs; everything on
    /// its old root disk is lost. It is stopped, rebuilt and started again if it was
    /// running. --ssh-key replaces its authorised keys (through a new cloud-init seed).
    ///
    /// Example:
    ///   yunhan vm rebuild web1 --wait
    ///   yunhan vm rebuild web1 --image debian-12 --ssh-key "$(cat ~/.ssh/id_ed25519.pub)" --wait
    #[command(verbatim_doc_comment)]
    Rebuild(RebuildArgs),
    /// Live-migrate a running VM to another host, without stopping it (admins)
    ///
    /// Its disks must be on shared storage (e.g. it boots from a Ceph volume).
    ///
    /// Example:
    ///   yunhan vm migrate db1 --wait              # the scheduler picks the host
    ///   yunhan vm migrate db1 --to node-2 --wait
    ///   yunhan vm migrate db1 --cancel            # it stays where it runs
    #[command(verbatim_doc_comment)]
    Migrate(MigrateArgs),
    /// Print the VM's serial console log (the boot log)
    Log { name: String },
    /// A VM's CPU, memory, disk and network over a window, as small charts
    ///
    /// Its host samples every VM every 10 s and keeps a month (10 s points for the last
    /// hour, 1 min for a day, 10 min beyond). CPU is a share of all the VM's vCPUs;
    /// network directions are the guest's (rx: what it received).
    ///
    /// Example:
    ///   yunhan vm metrics web1 --since 10m
    ///   yunhan vm metrics web1 --since 1d --series cpu,disk
    ///   yunhan vm metrics web1 --since 10m -o json     # the points
    #[command(verbatim_doc_comment)]
    Metrics(MetricsArgs),
    /// Attach to the VM's serial console (interactive; Ctrl-] leaves).
    /// Without a terminal, or with --read-only, follow the console output.
    Console {
        name: String,
        /// Only follow the output (never type into the guest)
        #[arg(long)]
        read_only: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct VmCreate {
    pub name: String,
    /// Image name or id ('yunhan image list')
    #[arg(long)]
    pub image: String,
    /// Flavor name or id ('yunhan flavor list')
    #[arg(long)]
    pub flavor: String,
    /// Boot from this bootable Ceph volume instead of a copy of the image, e.g. an
    /// RBD copy-on-write clone: 'yunhan volume create root1 --image IMG --size 10GiB
    /// --pool ceph --bootable'
    #[arg(long, value_name = "VOLUME")]
    pub boot_volume: Option<String>,
    /// Placement group (name or id): spread over hosts by its anti-affinity rule
    #[arg(long)]
    pub placement_group: Option<String>,
    /// cloud-init user-data file (a '#!' script or '#cloud-config')
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// SSH public key (its text, e.g. "$(cat ~/.ssh/id_ed25519.pub)") that cloud-init
    /// authorises for the image's default user (repeatable)
    #[arg(long = "ssh-key")]
    pub ssh_keys: Vec<String>,
    /// Give the VM a primary NIC in this subnet (name or id); it is deleted with the VM
    #[arg(long)]
    pub subnet: Option<String>,
    /// The primary NIC's fixed address [default: the next free one]
    #[arg(long, requires = "subnet")]
    pub ip: Option<String>,
    /// A security group of the primary NIC (repeatable) [default: the VPC's default group]
    #[arg(long = "security-group", value_name = "GROUP", requires = "subnet")]
    pub security_groups: Vec<String>,
    /// High availability: if its host is lost, fence the host and restart the VM
    /// on another one (needs every disk on shared storage, e.g. --boot-volume in
    /// the Ceph pool; otherwise the VM is marked HostDown with the reason)
    #[arg(long)]
    pub ha: bool,
    /// Create it stopped
    #[arg(long)]
    pub stopped: bool,
    /// Wait until the VM runs (or fails), showing progress
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Wait options for power operations.
#[derive(Args, Debug, Clone)]
pub struct PowerArgs {
    pub name: String,
    /// Wait until the VM reaches the new state, showing progress
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `vm resize`: the new flavor, and whether to stop and start a running VM around it.
#[derive(Args, Debug, Clone)]
pub struct ResizeArgs {
    #[command(flatten)]
    pub power: PowerArgs,
    /// The new flavor (name or id; 'yunhan flavor list')
    #[arg(long)]
    pub flavor: String,
    /// Stop a running VM, resize it and start it again (--wait: until it runs)
    #[arg(long)]
    pub restart: bool,
}

/// `vm rebuild`: the image and keys to rebuild with.
#[derive(Args, Debug, Clone)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub power: PowerArgs,
    /// The image to reinstall from (name or id) [default: the VM's own]
    #[arg(long)]
    pub image: Option<String>,
    /// SSH public keys for root, replacing the VM's (repeat for several)
    #[arg(long = "ssh-key", value_name = "KEY")]
    pub ssh_keys: Vec<String>,
}

impl Shown for Instance {
    const NOUN: &'static str = "VM";
    const COLUMNS: &'static [Column<Doc<Instance>>] = &[
        col!("NAME", metadata.name),
        col!("STATUS", status.phase),
        col!("HOST", status.host),
        col!("FLAVOR", spec.flavor),
        col!("IMAGE", spec.image),
        col!("ID", metadata.id),
        col!("MESSAGE", status.message),
    ];
}

pub(crate) async fn run(ctx: &Ctx, cmd: VmCommand) -> Result<(), ClientError> {
    match cmd {
        VmCommand::Common(verb) => ctx.common::<Instance>(verb).await,
        VmCommand::Create(a) => create(ctx, a).await,
        VmCommand::Stop(a) => power(ctx, &a, |s| s.running = false, InstancePhase::Stopped).await,
        VmCommand::Start(a) => power(ctx, &a, |s| s.running = true, InstancePhase::Running).await,
        VmCommand::Reboot { power, hard } => reboot(ctx, power, hard).await,
        VmCommand::Resize(a) => resize(ctx, &a).await,
        VmCommand::Rebuild(a) => rebuild(ctx, &a).await,
        VmCommand::Migrate(a) => migrate(ctx, &a).await,
        VmCommand::Log { name } => log(ctx, &name).await,
        VmCommand::Metrics(a) => metrics::show::<Instance>(ctx, &a).await,
        VmCommand::Console { name, read_only } => console(ctx, &name, read_only).await,
    }
}

/// The spec `vm create` asks for.
fn spec_of(a: &VmCreate) -> Result<InstanceSpec, ClientError> {
    let user_data = match &a.user_data {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", f.display())))?,
        ),
        None => None,
    };
    let nic = a.subnet.as_ref().map(|subnet| PrimaryNic {
        subnet: subnet.clone(),
        ip: a.ip.clone(),
        security_groups: a.security_groups.clone(),
    });
    Ok(InstanceSpec {
        image: a.image.clone(),
        flavor: a.flavor.clone(),
        running: !a.stopped,
        ha: a.ha,
        placement_group: a.placement_group.clone(),
        boot_volume: a.boot_volume.clone(),
        user_data,
        ssh_keys: a.ssh_keys.clone(),
        nic,
        ..InstanceSpec::default()
    })
}

async fn create(ctx: &Ctx, a: VmCreate) -> Result<(), ClientError> {
    let mut v = ctx.create::<Instance>(&a.name, spec_of(&a)?).await?;
    if a.wait {
        let path = format!("/v1/instances/{}", v.metadata.id);
        let what = format!("VM {} to run", a.name);
        let running = |cur: Option<&Doc<Instance>>| {
            let cur = cur?;
            match cur.status.phase {
                InstancePhase::Running => Some(Ok(())),
                p @ (InstancePhase::Failed | InstancePhase::Unschedulable) => Some(Err(format!(
                    "VM {} is {}: {}",
                    cell(&cur.metadata.name),
                    cell(&p),
                    cell(&cur.status.message)
                ))),
                _ => None,
            }
        };
        v = wait_for::<Instance>(&ctx.client, &path, &what, a.timeout, running)
            .await?
            .unwrap_or(v);
    }
    ctx.print::<Instance>(&v);
    Ok(())
}

/// Changes a VM's spec with `change`, then optionally waits for `phase`; prints the VM.
async fn power(
    ctx: &Ctx,
    a: &PowerArgs,
    change: impl Fn(&mut InstanceSpec),
    phase: InstancePhase,
) -> Result<(), ClientError> {
    let v = power_quietly(ctx, a, change, phase).await?;
    ctx.print::<Instance>(&v);
    Ok(())
}

/// `vm resize`: a new flavor, around a stop and a start with --restart.
async fn resize(ctx: &Ctx, a: &ResizeArgs) -> Result<(), ClientError> {
    let restart = a.restart && ctx.fetch::<Instance>(&a.power.name).await?.spec.running;
    if restart {
        let stop = PowerArgs {
            wait: true,
            ..a.power.clone()
        };
        power_quietly(ctx, &stop, |s| s.running = false, InstancePhase::Stopped).await?;
        eprintln!("VM {} stopped", a.power.name);
    }
    let mut v = ctx
        .update_spec::<Instance>(&a.power.name, |s| {
            s.flavor = a.flavor.clone();
            Ok(())
        })
        .await?;
    if restart {
        v = power_quietly(ctx, &a.power, |s| s.running = true, InstancePhase::Running).await?;
    }
    ctx.print::<Instance>(&v);
    Ok(())
}

/// [`power`] without printing: the VM as last seen.
async fn power_quietly(
    ctx: &Ctx,
    a: &PowerArgs,
    change: impl Fn(&mut InstanceSpec),
    phase: InstancePhase,
) -> Result<Obj<Instance>, ClientError> {
    let path = path_of::<Instance>(&a.name);
    let edit = |spec: &mut InstanceSpec| {
        change(spec);
        Ok(())
    };
    let (mut v, cur) = ctx.edit_spec::<Instance>(&path, edit).await?;
    if a.wait {
        let by_id = format!("/v1/instances/{}", cur.metadata.id);
        let what = format!("VM {} to be {}", a.name, cell(&phase));
        let reached = |cur: Option<&Doc<Instance>>| match cur?.status.phase {
            p if p == phase => Some(Ok(())),
            InstancePhase::Failed => Some(Err(format!(
                "VM {} failed: {}",
                a.name,
                cell(&cur?.status.message)
            ))),
            _ => None,
        };
        v = wait_for::<Instance>(&ctx.client, &by_id, &what, a.timeout, reached)
            .await?
            .unwrap_or(v);
    }
    Ok(v)
}

/// Bumps the reboot generation; with --wait, waits until the agent has
/// rebooted the VM and it runs again.
async fn reboot(ctx: &Ctx, power_args: PowerArgs, hard: bool) -> Result<(), ClientError> {
    let before = ctx.fetch::<Instance>(&power_args.name).await?;
    let current = before.spec.reboot_generation;
    let generation = current.checked_add(1).ok_or_else(|| {
        ClientError::Usage(format!(
            "VM {} cannot count another reboot: its reboot_generation is {current}, the largest value",
            power_args.name
        ))
    })?;
    let request = PowerArgs {
        wait: false,
        ..power_args.clone()
    };
    let bump = |s: &mut InstanceSpec| {
        s.reboot_generation = generation;
        s.reboot_hard = hard;
    };
    power(ctx, &request, bump, InstancePhase::Running).await?;
    if power_args.wait {
        let path = format!("/v1/instances/{}", before.metadata.id);
        let what = format!("VM {} to reboot", power_args.name);
        let rebooted = |cur: Option<&Doc<Instance>>| {
            let cur = cur?;
            let done = cur.status.reboot_generation >= generation
                && cur.status.phase == InstancePhase::Running;
            done.then_some(Ok(()))
        };
        wait_for::<Instance>(&ctx.client, &path, &what, power_args.timeout, rebooted).await?;
    }
    Ok(())
}

/// Bumps the rebuild generation (with the new image and keys); with --wait, waits
/// until the agent has rebuilt the VM and it is back in its power state.
async fn rebuild(ctx: &Ctx, a: &RebuildArgs) -> Result<(), ClientError> {
    let name = &a.power.name;
    let before = ctx.fetch::<Instance>(name).await?;
    let generation = before.spec.rebuild_generation + 1;
    let v = ctx
        .update_spec::<Instance>(name, |s| {
            s.rebuild_generation = generation;
            if let Some(image) = &a.image {
                s.image = image.clone();
            }
            if !a.ssh_keys.is_empty() {
                s.ssh_keys = a.ssh_keys.clone();
            }
            Ok(())
        })
        .await?;
    if !a.power.wait {
        ctx.print::<Instance>(&v);
        return Ok(());
    }
    let path = format!("/v1/instances/{}", before.metadata.id);
    let what = format!("VM {name} to be rebuilt");
    let settled = if v.spec.running {
        InstancePhase::Running
    } else {
        InstancePhase::Stopped
    };
    let rebuilt = |cur: Option<&Doc<Instance>>| {
        let cur = cur?;
        if cur.status.phase == InstancePhase::Failed {
            return Some(Err(format!("VM {name} failed: {}", cur.status.message)));
        }
        let done = cur.status.rebuild_generation >= generation && cur.status.phase == settled;
        done.then_some(Ok(()))
    };
    let done = wait_for::<Instance>(&ctx.client, &path, &what, a.power.timeout, rebuilt).await?;
    ctx.print::<Instance>(&done.unwrap_or(v));
    Ok(())
}

async fn log(ctx: &Ctx, name: &str) -> Result<(), ClientError> {
    let v = ctx.fetch::<Instance>(name).await?;
    let (text, _) = ctx.client.console(&v.metadata.id, 0).await?;
    print!("{text}");
    Ok(())
}

/// Attaches to the console on a terminal, else follows its output.
async fn console(ctx: &Ctx, name: &str, read_only: bool) -> Result<(), ClientError> {
    let v = ctx.fetch::<Instance>(name).await?;
    let id = &v.metadata.id;
    if !read_only && std::io::stdin().is_terminal() {
        let ws = ctx.client.attach_console(id).await?;
        return crate::console::interactive(ws, name).await;
    }
    eprintln!("following the console of {name} (Ctrl-C to leave)");
    let mut offset = 0;
    loop {
        let (chunk, next) = ctx.client.console(id, offset).await?;
        print!("{chunk}");
        let _ = std::io::stdout().flush();
        if next == offset {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        offset = next;
    }
}
