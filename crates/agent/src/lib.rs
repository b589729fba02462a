//! The host agent. It registers its Host, proves liveness by keeping a lease
//! (the key `/yunhan/alive/hosts/<id>` dies with it), and reconciles the
//! instances bound to its host. Compute, network and storage data planes plug
//! in here as their issues land; the agent keeps running them when the
//! control plane is down.

mod finalizer;
mod host;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use yunhan_store::objects::{ObjectError, Objects};
use yunhan_store::reconcile::run_reconciler;

pub use host::{discover, Discovered};

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
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("agent state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` becomes true.
pub async fn run(
    objects: Objects,
    cfg: AgentConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| AgentError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let host_id = host::register(&objects, &cfg).await?;
    tracing::info!(host = %cfg.name, id = %host_id, "agent registered");
    let lease = tokio::spawn(host::keep_alive(
        objects.clone(),
        host_id.clone(),
        cfg.lease_ttl,
        shutdown.clone(),
    ));
    let fin = tokio::spawn(run_reconciler(
        Arc::new(finalizer::Finalizer { host_id }),
        objects,
        shutdown,
    ));
    let _ = lease.await;
    let _ = fin.await;
    Ok(())
}
