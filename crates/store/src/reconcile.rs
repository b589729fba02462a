use std::sync::Arc;
use std::time::Duration;

use crate::objects::{ObjectError, Objects};
use async_trait::async_trait;
use tokio::sync::watch;

/// A controller: one pass reads the store and writes (by compare-and-swap)
/// whatever differs from what it wants. Passes must be idempotent — the
/// framework may run them at any time, and a killed controller simply starts
/// over from the store.
#[async_trait]
pub trait Reconciler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Key prefixes whose changes should trigger a pass.
    fn watches(&self) -> Vec<String>;
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError>;
    /// A pass runs at least this often even without changes.
    fn resync(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// Runs `r` until `shutdown` becomes true: a pass at start, after every
/// batch of watched changes (coalesced) and every resync period. Watch
/// failures (store restart, compaction) just re-establish the watch.
pub async fn run_reconciler(
    r: Arc<dyn Reconciler>,
    objects: Objects,
    mut shutdown: watch::Receiver<bool>,
) {
    let (kick_tx, mut kick_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut watchers = Vec::new();
    for prefix in r.watches() {
        let store = objects.store().clone();
        let kick = kick_tx.clone();
        let name = r.name();
        watchers.push(tokio::spawn(async move {
            loop {
                match store.watch(&prefix, 0).await {
                    Ok(mut w) => {
                        let _ = kick.try_send(());
                        while let Some(ev) = w.next().await {
                            if ev.is_err() {
                                break;
                            }
                            let _ = kick.try_send(());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(controller = name, error = %e, "watch failed; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            break;
        }
        match r.reconcile(&objects).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(controller = r.name(), error = %e, "reconcile failed; will retry");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        tokio::select! {
            _ = kick_rx.recv() => {
                // Coalesce a burst of changes into one pass.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while kick_rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(r.resync()) => {}
            _ = shutdown.changed() => {}
        }
    }
    for w in watchers {
        w.abort();
    }
}
