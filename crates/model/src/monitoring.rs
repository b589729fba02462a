//! What `GET /v1/instances/{id}/metrics` and `GET /v1/hosts/{id}/metrics` answer
//! (docs/monitoring.md): the points of a resource's series, read from the metric
//! history of the host that runs it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One series of a resource in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricSeries {
    /// E.g. `cpu_percent`, `memory_used_bytes`, `disk_write_bytes_per_second`,
    /// `nic/<nic id>/rx_packets_per_second`; for hosts also `pool/<pool>/used_percent`.
    pub name: String,
    /// `percent`, `bytes`, `bytes/s`, `ops/s`, `packets/s` or empty.
    pub unit: String,
    /// `[slot start (seconds since the epoch), mean over the slot]`, oldest first; a
    /// gap in collection is a gap here.
    pub points: Vec<(u64, f64)>,
}

/// A resource's metrics in a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricsAnswer {
    /// The instance's or host's id.
    pub id: String,
    pub name: String,
    /// The host whose history answered (an instance's current host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The window, seconds since the epoch.
    pub from: u64,
    pub to: u64,
    /// Seconds per point: 10 within the last hour, 60 within a day, else 600.
    pub step: u64,
    pub series: Vec<MetricSeries>,
}

/// The unit of a series, from its name's suffix.
pub fn metric_unit(name: &str) -> &'static str {
    const UNITS: [(&str, &str); 6] = [
        ("_percent", "percent"),
        ("_bytes_per_second", "bytes/s"),
        ("_ops_per_second", "ops/s"),
        ("_packets_per_second", "packets/s"),
        ("_bytes", "bytes"),
        ("load1", ""),
    ];
    (UNITS.iter())
        .find(|(suffix, _)| name.ends_with(suffix))
        .map_or("", |(_, unit)| unit)
}

/// Whether series `name` is one of those `wanted` asks for: a comma-separated list of
/// name prefixes (`cpu`, `memory`, `disk`, `nic`, `pool/ceph`…); empty asks for all.
pub fn metric_wanted(name: &str, wanted: &str) -> bool {
    wanted.is_empty()
        || (wanted.split(',').map(str::trim)).any(|w| !w.is_empty() && name.starts_with(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_come_from_the_suffix() {
        assert_eq!(metric_unit("cpu_percent"), "percent");
        assert_eq!(metric_unit("disk_write_bytes_per_second"), "bytes/s");
        assert_eq!(metric_unit("nic/nic-1/rx_packets_per_second"), "packets/s");
        assert_eq!(metric_unit("memory_used_bytes"), "bytes");
        assert_eq!(metric_unit("load1"), "");
    }

    #[test]
    fn a_selection_is_a_list_of_prefixes() {
        assert!(metric_wanted("cpu_percent", ""));
        assert!(metric_wanted("cpu_percent", "memory, cpu"));
        assert!(!metric_wanted("disk_read_ops_per_second", "cpu,nic"));
        assert!(!metric_wanted("cpu_percent", ","));
    }
}
