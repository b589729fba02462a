//! `yunhan price-list show|set`: the prices usage is billed at (`/v1/price-list`).

use clap::{Args, Subcommand};
use yunhan_model::PriceList;

use crate::client::{Answer, ClientError};
use crate::ctx::Ctx;
use crate::output::{print_json, table, Column, Format};

/// The price list: what an hour of each metered unit costs (admins set it)
///
/// `yunhan usage` prices what a project used with it. Prices are per unit-hour: a VM
/// with 2 vCPUs that runs 90 s uses 180 vCPU·s = 0.05 vCPU-hours. Until an admin sets
/// prices, everything costs 0.
///
/// Example:
///   yunhan price-list show
///   yunhan price-list set --currency EUR --vcpu-hour 0.02 --memory-gib-hour 0.005
///   yunhan price-list set --volume-gib-hour 0.0001 --pool-gib-hour ssd=0.0003
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum PriceListCommand {
    /// Show the prices
    Show,
    /// Change some prices (the others stay as they are; admins only)
    Set(SetArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct SetArgs {
    /// The currency label (USD, EUR, credits, …)
    #[arg(long)]
    pub currency: Option<String>,
    /// Per vCPU-hour of a running VM
    #[arg(long, value_name = "PRICE")]
    pub vcpu_hour: Option<f64>,
    /// Per GiB-hour of a running VM's memory
    #[arg(long, value_name = "PRICE")]
    pub memory_gib_hour: Option<f64>,
    /// Per GiB-hour of volume, in pools without a price of their own
    #[arg(long, value_name = "PRICE")]
    pub volume_gib_hour: Option<f64>,
    /// Per GiB-hour of volume in one pool: POOL=PRICE (repeatable)
    #[arg(long, value_name = "POOL=PRICE", value_parser = pool_price)]
    pub pool_gib_hour: Vec<(String, f64)>,
    /// Per GiB-hour of snapshot
    #[arg(long, value_name = "PRICE")]
    pub snapshot_gib_hour: Option<f64>,
    /// Per hour an elastic IP is held
    #[arg(long, value_name = "PRICE")]
    pub eip_hour: Option<f64>,
    /// Per Mbit/s of an elastic IP's bandwidth cap, per hour
    #[arg(long, value_name = "PRICE")]
    pub eip_mbit_hour: Option<f64>,
    /// Per hour a load balancer exists
    #[arg(long, value_name = "PRICE")]
    pub lb_hour: Option<f64>,
    /// Per GiB stored in buckets, per hour
    #[arg(long, value_name = "PRICE")]
    pub bucket_gib_hour: Option<f64>,
}

fn pool_price(s: &str) -> Result<(String, f64), String> {
    let bad = || format!("{s:?} is not POOL=PRICE, e.g. ssd=0.0003");
    let (pool, price) = s.split_once('=').ok_or_else(bad)?;
    let price = price.parse().map_err(|_| bad())?;
    if pool.is_empty() {
        return Err(bad());
    }
    Ok((pool.to_string(), price))
}

/// `prices` with the changes `a` asks for.
fn edited(mut prices: PriceList, a: SetArgs) -> PriceList {
    let set = |field: &mut f64, v: Option<f64>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    if let Some(c) = a.currency {
        prices.currency = c;
    }
    set(&mut prices.vcpu_hour, a.vcpu_hour);
    set(&mut prices.memory_gib_hour, a.memory_gib_hour);
    set(&mut prices.volume_gib_hour, a.volume_gib_hour);
    set(&mut prices.snapshot_gib_hour, a.snapshot_gib_hour);
    set(&mut prices.eip_hour, a.eip_hour);
    set(&mut prices.eip_mbit_hour, a.eip_mbit_hour);
    set(&mut prices.lb_hour, a.lb_hour);
    set(&mut prices.bucket_gib_hour, a.bucket_gib_hour);
    prices.volume_gib_hour_by_pool.extend(a.pool_gib_hour);
    prices
}

/// The price list as rows of (item, price per hour).
fn rows(p: &PriceList) -> Vec<(String, String)> {
    let mut rows: Vec<(String, f64)> = vec![
        ("vCPU".into(), p.vcpu_hour),
        ("memory GiB".into(), p.memory_gib_hour),
        ("volume GiB".into(), p.volume_gib_hour),
    ];
    for (pool, price) in &p.volume_gib_hour_by_pool {
        rows.push((format!("volume GiB in {pool}"), *price));
    }
    rows.extend([
        ("snapshot GiB".into(), p.snapshot_gib_hour),
        ("elastic IP".into(), p.eip_hour),
        ("elastic IP Mbit/s cap".into(), p.eip_mbit_hour),
        ("load balancer".into(), p.lb_hour),
        ("bucket GiB".into(), p.bucket_gib_hour),
    ]);
    (rows.into_iter())
        .map(|(item, price)| (item, format!("{price} {}", p.currency)))
        .collect()
}

const COLUMNS: &[Column<(String, String)>] = &[
    Column {
        header: "ITEM",
        get: |r| r.0.clone(),
    },
    Column {
        header: "PER HOUR",
        get: |r| r.1.clone(),
    },
];

pub(crate) fn table_of(p: &PriceList) -> String {
    table(COLUMNS, &rows(p))
}

fn print(format: Format, p: &Answer<PriceList>) {
    match format {
        Format::Json => print_json(&p.raw),
        Format::Table => print!("{}", table_of(&p.value)),
    }
}

pub(crate) async fn run(ctx: &Ctx, c: PriceListCommand) -> Result<(), ClientError> {
    let current: Answer<PriceList> = ctx.client.get_as("/v1/price-list").await?;
    let a = match c {
        PriceListCommand::Show => {
            print(ctx.format, &current);
            return Ok(());
        }
        PriceListCommand::Set(a) => a,
    };
    let new = edited(current.value, a);
    let put = reqwest::Method::PUT;
    let saved: Answer<PriceList> = ctx.client.send(put, "/v1/price-list", &new).await?;
    print(ctx.format, &saved);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dispatch::Command;
    use crate::testing::Cli;

    fn parse(line: &str) -> Result<PriceListCommand, clap::Error> {
        match Cli::line(line)?.command {
            Command::PriceList(c) => Ok(c),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn help_teaches() {
        let help = Cli::help("yunhan price-list --help");
        assert!(
            help.contains("Example:\n  yunhan price-list show"),
            "{help}"
        );
    }

    #[test]
    fn set_changes_only_what_it_names() {
        let line =
            "yunhan price-list set --vcpu-hour 0.02 --pool-gib-hour ssd=0.0003 --currency EUR";
        let PriceListCommand::Set(a) = parse(line).unwrap() else {
            panic!("not set")
        };
        let before = PriceList {
            lb_hour: 0.01,
            ..PriceList::default()
        };
        let after = edited(before, a);
        assert_eq!(after.vcpu_hour, 0.02);
        assert_eq!(after.lb_hour, 0.01);
        assert_eq!(after.currency, "EUR");
        assert_eq!(after.volume_gib_hour_by_pool["ssd"], 0.0003);
        for bad in ["ssd", "=1", "ssd=cheap"] {
            let e = parse(&format!("yunhan price-list set --pool-gib-hour {bad}")).unwrap_err();
            assert!(e.to_string().contains("is not POOL=PRICE"), "{bad}: {e}");
        }
        assert!(parse("yunhan price-list set --vcpu-hour free").is_err());
    }
}
