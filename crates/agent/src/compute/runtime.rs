//! QEMU processes and their files. One directory per VM,
//! `<state_dir>/vms/<instance id>/` (0700, owned by the QEMU user):
//! `disk.raw`, `kernel`/`initrd` (direct-kernel images), `seed.iso`,
//! `qmp.sock`, `console.sock`, `serial.log`, `qemu.log` (QEMU's stderr),
//! `qemu.pid`, `argv.json`.
//!
//! QEMU is started detached (its own session, through `setsid`), as the
//! unprivileged QEMU user, so it outlives the agent; the pidfile plus
//! `/proc/<pid>/cmdline` identify it again after an agent restart.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use yunhan_qmp::{ConnectOptions, Qmp, QmpClient, RunState};

use super::argv::{build_argv, cmdline_matches, VmPlan};
use super::seed::{write_iso, SeedFiles};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Prepare(String),
    /// QEMU refused to start; the message is the end of its stderr.
    #[error("QEMU failed to start: {0}")]
    Qemu(String),
    #[error("QMP: {0}")]
    Qmp(#[from] yunhan_qmp::QmpError),
}

/// What to create a VM from.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub plan: VmPlan,
    /// The image's RAW disk to copy (absent: an empty disk).
    pub image_disk: Option<PathBuf>,
    /// Direct-kernel images: the image's kernel and initrd, copied into the VM dir.
    pub image_kernel: Option<(PathBuf, Option<PathBuf>)>,
    /// The root disk's size (it grows to this; never shrinks).
    pub disk_bytes: u64,
    pub seed: SeedFiles,
    /// Descriptors QEMU inherits (the VPC NICs' TAPs, numbered as in `plan.nics`).
    pub inherit_fds: Vec<Arc<OwnedFd>>,
}

#[derive(Debug)]
pub struct Runtime {
    pub vms_dir: PathBuf,
    pub qemu: PathBuf,
    /// The QEMU user's uid/gid (None: QEMU runs as the agent's own user).
    /// Each VM runs under its own uid derived from it (see [`Runtime::vm_ids`]).
    pub run_as: Option<(u32, u32)>,
    pub stop_timeout: Duration,
    /// How long QEMU may take to bring its QMP socket up.
    pub start_timeout: Duration,
}

/// chown to the VM's uid (when dropping privileges) + chmod.
fn own(ids: Option<(u32, u32)>, path: &Path, mode: u32) -> Result<(), RuntimeError> {
    if let Some((uid, gid)) = ids {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| io_err("chown", path, e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("chmod", path, e))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Prepare(format!("{what} {}: {e}", path.display()))
}

impl Runtime {
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.vms_dir.join(id)
    }

    /// Instance ids that have a VM directory here.
    pub fn list_vms(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.vms_dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("ins-"))
            .collect()
    }

    /// The uid/gid the QEMU of `id` runs as, once chosen (None: QEMU runs as
    /// the agent's user, or the VM never started here).
    pub fn vm_owner(&self, id: &str) -> Option<(u32, u32)> {
        let (_, gid) = self.run_as?;
        let uid = std::fs::read_to_string(self.vm_dir(id).join("uid")).ok()?;
        Some((uid.trim().parse().ok()?, gid))
    }

    /// The PID of the live QEMU of `id` (pidfile + cmdline check), if any.
    pub fn running_pid(&self, id: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.vm_dir(id).join("qemu.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_our_qemu(pid, id).then_some(pid)
    }

    /// Creates what is missing in the VM directory and starts QEMU; returns
    /// once QMP answers and the VM runs. On failure nothing is left running,
    /// and a VM directory this call created is removed.
    pub async fn start(&self, req: &StartRequest) -> Result<i32, RuntimeError> {
        let id = &req.plan.instance_id;
        let dir = self.vm_dir(id);
        let fresh = !dir.join("disk.raw").exists();
        let r = self.start_inner(req).await;
        if r.is_err() {
            if let Some(pid) = self.running_pid(id) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if fresh {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        r
    }

    /// The uid/gid one VM's QEMU runs as: a uid of its own (so one guest's
    /// QEMU cannot open another guest's files, which are all mode 0600/0700),
    /// with the QEMU user's group. Chosen once per VM dir, unique on this
    /// host, remembered in `<vm dir>/uid`.
    fn vm_ids(&self, dir: &Path) -> Result<Option<(u32, u32)>, RuntimeError> {
        const BASE: u32 = 2_000_000;
        const SLOTS: u32 = 1_000_000;
        let Some((_, gid)) = self.run_as else {
            return Ok(None);
        };
        let file = dir.join("uid");
        if let Some(uid) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(Some((uid, gid)));
        }
        let taken: std::collections::HashSet<u32> = self
            .list_vms()
            .iter()
            .filter_map(|id| std::fs::read_to_string(self.vm_dir(id).join("uid")).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        let mut slot = (hash % SLOTS as u64) as u32;
        while taken.contains(&(BASE + slot)) {
            slot = (slot + 1) % SLOTS;
        }
        let uid = BASE + slot;
        std::fs::write(&file, uid.to_string()).map_err(|e| io_err("writing", &file, e))?;
        Ok(Some((uid, gid)))
    }

    async fn start_inner(&self, req: &StartRequest) -> Result<i32, RuntimeError> {
        let plan = &req.plan;
        let dir = &plan.dir;
        // 0700 from the start: no moment where another VM's QEMU could enter it.
        super::set_dir_mode(dir, 0o700).map_err(|e| io_err("creating", dir, e))?;
        let ids = self.vm_ids(dir)?;
        own(ids, dir, 0o700)?;
        // Root disk: a thin copy of the image, grown to the flavor's size (again after
        // a resize to a larger flavor). A VM booting from a volume has nothing to copy.
        let disk = plan.disk();
        if plan.root.is_none() {
            if !disk.exists() {
                let tmp = dir.join("disk.raw.tmp");
                match &req.image_disk {
                    Some(src) => copy_thin(src, &tmp).await?,
                    None => {
                        std::fs::File::create(&tmp).map_err(|e| io_err("creating", &tmp, e))?;
                    }
                }
                grow_to(&tmp, req.disk_bytes)?;
                std::fs::rename(&tmp, &disk).map_err(|e| io_err("renaming", &tmp, e))?;
            }
            grow_to(&disk, req.disk_bytes)?;
            own(ids, &disk, 0o600)?;
        }
        if let Some((kernel, initrd)) = &req.image_kernel {
            for (src, name) in [(Some(kernel), "kernel"), (initrd.as_ref(), "initrd")] {
                let Some(src) = src else { continue };
                let dst = dir.join(name);
                if !dst.exists() {
                    let tmp = dir.join(format!("{name}.tmp"));
                    copy_thin(src, &tmp).await?;
                    std::fs::rename(&tmp, &dst).map_err(|e| io_err("renaming", &tmp, e))?;
                }
                own(ids, &dst, 0o400)?;
            }
        }
        // A fresh seed every start (user data may have changed).
        write_iso(&req.seed, dir, &plan.seed())
            .await
            .map_err(|e| RuntimeError::Prepare(format!("seed: {e}")))?;
        own(ids, &plan.seed(), 0o400)?;
        let argv = build_argv(plan);
        let argv_json = serde_json::to_vec_pretty(&json!({
            "binary": self.qemu,
            "argv": argv,
            "run_as": ids,
        }))
        .unwrap_or_default();
        let argv_path = dir.join("argv.json");
        std::fs::write(&argv_path, argv_json).map_err(|e| io_err("writing", &argv_path, e))?;
        for stale in [plan.qmp_socket(), plan.console_socket(), plan.pidfile()] {
            let _ = std::fs::remove_file(stale);
        }
        let log_path = dir.join("qemu.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_err("opening", &log_path, e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log2 = log
            .try_clone()
            .map_err(|e| io_err("opening", &log_path, e))?;

        // `setsid` (util-linux) makes QEMU a session leader in place (same
        // PID, no fork: a freshly spawned child is never a group leader), so
        // signals to the agent's terminal or process group never reach VMs.
        let mut cmd = tokio::process::Command::new("setsid");
        cmd.arg(&self.qemu)
            .args(&argv)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(false);
        if let Some((uid, gid)) = ids {
            cmd.uid(uid).gid(gid);
        }
        let fds: Vec<i32> = req.inherit_fds.iter().map(|f| f.as_raw_fd()).collect();
        if !fds.is_empty() {
            // SAFETY: only fcntl(2), async-signal-safe, between fork and exec: the
            // descriptors (close-on-exec in the agent) stay open in QEMU.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || {
                    for fd in &fds {
                        if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::Prepare(format!("cannot run setsid/QEMU: {e}")))?;
        let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel();
        // Reaps QEMU if it exits while this agent lives.
        tokio::spawn(async move {
            let st = child.wait().await;
            let _ = exit_tx.send(st);
        });
        let opts = ConnectOptions {
            timeout: self.start_timeout,
        };
        let qmp = tokio::select! {
            r = QmpClient::connect_retry(plan.qmp_socket(), opts, self.start_timeout) => r,
            st = &mut exit_rx => {
                let st = st.map(|s| s.map(|s| s.to_string()).unwrap_or_default()).unwrap_or_default();
                return Err(RuntimeError::Qemu(log_tail(&log_path, log_start, &st)));
            }
        };
        let qmp = match qmp {
            Ok(q) => q,
            Err(e) => {
                // QEMU may have died while we were connecting: prefer its own words.
                if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(2), exit_rx).await {
                    let st = st.map(|s| s.to_string()).unwrap_or_default();
                    return Err(RuntimeError::Qemu(log_tail(&log_path, log_start, &st)));
                }
                return Err(RuntimeError::Qemu(format!("no QMP: {e}")));
            }
        };
        let status = qmp.query_status().await?;
        let expected = match plan.incoming {
            Some(_) => RunState::Inmigrate,
            None => RunState::Running,
        };
        if status.status != expected {
            let _ = qmp.quit().await;
            return Err(RuntimeError::Qemu(format!(
                "VM is {:?} after start, not running",
                status.status
            )));
        }
        // Sockets and logs: owner only (the directory is 0700 already).
        for f in [
            plan.qmp_socket(),
            plan.console_socket(),
            plan.serial_log(),
            plan.pidfile(),
            log_path.clone(),
        ] {
            let _ = own(ids, &f, 0o600);
        }
        let pid = self
            .running_pid(&plan.instance_id)
            .ok_or_else(|| RuntimeError::Qemu("QEMU runs but its pidfile does not match".into()))?;
        Ok(pid)
    }

    /// A QMP connection to the VM of `id` (one operation's worth: QEMU
    /// serves one client at a time).
    pub async fn qmp(&self, id: &str) -> Result<QmpClient, RuntimeError> {
        let opts = ConnectOptions {
            timeout: Duration::from_secs(10),
        };
        Ok(QmpClient::connect_with(self.vm_dir(id).join("qmp.sock"), opts).await?)
    }

    /// Waits until QEMU `pid` of `id` is gone; false on timeout.
    async fn wait_gone(&self, pid: i32, id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !is_our_qemu(pid, id) {
                // Exited. Give its parent (this agent's reaper task, or init
                // after an agent restart) a moment to reap the zombie, so
                // "gone" also means gone from /proc for whoever looks next.
                let reaped = Instant::now() + Duration::from_secs(2);
                while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < reaped {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful stop: ACPI power button, wait up to `stop_timeout`, then QMP
    /// `quit`, then SIGKILL.
    pub async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(pid) = self.running_pid(id) else {
            return Ok(());
        };
        if let Ok(qmp) = self.qmp(id).await {
            if qmp.system_powerdown().await.is_ok()
                && self.wait_gone(pid, id, self.stop_timeout).await
            {
                return Ok(());
            }
            tracing::warn!(
                instance = id,
                "guest ignored the power button; quitting QEMU"
            );
        }
        self.kill(id).await
    }

    /// Immediate stop: QMP `quit`, then SIGKILL by the pidfile's PID.
    pub async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(pid) = self.running_pid(id) else {
            return Ok(());
        };
        if let Ok(Ok(qmp)) = tokio::time::timeout(Duration::from_secs(2), self.qmp(id)).await {
            let _ = qmp.quit().await;
            if self.wait_gone(pid, id, Duration::from_secs(5)).await {
                return Ok(());
            }
        }
        if is_our_qemu(pid, id) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if self.wait_gone(pid, id, Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(RuntimeError::Prepare(format!(
                "QEMU {pid} of {id} survived SIGKILL"
            )))
        }
    }

    /// SIGKILL now, without asking QEMU first (self-fencing: its disks may
    /// already belong to a copy on another host).
    pub fn kill_now(&self, id: &str) {
        if let Some(pid) = self.running_pid(id) {
            if is_our_qemu(pid, id) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// Removes a stopped VM's root disk and kernel copies (a rebuild: the next start
    /// copies the image again); its seed, console log and NICs stay.
    pub fn wipe_root(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.vm_dir(id);
        for name in ["disk.raw", "kernel", "initrd"] {
            let path = dir.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err("removing", &path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Kills the VM and removes its directory.
    pub async fn destroy(&self, id: &str) -> Result<(), RuntimeError> {
        self.kill(id).await?;
        let dir = self.vm_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &dir, e)),
        }
    }

    /// Hard: `system_reset`. Soft: Ctrl-Alt-Del on the PS/2 keyboard (the
    /// guest's init reboots cleanly; `system_powerdown` would power it off).
    pub async fn reboot(&self, id: &str, hard: bool) -> Result<(), RuntimeError> {
        let qmp = self.qmp(id).await?;
        if hard {
            qmp.system_reset().await?;
        } else {
            let key = |k: &str| json!({"type": "qcode", "data": k});
            qmp.execute_raw(
                "send-key",
                json!({"keys": [key("ctrl"), key("alt"), key("delete")]}),
            )
            .await?;
        }
        Ok(())
    }
}

/// Whether `pid` is a live QEMU started for `id` (zombies have no cmdline).
pub fn is_our_qemu(pid: i32, id: &str) -> bool {
    pid > 1 && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| cmdline_matches(&c, id))
}

/// `cp --reflink=auto --sparse=always`: instant on CoW file systems, sparse elsewhere.
async fn copy_thin(src: &Path, dst: &Path) -> Result<(), RuntimeError> {
    let out = tokio::process::Command::new("cp")
        .args(["--reflink=auto", "--sparse=always", "--"])
        .arg(src)
        .arg(dst)
        .output()
        .await
        .map_err(|e| RuntimeError::Prepare(format!("cannot run cp: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        let _ = std::fs::remove_file(dst);
        Err(RuntimeError::Prepare(format!(
            "copying {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The last lines QEMU wrote to stderr since `from`, for `status.message`.
fn log_tail(path: &Path, from: u64, exit: &str) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("; ");
    match (tail.is_empty(), exit.is_empty()) {
        (true, _) => format!("QEMU {exit} without a message"),
        (false, true) => tail,
        (false, false) => format!("{tail} ({exit})"),
    }
}

/// Why the QEMU user could not be found or created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("cannot run useradd: {0}")]
    Useradd(#[source] std::io::Error),
    #[error("user {name} does not exist and useradd failed: {stderr}")]
    NotCreated { name: String, stderr: String },
}

/// Creates the QEMU user if it is missing (agent running as root), and
/// returns its uid/gid.
pub fn ensure_user(name: &str) -> Result<(u32, u32), UserError> {
    use nix::unistd::User;
    if let Ok(Some(u)) = User::from_name(name) {
        return Ok((u.uid.as_raw(), u.gid.as_raw()));
    }
    let out = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .output()
        .map_err(UserError::Useradd)?;
    match User::from_name(name) {
        Ok(Some(u)) => {
            tracing::info!(user = name, uid = u.uid.as_raw(), "created the QEMU user");
            Ok((u.uid.as_raw(), u.gid.as_raw()))
        }
        _ => Err(UserError::NotCreated {
            name: name.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// Grows the raw file at `path` to `bytes` (sparse); never shrinks it.
fn grow_to(path: &Path, bytes: u64) -> Result<(), RuntimeError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err("opening", path, e))?;
    let len = f.metadata().map_err(|e| io_err("stat", path, e))?.len();
    if len < bytes {
        f.set_len(bytes).map_err(|e| io_err("growing", path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines_of_this_start() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("qemu.log");
        std::fs::write(&p, "old run\n").unwrap();
        let from = 8;
        let mut s = std::fs::read_to_string(&p).unwrap();
        for i in 0..8 {
            s.push_str(&format!("line {i}\n\n"));
        }
        std::fs::write(&p, s).unwrap();
        assert_eq!(
            log_tail(&p, from, "exit status: 1"),
            "line 3; line 4; line 5; line 6; line 7 (exit status: 1)"
        );
        assert_eq!(
            log_tail(&p, 1000, "exit status: 1"),
            "QEMU exit status: 1 without a message"
        );
    }

    #[test]
    fn a_missing_pidfile_is_not_running() {
        let d = tempfile::tempdir().unwrap();
        let rt = Runtime {
            vms_dir: d.path().into(),
            qemu: "qemu-system-x86_64".into(),
            run_as: None,
            stop_timeout: Duration::from_secs(1),
            start_timeout: Duration::from_secs(1),
        };
        std::fs::create_dir(d.path().join("ins-1")).unwrap();
        assert_eq!(rt.running_pid("ins-1"), None);
        // Our own PID is alive but is not QEMU.
        std::fs::write(
            d.path().join("ins-1/qemu.pid"),
            std::process::id().to_string(),
        )
        .unwrap();
        assert_eq!(rt.running_pid("ins-1"), None);
        assert_eq!(rt.list_vms(), vec!["ins-1".to_string()]);
    }
}
