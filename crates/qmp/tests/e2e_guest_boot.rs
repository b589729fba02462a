//! Builds the test guest (scripts/build-test-guest, cached in
//! `target/test-guest`) and boots it under TCG: the RAW disk image and the
//! direct-kernel variant, each with a NoCloud seed. Checks the readiness
//! marker, disk hot plug/resize/unplug seen from inside the guest, and that
//! QMP `system_powerdown` powers it off. Prints the measured boot times.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use yunhan_qmp::{BlockdevAdd, ConnectOptions, DeviceAdd, EventKind, Qmp, QmpClient, RunState};

/// Generous: TCG on a busy 2-core box (the guest needs ~5–15 s).
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const STEP_DEADLINE: Duration = Duration::from_secs(30);

fn workspace() -> PathBuf {
    yunhan_testkit::workspace_root()
}

fn guest_dir() -> PathBuf {
    yunhan_testkit::test_guest()
}

fn make_seed(dir: &Path, args: &[&str]) -> PathBuf {
    let iso = dir.join("seed.iso");
    let st = std::process::Command::new(workspace().join("scripts/make-nocloud-seed"))
        .arg(&iso)
        .args(args)
        .status()
        .expect("run make-nocloud-seed");
    assert!(st.success());
    iso
}

/// One QEMU process (killed on drop: only this child) and its files.
struct Vm {
    child: tokio::process::Child,
    serial: PathBuf,
    qmp: PathBuf,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl Vm {
    fn start(dir: tempfile::TempDir, boot: &[String], seed: &Path) -> Vm {
        let serial = dir.path().join("serial.log");
        let qmp = dir.path().join("qmp.sock");
        let child = tokio::process::Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-m",
                "256",
                "-smp",
                "1",
                "-nodefaults",
                "-display",
                "none",
            ])
            .args(["-no-reboot", "-serial"])
            .arg(format!("file:{}", serial.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .args(boot)
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,readonly=on",
                seed.display()
            ))
            .args([
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn qemu-system-x86_64");
        Vm {
            child,
            serial,
            qmp,
            started: Instant::now(),
            _dir: dir,
        }
    }

    fn serial_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// Polls the serial log until a line contains `needle` (after `skip` bytes).
    async fn wait_line(&self, needle: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let text = self.serial_text();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.trim_end_matches('\r').to_owned();
            }
            assert!(
                Instant::now() < end,
                "no {needle:?} on the serial console within {deadline:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until a `YUNHAN-DISKS` line satisfies `pred`.
    async fn wait_disks(&self, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + STEP_DEADLINE;
        loop {
            let text = self.serial_text();
            if let Some(l) = text.lines().rev().find(|l| l.contains("YUNHAN-DISKS")) {
                if pred(l) {
                    return l.trim_end_matches('\r').to_owned();
                }
            }
            assert!(Instant::now() < end, "disks never matched:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn qmp(&self) -> QmpClient {
        QmpClient::connect_retry(&self.qmp, ConnectOptions::default(), STEP_DEADLINE)
            .await
            .expect("QMP")
    }

    /// `system_powerdown` → the guest powers off → QEMU exits.
    async fn powerdown(mut self, qmp: &QmpClient) {
        let mut ev = qmp.events();
        let t = Instant::now();
        qmp.system_powerdown().await.unwrap();
        let e = ev.wait_for_name("SHUTDOWN", STEP_DEADLINE).await.unwrap();
        assert_eq!(
            e.kind(),
            EventKind::Shutdown {
                guest: true,
                reason: "guest-shutdown".into()
            }
        );
        let status = tokio::time::timeout(STEP_DEADLINE, self.child.wait())
            .await
            .expect("QEMU exits after the guest powers off")
            .unwrap();
        assert!(status.success(), "{status:?}");
        assert!(self.serial_text().contains("YUNHAN-POWERDOWN"));
        eprintln!("powered off {:.1?} after system_powerdown", t.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_guest_boots_from_raw_disk() {
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let seed = make_seed(
        dir.path(),
        &[
            "--hostname",
            "raw-guest",
            "--ip",
            "10.0.2.50/24",
            "--gateway",
            "10.0.2.2",
        ],
    );
    let boot = vec![
        "-drive".to_string(),
        format!(
            "file={},format=raw,if=virtio,snapshot=on",
            guest.join("test-guest.raw").display()
        ),
    ];
    let vm = Vm::start(dir, &boot, &seed);
    let ready = vm.wait_line("YUNHAN-READY", BOOT_DEADLINE).await;
    let boot_time = vm.started.elapsed();
    assert_eq!(ready, "YUNHAN-READY hostname=raw-guest ips=10.0.2.50");
    eprintln!("raw disk: {ready} after {boot_time:.1?} (TCG)");
    assert!(vm
        .serial_text()
        .contains("YUNHAN-BOOT count=1 dev=/dev/vda1"));
    vm.wait_line("YUNHAN-TICK 2", STEP_DEADLINE).await;
    let qmp = vm.qmp().await;
    assert_eq!(qmp.query_status().await.unwrap().status, RunState::Running);
    vm.powerdown(&qmp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_guest_boots_direct_kernel_and_sees_hotplug() {
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("user-data.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"user-data ran on $(hostname)\"\n",
    )
    .unwrap();
    let seed = make_seed(
        dir.path(),
        &[
            "--hostname",
            "kernel-guest",
            "--user-data",
            script.to_str().unwrap(),
        ],
    );
    let cmdline = std::fs::read_to_string(guest.join("test-guest.cmdline")).unwrap();
    let boot: Vec<String> = vec![
        "-kernel".into(),
        guest.join("test-guest.vmlinuz").display().to_string(),
        "-initrd".into(),
        guest.join("test-guest.initrd").display().to_string(),
        "-append".into(),
        cmdline.trim().into(),
    ];
    let data = dir.path().join("data.raw");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let vm = Vm::start(dir, &boot, &seed);
    let ready = vm.wait_line("YUNHAN-READY", BOOT_DEADLINE).await;
    let boot_time = vm.started.elapsed();
    // user-mode networking's DHCP hands out 10.0.2.15.
    assert_eq!(ready, "YUNHAN-READY hostname=kernel-guest ips=10.0.2.15");
    eprintln!("direct kernel: {ready} after {boot_time:.1?} (TCG)");
    let text = vm.serial_text();
    assert!(text.contains("user-data ran on kernel-guest"), "{text}");
    assert!(text.contains("YUNHAN-USERDATA exit=0"), "{text}");
    vm.wait_disks(|l| l.contains("vda=")).await;

    // Hot plug a disk, grow it, unplug it; the guest reports each change.
    let qmp = vm.qmp().await;
    let mut ev = qmp.events();
    qmp.blockdev_add(BlockdevAdd::file("data-file", data.to_str().unwrap()))
        .await
        .unwrap();
    qmp.blockdev_add(BlockdevAdd::format("raw", "data", "data-file"))
        .await
        .unwrap();
    qmp.device_add(DeviceAdd::new("virtio-blk-pci", "disk-data").prop("drive", "data"))
        .await
        .unwrap();
    vm.wait_disks(|l| l.contains("vdb=33554432")).await;
    qmp.block_resize("data", 64 << 20).await.unwrap();
    vm.wait_disks(|l| l.contains("vdb=67108864")).await;
    qmp.device_del("disk-data").await.unwrap();
    let e = ev
        .wait_for(STEP_DEADLINE, |e| {
            matches!(e.kind(), EventKind::DeviceDeleted { device: Some(ref d), .. } if d == "disk-data")
        })
        .await
        .unwrap();
    eprintln!("unplugged: {e:?}");
    vm.wait_disks(|l| !l.contains("vdb")).await;
    qmp.blockdev_del("data").await.unwrap();
    qmp.blockdev_del("data-file").await.unwrap();
    vm.powerdown(&qmp).await;
}
