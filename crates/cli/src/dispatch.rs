//! The command tree (`yunhan <noun> <verb>`) and the one match that hands
//! each command to its module.

use clap::Subcommand;

use crate::client::ClientError;
use crate::commands::*;
use crate::ctx::{ClientArgs, Ctx};

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    #[command(subcommand)]
    Host(host::HostCommand),
    #[command(subcommand)]
    Project(project::ProjectCommand),
    #[command(subcommand)]
    User(user::UserCommand),
    #[command(subcommand)]
    Key(api_key::KeyCommand),
    #[command(subcommand)]
    Flavor(flavor::FlavorCommand),
    #[command(subcommand)]
    Image(image::ImageCommand),
    #[command(subcommand, alias = "instance")]
    Vm(vm::VmCommand),
    #[command(subcommand, name = "placement-group", alias = "pg")]
    PlacementGroup(placement_group::PlacementGroupCommand),
    /// Show who the configured token belongs to
    Whoami,
    Console(web_console::ConsoleArgs),
    Events(events::EventsArgs),
    #[command(subcommand)]
    Alarm(alarm::AlarmCommand),
    Usage(usage::UsageArgs),
    #[command(subcommand, name = "price-list")]
    PriceList(price_list::PriceListCommand),
    #[command(subcommand)]
    Vpc(vpc::VpcCommand),
    #[command(subcommand)]
    Subnet(subnet::SubnetCommand),
    #[command(subcommand)]
    Nic(nic::NicCommand),
    #[command(subcommand, name = "sg", alias = "security-group")]
    Sg(security_group::SgCommand),
    #[command(subcommand, name = "external-network", alias = "eip-pool")]
    ExternalNetwork(external_network::ExternalNetworkCommand),
    #[command(subcommand, name = "eip", alias = "elastic-ip")]
    Eip(eip::EipCommand),
    #[command(subcommand, name = "natgw", alias = "nat-gateway")]
    Natgw(nat_gateway::NatgwCommand),
    #[command(subcommand)]
    Vip(vip::VipCommand),
    #[command(subcommand, name = "route-table", alias = "rt")]
    RouteTable(route_table::RouteTableCommand),
    #[command(subcommand, name = "lb", alias = "load-balancer")]
    Lb(load_balancer::LbCommand),
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    #[command(subcommand)]
    Storage(storage::PoolCommand),
    #[command(subcommand)]
    Bucket(bucket::BucketCommand),
    #[command(subcommand, name = "s3-key")]
    S3Key(s3_key::S3KeyCommand),
}

/// Runs one client command.
pub async fn run(args: ClientArgs, cmd: Command) -> Result<(), ClientError> {
    let ctx = &Ctx::new(&args)?;
    match cmd {
        Command::Host(c) => host::run(ctx, c).await,
        Command::Project(c) => project::run(ctx, c).await,
        Command::User(c) => user::run(ctx, c).await,
        Command::Key(c) => api_key::run(ctx, c).await,
        Command::Flavor(c) => flavor::run(ctx, c).await,
        Command::Image(c) => image::run(ctx, c).await,
        Command::Vm(c) => vm::run(ctx, c).await,
        Command::PlacementGroup(c) => placement_group::run(ctx, c).await,
        Command::Whoami => whoami::run(ctx).await,
        Command::Console(a) => web_console::run(ctx, a).await,
        Command::Events(a) => events::run(ctx, a).await,
        Command::Alarm(c) => alarm::run(ctx, c).await,
        Command::Usage(a) => usage::run(ctx, a).await,
        Command::PriceList(c) => price_list::run(ctx, c).await,
        Command::Vpc(c) => vpc::run(ctx, c).await,
        Command::Subnet(c) => subnet::run(ctx, c).await,
        Command::Nic(c) => nic::run(ctx, c).await,
        Command::Sg(c) => security_group::run(ctx, c).await,
        Command::ExternalNetwork(c) => external_network::run(ctx, c).await,
        Command::Eip(c) => eip::run(ctx, c).await,
        Command::Natgw(c) => nat_gateway::run(ctx, c).await,
        Command::Vip(c) => vip::run(ctx, c).await,
        Command::RouteTable(c) => route_table::run(ctx, c).await,
        Command::Lb(c) => load_balancer::run(ctx, c).await,
        Command::Volume(c) => volume::run(ctx, c).await,
        Command::Snapshot(c) => snapshot::run(ctx, c).await,
        Command::Storage(c) => storage::run(ctx, c).await,
        Command::Bucket(c) => bucket::run(ctx, c).await,
        Command::S3Key(c) => s3_key::run(ctx, c).await,
    }
}

/// A hint for an API error code, printed under the error.
pub fn hint(e: &ClientError) -> Option<&'static str> {
    use yunhan_model::ErrorCode::*;
    match e {
        ClientError::Api(api, _) => match api.code {
            Unauthenticated => {
                Some("check the token: ~/.config/yunhan/config.toml, --token or YUNHAN_TOKEN")
            }
            Forbidden => Some("this needs an admin token"),
            NotFound => Some("'yunhan <kind> list' shows what exists in your project"),
            RateLimited => Some("slow down, or ask an admin for a higher rate limit"),
            Unavailable => {
                Some("the control plane's store is unreachable; check 'yunhan server' logs")
            }
            _ => None,
        },
        _ => None,
    }
}
