//! The latest sample of every VM, host and pool series in Prometheus' text format, for
//! `/metrics` (docs/monitoring.md): `yunhan_vm_<name>{project,instance,name,host}`
//! (and `nic` for per-NIC series), `yunhan_host_<name>{host}`,
//! `yunhan_pool_<name>{host,pool}`, and `yunhan_metrics_host_up{host}` (whether the
//! host's endpoint answered this scrape).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use futures::future::join_all;
use yunhan_metrics::wire::Sample;
use yunhan_model::{Host, Instance};

use crate::AppState;

/// What one host's endpoint answered: its name and its latest samples (`None`: it did
/// not answer).
pub(crate) struct HostSamples {
    pub host: String,
    pub samples: Option<Vec<Sample>>,
}

/// An instance's labels: (project, name).
pub(crate) type VmLabels = HashMap<String, (String, String)>;

/// Asks every host that publishes an endpoint for its latest samples, all at once.
pub(crate) async fn scrape(s: &AppState) -> crate::error::Result<String> {
    let hosts = s.objects.list_all::<Host>(None).await?;
    let vms: VmLabels = (s.objects.list_all::<Instance>(None).await?.into_iter())
        .map(|i| {
            let project = i.metadata.project.clone().unwrap_or_default();
            (i.metadata.id, (project, i.metadata.name))
        })
        .collect();
    let asks = (hosts.iter().filter(|h| h.status.metrics.is_some())).map(|h| async move {
        let samples = match super::host_client(s, h).await {
            Ok(client) => client.latest("").await.ok().map(|a| a.samples),
            Err(_) => None,
        };
        HostSamples {
            host: h.metadata.name.clone(),
            samples,
        }
    });
    Ok(render(&join_all(asks).await, &vms))
}

/// The exposition of `hosts`' samples (pure).
pub(crate) fn render(hosts: &[HostSamples], vms: &VmLabels) -> String {
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in hosts {
        let up = if h.samples.is_some() { 1 } else { 0 };
        let line = format!(
            "yunhan_metrics_host_up{{host=\"{}\"}} {up}",
            escape(&h.host)
        );
        families
            .entry("metrics_host_up".into())
            .or_default()
            .push(line);
        for sample in h.samples.iter().flatten() {
            if let Some((family, labels)) = labelled(&sample.name, &h.host, vms) {
                let line = format!("yunhan_{family}{{{labels}}} {}", sample.value);
                families.entry(family).or_default().push(line);
            }
        }
    }
    let mut out = String::new();
    for (family, lines) in families {
        let _ = writeln!(out, "# HELP yunhan_{family} {}", help(&family));
        let _ = writeln!(out, "# TYPE yunhan_{family} gauge");
        lines.iter().for_each(|l| {
            out.push_str(l);
            out.push('\n');
        });
    }
    out
}

fn help(family: &str) -> String {
    if family == "metrics_host_up" {
        return "Whether the host's metrics endpoint answered this scrape.".into();
    }
    format!("The latest 10 s sample of {family} (docs/monitoring.md).")
}

/// A series' family (without `yunhan_`) and its labels; `None` for a VM the store no
/// longer has or a name of no known shape.
fn labelled(name: &str, host: &str, vms: &VmLabels) -> Option<(String, String)> {
    let host_label = format!("host=\"{}\"", escape(host));
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["vm", id, rest @ ..] => {
            let (project, vm_name) = vms.get(*id)?;
            let labels = format!(
                "project=\"{}\",instance=\"{}\",name=\"{}\",{host_label}",
                escape(project),
                escape(id),
                escape(vm_name)
            );
            match rest {
                [metric] => Some((format!("vm_{metric}"), labels)),
                ["nic", nic, metric] => Some((
                    format!("vm_nic_{metric}"),
                    format!("{labels},nic=\"{}\"", escape(nic)),
                )),
                _ => None,
            }
        }
        ["host", metric] => Some((format!("host_{metric}"), host_label)),
        ["pool", pool, metric] => Some((
            format!("pool_{metric}"),
            format!("{host_label},pool=\"{}\"", escape(pool)),
        )),
        _ => None,
    }
}

pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, value: f64) -> Sample {
        Sample {
            name: name.into(),
            t: 1_700_000_000,
            value,
        }
    }

    #[test]
    fn every_series_becomes_a_labelled_gauge_grouped_by_family() {
        let vms: VmLabels = [
            (
                "ins-1".to_string(),
                ("prj-a".to_string(), "web1".to_string()),
            ),
            (
                "ins-2".to_string(),
                ("prj-b".to_string(), "db\"1".to_string()),
            ),
        ]
        .into();
        let hosts = [
            HostSamples {
                host: "node-1".into(),
                samples: Some(vec![
                    sample("vm/ins-1/cpu_percent", 93.5),
                    sample("vm/ins-1/nic/nic-9/rx_packets_per_second", 1200.0),
                    sample("vm/ins-2/cpu_percent", 1.5),
                    sample("vm/ins-gone/cpu_percent", 50.0),
                    sample("host/load1", 0.7),
                    sample("pool/local/used_percent", 41.0),
                ]),
            },
            HostSamples {
                host: "node-2".into(),
                samples: None,
            },
        ];
        insta::assert_snapshot!(render(&hosts, &vms));
    }
}
