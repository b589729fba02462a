//! One load balancer realised on this host: its HAProxy, the configuration it serves, why
//! it does not serve the one it should, and what its stats socket said.
//!
//! Counters survive HAProxy's reloads and restarts: a new worker counts from zero, so the
//! totals read last from the former one are kept ([`Local::retired`]) and added to the new
//! one's. Whatever the former worker still serves after a reload is not counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use yunhan_model::{ListenerStatus, LoadBalancerSpec, MemberHealth};

use super::haproxy;
use super::namespace;
use super::process::{self, Files, Haproxy, ProcError, Spawner};
use super::Report;

/// A configuration HAProxy failed to load is tried again after this long.
const RETRY: Duration = Duration::from_secs(10);

/// A listener's connections, bytes in and bytes out.
type Counters = (u64, u64, u64);

pub(super) struct Local {
    pub(super) id: String,
    pub(super) netns: String,
    pub(super) files: Files,
    pub(super) proc: Option<Haproxy>,
    /// The hash of the configuration HAProxy serves.
    pub(super) served: Option<String>,
    failure: Option<Failure>,
    /// The document's, as of the last pass (what the health probe reads the stats with).
    spec: LoadBalancerSpec,
    /// From the stats socket, with the retired counters (kept while it does not answer).
    listeners: Vec<ListenerStatus>,
    /// By listener: the totals of the HAProxy workers a reload or restart retired.
    retired: BTreeMap<String, Counters>,
}

struct Failure {
    message: String,
    /// Of the configuration HAProxy failed to load ("" for other failures: no waiting).
    hash: String,
    retry_at: Instant,
}

impl Local {
    pub(super) fn new(id: &str, netns: String, files: Files) -> Local {
        Local {
            id: id.to_string(),
            netns,
            files,
            proc: None,
            served: None,
            failure: None,
            spec: LoadBalancerSpec::default(),
            listeners: Vec::new(),
            retired: BTreeMap::new(),
        }
    }

    pub(super) fn set_spec(&mut self, spec: &LoadBalancerSpec) {
        if self.spec != *spec {
            self.spec = spec.clone();
        }
    }

    pub(super) fn failed(&mut self, hash: &str, message: String) {
        if self.failure.as_ref().map(|f| &f.message) != Some(&message) {
            tracing::warn!(lb = %self.id, error = %message, "load balancer failed");
        }
        self.failure = Some(Failure {
            message,
            hash: hash.to_string(),
            retry_at: Instant::now() + RETRY,
        });
    }

    /// Whether configuration `hash` failed a moment ago (it is not tried again yet).
    pub(super) fn waiting(&self, hash: &str) -> bool {
        (self.failure.as_ref()).is_some_and(|f| f.hash == hash && Instant::now() < f.retry_at)
    }

    pub(super) fn serving(&mut self, hash: &str) {
        if self.served.as_deref() != Some(hash) {
            let pid = self.proc.as_ref().map(Haproxy::pid);
            tracing::info!(lb = %self.id, served = hash, ?pid, "load balancer serving");
        }
        (self.served, self.failure) = (Some(hash.to_string()), None);
    }

    /// Loads the installed configuration: a reload of the running HAProxy, else a start.
    pub(super) fn load(&mut self, spawner: &Spawner) -> Result<(), ProcError> {
        if self.proc.is_none() {
            self.proc = Some(Haproxy::start(spawner, &self.netns, &self.files)?);
            return Ok(());
        }
        let totals = self.totals_now();
        if let Some(p) = self.proc.as_mut() {
            p.reload()?;
        }
        self.retired = totals;
        Ok(())
    }

    /// Forgets a HAProxy that exited by itself (it is started again at once).
    pub(super) fn reap(&mut self) {
        if let Some(e) = self.proc.as_mut().and_then(Haproxy::exited) {
            tracing::warn!(lb = %self.id, why = %e, "HAProxy exited; starting it again");
            self.retired = self.totals();
            (self.proc, self.served) = (None, None);
        }
    }

    pub(super) fn stop(&mut self) {
        self.retired = self.totals_now();
        if let Some(p) = self.proc.take() {
            p.stop();
        }
        self.served = None;
    }

    /// Stops it and removes its namespace (with the port) and directory.
    pub(super) fn remove(mut self) {
        self.stop();
        if let Err(e) = namespace::delete(&self.netns) {
            tracing::warn!(lb = %self.id, error = %e, "cannot delete the load balancer's namespace");
        }
        super::remove_dir(&self.files.dir);
        tracing::info!(lb = %self.id, "load balancer removed from this host");
    }

    /// Every listener's totals as last read.
    fn totals(&self) -> BTreeMap<String, Counters> {
        let mut t = self.retired.clone();
        for l in &self.listeners {
            t.insert(l.name.clone(), (l.connections, l.bytes_in, l.bytes_out));
        }
        t
    }

    /// Every listener's totals, read now if HAProxy answers.
    fn totals_now(&mut self) -> BTreeMap<String, Counters> {
        self.refresh();
        self.totals()
    }

    /// Reads the listeners' counters and members' health (if HAProxy runs); whether a
    /// member's health changed.
    pub(super) fn refresh(&mut self) -> bool {
        if self.proc.is_none() {
            let had = !self.listeners.is_empty();
            self.listeners.clear();
            return had;
        }
        let rows = match process::show_stat(&self.files.socket) {
            Ok(text) => haproxy::parse_stat(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(lb = %self.id, error = %e, "no stats this time");
                return false;
            }
        };
        let mut now = haproxy::listener_status(&self.spec, &rows);
        for l in &mut now {
            let (c, i, o) = self.retired.get(&l.name).copied().unwrap_or_default();
            (l.connections, l.bytes_in, l.bytes_out) =
                (l.connections + c, l.bytes_in + i, l.bytes_out + o);
        }
        let changed = health(&now) != health(&self.listeners);
        self.listeners = now;
        changed
    }

    pub(super) fn report(&self) -> Report {
        Report {
            served: self.served.clone(),
            failure: self.failure.as_ref().map(|f| f.message.clone()),
            listeners: self.listeners.clone(),
        }
    }
}

fn health(listeners: &[ListenerStatus]) -> Vec<Vec<MemberHealth>> {
    (listeners.iter())
        .map(|l| l.members.iter().map(|m| m.health).collect())
        .collect()
}
