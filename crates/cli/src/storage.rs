//! Block storage commands: volumes, snapshots and `storage status`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use yunhan_types::sizes::{human, parse_size};

use crate::client::ClientError;
use crate::commands::{resource_command, wait_for, Ctx, Kind, Verb};
use crate::network::set;
use crate::output::{print, text, Column};

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn bytes_cell(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), human)
}

/// How long `--wait` waits by default.
const WAIT: &str = "5m";

#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// Wait until the agent has done it
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = WAIT, value_parser = crate::commands::parse_duration)]
    pub timeout: Duration,
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

resource_command!(
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
    #[command(verbatim_doc_comment)]
    VolumeCommand, VolumeCreate, {
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
});

#[derive(Args, Debug, Clone)]
pub struct SnapshotCreate {
    pub name: String,
    /// The volume to snapshot (name or id)
    #[arg(long)]
    pub volume: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

resource_command!(
    /// Point-in-time snapshots of volumes (restore with 'yunhan volume restore',
    /// or create a volume from one with 'yunhan volume create --snapshot')
    SnapshotCommand, SnapshotCreate);

/// Storage pools (admin)
#[derive(Subcommand, Debug, Clone)]
pub enum PoolCommand {
    /// Each host's pools: capacity, logical allocation, physical use,
    /// overcommit, redundancy, health and the ≥ 80 % warning
    Status,
}

/// The storage commands (flattened into the top level).
#[derive(Subcommand, Debug, Clone)]
pub enum StorageCommand {
    #[command(subcommand)]
    Volume(VolumeCommand),
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    #[command(subcommand)]
    Storage(PoolCommand),
}

const VOLUMES: Kind = Kind {
    plural: "volumes",
    singular: "volume",
    columns: &[
        Column {
            header: "NAME",
            get: |v| text(&v["metadata"]["name"]),
        },
        Column {
            header: "SIZE",
            get: |v| bytes_cell(&v["spec"]["size_bytes"]),
        },
        Column {
            header: "POOL",
            get: |v| text(&v["spec"]["pool"]),
        },
        Column {
            header: "STATUS",
            get: |v| text(&v["status"]["phase"]),
        },
        Column {
            header: "VM",
            get: |v| text(&v["spec"]["instance"]),
        },
        Column {
            header: "USED",
            get: |v| bytes_cell(&v["status"]["physical_bytes"]),
        },
        Column {
            header: "HOST",
            get: |v| text(&v["status"]["host"]),
        },
        Column {
            header: "ID",
            get: |v| text(&v["metadata"]["id"]),
        },
        Column {
            header: "MESSAGE",
            get: |v| text(&v["status"]["message"]),
        },
    ],
};

const SNAPSHOTS: Kind = Kind {
    plural: "snapshots",
    singular: "snapshot",
    columns: &[
        Column {
            header: "NAME",
            get: |v| text(&v["metadata"]["name"]),
        },
        Column {
            header: "VOLUME",
            get: |v| text(&v["spec"]["volume"]),
        },
        Column {
            header: "SIZE",
            get: |v| bytes_cell(&v["status"]["size_bytes"]),
        },
        Column {
            header: "STATUS",
            get: |v| text(&v["status"]["phase"]),
        },
        Column {
            header: "ID",
            get: |v| text(&v["metadata"]["id"]),
        },
        Column {
            header: "MESSAGE",
            get: |v| text(&v["status"]["message"]),
        },
    ],
};

fn ratio(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |r| format!("{r:.2}"))
}

const POOLS: &[Column] = &[
    Column {
        header: "HOST",
        get: |v| text(&v["host"]),
    },
    Column {
        header: "POOL",
        get: |v| text(&v["name"]),
    },
    Column {
        header: "DRIVER",
        get: |v| text(&v["driver"]),
    },
    Column {
        header: "CAPACITY",
        get: |v| bytes_cell(&v["capacity_bytes"]),
    },
    Column {
        header: "LOGICAL",
        get: |v| bytes_cell(&v["logical_allocated_bytes"]),
    },
    Column {
        header: "PHYSICAL",
        get: |v| bytes_cell(&v["physical_used_bytes"]),
    },
    Column {
        header: "USED",
        get: |v| {
            v["used_ratio"]
                .as_f64()
                .map_or_else(|| "-".into(), |r| format!("{:.0}%", r * 100.0))
        },
    },
    Column {
        header: "OVERCOMMIT",
        get: |v| ratio(&v["overcommit_ratio"]),
    },
    Column {
        header: "WARNING",
        get: |v| {
            if v["warning"].as_bool() == Some(true) {
                "physical use ≥ 80%".into()
            } else {
                "-".into()
            }
        },
    },
    Column {
        header: "REDUNDANCY",
        get: |v| text(&v["redundancy"]),
    },
    Column {
        header: "HEALTH",
        get: |v| text(&v["health"]),
    },
    Column {
        header: "MESSAGE",
        get: |v| text(&v["message"]),
    },
];

impl Ctx {
    /// Waits until the object at `path` satisfies `ok`, failing on `Failed`.
    async fn wait_volume(
        &self,
        k: &Kind,
        v: Value,
        w: &WaitArgs,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Result<Value, ClientError> {
        if !w.wait {
            return Ok(v);
        }
        let path = format!("/v1/{}/{}", k.plural, text(&v["metadata"]["id"]));
        let name = text(&v["metadata"]["name"]);
        let what = format!("{} {name} to be {what}", k.singular);
        let got = wait_for(&self.client, &path, &what, w.timeout, |cur| {
            let cur = cur?;
            if cur["status"]["phase"] == "Failed" {
                return Some(Err(format!(
                    "{} {name} failed: {}",
                    k.singular,
                    text(&cur["status"]["message"])
                )));
            }
            ok(cur).then_some(Ok(()))
        })
        .await?;
        Ok(got.unwrap_or(v))
    }

    async fn change_volume(
        &self,
        name: &str,
        w: &WaitArgs,
        what: &str,
        change: impl FnMut(&mut Value) -> Result<(), ClientError>,
        ok: impl Fn(&Value) -> bool,
    ) -> Result<(), ClientError> {
        let v = self.update_spec(&VOLUMES, name, change).await?;
        let v = self.wait_volume(&VOLUMES, v, w, what, ok).await?;
        print(self.format, VOLUMES.columns, &v);
        Ok(())
    }
}

fn phase_is(v: &Value, phase: &str) -> bool {
    v["status"]["phase"] == phase
}

/// Runs a storage command.
pub(crate) async fn run(ctx: &Ctx, cmd: StorageCommand) -> Result<(), ClientError> {
    match cmd {
        StorageCommand::Volume(c) => match c.verb() {
            Ok(v) => ctx.verb(&VOLUMES, v).await,
            Err(VolumeCommand::Create(a)) => {
                let mut spec =
                    json!({"size_bytes": a.size, "pool": a.pool, "bootable": a.bootable});
                if let Some(s) = a.snapshot {
                    spec["source"] = json!({"snapshot": s});
                }
                if let Some(i) = a.image {
                    spec["source"] = json!({"image": i});
                }
                set(&mut spec, "instance", json!(a.vm));
                let attach = a.vm.is_some();
                let v = ctx
                    .create(
                        &VOLUMES,
                        json!({"metadata": {"name": a.name}, "spec": spec}),
                    )
                    .await?;
                let (what, want) = if attach {
                    ("attached", "InUse")
                } else {
                    ("created", "Available")
                };
                let v = ctx
                    .wait_volume(&VOLUMES, v, &a.wait, what, |c| phase_is(c, want))
                    .await?;
                print(ctx.format, VOLUMES.columns, &v);
                Ok(())
            }
            Err(VolumeCommand::Attach { name, vm, wait }) => {
                let vm2 = vm.clone();
                ctx.change_volume(
                    &name,
                    &wait,
                    "attached",
                    |s| {
                        set(s, "instance", json!(vm2));
                        Ok(())
                    },
                    |c| phase_is(c, "InUse") && c["status"]["attached_to"] == c["spec"]["instance"],
                )
                .await
            }
            Err(VolumeCommand::Detach { name, wait }) => {
                ctx.change_volume(
                    &name,
                    &wait,
                    "detached",
                    |s| {
                        set(s, "instance", Value::Null);
                        Ok(())
                    },
                    |c| phase_is(c, "Available") && c["status"]["attached_to"].is_null(),
                )
                .await
            }
            Err(VolumeCommand::Extend { name, size, wait }) => {
                ctx.change_volume(
                    &name,
                    &wait,
                    &format!("extended to {}", human(size)),
                    |s| {
                        s["size_bytes"] = json!(size);
                        Ok(())
                    },
                    move |c| {
                        c["status"]["size_bytes"].as_u64() >= Some(size)
                            && matches!(c["status"]["phase"].as_str(), Some("Available" | "InUse"))
                    },
                )
                .await
            }
            Err(VolumeCommand::Restore {
                name,
                snapshot,
                wait,
            }) => {
                let mut gen = 0;
                let v = ctx
                    .update_spec(&VOLUMES, &name, |s| {
                        gen = s["restore"]["generation"].as_u64().unwrap_or(0) + 1;
                        s["restore"] = json!({"snapshot": snapshot, "generation": gen});
                        Ok(())
                    })
                    .await?;
                let v = ctx
                    .wait_volume(&VOLUMES, v, &wait, "restored", |c| {
                        c["status"]["restore_generation"].as_u64() >= Some(gen)
                            && phase_is(c, "Available")
                    })
                    .await?;
                print(ctx.format, VOLUMES.columns, &v);
                Ok(())
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        StorageCommand::Snapshot(c) => match c.verb() {
            Ok(v) => ctx.verb(&SNAPSHOTS, v).await,
            Err(SnapshotCommand::Create(a)) => {
                let v = ctx
                    .create(
                        &SNAPSHOTS,
                        json!({"metadata": {"name": a.name}, "spec": {"volume": a.volume}}),
                    )
                    .await?;
                let v = ctx
                    .wait_volume(&SNAPSHOTS, v, &a.wait, "taken", |c| {
                        phase_is(c, "Available")
                    })
                    .await?;
                print(ctx.format, SNAPSHOTS.columns, &v);
                Ok(())
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        StorageCommand::Storage(PoolCommand::Status) => {
            let hosts = ctx.client.list("/v1/hosts").await?;
            let rows: Vec<Value> = hosts
                .iter()
                .flat_map(|h| {
                    let host = h["metadata"]["name"].clone();
                    h["status"]["pools"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |mut p| {
                            p["host"] = host.clone();
                            p
                        })
                })
                .collect();
            let warn = rows.iter().any(|p| p["warning"].as_bool() == Some(true));
            print(ctx.format, POOLS, &Value::Array(rows));
            if warn && ctx.format == crate::output::Format::Table {
                eprintln!("warning: a pool's physical use is at or above 80 % of its capacity; add capacity or free space");
            }
            Ok(())
        }
    }
}
