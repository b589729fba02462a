//! `yunhan eip-pool …`: external address ranges elastic IPs come from (admin).

use clap::{Args, Subcommand};
use yunhan_model::network::{ElasticIpPool, ElasticIpPoolSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{cell, col, Column};

/// Elastic IP pools: external address ranges (admin)
///
/// Example:
///   yunhan eip-pool create public --cidr 203.0.113.0/24
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum PoolCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(PoolCreate),
}

#[derive(Args, Debug, Clone)]
pub struct PoolCreate {
    pub name: String,
    /// External addresses to hand out, e.g. 203.0.113.0/24
    #[arg(long)]
    pub cidr: String,
    /// The external gateway (not handed out) [default: the first address]
    #[arg(long)]
    pub gateway: Option<String>,
}

impl Shown for ElasticIpPool {
    const NOUN: &'static str = "elastic IP pool";
    const COLUMNS: &'static [Column<Doc<ElasticIpPool>>] = &[
        col!("NAME", metadata.name),
        col!("CIDR", spec.cidr),
        col!("GATEWAY", spec.gateway),
        col!("PHASE", status.phase),
        col!("ID", metadata.id),
        col!("MESSAGE", status.message),
    ];
    fn phase(doc: &Doc<ElasticIpPool>) -> String {
        cell(&doc.status.phase)
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: PoolCommand) -> Result<(), ClientError> {
    match cmd {
        PoolCommand::Common(verb) => ctx.common::<ElasticIpPool>(verb).await,
        PoolCommand::Create(a) => {
            let spec = ElasticIpPoolSpec {
                cidr: a.cidr,
                gateway: a.gateway,
            };
            ctx.create_print::<ElasticIpPool>(&a.name, spec).await
        }
    }
}
