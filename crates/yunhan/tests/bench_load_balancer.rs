//! Load-balancer benchmarks (run by `bench/load-balancer.sh`, not by the test suite:
//! `#[ignore]`): `yunhan up --netns` on one box with its default external network, two TCG
//! test guests serving HTTP with busybox httpd (the same setup as `e2e_load_balancer`).
//! - HTTP requests/s through the layer-7 path (host → elastic IP → HAProxy → both guests,
//!   a new connection per request, CLIENTS at once for SECS seconds) and, as the baseline
//!   of the same run, straight from the VPC's router namespace to the two guests in turn;
//! - the same over two layer-4 listeners of the same members: one served by Vortex (tc
//!   marks, the namespace's NAT forwards), one by HAProxy `mode tcp` (least connections
//!   sends it there), with the machine's CPU time per request (all of it, guests
//!   included: the difference between the two is what the load balancer costs);
//! - `lb member add` → the first request served by the new member (p50/p99 over ROUNDS:
//!   the member is removed again and gone from the answers before the next round).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::onebox::{
    http_get, ready_guest, running_vm, serve_http, vpc_with_open_group, within, OneBox, PUBLIC_CIDR,
};
use common::{pct, rounds, words, Cloud};

fn env_or(name: &str, default: u64) -> u64 {
    (std::env::var(name).ok().and_then(|v| v.parse().ok())).unwrap_or(default)
}

/// The machine's busy CPU time so far, in clock ticks (`/proc/stat`: all but idle and
/// iowait).
fn busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = (stat.lines().next().unwrap().split_whitespace().skip(1))
        .map(|v| v.parse().unwrap())
        .collect();
    cpu.iter().sum::<u64>() - cpu[3] - cpu[4]
}

/// What one [`load`] measured.
struct Load {
    per_sec: f64,
    failed: u64,
    /// Busy CPU (ms, all CPUs) per request served.
    cpu_ms: f64,
}

/// Requests/s answered by `targets` (taken in turn) from `clients` threads in `ns`, each
/// sending `GET /` on a new connection for `secs` seconds; how many failed; the CPU.
fn load(ns: &str, targets: &[String], port: u16, clients: u64, secs: u64) -> Load {
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + Duration::from_secs(secs);
    let ticks0 = busy_ticks();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (ns, targets) = (ns.to_string(), targets.to_vec());
            let (served, failed) = (served.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut i = c as usize;
                while Instant::now() < until {
                    let answer = http_get(&ns, &targets[i % targets.len()], port);
                    let counter = if answer.contains(" 200 ") {
                        &served
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    let ticks = busy_ticks() - ticks0;
    let n = served.load(Ordering::Relaxed) as f64;
    Load {
        per_sec: n / secs as f64,
        failed: failed.load(Ordering::Relaxed),
        cpu_ms: ticks as f64 * 1000.0 / 100.0 / n.max(1.0), // USER_HZ = 100
    }
}

fn show(what: &str, l: &Load, base: &Load) {
    println!(
        "{what}: {:.0} req/s ({} failed), {:.2} ms CPU/request: {:.2}× the baseline's rate",
        l.per_sec,
        l.failed,
        l.cpu_ms,
        l.per_sec / base.per_sec
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/load-balancer.sh"]
async fn bench_load_balancer() {
    let onebox = OneBox::new();
    let cloud = Cloud::up(&["--netns", &onebox.host, "--public-cidr", PUBLIC_CIDR]).await;
    let ok = |line: &str| cloud.ok(&words(line));
    vpc_with_open_group(&cloud, &[("icmp", None), ("tcp", Some("80"))]);
    let mut private = Vec::new();
    for vm in ["w1", "w2"] {
        running_vm(&cloud, vm, &["--security-group", "open"]);
    }
    for vm in ["w1", "w2"] {
        serve_http(&ready_guest(&cloud, vm).await, vm, 1).await;
        let nic = ok(&format!("nic show {vm}-nic0"));
        private.push(nic["status"]["ip"].as_str().unwrap().to_string());
    }
    ok("lb create lb1 --subnet s1 --external --wait");
    ok("lb listener add lb1 --name http --protocol http --port 80");
    ok("lb member add lb1 --listener http --vm w1 --port 80");
    ok("lb member add lb1 --listener http --vm w2 --port 80");
    let eip: String = ok("lb show lb1")["status"]["external_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        within(Duration::from_secs(30), || onebox
            .routed_by_the_platform(&eip))
        .is_some(),
        "{eip} is not routed to the platform: {}",
        onebox.diagnose(&eip)
    );
    let served = within(Duration::from_secs(60), || {
        http_get(&onebox.host, &eip, 80).contains("w")
    });
    served.expect("the load balancer answers");

    let (clients, secs) = (env_or("CLIENTS", 8), env_or("SECS", 10));
    let router = format!("{}-ynr-000001", onebox.host);
    ok("lb listener add lb1 --name vortex --protocol tcp --port 8200");
    ok("lb listener add lb1 --name haproxy --protocol tcp --port 8201 --algorithm least-connections");
    for (l, vm) in [
        ("vortex", "w1"),
        ("vortex", "w2"),
        ("haproxy", "w1"),
        ("haproxy", "w2"),
    ] {
        ok(&format!(
            "lb member add lb1 --listener {l} --vm {vm} --port 80"
        ));
    }
    for port in [8200, 8201] {
        let up = within(Duration::from_secs(30), || {
            http_get(&onebox.host, &eip, port).contains("w")
        });
        up.unwrap_or_else(|| panic!("listener {port} answers"));
    }
    let engines: Vec<String> = (ok("lb show lb1")["status"]["listeners"].as_array().unwrap())
        .iter()
        .map(|l| format!("{}={}", l["name"], l["engine"]))
        .collect();
    println!("engines: {}", engines.join(" "));
    println!("GET / on a new connection each, {clients} clients, {secs} s each:");
    let eips = std::slice::from_ref(&eip);
    let base = load(&router, &private, 80, clients, secs);
    show(
        "  straight to the guests from the VPC's router (baseline)",
        &base,
        &base,
    );
    let l7 = load(&onebox.host, eips, 80, clients, secs);
    show(
        "  elastic IP → HTTP listener (HAProxy, layer 7)",
        &l7,
        &base,
    );
    let vortex = load(&onebox.host, eips, 8200, clients, secs);
    show(
        "  elastic IP → TCP listener on Vortex (tc + NAT)",
        &vortex,
        &base,
    );
    let haproxy = load(&onebox.host, eips, 8201, clients, secs);
    show(
        "  elastic IP → TCP listener on HAProxy (mode tcp)",
        &haproxy,
        &base,
    );
    println!(
        "Vortex / HAProxy layer 4: {:.2}× the requests/s, {:.2}× the CPU per request",
        vortex.per_sec / haproxy.per_sec,
        vortex.cpu_ms / haproxy.cpu_ms
    );

    // lb member add → the first request the new member serves.
    ok("lb listener add lb1 --name probe --protocol http --port 8100");
    ok("lb member add lb1 --listener probe --vm w1 --port 80");
    within(Duration::from_secs(30), || {
        http_get(&onebox.host, &eip, 8100).contains("w1")
    })
    .expect("the probe listener answers");
    let mut added = Vec::new();
    for _ in 0..rounds(10) {
        let t0 = Instant::now();
        ok("lb member add lb1 --listener probe --vm w2 --port 80");
        let first = within(Duration::from_secs(30), || {
            http_get(&onebox.host, &eip, 8100).contains("w2")
        });
        first.expect("the new member served");
        added.push(t0.elapsed().as_secs_f64() * 1000.0);
        ok("lb member remove lb1 --listener probe --vm w2");
        let gone = within(Duration::from_secs(30), || {
            (0..6).all(|_| http_get(&onebox.host, &eip, 8100).contains("w1"))
        });
        gone.expect("the removed member is gone");
    }
    let n = added.len();
    println!(
        "lb member add → first request served by it: p50 {:.0} ms, p99 {:.0} ms (n={n})",
        pct(&mut added, 0.5),
        pct(&mut added, 0.99)
    );
}
