//! `yunhan flavor …`: instance sizes.

use clap::{Args, Subcommand};
use yunhan_model::{Doc, Flavor, FlavorSpec};

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, Column};

/// Flavors: instance sizes
#[derive(Subcommand, Debug, Clone)]
pub enum FlavorCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(FlavorCreate),
}

#[derive(Args, Debug, Clone)]
pub struct FlavorCreate {
    pub name: String,
    #[arg(long)]
    pub vcpus: u32,
    /// Memory in MiB
    #[arg(long)]
    pub memory_mib: u64,
    /// Root disk in GiB
    #[arg(long)]
    pub disk_gib: u64,
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
}

impl Shown for Flavor {
    const NOUN: &'static str = "flavor";
    const COLUMNS: &'static [Column<Doc<Flavor>>] = &[
        col!("NAME", metadata.name),
        col!("VCPUS", spec.vcpus),
        col!("MEMORY_MIB", spec.memory_mib),
        col!("DISK_GIB", spec.disk_gib),
        col!("GPUS", spec.gpus),
        col!("ID", metadata.id),
    ];
}

pub(crate) async fn run(ctx: &Ctx, cmd: FlavorCommand) -> Result<(), ClientError> {
    match cmd {
        FlavorCommand::Common(verb) => ctx.common::<Flavor>(verb).await,
        FlavorCommand::Create(a) => {
            let spec = FlavorSpec {
                vcpus: a.vcpus,
                memory_mib: a.memory_mib,
                disk_gib: a.disk_gib,
                gpus: a.gpus,
            };
            ctx.create_print::<Flavor>(&a.name, spec).await
        }
    }
}
