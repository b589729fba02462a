use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use yunhan_model::{new_id, Host, HostSpec, HostStatus, Metadata, Resource};
use yunhan_store::objects::{alive_key, ObjectError, Objects, GLOBAL_SCOPE};
use yunhan_store::{Op, Txn};

use crate::{AgentConfig, AgentError};

/// What the agent found out about its machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// CPUs, memory (from /proc/meminfo) and free disk under `state_dir`.
pub fn discover(state_dir: &Path) -> Discovered {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    let disk_gib = nix::sys::statvfs::statvfs(state_dir)
        .map(|s| (s.blocks() * s.fragment_size()) >> 30)
        .unwrap_or(0);
    Discovered {
        cpus,
        memory_mib,
        disk_gib,
    }
}

/// Creates or refreshes this host's Host object; returns its id, which is
/// also remembered in `<state_dir>/host-id`.
pub async fn register(objects: &Objects, cfg: &AgentConfig) -> Result<String, AgentError> {
    let found = discover(&cfg.state_dir);
    // What the agent measures; what admins set (maintenance, overcommit) is kept.
    let spec = |admin: &HostSpec| HostSpec {
        hostname: cfg.name.clone(),
        address: cfg.address.clone(),
        cpus: found.cpus,
        memory_mib: found.memory_mib,
        disk_gib: found.disk_gib,
        gpus: cfg.gpus.clone(),
        ..admin.clone()
    };
    loop {
        if let Some(existing) = objects.get_by_name::<Host>(GLOBAL_SCOPE, &cfg.name).await? {
            let id = existing.metadata.id.clone();
            objects
                .modify::<Host>(&id, |h| {
                    let want = spec(&h.spec);
                    let version = env!("CARGO_PKG_VERSION");
                    if h.spec == want && h.status.agent_version == version {
                        return false;
                    }
                    h.spec = want;
                    h.status.agent_version = version.into();
                    true
                })
                .await?;
            remember(cfg, &id)?;
            return Ok(id);
        }
        let doc = Resource {
            metadata: Metadata::new(new_id("hst"), &cfg.name, None),
            spec: spec(&HostSpec {
                schedulable: true,
                ..Default::default()
            }),
            status: HostStatus {
                agent_version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            },
        };
        match objects.create::<Host>(doc).await {
            Ok(d) => {
                remember(cfg, &d.metadata.id)?;
                return Ok(d.metadata.id);
            }
            Err(ObjectError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn remember(cfg: &AgentConfig, id: &str) -> Result<(), AgentError> {
    let path = cfg.state_dir.join("host-id");
    std::fs::write(&path, id).map_err(|source| AgentError::StateDir { path, source })
}

/// Self-fencing: fires once per outage when the lease has gone unrenewed for
/// longer than its TTL.
struct Watchdog {
    ttl: Duration,
    fence: crate::compute::SelfFence,
    renewed: std::time::Instant,
    fenced: bool,
}

impl Watchdog {
    fn renewed(&mut self) {
        self.renewed = std::time::Instant::now();
        self.fenced = false;
    }
    fn check(&mut self) {
        if !self.fenced && self.renewed.elapsed() > self.ttl {
            self.fenced = true;
            self.fence.fence();
        }
    }
}

/// Holds the liveness lease: grant, attach the alive key, renew every TTL/3;
/// starts over whenever the lease is lost (e.g. the store restarted).
///
/// Once the lease has gone unrenewed for longer than `ttl` (the store has let it
/// expire, so the HA monitor may act), `fence` runs — once per outage.
pub async fn keep_alive(
    objects: Objects,
    host_id: String,
    ttl: Duration,
    fence: crate::compute::SelfFence,
    mut shutdown: watch::Receiver<bool>,
) {
    let store = objects.store().clone();
    let mut dog = Watchdog {
        ttl,
        fence,
        renewed: std::time::Instant::now(),
        fenced: false,
    };
    'outer: loop {
        if *shutdown.borrow() {
            return;
        }
        let lease = match store.lease_grant(ttl).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot get a liveness lease; retrying");
                dog.check();
                tokio::time::sleep(ttl / 3).await;
                continue;
            }
        };
        let put = Txn::new().then(Op::Put {
            key: alive_key(&host_id),
            value: b"alive".to_vec(),
            lease: Some(lease),
        });
        if let Err(e) = store.txn(put).await {
            tracing::warn!(error = %e, "cannot publish liveness; retrying");
            dog.check();
            continue;
        }
        dog.renewed();
        let mut tick = tokio::time::interval(ttl / 3);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // Measured before the call: a process stopped (or starved) for
                    // longer than the TTL has lost its lease whatever the store says.
                    dog.check();
                    if let Err(e) = store.lease_keepalive(lease).await {
                        tracing::warn!(error = %e, "liveness lease lost; re-registering");
                        dog.check();
                        continue 'outer;
                    }
                    dog.renewed();
                }
                _ = shutdown.changed() => {
                    let _ = store.lease_revoke(lease).await;
                    return;
                }
            }
        }
    }
}
