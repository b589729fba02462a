//! Live migration through the real binary: `yunhan server` on etcd with a real
//! Ceph pool, two `yunhan agent`s on the hosts of a netns lab, a real TCG guest
//! booting from an RBD clone with a VPC NIC, and a peer on the other host.
//! - Refusals: to its own host, to an unknown host, a VM that is not running, a VM
//!   on a local disk, a VM already migrating.
//! - A cancelled migration and a migration whose target QEMU is killed mid-copy
//!   both leave the VM running on the source, with no copy left on the target.
//! - A migration that completes: the guest keeps counting on its console (no
//!   reboot), keeps its address (the peer reaches it), runs exactly once, and the
//!   total time and downtime are reported. What was hot-plugged into it before
//!   comes along: a Ceph data volume (its marker read back from the disk) and a
//!   second NIC (its MAC in the guest).
//! - `host drain` moves it back, names the VM it cannot move (stopped, local
//!   disk) and marks the host unschedulable (a migration to it is then refused);
//!   `host uncordon` ends that. The VM's elastic IP follows it both times: the
//!   outside pings it throughout (longest gaps reported) and `eip show` names the
//!   host realising it.
//! - Post-copy: moves where the target's unprivileged QEMU may use userfaultfd,
//!   and fails clearly (the VM stays) where it may not.

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use common::guest_disk::{device_of, read_pattern, write_pattern};
use common::{eventually, qemus_of, stderr, test_guest, words, CephCloud, Cluster};
use serde_json::Value;

fn vm(c: &Cluster, name: &str) -> Value {
    c.ok(&["vm", "show", name])
}

/// The last `YUNHAN-TICK n` in a console log.
fn last_tick(log: &str) -> Option<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("YUNHAN-TICK "))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
}

/// Waits for m's migration `request` to reach `phase`; returns the VM.
async fn migration_phase(c: &Cluster, request: u64, phase: &str) -> Value {
    eventually(
        &format!("migration {request} {phase}"),
        Duration::from_secs(120),
        || async {
            let v = vm(c, "m");
            let m = &v["status"]["migration"];
            (m["request"] == request && m["phase"] == phase).then_some(v)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_migration_live_cancel_failure_and_refusals() {
    let guest = test_guest();
    let lab = common::two_host_lab("mg");
    let c = CephCloud::start("migvols", &common::lab_agents(&lab), &[]).await;
    let raw = guest.join("test-guest.raw");
    c.ok(&["image", "create", "tiny", "--file", raw.to_str().unwrap()]);
    common::net1_with_s1(&*c);
    // A provider network on the hosts' `ext0` (an outside namespace holds its gateway),
    // and a group that lets the outside ping.
    let outside = lab
        .add_external(
            "203.0.113.0/24".parse().unwrap(),
            Ipv4Addr::new(203, 0, 113, 1),
            &[
                Ipv4Addr::new(203, 0, 113, 201),
                Ipv4Addr::new(203, 0, 113, 202),
            ],
        )
        .unwrap();
    common::provider_network_and_open_ping(&*c);
    // The peer's VM (stopped: a namespace guest stands in for it) goes first, so
    // the migrating VM lands on the other host.
    c.ok(&[
        "vm",
        "create",
        "p",
        "--image",
        "tiny",
        "--flavor",
        "tiny",
        "--stopped",
    ]);
    let p_host = eventually("p bound", Duration::from_secs(30), || async {
        vm(&c, "p")["status"]["host"].as_str().map(str::to_string)
    })
    .await;
    c.ok(&[
        "volume",
        "create",
        "root1",
        "--image",
        "tiny",
        "--size",
        "1GiB",
        "--pool",
        "migvols",
        "--bootable",
        "--wait",
    ]);
    c.ok(&[
        "vm",
        "create",
        "m",
        "--image",
        "tiny",
        "--flavor",
        "tiny",
        "--boot-volume",
        "root1",
        "--subnet",
        "s1",
        "--security-group",
        "open",
        "--wait",
        "--timeout",
        "180s",
    ]);
    let m = vm(&c, "m");
    let id = m["metadata"]["id"].as_str().unwrap().to_string();
    let source = m["status"]["host"].as_str().unwrap().to_string();
    assert_ne!(source, p_host, "the two VMs share no host");
    let nic = c.ok(&["nic", "list"]);
    let ip: Ipv4Addr = nic
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["spec"]["instance"] == id.as_str())
        .and_then(|n| n["status"]["ip"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    let peer = c.ok(&["nic", "create", "peer", "--subnet", "s1", "--vm", "p"]);
    let g = lab
        .add_nic_guest(&lab.hosts[c.agent_of(&p_host)].id, &peer, 1450)
        .unwrap();
    let log = eventually("m ready", Duration::from_secs(180), || async {
        let v = vm(&c, "m");
        let log = v["status"]["console_log"].as_str()?.to_string();
        std::fs::read_to_string(&log)
            .ok()?
            .contains("YUNHAN-READY")
            .then_some(log)
    })
    .await;
    assert!(
        lab.ping_within(&g, ip, Duration::from_secs(30)),
        "peer → m before"
    );

    // Refusals.
    let refused = |args: &[&str], needle: &str| {
        let out = c.cli(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    };
    let src_name = c.ok(&["host", "show", &source])["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    refused(
        &["vm", "migrate", "m", "--to", &src_name],
        "already runs on",
    );
    refused(
        &["vm", "migrate", "m", "--to", "no-such-host"],
        "does not exist",
    );
    // A stopped VM on a local disk: a cold move is refused by the orchestrator.
    refused(
        &["vm", "migrate", "p", "--wait"],
        "its root disk is a local copy",
    );
    // A host without the VM's networks: q's elastic IP is on an external network with a
    // leg on q's host only, so the API refuses a move to the other host.
    c.ok(&words(
        "vm create q --image tiny --flavor tiny --subnet s1 --stopped",
    ));
    let q_host = eventually("q bound", Duration::from_secs(30), || async {
        vm(&c, "q")["status"]["host"].as_str().map(str::to_string)
    })
    .await;
    let host_name = |id: &str| {
        let h = c.ok(&["host", "show", id]);
        h["metadata"]["name"].as_str().unwrap().to_string()
    };
    let other = if q_host == source {
        p_host.clone()
    } else {
        source.clone()
    };
    let leg = format!(
        "{}={}",
        host_name(&q_host),
        yunhan_net::lab::Lab::EXTERNAL_DEVICE
    );
    let edge = [
        "external-network",
        "create",
        "edge",
        "--cidr",
        "198.51.100.0/28",
    ];
    c.ok(&[&edge[..], &["--leg", &leg]].concat());
    c.ok(&words("eip create edge-ip --network edge --nic q-nic0"));
    refused(
        &["vm", "migrate", "q", "--to", &host_name(&other)],
        "has no leg on external network \"edge\"",
    );
    assert_eq!(vm(&c, "q")["status"]["host"], q_host.as_str(), "q stays");
    c.ok(&words("eip delete edge-ip"));
    c.ok(&words("vm delete q --wait"));
    c.ok(&words("external-network delete edge"));
    // A running VM on a local disk: accepted by the API, refused by the orchestrator.
    c.ok(&[
        "vm", "create", "l", "--image", "tiny", "--flavor", "tiny", "--wait",
    ]);
    refused(
        &["vm", "migrate", "l", "--wait"],
        "block migration is not supported",
    );
    c.ok(&["vm", "delete", "l", "--wait"]);

    // Cancelled mid-copy (1 MiB/s keeps it copying): the VM stays, the target copy goes.
    c.ok(&["vm", "migrate", "m", "--bandwidth", "1"]);
    migration_phase(&c, 1, "Running").await;
    refused(&["vm", "migrate", "m"], "already migrating");
    c.ok(&["vm", "migrate", "m", "--cancel", "--wait"]);
    let v = migration_phase(&c, 1, "Cancelled").await;
    assert_eq!(v["status"]["host"], source.as_str());
    eventually(
        "one copy after the cancel",
        Duration::from_secs(60),
        || async { (qemus_of(&id).len() == 1).then_some(()) },
    )
    .await;

    // The target QEMU killed mid-copy: the migration fails, the VM runs on.
    c.ok(&["vm", "migrate", "m", "--bandwidth", "1"]);
    migration_phase(&c, 2, "Running").await;
    let target_qemu = eventually("the target QEMU", Duration::from_secs(30), || async {
        let source_pid = std::fs::read_to_string(PathBuf::from(&log).with_file_name("qemu.pid"))
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()?;
        qemus_of(&id).into_iter().find(|p| *p != source_pid)
    })
    .await;
    common::signal(target_qemu, "-KILL");
    let v = migration_phase(&c, 2, "Failed").await;
    assert_eq!(v["status"]["host"], source.as_str());
    assert_eq!(v["status"]["phase"], "Running", "{v}");
    eventually(
        "one copy after the failure",
        Duration::from_secs(60),
        || async { (qemus_of(&id).len() == 1).then_some(()) },
    )
    .await;
    assert!(
        lab.ping_within(&g, ip, Duration::from_secs(10)),
        "peer → m after the failure"
    );

    // Hot-plugged devices: a Ceph data volume with a marker, and a second NIC.
    let plugged = hot_plug(&c, &id).await;

    // The real thing, with an elastic IP the outside pings every 100 ms meanwhile.
    let eip = c.ok(&["eip", "create", "m-ip", "--nic", "m-nic0"]);
    let eip: Ipv4Addr = eip["status"]["address"].as_str().unwrap().parse().unwrap();
    assert!(
        lab.ping_within(&outside, eip, Duration::from_secs(30)),
        "outside → m's elastic IP before the move"
    );
    let pinger = Pinger::start(&outside, eip);
    let before = last_tick(&log).expect("m counts on its console");
    let out = c.cli(&["vm", "migrate", "m", "--wait", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("{}", stderr(&out).lines().last().unwrap_or_default());
    let v = vm(&c, "m");
    let target = v["status"]["host"].as_str().unwrap().to_string();
    assert_ne!(target, source, "moved");
    let m = &v["status"]["migration"];
    assert_eq!(m["phase"], "Completed", "{v}");
    // The move is an event, by the platform, naming the target host.
    let events = c.ok(&["events", "--since", "10m", "--kind", "instances"]);
    let migrated = (events.as_array().unwrap().iter())
        .find(|e| e["action"] == "migrated" && e["target"] == v["metadata"]["id"]);
    assert!(
        migrated.is_some_and(|e| e["actor"] == "platform"
            && e["message"].as_str().is_some_and(|m| m.contains(&target))),
        "no migration event: {events}"
    );
    assert!(
        m["total_ms"].as_u64().is_some() && m["downtime_ms"].as_u64().is_some(),
        "{v}"
    );
    let new_log = eventually(
        "m Running on the target",
        Duration::from_secs(60),
        || async {
            let v = vm(&c, "m");
            (v["status"]["phase"] == "Running")
                .then(|| v["status"]["console_log"].as_str().map(str::to_string))
                .flatten()
        },
    )
    .await;
    assert_ne!(new_log, log, "the console is the target's");
    eventually(
        "m counting on after the move",
        Duration::from_secs(60),
        || async { last_tick(&new_log).filter(|n| *n > before).map(drop) },
    )
    .await;
    let text = std::fs::read_to_string(&new_log).unwrap();
    assert!(
        !text.contains("YUNHAN-READY"),
        "no reboot on the target: {text}"
    );
    assert!(
        lab.ping_within(&g, ip, Duration::from_secs(30)),
        "peer → m at its address after the move"
    );
    assert!(
        lab.ping_within(&outside, eip, Duration::from_secs(10)),
        "outside → m's elastic IP after the move"
    );
    let gap = pinger.longest_gap();
    eprintln!("elastic IP path during the live migration: longest gap {gap:?}");
    assert!(
        gap < Duration::from_secs(10),
        "elastic IP unreachable for {gap:?}"
    );
    eventually("exactly one copy", Duration::from_secs(60), || async {
        (qemus_of(&id).len() == 1).then_some(())
    })
    .await;
    hot_plugged_came_along(&c, &id, &plugged).await;
    eprintln!(
        "live migration: total {} ms, downtime {} ms",
        m["total_ms"], m["downtime_ms"]
    );

    // Maintenance: draining the target sends m back and keeps new VMs off it.
    let target_name = c.ok(&["host", "show", &target])["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    // m's elastic IP follows it: realised on the target now, the outside pings it
    // throughout the drain.
    eip_realised_on(&c, &target_name).await;
    let pinger = Pinger::start(&outside, eip);
    // A stopped VM booting from Ceph is on the target too: the drain moves it cold.
    c.ok(&words(
        "volume create root-s --image tiny --size 1GiB --pool migvols --bootable --wait",
    ));
    c.ok(&words(
        "vm create s --image tiny --flavor tiny --boot-volume root-s --stopped",
    ));
    let s_host = eventually("s stopped and bound", Duration::from_secs(30), || async {
        let v = vm(&c, "s");
        let host = v["status"]["host"].as_str().map(str::to_string);
        host.filter(|_| v["status"]["phase"] == "Stopped")
    })
    .await;
    if s_host != target {
        c.ok(&["vm", "migrate", "s", "--to", &target_name, "--wait"]);
    }
    // The stopped peer VM (a local disk) cannot move: the drain says so.
    let out = c.cli(&["host", "drain", &target_name]);
    // m is Running on the source again (the drain waited for that before trying p).
    let drained = std::time::Instant::now();
    assert!(!out.status.success(), "p stays");
    let said = stderr(&out);
    assert!(
        said.contains("still holds 1 VM(s)") && said.contains("p (") && said.contains("local copy"),
        "{said}"
    );
    let back = vm(&c, "m");
    assert_eq!(back["status"]["host"], source.as_str(), "drained back");
    let sv = vm(&c, "s");
    assert_eq!(
        sv["status"]["host"],
        source.as_str(),
        "s moved cold by the drain"
    );
    assert_eq!(sv["status"]["migration"]["cold"], true, "{sv}");
    assert_eq!(back["status"]["phase"], "Running", "{back}");
    assert!(
        lab.ping_within(&outside, eip, Duration::from_secs(5)),
        "outside → m's elastic IP within 5 s of the drain"
    );
    let answered = drained.elapsed();
    let gap = pinger.longest_gap();
    eip_realised_on(&c, &src_name).await;
    eprintln!(
        "elastic IP through the drain: answered {answered:?} after m ran on the source again, longest gap {gap:?}"
    );
    assert!(
        gap < Duration::from_secs(10),
        "elastic IP unreachable for {gap:?} during the drain"
    );
    assert_eq!(
        c.ok(&["host", "show", &target_name])["spec"]["schedulable"],
        false
    );
    refused(
        &["vm", "migrate", "m", "--to", &target_name, "--wait"],
        "no host can take it",
    );
    // The drain moved the hot-plugged devices back with it.
    hot_plugged_came_along(&c, &id, &plugged).await;
    c.ok(&["host", "uncordon", &target_name]);
    assert_eq!(
        c.ok(&["host", "show", &target_name])["spec"]["schedulable"],
        true
    );
    assert!(
        lab.ping_within(&g, ip, Duration::from_secs(30)),
        "peer → m after the drain"
    );

    // Post-copy needs userfaultfd for the target's QEMU, which runs unprivileged:
    // where the kernel allows that, m moves; elsewhere the request fails clearly
    // and m runs on where it was.
    let uffd = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .is_ok_and(|v| v.trim() == "1");
    let out = c.cli(&["vm", "migrate", "m", "--postcopy", "--wait"]);
    let now = vm(&c, "m");
    if uffd {
        assert!(out.status.success(), "{}", stderr(&out));
        assert_ne!(
            now["status"]["host"],
            source.as_str(),
            "moved with post-copy"
        );
    } else {
        assert!(!out.status.success(), "post-copy without userfaultfd");
        assert!(
            stderr(&out).contains("post-copy is not available on the target host"),
            "{}",
            stderr(&out)
        );
        assert_eq!(now["status"]["host"], source.as_str(), "stays");
        assert_eq!(now["status"]["phase"], "Running", "{now}");
    }
    eventually(
        "one copy after post-copy",
        Duration::from_secs(60),
        || async { (qemus_of(&id).len() == 1).then_some(()) },
    )
    .await;

    // Stopped, m moves cold: the binding moves at once; started, it runs on its new
    // host, reachable at its address, one copy.
    let was = vm(&c, "m")["status"]["host"].as_str().unwrap().to_string();
    c.ok(&["vm", "stop", "m", "--wait"]);
    let out = c.cli(&["vm", "migrate", "m", "--wait"]);
    assert!(out.status.success(), "cold move: {}", stderr(&out));
    let v = vm(&c, "m");
    assert_ne!(
        v["status"]["host"],
        was.as_str(),
        "moved while stopped: {v}"
    );
    assert_eq!(v["status"]["phase"], "Stopped", "{v}");
    assert_eq!(v["status"]["migration"]["cold"], true, "{v}");
    c.ok(&["vm", "start", "m", "--wait"]);
    assert!(
        lab.ping_within(&g, ip, Duration::from_secs(60)),
        "peer → m after the cold move"
    );
    assert_eq!(qemus_of(&id).len(), 1, "one copy after the cold move");

    rebalance_moves_m_off_a_crowded_host(&c, &id).await;
    drop(c);
    drop(lab);
}

/// `host rebalance --apply`: m's host made crowded (1 vCPU per CPU), the other roomy (16
/// per CPU); at a 30 % target the plan moves m there (and maybe the stopped s, cold) and
/// --apply makes the moves.
async fn rebalance_moves_m_off_a_crowded_host(c: &Cluster, id: &str) {
    let here = vm(c, "m")["status"]["host"].as_str().unwrap().to_string();
    let hosts = c.ok(&["host", "list"]);
    let name_of = |h: &Value| h["metadata"]["name"].as_str().unwrap().to_string();
    let (crowded, roomy): (Vec<&Value>, Vec<&Value>) =
        (hosts.as_array().unwrap().iter()).partition(|h| h["metadata"]["id"] == here.as_str());
    let (crowded, roomy) = (name_of(crowded[0]), name_of(roomy[0]));
    c.ok(&["host", "set", &crowded, "--cpu-overcommit", "1"]);
    c.ok(&["host", "set", &roomy, "--cpu-overcommit", "16"]);
    let m_move = eventually("a plan that moves m", Duration::from_secs(20), || async {
        let plan = c.ok(&["host", "rebalance", "--target", "30"]);
        let moves = plan["moves"].as_array().cloned().unwrap_or_default();
        moves.into_iter().find(|mv| mv["name"] == "m")
    })
    .await;
    assert_eq!(m_move["to_name"], roomy.as_str(), "{m_move}");
    let out = c.cli(&["host", "rebalance", "--target", "30", "--apply"]);
    assert!(out.status.success(), "rebalance --apply: {}", stderr(&out));
    let v = vm(c, "m");
    assert_ne!(v["status"]["host"], here.as_str(), "m moved: {v}");
    assert_eq!(v["status"]["phase"], "Running", "{v}");
    eventually(
        "one copy after the rebalance",
        Duration::from_secs(60),
        || async { (qemus_of(id).len() == 1).then_some(()) },
    )
    .await;
    for h in [&crowded, &roomy] {
        c.ok(&["host", "set", h, "--cpu-overcommit", "cluster"]);
    }
}

/// The data volumes d1 and d2 and the NIC n2, hot-plugged into running m: each volume
/// gets a marker from inside the guest, n2 shows up in the guest.
async fn hot_plug(c: &Cluster, id: &str) -> Plugged {
    let mut disks = Vec::new();
    for (name, marker) in [("d1", "MIGRATED-DATA"), ("d2", "SECOND-DISK-2")] {
        let v = c.ok(&[
            "volume", "create", name, "--size", "1GiB", "--pool", "migvols", "--wait",
        ]);
        c.ok(&["volume", "attach", name, "--vm", "m", "--wait"]);
        disks.push((
            name,
            v["metadata"]["id"].as_str().unwrap().to_string(),
            marker,
        ));
    }
    let n2 = c.ok(&words("nic create n2 --subnet s1 --vm m"));
    let mac = n2["status"]["mac"].as_str().unwrap().to_string();
    let mut sh = c.shell(id).await;
    for (_, vol, marker) in &disks {
        let dev = device_of(&mut sh, vol).await;
        write_pattern(&mut sh, &dev, marker).await;
    }
    guest_has_mac(&mut sh, &mac).await;
    Plugged { disks, mac }
}

/// Two data volumes (name, id, the marker written on each) and a NIC's MAC,
/// hot-plugged into m.
struct Plugged {
    disks: Vec<(&'static str, String, &'static str)>,
    mac: String,
}

/// After the move, the guest still has both volumes with their markers (read past
/// the page cache: from the RBD images through the target's QEMU) and n2.
async fn hot_plugged_came_along(c: &Cluster, id: &str, p: &Plugged) {
    for (name, _, _) in &p.disks {
        eventually(
            &format!("{name} InUse by m"),
            Duration::from_secs(60),
            || async {
                let v = c.ok(&["volume", "show", name]);
                (v["status"]["phase"] == "InUse" && v["status"]["attached_to"] == id).then_some(())
            },
        )
        .await;
    }
    let mut sh = c.shell(id).await;
    sh.run("sync; echo 3 > /proc/sys/vm/drop_caches").await;
    for (_, vol, marker) in &p.disks {
        let dev = device_of(&mut sh, vol).await;
        assert_eq!(read_pattern(&mut sh, &dev, marker.len()).await, *marker);
    }
    guest_has_mac(&mut sh, &p.mac).await;
}

/// Waits (60 s) until one of the guest's interfaces has `mac`.
async fn guest_has_mac(sh: &mut common::GuestShell, mac: &str) {
    for _ in 0..120 {
        let out = sh.run("cat /sys/class/net/*/address").await;
        if out.lines().any(|l| l.trim() == mac) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no interface with MAC {mac} in the guest");
}

/// Waits (10 s) until `eip show m-ip` names `host` (a host name) as the one realising it.
async fn eip_realised_on(c: &Cluster, host: &str) {
    let shown = eventually(
        &format!("m-ip realised on {host}"),
        Duration::from_secs(10),
        || {
            let e = c.show("eip", "m-ip");
            async move { (e["status"]["host"] == host).then_some(e) }
        },
    )
    .await;
    assert_eq!(shown["status"]["phase"], "Ready", "{shown}");
}

/// `ping -i 0.1` from a namespace, in the background: the longest run of lost replies.
struct Pinger {
    child: Option<std::process::Child>,
}

impl Pinger {
    fn start(ns: &str, addr: Ipv4Addr) -> Pinger {
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-i", "0.1", "-W", "1"])
            .arg(addr.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ping");
        Pinger { child: Some(child) }
    }

    /// Stops it; the longest time between two consecutive answered pings.
    fn longest_gap(mut self) -> Duration {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let out = child.wait_with_output().expect("ping output");
        // Duplicates (DUP!) and late replies come out of order: the set of answered seqs.
        let seqs: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("icmp_seq=").nth(1)?.split(' ').next()?.parse().ok())
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .collect();
        let most = seqs.windows(2).map(|w| w[1] - w[0]).max();
        Duration::from_millis(most.map_or(u64::MAX, |n| n.saturating_mul(100)))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
