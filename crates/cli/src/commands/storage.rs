//! `yunhan storage status`: every host's storage pools (admin).

use clap::Subcommand;
use serde::Serialize;
use yunhan_model::{Host, PoolReport};

use crate::client::{Answer, ClientError};
use crate::ctx::Ctx;
use crate::kind::Obj;
use crate::output::{bytes, col, print_all, Column, Format};

/// Storage pools (admin)
#[derive(Subcommand, Debug, Clone)]
pub enum PoolCommand {
    /// Each host's pools: capacity, logical allocation, physical use,
    /// overcommit, redundancy, health and the ≥ 80 % warning
    Status,
}

/// A row of `storage status`: a host's pool report, and the host (its JSON
/// is the report with `host` added).
#[derive(Serialize)]
struct PoolRow {
    #[serde(flatten)]
    pool: PoolReport,
    host: String,
}

const COLUMNS: &[Column<PoolRow>] = &[
    col!("HOST", host),
    col!("POOL", pool.name),
    col!("DRIVER", pool.driver),
    bytes!("CAPACITY", pool.capacity_bytes),
    bytes!("LOGICAL", pool.logical_allocated_bytes),
    bytes!("PHYSICAL", pool.physical_used_bytes),
    Column {
        header: "USED",
        get: |v| format!("{:.0}%", v.pool.used_ratio * 100.0),
    },
    Column {
        header: "OVERCOMMIT",
        get: |v| format!("{:.2}", v.pool.overcommit_ratio),
    },
    Column {
        header: "WARNING",
        get: |v| {
            if v.pool.warning {
                "physical use ≥ 80%".into()
            } else {
                "-".into()
            }
        },
    },
    col!("REDUNDANCY", pool.redundancy),
    col!("HEALTH", pool.health),
    col!("MESSAGE", pool.message),
];

pub(crate) async fn run(ctx: &Ctx, cmd: PoolCommand) -> Result<(), ClientError> {
    match cmd {
        PoolCommand::Status => status(ctx).await,
    }
}

async fn status(ctx: &Ctx) -> Result<(), ClientError> {
    let rows = rows(ctx.client.list_as("/v1/hosts").await?);
    let warn = rows.iter().any(|p| p.pool.warning);
    print_all(ctx.format, COLUMNS, &rows);
    if warn && ctx.format == Format::Table {
        eprintln!("warning: a pool's physical use is at or above 80 % of its capacity; add capacity or free space");
    }
    Ok(())
}

/// Every pool of every host.
fn rows(hosts: Vec<Obj<Host>>) -> Vec<Answer<PoolRow>> {
    hosts
        .into_iter()
        .flat_map(|h| {
            let host = h.value.metadata.name;
            let pools = h.value.status.pools.into_iter();
            pools.map(move |pool| {
                let host = host.clone();
                Answer::made(PoolRow { pool, host })
            })
        })
        .collect()
}

/// The table of `hosts`' pools.
#[cfg(test)]
pub(crate) fn table_of(hosts: Vec<Obj<Host>>) -> String {
    crate::output::table(COLUMNS, rows(hosts).iter().map(|r| &r.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// `-o json` prints each pool as the server wrote it, with its host added.
    #[test]
    fn pool_rows_are_the_reports_with_their_host() {
        let all: Value = serde_json::from_str(include_str!("testdata/objects.json")).unwrap();
        let raw_hosts = all["hosts"].as_array().unwrap();
        let hosts = raw_hosts
            .iter()
            .map(|h| Answer::read(h.clone()).unwrap())
            .collect();
        let mut want = Vec::new();
        for h in raw_hosts {
            for p in h["status"]["pools"].as_array().into_iter().flatten() {
                let mut p = p.clone();
                p["host"] = h["metadata"]["name"].clone();
                want.push(p);
            }
        }
        let got: Vec<Value> = rows(hosts).into_iter().map(|r| r.raw).collect();
        assert_eq!(
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&want).unwrap()
        );
    }
}
