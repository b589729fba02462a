//! `yunhan subnet …`: subnets of a VPC.

use clap::Args;
use yunhan_model::network::{Subnet, SubnetSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{col, with_phase, Column};

#[derive(Args, Debug, Clone)]
pub struct SubnetCreate {
    pub name: String,
    /// The VPC (name or id)
    #[arg(long)]
    pub vpc: String,
    /// A range inside the VPC's, not overlapping its other subnets, e.g. 10.10.1.0/24
    #[arg(long)]
    pub cidr: String,
}

impl Shown for Subnet {
    const NOUN: &'static str = "subnet";
    const COLUMNS: &'static [Column<Doc<Subnet>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("CIDR", spec.cidr),
        col!("GATEWAY", status.gateway_ip),
        col!("VPC", spec.vpc),
    ];
}

impl Create for SubnetCreate {
    type Kind = Subnet;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let spec = SubnetSpec {
            vpc: self.vpc,
            cidr: self.cidr,
        };
        ctx.create_print::<Subnet>(&self.name, spec).await
    }
}
