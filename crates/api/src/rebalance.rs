//! `GET /v1/rebalance?target=80` (admins): the live migrations that would bring every
//! host at or under `target` percent of its limits, planned by the pure
//! `model::scheduling::rebalance` over what the scheduler counts (running VMs move live,
//! stopped ones cold), and the VMs that cannot move (a disk on their host). Nothing moves here: the CLI's
//! `host rebalance --apply` requests the migrations one at a time.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use yunhan_model::scheduling::rebalance::{rebalance, Resident};
use yunhan_model::scheduling::{demand, Capacity};
use yunhan_model::{
    ApiError, Doc, Host, HostLoad, Instance, InstancePhase, PinnedVm, PlacementGroup,
    RebalanceMove, RebalancePlan, Volume, DEFAULT_POOL,
};
use yunhan_store::objects::GLOBAL_SCOPE;

use crate::auth::Principal;
use crate::error::Result;
use crate::extract::QueryParams;
use crate::lookup::forbidden;
use crate::Shared;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RebalanceQuery {
    /// Percent, 10–100; default 80.
    target: Option<String>,
}

/// `GET /v1/rebalance`: the plan (a dry run).
pub(crate) async fn plan(
    State(s): State<Shared>,
    p: Principal,
    QueryParams(q): QueryParams<RebalanceQuery>,
) -> Result<Json<RebalancePlan>> {
    if !p.is_admin() {
        return Err(forbidden("rebalancing hosts"));
    }
    let target = target_of(q.target.as_deref())?;
    let hosts = s.objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await?;
    let instances = s.objects.list_all::<Instance>(None).await?;
    let groups = s.objects.list_all::<PlacementGroup>(None).await?;
    let volumes = s.objects.list_all::<Volume>(None).await?;
    let cap = Capacity::build(&hosts, &instances, &groups);
    let residents: Vec<Resident> = (instances.iter())
        .filter_map(|i| {
            Some(Resident {
                id: i.metadata.id.clone(),
                host: i.status.host.clone()?,
                demand: demand(i, &cap.groups),
                pinned: pinned(i, &volumes),
            })
        })
        .collect();
    let plan = rebalance(
        cap.candidates(),
        &residents,
        target / 100.0,
        &s.config.placement,
    );
    Ok(Json(answer(target, &plan, &hosts, &instances, &residents)))
}

fn target_of(raw: Option<&str>) -> Result<f64> {
    let Some(raw) = raw else {
        return Ok(80.0);
    };
    match raw.trim_end_matches('%').parse::<f64>() {
        Ok(t) if (10.0..=100.0).contains(&t) => Ok(t),
        _ => Err(ApiError::invalid_field(
            "target",
            format!("{raw:?} is not a target load: a percent from 10 to 100, e.g. 80"),
        )
        .into()),
    }
}

/// Why `inst` cannot move, if it cannot: the same rules as a migration (it runs, or is
/// stopped and moves cold, and every disk is on shared storage: it boots from a volume,
/// none is local).
fn pinned(inst: &Doc<Instance>, volumes: &[Doc<Volume>]) -> Option<String> {
    let stopped = inst.status.phase == InstancePhase::Stopped && !inst.spec.running;
    if inst.status.phase != InstancePhase::Running && !stopped {
        return Some(format!(
            "{:?}: running VMs move live and stopped ones cold, nothing else",
            inst.status.phase
        ));
    }
    if inst.spec.boot_volume.is_none() {
        return Some(
            "its root disk is a copy on its host; VMs booting from a Ceph volume move".into(),
        );
    }
    let id = &inst.metadata.id;
    let disks = (volumes.iter()).filter(|v| {
        Some(&v.metadata.id) == inst.spec.boot_volume.as_ref()
            || v.spec.instance.as_ref() == Some(id)
    });
    let local = disks.into_iter().find(|v| v.spec.pool == DEFAULT_POOL)?;
    Some(format!(
        "volume {:?} is on its host's local disk",
        local.metadata.name
    ))
}

/// The plan with names, for people.
fn answer(
    target: f64,
    plan: &yunhan_model::scheduling::rebalance::Plan,
    hosts: &[Doc<Host>],
    instances: &[Doc<Instance>],
    residents: &[Resident],
) -> RebalancePlan {
    let host_name: HashMap<&str, &str> = (hosts.iter())
        .map(|h| (h.metadata.id.as_str(), h.metadata.name.as_str()))
        .collect();
    let vm_name: HashMap<&str, &str> = (instances.iter())
        .map(|i| (i.metadata.id.as_str(), i.metadata.name.as_str()))
        .collect();
    let name = |m: &HashMap<&str, &str>, id: &str| m.get(id).copied().unwrap_or(id).to_string();
    let hot: Vec<&str> = (plan.loads.iter())
        .filter(|(_, before, _)| *before > target)
        .map(|(h, _, _)| h.as_str())
        .collect();
    RebalancePlan {
        target_percent: target,
        moves: (plan.moves.iter())
            .map(|m| RebalanceMove {
                instance: m.instance.clone(),
                name: name(&vm_name, &m.instance),
                from: m.from.clone(),
                from_name: name(&host_name, &m.from),
                to: m.to.clone(),
                to_name: name(&host_name, &m.to),
            })
            .collect(),
        hosts: (plan.loads.iter())
            .map(|(h, before, after)| HostLoad {
                host: h.clone(),
                name: name(&host_name, h),
                before_percent: (before * 10.0).round() / 10.0,
                after_percent: (after * 10.0).round() / 10.0,
            })
            .collect(),
        pinned: (residents.iter())
            .filter(|r| hot.contains(&r.host.as_str()))
            .filter_map(|r| {
                Some(PinnedVm {
                    instance: r.id.clone(),
                    name: name(&vm_name, &r.id),
                    host: name(&host_name, &r.host),
                    reason: r.pinned.clone()?,
                })
            })
            .collect(),
    }
}
