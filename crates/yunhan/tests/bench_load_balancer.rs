//! Load-balancer benchmarks (run by `bench/load-balancer.sh`, not by the test suite:
//! `#[ignore]`): `yunhan up --netns` on one box with its default external network, two TCG
//! test guests serving HTTP with busybox httpd (the same setup as `e2e_load_balancer`).
//! - HTTP requests/s through the layer-7 path (host → elastic IP → HAProxy → both guests,
//!   a new connection per request, CLIENTS at once for SECS seconds) and, as the baseline
//!   of the same run, straight from the VPC's router namespace to the two guests in turn;
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

/// Requests/s answered by `targets` (taken in turn) from `clients` threads in `ns`, each
/// sending `GET /` on a new connection for `secs` seconds; and how many failed.
fn load(ns: &str, targets: &[String], port: u16, clients: u64, secs: u64) -> (f64, u64) {
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + Duration::from_secs(secs);
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
    let n = served.load(Ordering::Relaxed) as f64;
    (n / secs as f64, failed.load(Ordering::Relaxed))
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
    let eip = ok("lb show lb1")["status"]["external_address"]
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
    let (direct, direct_failed) = load(&router, &private, 80, clients, secs);
    let (through, lb_failed) = load(&onebox.host, std::slice::from_ref(&eip), 80, clients, secs);
    println!(
        "HTTP GET, new connection each, {clients} clients, {secs} s: straight to the guests \
         {direct:.0} req/s ({direct_failed} failed), through the load balancer's elastic IP \
         {through:.0} req/s ({lb_failed} failed): {:.2}× the baseline",
        through / direct
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
