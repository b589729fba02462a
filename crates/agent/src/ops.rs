//! Operations in flight, at most one per key (an instance, a volume): the
//! reconcilers skip a key while its operation runs, so a slow stop or copy
//! never blocks the others and a pass never starts the same work twice.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
pub(crate) struct Ops {
    busy: Arc<Mutex<HashSet<String>>>,
    /// Aborted when the agent stops (dropped).
    tasks: Mutex<JoinSet<()>>,
}

/// Releases a key when its operation ends (or is aborted).
struct BusyGuard(Arc<Mutex<HashSet<String>>>, String);
impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.0).remove(&self.1);
    }
}

impl Ops {
    pub fn is_busy(&self, key: &str) -> bool {
        lock(&self.busy).contains(key)
    }

    /// Runs `op` for `key` unless an operation for it is already in flight.
    pub fn spawn(&self, key: &str, op: impl Future<Output = ()> + Send + 'static) {
        if !lock(&self.busy).insert(key.to_string()) {
            return;
        }
        let guard = BusyGuard(self.busy.clone(), key.to_string());
        lock(&self.tasks).spawn(async move {
            let _guard = guard;
            op.await;
        });
    }

    /// Collects finished operations, logging panics.
    pub fn reap(&self, what: &str) {
        let mut tasks = lock(&self.tasks);
        while let Some(r) = tasks.try_join_next() {
            if let Err(e) = r {
                if e.is_panic() {
                    tracing::error!(error = %e, "{what} operation panicked");
                }
            }
        }
    }
}

/// CAS-writes the status of object `id` with `f`, but only while `host_of`
/// says it is bound to host `me` (an object bound elsewhere belongs to another
/// agent); no write when `f` changes nothing.
pub(crate) async fn set_bound_status<K>(
    objects: &yunhan_store::objects::Objects,
    id: &str,
    me: &str,
    host_of: fn(&K::Status) -> Option<&str>,
    f: impl Fn(&mut K::Status) + Send + Sync,
) -> Result<(), yunhan_store::objects::ObjectError>
where
    K: yunhan_model::Kind,
    K::Status: Clone + PartialEq,
{
    objects
        .modify::<K>(id, |d| {
            if host_of(&d.status) != Some(me) {
                return false;
            }
            let before = d.status.clone();
            f(&mut d.status);
            d.status != before
        })
        .await
        .map(drop)
}
