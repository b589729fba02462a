//! `yunhan vpc …`: isolated private networks.

use clap::{Args, Subcommand};
use yunhan_model::network::{Vpc, VpcSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, with_phase, Column};

/// VPCs: isolated private networks spanning hosts (one VXLAN segment each)
///
/// Example:
///   yunhan vpc create net1 --cidr 10.10.0.0/16
///   yunhan subnet create s1 --vpc net1 --cidr 10.10.1.0/24
///   yunhan vm create a --image tiny --flavor tiny --subnet s1 --wait
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum VpcCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(VpcCreate),
}

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

pub(crate) async fn run(ctx: &Ctx, cmd: VpcCommand) -> Result<(), ClientError> {
    match cmd {
        VpcCommand::Common(verb) => ctx.common::<Vpc>(verb).await,
        VpcCommand::Create(a) => {
            ctx.create_print::<Vpc>(&a.name, VpcSpec { cidr: a.cidr })
                .await
        }
    }
}
