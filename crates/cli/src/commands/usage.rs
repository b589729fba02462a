//! `yunhan usage`: a project's metered usage and its cost (`GET /v1/usage`).

use clap::Args;
use yunhan_model::{Meter, PricedLine, UsageReport};

use crate::client::{Answer, ClientError};
use crate::ctx::Ctx;
use crate::kind::with_query;
use crate::output::{print_json, table, Column, Format};

/// Usage: what a project's resources used, to the second, and what it costs
///
/// Metered from the real start, stop and delete times: vCPU- and memory-seconds of
/// running VMs, GiB-seconds of volumes (per pool) and snapshots, elastic-IP seconds and
/// bandwidth cap (Mbit·s), load-balancer seconds. Usage is rolled up hourly and priced
/// with the admin's price list (`yunhan price-list show`); the current hour is included.
/// Members see their own project, admins any (--project). The period is read in whole
/// hours: from the start of the hour --from is in.
///
/// Example:
///   yunhan usage                                  # this month so far
///   yunhan usage --project team-a --from 30d -o json
///   yunhan usage --from 2026-05-01T00:00:00Z --to 2026-06-01T00:00:00Z
#[derive(Args, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub struct UsageArgs {
    /// The project, by name or id (admins; members: their own) [default: yours]
    #[arg(long)]
    pub project: Option<String>,
    /// Start: RFC 3339, or a time ago like 90s, 10m, 1h, 30d [default: start of this month]
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End: RFC 3339, or a time ago [default: now]
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

/// `/v1/usage` with the arguments given, URL-encoded.
fn usage_path(a: &UsageArgs) -> String {
    let params = [("project", &a.project), ("from", &a.from), ("to", &a.to)];
    with_query("/v1/usage", &params)
}

/// A quantity for people: whole numbers without decimals, others with at most two.
fn quantity(q: f64) -> String {
    if q.fract() == 0.0 && q.abs() < 1e15 {
        format!("{q:.0}")
    } else {
        let s = format!("{q:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Each meter of a line, e.g. `180 vCPU·s, 135 GiB·s`.
fn meters(m: &yunhan_model::Meters) -> String {
    let parts: Vec<String> = (Meter::ALL.iter())
        .filter_map(|k| m.get(k).map(|q| format!("{} {}", quantity(*q), k.unit())))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

const COLUMNS: &[Column<PricedLine>] = &[
    Column {
        header: "RESOURCE",
        get: |l| l.line.name.clone(),
    },
    Column {
        header: "KIND",
        get: |l| l.line.kind.clone(),
    },
    Column {
        header: "POOL",
        get: |l| l.line.pool.clone().unwrap_or_else(|| "-".into()),
    },
    Column {
        header: "SECONDS",
        get: |l| match l.line.resource.is_empty() {
            true => "-".into(),
            false => l.line.seconds.to_string(),
        },
    },
    Column {
        header: "USAGE",
        get: |l| meters(&l.line.meters),
    },
    Column {
        header: "COST",
        get: |l| format!("{:.6}", l.cost),
    },
];

/// The table of a report, its last row the total (no resource: no seconds).
pub(crate) fn table_of(r: &UsageReport) -> String {
    let mut rows = r.lines.clone();
    rows.push(PricedLine {
        line: yunhan_model::UsageLine {
            resource: String::new(),
            kind: "-".into(),
            name: "TOTAL".into(),
            pool: None,
            seconds: 0,
            meters: r.totals.clone(),
        },
        cost: r.total_cost,
    });
    let head = format!(
        "project {}, {} to {}, in {}\n",
        r.project, r.from, r.to, r.currency
    );
    head + &table(COLUMNS, &rows)
}

pub(crate) async fn run(ctx: &Ctx, a: UsageArgs) -> Result<(), ClientError> {
    let r: Answer<UsageReport> = ctx.client.get_as(&usage_path(&a)).await?;
    match ctx.format {
        Format::Json => print_json(&r.raw),
        Format::Table => print!("{}", table_of(&r.value)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::dispatch::Command;
    use crate::testing::Cli;

    fn parse(line: &str) -> Result<(UsageArgs, Format), clap::Error> {
        let cli = Cli::line(line)?;
        match cli.command {
            Command::Usage(a) => Ok((a, cli.client.output)),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn help_teaches() {
        let help = Cli::help("yunhan usage --help");
        assert!(help.contains("Example:\n  yunhan usage "), "{help}");
        assert!(help.contains("price list"), "{help}");
    }

    /// The command of the contract, as it is typed.
    #[test]
    fn the_contract_parses() {
        let (a, format) = parse("yunhan usage --project team-a -o json").unwrap();
        assert_eq!(format, Format::Json);
        assert_eq!(usage_path(&a), "/v1/usage?project=team-a");
        let (a, _) =
            parse("yunhan usage --project team-a --from 2026-05-01T00:00:00+02:00 --to 1h")
                .unwrap();
        assert_eq!(
            usage_path(&a),
            "/v1/usage?project=team-a&from=2026-05-01T00%3A00%3A00%2B02%3A00&to=1h"
        );
        let (a, _) = parse("yunhan usage").unwrap();
        assert_eq!(usage_path(&a), "/v1/usage");
        assert!(Cli::try_parse_from(["yunhan", "usage", "--colour", "red"]).is_err());
    }

    #[test]
    fn quantities_read_well() {
        assert_eq!(quantity(90.0), "90");
        assert_eq!(quantity(67.5), "67.5");
        assert_eq!(quantity(0.333333), "0.33");
        assert_eq!(meters(&Default::default()), "-");
    }
}
