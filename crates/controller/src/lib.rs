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
pub mod object_storage;
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

/// What the controllers are configured with.
pub struct Controllers {
    /// The cluster's overcommit ratios.
    pub policy: yunhan_model::scheduling::Policy,
    pub ha: Arc<ha::HaMonitor>,
    /// The S3 gateway, when the cloud has object storage.
    pub gateway: Option<Arc<dyn yunhan_storage::rgw::ObjectGateway>>,
}

/// Runs every control-plane controller until `shutdown` flips to true.
pub async fn run_controllers(objects: Objects, c: Controllers, shutdown: watch::Receiver<bool>) {
    let Controllers {
        policy,
        ha,
        gateway,
    } = c;
    let migrations = Arc::new(migration::Migrations {
        policy,
        storage: ha.storage.clone(),
    });
    let mut reconcilers: Vec<Arc<dyn Reconciler>> = vec![
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
    if let Some(g) = gateway {
        reconcilers.push(Arc::new(object_storage::ObjectStorage::new(g)));
    }
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
