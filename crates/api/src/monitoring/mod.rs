//! Metrics of instances and hosts (docs/monitoring.md). Each host's agent keeps its
//! VMs', its own and its pools' history and serves it on its metrics endpoint
//! (`Host.status.metrics`, a bearer token in the store); these handlers find the host
//! that holds a resource's history and ask it: `GET /v1/instances/{id}/metrics`,
//! `/v1/volumes/{id}/metrics`, `/v1/elastic-ips/{id}/metrics` and
//! `/v1/load-balancers/{id}/metrics` (the resource's
//! project, like any read of it) and `GET /v1/hosts/{id}/metrics` (admins).
//! `prometheus.rs` adds the latest samples of every host to `/metrics`.

pub(crate) mod object_storage;
pub(crate) mod prometheus;

use std::sync::OnceLock;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use yunhan_metrics::wire::{SeriesAnswer, SeriesQuery};
use yunhan_metrics::HostMetrics;
use yunhan_model::network::ElasticIp;
use yunhan_model::{
    metric_unit, metric_wanted, ApiError, Doc, ErrorCode, Host, Instance, LoadBalancer, Metadata,
    MetricSeries, MetricsAnswer, Volume,
};
use yunhan_store::objects::GLOBAL_SCOPE;

use crate::auth::Principal;
use crate::error::Result;
use crate::events::parse_since;
use crate::extract::QueryParams;
use crate::lookup::find_visible;
use crate::resource::Hooks;
use crate::{AppState, Shared};

/// One HTTP client (one connection pool) for every host's endpoint.
fn http() -> reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(reqwest::Client::new).clone()
}

/// The client of `host`'s metrics endpoint, or why there is none.
pub(crate) async fn host_client(s: &AppState, host: &Doc<Host>) -> Result<HostMetrics> {
    host_client_of(s, host).await?.ok_or_else(|| {
        let why = format!(
            "host {} has not published a metrics endpoint (is its agent running this version?)",
            host.metadata.name
        );
        ApiError::new(ErrorCode::Unavailable, why).into()
    })
}

async fn host_client_of(s: &AppState, host: &Doc<Host>) -> Result<Option<HostMetrics>> {
    let published = s.objects.metrics_endpoint(host).await?;
    Ok(published.map(|(endpoint, token)| HostMetrics::new(http(), &endpoint, &token)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsQuery {
    /// The window: `10m`, `1h`, `7d`… back from now (default 1h).
    since: Option<String>,
    /// Comma-separated series name prefixes (`cpu,memory,disk,nic`); default all.
    series: Option<String>,
    project: Option<String>,
}

/// A kind whose objects have series in a host's history: `<FAMILY>/<id>/…`.
#[async_trait]
pub(crate) trait Measured: Hooks {
    const FAMILY: &'static str;
    /// The ids of the hosts whose histories hold the object's series now (none: no host;
    /// several: its series are the sums over them).
    async fn hosts_of(s: &AppState, doc: &Doc<Self>) -> Result<Vec<String>>;
}

/// Instances: the instance's host.
#[async_trait]
impl Measured for Instance {
    const FAMILY: &'static str = "vm";
    async fn hosts_of(_: &AppState, doc: &Doc<Self>) -> Result<Vec<String>> {
        Ok(doc.status.host.iter().cloned().collect())
    }
}

/// Volumes: the host of the instance it is attached to, else its own (where its last VM
/// ran, if it is local).
#[async_trait]
impl Measured for Volume {
    const FAMILY: &'static str = "volume";
    async fn hosts_of(s: &AppState, doc: &Doc<Self>) -> Result<Vec<String>> {
        let vm = match doc.status.attached_to.as_deref() {
            Some(i) => s.objects.get::<Instance>(i).await?,
            None => None,
        };
        let host = vm.and_then(|vm| vm.status.host).or(doc.status.host.clone());
        Ok(host.into_iter().collect())
    }
}

/// Load balancers: the host serving them (their listeners' connections and bytes); with
/// replicas, the first one's, whose agent reports the sums over them.
#[async_trait]
impl Measured for LoadBalancer {
    const FAMILY: &'static str = "lb";
    async fn hosts_of(_: &AppState, doc: &Doc<Self>) -> Result<Vec<String>> {
        let reporter = (doc.status.replicas.first()).map_or(&doc.status.host, |r| &r.host);
        Ok(Some(reporter.clone())
            .filter(|h| !h.is_empty())
            .into_iter()
            .collect())
    }
}

/// Elastic IPs: the host realising them (the traffic through the address; rx: what came
/// in to it; their status names the host), or every host of the replicas of the load
/// balancer on whose address it is (each counts the answers of its own replicas).
#[async_trait]
impl Measured for ElasticIp {
    const FAMILY: &'static str = "eip";
    async fn hosts_of(s: &AppState, doc: &Doc<Self>) -> Result<Vec<String>> {
        if let Some(lb) = replicated_lb_on(s, doc).await? {
            let mut hosts: Vec<String> = lb.status.replicas.into_iter().map(|r| r.host).collect();
            hosts.retain(|h| !h.is_empty());
            hosts.sort();
            hosts.dedup();
            return Ok(hosts);
        }
        Ok(match doc.status.host.as_str() {
            "" => Vec::new(),
            name => (s.objects.get_by_name::<Host>(GLOBAL_SCOPE, name).await?)
                .map(|h| h.metadata.id)
                .into_iter()
                .collect(),
        })
    }
}

/// The load balancer with replicas whose address NIC elastic IP `eip` is bound to.
async fn replicated_lb_on(s: &AppState, eip: &Doc<ElasticIp>) -> Result<Option<Doc<LoadBalancer>>> {
    let Some(nic) = eip.spec.nic.as_deref() else {
        return Ok(None);
    };
    let lbs = s
        .objects
        .list_all::<LoadBalancer>(eip.metadata.project.as_deref())
        .await?;
    Ok(lbs
        .into_iter()
        .find(|l| l.status.nic == nic && !l.status.replicas.is_empty()))
}

/// `GET /v1/<kind>/{id}/metrics`: the object's series (it is read like any read of it:
/// another project's answers 404), from the history of the host that holds them.
pub(crate) async fn of_kind<K: Measured>(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<MetricsQuery>,
) -> Result<Json<MetricsAnswer>> {
    let doc = find_visible::<K>(&s, &p, &id, q.project.as_deref()).await?;
    let hosts = K::hosts_of(&s, &doc).await?;
    Ok(Json(
        of_resource(&s, &doc.metadata, &hosts, K::FAMILY, &q).await?,
    ))
}

/// The series `<family>/<id>/…` of a resource in the histories of hosts `host_ids`
/// (none: it has no host, and no series; several: each series summed over them, slot by
/// slot, and `host` names them all).
async fn of_resource(
    s: &AppState,
    m: &Metadata,
    host_ids: &[String],
    family: &str,
    q: &MetricsQuery,
) -> Result<MetricsAnswer> {
    let mut answer = window(&m.id, &m.name, q)?;
    let prefix = format!("{family}/{}/", m.id);
    let mut names = Vec::new();
    for host_id in host_ids {
        let host = (s.objects.get::<Host>(host_id).await?)
            .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "its host is gone"))?;
        names.push(host.metadata.name.clone());
        fill(s, &host, &[prefix.as_str()], q, &mut answer).await?;
    }
    names.sort();
    answer.host = Some(names.join(",")).filter(|n| !n.is_empty());
    answer.series = yunhan_model::sum_series(std::mem::take(&mut answer.series));
    Ok(answer)
}

/// `GET /v1/hosts/{id}/metrics` (admins): the host's series and its pools'.
pub(crate) async fn host(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<MetricsQuery>,
) -> Result<Json<MetricsAnswer>> {
    let host = find_visible::<Host>(&s, &p, &id, None).await?;
    let mut answer = window(&host.metadata.id, &host.metadata.name, &q)?;
    answer.host = Some(host.metadata.name.clone());
    fill(&s, &host, &["host/", "pool/"], &q, &mut answer).await?;
    Ok(Json(answer))
}

/// An answer with the query's window and no series yet.
fn window(id: &str, name: &str, q: &MetricsQuery) -> Result<MetricsAnswer> {
    let since = parse_since(q.since.as_deref().unwrap_or("1h"))?;
    let to = yunhan_metrics::unix_now();
    let from = to.saturating_sub(since.as_secs());
    Ok(MetricsAnswer {
        id: id.to_owned(),
        name: name.to_owned(),
        host: None,
        from,
        to,
        step: yunhan_metrics::step_for(from, to),
        series: Vec::new(),
    })
}

/// Adds the series under `prefixes` in `host`'s history to `answer`, named without
/// `vm/<id>/` or `host/` (pools keep `pool/<pool>/`).
async fn fill(
    s: &AppState,
    host: &Doc<Host>,
    prefixes: &[&str],
    q: &MetricsQuery,
    answer: &mut MetricsAnswer,
) -> Result<()> {
    let client = host_client(s, host).await?;
    let wanted = q.series.as_deref().unwrap_or_default();
    for prefix in prefixes {
        let query = SeriesQuery {
            prefix: (*prefix).to_owned(),
            from: answer.from,
            to: answer.to,
        };
        let got: SeriesAnswer = client.series(&query).await.map_err(unavailable)?;
        answer.step = got.step;
        for series in got.series {
            let name = match series.name.strip_prefix(prefix) {
                Some(rest) if *prefix != "pool/" => rest.to_owned(),
                _ => series.name.clone(),
            };
            if metric_wanted(&name, wanted) {
                let unit = metric_unit(&name).to_owned();
                let points = series.points;
                answer.series.push(MetricSeries { name, unit, points });
            }
        }
    }
    Ok(())
}

fn unavailable(e: yunhan_metrics::ClientError) -> crate::error::HttpError {
    let why = format!("{e}; try again, or check the host's agent");
    ApiError::new(ErrorCode::Unavailable, why).into()
}
