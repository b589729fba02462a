//! `yunhan vpc …`: isolated private networks.

use clap::Args;
use yunhan_model::network::{Vpc, VpcSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{col, with_phase, Column};

#[derive(Args, Debug, Clone)]
pub struct VpcCreate {
    pub name: String,
    /// The VPC's range, e.g. 10.10.0.0/16
    #[arg(long)]
    pub cidr: String,
}

impl Shown for Vpc {
    const NOUN: &'static str = "VPC";
    const COLUMNS: &'static [Column<Doc<Vpc>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("CIDR", spec.cidr),
        col!("VNI", status.vni),
    ];
}

impl Create for VpcCreate {
    type Kind = Vpc;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let spec = VpcSpec { cidr: self.cidr };
        ctx.create_print::<Vpc>(&self.name, spec).await
    }
}
