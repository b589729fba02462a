//! The snapshot-policy controller (docs/snapshot-policies.md), on the leader: every
//! second (and when policies change) each enabled policy whose `status.next_run` has
//! passed takes a snapshot of its volume, or of every disk of its instance, in one pass;
//! then deletes its own snapshots beyond `keep` per disk, oldest first. The snapshots
//! are `Snapshot` documents like the API's (same checks, [`check_snapshottable`]),
//! labelled [`POLICY_LABEL`] = the policy's id; the volume's agent takes them. When is
//! [`plan`], what to delete is [`to_prune`], both pure. A run that fails says why in
//! `status.last_error` (and an event when the reason changes); the other policies go on.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;
use yunhan_model::{
    check_snapshottable, epoch_of, new_id, now, restoring_from, rfc3339_of, validate_name,
    ApiError, Cron, Doc, Instance, Kind, Metadata, Resource, Snapshot, SnapshotPhase,
    SnapshotPolicy, SnapshotPolicySpec, SnapshotPolicyStatus, SnapshotSpec, Volume, POLICY_LABEL,
};
use yunhan_store::objects::{object_prefix, ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;

/// What a policy needs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing: not due yet, or disabled and unscheduled.
    Idle,
    /// Write this next run (none: disabled) without taking anything.
    Schedule(Option<i64>),
    /// Take the snapshots of the run due at `due`; the run after is `next` (computed from
    /// now, so a window missed while no leader ran costs one run, not one per tick).
    Fire { due: i64, next: Option<i64> },
}

/// The plan of a policy at `now` (unix seconds). A next run that is not a time of the
/// schedule (the schedule was changed) is planned again from now.
pub fn plan(
    spec: &SnapshotPolicySpec,
    status: &SnapshotPolicyStatus,
    cron: &Cron,
    now: i64,
) -> Plan {
    let after = |t: i64| {
        let t = OffsetDateTime::from_unix_timestamp(t).ok()?;
        cron.next_after(t).map(|n| n.unix_timestamp())
    };
    if !spec.enabled {
        return match status.next_run {
            Some(_) => Plan::Schedule(None),
            None => Plan::Idle,
        };
    }
    let next = status.next_run.as_deref().and_then(epoch_of);
    let scheduled =
        next.filter(|t| OffsetDateTime::from_unix_timestamp(*t).is_ok_and(|at| cron.matches(at)));
    match scheduled {
        None => Plan::Schedule(after(now)),
        Some(t) if t > now => Plan::Idle,
        Some(due) => Plan::Fire {
            due,
            next: after(now),
        },
    }
}

/// A snapshot a policy took, as [`to_prune`] weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub id: String,
    pub name: String,
    pub volume: String,
    /// `metadata.created` (RFC 3339).
    pub created: String,
    /// Still being taken: never deleted.
    pub creating: bool,
    /// Its volume is being restored from it: not deleted meanwhile.
    pub restoring: bool,
}

/// The snapshots to delete, oldest first: per volume, all but the newest `keep` (by
/// creation time, then name), except any still being taken or restored from.
pub fn to_prune(taken: &[Taken], keep: u32) -> Vec<String> {
    let mut by_volume: BTreeMap<&str, Vec<&Taken>> = BTreeMap::new();
    for t in taken {
        by_volume.entry(&t.volume).or_default().push(t);
    }
    let mut out = Vec::new();
    for mut snaps in by_volume.into_values() {
        snaps.sort_by(|a, b| (&b.created, &b.name).cmp(&(&a.created, &a.name)));
        let old = snaps.into_iter().skip(keep as usize).rev();
        out.extend(
            old.filter(|t| !t.creating && !t.restoring)
                .map(|t| t.id.clone()),
        );
    }
    out
}

/// `<policy>-<YYYYMMDDTHHMMSSZ>` of the run due at `due`, with `-d<N>` for disk N of an
/// instance. Named by the due time, a run retried after a crash finds its own snapshot.
pub fn snapshot_name(policy: &str, due: i64, disk: Option<usize>) -> String {
    let stamp: String = rfc3339_of(due)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    match disk {
        Some(n) => format!("{policy}-{stamp}-d{n}"),
        None => format!("{policy}-{stamp}"),
    }
}

/// Why a run took nothing (or not everything).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("volume {0} no longer exists")]
    VolumeGone(String),
    #[error("instance {0} no longer exists")]
    InstanceGone(String),
    #[error(
        "instance {0} has no volumes to snapshot (a root disk that is not a volume cannot be)"
    )]
    NoDisks(String),
    #[error("{}", .0.message)]
    Refused(ApiError),
    #[error("{0}: {1}")]
    Store(String, ObjectError),
}

/// The controller.
#[derive(Default)]
pub struct SnapshotPolicies;

#[async_trait::async_trait]
impl Reconciler for SnapshotPolicies {
    fn name(&self) -> &'static str {
        "snapshot-policies"
    }

    fn watches(&self) -> Vec<String> {
        vec![object_prefix::<SnapshotPolicy>(None)]
    }

    fn resync(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// Every policy on its own: one that fails says why and the others go on.
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for p in objects.list_all::<SnapshotPolicy>(None).await? {
            if let Err(e) = one(objects, &p, now).await {
                tracing::warn!(policy = %p.metadata.id, error = %e, "snapshot policy not run");
            }
        }
        Ok(())
    }
}

/// Plans one policy and carries the plan out.
async fn one(objects: &Objects, p: &Doc<SnapshotPolicy>, now: i64) -> Result<(), ObjectError> {
    let Ok(cron) = Cron::parse(&p.spec.schedule) else {
        return Ok(()); // the API refuses such a schedule
    };
    let mut status = p.status.clone();
    match plan(&p.spec, &p.status, &cron, now) {
        Plan::Idle => return Ok(()),
        Plan::Schedule(next) => status.next_run = next.map(rfc3339_of),
        Plan::Fire { due, next } => {
            let failures = run(objects, p, due).await?;
            status.last_run = Some(rfc3339_of(now));
            status.next_run = next.map(rfc3339_of);
            status.taken += u64::from(failures.is_empty());
            let why: Vec<String> = failures.iter().map(|e| e.to_string()).collect();
            status.last_error = why.join("; ");
        }
    }
    let id = &p.metadata.id;
    objects
        .modify::<SnapshotPolicy>(id, |d| {
            d.status = status.clone();
            true
        })
        .await?;
    if !status.last_error.is_empty() && status.last_error != p.status.last_error {
        let what = format!("snapshots not taken: {}", status.last_error);
        crate::events::platform_event::<SnapshotPolicy>(objects, p, "snapshot-failed", what).await;
    }
    Ok(())
}

/// One run: a snapshot of each disk, then the pruning. What failed is returned; only a
/// store error reading the project's volumes ends the run early.
async fn run(
    objects: &Objects,
    p: &Doc<SnapshotPolicy>,
    due: i64,
) -> Result<Vec<RunError>, ObjectError> {
    let project = p.metadata.project.as_deref().unwrap_or_default();
    let volumes: BTreeMap<String, Doc<Volume>> =
        (objects.list_all::<Volume>(Some(project)).await?)
            .into_iter()
            .map(|v| (v.metadata.id.clone(), v))
            .collect();
    let mut failures = Vec::new();
    match disks(objects, p, &volumes).await {
        Ok(disks) => {
            let numbered = p.spec.instance.is_some();
            for (n, vol) in disks.iter().enumerate() {
                let name = snapshot_name(&p.metadata.name, due, numbered.then_some(n));
                if let Err(e) = take(objects, p, vol, name).await {
                    failures.push(e);
                }
            }
        }
        Err(e) => failures.push(e),
    }
    failures.extend(prune(objects, p, &volumes).await?);
    Ok(failures)
}

/// The volumes a run snapshots: the policy's volume, or the instance's boot volume and
/// attached volumes (in that order, then by id).
async fn disks<'a>(
    objects: &Objects,
    p: &Doc<SnapshotPolicy>,
    volumes: &'a BTreeMap<String, Doc<Volume>>,
) -> Result<Vec<&'a Doc<Volume>>, RunError> {
    if let Some(v) = &p.spec.volume {
        return volumes
            .get(v)
            .map(|v| vec![v])
            .ok_or_else(|| RunError::VolumeGone(v.clone()));
    }
    let id = p.spec.instance.clone().unwrap_or_default();
    let ins = (objects.get::<Instance>(&id).await)
        .map_err(|e| RunError::Store(id.clone(), e))?
        .filter(|i| i.metadata.project == p.metadata.project)
        .ok_or_else(|| RunError::InstanceGone(id.clone()))?;
    let boot = ins.spec.boot_volume.as_deref();
    let mut disks: Vec<&Doc<Volume>> = boot.and_then(|b| volumes.get(b)).into_iter().collect();
    disks.extend(volumes.values().filter(|v| {
        v.spec.instance.as_deref() == Some(id.as_str()) && Some(v.metadata.id.as_str()) != boot
    }));
    match disks.is_empty() {
        true => Err(RunError::NoDisks(ins.metadata.name)),
        false => Ok(disks),
    }
}

/// Writes the snapshot document of `vol`, as the API would; one already there under
/// this run's name (a retry after a crash) counts as taken.
async fn take(
    objects: &Objects,
    p: &Doc<SnapshotPolicy>,
    vol: &Doc<Volume>,
    name: String,
) -> Result<(), RunError> {
    check_snapshottable(&vol.metadata.name, vol).map_err(RunError::Refused)?;
    let spec = SnapshotSpec {
        volume: vol.metadata.id.clone(),
    };
    validate_name("metadata.name", &name).map_err(RunError::Refused)?;
    Snapshot::validate(&spec).map_err(RunError::Refused)?;
    let mut metadata = Metadata::new(
        new_id(Snapshot::ID_PREFIX),
        name.clone(),
        p.metadata.project.clone(),
    );
    metadata
        .labels
        .insert(POLICY_LABEL.into(), p.metadata.id.clone());
    let doc = Resource {
        metadata,
        spec,
        status: Default::default(),
    };
    match objects.create::<Snapshot>(doc).await {
        Ok(_) | Err(ObjectError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(RunError::Store(name, e)),
    }
}

/// Deletes the policy's snapshots beyond `keep` (marked for their volume's agent when a
/// host holds them, as the API does). Returns what could not be deleted.
async fn prune(
    objects: &Objects,
    p: &Doc<SnapshotPolicy>,
    volumes: &BTreeMap<String, Doc<Volume>>,
) -> Result<Vec<RunError>, ObjectError> {
    let project = p.metadata.project.as_deref().unwrap_or_default();
    let mine: Vec<Doc<Snapshot>> = (objects.list_all::<Snapshot>(Some(project)).await?)
        .into_iter()
        .filter(|s| s.metadata.labels.get(POLICY_LABEL) == Some(&p.metadata.id))
        .filter(|s| s.metadata.deleting.is_none())
        .collect();
    let taken: Vec<Taken> = mine.iter().map(|s| weighed(s, volumes)).collect();
    let mut failures = Vec::new();
    for id in to_prune(&taken, p.spec.keep) {
        let Some(snap) = mine.iter().find(|s| s.metadata.id == id) else {
            continue;
        };
        let hosted = volumes
            .get(&snap.spec.volume)
            .is_some_and(|v| v.status.host.is_some());
        if let Err(e) = remove(objects, snap, hosted).await {
            failures.push(RunError::Store(snap.metadata.name.clone(), e));
        }
    }
    Ok(failures)
}

fn weighed(s: &Doc<Snapshot>, volumes: &BTreeMap<String, Doc<Volume>>) -> Taken {
    Taken {
        id: s.metadata.id.clone(),
        name: s.metadata.name.clone(),
        volume: s.spec.volume.clone(),
        created: s.metadata.created.clone(),
        creating: s.status.phase == SnapshotPhase::Creating,
        restoring: (volumes.get(&s.spec.volume)).is_some_and(|v| restoring_from(v, &s.metadata.id)),
    }
}

/// Deletes a snapshot now, or marks it for the agent of its volume's host.
async fn remove(objects: &Objects, snap: &Doc<Snapshot>, hosted: bool) -> Result<(), ObjectError> {
    if !hosted {
        return objects.delete::<Snapshot>(snap).await;
    }
    let mark = |s: &mut Doc<Snapshot>| s.metadata.deleting.replace(now()).is_none();
    objects
        .modify::<Snapshot>(&snap.metadata.id, mark)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests;
