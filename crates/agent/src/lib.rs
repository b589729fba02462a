//! The host agent. It registers its Host, proves liveness by keeping a lease
//! (the key `/yunhan/alive/hosts/<id>` dies with it), and runs the instances
//! bound to its host (`compute`: one QEMU per VM, see docs/compute.md), their
//! networks (`network`, docs/network.md), the host's volumes (`storage`,
//! docs/storage.md) and the load balancers placed on it (`load_balancer`:
//! HAProxy in a namespace each). The agent keeps VMs and load balancers running
//! when the control plane is down; VMs outlive the agent, load balancers do not
//! (an agent restart restarts them).

pub mod compute;
mod host;
mod ip;
pub mod load_balancer;
pub mod metrics;
pub mod network;
mod ops;
pub mod storage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use yunhan_store::objects::{ObjectError, Objects};
use yunhan_store::reconcile::run_reconciler;

pub use compute::{AccelMode, ComputeConfig};
pub use host::{discover, Discovered};
pub use metrics::MetricsConfig;
pub use network::NetworkConfig;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The host's name in the cloud (unique).
    pub name: String,
    /// The address other hosts and the control plane reach this host at.
    pub address: String,
    /// Where the agent keeps its identity and, later, VM state.
    pub state_dir: PathBuf,
    /// Liveness lease TTL: a dead agent's host turns NotReady after about this long.
    pub lease_ttl: Duration,
    /// PCI addresses of GPUs this host offers for passthrough.
    pub gpus: Vec<String>,
    /// Compute data plane settings (accelerator, QEMU user, stop timeout).
    pub compute: ComputeConfig,
    /// Network data plane settings (namespace, VTEP).
    pub network: NetworkConfig,
    /// A Ceph pool to serve volumes from, besides the local pool.
    pub ceph: Option<storage::CephPool>,
    /// The metrics endpoint and the history's bound.
    pub metrics: MetricsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("compute: {0}")]
    Compute(#[from] compute::PrepareError),
    #[error("storage pool: {0}")]
    Storage(#[from] yunhan_storage::StorageError),
    #[error("agent state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Aborts a task when dropped, so dropping `run` (e.g. a killed agent task)
/// stops everything it started — but never the VMs.
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the agent until `shutdown` becomes true. VMs keep running after it
/// returns; the next agent re-attaches to them.
pub async fn run(
    objects: Objects,
    cfg: AgentConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| AgentError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let prepared = compute::prepare(&cfg.state_dir, &cfg.compute)?;
    run_prepared(objects, cfg, prepared, shutdown).await
}

/// [`run`] on a state directory and QEMU user that [`compute::prepare`] already
/// checked (`yunhan up` does that before it starts anything else).
pub async fn run_prepared(
    objects: Objects,
    cfg: AgentConfig,
    prepared: compute::Prepared,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let host_id = host::register(&objects, &cfg).await?;
    tracing::info!(host = %cfg.name, id = %host_id, "agent registered");
    let mut compute_cfg = cfg.compute.clone();
    compute_cfg.netns = cfg.network.netns.clone();
    compute_cfg.address = cfg.address.clone();
    let local = yunhan_storage::LocalDriver::open(cfg.state_dir.join("volumes")).await?;
    let mut pools: storage::Pools = [(
        yunhan_model::DEFAULT_POOL.to_string(),
        Arc::new(local) as Arc<dyn yunhan_storage::VolumeDriver>,
    )]
    .into();
    let ceph = match cfg.ceph.clone() {
        None => None,
        Some(c) => {
            let driver = yunhan_storage::CephDriver::open(c.cluster.clone(), &c.pool).await?;
            pools.insert(c.pool.clone(), Arc::new(driver));
            let dir = cfg.state_dir.join("ceph");
            let conf = storage::qemu_ceph_conf(&c.cluster, &dir, prepared.run_as().map(|(_, g)| g))
                .await
                .map_err(|source| AgentError::StateDir { path: dir, source })?;
            Some((c, conf))
        }
    };
    let volumes = Arc::new(storage::Volumes::new(pools, ceph));
    let compute = compute::Compute::new(host_id.clone(), prepared, compute_cfg, volumes.clone());
    let storage = storage::Storage::new(host_id.clone(), volumes, compute.runtime());
    let site = metrics::Site {
        host_id: host_id.clone(),
        host_address: cfg.address.clone(),
        state_dir: cfg.state_dir.clone(),
        netns: cfg.network.netns.clone(),
        runtime: compute.runtime(),
    };
    let mut monitor = AbortOnDrop(tokio::spawn(metrics::monitor(
        objects.clone(),
        site,
        cfg.metrics.clone(),
        shutdown.clone(),
    )));
    let mut volumes = AbortOnDrop(tokio::spawn(run_reconciler(
        Arc::new(storage),
        objects.clone(),
        shutdown.clone(),
    )));
    let net = Arc::new(network::NetAgent::new(
        host_id.clone(),
        &cfg.state_dir,
        cfg.network.clone(),
    ));
    let _vip_probe = AbortOnDrop(tokio::spawn(
        net.clone()
            .watch_vip_holders(objects.clone(), shutdown.clone()),
    ));
    let _object_storage = AbortOnDrop(tokio::spawn(
        net.clone()
            .serve_object_storage(objects.clone(), shutdown.clone()),
    ));
    let mut net = AbortOnDrop(tokio::spawn(run_reconciler(
        net,
        objects.clone(),
        shutdown.clone(),
    )));
    let lbs = Arc::new(load_balancer::LbAgent::new(
        host_id.clone(),
        &cfg.state_dir,
        cfg.network.netns.clone(),
    ));
    let _lb_health = AbortOnDrop(tokio::spawn(
        lbs.clone().watch_health(objects.clone(), shutdown.clone()),
    ));
    let mut lbs = AbortOnDrop(tokio::spawn(run_reconciler(
        lbs,
        objects.clone(),
        shutdown.clone(),
    )));
    let mut lease = AbortOnDrop(tokio::spawn(host::keep_alive(
        objects.clone(),
        host_id.clone(),
        cfg.lease_ttl,
        compute.self_fence(),
        shutdown.clone(),
    )));
    let mut vms = AbortOnDrop(tokio::spawn(run_reconciler(
        Arc::new(compute),
        objects,
        shutdown,
    )));
    let _ = (&mut lease.0).await;
    let _ = (&mut vms.0).await;
    let _ = (&mut net.0).await;
    let _ = (&mut lbs.0).await;
    let _ = (&mut volumes.0).await;
    let _ = (&mut monitor.0).await;
    Ok(())
}
