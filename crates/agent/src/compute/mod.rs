//! The compute data plane: converges the instances bound to this host to
//! their spec by running one QEMU per VM. Design note: `docs/compute.md`.

pub mod accel;
pub mod access;
pub mod argv;
pub mod hotplug;
mod layout;
mod migrate;
mod nics;
pub mod runtime;
pub mod seed;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use yunhan_model::{Doc, Image, Instance, InstancePhase, MigrationPhase};
use yunhan_store::objects::{object_prefix, ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;

pub use accel::AccelMode;
use argv::{mac_for, Accelerator, Boot, VmPlan};
pub use runtime::Runtime;
use runtime::StartRequest;

/// Compute settings of the agent.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    /// `auto` (probe KVM, fall back to TCG), `kvm` or `tcg`.
    pub accel: AccelMode,
    /// The unprivileged user QEMU runs as; created if missing (the agent
    /// must be root to drop to it). None: QEMU runs as the agent's user.
    pub qemu_user: Option<String>,
    /// How long a guest gets to power off after the ACPI power button
    /// before QEMU is quit (then killed).
    pub stop_timeout: Duration,
    /// The QEMU binary.
    pub qemu_binary: PathBuf,
    /// How often instances are re-checked without store changes (notices
    /// QEMU processes that died).
    pub resync: Duration,
    /// The network namespace VM taps are created in (the agent's `--netns`).
    pub netns: Option<String>,
    /// The address incoming live migrations listen on (the agent's `--address`).
    pub address: String,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            accel: AccelMode::Auto,
            qemu_user: Some("yunhan-qemu".into()),
            stop_timeout: Duration::from_secs(30),
            qemu_binary: "qemu-system-x86_64".into(),
            resync: Duration::from_secs(2),
            netns: None,
            address: "127.0.0.1".into(),
        }
    }
}

/// What one pass does for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Start,
    Stop,
    Reboot {
        hard: bool,
    },
    /// Replace the (stopped) VM's root disk with a fresh copy of its image.
    Rebuild,
    /// Kill QEMU, remove the VM directory, then the object.
    Teardown,
    /// Only the reported phase is wrong (e.g. re-attached after an agent restart).
    Report(InstancePhase),
}

/// The decision, a pure function of the instance and whether its QEMU lives.
///
/// - deleting → teardown;
/// - a rebuild requested: stop it if alive, else rebuild (a start follows, if wanted);
/// - alive and wanted: reboot if `spec.reboot_generation` is ahead, else
///   report Running;
/// - alive and not wanted → stop;
/// - dead and wanted → start (a first start, a start after Stopped, or a
///   restart of a VM whose QEMU died or that powered itself off) — except
///   after a failed start, which waits for the user to stop and start again;
/// - dead and not wanted → report Stopped.
pub fn decide(inst: &Doc<Instance>, alive: bool) -> Action {
    let (spec, status) = (&inst.spec, &inst.status);
    if inst.metadata.deleting.is_some() {
        return Action::Teardown;
    }
    if spec.rebuild_generation > status.rebuild_generation {
        return if alive { Action::Stop } else { Action::Rebuild };
    }
    match (alive, spec.running) {
        (true, true) if spec.reboot_generation > status.reboot_generation => Action::Reboot {
            hard: spec.reboot_hard,
        },
        (true, true) if status.phase != InstancePhase::Running => {
            Action::Report(InstancePhase::Running)
        }
        (true, true) => Action::Nothing,
        (true, false) => Action::Stop,
        (false, true) if status.phase == InstancePhase::Failed => Action::Nothing,
        (false, true) => Action::Start,
        (false, false) if status.phase != InstancePhase::Stopped => {
            Action::Report(InstancePhase::Stopped)
        }
        (false, false) => Action::Nothing,
    }
}

/// The compute reconciler of one host.
pub struct Compute {
    inner: Arc<Inner>,
    /// Operations in flight (start/stop/...), one per instance.
    ops: crate::ops::Ops,
}

struct Inner {
    host_id: String,
    cfg: ComputeConfig,
    rt: Arc<Runtime>,
    accel: tokio::sync::OnceCell<Accelerator>,
    nics: nics::PluggedNics,
    /// HA instances bound here that boot from a (shared) volume, as of the last
    /// pass: what self-fencing kills (a VM on a local disk is never restarted
    /// elsewhere, so it may keep running).
    ha: std::sync::Mutex<HashSet<String>>,
    /// This host's storage pools (VMs booting from a volume).
    volumes: Arc<crate::storage::Volumes>,
}

/// What [`prepare`] set up: the VM directory and who QEMU runs as.
#[derive(Debug, Clone)]
pub struct Prepared {
    vms_dir: PathBuf,
    run_as: Option<(u32, u32)>,
}

impl Prepared {
    /// Who QEMU runs as (uid, gid), or `None` for the agent's own user.
    pub fn run_as(&self) -> Option<(u32, u32)> {
        self.run_as
    }
}

/// Why the compute data plane cannot start on this host.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("VM directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("QEMU user: {0}")]
    User(runtime::UserError),
    #[error(transparent)]
    Access(#[from] access::AccessError),
}

/// Why a VM cannot start here; the text becomes the instance's status message.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading image {image:?}: {source}")]
    ReadImage { image: String, source: ObjectError },
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    #[error("image {image:?} is {phase}, not Active")]
    ImageNotActive { image: String, phase: String },
    #[error("image {0:?} has neither a disk nor a kernel")]
    ImageEmpty(String),
    #[error("reading boot volume {volume}: {source}")]
    ReadBootVolume { volume: String, source: ObjectError },
    #[error("boot volume {0} not found")]
    BootVolumeNotFound(String),
    #[error("boot volume {name:?}: {source}")]
    BootVolume {
        name: String,
        source: yunhan_storage::StorageError,
    },
    #[error("boot volume {0:?} is in the local pool; VMs boot from Ceph volumes only")]
    LocalBootVolume(String),
    #[error("reading the instance's NICs: {0}")]
    ReadNics(ObjectError),
    #[error("creating the TAP of NIC {nic}: {source}")]
    Tap { nic: String, source: std::io::Error },
}

/// The agent's own directories under its state dir and their modes: QEMU
/// (each VM its own uid, the QEMU group) may traverse (o+x) the state dir and
/// `vms/` to its VM directory, never list them; the network state is the
/// agent's alone. The local volume pool's directories are
/// [`crate::storage::LOCAL_POOL_DIRS`].
pub const STATE_DIRS: &[(&str, u32)] = &[("", 0o711), ("vms", 0o711), ("net", 0o700)];

/// Creates `dir` if needed (with `mode` from the start; missing parents get
/// the usual mode) and sets exactly `mode`.
pub fn set_dir_mode(dir: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Prepares `<state_dir>/vms` (and the modes of the agent's directories,
/// [`STATE_DIRS`]) and the QEMU user, and checks that the QEMU
/// user can reach the VM directory (before the host registers, so a host
/// that cannot run VMs never shows Ready).
pub fn prepare(state_dir: &std::path::Path, cfg: &ComputeConfig) -> Result<Prepared, PrepareError> {
    let vms_dir = state_dir.join("vms");
    let dirs = STATE_DIRS.iter().chain(crate::storage::LOCAL_POOL_DIRS);
    for (sub, mode) in dirs {
        let d = state_dir.join(sub);
        set_dir_mode(&d, *mode).map_err(|source| PrepareError::Dir { path: d, source })?;
    }
    let run_as = match &cfg.qemu_user {
        None => None,
        Some(_) if !nix::unistd::geteuid().is_root() => {
            tracing::warn!(
                "the agent is not root: QEMU runs as the agent's user, not the QEMU user"
            );
            None
        }
        Some(user) => {
            let ids = runtime::ensure_user(user).map_err(PrepareError::User)?;
            access::check_reachable(&vms_dir, user, ids)?;
            Some(ids)
        }
    };
    Ok(Prepared { vms_dir, run_as })
}

impl Compute {
    /// The compute reconciler of `host_id`, on what [`prepare`] set up, with
    /// the host's storage pools (VMs booting from a volume).
    pub fn new(
        host_id: String,
        prepared: Prepared,
        cfg: ComputeConfig,
        volumes: Arc<crate::storage::Volumes>,
    ) -> Compute {
        let Prepared { vms_dir, run_as } = prepared;
        let rt = Runtime {
            vms_dir,
            qemu: cfg.qemu_binary.clone(),
            run_as,
            stop_timeout: cfg.stop_timeout,
            start_timeout: Duration::from_secs(30),
        };
        Compute {
            inner: Arc::new(Inner {
                host_id,
                cfg,
                rt: Arc::new(rt),
                accel: tokio::sync::OnceCell::new(),
                nics: Default::default(),
                ha: Default::default(),
                volumes,
            }),
            ops: Default::default(),
        }
    }

    /// What the liveness loop calls when this host has lost its lease.
    pub fn self_fence(&self) -> SelfFence {
        SelfFence(self.inner.clone())
    }

    /// The VM runtime (the storage data plane plugs volumes into its VMs).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.rt.clone()
    }

    /// Spawns this host's part in the live migrations of `all` (the source
    /// publishes the device layout, the target prepares, the source sends);
    /// returns the instances arriving here.
    fn spawn_migration_parts(&self, objects: &Objects, all: &[Doc<Instance>]) -> HashSet<String> {
        let me = self.inner.host_id.as_str();
        let mut receiving = HashSet::new();
        for inst in all {
            let Some((m, target)) = migrate::part(inst, me) else {
                continue;
            };
            let id = &inst.metadata.id;
            if target && (m.phase.active() || m.phase == MigrationPhase::Completed) {
                receiving.insert(id.clone());
            }
            let (objects, inst) = (objects.clone(), inst.clone());
            let here = inst.status.host.as_deref() == Some(me);
            match (target, m.phase, m.devices.is_some()) {
                // The target waits for the source's device layout.
                (true, MigrationPhase::Preparing, true) => {
                    self.spawn_op(id, move |inner| async move {
                        inner.prepare_incoming(&objects, inst).await;
                    })
                }
                (false, MigrationPhase::Preparing, false) if here => {
                    self.spawn_op(id, move |inner| async move {
                        inner.publish_layout(&objects, inst).await;
                    })
                }
                (false, MigrationPhase::Incoming | MigrationPhase::Running, _) if here => self
                    .spawn_op(id, move |inner| async move {
                        inner.migrate_out(&objects, inst).await;
                    }),
                _ => {}
            }
        }
        receiving
    }

    /// Runs `op` for `id` unless an operation for it is already in flight.
    fn spawn_op<F>(&self, id: &str, op: impl FnOnce(Arc<Inner>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if !self.ops.is_busy(id) {
            self.ops.spawn(id, op(self.inner.clone()));
        }
    }
}

#[async_trait]
impl Reconciler for Compute {
    fn name(&self) -> &'static str {
        "agent-compute"
    }
    fn watches(&self) -> Vec<String> {
        vec![
            object_prefix::<Instance>(None),
            // NICs attached to or detached from running VMs are hot-plugged.
            object_prefix::<yunhan_model::NetworkInterface>(None),
        ]
    }
    fn resync(&self) -> Duration {
        self.inner.cfg.resync
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        self.ops.reap("compute");
        // A store error ends the pass here: VMs keep running as they are.
        let all = objects.list_all::<Instance>(None).await?;
        let me = self.inner.host_id.as_str();
        let receiving = self.spawn_migration_parts(objects, &all);
        let mine: HashMap<String, Doc<Instance>> = all
            .into_iter()
            .filter(|i| i.status.host.as_deref() == Some(me))
            .map(|i| (i.metadata.id.clone(), i))
            .collect();
        *crate::ops::lock(&self.inner.ha) = mine
            .values()
            .filter(|i| i.spec.ha && i.spec.boot_volume.is_some())
            .map(|i| i.metadata.id.clone())
            .collect();
        let mut attached = crate::network::attached_nics(objects, None).await?;
        for (id, inst) in &mine {
            if self.ops.is_busy(id) || migrate::in_flight(inst) {
                continue;
            }
            let alive = self.inner.rt.running_pid(id).is_some();
            let action = decide(inst, alive);
            if action == Action::Nothing {
                let wanted = attached.remove(id).unwrap_or_default();
                if alive && self.inner.nics.differs(id, &nics::ids(&wanted)) {
                    let id = id.clone();
                    self.spawn_op(&id.clone(), move |inner| async move {
                        inner.sync_nics(&id, &wanted).await;
                    });
                }
                continue;
            }
            let (objects, inst) = (objects.clone(), inst.clone());
            self.spawn_op(id, move |inner| async move {
                inner.act(&objects, inst, action).await;
            });
        }
        // VMs of instances that are gone or bound elsewhere: stop and remove.
        for id in self.inner.rt.list_vms() {
            if mine.contains_key(&id) || self.ops.is_busy(&id) || receiving.contains(&id) {
                continue;
            }
            let key = id.clone();
            self.spawn_op(&key, move |inner| async move {
                tracing::warn!(instance = %id, "orphan VM (instance gone or bound elsewhere): removing it");
                if let Err(e) = inner.rt.destroy(&id).await {
                    tracing::error!(instance = %id, error = %e, "cannot remove orphan VM");
                }
            });
        }
        Ok(())
    }
}

/// Kills this host's HA VMs when the agent has lost its lease for longer than
/// its TTL: the HA monitor may already have fenced the host and started them
/// elsewhere, and a partitioned host must not keep writing their disks. If the
/// instances turn out to be still bound here, the compute pass starts them
/// again once the store is back.
#[derive(Clone)]
pub struct SelfFence(Arc<Inner>);

impl SelfFence {
    pub fn fence(&self) {
        let ha: Vec<String> = crate::ops::lock(&self.0.ha).iter().cloned().collect();
        for id in ha {
            if self.0.rt.running_pid(&id).is_some() {
                tracing::warn!(instance = %id, "self-fencing: lease lost for longer than its TTL, killing the HA VM");
                self.0.rt.kill_now(&id);
            }
        }
    }
}

impl Inner {
    /// Hot-plugs and unplugs NICs until VM `id` has exactly `wanted`.
    async fn sync_nics(&self, id: &str, wanted: &[crate::network::AttachedNic]) {
        let synced = match self.rt.qmp(id).await {
            Ok(qmp) => nics::sync(&qmp, id, self.cfg.netns.as_deref(), wanted).await,
            Err(e) => Err(e.into()),
        };
        match synced {
            Ok(plugged) => self.nics.set(id, plugged),
            Err(e) => tracing::warn!(instance = id, "syncing the VM's NICs failed: {e}"),
        }
    }

    async fn act(&self, objects: &Objects, inst: Doc<Instance>, action: Action) {
        let id = inst.metadata.id.clone();
        let r = match action {
            Action::Nothing => Ok(()),
            Action::Report(phase) => self.report(objects, &inst, phase).await,
            Action::Start => self.start(objects, &inst).await,
            Action::Stop => self.stop(objects, &inst).await,
            Action::Reboot { hard } => self.reboot(objects, &inst, hard).await,
            Action::Rebuild => self.rebuild(objects, &inst).await,
            Action::Teardown => self.teardown(objects, &inst).await,
        };
        if let Err(e) = r {
            tracing::warn!(instance = %id, error = %e, "compute operation failed; will retry");
        }
    }

    /// CAS-writes the status of `id` while it is still bound to this host.
    async fn set_status(
        &self,
        objects: &Objects,
        id: &str,
        f: impl Fn(&mut yunhan_model::InstanceStatus) + Send + Sync,
    ) -> Result<(), ObjectError> {
        crate::ops::set_bound_status::<Instance>(
            objects,
            id,
            &self.host_id,
            |s| s.host.as_deref(),
            f,
        )
        .await
    }

    async fn report(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        phase: InstancePhase,
    ) -> Result<(), ObjectError> {
        let plan_dir = self.rt.vm_dir(&inst.metadata.id);
        let accel = self.accel_if_known();
        self.set_status(objects, &inst.metadata.id, |s| {
            let was_up = matches!(s.phase, InstancePhase::Running | InstancePhase::Stopping);
            if phase == InstancePhase::Stopped && was_up {
                // Found dead (powered off from inside, killed): stopped when found.
                s.stopped_at = Some(yunhan_model::now());
            }
            s.phase = phase;
            if phase == InstancePhase::Running {
                s.console_log = Some(plan_dir.join("serial.log").display().to_string());
                s.console_socket = Some(plan_dir.join("console.sock").display().to_string());
                if s.accel.is_empty() {
                    if let Some(a) = accel {
                        s.accel = a.as_str().into();
                    }
                }
            } else {
                s.message.clear();
            }
        })
        .await
    }

    fn accel_if_known(&self) -> Option<Accelerator> {
        self.accel.get().copied()
    }

    async fn accelerator(&self) -> Accelerator {
        *self
            .accel
            .get_or_init(|| {
                accel::choose(
                    self.cfg.accel,
                    &self.cfg.qemu_binary,
                    &self.rt.vms_dir,
                    self.rt.run_as,
                )
            })
            .await
    }

    async fn start(&self, objects: &Objects, inst: &Doc<Instance>) -> Result<(), ObjectError> {
        let id = inst.metadata.id.as_str();
        let was = inst.status.phase;
        self.set_status(objects, id, |s| {
            if was == InstancePhase::Running {
                // Its QEMU died: it stopped running when that was found (metering).
                s.stopped_at = Some(yunhan_model::now());
            }
            s.phase = InstancePhase::Starting;
            s.message = match was {
                InstancePhase::Running | InstancePhase::Starting => {
                    "QEMU was not running; starting it again".into()
                }
                _ => String::new(),
            };
        })
        .await?;
        let accel = self.accelerator().await;
        let req = match self.start_request(objects, inst, accel).await {
            Ok(r) => r,
            Err(e) => return self.fail(objects, id, e.to_string()).await,
        };
        let t0 = std::time::Instant::now();
        match self.rt.start(&req).await {
            Ok(pid) => {
                self.nics
                    .set(id, req.plan.nics.iter().map(|n| n.id.clone()).collect());
                tracing::info!(
                    instance = id,
                    pid,
                    accel = accel.as_str(),
                    took_ms = t0.elapsed().as_millis() as u64,
                    "VM started"
                );
                let dir = req.plan.dir.clone();
                let gen = inst.spec.reboot_generation;
                self.set_status(objects, id, |s| {
                    s.phase = InstancePhase::Running;
                    s.message.clear();
                    s.accel = accel.as_str().into();
                    s.started_at = Some(yunhan_model::now());
                    s.console_log = Some(dir.join("serial.log").display().to_string());
                    s.console_socket = Some(dir.join("console.sock").display().to_string());
                    // A (re)start carries out any pending reboot request.
                    s.reboot_generation = s.reboot_generation.max(gen);
                })
                .await
            }
            Err(e) => self.fail(objects, id, e.to_string()).await,
        }
    }

    /// The start request of `inst` with its NICs' TAPs created and open.
    async fn start_request(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        accel: Accelerator,
    ) -> Result<StartRequest, StartError> {
        let mut req = self.plan(objects, inst, accel).await?;
        for nic in &mut req.plan.nics {
            let fd = crate::network::open_tap(self.cfg.netns.as_deref(), &nic.device).map_err(
                |source| StartError::Tap {
                    nic: nic.id.clone(),
                    source,
                },
            )?;
            nic.fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
            req.inherit_fds.push(Arc::new(fd));
        }
        Ok(req)
    }

    async fn fail(&self, objects: &Objects, id: &str, msg: String) -> Result<(), ObjectError> {
        tracing::warn!(instance = id, "VM failed to start: {msg}");
        self.set_status(objects, id, |s| {
            s.phase = InstancePhase::Failed;
            s.message = msg.clone();
        })
        .await
    }

    /// Resolves the image and flavor resources into a start request.
    async fn plan(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        accel: Accelerator,
    ) -> Result<StartRequest, StartError> {
        let image = find_image(objects, inst)
            .await
            .map_err(|source| StartError::ReadImage {
                image: inst.spec.image.clone(),
                source,
            })?
            .ok_or_else(|| StartError::ImageNotFound(inst.spec.image.clone()))?;
        if image.status.phase != "Active" {
            return Err(StartError::ImageNotActive {
                image: inst.spec.image.clone(),
                phase: if image.status.phase.is_empty() {
                    "Pending".into()
                } else {
                    image.status.phase.clone()
                },
            });
        }
        let id = &inst.metadata.id;
        let dir = self.rt.vm_dir(id);
        let (boot, image_kernel) = match &image.status.kernel_path {
            Some(k) => (
                Boot::Kernel {
                    kernel: dir.join("kernel"),
                    initrd: image
                        .status
                        .initrd_path
                        .as_ref()
                        .map(|_| dir.join("initrd")),
                    cmdline: image
                        .spec
                        .kernel_cmdline
                        .clone()
                        .unwrap_or_else(|| "console=ttyS0".into()),
                },
                Some((
                    PathBuf::from(k),
                    image.status.initrd_path.as_ref().map(PathBuf::from),
                )),
            ),
            None if image.status.disk_path.is_some() => (Boot::Disk, None),
            None => return Err(StartError::ImageEmpty(inst.spec.image.clone())),
        };
        let root = self.root_volume(objects, inst).await?;
        let mac = mac_for(id);
        let attached = crate::network::instance_nics(objects, inst.metadata.project.as_deref(), id)
            .await
            .map_err(StartError::ReadNics)?;
        let mtu = crate::network::GUEST_MTU;
        let seed_nics: Vec<seed::SeedNic> = attached
            .iter()
            .map(|n| seed::SeedNic {
                mac: n.mac.clone(),
                address: format!("{}/{}", n.ip, n.prefix_len),
                gateway: n.gateway.to_string(),
                mtu,
            })
            .collect();
        let seed = seed::seed_files(
            id,
            &inst.metadata.name,
            &mac,
            &seed_nics,
            inst.spec.user_data.as_deref(),
            &inst.spec.ssh_keys,
        );
        let nics = attached
            .into_iter()
            .map(|n| argv::VmNic {
                id: n.id,
                mac: n.mac,
                device: n.device,
                fd: -1,
                mtu,
                port: None,
            })
            .collect();
        Ok(StartRequest {
            plan: VmPlan {
                instance_id: id.clone(),
                name: inst.metadata.name.clone(),
                vcpus: inst.status.vcpus.max(1),
                memory_mib: inst.status.memory_mib.max(64),
                accel,
                dir,
                boot,
                mac,
                gpus: inst.status.gpu_devices.clone(),
                root,
                nics,
                volumes: Vec::new(),
                incoming: None,
            },
            image_disk: image.status.disk_path.as_ref().map(PathBuf::from),
            image_kernel,
            disk_bytes: inst.status.disk_gib << 30,
            seed,
            inherit_fds: Vec::new(),
        })
    }

    /// The root disk's block nodes when the instance boots from a volume.
    async fn root_volume(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
    ) -> Result<Option<[serde_json::Value; 2]>, StartError> {
        let Some(v) = &inst.spec.boot_volume else {
            return Ok(None);
        };
        let vol = objects
            .get::<yunhan_model::Volume>(v)
            .await
            .map_err(|source| StartError::ReadBootVolume {
                volume: v.clone(),
                source,
            })?
            .ok_or_else(|| StartError::BootVolumeNotFound(v.clone()))?;
        let disk = self
            .volumes
            .qemu_disk(&vol.spec.pool, v)
            .await
            .map_err(|source| StartError::BootVolume {
                name: vol.metadata.name.clone(),
                source,
            })?;
        if let yunhan_storage::QemuDisk::File { .. } = disk {
            return Err(StartError::LocalBootVolume(vol.metadata.name.clone()));
        }
        Ok(Some(disk.blockdev_nodes("root")))
    }

    async fn stop(&self, objects: &Objects, inst: &Doc<Instance>) -> Result<(), ObjectError> {
        let id = inst.metadata.id.as_str();
        self.set_status(objects, id, |s| s.phase = InstancePhase::Stopping)
            .await?;
        if let Err(e) = self.rt.stop(id).await {
            tracing::warn!(instance = id, error = %e, "stop failed; will retry");
            return Ok(());
        }
        self.set_status(objects, id, |s| {
            s.phase = InstancePhase::Stopped;
            s.stopped_at = Some(yunhan_model::now());
            s.message.clear();
        })
        .await
    }

    async fn reboot(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        hard: bool,
    ) -> Result<(), ObjectError> {
        let id = inst.metadata.id.as_str();
        let gen = inst.spec.reboot_generation;
        match self.rt.reboot(id, hard).await {
            Ok(()) => {
                tracing::info!(instance = id, hard, generation = gen, "VM rebooted");
                self.set_status(objects, id, |s| {
                    s.reboot_generation = s.reboot_generation.max(gen);
                    s.phase = InstancePhase::Running;
                })
                .await
            }
            Err(e) => {
                tracing::warn!(instance = id, error = %e, "reboot failed; will retry");
                Ok(())
            }
        }
    }

    /// Drops the stopped VM's root disk (and kernel) so that the next start copies the
    /// image afresh; the request is then carried out.
    async fn rebuild(&self, objects: &Objects, inst: &Doc<Instance>) -> Result<(), ObjectError> {
        let id = inst.metadata.id.as_str();
        let gen = inst.spec.rebuild_generation;
        if let Err(e) = self.rt.wipe_root(id) {
            tracing::warn!(instance = id, error = %e, "rebuild failed; will retry");
            return Ok(());
        }
        tracing::info!(instance = id, image = %inst.spec.image, generation = gen, "VM rebuilt");
        self.set_status(objects, id, |s| {
            s.rebuild_generation = s.rebuild_generation.max(gen);
            s.phase = InstancePhase::Stopped;
            s.message.clear();
        })
        .await
    }

    async fn teardown(&self, objects: &Objects, inst: &Doc<Instance>) -> Result<(), ObjectError> {
        let id = inst.metadata.id.as_str();
        self.set_status(objects, id, |s| s.phase = InstancePhase::Deleting)
            .await?;
        if let Err(e) = self.rt.destroy(id).await {
            tracing::warn!(instance = id, error = %e, "teardown failed; will retry");
            return Ok(());
        }
        self.nics.forget(id);
        objects.delete_latest::<Instance>(id).await?;
        tracing::info!(instance = id, "VM deleted");
        Ok(())
    }
}

fn looks_like_image_id(s: &str) -> bool {
    s.strip_prefix("img-")
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The instance's image: by id, by name in its project, or a public image by name.
async fn find_image(
    objects: &Objects,
    inst: &Doc<Instance>,
) -> Result<Option<Doc<Image>>, ObjectError> {
    let want = inst.spec.image.as_str();
    if looks_like_image_id(want) {
        return objects.get::<Image>(want).await;
    }
    if let Some(p) = inst.metadata.project.as_deref() {
        if let Some(i) = objects.get_by_name::<Image>(p, want).await? {
            return Ok(Some(i));
        }
    }
    Ok(objects
        .list_all::<Image>(None)
        .await?
        .into_iter()
        .find(|i| i.spec.public && i.metadata.name == want))
}

/// A QOM child as `qom-list` reports it (`child<virtio-net-pci>`), for tests of what
/// QEMU answers.
#[cfg(test)]
pub(super) fn qom_child(name: &str, ty: &str) -> yunhan_qmp::QomProperty {
    yunhan_qmp::QomProperty {
        name: name.into(),
        kind: format!("child<{ty}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::{InstanceSpec, InstanceStatus, Metadata, Resource};

    fn inst(running: bool, phase: InstancePhase) -> Doc<Instance> {
        Resource {
            metadata: Metadata {
                created: String::new(),
                revision: 1,
                ..Metadata::new("ins-1", "vm", None)
            },
            spec: InstanceSpec {
                running,
                ..Default::default()
            },
            status: InstanceStatus {
                phase,
                host: Some("hst-1".into()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn start_stop_report() {
        use InstancePhase::*;
        assert_eq!(decide(&inst(true, Scheduled), false), Action::Start);
        assert_eq!(decide(&inst(true, Stopped), false), Action::Start);
        assert_eq!(decide(&inst(true, Running), false), Action::Start); // QEMU died
        assert_eq!(decide(&inst(true, Failed), false), Action::Nothing);
        assert_eq!(decide(&inst(false, Failed), false), Action::Report(Stopped));
        assert_eq!(decide(&inst(true, Running), true), Action::Nothing);
        assert_eq!(decide(&inst(true, Starting), true), Action::Report(Running)); // re-attach
        assert_eq!(decide(&inst(false, Running), true), Action::Stop);
        assert_eq!(decide(&inst(false, Stopped), false), Action::Nothing);
        assert_eq!(
            decide(&inst(false, Scheduled), false),
            Action::Report(Stopped)
        );
    }

    #[test]
    fn rebuild_stops_then_rebuilds_then_starts() {
        let mut i = inst(true, InstancePhase::Running);
        i.spec.rebuild_generation = 1;
        assert_eq!(decide(&i, true), Action::Stop);
        assert_eq!(decide(&i, false), Action::Rebuild);
        i.status.phase = InstancePhase::Failed;
        assert_eq!(
            decide(&i, false),
            Action::Rebuild,
            "a failed VM can be rebuilt"
        );
        i.status.rebuild_generation = 1;
        i.status.phase = InstancePhase::Stopped;
        assert_eq!(decide(&i, false), Action::Start);
        i.spec.running = false;
        assert_eq!(decide(&i, false), Action::Nothing);
    }

    #[test]
    fn reboot_once_per_generation() {
        let mut i = inst(true, InstancePhase::Running);
        i.spec.reboot_generation = 2;
        i.status.reboot_generation = 1;
        assert_eq!(decide(&i, true), Action::Reboot { hard: false });
        i.spec.reboot_hard = true;
        assert_eq!(decide(&i, true), Action::Reboot { hard: true });
        i.status.reboot_generation = 2;
        assert_eq!(decide(&i, true), Action::Nothing);
        // A reboot asked of a stopped-but-wanted VM is a start.
        i.status.reboot_generation = 1;
        i.status.phase = InstancePhase::Stopped;
        assert_eq!(decide(&i, false), Action::Start);
    }

    #[test]
    fn deleting_wins() {
        let mut i = inst(true, InstancePhase::Running);
        i.metadata.deleting = Some("now".into());
        assert_eq!(decide(&i, true), Action::Teardown);
        assert_eq!(decide(&i, false), Action::Teardown);
    }

    #[test]
    fn image_ids() {
        assert!(looks_like_image_id("img-0123456789abcdef"));
        assert!(!looks_like_image_id("img-web"));
        assert!(!looks_like_image_id("debian"));
    }
}

#[cfg(test)]
mod mode_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn prepare_sets_exact_modes_even_on_a_listable_older_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("agent");
        std::fs::create_dir_all(state.join("vms")).unwrap();
        for d in [&state, &state.join("vms")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let cfg = ComputeConfig {
            qemu_user: None,
            ..Default::default()
        };
        prepare(&state, &cfg).unwrap();
        let mode = |sub: &str| {
            let m = std::fs::metadata(state.join(sub)).unwrap().permissions();
            (sub.to_string(), m.mode() & 0o7777)
        };
        let want = [
            ("", 0o711),
            ("vms", 0o711),
            ("net", 0o700),
            ("volumes", 0o711),
            ("volumes/volumes", 0o711),
            ("volumes/snapshots", 0o700),
            ("volumes/images", 0o700),
            ("volumes/.tmp", 0o700),
        ];
        for (sub, m) in want {
            assert_eq!(mode(sub), (sub.to_string(), m));
        }
    }
}
