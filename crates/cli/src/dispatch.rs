//! The command tree (`yunhan <noun> <verb>`) and the one match that hands
//! each command to its module.

use clap::Subcommand;

use crate::client::ClientError;
use crate::commands::*;
use crate::ctx::{ClientArgs, Ctx, Verbs};

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Projects (tenants) and their quotas
    #[command(subcommand)]
    Project(Verbs<project::ProjectCreate>),
    #[command(subcommand)]
    User(user::UserCommand),
    /// API keys: bearer tokens for the API and this CLI
    #[command(subcommand)]
    Key(Verbs<api_key::KeyCreate>),
    /// Flavors: instance sizes
    #[command(subcommand)]
    Flavor(Verbs<flavor::FlavorCreate>),
    /// Images that VMs boot from
    #[command(subcommand)]
    Image(Verbs<image::ImageCreate>),
    #[command(subcommand, alias = "instance")]
    Vm(vm::VmCommand),
    /// Placement groups: spread VMs over hosts (anti-affinity)
    #[command(subcommand, name = "placement-group", alias = "pg")]
    PlacementGroup(Verbs<placement_group::PlacementGroupCreate>),
    /// Show who the configured token belongs to
    Whoami,
    Console(web_console::ConsoleArgs),
    Events(events::EventsArgs),
    #[command(subcommand)]
    Alarm(alarm::AlarmCommand),
    Usage(usage::UsageArgs),
    #[command(subcommand, name = "price-list")]
    PriceList(price_list::PriceListCommand),
    /// VPCs: isolated private networks spanning hosts (one VXLAN segment each)
    ///
    /// Example:
    ///   yunhan vpc create net1 --cidr 10.10.0.0/16
    ///   yunhan subnet create s1 --vpc net1 --cidr 10.10.1.0/24
    ///   yunhan vm create a --image tiny --flavor tiny --subnet s1 --wait
    #[command(subcommand, verbatim_doc_comment)]
    Vpc(Verbs<vpc::VpcCreate>),
    /// Subnets of a VPC; the first address is the gateway (a distributed router)
    ///
    /// Example:
    ///   yunhan subnet create s1 --vpc net1 --cidr 10.10.1.0/24
    #[command(subcommand, verbatim_doc_comment)]
    Subnet(Verbs<subnet::SubnetCreate>),
    #[command(subcommand)]
    Nic(nic::NicCommand),
    #[command(subcommand, name = "sg", alias = "security-group")]
    Sg(security_group::SgCommand),
    /// External networks: where elastic IPs come from, and how hosts reach them (admin)
    ///
    /// A host has a leg on a network when its agent reports the network's device;
    /// elastic IPs and NAT gateways are realised only on hosts with a leg.
    /// `yunhan up` makes `public`, a network on the host itself.
    ///
    /// Example:
    ///   yunhan external-network create provider --cidr 203.0.113.0/24 --device eth1 \
    ///       --pool 203.0.113.10-203.0.113.99
    ///   yunhan external-network create lab --cidr 198.51.100.0/24 --host-gateway
    #[command(
        subcommand,
        verbatim_doc_comment,
        name = "external-network",
        alias = "eip-pool"
    )]
    ExternalNetwork(Verbs<external_network::ExternalNetworkCreate>),
    #[command(subcommand, name = "eip", alias = "elastic-ip")]
    Eip(eip::EipCommand),
    /// NAT gateways: SNAT a VPC (or some subnets) behind an elastic IP, plus port forwards
    ///
    /// Example:
    ///   yunhan natgw create gw --vpc net1 --eip gw-ip --dnat tcp:8080:10.10.1.5:80
    #[command(
        subcommand,
        verbatim_doc_comment,
        name = "natgw",
        alias = "nat-gateway"
    )]
    Natgw(Verbs<nat_gateway::NatgwCreate>),
    /// Virtual IPs that several NICs of a subnet may announce (keepalived-style failover)
    ///
    /// Example:
    ///   yunhan vip create db-vip --subnet s1 --nic db1-nic0 --nic db2-nic0
    #[command(subcommand, verbatim_doc_comment)]
    Vip(Verbs<vip::VipCreate>),
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
        Command::Project(c) => c.run(ctx).await,
        Command::User(c) => user::run(ctx, c).await,
        Command::Key(c) => c.run(ctx).await,
        Command::Flavor(c) => c.run(ctx).await,
        Command::Image(c) => c.run(ctx).await,
        Command::Vm(c) => vm::run(ctx, c).await,
        Command::PlacementGroup(c) => c.run(ctx).await,
        Command::Whoami => whoami::run(ctx).await,
        Command::Console(a) => web_console::run(ctx, a).await,
        Command::Events(a) => events::run(ctx, a).await,
        Command::Alarm(c) => alarm::run(ctx, c).await,
        Command::Usage(a) => usage::run(ctx, a).await,
        Command::PriceList(c) => price_list::run(ctx, c).await,
        Command::Vpc(c) => c.run(ctx).await,
        Command::Subnet(c) => c.run(ctx).await,
        Command::Nic(c) => nic::run(ctx, c).await,
        Command::Sg(c) => security_group::run(ctx, c).await,
        Command::ExternalNetwork(c) => c.run(ctx).await,
        Command::Eip(c) => eip::run(ctx, c).await,
        Command::Natgw(c) => c.run(ctx).await,
        Command::Vip(c) => c.run(ctx).await,
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
