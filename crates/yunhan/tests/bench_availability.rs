//! Availability benchmarks (run by `bench/availability.sh`, not by the test
//! suite: `#[ignore]`): real binary, real etcd, real Ceph, TCG guests booting
//! from RBD clones of the test guest (flavor tiny: 256 MiB, 1 vCPU).
//! - live migration: total time and downtime, p50/p99 over ROUNDS back-and-forth
//!   moves of an idle guest, of the same guest with two hot-plugged Ceph data
//!   volumes, then of it rewriting 64 MiB of random data in a loop (memory-busy);
//!   and the wall-clock time of a cold move of the stopped guest;
//! - HA: host loss (agent SIGSTOPped) → VM Running elsewhere, and → the guest's
//!   next boot marker, p50/p95 over ROUNDS failovers, with the default timing
//!   settings (lease TTL 2 s in these agents, grace 3 s).

mod common;

use std::time::{Duration, Instant};

use common::{
    bootable_root_args, disk_image_args, eventually, guest_runs, pct, qemus_of, rounds, signal,
    stdout, strs, tiny_vm, CephCloud, Cluster,
};
use serde_json::Value;

/// A cluster of `agents` hosts on etcd with a Ceph pool, and VM `name` booted
/// from an RBD clone (with `--ha` when asked).
async fn cloud_with_vm(agents: usize, ha: bool) -> CephCloud {
    let c = CephCloud::start("benchvols", &vec![vec![]; agents], &[]).await;
    c.ok(&strs(&disk_image_args("tiny")));
    c.ok(&bootable_root_args("root", "benchvols"));
    let mut args = tiny_vm(
        "b",
        &["--boot-volume", "root", "--wait", "--timeout", "180s"],
    );
    if ha {
        args.push("--ha");
    }
    c.ok(&args);
    booted(&c, 1).await;
    c
}

fn vm(c: &Cluster) -> Value {
    c.ok(&["vm", "show", "b"])
}

/// The guest's console shows boot number `n` of its root disk.
async fn booted(c: &Cluster, n: u32) {
    let marker = format!("YUNHAN-BOOT count={n}");
    eventually(&marker, Duration::from_secs(240), || async {
        stdout(&c.cli(&["vm", "log", "b"]))
            .contains(&marker)
            .then_some(())
    })
    .await;
}

/// ROUNDS migrations back and forth; (total ms, downtime ms) of each.
fn migrate_rounds(c: &Cluster) -> (Vec<f64>, Vec<f64>) {
    let (mut total, mut down) = (vec![], vec![]);
    for _ in 0..rounds(10) {
        let out = c.cli(&["vm", "migrate", "b", "--wait"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let m = vm(c)["status"]["migration"].clone();
        total.push(m["total_ms"].as_f64().unwrap());
        down.push(m["downtime_ms"].as_f64().unwrap());
    }
    (total, down)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/availability.sh"]
async fn bench_live_migration_idle_and_busy() {
    let c = cloud_with_vm(2, false).await;
    let (mut t, mut d) = migrate_rounds(&c);
    println!(
        "live migration, idle 256 MiB guest ({} runs): total p50 {:.0} ms p99 {:.0} ms; downtime p50 {:.0} ms p99 {:.0} ms",
        t.len(), pct(&mut t, 0.5), pct(&mut t, 0.99), pct(&mut d, 0.5), pct(&mut d, 0.99)
    );
    // The same guest with two hot-plugged Ceph data volumes (the target starts with them).
    for v in ["d1", "d2"] {
        c.ok(&[
            "volume",
            "create",
            v,
            "--size",
            "1GiB",
            "--pool",
            "benchvols",
            "--wait",
        ]);
        c.ok(&["volume", "attach", v, "--vm", "b", "--wait"]);
    }
    let (mut t, mut d) = migrate_rounds(&c);
    println!(
        "live migration, idle 256 MiB guest with two hot-plugged data volumes ({} runs): total p50 {:.0} ms p99 {:.0} ms; downtime p50 {:.0} ms p99 {:.0} ms",
        t.len(), pct(&mut t, 0.5), pct(&mut t, 0.99), pct(&mut d, 0.5), pct(&mut d, 0.99)
    );
    // Memory-busy: 64 MiB of random data copied over itself in a loop.
    let busy = "head -c 67108864 /dev/urandom > /dev/shm/a && \
                (while :; do cp /dev/shm/a /dev/shm/b; done) >/dev/null 2>&1 & echo BUSY-$((40+2))";
    guest_runs(&vm(&c), busy, "BUSY-42", Duration::from_secs(120)).await;
    let (mut t, mut d) = migrate_rounds(&c);
    println!(
        "live migration, memory-busy 256 MiB guest with the two volumes ({} runs): total p50 {:.0} ms p99 {:.0} ms; downtime p50 {:.0} ms p99 {:.0} ms",
        t.len(), pct(&mut t, 0.5), pct(&mut t, 0.99), pct(&mut d, 0.5), pct(&mut d, 0.99)
    );
    // Stopped, it moves cold: `vm migrate --wait` from the command to the binding moved.
    c.ok(&["vm", "stop", "b", "--wait"]);
    let mut cold: Vec<f64> = (0..rounds(10))
        .map(|_| {
            let t0 = Instant::now();
            let out = c.cli(&["vm", "migrate", "b", "--wait"]);
            assert!(out.status.success(), "{}", common::stderr(&out));
            t0.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    println!(
        "cold move of the stopped guest ({} runs, the CLI's wall clock): p50 {:.0} ms p99 {:.0} ms",
        cold.len(),
        pct(&mut cold, 0.5),
        pct(&mut cold, 0.99)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/availability.sh"]
async fn bench_ha_failover() {
    let c = cloud_with_vm(3, true).await;
    let id = vm(&c)["metadata"]["id"].as_str().unwrap().to_string();
    let (mut to_running, mut to_booted) = (vec![], vec![]);
    for round in 0..rounds(10) {
        let lost = vm(&c)["status"]["host"].as_str().unwrap().to_string();
        let old = qemus_of(&id);
        let agent = c.agents[c.agent_of(&lost)].pid();
        let t0 = Instant::now();
        signal(agent, "-STOP");
        eventually("Running elsewhere", Duration::from_secs(120), || async {
            let v = vm(&c);
            (v["status"]["phase"] == "Running" && v["status"]["host"] != lost.as_str())
                .then_some(())
        })
        .await;
        to_running.push(t0.elapsed().as_secs_f64());
        booted(&c, round as u32 + 2).await;
        to_booted.push(t0.elapsed().as_secs_f64());
        signal(agent, "-CONT");
        eventually("the stale copy gone", Duration::from_secs(60), || async {
            qemus_of(&id).iter().all(|p| !old.contains(p)).then_some(())
        })
        .await;
        // The resumed host is Ready again before the next round.
        eventually("the host back", Duration::from_secs(60), || async {
            (c.ok(&["host", "show", &lost])["status"]["phase"] == "Ready").then_some(())
        })
        .await;
    }
    println!(
        "HA failover ({} runs, lease TTL 2 s, grace 3 s): host lost → Running elsewhere p50 {:.1} s p95 {:.1} s; → guest booted p50 {:.1} s p95 {:.1} s",
        to_running.len(),
        pct(&mut to_running, 0.5),
        pct(&mut to_running, 0.95),
        pct(&mut to_booted, 0.5),
        pct(&mut to_booted, 0.95)
    );
}
