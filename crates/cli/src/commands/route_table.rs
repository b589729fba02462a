//! `yunhan route-table …` (`rt`): route tables, their routes and subnets.

use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use yunhan_model::network::{
    Route, RouteTable, RouteTableSpec, RouteTargetKind, DEFAULT_ROUTE_PRIORITY,
};
use yunhan_model::{Doc, Subnet};

use crate::client::{Answer, ClientError};
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, join, print_all, with_phase, Column};

/// Route tables: where some subnets' traffic goes
///
/// Traffic of a subnet in a table that leaves the subnet follows the table's routes
/// (longest prefix first, then the lowest priority); the VPC's own range stays local
/// unless a more specific route claims it. A NIC a route targets may forward (send
/// from other addresses); while it runs nowhere its destinations are dropped.
///
/// Example (a VM "fw" with NICs in two VPCs joins them):
///   yunhan route-table create rt-a --vpc net1 --subnet s1
///   yunhan route-table route add rt-a --destination 10.20.0.0/16 --nic fw-nic0
///   yunhan route-table route add rt-a --destination 0.0.0.0/0 --nat-gateway
///   yunhan route-table route list rt-a
///   yunhan route-table route delete rt-a 1
///   yunhan route-table associate rt-a --subnet s2
///   yunhan route-table disassociate rt-a --subnet s2
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum RouteTableCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(RtCreate),
    /// Put subnets in the table (a subnet is in at most one)
    Associate {
        name: String,
        /// A subnet of the table's VPC (repeatable)
        #[arg(long = "subnet", value_name = "SUBNET", required = true)]
        subnets: Vec<String>,
    },
    /// Take subnets out of the table (their traffic takes the VPC's own way)
    Disassociate {
        name: String,
        #[arg(long = "subnet", value_name = "SUBNET", required = true)]
        subnets: Vec<String>,
    },
    /// Routes of a table
    #[command(subcommand)]
    Route(RouteCommand),
}

#[derive(Args, Debug, Clone)]
pub struct RtCreate {
    pub name: String,
    /// The VPC (name or id)
    #[arg(long)]
    pub vpc: String,
    /// A subnet of the VPC whose traffic follows the table (repeatable)
    #[arg(long = "subnet", value_name = "SUBNET")]
    pub subnets: Vec<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RouteCommand {
    /// List a table's routes with their numbers
    #[command(alias = "ls")]
    List { table: String },
    /// Add a route
    Add(RouteAdd),
    /// Delete a route by its number ('yunhan route-table route list')
    #[command(alias = "rm")]
    Delete { table: String, index: usize },
}

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("target").required(true).args(["nic", "local", "nat_gateway", "external"])))]
pub struct RouteAdd {
    pub table: String,
    /// Where the route applies, an IPv4 CIDR (0.0.0.0/0: everything)
    #[arg(long)]
    pub destination: String,
    /// To a NIC of the VPC (an appliance that forwards)
    #[arg(long)]
    pub nic: Option<String>,
    /// Back to the VPC's own routing
    #[arg(long)]
    pub local: bool,
    /// To the VPC's NAT gateway (which then translates the table's subnets)
    #[arg(long)]
    pub nat_gateway: bool,
    /// Out through the sender's elastic IP
    #[arg(long)]
    pub external: bool,
    /// Between routes to one destination, the lowest wins
    #[arg(long, default_value_t = DEFAULT_ROUTE_PRIORITY)]
    pub priority: u32,
}

impl RouteAdd {
    fn route(self) -> Route {
        let target = match (&self.nic, self.nat_gateway, self.external) {
            (Some(_), _, _) => RouteTargetKind::Nic,
            (_, true, _) => RouteTargetKind::NatGateway,
            (_, _, true) => RouteTargetKind::External,
            _ => RouteTargetKind::Local,
        };
        Route {
            destination: self.destination,
            target,
            nic: self.nic,
            priority: self.priority,
        }
    }
}

impl Shown for RouteTable {
    const NOUN: &'static str = "route table";
    const COLUMNS: &'static [Column<Doc<RouteTable>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("VPC", spec.vpc),
        Column {
            header: "SUBNETS",
            get: |v| join(&v.spec.subnets),
        },
        Column {
            header: "ROUTES",
            get: |v| v.spec.routes.len().to_string(),
        },
    ];
}

/// A row of `route-table route list` (also its JSON).
#[derive(Serialize)]
struct RouteRow {
    index: usize,
    route: Route,
}

const ROUTE_COLUMNS: &[Column<RouteRow>] = &[
    col!("#", index),
    col!("DESTINATION", route.destination),
    Column {
        header: "TARGET",
        get: |v| match (&v.route.target, &v.route.nic) {
            (RouteTargetKind::Nic, Some(n)) => format!("nic {n}"),
            (RouteTargetKind::NatGateway, _) => "nat-gateway".into(),
            (RouteTargetKind::External, _) => "external".into(),
            _ => "local".into(),
        },
    },
    col!("PRIORITY", route.priority),
];

pub(crate) async fn run(ctx: &Ctx, cmd: RouteTableCommand) -> Result<(), ClientError> {
    match cmd {
        RouteTableCommand::Common(verb) => ctx.common::<RouteTable>(verb).await,
        RouteTableCommand::Create(a) => {
            let spec = RouteTableSpec {
                vpc: a.vpc,
                subnets: a.subnets,
                routes: Vec::new(),
            };
            ctx.create_print::<RouteTable>(&a.name, spec).await
        }
        RouteTableCommand::Associate { name, subnets } => {
            let add = |s: &mut RouteTableSpec| s.subnets.extend(subnets.iter().cloned());
            ctx.update_print::<RouteTable>(&name, add).await
        }
        RouteTableCommand::Disassociate { name, subnets } => {
            let mut gone = subnets.clone();
            for s in &subnets {
                gone.push(ctx.fetch::<Subnet>(s).await?.value.metadata.id);
            }
            let remove = |s: &mut RouteTableSpec| s.subnets.retain(|x| !gone.contains(x));
            ctx.update_print::<RouteTable>(&name, remove).await
        }
        RouteTableCommand::Route(RouteCommand::List { table }) => print_routes(ctx, &table).await,
        RouteTableCommand::Route(RouteCommand::Add(a)) => {
            let table = a.table.clone();
            let route = a.route();
            ctx.update_spec::<RouteTable>(&table, |s| {
                s.routes.push(route.clone());
                Ok(())
            })
            .await?;
            print_routes(ctx, &table).await
        }
        RouteTableCommand::Route(RouteCommand::Delete { table, index }) => {
            ctx.update_spec::<RouteTable>(&table, |s| {
                if index < s.routes.len() {
                    s.routes.remove(index);
                    Ok(())
                } else {
                    Err(ClientError::Usage(format!(
                        "table {table} has no route {index}; 'yunhan route-table route list {table}' shows them"
                    )))
                }
            })
            .await?;
            print_routes(ctx, &table).await
        }
    }
}

async fn print_routes(ctx: &Ctx, table: &str) -> Result<(), ClientError> {
    let v = ctx.fetch::<RouteTable>(table).await?;
    let rows: Vec<Answer<RouteRow>> = (v.value.spec.routes.into_iter().enumerate())
        .map(|(index, route)| Answer::made(RouteRow { index, route }))
        .collect();
    print_all(ctx.format, ROUTE_COLUMNS, &rows);
    Ok(())
}
