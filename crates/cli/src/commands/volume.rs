//! `yunhan volume …`: block volumes (create, attach, detach, extend, restore),
//! and the wait every storage command shares.

use clap::{Args, Subcommand};
use yunhan_model::{Doc, Volume, VolumePhase, VolumeRestore, VolumeSource, VolumeSpec};
use yunhan_types::sizes::{human, parse_size};

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::{Obj, Shown};
use crate::output::{bytes, cell, col, Column};
use crate::wait::{wait_for, WaitArgs};

/// Block volumes: thin disks in a storage pool, attached to at most one VM
///
/// The guest sees an attached volume as a virtio disk whose serial is the
/// volume id (/sys/block/vdX/serial, /dev/disk/by-id/virtio-<id>).
///
/// Examples:
///   yunhan volume create v1 --size 1GiB --wait
///   yunhan volume attach v1 --vm vm1 --wait
///   yunhan volume extend v1 --size 2GiB --wait     (online; never shrinks)
///   yunhan volume detach v1 --wait
///   yunhan snapshot create s1 --volume v1 --wait
///   yunhan volume restore v1 --snapshot s1 --wait  (detached volumes only)
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum VolumeCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(VolumeCreate),
    /// A volume's reads and writes (bytes and operations per second) over a window, as
    /// small charts (sampled while it is attached to a running VM)
    Metrics(crate::commands::metrics::MetricsArgs),
    /// Attach a volume to a VM (a local volume only to VMs on its host)
    Attach {
        name: String,
        /// The VM (name or id)
        #[arg(long)]
        vm: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Detach a volume from its VM (the guest is told: PCIe hot unplug)
    Detach {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Grow a volume, online if attached (the guest sees the new size at once)
    Extend {
        name: String,
        /// The new size (larger than the current one)
        #[arg(long, value_parser = size_arg)]
        size: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Roll a detached volume back to one of its snapshots
    Restore {
        name: String,
        /// The snapshot (name or id)
        #[arg(long)]
        snapshot: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct VolumeCreate {
    pub name: String,
    /// Size: 512MiB, 1GiB, 20G, 1T (binary units)
    #[arg(long, value_parser = size_arg)]
    pub size: u64,
    /// Storage pool: `local` (a sparse file on one host) or a Ceph pool the cloud runs with
    #[arg(long, default_value = yunhan_model::DEFAULT_POOL)]
    pub pool: String,
    /// Create from this snapshot (name or id)
    #[arg(long, conflicts_with = "image")]
    pub snapshot: Option<String>,
    /// Create from this disk image (name or id); the size must hold it
    #[arg(long)]
    pub image: Option<String>,
    /// Attach to this VM (name or id) once created
    #[arg(long)]
    pub vm: Option<String>,
    #[arg(long)]
    pub bootable: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

impl Shown for Volume {
    const NOUN: &'static str = "volume";
    const COLUMNS: &'static [Column<Doc<Volume>>] = &[
        col!("NAME", metadata.name),
        bytes!("SIZE", spec.size_bytes),
        col!("POOL", spec.pool),
        col!("STATUS", status.phase),
        col!("VM", spec.instance),
        bytes!("USED", status.physical_bytes),
        col!("HOST", status.host),
        col!("ID", metadata.id),
        col!("MESSAGE", status.message),
    ];
}

/// A storage kind whose objects can fail (volumes and snapshots).
pub(crate) trait Fallible: Shown {
    /// The message of a failed object, `None` unless it failed.
    fn failure(doc: &Doc<Self>) -> Option<String>;
}

impl Fallible for Volume {
    fn failure(doc: &Doc<Volume>) -> Option<String> {
        (doc.status.phase == VolumePhase::Failed).then(|| cell(&doc.status.message))
    }
}

/// With --wait, waits until the object satisfies `ok`, failing when it fails;
/// returns it as it is then.
pub(crate) async fn wait_storage<K: Fallible>(
    ctx: &Ctx,
    v: Obj<K>,
    w: &WaitArgs,
    what: &str,
    ok: impl Fn(&Doc<K>) -> bool,
) -> Result<Obj<K>, ClientError> {
    if !w.wait {
        return Ok(v);
    }
    let path = format!("/v1/{}/{}", K::PLURAL, v.metadata.id);
    let name = v.metadata.name.clone();
    let what = format!("{} {name} to be {what}", K::NOUN);
    let done = |cur: Option<&Doc<K>>| {
        let cur = cur?;
        if let Some(why) = K::failure(cur) {
            return Some(Err(format!("{} {name} failed: {why}", K::NOUN)));
        }
        ok(cur).then_some(Ok(()))
    };
    let got = wait_for::<K>(&ctx.client, &path, &what, w.timeout, done).await?;
    Ok(got.unwrap_or(v))
}

pub(crate) async fn run(ctx: &Ctx, cmd: VolumeCommand) -> Result<(), ClientError> {
    use VolumePhase::{Available, InUse};
    match cmd {
        VolumeCommand::Common(verb) => ctx.common::<Volume>(verb).await,
        VolumeCommand::Create(a) => create(ctx, a).await,
        VolumeCommand::Metrics(a) => crate::commands::metrics::show::<Volume>(ctx, &a).await,
        VolumeCommand::Attach { name, vm, wait } => {
            let attach = |s: &mut VolumeSpec| s.instance = Some(vm.clone());
            let attached = |c: &Doc<Volume>| {
                c.status.phase == InUse && c.status.attached_to == c.spec.instance
            };
            change(ctx, &name, &wait, "attached", attach, attached).await
        }
        VolumeCommand::Detach { name, wait } => {
            let detach = |s: &mut VolumeSpec| s.instance = None;
            let detached =
                |c: &Doc<Volume>| c.status.phase == Available && c.status.attached_to.is_none();
            change(ctx, &name, &wait, "detached", detach, detached).await
        }
        VolumeCommand::Extend { name, size, wait } => {
            let what = format!("extended to {}", human(size));
            let grow = |s: &mut VolumeSpec| s.size_bytes = size;
            let grown = |c: &Doc<Volume>| {
                c.status.size_bytes >= size && matches!(c.status.phase, Available | InUse)
            };
            change(ctx, &name, &wait, &what, grow, grown).await
        }
        VolumeCommand::Restore {
            name,
            snapshot,
            wait,
        } => restore(ctx, &name, snapshot, &wait).await,
    }
}

async fn create(ctx: &Ctx, a: VolumeCreate) -> Result<(), ClientError> {
    let source = match (a.snapshot, a.image) {
        (_, Some(i)) => Some(VolumeSource::Image(i)),
        (Some(s), None) => Some(VolumeSource::Snapshot(s)),
        (None, None) => None,
    };
    let (what, want) = match a.vm {
        Some(_) => ("attached", VolumePhase::InUse),
        None => ("created", VolumePhase::Available),
    };
    let spec = VolumeSpec {
        size_bytes: a.size,
        pool: a.pool,
        source,
        bootable: a.bootable,
        instance: a.vm,
        restore: None,
    };
    let v = ctx.create::<Volume>(&a.name, spec).await?;
    let v = wait_storage::<Volume>(ctx, v, &a.wait, what, |c: &Doc<Volume>| {
        c.status.phase == want
    })
    .await?;
    ctx.print::<Volume>(&v);
    Ok(())
}

/// Changes a volume's spec, waits (with --wait) until `ok`, and prints it.
async fn change(
    ctx: &Ctx,
    name: &str,
    w: &WaitArgs,
    what: &str,
    change: impl Fn(&mut VolumeSpec),
    ok: impl Fn(&Doc<Volume>) -> bool,
) -> Result<(), ClientError> {
    let edit = |s: &mut VolumeSpec| {
        change(s);
        Ok(())
    };
    let v = ctx.update_spec::<Volume>(name, edit).await?;
    let v = wait_storage::<Volume>(ctx, v, w, what, ok).await?;
    ctx.print::<Volume>(&v);
    Ok(())
}

/// Asks for a restore from `snapshot` (a new restore generation).
async fn restore(ctx: &Ctx, name: &str, snapshot: String, w: &WaitArgs) -> Result<(), ClientError> {
    let mut generation = 0;
    let ask = |s: &mut VolumeSpec| {
        generation = s.restore.as_ref().map_or(0, |r| r.generation) + 1;
        let snapshot = snapshot.clone();
        s.restore = Some(VolumeRestore {
            snapshot,
            generation,
        });
        Ok(())
    };
    let v = ctx.update_spec::<Volume>(name, ask).await?;
    let restored = |c: &Doc<Volume>| {
        c.status.restore_generation >= generation && c.status.phase == VolumePhase::Available
    };
    let v = wait_storage::<Volume>(ctx, v, w, "restored", restored).await?;
    ctx.print::<Volume>(&v);
    Ok(())
}
