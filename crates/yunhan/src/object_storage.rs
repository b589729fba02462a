//! Object storage for `up` and `server` (docs/object-storage.md): on a Ceph cluster
//! (`--ceph-conf`) the process starts Ceph's own S3 gateway, `radosgw`, as its child
//! (started again if it exits; it stops with the process), or uses the gateway
//! `--s3-endpoint` names. The
//! gateway is given to the object-storage controller and its endpoint to the API.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use yunhan_storage::rgw::{ObjectGateway, RgwAdmin, RgwDaemon, RgwDaemonConfig};

#[derive(Args, Debug, Clone)]
pub struct ObjectStorageArgs {
    /// Where the S3 gateway this process starts listens (with --ceph-conf; port 0
    /// picks a free port)
    #[arg(long, default_value = "127.0.0.1:7480", value_name = "ADDR:PORT")]
    s3_listen: SocketAddr,
    /// Use the S3 gateway (radosgw) already running at this URL on the same Ceph
    /// cluster instead of starting one
    #[arg(long, value_name = "URL", conflicts_with = "no_object_storage")]
    s3_endpoint: Option<String>,
    /// No object storage, even with --ceph-conf
    #[arg(long)]
    no_object_storage: bool,
}

/// The gateway of a cloud with object storage, and the supervisor of the daemon this
/// process owns.
pub struct ObjectStorage {
    pub gateway: Arc<dyn ObjectGateway>,
    supervisor: Option<JoinHandle<()>>,
}

impl ObjectStorage {
    pub fn endpoint(&self) -> String {
        self.gateway.endpoint().to_string()
    }

    /// Waits until the supervisor has stopped radosgw (after `shutdown`).
    pub async fn stopped(self) {
        if let Some(s) = self.supervisor {
            let _ = s.await;
        }
    }
}

/// How often the supervisor looks at radosgw, and the longest pause between restarts.
const WATCH_EVERY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Keeps radosgw running on the same address until `shutdown`: one that exits (a crash,
/// a kill) is started again, after 1 s, then up to [`MAX_BACKOFF`] while starts fail.
/// On shutdown the daemon is dropped: SIGTERM, and waited for.
async fn supervise(
    mut daemon: RgwDaemon,
    cfg: RgwDaemonConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = WATCH_EVERY;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        let Some(status) = daemon.exited() else {
            backoff = WATCH_EVERY;
            continue;
        };
        let log = daemon.log_path().display().to_string();
        tracing::error!(%status, %log, "the S3 gateway (radosgw) exited; starting it again");
        match RgwDaemon::start(cfg.clone()).await {
            Ok(d) => {
                tracing::info!(pid = d.pid(), "the S3 gateway (radosgw) is back");
                daemon = d;
                backoff = WATCH_EVERY;
            }
            Err(e) => {
                tracing::error!(error = %e, "the S3 gateway (radosgw) did not start again");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl ObjectStorageArgs {
    /// Starts (or finds) the gateway; None without a Ceph cluster or when turned off.
    pub async fn start(
        &self,
        ceph: Option<&yunhan_agent::storage::CephPool>,
        state_dir: &Path,
        name: &str,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Option<ObjectStorage>> {
        let Some(pool) = ceph.filter(|_| !self.no_object_storage) else {
            return Ok(None);
        };
        let cluster = pool.cluster.clone();
        if let Some(url) = &self.s3_endpoint {
            let gateway = Arc::new(RgwAdmin::new(cluster, url.trim_end_matches('/')));
            return Ok(Some(ObjectStorage {
                gateway,
                supervisor: None,
            }));
        }
        let cfg = RgwDaemonConfig {
            cluster: cluster.clone(),
            name: name.to_string(),
            listen: self.s3_listen,
            data_dir: state_dir.join("radosgw"),
        };
        let daemon = RgwDaemon::start(cfg.clone()).await.with_context(|| {
            format!(
                "starting the S3 gateway (radosgw) on {}; pick another address with --s3-listen, or turn it off with --no-object-storage",
                self.s3_listen
            )
        })?;
        tracing::info!(endpoint = %daemon.endpoint(), pid = daemon.pid(), "S3 gateway (radosgw) ready");
        let gateway = Arc::new(RgwAdmin::new(cluster, daemon.endpoint()));
        // Restarts keep the address the endpoint names (port 0 picked one).
        let cfg = RgwDaemonConfig {
            listen: daemon.endpoint().trim_start_matches("http://").parse()?,
            ..cfg
        };
        let supervisor = tokio::spawn(supervise(daemon, cfg, shutdown));
        Ok(Some(ObjectStorage {
            gateway,
            supervisor: Some(supervisor),
        }))
    }
}

/// Tells the hosts' agents where the gateway is (they pass guests' connections to the
/// VPC address of object storage on to it); a cloud without object storage says so by
/// the key's absence.
pub async fn publish(
    store: &Arc<dyn yunhan_store::Store>,
    s3: Option<&ObjectStorage>,
) -> anyhow::Result<()> {
    use yunhan_store::objects::S3_ENDPOINT_KEY;
    use yunhan_store::StoreExt;
    match s3 {
        Some(s) => {
            store
                .put(S3_ENDPOINT_KEY, s.endpoint().into_bytes())
                .await?
        }
        None => store.delete(S3_ENDPOINT_KEY).await?,
    };
    Ok(())
}
