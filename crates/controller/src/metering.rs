//! The metering controller (docs/metering.md): each pass (on any change to instances,
//! volumes, snapshots, elastic IPs or load balancers, and every [`RESYNC`]) meters every
//! project's resources from their real times ([`pass_of`], pure: `model/src/metering.rs`)
//! and writes the project's ledger and closed hours in one compare-and-swap transaction
//! (`store/src/metering.rs`), so a pass repeated by a restarted or deposed leader counts
//! nothing twice. An object that cannot be metered (an unreadable time) is skipped and
//! said why; its cursor stays where it was.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use yunhan_model::{
    bucket_metered, eip_metered, instance_metered, lb_metered, roll_up, snapshot_metered,
    volume_metered, BadTime, Bucket, Doc, ElasticIp, Instance, Ledger, LoadBalancer, Metered, Pass,
    Resource, Snapshot, Volume,
};
use yunhan_store::metering::{Metering, MeteringError};
use yunhan_store::objects::{object_prefix, ObjectError, Objects};

use crate::Reconciler;

/// A pass at least this often, so running resources accrue without changes.
pub const RESYNC: Duration = Duration::from_secs(30);

/// One project's metered objects.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub instances: Vec<Doc<Instance>>,
    pub volumes: Vec<Doc<Volume>>,
    pub snapshots: Vec<Doc<Snapshot>>,
    pub eips: Vec<Doc<ElasticIp>>,
    pub lbs: Vec<Doc<LoadBalancer>>,
    pub buckets: Vec<Doc<Bucket>>,
}

/// An object left out of a pass, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub id: String,
    pub why: BadTime,
}

/// One project's pass at `now`: its objects metered and rolled up from `old`. A skipped
/// object keeps its cursor, so its time is counted once it can be metered again.
pub fn pass_of(old: &Ledger, inv: &Inventory, now: i64) -> (Pass, Vec<Skipped>) {
    let instances = (inv.instances.iter()).map(|d| {
        let cursor = old.cursors.get(&d.metadata.id);
        (d.metadata.id.as_str(), instance_metered(d, cursor))
    });
    let outcomes = instances
        .chain(each(&inv.volumes, volume_metered))
        .chain(each(&inv.snapshots, snapshot_metered))
        .chain(each(&inv.eips, eip_metered))
        .chain(each(&inv.lbs, lb_metered))
        .chain(each(&inv.buckets, bucket_metered));
    let mut metered = Vec::new();
    let mut skipped = Vec::new();
    for (id, m) in outcomes {
        match m {
            Ok(m) => metered.push(m),
            Err(why) => skipped.push(Skipped {
                id: id.to_string(),
                why,
            }),
        }
    }
    let mut pass = roll_up(old, &metered, now);
    for s in &skipped {
        if let Some(c) = old.cursors.get(&s.id) {
            pass.ledger.cursors.insert(s.id.clone(), *c);
        }
    }
    (pass, skipped)
}

/// Each of `docs` metered by `meter`, with its id.
fn each<'a, Spec, Status>(
    docs: &'a [Resource<Spec, Status>],
    meter: impl Fn(&Resource<Spec, Status>) -> Result<Metered, BadTime> + 'a,
) -> impl Iterator<Item = (&'a str, Result<Metered, BadTime>)> + 'a {
    docs.iter().map(move |d| (d.metadata.id.as_str(), meter(d)))
}

/// Whether a pass changed anything worth a write: time accrued, an hour closed, a
/// resource came or went or started or stopped. (Moving the cursors of idle resources
/// alone is not: the next pass finds the same nothing after them.)
pub fn worth_writing(old: &Ledger, pass: &Pass) -> bool {
    let new = &pass.ledger;
    let flags = |l: &Ledger| -> Vec<(String, bool)> {
        (l.cursors.iter())
            .map(|(id, c)| (id.clone(), c.running))
            .collect()
    };
    !pass.closed.is_empty()
        || new.open != old.open
        || new.hour != old.hour
        || flags(new) != flags(old)
}

fn by_project<S, T>(
    docs: Vec<Resource<S, T>>,
    inv: &mut BTreeMap<String, Inventory>,
    slot: fn(&mut Inventory) -> &mut Vec<Resource<S, T>>,
) {
    for d in docs {
        if let Some(p) = d.metadata.project.clone() {
            slot(inv.entry(p).or_default()).push(d);
        }
    }
}

async fn inventories(objects: &Objects) -> Result<BTreeMap<String, Inventory>, ObjectError> {
    let mut inv = BTreeMap::new();
    by_project(objects.list_all::<Instance>(None).await?, &mut inv, |i| {
        &mut i.instances
    });
    by_project(objects.list_all::<Volume>(None).await?, &mut inv, |i| {
        &mut i.volumes
    });
    by_project(objects.list_all::<Snapshot>(None).await?, &mut inv, |i| {
        &mut i.snapshots
    });
    by_project(objects.list_all::<ElasticIp>(None).await?, &mut inv, |i| {
        &mut i.eips
    });
    by_project(
        objects.list_all::<LoadBalancer>(None).await?,
        &mut inv,
        |i| &mut i.lbs,
    );
    by_project(objects.list_all::<Bucket>(None).await?, &mut inv, |i| {
        &mut i.buckets
    });
    Ok(inv)
}

fn store_error(e: MeteringError) -> ObjectError {
    match e {
        MeteringError::Store(e) => ObjectError::Store(e),
        MeteringError::Corrupt { key, why } => ObjectError::Corrupt { key, why },
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub struct MeteringController;

#[async_trait]
impl Reconciler for MeteringController {
    fn name(&self) -> &'static str {
        "metering"
    }
    fn watches(&self) -> Vec<String> {
        vec![
            object_prefix::<Instance>(None),
            object_prefix::<Volume>(None),
            object_prefix::<Snapshot>(None),
            object_prefix::<ElasticIp>(None),
            object_prefix::<LoadBalancer>(None),
            object_prefix::<Bucket>(None),
        ]
    }
    fn resync(&self) -> Duration {
        RESYNC
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let metering = Metering::new(objects.store().clone());
        let stored = metering.ledgers().await.map_err(store_error)?;
        let mut inv = inventories(objects).await?;
        for project in stored.ok.keys() {
            inv.entry(project.clone()).or_default();
        }
        let now = unix_now();
        for (project, inv) in &inv {
            if let Some(why) = stored.corrupt.get(project) {
                tracing::warn!(
                    project,
                    why,
                    "metering skips a project whose ledger is unreadable"
                );
                continue;
            }
            let (old, revision) = match stored.ok.get(project) {
                Some((l, rev)) => (l.clone(), *rev),
                None => (fresh(project), 0),
            };
            let (pass, skipped) = pass_of(&old, inv, now);
            for s in skipped {
                tracing::warn!(project, object = %s.id, why = %s.why, "metering skips an object");
            }
            if !worth_writing(&old, &pass) {
                continue;
            }
            if !metering
                .commit(revision, &pass)
                .await
                .map_err(store_error)?
            {
                tracing::info!(
                    project,
                    "a metering pass lost a race; the next one redoes it"
                );
            }
        }
        Ok(())
    }
}

fn fresh(project: &str) -> Ledger {
    Ledger {
        project: project.to_string(),
        ..Ledger::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::{InstancePhase, InstanceSpec, InstanceStatus, Metadata, Resource};

    fn vm(id: &str, started_at: &str) -> Doc<Instance> {
        Resource {
            metadata: Metadata::new(id, id, Some("prj-a".into())),
            spec: InstanceSpec::default(),
            status: InstanceStatus {
                phase: InstancePhase::Running,
                vcpus: 1,
                started_at: Some(started_at.into()),
                ..InstanceStatus::default()
            },
        }
    }

    #[test]
    fn a_bad_object_is_skipped_and_keeps_its_cursor() {
        let t0 = yunhan_model::epoch_of("2026-01-01T10:00:00Z").unwrap();
        let inv = Inventory {
            instances: vec![
                vm("ins-good", "2026-01-01T10:00:00Z"),
                vm("ins-bad", "soon"),
            ],
            ..Inventory::default()
        };
        let mut old = fresh("prj-a");
        let kept = yunhan_model::Cursor {
            until: t0 - 5,
            running: true,
        };
        old.cursors.insert("ins-bad".into(), kept);
        let (pass, skipped) = pass_of(&old, &inv, t0 + 90);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].id, "ins-bad");
        assert_eq!(pass.ledger.open["ins-good"].seconds, 90);
        assert_eq!(pass.ledger.cursors["ins-bad"], kept);
        assert!(worth_writing(&old, &pass));
        let (again, _) = pass_of(&pass.ledger, &inv, t0 + 90);
        assert!(!worth_writing(&pass.ledger, &again), "nothing new");
    }

    #[tokio::test]
    async fn a_pass_repeated_or_by_a_new_controller_counts_nothing_twice() {
        use yunhan_store::StoreExt;
        let store: std::sync::Arc<dyn yunhan_store::Store> =
            std::sync::Arc::new(yunhan_store::MemStore::new());
        let objects = Objects::new(store.clone());
        let mut doc = vm("ins-1", &yunhan_model::rfc3339_of(unix_now() - 60));
        doc.status.stopped_at = Some(yunhan_model::rfc3339_of(unix_now() - 30));
        let key = yunhan_store::objects::object_key::<Instance>("prj-a", "ins-1");
        store
            .put(&key, serde_json::to_vec(&doc).unwrap())
            .await
            .unwrap();
        let seconds = || async {
            let m = Metering::new(store.clone());
            let l = m.ledger("prj-a").await.unwrap().unwrap();
            let closed = m.records("prj-a", 0, i64::MAX).await.unwrap();
            let lines = closed.into_iter().flat_map(|r| r.lines);
            lines
                .chain(l.open.into_values())
                .map(|l| l.seconds)
                .sum::<u64>()
        };
        MeteringController.reconcile(&objects).await.unwrap();
        assert_eq!(seconds().await, 30);
        // Again, and by another controller (a restart, a new leader): the same 30 s.
        MeteringController.reconcile(&objects).await.unwrap();
        let other = Objects::new(store.clone());
        MeteringController.reconcile(&other).await.unwrap();
        assert_eq!(seconds().await, 30);
    }
}
