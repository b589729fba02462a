//! Object storage for `up` and `server` (docs/object-storage.md): on a Ceph cluster
//! (`--ceph-conf`) the process starts Ceph's own S3 gateway, `radosgw`, as its child
//! (started again if it exits; it stops with the process), or uses the gateway
//! `--s3-endpoint` names. The
//! gateway is given to the object-storage controller, and its endpoint and a view of
//! buckets' objects (the web console's file browser, [`RgwBrowser`]) to the API.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use yunhan_api::{
    BrowseError, NewObject, ObjectBrowser, ObjectContent, ObjectItem, ObjectList, ObjectQuery,
};
use yunhan_storage::rgw::{
    ListObjects, ObjectEntry, ObjectGateway, ObjectUpload, RgwAdmin, RgwDaemon, RgwDaemonConfig,
    RgwError,
};
use yunhan_storage::StorageError;

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
    /// The same gateway, as the API's file browser reads and writes objects.
    pub browser: Arc<dyn ObjectBrowser>,
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
                browser: Arc::new(RgwBrowser(gateway.clone())),
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
            browser: Arc::new(RgwBrowser(gateway.clone())),
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

/// Buckets' objects for the API's file browser: the gateway's S3 calls with each
/// tenant's platform key.
pub struct RgwBrowser(pub Arc<RgwAdmin>);

impl std::fmt::Debug for RgwBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RgwBrowser")
            .field(&self.0.endpoint())
            .finish()
    }
}

/// The gateway's answer in the API's terms: S3's codes that the API gives codes of its
/// own, the rest with the gateway's words. The admin tool's failures (which name
/// commands and paths of the server) are logged, not answered.
fn browse_error(e: RgwError) -> BrowseError {
    match e {
        RgwError::NoSuchBucket(_) => BrowseError::NoSuchBucket,
        RgwError::S3 { code, .. } if code == "NoSuchKey" => BrowseError::NoSuchKey,
        RgwError::S3 { code, .. } if code == "NoSuchBucket" => BrowseError::NoSuchBucket,
        RgwError::S3 { code, message, .. } if code == "QuotaExceeded" => {
            BrowseError::QuotaExceeded(format!("{code} {message}").trim().to_string())
        }
        RgwError::S3 { code, message, .. } if code == "EntityTooLarge" => {
            BrowseError::TooLarge(format!("{code} {message}").trim().to_string())
        }
        RgwError::S3 {
            code,
            message,
            status: 400,
            ..
        } if code == "InvalidArgument" => {
            BrowseError::Invalid(format!("the S3 gateway refused it: {code} {message}"))
        }
        RgwError::S3 {
            op,
            status,
            code,
            message,
        } => BrowseError::Gateway {
            op,
            status,
            code,
            message,
        },
        RgwError::Unreachable { why, .. } => BrowseError::Unreachable(why),
        RgwError::Storage(StorageError::Invalid { why }) => BrowseError::Invalid(why),
        // No tenant yet: the controller has not made the project's buckets.
        RgwError::Storage(e) if e.is_not_found() => BrowseError::NoSuchBucket,
        other => {
            tracing::warn!(error = %other, "the file browser's call to the S3 gateway failed");
            BrowseError::Gateway {
                op: "the platform key".into(),
                status: 500,
                code: "AdminToolFailed".into(),
                message: "radosgw-admin failed (the server's log says why)".into(),
            }
        }
    }
}

fn item(e: ObjectEntry) -> ObjectItem {
    ObjectItem {
        key: e.key,
        size: e.size,
        last_modified: e.last_modified,
        etag: e.etag,
    }
}

#[async_trait]
impl ObjectBrowser for RgwBrowser {
    async fn list(
        &self,
        tenant: &str,
        bucket: &str,
        q: &ObjectQuery,
    ) -> Result<ObjectList, BrowseError> {
        let query = ListObjects {
            prefix: q.prefix.clone(),
            delimiter: q.delimiter.clone(),
            continuation_token: q.page_token.clone(),
            max_keys: q.limit,
        };
        let page = self
            .0
            .list_objects(tenant, bucket, &query)
            .await
            .map_err(browse_error)?;
        Ok(ObjectList {
            items: page.objects.into_iter().map(item).collect(),
            prefixes: page.common_prefixes,
            next_page_token: page.next_continuation_token,
        })
    }

    async fn get(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectContent, BrowseError> {
        let data = self
            .0
            .get_object(tenant, bucket, key)
            .await
            .map_err(browse_error)?;
        Ok(ObjectContent {
            content_type: data.content_type,
            length: data.content_length,
            etag: data.etag,
            body: data.body,
        })
    }

    async fn put(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        object: NewObject,
    ) -> Result<ObjectItem, BrowseError> {
        let upload = ObjectUpload {
            content_type: object.content_type,
            content_length: object.length,
            body: object.body,
        };
        let entry = self
            .0
            .put_object(tenant, bucket, key, upload)
            .await
            .map_err(browse_error)?;
        Ok(item(entry))
    }

    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<(), BrowseError> {
        // S3 deletes a missing key without a word; the API says 404.
        self.0
            .head_object(tenant, bucket, key)
            .await
            .map_err(browse_error)?;
        self.0
            .delete_object(tenant, bucket, key)
            .await
            .map_err(browse_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(status: u16, code: &str) -> RgwError {
        RgwError::S3 {
            op: "PutObject".into(),
            status,
            code: code.into(),
            message: "said".into(),
        }
    }

    #[test]
    fn gateway_errors_in_the_apis_terms() {
        assert_eq!(browse_error(s3(404, "NoSuchKey")), BrowseError::NoSuchKey);
        assert_eq!(
            browse_error(RgwError::NoSuchBucket("b".into())),
            BrowseError::NoSuchBucket
        );
        assert_eq!(
            browse_error(s3(403, "QuotaExceeded")),
            BrowseError::QuotaExceeded("QuotaExceeded said".into())
        );
        assert!(matches!(
            browse_error(s3(400, "EntityTooLarge")),
            BrowseError::TooLarge(_)
        ));
        assert!(matches!(
            browse_error(s3(400, "InvalidArgument")),
            BrowseError::Invalid(_)
        ));
        assert_eq!(
            browse_error(s3(503, "SlowDown")),
            BrowseError::Gateway {
                op: "PutObject".into(),
                status: 503,
                code: "SlowDown".into(),
                message: "said".into()
            }
        );
        assert_eq!(
            browse_error(StorageError::not_found("tenant", "prj_a").into()),
            BrowseError::NoSuchBucket
        );
        // The admin tool's command line and output stay in the log.
        let e = browse_error(
            StorageError::Backend {
                command: "radosgw-admin -c /etc/ceph/secret.conf user info".into(),
                stderr: "boom".into(),
            }
            .into(),
        );
        assert!(!e.to_string().contains("secret.conf"), "{e}");
    }
}
