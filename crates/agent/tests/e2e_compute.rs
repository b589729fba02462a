//! The compute data plane end to end, without the API: Image and Instance
//! objects go straight into a MemStore, the agent runs in-process and boots
//! the test guest (scripts/build-test-guest) under QEMU for real.
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use yunhan_agent::compute::runtime::is_our_qemu;
use yunhan_agent::{AccelMode, AgentConfig, ComputeConfig};
use yunhan_model::{
    new_id, Host, Image, ImageSpec, ImageStatus, Instance, InstancePhase, InstanceSpec,
    InstanceStatus, Metadata, Resource,
};
use yunhan_store::objects::{Objects, GLOBAL_SCOPE};
use yunhan_store::MemStore;

type Doc<S, T> = Resource<S, T>;

const BOOT: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(30);

fn guest_dir() -> PathBuf {
    yunhan_testkit::test_guest()
}

/// Kills the QEMUs of this test (by their pidfiles, after checking the
/// cmdline) if the test fails half-way.
struct KillVms(PathBuf);
impl Drop for KillVms {
    fn drop(&mut self) {
        let Ok(rd) = std::fs::read_dir(self.0.join("vms")) else {
            return;
        };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let pid = std::fs::read_to_string(e.path().join("qemu.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid.filter(|p| is_our_qemu(*p, &id)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

struct Env {
    objects: Objects,
    state: PathBuf,
    guest: PathBuf,
    _kill: KillVms,
    _tmp: tempfile::TempDir,
}

struct Agent {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), yunhan_agent::AgentError>>,
}

impl Env {
    fn new() -> Env {
        let guest = guest_dir();
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("agent");
        Env {
            objects: Objects::new(Arc::new(MemStore::new())),
            _kill: KillVms(state.clone()),
            state,
            guest,
            _tmp: tmp,
        }
    }

    fn agent(&self, accel: AccelMode) -> Agent {
        let cfg = AgentConfig {
            name: "node-1".into(),
            address: "127.0.0.1".into(),
            state_dir: self.state.clone(),
            lease_ttl: Duration::from_secs(3),
            gpus: vec![],
            compute: ComputeConfig {
                accel,
                stop_timeout: Duration::from_secs(20),
                resync: Duration::from_millis(500),
                ..Default::default()
            },
            network: Default::default(),
            ceph: None,
            metrics: Default::default(),
        };
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(yunhan_agent::run(self.objects.clone(), cfg, rx));
        Agent { stop, task }
    }

    async fn host_id(&self) -> String {
        poll(STEP, "host registered", || async {
            self.objects
                .get_by_name::<Host>(GLOBAL_SCOPE, "node-1")
                .await
                .unwrap()
                .map(|h| h.metadata.id)
        })
        .await
    }

    async fn image(&self, name: &str, kernel: bool) -> String {
        let g = &self.guest;
        let p = |f: &str| Some(g.join(f).display().to_string());
        let (spec, status) = if kernel {
            let cmdline = std::fs::read_to_string(g.join("test-guest.cmdline")).unwrap();
            (
                ImageSpec {
                    kernel_cmdline: Some(cmdline.trim().to_string()),
                    ..Default::default()
                },
                ImageStatus {
                    phase: "Active".into(),
                    kernel_path: p("test-guest.vmlinux"),
                    initrd_path: p("test-guest.initrd"),
                    ..Default::default()
                },
            )
        } else {
            (
                ImageSpec::default(),
                ImageStatus {
                    phase: "Active".into(),
                    disk_path: p("test-guest.raw"),
                    ..Default::default()
                },
            )
        };
        let doc: Doc<ImageSpec, ImageStatus> = Resource {
            metadata: meta("img", name),
            spec,
            status,
        };
        self.objects.create::<Image>(doc).await.unwrap().metadata.id
    }

    async fn instance(&self, name: &str, image: &str, host: &str, gpus: &[&str]) -> String {
        let doc: Doc<InstanceSpec, InstanceStatus> = Resource {
            metadata: meta("ins", name),
            spec: InstanceSpec {
                flavor: "tiny".into(),
                image: image.into(),
                running: true,
                ..Default::default()
            },
            status: InstanceStatus {
                phase: InstancePhase::Scheduled,
                host: Some(host.into()),
                vcpus: 1,
                memory_mib: 256,
                disk_gib: 1,
                gpus: gpus.len() as u32,
                gpu_devices: gpus.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        };
        self.objects
            .create::<Instance>(doc)
            .await
            .unwrap()
            .metadata
            .id
    }

    async fn get(&self, id: &str) -> Option<Doc<InstanceSpec, InstanceStatus>> {
        self.objects.get::<Instance>(id).await.unwrap()
    }

    async fn wait_phase(&self, id: &str, phase: InstancePhase, within: Duration) -> InstanceStatus {
        let t = Instant::now();
        let st = poll(within, &format!("{id} {phase:?}"), || async {
            let d = self.get(id).await?;
            (d.status.phase == phase).then_some(d.status)
        })
        .await;
        eprintln!("{id}: {phase:?} after {:.1?}", t.elapsed());
        st
    }

    async fn change(&self, id: &str, f: impl Fn(&mut InstanceSpec) + Send + Sync) {
        self.objects
            .modify::<Instance>(id, |d| {
                f(&mut d.spec);
                true
            })
            .await
            .unwrap();
    }

    fn vm_dir(&self, id: &str) -> PathBuf {
        self.state.join("vms").join(id)
    }

    fn pid(&self, id: &str) -> i32 {
        std::fs::read_to_string(self.vm_dir(id).join("qemu.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn serial(&self, id: &str) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.vm_dir(id).join("serial.log")).unwrap_or_default(),
        )
        .into_owned()
    }

    async fn wait_serial(&self, id: &str, what: &str, pred: impl Fn(&str) -> bool) {
        let t = Instant::now();
        poll(BOOT, &format!("{id}: {what}"), || async {
            pred(&self.serial(id)).then_some(())
        })
        .await;
        eprintln!("{id}: {what} after {:.1?}", t.elapsed());
    }
}

impl Agent {
    /// A graceful agent stop (shutdown signal): VMs must keep running.
    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn meta(prefix: &str, name: &str) -> Metadata {
    Metadata::new(new_id(prefix), name, None)
}

async fn poll<T, F, Fut>(within: Duration, what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let every = Duration::from_millis(100);
    yunhan_testkit::wait_for_some(what, within, every, f).await
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn last_tick(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.trim().strip_prefix("YUNHAN-TICK "))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_vm_lifecycle_reattach_orphan_and_delete() {
    let env = Env::new();
    let agent = env.agent(AccelMode::Auto);
    let host = env.host_id().await;
    let kimg = env.image("guest-kernel", true).await;
    let dimg = env.image("guest-disk", false).await;
    let t0 = Instant::now();
    let a = env.instance("vm-a", &kimg, &host, &[]).await; // direct kernel
    let b = env.instance("vm-b", &dimg, &host, &[]).await; // BIOS, raw disk

    // Both reach Running and boot to the readiness marker, in parallel.
    for id in [&a, &b] {
        let st = env.wait_phase(id, InstancePhase::Running, BOOT).await;
        assert!(
            st.accel == "tcg" || st.accel == "kvm",
            "accel {:?}",
            st.accel
        );
        assert!(st.started_at.is_some());
        assert_eq!(
            st.console_log.as_deref(),
            Some(env.vm_dir(id).join("serial.log").to_str().unwrap())
        );
        assert!(st.console_socket.is_some());
    }
    eprintln!("both Running after {:.1?}", t0.elapsed());
    env.wait_serial(&a, "READY", |l| l.contains("YUNHAN-READY hostname=vm-a "))
        .await;
    env.wait_serial(&b, "READY", |l| l.contains("YUNHAN-READY hostname=vm-b "))
        .await;
    eprintln!("both READY after {:.1?}", t0.elapsed());

    // Containment: each VM's QEMU runs under its own uid (with the
    // yunhan-qemu group), never root, and its files are private to it.
    let qemu_user = nix::unistd::User::from_name("yunhan-qemu")
        .unwrap()
        .unwrap();
    let mut uids = Vec::new();
    for id in [&a, &b] {
        let dir = env.vm_dir(id);
        let proc_md = std::fs::metadata(format!("/proc/{}", env.pid(id))).unwrap();
        let proc_uid = proc_md.uid();
        assert_ne!(proc_uid, 0, "QEMU must not run as root");
        assert_eq!(proc_md.gid(), qemu_user.gid.as_raw(), "QEMU's group");
        uids.push(proc_uid);
        let md = std::fs::metadata(&dir).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        assert_eq!(md.uid(), proc_uid, "the VM dir belongs to its own QEMU");
        for f in ["disk.raw", "qmp.sock", "console.sock", "serial.log"] {
            let m = std::fs::metadata(dir.join(f)).unwrap();
            assert_eq!(m.permissions().mode() & 0o077, 0, "{f} is private");
        }
        let seccomp = std::fs::read_to_string(format!("/proc/{}/status", env.pid(id))).unwrap();
        assert!(
            seccomp.contains("Seccomp:\t2"),
            "sandbox (seccomp filter) active"
        );
    }
    assert_ne!(
        uids[0], uids[1],
        "one uid per VM: a guest cannot open another's disk"
    );
    // The root disk grew to the flavor's size, thin.
    let disk = std::fs::metadata(env.vm_dir(&b).join("disk.raw")).unwrap();
    assert_eq!(disk.len(), 1 << 30);
    assert!(disk.blocks() * 512 < 64 << 20, "thin copy");

    // Stop A (guest powers off), hard-reboot B, concurrently.
    let a_pid = env.pid(&a);
    env.change(&a, |s| s.running = false).await;
    env.change(&b, |s| {
        s.reboot_generation = 1;
        s.reboot_hard = true;
    })
    .await;
    env.wait_phase(&a, InstancePhase::Stopped, STEP).await;
    assert!(!is_our_qemu(a_pid, &a), "A's QEMU is gone");
    assert!(!env.vm_dir(&a).join("qemu.pid").exists() || !is_our_qemu(env.pid(&a), &a));
    // Start A again.
    env.change(&a, |s| s.running = true).await;
    env.wait_phase(&a, InstancePhase::Running, BOOT).await;
    env.wait_serial(&b, "second boot (hard reboot)", |l| {
        count(l, "YUNHAN-READY hostname=vm-b ") >= 2
    })
    .await;
    assert!(env.serial(&b).contains("YUNHAN-BOOT count=2"));
    assert_eq!(env.get(&b).await.unwrap().status.reboot_generation, 1);
    env.wait_serial(&a, "READY after start", |l| {
        count(l, "YUNHAN-READY hostname=vm-a ") >= 2
    })
    .await;

    // Soft reboot of A: Ctrl-Alt-Del, the guest shuts down cleanly and boots
    // again in the same QEMU process.
    let a_pid = env.pid(&a);
    env.change(&a, |s| {
        s.reboot_generation = 1;
        s.reboot_hard = false;
    })
    .await;
    env.wait_serial(&a, "third boot (soft reboot)", |l| {
        count(l, "YUNHAN-READY hostname=vm-a ") >= 3
    })
    .await;
    assert!(
        env.serial(&a).contains("YUNHAN-SHUTDOWN"),
        "clean guest shutdown"
    );
    assert_eq!(env.pid(&a), a_pid, "same QEMU process");
    assert_eq!(env.get(&a).await.unwrap().status.reboot_generation, 1);

    // "Kill" the agent (drop its task mid-flight): VMs keep running.
    agent.task.abort();
    let _ = agent.task.await;
    let (a_pid, b_pid) = (env.pid(&a), env.pid(&b));
    let tick = last_tick(&env.serial(&b));
    // While the agent is down, A's instance disappears from the store.
    let a_doc = env.get(&a).await.unwrap();
    env.objects.delete::<Instance>(&a_doc).await.unwrap();
    // A new agent re-attaches: B still Running (same process, ticks go on),
    // A's QEMU is an orphan and goes away with its directory.
    let agent = env.agent(AccelMode::Auto);
    poll(STEP, "orphan A removed", || async {
        (!is_our_qemu(a_pid, &a) && !env.vm_dir(&a).exists()).then_some(())
    })
    .await;
    env.wait_serial(&b, "ticks continue", |l| last_tick(l) > tick)
        .await;
    assert_eq!(env.pid(&b), b_pid, "B was not restarted");
    assert_eq!(
        env.get(&b).await.unwrap().status.phase,
        InstancePhase::Running
    );

    // A graceful agent shutdown also leaves B running.
    agent.shutdown().await;
    assert!(is_our_qemu(b_pid, &b));
    let agent = env.agent(AccelMode::Auto);

    // Delete B the way the API does (mark deleting): the agent tears it down
    // and removes the object.
    env.objects
        .modify::<Instance>(&b, |d| {
            d.metadata.deleting = Some(yunhan_model::now());
            true
        })
        .await
        .unwrap();
    poll(STEP, "B deleted", || async {
        env.get(&b).await.is_none().then_some(())
    })
    .await;
    assert!(!is_our_qemu(b_pid, &b));
    assert!(!env.vm_dir(&b).exists());
    agent.shutdown().await;
    eprintln!("total {:.1?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_qemu_start_failure_is_reported() {
    let env = Env::new();
    let agent = env.agent(AccelMode::Tcg);
    let host = env.host_id().await;
    let kimg = env.image("guest-kernel", true).await;
    // A GPU that does not exist: QEMU itself refuses to start.
    let c = env.instance("vm-c", &kimg, &host, &["0000:ff:1f.7"]).await;
    let st = env.wait_phase(&c, InstancePhase::Failed, STEP).await;
    assert!(
        st.message.contains("QEMU failed to start"),
        "{}",
        st.message
    );
    assert!(
        st.message.contains("vfio"),
        "QEMU's own error: {}",
        st.message
    );
    assert!(!env.vm_dir(&c).exists(), "nothing half-created is left");
    // Failed stays Failed (no restart storm); stopping it reports Stopped.
    env.change(&c, |s| s.running = false).await;
    env.wait_phase(&c, InstancePhase::Stopped, STEP).await;
    // Deleting a never-started instance just removes it.
    env.objects
        .modify::<Instance>(&c, |d| {
            d.metadata.deleting = Some(yunhan_model::now());
            true
        })
        .await
        .unwrap();
    poll(STEP, "C deleted", || async {
        env.get(&c).await.is_none().then_some(())
    })
    .await;
    agent.shutdown().await;
}
