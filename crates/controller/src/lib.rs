//! Controllers move the world toward `spec`: each is a level-triggered
//! [`Reconciler`] run by [`run_reconciler`] (watch + periodic resync), and
//! only the elected leader ([`leader`]) runs them.

pub mod alarms;
mod events;
pub mod ha;
pub mod leader;
pub mod liveness;
pub mod metering;
pub mod migration;
pub mod network;
pub mod scheduler;
pub mod snapshot_policy;
pub mod volumes;

pub use leader::{run_as_leader, LeaderConfig};
pub use yunhan_store::reconcile::{run_reconciler, Reconciler};

pub use yunhan_model::now;

pub use yunhan_store::objects::{alive_key, ALIVE_PREFIX};

use std::sync::Arc;
use tokio::sync::watch;
use yunhan_store::objects::Objects;

/// Runs every control-plane controller until `shutdown` flips to true.
pub async fn run_controllers(
    objects: Objects,
    policy: yunhan_model::scheduling::Policy,
    ha: Arc<ha::HaMonitor>,
    shutdown: watch::Receiver<bool>,
) {
    let migrations = Arc::new(migration::Migrations {
        policy,
        storage: ha.storage.clone(),
    });
    let reconcilers: Vec<Arc<dyn Reconciler>> = vec![
        Arc::new(liveness::HostLiveness),
        Arc::new(scheduler::Scheduler { policy }),
        Arc::new(network::NetworkController::default()),
        Arc::new(volumes::VolumeBinder),
        Arc::new(snapshot_policy::SnapshotPolicies),
        ha,
        migrations,
        Arc::new(metering::MeteringController),
        Arc::new(alarms::Alarms::new(objects.clone())),
    ];
    let mut tasks = Vec::new();
    for r in reconcilers {
        tasks.push(tokio::spawn(run_reconciler(
            r,
            objects.clone(),
            shutdown.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}
