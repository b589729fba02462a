//! `yunhan vm metrics` and `yunhan host metrics`: a resource's series over a window
//! (`GET /v1/instances/{id}/metrics`, `GET /v1/hosts/{id}/metrics`), drawn as one small
//! chart per series, or the points with `-o json`.

use clap::Args;
use yunhan_model::{Kind, MetricSeries, MetricsAnswer};

use crate::client::ClientError;
use crate::commands::events::parse_since;
use crate::ctx::Ctx;
use crate::kind::{path_of, with_query};
use crate::output::{print_json, Format};

/// The window and the series of `vm metrics` / `host metrics`.
#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// The VM's or host's name or id
    pub name: String,
    /// How far back: 30s, 10m, 2h, 7d or seconds; points are 10 s apart within the last
    /// hour, 1 min within a day, 10 min up to a month [default: 1h]
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<String>,
    /// Only series whose names start with these, comma-separated: cpu, memory, disk, nic
    /// (VMs); cpu, memory, load, disk, net, pool (hosts)
    #[arg(long, value_name = "NAMES")]
    pub series: Option<String>,
}

/// Prints `K`'s metrics: a chart per series, or the API's JSON.
pub(crate) async fn show<K: Kind>(ctx: &Ctx, a: &MetricsArgs) -> Result<(), ClientError> {
    let params = [("since", &a.since), ("series", &a.series)];
    let path = with_query(&format!("{}/metrics", path_of::<K>(&a.name)), &params);
    let answer = ctx.client.get_as::<MetricsAnswer>(&path).await?;
    match ctx.format {
        Format::Json => print_json(&answer.raw),
        Format::Table => print!("{}", chart(&answer.value, CHART_WIDTH)),
    }
    Ok(())
}

/// Columns of a series' chart.
const CHART_WIDTH: usize = 48;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One line per series: its name, a sparkline of its points (scaled from 0, or from its
/// minimum when it goes below 0), and its last, average and highest value (pure).
pub(crate) fn chart(a: &MetricsAnswer, width: usize) -> String {
    let host = a.host.as_deref().unwrap_or("-");
    let mut out = format!(
        "{} on {host}: {} points of {} s\n",
        a.name,
        a.series.iter().map(|s| s.points.len()).max().unwrap_or(0),
        a.step
    );
    if a.series.is_empty() {
        out.push_str("no samples yet (the host collects every 10 s)\n");
        return out;
    }
    let name_width = a.series.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &a.series {
        let line = sparkline(s, width);
        let stats = summary(s);
        out.push_str(&format!(
            "{:<name_width$}  {line:<width$}  {stats}\n",
            s.name
        ));
    }
    out
}

/// The points averaged into at most `width` columns, as bars.
fn sparkline(s: &MetricSeries, width: usize) -> String {
    let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let per = values.len().div_ceil(width);
    let columns: Vec<f64> = (values.chunks(per))
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect();
    let low = columns.iter().copied().fold(0.0, f64::min);
    let high = columns.iter().copied().fold(f64::MIN, f64::max);
    let span = high - low;
    (columns.iter())
        .map(|v| {
            let level = if span > 0.0 { (v - low) / span } else { 0.0 };
            BARS[((level * 7.0).round() as usize).min(7)]
        })
        .collect()
}

/// `last 12.5 % · avg 10 % · max 30 %` in the series' unit, humanised.
fn summary(s: &MetricSeries) -> String {
    let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
    let Some(last) = values.last() else {
        return "no points".into();
    };
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let v = |x: f64| human(x, &s.unit);
    format!("last {} · avg {} · max {}", v(*last), v(avg), v(max))
}

/// A value in its unit: percent with one decimal, bytes in KiB/MiB/GiB.
fn human(v: f64, unit: &str) -> String {
    let scaled = |v: f64, suffix: &str| {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = v;
        let mut i = 0;
        while v.abs() >= 1024.0 && i < units.len() - 1 {
            v /= 1024.0;
            i += 1;
        }
        format!("{v:.1} {}{suffix}", units[i])
    };
    match unit {
        "percent" => format!("{v:.1} %"),
        "bytes" => scaled(v, ""),
        "bytes/s" => scaled(v, "/s"),
        "" => format!("{v:.2}"),
        other => format!("{v:.1} {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, unit: &str, values: &[f64]) -> MetricSeries {
        MetricSeries {
            name: name.into(),
            unit: unit.into(),
            points: (values.iter().enumerate())
                .map(|(i, v)| (1_700_000_000 + 10 * i as u64, *v))
                .collect(),
        }
    }

    #[test]
    fn each_series_is_a_sparkline_with_its_last_average_and_highest_value() {
        let answer = MetricsAnswer {
            id: "ins-1".into(),
            name: "web1".into(),
            host: Some("node-1".into()),
            from: 1_700_000_000,
            to: 1_700_000_600,
            step: 10,
            series: vec![
                series("cpu_percent", "percent", &[2.0, 3.0, 95.0, 99.0, 98.0, 4.0]),
                series(
                    "disk_write_bytes_per_second",
                    "bytes/s",
                    &[0.0, 5_242_880.0, 0.0],
                ),
                series("memory_used_bytes", "bytes", &[1e8, 1e8]),
                series("nic/nic-1/rx_packets_per_second", "packets/s", &[]),
            ],
        };
        insta::assert_snapshot!(chart(&answer, 6));
    }

    #[test]
    fn long_windows_are_averaged_into_the_width() {
        let s = series("cpu_percent", "percent", &[0.0; 100]);
        assert!(sparkline(&s, 48).chars().count() <= 48);
        let s = series("cpu_percent", "percent", &[1.0; 10]);
        assert_eq!(sparkline(&s, 48), "█".repeat(10), "scaled from 0");
    }

    #[test]
    fn an_empty_answer_says_why() {
        let answer = MetricsAnswer {
            name: "web1".into(),
            ..Default::default()
        };
        assert!(chart(&answer, 10).contains("no samples yet"));
    }
}
