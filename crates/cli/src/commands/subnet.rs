//! `yunhan subnet …`: subnets of a VPC.

use clap::{Args, Subcommand};
use yunhan_model::network::{Subnet, SubnetSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, with_phase, Column};

/// Subnets of a VPC; the first address is the gateway (a distributed router)
///
/// Example:
///   yunhan subnet create s1 --vpc net1 --cidr 10.10.1.0/24
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum SubnetCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(SubnetCreate),
}

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

pub(crate) async fn run(ctx: &Ctx, cmd: SubnetCommand) -> Result<(), ClientError> {
    match cmd {
        SubnetCommand::Common(verb) => ctx.common::<Subnet>(verb).await,
        SubnetCommand::Create(a) => {
            let spec = SubnetSpec {
                vpc: a.vpc,
                cidr: a.cidr,
            };
            ctx.create_print::<Subnet>(&a.name, spec).await
        }
    }
}
