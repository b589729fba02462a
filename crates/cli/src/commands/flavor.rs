//! `yunhan flavor …`: instance sizes.

use clap::Args;
use yunhan_model::{Doc, Flavor, FlavorSpec};

use crate::client::ClientError;
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{col, Column};

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

impl Create for FlavorCreate {
    type Kind = Flavor;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let spec = FlavorSpec {
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
            gpus: self.gpus,
        };
        ctx.create_print::<Flavor>(&self.name, spec).await
    }
}
