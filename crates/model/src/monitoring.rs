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
    /// The host whose history answered (an instance's current host); several, comma
    /// separated, when the series are sums over hosts (an elastic IP on the address of a
    /// load balancer with replicas).
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

/// Series of one resource read from several hosts' histories → one series per name
/// (in the order first seen), each slot's value the sum of the hosts' values for it.
pub fn sum_series(series: Vec<MetricSeries>) -> Vec<MetricSeries> {
    let mut out: Vec<MetricSeries> = Vec::new();
    let mut slots: Vec<std::collections::BTreeMap<u64, f64>> = Vec::new();
    for s in series {
        let i = match out.iter().position(|o| o.name == s.name) {
            Some(i) => i,
            None => {
                out.push(MetricSeries {
                    points: Vec::new(),
                    ..s.clone()
                });
                slots.push(Default::default());
                out.len() - 1
            }
        };
        for (t, v) in s.points {
            *slots[i].entry(t).or_default() += v;
        }
    }
    for (o, points) in out.iter_mut().zip(slots) {
        o.points = points.into_iter().collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series(name: &str, points: &[(u64, f64)]) -> MetricSeries {
        MetricSeries {
            name: name.into(),
            unit: metric_unit(name).into(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn series_of_several_hosts_add_up_slot_by_slot() {
        let summed = sum_series(vec![
            series("rx_bytes_per_second", &[(10, 1.0), (20, 2.0)]),
            series("tx_bytes_per_second", &[(10, 5.0)]),
            series("rx_bytes_per_second", &[(20, 3.0), (30, 4.0)]),
        ]);
        assert_eq!(
            summed,
            [
                series("rx_bytes_per_second", &[(10, 1.0), (20, 5.0), (30, 4.0)]),
                series("tx_bytes_per_second", &[(10, 5.0)]),
            ]
        );
    }

    proptest! {
        /// One host's series are unchanged; whatever the hosts, each name's total is the
        /// sum of its parts and its slots are in order.
        #[test]
        fn summing_keeps_totals_and_order(
            hosts in prop::collection::vec(
                prop::collection::btree_map(0u64..20, 0u32..1000, 0..8), 1..4)
        ) {
            let one = |h: &std::collections::BTreeMap<u64, u32>| {
                series("tx_bytes_per_second", &h.iter().map(|(t, v)| (*t * 10, f64::from(*v))).collect::<Vec<_>>())
            };
            prop_assert_eq!(sum_series(vec![one(&hosts[0])]), vec![one(&hosts[0])]);
            let summed = sum_series(hosts.iter().map(one).collect());
            let total: f64 = summed.iter().flat_map(|s| &s.points).map(|p| p.1).sum();
            let want: f64 = hosts.iter().flat_map(|h| h.values()).map(|v| f64::from(*v)).sum();
            prop_assert_eq!(total, want);
            prop_assert!(summed.iter().all(|s| s.points.windows(2).all(|w| w[0].0 < w[1].0)));
        }
    }

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
