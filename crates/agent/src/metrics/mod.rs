//! Monitoring on this host (docs/monitoring.md): every [`INTERVAL`] the agent reads the
//! counters of its running VMs, of the host and of its storage pools, turns them into
//! samples, records them in the host's metric history (`<state dir>/metrics.redb`, the
//! `yunhan-metrics` crate) and serves history and latest samples on its metrics
//! endpoint, which it publishes in `Host.status.metrics` with its token in the store.
//!
//! Series: `vm/<instance id>/<name>` ([`rates::vm_samples`]), `host/<name>`
//! ([`rates::host_samples`]) and `pool/<pool>/<name>` (from the pool figures).

mod procfs;
mod rates;
mod read;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::sync::watch;
use yunhan_metrics::{History, Latest};
use yunhan_model::network::{ElasticIp, PLAN_PREFIX};
use yunhan_model::{
    Doc, Host, HostUsage, Instance, InstancePhase, LoadBalancer, PoolReport, Volume,
};
use yunhan_net::plan::HostPlan;
use yunhan_store::objects::{metrics_token_key, ObjectError, Objects};
use yunhan_store::StoreExt;

use crate::compute::Runtime;
use rates::{Counters, HostReading, VmReading, VmShape};

/// Samples recorded together: `(series, due time, value)`.
type Group = Vec<(String, u64, f64)>;

/// Seconds between collections: the finest slot of the history.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How often (seconds, a multiple of [`INTERVAL`]) the series of deleted objects are dropped.
const FORGET_EVERY_SECS: u64 = 60;
/// How often the history is written back to its file.
const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Where the metrics endpoint listens and how much history the host keeps.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// The endpoint's address (port 0: any free port). An unspecified address (0.0.0.0)
    /// is published as the host's address.
    pub listen: SocketAddr,
    /// The most series the history holds (each about 31.5 KB in memory and 32 KiB on
    /// disk; see docs/monitoring.md).
    pub max_series: usize,
}

impl Default for MetricsConfig {
    /// Any free port on loopback, 4,096 series (what `yunhan up` uses).
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_series: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    History(#[from] yunhan_metrics::HistoryError),
    #[error("metrics endpoint on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Objects(#[from] ObjectError),
}

/// One collection's readings, kept for the next one's rates.
struct Previous {
    /// When it was due.
    t: u64,
    vms: BTreeMap<String, VmReading>,
    host: HostReading,
    /// The listeners of the load balancers served here (their totals move with the load
    /// balancer, so a listener first seen here counts from its next reading).
    listeners: Counters,
    /// The elastic IPs realised here: the router's rules count from zero when made, so an
    /// address first seen here counts from zero (its traffic since it was bound or rebound).
    eips: Counters,
}

/// The collector: what one collection needs from the agent, and the previous readings.
pub struct Monitor {
    host_id: String,
    state_dir: PathBuf,
    netns: Option<String>,
    runtime: Arc<Runtime>,
    history: Arc<History>,
    latest: Arc<Latest>,
    /// The previous collection's readings.
    before: Option<Previous>,
    /// The endpoint's server, stopped with the monitor (it holds the history open).
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Where the monitor runs: the agent's host and what it knows of it.
pub struct Site {
    pub host_id: String,
    /// The address the control plane reaches the host at.
    pub host_address: String,
    pub state_dir: PathBuf,
    pub netns: Option<String>,
    pub runtime: Arc<Runtime>,
}

/// Runs the host's monitoring until `shutdown`. Monitoring never stops the agent: when it
/// cannot start (the history's file is still open, the endpoint's port is taken) it says
/// why and tries again every [`INTERVAL`].
pub async fn monitor(
    objects: Objects,
    site: Site,
    cfg: MetricsConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match Monitor::start(&objects, &site, &cfg).await {
            Ok(m) => return m.run(objects, shutdown).await,
            Err(e) => tracing::error!(error = %e, "monitoring cannot start; trying again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl Monitor {
    /// Opens the host's history, starts the endpoint and publishes it.
    async fn start(
        objects: &Objects,
        site: &Site,
        cfg: &MetricsConfig,
    ) -> Result<Monitor, MetricsError> {
        let path = site.state_dir.join("metrics.redb");
        let history = Arc::new(History::open(path, cfg.max_series, FLUSH_EVERY)?);
        let latest = Arc::new(Latest::default());
        let listener = (tokio::net::TcpListener::bind(cfg.listen).await).map_err(|source| {
            MetricsError::Listen {
                addr: cfg.listen,
                source,
            }
        })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MetricsError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let token = hex::encode(secret);
        let app = yunhan_metrics::router(history.clone(), latest.clone(), token.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
        // Made before it is published: dropped on a failure below, it stops the server.
        let monitor = Monitor {
            host_id: site.host_id.clone(),
            state_dir: site.state_dir.clone(),
            netns: site.netns.clone(),
            runtime: site.runtime.clone(),
            history,
            latest,
            before: None,
            server,
        };
        let endpoint = published(bound, &site.host_address);
        publish(objects, &site.host_id, &endpoint, &token).await?;
        tracing::info!(%endpoint, "metrics endpoint");
        Ok(monitor)
    }

    /// Collects every [`INTERVAL`] (on the interval's wall-clock boundaries, so each
    /// collection has a slot of its own) until `shutdown`, then writes the history back.
    pub async fn run(mut self, objects: Objects, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = yunhan_metrics::unix_now();
            let wait = INTERVAL.as_secs() - now % INTERVAL.as_secs();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = self.collect(&objects, now + wait).await {
                tracing::warn!(error = %e, "metrics collection");
            }
        }
        if let Err(e) = self.history.flush() {
            tracing::warn!(error = %e, "metric history flush");
        }
    }

    /// One collection, due at `t` (a multiple of [`INTERVAL`]): read, record, publish
    /// as latest, forget deleted VMs. Rates are over the due times, not the instants
    /// the counters were read, so that a series' points add up to the counter's
    /// growth whatever the jitter of each reading.
    async fn collect(&mut self, objects: &Objects, t: u64) -> Result<(), MetricsError> {
        let instances = objects.list_all::<Instance>(None).await?;
        let devices = read::net_devices(self.netns.as_deref());
        let secs = (self.before.as_ref()).map_or(0.0, |p| t.saturating_sub(p.t) as f64);
        let (vms, mut groups) = self
            .read_vms(objects, &instances, &devices, t, secs)
            .await?;
        let host = read::host(&self.state_dir, &devices);
        let before_host = self.before.as_ref().map(|p| &p.host);
        let mut host_group: Group = (rates::host_samples(before_host, &host, secs).into_iter())
            .map(|(name, v)| (format!("host/{name}"), t, v))
            .collect();
        if let Some(h) = objects.get::<Host>(&self.host_id).await? {
            host_group.extend(pool_samples(&h.status.pools, t));
            if let Err(e) = report_usage(objects, &h, &host_group).await {
                tracing::warn!(error = %e, "host usage");
            }
        }
        groups.push(host_group);
        let lbs = objects.list_all::<LoadBalancer>(None).await?;
        let listeners = listener_counters(&lbs, &self.host_id);
        let eips = match self.plan(objects).await? {
            Some(plan) => {
                let prefix = crate::network::router_prefix(self.netns.as_deref());
                read::eip_counters(&plan, &prefix).await
            }
            None => Counters::new(),
        };
        if let Some(p) = &self.before {
            let samples = (rates::counter_samples(&p.listeners, &listeners, secs, false))
                .into_iter()
                .chain(rates::counter_samples(&p.eips, &eips, secs, true));
            groups.push(samples.map(|(n, v)| (n, t, v)).collect());
        }
        self.before = Some(Previous {
            t,
            vms,
            host,
            listeners,
            eips,
        });
        self.record(&groups)?;
        self.latest.replace(&groups.concat());
        // Deleted objects' series go once a minute (it lists every volume and elastic IP).
        if t.is_multiple_of(FORGET_EVERY_SECS) {
            let volumes = objects.list_all::<Volume>(None).await?;
            let eips = objects.list_all::<ElasticIp>(None).await?;
            let live = (instances.iter().map(|i| &i.metadata.id))
                .chain(volumes.iter().map(|v| &v.metadata.id))
                .chain(lbs.iter().map(|l| &l.metadata.id))
                .chain(eips.iter().map(|e| &e.metadata.id));
            self.forget_deleted(live.map(String::as_str).collect())?;
        }
        self.history.flush_if_due(Instant::now())?;
        Ok(())
    }

    /// This host's network plan, as the SDN controller last wrote it.
    async fn plan(&self, objects: &Objects) -> Result<Option<HostPlan>, MetricsError> {
        let key = format!("{PLAN_PREFIX}{}", self.host_id);
        let Some(kv) = objects.store().get(&key).await.map_err(ObjectError::from)? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&kv.value).ok())
    }

    /// The readings of the VMs running here, and each one's samples.
    async fn read_vms(
        &self,
        objects: &Objects,
        instances: &[Doc<Instance>],
        devices: &BTreeMap<String, procfs::DevCounters>,
        t: u64,
        secs: f64,
    ) -> Result<(BTreeMap<String, VmReading>, Vec<Group>), MetricsError> {
        let nics = crate::network::attached_nics(objects, None).await?;
        let mut vms = BTreeMap::new();
        let mut groups = Vec::new();
        for vm in instances.iter().filter(|vm| self.runs_here(vm)) {
            let id = &vm.metadata.id;
            let Some(pid) = self.runtime.running_pid(id) else {
                continue;
            };
            let vm_nics = nics.get(id).map_or(&[][..], Vec::as_slice);
            let mut reading = read::vm(&self.runtime, vm, pid, vm_nics, devices).await;
            let before = self.before.as_ref().and_then(|p| p.vms.get(id));
            if let Some(before) = before {
                reading.carry_from(before);
            }
            let shape = VmShape {
                vcpus: vm.status.vcpus,
                memory_bytes: vm.status.memory_mib << 20,
            };
            let mut group: Group = (rates::vm_samples(before, &reading, secs, shape).into_iter())
                .map(|(n, v)| (format!("vm/{id}/{n}"), t, v))
                .collect();
            if let Some(before) = before {
                // A volume plugged since the last reading counted from 0 (a new device).
                let volumes = rates::counter_samples(&before.volumes, &reading.volumes, secs, true);
                group.extend(volumes.into_iter().map(|(n, v)| (n, t, v)));
            }
            groups.push(group);
            vms.insert(id.clone(), reading);
        }
        Ok((vms, groups))
    }

    /// Records each group (a VM's samples, the host's) on its own: a VM whose series
    /// would pass the history's cap loses its own samples, not the others'.
    fn record(&self, groups: &[Group]) -> Result<(), MetricsError> {
        for group in groups {
            let refs: Vec<(&str, u64, f64)> = (group.iter())
                .map(|(n, t, v)| (n.as_str(), *t, *v))
                .collect();
            match self.history.record_many(&refs) {
                Err(e @ yunhan_metrics::HistoryError::TooManySeries { .. }) => {
                    tracing::warn!(error = %e, "metric history full (--metrics-max-series)");
                }
                other => other?,
            }
        }
        Ok(())
    }

    fn runs_here(&self, vm: &Doc<Instance>) -> bool {
        vm.status.host.as_deref() == Some(self.host_id.as_str())
            && vm.status.phase == InstancePhase::Running
    }

    /// Drops the series of VMs, volumes, load balancers and elastic IPs that no longer
    /// exist anywhere
    /// (`live` holds the ids of those that do; a VM that moved keeps its history here
    /// until it is deleted).
    fn forget_deleted(&self, live: HashSet<&str>) -> Result<(), MetricsError> {
        for prefix in ["vm/", "volume/", "lb/", "eip/"] {
            for name in self.history.series_names(prefix) {
                let id = name.split('/').nth(1).unwrap_or_default();
                if !live.contains(id) {
                    self.history.forget(&name)?;
                }
            }
        }
        Ok(())
    }
}

/// The counters of the listeners of the load balancers served here
/// (`lb/<id>/<listener>/{connections,bytes_in,bytes_out}`); those of a load balancer with
/// replicas, summed over them, by the host of its first.
fn listener_counters(lbs: &[Doc<LoadBalancer>], host_id: &str) -> Counters {
    let mut out = Counters::new();
    let reporter = |lb: &Doc<LoadBalancer>| match lb.status.replicas.first() {
        Some(r) => r.host == host_id,
        None => lb.status.host == host_id,
    };
    for lb in lbs.iter().filter(|lb| reporter(lb)) {
        for l in &lb.status.listeners {
            let base = format!("lb/{}/{}", lb.metadata.id, l.name);
            out.insert(format!("{base}/connections"), l.connections);
            out.insert(format!("{base}/bytes_in"), l.bytes_in);
            out.insert(format!("{base}/bytes_out"), l.bytes_out);
        }
    }
    out
}

/// A pool's samples: `used_bytes` (physical), `provisioned_bytes` (logical),
/// `capacity_bytes` and `used_percent`.
fn pool_samples(pools: &[PoolReport], t: u64) -> Vec<(String, u64, f64)> {
    let mut out = Vec::new();
    for p in pools {
        for (name, v) in [
            ("used_bytes", p.physical_used_bytes as f64),
            ("provisioned_bytes", p.logical_allocated_bytes as f64),
            ("capacity_bytes", p.capacity_bytes as f64),
            ("used_percent", p.used_ratio * 100.0),
        ] {
            out.push((format!("pool/{}/{name}", p.name), t, v));
        }
    }
    out
}

/// The URL the control plane reaches the endpoint at.
fn published(bound: SocketAddr, host_address: &str) -> String {
    if bound.ip().is_unspecified() {
        format!("http://{host_address}:{}", bound.port())
    } else {
        format!("http://{bound}")
    }
}

/// Writes the host's measured use (`Host.status.usage`) when it moved enough to matter.
async fn report_usage(
    objects: &Objects,
    h: &Doc<Host>,
    samples: &Group,
) -> Result<(), ObjectError> {
    let value = |name: &str| (samples.iter()).find(|(n, _, _)| n == name).map(|s| s.2);
    let (Some(cpu), Some(mem)) = (value("host/cpu_percent"), value("host/memory_used_bytes"))
    else {
        return Ok(());
    };
    let usage = HostUsage {
        cpu_percent: cpu.round() as u32,
        memory_used_mib: (mem / 1_048_576.0).round() as u64,
    };
    if !usage.moved_from(h.status.usage.as_ref()) {
        return Ok(());
    }
    objects
        .modify::<Host>(&h.metadata.id, |d| {
            d.status.usage = Some(usage);
            true
        })
        .await
        .map(drop)
}

/// Writes the endpoint's token (a secret key) and URL (`Host.status.metrics`).
async fn publish(
    objects: &Objects,
    host_id: &str,
    endpoint: &str,
    token: &str,
) -> Result<(), ObjectError> {
    (objects.store())
        .put(&metrics_token_key(host_id), token.as_bytes().to_vec())
        .await?;
    objects
        .modify::<Host>(host_id, |h| {
            let changed = h.status.metrics.as_deref() != Some(endpoint);
            h.status.metrics = Some(endpoint.to_owned());
            changed
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_published_as_the_hosts() {
        let any: SocketAddr = "0.0.0.0:9465".parse().unwrap();
        assert_eq!(published(any, "10.0.0.5"), "http://10.0.0.5:9465");
        let lo: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(published(lo, "10.0.0.5"), "http://127.0.0.1:4321");
    }

    #[test]
    fn pools_give_four_series_each() {
        let pool = PoolReport {
            name: "local".into(),
            physical_used_bytes: 80,
            capacity_bytes: 100,
            used_ratio: 0.8,
            ..Default::default()
        };
        let s = pool_samples(&[pool], 10);
        assert_eq!(s.len(), 4);
        assert_eq!(s[3], ("pool/local/used_percent".into(), 10, 80.0));
    }
}
