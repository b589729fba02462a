//! What an alarm rule watches, observed once per pass: a VM metric's latest sample from
//! the metrics endpoint of each VM's host (asked once per host per pass), or a platform
//! condition read from the store.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use yunhan_metrics::HostMetrics;
use yunhan_model::{AlarmRule, Doc, Host, HostPhase, Instance, InstancePhase, Observation};
use yunhan_store::events::EventLog;
use yunhan_store::objects::{ObjectError, Objects};

/// How far back `platform:ha_failovers` counts.
const FAILOVER_WINDOW: Duration = Duration::from_secs(600);

/// What one pass has read so far.
#[derive(Default)]
pub(super) struct Seen {
    http: reqwest::Client,
    instances: Option<Vec<Doc<Instance>>>,
    hosts: Option<Vec<Doc<Host>>>,
    /// Each host's latest samples, by series name (None: it did not answer).
    samples: HashMap<String, Option<BTreeMap<String, f64>>>,
}

impl Seen {
    /// The resources `rule` watches and their values, and why some cannot be watched.
    pub(super) async fn observe(
        &mut self,
        objects: &Objects,
        rule: &Doc<AlarmRule>,
    ) -> Result<(Vec<Observation>, String), ObjectError> {
        match rule.spec.metric.strip_prefix("platform:") {
            Some(condition) => Ok((self.platform(objects, condition).await?, String::new())),
            None => self.vms(objects, rule).await,
        }
    }

    async fn instances(&mut self, objects: &Objects) -> Result<&[Doc<Instance>], ObjectError> {
        if self.instances.is_none() {
            self.instances = Some(objects.list_all::<Instance>(None).await?);
        }
        Ok(self.instances.as_deref().unwrap_or_default())
    }

    async fn hosts(&mut self, objects: &Objects) -> Result<&[Doc<Host>], ObjectError> {
        if self.hosts.is_none() {
            self.hosts = Some(objects.list_all::<Host>(None).await?);
        }
        Ok(self.hosts.as_deref().unwrap_or_default())
    }

    /// The rule's VMs (named, or of its project with the selector's labels) and their
    /// latest value of the metric; a VM that does not run has none.
    async fn vms(
        &mut self,
        objects: &Objects,
        rule: &Doc<AlarmRule>,
    ) -> Result<(Vec<Observation>, String), ObjectError> {
        let project = rule.metadata.project.as_deref();
        let spec = &rule.spec;
        let watched: Vec<Doc<Instance>> = (self.instances(objects).await?.iter())
            .filter(|i| i.metadata.project.as_deref() == project)
            .filter(|i| {
                spec.instances.contains(&i.metadata.id)
                    || (!spec.selector.is_empty()
                        && (spec.selector.iter()).all(|(k, v)| i.metadata.labels.get(k) == Some(v)))
            })
            .cloned()
            .collect();
        let gone: Vec<&str> = (spec.instances.iter())
            .filter(|id| !watched.iter().any(|i| &i.metadata.id == *id))
            .map(String::as_str)
            .collect();
        let message = match gone.as_slice() {
            [] => String::new(),
            ids => format!("instances {} no longer exist", ids.join(", ")),
        };
        let mut observed = Vec::new();
        for vm in watched {
            let value = match (&vm.status.host, vm.status.phase) {
                (Some(host), InstancePhase::Running) => {
                    let series = format!("vm/{}/{}", vm.metadata.id, spec.metric);
                    self.samples_of(objects, host)
                        .await?
                        .and_then(|s| s.get(&series).copied())
                }
                _ => None,
            };
            observed.push(Observation {
                id: vm.metadata.id,
                name: vm.metadata.name,
                value,
            });
        }
        Ok((observed, message))
    }

    /// Host `host_id`'s latest samples, asked once per pass.
    async fn samples_of(
        &mut self,
        objects: &Objects,
        host_id: &str,
    ) -> Result<Option<&BTreeMap<String, f64>>, ObjectError> {
        if !self.samples.contains_key(host_id) {
            let fetched = self.fetch(objects, host_id).await?;
            self.samples.insert(host_id.to_owned(), fetched);
        }
        Ok(self.samples.get(host_id).and_then(Option::as_ref))
    }

    async fn fetch(
        &mut self,
        objects: &Objects,
        host_id: &str,
    ) -> Result<Option<BTreeMap<String, f64>>, ObjectError> {
        let http = self.http.clone();
        let hosts = self.hosts(objects).await?;
        let Some(host) = hosts.iter().find(|h| h.metadata.id == host_id) else {
            return Ok(None);
        };
        let Some((endpoint, token)) = objects.metrics_endpoint(host).await? else {
            return Ok(None);
        };
        let client = HostMetrics::new(http, &endpoint, &token);
        Ok(client
            .latest("vm/")
            .await
            .ok()
            .map(|a| (a.samples.into_iter()).map(|s| (s.name, s.value)).collect()))
    }

    /// The resources of a `platform:` condition and their values.
    async fn platform(
        &mut self,
        objects: &Objects,
        condition: &str,
    ) -> Result<Vec<Observation>, ObjectError> {
        let hosts = self.hosts(objects).await?;
        Ok(match condition {
            "host_not_ready" => (hosts.iter())
                .map(|h| {
                    // A host that was never Ready yet (just registered) is not down.
                    let down = h.status.phase == HostPhase::NotReady && h.status.since.is_some();
                    obs(&h.metadata.id, &h.metadata.name, f64::from(u8::from(down)))
                })
                .collect(),
            "pool_used_percent" => pools(hosts, |p| Some(p.used_ratio * 100.0)),
            "ceph_unhealthy" => pools(hosts, |p| {
                (p.driver == "ceph")
                    .then(|| f64::from(u8::from(!p.health.starts_with("HEALTH_OK"))))
            }),
            "ha_failovers" => vec![obs("cloud", "cloud", failovers(objects).await? as f64)],
            "vm_start_failures" => (self.instances(objects).await?.iter())
                .filter(|i| i.spec.running)
                .map(|i| {
                    let failed = i.status.phase == InstancePhase::Failed;
                    obs(
                        &i.metadata.id,
                        &i.metadata.name,
                        f64::from(u8::from(failed)),
                    )
                })
                .collect(),
            _ => Vec::new(),
        })
    }
}

fn obs(id: &str, name: &str, value: f64) -> Observation {
    Observation {
        id: id.to_owned(),
        name: name.to_owned(),
        value: Some(value),
    }
}

/// Each pool once (a Ceph pool is reported by every host that serves it), valued by
/// `value` (None: not a pool this condition watches).
fn pools(
    hosts: &[Doc<Host>],
    value: impl Fn(&yunhan_model::PoolReport) -> Option<f64>,
) -> Vec<Observation> {
    let mut seen = BTreeMap::new();
    for h in hosts {
        for p in &h.status.pools {
            let (id, name) = if p.driver == "ceph" {
                (p.name.clone(), p.name.clone())
            } else {
                (
                    format!("{}/{}", h.metadata.id, p.name),
                    format!("{}/{}", h.metadata.name, p.name),
                )
            };
            if let Some(v) = value(p) {
                seen.entry(id.clone()).or_insert_with(|| obs(&id, &name, v));
            }
        }
    }
    seen.into_values().collect()
}

/// HA failovers recorded in the audit trail within [`FAILOVER_WINDOW`].
async fn failovers(objects: &Objects) -> Result<usize, ObjectError> {
    let since = SystemTime::now() - FAILOVER_WINDOW;
    let events = EventLog::new(objects.store().clone())
        .list(None, since, 1000)
        .await?;
    Ok(events.iter().filter(|e| e.action == "failover").count())
}
