//! `yunhan placement-group …` (`pg`): spread VMs over hosts.

use clap::Args;
use yunhan_model::{Doc, PlacementGroup, PlacementGroupSpec, PlacementPolicy};

use crate::client::ClientError;
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{col, Column};

#[derive(Args, Debug, Clone)]
pub struct PlacementGroupCreate {
    pub name: String,
    /// hard: members never share a host; soft: they avoid it when they can
    #[arg(long, value_parser = ["hard", "soft"], default_value = "hard")]
    pub policy: String,
}

impl Shown for PlacementGroup {
    const NOUN: &'static str = "placement group";
    const COLUMNS: &'static [Column<Doc<PlacementGroup>>] = &[
        col!("NAME", metadata.name),
        col!("POLICY", spec.policy),
        col!("ID", metadata.id),
    ];
}

impl Create for PlacementGroupCreate {
    type Kind = PlacementGroup;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let policy = if self.policy == "soft" {
            PlacementPolicy::SoftAntiAffinity
        } else {
            PlacementPolicy::HardAntiAffinity
        };
        let spec = PlacementGroupSpec { policy };
        ctx.create_print::<PlacementGroup>(&self.name, spec).await
    }
}
