//! Object storage for `up` and `server` (docs/object-storage.md): on a Ceph cluster
//! (`--ceph-conf`) the process starts Ceph's own S3 gateway, `radosgw`, as its child
//! (it stops with the process), or uses the gateway `--s3-endpoint` names. The
//! gateway is given to the object-storage controller and its endpoint to the API.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
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

/// The gateway of a cloud with object storage, and the daemon this process owns.
pub struct ObjectStorage {
    pub gateway: Arc<dyn ObjectGateway>,
    /// Stops radosgw when dropped.
    pub _daemon: Option<RgwDaemon>,
}

impl ObjectStorage {
    pub fn endpoint(&self) -> String {
        self.gateway.endpoint().to_string()
    }
}

impl ObjectStorageArgs {
    /// Starts (or finds) the gateway; None without a Ceph cluster or when turned off.
    pub async fn start(
        &self,
        ceph: Option<&yunhan_agent::storage::CephPool>,
        state_dir: &Path,
        name: &str,
    ) -> anyhow::Result<Option<ObjectStorage>> {
        let Some(pool) = ceph.filter(|_| !self.no_object_storage) else {
            return Ok(None);
        };
        let cluster = pool.cluster.clone();
        if let Some(url) = &self.s3_endpoint {
            let gateway = Arc::new(RgwAdmin::new(cluster, url.trim_end_matches('/')));
            return Ok(Some(ObjectStorage {
                gateway,
                _daemon: None,
            }));
        }
        let cfg = RgwDaemonConfig {
            cluster: cluster.clone(),
            name: name.to_string(),
            listen: self.s3_listen,
            data_dir: state_dir.join("radosgw"),
        };
        let daemon = RgwDaemon::start(cfg).await.with_context(|| {
            format!(
                "starting the S3 gateway (radosgw) on {}; pick another address with --s3-listen, or turn it off with --no-object-storage",
                self.s3_listen
            )
        })?;
        tracing::info!(endpoint = %daemon.endpoint(), pid = daemon.pid(), "S3 gateway (radosgw) ready");
        let gateway = Arc::new(RgwAdmin::new(cluster, daemon.endpoint()));
        Ok(Some(ObjectStorage {
            gateway,
            _daemon: Some(daemon),
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
