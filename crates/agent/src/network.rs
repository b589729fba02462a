//! The network data plane of a host: realises the plan the SDN controller writes for this
//! host (`/yunhan/plans/net/<host>`) with [`yunhan_net::realise::Realiser`], in the root
//! network namespace or in `--netns` (a test lab's "host"). Every pass re-applies the plan,
//! so drift (a deleted link, FDB entry or nft rule) is repaired within one resync period,
//! and a VM's freshly created tap is plugged into its VPC bridge. The last plan is kept in
//! `<state_dir>/net/last-plan.json`: with the control plane away (or after an agent
//! restart without it) the data plane keeps being realised from it.
//!
//! VM NICs are TAP devices created here, in the host's namespace ([`open_tap`]), and handed
//! to QEMU (which stays in the root namespace) as file descriptors.
//!
//! Object storage's address inside every VPC ([`s3_service`]) follows the router
//! namespaces of the plan realised here.

pub mod s3_service;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use yunhan_model::network::{DEVICES_PREFIX, PLAN_PREFIX, VIP_HOLDERS_PREFIX, VTEP_PREFIX};
use yunhan_net::realise::{Realiser, SystemRunner, Target};
use yunhan_net::HostPlan;
use yunhan_store::objects::{ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;
use yunhan_store::StoreExt;

/// Network settings of the agent.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Realise inside this existing network namespace (None: the agent's own).
    pub netns: Option<String>,
    /// This host's VXLAN tunnel endpoint (None: the host's `--address`).
    pub vtep: Option<Ipv4Addr>,
    /// How often the plan is re-applied without changes (drift repair, new taps).
    pub resync: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            netns: None,
            vtep: None,
            resync: Duration::from_secs(2),
        }
    }
}

/// The network reconciler of one host.
pub struct NetAgent {
    host_id: String,
    cfg: NetworkConfig,
    realiser: Arc<Mutex<Realiser<SystemRunner>>>,
    vtep_published: Mutex<bool>,
    /// The device list last published (see [`NetAgent::publish_devices`]).
    devices_published: Mutex<Option<BTreeSet<String>>>,
    /// VIP holders this host saw last (vip id → NIC id), see [`NetAgent::report_holders`].
    holders_seen: Mutex<BTreeSet<(String, String)>>,
    /// Object storage's address in the router namespaces realised here.
    s3: s3_service::S3Service,
}

/// What one pass realised: the VIP holders seen just before, and the router namespaces
/// of the plan (empty when no plan was applied; None when the pass itself failed).
#[derive(Default)]
struct Applied {
    holders: Vec<(String, String)>,
    routers: Option<BTreeSet<String>>,
}

/// What this host's VPC router namespaces' names start with: lab hosts share one machine,
/// so theirs carry the lab host's name and must not collide.
pub(crate) fn router_prefix(netns: Option<&str>) -> String {
    netns.map(|n| format!("{n}-")).unwrap_or_default()
}

impl NetAgent {
    pub fn new(host_id: String, state_dir: &std::path::Path, cfg: NetworkConfig) -> NetAgent {
        let target = Target {
            netns: cfg.netns.clone(),
            router_prefix: router_prefix(cfg.netns.as_deref()),
            state_dir: Some(state_dir.join("net")),
        };
        NetAgent {
            host_id,
            cfg,
            realiser: Arc::new(Mutex::new(Realiser::new(SystemRunner, target))),
            vtep_published: Mutex::new(false),
            devices_published: Mutex::new(None),
            holders_seen: Mutex::new(BTreeSet::new()),
            s3: s3_service::S3Service::new(),
        }
    }

    /// Serves object storage's VPC address in the router namespaces the reconciler
    /// realises, until `shutdown` (see [`s3_service`]); run it beside the reconciler.
    pub async fn serve_object_storage(
        self: Arc<Self>,
        objects: Objects,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        self.s3.run(objects, shutdown).await
    }

    /// The router namespaces where object storage's VPC address is served now.
    pub fn object_storage_namespaces(&self) -> BTreeSet<String> {
        self.s3.serving()
    }

    fn plan_key(&self) -> String {
        format!("{PLAN_PREFIX}{}", self.host_id)
    }

    async fn publish_vtep(&self, objects: &Objects) -> Result<(), ObjectError> {
        let Some(vtep) = self.cfg.vtep else {
            return Ok(());
        };
        if *lock(&self.vtep_published) {
            return Ok(());
        }
        objects
            .store()
            .put(
                &format!("{VTEP_PREFIX}{}", self.host_id),
                vtep.to_string().into_bytes(),
            )
            .await?;
        *lock(&self.vtep_published) = true;
        Ok(())
    }

    /// Publishes the host's network devices when they changed: a host has a leg on an
    /// external network when the device the network names is among them.
    async fn publish_devices(&self, objects: &Objects) -> Result<(), ObjectError> {
        let netns = self.cfg.netns.clone();
        let devices =
            match tokio::task::spawn_blocking(move || host_devices(netns.as_deref())).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot list the host's network devices");
                    return Ok(());
                }
                Err(_) => return Ok(()),
            };
        if lock(&self.devices_published).as_ref() == Some(&devices) {
            return Ok(());
        }
        let body = serde_json::to_vec(&devices).expect("a list of names serialises");
        objects
            .store()
            .put(&format!("{DEVICES_PREFIX}{}", self.host_id), body)
            .await?;
        *lock(&self.devices_published) = Some(devices);
        Ok(())
    }

    /// Reports the VIP holders this host newly sees (a member that took a VIP over and
    /// announced it): the controller then moves the VIP's MAC in every host's plan.
    async fn report_holders(
        &self,
        objects: &Objects,
        seen: Vec<(String, String)>,
    ) -> Result<(), ObjectError> {
        let seen: BTreeSet<(String, String)> = seen.into_iter().collect();
        let new: Vec<(String, String)> = {
            let before = lock(&self.holders_seen);
            seen.difference(&before).cloned().collect()
        };
        for (vip, nic) in &new {
            tracing::info!(%vip, %nic, "VIP holder seen");
            objects
                .store()
                .put(
                    &format!("{VIP_HOLDERS_PREFIX}{vip}"),
                    nic.as_bytes().to_vec(),
                )
                .await?;
        }
        *lock(&self.holders_seen) = seen;
        Ok(())
    }

    /// Looks for VIP takeovers every [`VIP_PROBE`] between plan passes (a pass every
    /// resync is too slow for a VIP's clients): a member that announced a VIP is reported
    /// within that. Only hosts whose last plan has local VIP members probe at all.
    pub async fn watch_vip_holders(
        self: Arc<Self>,
        objects: Objects,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(VIP_PROBE) => {}
                _ = shutdown.changed() => return,
            }
            let r = self.realiser.clone();
            let seen = tokio::task::spawn_blocking(move || {
                let mut r = lock(&r);
                let plan = r.last_plan().ok().flatten()?;
                let members = plan.vpcs.iter().flat_map(|v| &v.vips);
                if !members.into_iter().any(|x| !x.local_members.is_empty()) {
                    return None;
                }
                r.vip_holders(&plan).ok()
            })
            .await
            .ok()
            .flatten();
            if let Some(seen) = seen {
                if let Err(e) = self.report_holders(&objects, seen).await {
                    tracing::warn!(error = %e, "cannot report VIP holders");
                }
            }
        }
    }

    /// Applies `plan` (None: the last applied one, if any) off the async threads; returns
    /// the VIP holders seen just before (the plan would move a VIP's MAC back) and the
    /// plan's router namespaces.
    async fn apply(&self, plan: Option<HostPlan>) -> Applied {
        let r = self.realiser.clone();
        let host = self.host_id.clone();
        let prefix = router_prefix(self.cfg.netns.as_deref());
        let done = tokio::task::spawn_blocking(move || {
            let none = || Applied {
                routers: Some(BTreeSet::new()),
                ..Applied::default()
            };
            let mut r = lock(&r);
            let last = match r.last_plan() {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable last network plan; ignoring it");
                    None
                }
            };
            let Some(plan) = plan.or_else(|| last.clone()) else {
                return none();
            };
            // Never touch a host's networking before it has a VPC port (or had one) or a
            // network of Yunhan's own lives on it (e.g. `yunhan up`'s `public`).
            let used = |p: &HostPlan| {
                !p.ports.is_empty()
                    || !p.vpcs.is_empty()
                    || p.externals.iter().any(|x| x.host_gateway)
            };
            if !used(&plan) && !last.as_ref().is_some_and(used) {
                return none();
            }
            if plan.host != host {
                tracing::error!(plan_host = %plan.host, "a network plan for another host; ignored");
                return none();
            }
            let holders = r.vip_holders(&plan).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot look for VIP holders");
                Vec::new()
            });
            let t0 = std::time::Instant::now();
            match r.apply(&plan) {
                Ok(rep) if rep.changes > 0 => tracing::info!(
                    changes = rep.changes,
                    conntrack_flushes = rep.conntrack_flushes,
                    missing_ports = rep.missing_ports.len(),
                    took_ms = t0.elapsed().as_millis() as u64,
                    hash = %&plan.hash[..12.min(plan.hash.len())],
                    "network plan applied"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "applying the network plan failed; will retry")
                }
            }
            Applied {
                holders,
                routers: Some(s3_service::router_namespaces(&plan, &prefix)),
            }
        })
        .await;
        done.unwrap_or_else(|e| {
            tracing::error!(error = %e, "network apply task failed");
            Applied::default()
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Reconciler for NetAgent {
    fn name(&self) -> &'static str {
        "agent-network"
    }
    fn watches(&self) -> Vec<String> {
        vec![self.plan_key()]
    }
    fn resync(&self) -> Duration {
        self.cfg.resync
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let fetched = objects.store().get(&self.plan_key()).await;
        let plan = match &fetched {
            Ok(Some(kv)) => match serde_json::from_slice::<HostPlan>(&kv.value) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable network plan; keeping the last one");
                    None
                }
            },
            // No plan yet (a new host), or the store is away: keep realising the last one.
            Ok(None) | Err(_) => None,
        };
        let applied = self.apply(plan).await;
        if let Some(routers) = applied.routers {
            self.s3.want(routers);
        }
        fetched?;
        self.report_holders(objects, applied.holders).await?;
        self.publish_vtep(objects).await?;
        self.publish_devices(objects).await
    }
}

/// How often a host with local VIP members looks for a takeover between plan passes.
pub const VIP_PROBE: Duration = Duration::from_millis(250);

/// Most devices a host reports (a hypervisor with more is unusual; the first ones listed).
const MAX_REPORTED_DEVICES: usize = 256;

/// The names of the network devices in `netns` (None: the agent's own), but those the
/// realiser owns (`yn…`), which are never an external network's leg.
fn host_devices(netns: Option<&str>) -> io::Result<BTreeSet<String>> {
    let mut cmd = std::process::Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.args(["-j", "link", "show"]).output()?;
    if !out.status.success() {
        return Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let links: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(links
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| !n.starts_with("yn"))
        .take(MAX_REPORTED_DEVICES)
        .map(String::from)
        .collect())
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates (or re-opens) the TAP device `name` in network namespace `netns` (None: the
/// current one) and returns its file descriptor (close-on-exec; the QEMU spawn clears
/// that). The device lives as long as a descriptor to it is open, so it goes away with
/// its QEMU. The realiser plugs it into its VPC bridge (master, MTU, up).
#[allow(unsafe_code)] // open(2) + ioctl(TUNSETIFF): no safe wrapper in our dependencies
pub fn open_tap(netns: Option<&str>, name: &str) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad device name {name:?}"),
        ));
    }
    let name = name.to_string();
    let create = move || -> io::Result<OwnedFd> {
        // SAFETY: a plain open(2) of a constant NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes an ifreq, which IfReq lays out.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        Ok(fd)
    };
    match netns {
        None => create(),
        Some(ns) => {
            let path = format!("/run/netns/{ns}");
            std::thread::spawn(move || -> io::Result<OwnedFd> {
                let f = std::fs::File::open(&path)?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io::Error::other(format!("setns {path}: {e}")))?;
                create()
            })
            .join()
            .map_err(|_| io::Error::other("tap thread panicked"))?
        }
    }
}

/// A NIC attached to an instance, as the compute data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedNic {
    pub id: String,
    pub mac: String,
    /// The TAP device's name in the host's namespace.
    pub device: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// The NICs attached to `instance` (of `project`): the primary one first, then by age.
pub async fn instance_nics(
    objects: &Objects,
    project: Option<&str>,
    instance: &str,
) -> Result<Vec<AttachedNic>, ObjectError> {
    Ok(attached_nics(objects, project)
        .await?
        .remove(instance)
        .unwrap_or_default())
}

/// Every attached NIC (of `project`, None: of every project) by instance id, each list
/// with the primary NIC first, then by age.
pub async fn attached_nics(
    objects: &Objects,
    project: Option<&str>,
) -> Result<HashMap<String, Vec<AttachedNic>>, ObjectError> {
    let mut nics: Vec<_> = objects
        .list_all::<yunhan_model::NetworkInterface>(project)
        .await?
        .into_iter()
        .filter(|n| n.spec.instance.is_some())
        .collect();
    nics.sort_by(|a, b| {
        (!a.status.primary, &a.metadata.created, &a.metadata.id).cmp(&(
            !b.status.primary,
            &b.metadata.created,
            &b.metadata.id,
        ))
    });
    let mut by_instance: HashMap<String, Vec<AttachedNic>> = HashMap::new();
    for n in nics {
        let (Some(instance), Ok(ip), Ok(gateway)) = (
            n.spec.instance,
            n.status.ip.parse(),
            n.status.gateway.parse(),
        ) else {
            continue;
        };
        by_instance.entry(instance).or_default().push(AttachedNic {
            ip,
            gateway,
            prefix_len: n.status.prefix_len,
            mac: n.status.mac,
            device: n.status.device,
            id: n.metadata.id,
        });
    }
    Ok(by_instance)
}

/// The guest's MTU on VPC NICs: the underlay's (the SDN controller's, 1500) minus the
/// VXLAN overhead, as in every plan.
pub const GUEST_MTU: u16 = 1500 - 50;
