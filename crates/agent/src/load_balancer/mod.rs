//! The load balancers of this host (issue #16; model: `model/src/load_balancer.rs`).
//!
//! A load balancer is realised on the host the controller names in `status.host`, once the
//! API has given it a port (`status.address`, `device`, `mac`, …):
//!
//! 1. a namespace `<prefix>ynl-<hash of its id>` (`<prefix>` = `<netns>-` under `--netns`,
//!    like router namespaces) holding `eth0`, the far end of a veth whose host end is the
//!    port device (`namespace.rs`); the network agent plugs that into the VPC bridge like a
//!    VM's tap;
//! 2. HAProxy in that namespace, with a configuration rendered from the document
//!    (`haproxy.rs`) in `<state_dir>/lb/<id>/`, reloaded without dropping connections when
//!    it changes (`process.rs`), for every listener but those Vortex serves;
//! 3. Vortex (`yunhan vortex --mode nat`, tc BPF on `eth0`) beside it while the document
//!    has layer-4 listeners Vortex can serve (plain TCP balanced by round robin or source:
//!    `vortex.rs` says which), with a configuration file it re-reads when it changes;
//! 4. its status: `Active` with the hash of both configurations in `served` and each
//!    listener's counters and members' health from HAProxy's stats socket or Vortex's
//!    status file (`engine` says which), or `Failed` with HAProxy's own words in
//!    `message` (Vortex's last words after `vortex: `). One failing load balancer never
//!    holds back the others.
//!    A pass runs every 2 s while load balancers run here; between passes a probe reads
//!    the stats every [`HEALTH_PROBE`] and reports a member's health as soon as it changes.
//!    Counters go on across reloads and restarts (`local.rs`).
//!
//! This file is the reconciler and the status writes; `node.rs` runs a pass over the
//! host's load balancers (and the probe), `local.rs` holds what the agent knows of one
//! (its HAProxy, what it serves, its last failure and when to try again, its counters),
//! `local_vortex.rs` the same of its Vortex.
//!
//! A load balancer with replicas (`spec.replicas`) is realised replica by replica: each
//! replica placed here is a [`Unit`] of its own (namespace, HAProxy, Vortex, directory,
//! keyed `<id>.r<n>`), its port the replica's, the virtual address on its `lo`
//! (`namespace.rs`); it reports into `status.replicas[n-1]`, which the load balancer's
//! status then sums up.
//!
//! A load balancer that is gone, being deleted or placed elsewhere is stopped and its
//! namespace deleted; at start, namespaces of ours that no load balancer here wants go.
//!
//! HAProxy and Vortex run as children of the agent and die with it (`PR_SET_PDEATHSIG`):
//! unlike VMs, load balancers do not outlive their agent, and an agent restart restarts
//! them (a short outage; open connections are cut). Making them outlive the agent is
//! future work.

mod haproxy;
mod local;
mod local_vortex;
mod namespace;
mod node;
mod process;
#[cfg(test)]
mod tests;
mod vortex;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use yunhan_model::{Doc, LbPhase, ListenerStatus, LoadBalancer, LoadBalancerStatus};
use yunhan_store::objects::{lb_key_secret_key, object_prefix, ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;

use haproxy::RenderError;
use namespace::NsError;
use node::Node;
use process::ProcError;

/// A pass at least this often while load balancers run here, else [`IDLE_RESYNC`].
const ACTIVE_RESYNC: Duration = Duration::from_secs(2);
const IDLE_RESYNC: Duration = Duration::from_secs(10);
/// How often the stats are read between passes (a member's health is reported within it).
pub const HEALTH_PROBE: Duration = Duration::from_millis(250);
/// Counters alone are written at most this often (every status write triggers a pass).
const COUNTERS_EVERY: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
enum LbError {
    #[error("namespace: {0}")]
    Namespace(#[from] NsError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Haproxy(#[from] ProcError),
}

/// The load-balancer reconciler of one host.
pub struct LbAgent {
    host_id: String,
    node: Arc<Node>,
    /// When each load balancer's status was last written (see [`COUNTERS_EVERY`]).
    written: Mutex<HashMap<String, Instant>>,
}

impl LbAgent {
    /// `netns`: the agent's `--netns` (the port's host end lives there; names get its prefix).
    pub fn new(host_id: String, state_dir: &Path, netns: Option<String>) -> LbAgent {
        LbAgent {
            host_id,
            node: Arc::new(Node::new(state_dir, netns)),
            written: Mutex::default(),
        }
    }

    /// What this host realises of `lb`: the whole of it, or those of its replicas placed
    /// here.
    fn units(&self, lb: Doc<LoadBalancer>) -> Vec<Unit> {
        let s = &lb.status;
        if lb.metadata.deleting.is_some() || s.address.is_empty() {
            return Vec::new();
        }
        if s.replicas.is_empty() {
            let here = s.host == self.host_id && !s.device.is_empty();
            return if here {
                vec![Unit { lb, replica: None }]
            } else {
                Vec::new()
            };
        }
        let mine: Vec<usize> = (s.replicas.iter().enumerate())
            .filter(|(_, r)| r.host == self.host_id && !r.device.is_empty())
            .map(|(i, _)| i)
            .collect();
        (mine.into_iter())
            .map(|i| Unit {
                lb: lb.clone(),
                replica: Some(i),
            })
            .collect()
    }

    /// Reports members' health as soon as it changes (see [`HEALTH_PROBE`]), until
    /// `shutdown`.
    pub async fn watch_health(
        self: Arc<Self>,
        objects: Objects,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEALTH_PROBE) => {}
                _ = shutdown.changed() => return,
            }
            let node = self.node.clone();
            let Ok(changed) = tokio::task::spawn_blocking(move || node.probe()).await else {
                continue;
            };
            for (key, report) in changed {
                if let Err(e) = self.write(&objects, &key, &report, None).await {
                    tracing::warn!(lb = %key, error = %e, "cannot write the load balancer's status");
                }
            }
        }
    }

    /// Writes `report` of unit `key` into the load balancer's status when it says
    /// something new (`listed`: the status as listed, which spares a read when nothing is
    /// new).
    async fn write(
        &self,
        objects: &Objects,
        key: &str,
        report: &Report,
        listed: Option<&LoadBalancerStatus>,
    ) -> Result<(), ObjectError> {
        let due = lock(&self.written)
            .get(key)
            .is_none_or(|t| t.elapsed() >= COUNTERS_EVERY);
        let (id, replica) = Unit::parse_key(key);
        if listed.is_some_and(|old| !report.changes(old, replica, due)) {
            return Ok(());
        }
        let mut wrote = false;
        objects
            .modify::<LoadBalancer>(id, |doc| {
                // Moved meanwhile: no longer ours to report.
                let host = match replica {
                    None => Some(&doc.status.host),
                    Some(i) => doc.status.replicas.get(i).map(|r| &r.host),
                };
                wrote = host == Some(&self.host_id) && report.changes(&doc.status, replica, due);
                if wrote {
                    report.apply(&mut doc.status, replica);
                }
                wrote
            })
            .await?;
        if wrote {
            lock(&self.written).insert(key.to_string(), Instant::now());
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a load balancer's directory")
        }
        _ => {}
    }
}

#[async_trait]
impl Reconciler for LbAgent {
    fn name(&self) -> &'static str {
        "agent-load-balancer"
    }
    fn watches(&self) -> Vec<String> {
        vec![object_prefix::<LoadBalancer>(None)]
    }
    fn resync(&self) -> Duration {
        if self.node.busy() {
            return ACTIVE_RESYNC;
        }
        IDLE_RESYNC
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let all = objects.list_all::<LoadBalancer>(None).await?;
        let mut mine: Vec<Unit> = all.into_iter().flat_map(|lb| self.units(lb)).collect();
        for u in &mut mine {
            with_keys(objects, &mut u.lb).await?;
        }
        lock(&self.written).retain(|key, _| mine.iter().any(|u| u.key() == *key));
        let node = self.node.clone();
        let (mine, reports) = match tokio::task::spawn_blocking(move || {
            let r = node.pass(&mine);
            (mine, r)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "load balancer pass failed");
                return Ok(());
            }
        };
        let mut first_error = None;
        for (u, (key, report)) in mine.iter().zip(reports) {
            if let Err(e) = self.write(objects, &key, &report, Some(&u.lb.status)).await {
                tracing::warn!(lb = %key, error = %e, "cannot write the load balancer's status");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Puts each HTTPS listener's private key (kept by the API as a secret, never in the
/// document) into the listener, for the pass to write its PEM file.
async fn with_keys(objects: &Objects, lb: &mut Doc<LoadBalancer>) -> Result<(), ObjectError> {
    for l in lb
        .spec
        .listeners
        .iter_mut()
        .filter(|l| l.certificate.is_some())
    {
        let key = lb_key_secret_key(&lb.metadata.id, &l.name);
        if let Some(kv) = objects.store().get(&key).await? {
            l.key = Some(String::from_utf8_lossy(&kv.value).into_owned());
        }
    }
    Ok(())
}

/// What a pass (or the probe) found of one load balancer.
#[derive(Debug, Clone, Default, PartialEq)]
struct Report {
    /// The hash of the configuration HAProxy (and Vortex) serve.
    served: Option<String>,
    /// Why it is not serving what it should.
    failure: Option<String>,
    listeners: Vec<ListenerStatus>,
}

impl Report {
    /// Puts it into the load balancer's status, or into its replica's (then summed up).
    fn apply(&self, st: &mut LoadBalancerStatus, replica: Option<usize>) {
        let phase = match (&self.failure, &self.served) {
            (Some(_), _) => LbPhase::Failed,
            (None, Some(_)) => LbPhase::Active,
            (None, None) => LbPhase::Provisioning,
        };
        let message = self.failure.clone().unwrap_or_default();
        let served = self.served.clone().unwrap_or_default();
        let listeners = self.listeners.clone();
        match replica {
            // A replica that is gone meanwhile has nothing to report into.
            Some(i) => {
                if let Some(r) = st.replicas.get_mut(i) {
                    (r.phase, r.message, r.served, r.listeners) =
                        (phase, message, served, listeners);
                    st.sum_replicas();
                }
            }
            None => {
                (st.phase, st.message, st.served, st.listeners) =
                    (phase, message, served, listeners)
            }
        }
    }

    /// Whether it changes `old` (counters count only when `counters` is true).
    fn changes(&self, old: &LoadBalancerStatus, replica: Option<usize>, counters: bool) -> bool {
        let mut new = old.clone();
        self.apply(&mut new, replica);
        if counters {
            return new != *old;
        }
        without_counters(&new) != without_counters(old)
    }
}

fn without_counters(s: &LoadBalancerStatus) -> LoadBalancerStatus {
    let mut s = s.clone();
    let replicas = s.replicas.iter_mut().map(|r| &mut r.listeners);
    for l in std::iter::once(&mut s.listeners).chain(replicas).flatten() {
        (l.connections, l.bytes_in, l.bytes_out) = (0, 0, 0);
    }
    s
}

/// What this host realises of a load balancer: the whole of it (`replica` None), or its
/// replica `replica` (index into `status.replicas`).
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub(super) lb: Doc<LoadBalancer>,
    pub(super) replica: Option<usize>,
}

impl Unit {
    /// Its key (directory, namespace and status writes): the load balancer's id, or
    /// `<id>.r<n>` for its n-th replica (from 1; ids have no '.').
    pub(super) fn key(&self) -> String {
        let id = &self.lb.metadata.id;
        match self.replica {
            None => id.clone(),
            Some(i) => format!("{id}.r{}", i + 1),
        }
    }

    /// The load balancer's id and replica index of a key.
    fn parse_key(key: &str) -> (&str, Option<usize>) {
        let replica = key.rsplit_once(".r").and_then(|(id, n)| {
            let n: usize = n.parse().ok()?;
            Some((id, n.checked_sub(1)?))
        });
        match replica {
            Some((id, i)) => (id, Some(i)),
            None => (key, None),
        }
    }
}
