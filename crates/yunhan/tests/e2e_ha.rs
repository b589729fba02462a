//! HA restart through the real binary: `yunhan server` on etcd with a real Ceph
//! pool, three `yunhan agent`s, real TCG guests.
//! - A VM on a local disk is marked HostDown with the reason while its agent is
//!   stopped, and runs on when the agent resumes.
//! - Two VMs booting from RBD clones, in a hard anti-affinity group. The host of
//!   one is cut off (its agent SIGSTOPped: its QEMU runs on, as behind a partition)
//!   and the control plane is restarted meanwhile. The VM is fenced (its QEMU's
//!   client blocklisted) and restarted once, on the host without the other VM,
//!   from the same disk (its boot counter goes on). The resumed agent kills its
//!   stale copy.
//! - The agent of its new host is killed (the host stays healthy): it moves again,
//!   and the restarted agent removes the copy left behind. Exactly one copy runs
//!   at the end of each step.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    disk_image_args, eventually, qemus_of, signal, stdout, strs, tiny_vm, CephCloud, Cluster,
};
use serde_json::Value;

fn vm(c: &Cluster, name: &str) -> Value {
    c.ok(&["vm", "show", name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_ha_local_vm_is_host_down_and_rbd_vm_fails_over_exactly_once() {
    let mut c = CephCloud::start("havols", &vec![vec![]; 3], &["--ha-grace", "2"]).await;
    let conf = c.conf.clone();
    c.ok(&strs(&disk_image_args("tiny")));
    let create = |name: &str, extra: &[&str]| {
        let mut a = tiny_vm(name, &["--ha", "--wait", "--timeout", "180s"]);
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

    // Two VMs booting from RBD clones, never on the same host.
    c.ok(&["placement-group", "create", "spread", "--policy", "hard"]);
    for n in ["1", "2"] {
        c.ok(&[
            "volume",
            "create",
            &format!("root{n}"),
            "--image",
            "tiny",
            "--size",
            "1GiB",
            "--pool",
            "havols",
            "--bootable",
            "--wait",
        ]);
        create(
            &format!("ha{n}"),
            &[
                "--boot-volume",
                &format!("root{n}"),
                "--placement-group",
                "spread",
            ],
        );
    }
    let ha2_host = vm(&c, "ha2")["status"]["host"]
        .as_str()
        .unwrap()
        .to_string();
    let id = vm(&c, "ha1")["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    booted(&c, 1).await;

    // Host of ha1 cut off (agent stopped, QEMU running on), and the control plane
    // restarted while the host is NotReady: the failover completes, once.
    let (lost, moved, t) = {
        let before = vm(&c, "ha1");
        let lost = before["status"]["host"].as_str().unwrap().to_string();
        let old_qemu = one_qemu(&id);
        let agent = c.agents[c.agent_of(&lost)].pid();
        let t0 = Instant::now();
        signal(agent, "-STOP");
        eventually("the host NotReady", Duration::from_secs(30), || async {
            let h = c.ok(&["host", "show", &lost]);
            (h["status"]["phase"] == "NotReady").then_some(())
        })
        .await;
        c.server.take().unwrap().kill9();
        c.start_server_and_wait().await;
        let moved = moved_off(&c, &lost, 1).await;
        let t = (t0.elapsed(), Duration::ZERO);
        booted(&c, 2).await;
        let t = (t.0, t0.elapsed());
        assert_ne!(moved, ha2_host, "anti-affinity: not next to ha2");
        // The lost host's QEMU was fenced off the disk, and still runs (its agent is stopped).
        let bl = Command::new("ceph")
            .args(["-c", &conf, "osd", "blocklist", "ls"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&bl.stdout).to_string();
        assert!(
            bl.status.success() && listed.lines().any(|l| l.starts_with("127.0.0.1:")),
            "the old client is blocklisted: {listed}{}",
            String::from_utf8_lossy(&bl.stderr)
        );
        assert!(
            qemus_of(&id).contains(&old_qemu),
            "stopped agents kill nothing"
        );
        // The lost agent resumes: it fences itself and drops its stale copy.
        signal(agent, "-CONT");
        stale_copy_gone(&id, old_qemu).await;
        (lost, moved, t)
    };
    eprintln!(
        "HA failover (agent stopped, control plane restarted): Running elsewhere after {:.1?}, guest booted after {:.1?}",
        t.0, t.1
    );

    // The agent of ha1's new host killed, the host itself healthy: ha1 moves again (to
    // the first host, Ready again and free of group members), and the restarted agent
    // removes the copy it left running.
    let old_qemu = one_qemu(&id);
    let i = c.agent_of(&moved);
    let t0 = Instant::now();
    c.agents[i].kill9();
    let again = moved_off(&c, &moved, 2).await;
    assert_eq!(again, lost, "the only host without a group member");
    booted(&c, 3).await;
    eprintln!(
        "HA failover (agent killed): guest booted after {:.1?}",
        t0.elapsed()
    );
    c.restart_agent(i);
    stale_copy_gone(&id, old_qemu).await;
}

/// ha1's console shows boot number `n` of its root disk.
async fn booted(c: &Cluster, n: u32) {
    let marker = format!("YUNHAN-BOOT count={n}");
    eventually(&marker, Duration::from_secs(180), || async {
        stdout(&c.cli(&["vm", "log", "ha1"]))
            .contains(&marker)
            .then_some(())
    })
    .await;
}

/// Waits for ha1 Running on a host other than `from` after its `n`th failover; returns
/// the new host.
async fn moved_off(c: &Cluster, from: &str, n: u64) -> String {
    let v = eventually(
        "ha1 Running on another host",
        Duration::from_secs(90),
        || async {
            let v = vm(c, "ha1");
            (v["status"]["phase"] == "Running" && v["status"]["host"] != from).then_some(v)
        },
    )
    .await;
    assert_eq!(v["status"]["failovers"], n, "moved exactly once more: {v}");
    v["status"]["host"].as_str().unwrap().to_string()
}

/// The one QEMU running instance `id`.
fn one_qemu(id: &str) -> u32 {
    let q = qemus_of(id);
    assert_eq!(q.len(), 1, "one QEMU: {q:?}");
    q[0]
}

/// The stale QEMU `old` goes away and exactly one copy of `id` runs.
async fn stale_copy_gone(id: &str, old: u32) {
    eventually("the stale copy gone", Duration::from_secs(60), || async {
        (!qemus_of(id).contains(&old)).then_some(())
    })
    .await;
    one_qemu(id);
}
