//! HA restart through the real binary: `yunhan server` on etcd with a real Ceph
//! pool, three `yunhan agent`s, real TCG guests. A host is cut off by
//! SIGSTOPping its agent (its QEMUs keep running, as behind a partition):
//! - a VM on a local disk is marked HostDown with the reason, and runs on when
//!   the agent comes back;
//! - a VM booting from an RBD volume is fenced (its QEMU's client blocklisted)
//!   and restarted on another host from the same disk (its boot counter goes
//!   on), and when the lost agent resumes it kills its stale copy (self-fence,
//!   orphan rule): never two copies running.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, stdout, test_guest, Cluster};
use serde_json::Value;

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// The QEMU processes running instance `id` (any host's).
fn qemus_of(id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("qemu-system") && cmd.contains(&format!("/vms/{id}/")) {
            pids.push(pid);
        }
    }
    pids
}

fn vm(c: &Cluster, name: &str) -> Value {
    c.ok(&["vm", "show", name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_ha_local_vm_is_host_down_and_rbd_vm_fails_over_exactly_once() {
    let guest = test_guest();
    let ceph = tokio::task::spawn_blocking(yunhan_testkit::DevCeph::start)
        .await
        .unwrap();
    let conf = ceph.conf().to_str().unwrap().to_string();
    let etcd = yunhan_testkit::EtcdCluster::start(1);
    let pool = [
        "--ceph-conf",
        &conf,
        "--ceph-pool",
        "havols",
        "--ceph-failure-domain",
        "osd",
    ];
    let agent_args: Vec<String> = pool.iter().map(|s| s.to_string()).collect();
    let mut server_args = pool.to_vec();
    server_args.extend(["--ha-grace", "2"]);
    let mut c = Cluster::start(
        etcd.store_url(),
        &server_args,
        &[agent_args.clone(), agent_args.clone(), agent_args],
    )
    .await;
    let raw = guest.join("test-guest.raw");
    c.ok(&["image", "create", "tiny", "--file", raw.to_str().unwrap()]);
    let create = |name: &str, extra: &[&str]| {
        let mut a = vec![
            "vm",
            "create",
            name,
            "--image",
            "tiny",
            "--flavor",
            "tiny",
            "--ha",
            "--wait",
            "--timeout",
            "180s",
        ];
        a.extend(extra);
        c.ok(&a);
    };

    // A local disk cannot move: HostDown with the reason, and back when the host is.
    create("loc", &[]);
    let loc = vm(&c, "loc");
    let host = loc["status"]["host"].as_str().unwrap().to_string();
    let agent = c.agents[c.agent_of(&host)].pid();
    signal(agent, "-STOP");
    let down = eventually("loc HostDown", Duration::from_secs(60), || async {
        let v = vm(&c, "loc");
        (v["status"]["phase"] == "HostDown").then_some(v)
    })
    .await;
    let msg = down["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("local copy of the image"), "{down}");
    assert_eq!(down["status"]["host"], host.as_str(), "not moved");
    signal(agent, "-CONT");
    eventually("loc Running again", Duration::from_secs(60), || async {
        let v = vm(&c, "loc");
        (v["status"]["phase"] == "Running").then_some(())
    })
    .await;
    c.ok(&["vm", "delete", "loc", "--wait"]);

    // A VM booting from an RBD clone fails over.
    c.ok(&[
        "volume",
        "create",
        "root1",
        "--image",
        "tiny",
        "--size",
        "1GiB",
        "--pool",
        "havols",
        "--bootable",
        "--wait",
    ]);
    create("ha1", &["--boot-volume", "root1"]);
    let before = vm(&c, "ha1");
    let id = before["metadata"]["id"].as_str().unwrap().to_string();
    let lost = before["status"]["host"].as_str().unwrap().to_string();
    eventually("ha1 booted once", Duration::from_secs(180), || async {
        stdout(&c.cli(&["vm", "log", "ha1"]))
            .contains("YUNHAN-BOOT count=1")
            .then_some(())
    })
    .await;
    let old_qemu = qemus_of(&id);
    assert_eq!(old_qemu.len(), 1, "one QEMU: {old_qemu:?}");
    let agent_idx = c.agent_of(&lost);
    let agent = c.agents[agent_idx].pid();
    let t0 = Instant::now();
    signal(agent, "-STOP");
    let moved = eventually(
        "ha1 Running on another host",
        Duration::from_secs(90),
        || async {
            let v = vm(&c, "ha1");
            (v["status"]["phase"] == "Running" && v["status"]["host"] != lost.as_str()).then_some(v)
        },
    )
    .await;
    let to_running = t0.elapsed();
    assert_eq!(moved["status"]["failovers"], 1, "{moved}");
    eventually(
        "ha1 booted again from the same disk",
        Duration::from_secs(180),
        || async {
            stdout(&c.cli(&["vm", "log", "ha1"]))
                .contains("YUNHAN-BOOT count=2")
                .then_some(())
        },
    )
    .await;
    let to_ready = t0.elapsed();
    eprintln!("HA failover: host lost → Running elsewhere {to_running:.1?}, → guest booted {to_ready:.1?}");
    // The lost host's QEMU was fenced off the disk.
    let bl = Command::new("ceph")
        .args(["-c", &conf, "osd", "blocklist", "ls"])
        .output()
        .unwrap();
    let listing =
        String::from_utf8_lossy(&bl.stdout).to_string() + &String::from_utf8_lossy(&bl.stderr);
    assert!(
        listing.contains("listed 1 entries") || listing.lines().count() > 1,
        "blocklist: {listing}"
    );
    assert!(
        qemus_of(&id).contains(&old_qemu[0]),
        "the stopped agent cannot have killed its QEMU yet"
    );

    // The lost agent resumes: it fences itself and drops its stale copy.
    signal(agent, "-CONT");
    eventually("the stale copy gone", Duration::from_secs(60), || async {
        (!qemus_of(&id).contains(&old_qemu[0])).then_some(())
    })
    .await;
    assert_eq!(qemus_of(&id).len(), 1, "exactly one copy runs");
    let after = vm(&c, "ha1");
    assert_eq!(after["status"]["host"], moved["status"]["host"], "{after}");
    assert_eq!(
        after["status"]["failovers"], 1,
        "moved exactly once: {after}"
    );
    c.agents[agent_idx].kill9();
    drop(c);
    drop(etcd);
    drop(ceph);
}
