//! Leader election through the store: the leader holds a key attached to its
//! lease. Whoever creates the key (compare-and-swap on "absent") leads until
//! its lease is lost; the others watch for the key to vanish.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use yunhan_store::{Compare, Op, Store, StoreError, Txn};

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub key: String,
    /// Who we are (shown in the key's value, e.g. hostname:pid).
    pub identity: String,
    pub ttl: Duration,
}

/// Campaigns forever; while leading, runs `work(stop)` where `stop` turns true
/// when leadership is lost or `shutdown` fires. Returns after shutdown.
pub async fn run_as_leader<F, Fut>(
    store: std::sync::Arc<dyn Store>,
    cfg: LeaderConfig,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        if *shutdown.borrow() {
            return;
        }
        match try_lead(&*store, &cfg).await {
            Ok(Some(lease)) => {
                tracing::info!(identity = %cfg.identity, "became leader; starting controllers");
                let (stop_tx, stop_rx) = watch::channel(false);
                let task = tokio::spawn(work(stop_rx));
                let mut tick = tokio::time::interval(cfg.ttl / 3);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = store.lease_keepalive(lease).await {
                                tracing::warn!(error = %e, "lost leadership");
                                break;
                            }
                        }
                        _ = shutdown.changed() => {
                            let _ = store.lease_revoke(lease).await;
                            break;
                        }
                    }
                }
                let _ = stop_tx.send(true);
                let _ = task.await;
            }
            Ok(None) => {
                // Someone else leads: wait for their key to go, then retry.
                if let Ok(mut w) = store.watch(&cfg.key, 0).await {
                    if store.get(&cfg.key).await.ok().flatten().is_some() {
                        tokio::select! {
                            _ = async { while let Some(Ok(ev)) = w.next().await {
                                if ev.kind == yunhan_store::EventKind::Delete { break; }
                            } } => {}
                            _ = tokio::time::sleep(cfg.ttl) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                } else {
                    tokio::time::sleep(cfg.ttl / 3).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader election failed; retrying");
                tokio::time::sleep(cfg.ttl / 3).await;
            }
        }
    }
}

async fn try_lead(store: &dyn Store, cfg: &LeaderConfig) -> Result<Option<i64>, StoreError> {
    let lease = store.lease_grant(cfg.ttl).await?;
    let r = store
        .txn(
            Txn::new()
                .when(Compare::ModRevision(cfg.key.clone(), 0))
                .then(Op::Put {
                    key: cfg.key.clone(),
                    value: cfg.identity.clone().into_bytes(),
                    lease: Some(lease),
                }),
        )
        .await?;
    if r.succeeded {
        Ok(Some(lease))
    } else {
        let _ = store.lease_revoke(lease).await;
        Ok(None)
    }
}
