//! Monitoring benchmarks (run by `bench/monitoring.sh`, not by the test suite: `#[ignore]`;
//! issue #17): `yunhan up` on one box, the test guest imported, VMS TCG test guests.
//! - Collection cost: the CPU time (utime + stime, `/proc/<pid>/stat`) of the `yunhan up`
//!   process over K collection intervals (10 s each, on wall-clock multiples of 10 s),
//!   first with no VM (the baseline: the control plane and the host's own collection),
//!   then with VMS running guests; the difference per VM per interval is what a VM
//!   costs the process, an upper bound of its collection cost (the agent does other
//!   per-VM work too). Each interval is also split into the 4 s around its collection
//!   and the 6 s between, to show where the difference lands: what the 4 s take above
//!   the rate of the 6 s is the estimate of the collection itself.
//! - Query time: p50/p99 of `GET /v1/instances/{id}/metrics?series=cpu` with
//!   `since=31d` and `since=10m` (API → the host's agent over HTTP → its history).
//! - The history's size: `<data dir>/agent/metrics.redb` on disk, and its series.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::onebox::{ready_guest, OneBox};
use common::{disk_image_args, net1_with_s1, pct, strs, tiny_vm, Cloud};
use serde_json::Value;

/// Seconds between collections (the agent's `metrics::INTERVAL`).
const INTERVAL: f64 = 10.0;
/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ).
const HZ: f64 = 100.0;

fn env_or(name: &str, default: u64) -> u64 {
    (std::env::var(name).ok().and_then(|v| v.parse().ok())).unwrap_or(default)
}

/// utime + stime of process `pid` (all its threads, living or exited), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after `(comm)`: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn sleep_until_unix(t: f64) {
    let wait = t - unix_now();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

/// What [`measure`] saw of `yunhan up`'s CPU, in ticks.
struct Cpu {
    /// Over the K whole intervals.
    total: u64,
    /// In the 4 s around each collection (1 s before its due time to 3 s after).
    around: u64,
    /// The total of each interval.
    per_interval: Vec<u64>,
}

/// `pid`'s CPU over `k` intervals starting 5 s after a 10 s boundary, so that each
/// interval holds exactly one collection (due at its middle).
async fn measure(pid: u32, k: u64) -> Cpu {
    let start = (unix_now() / INTERVAL).ceil() * INTERVAL + 5.0;
    sleep_until_unix(start).await;
    let first = cpu_ticks(pid);
    let (mut around, mut per_interval, mut last) = (0, Vec::new(), first);
    for i in 0..k {
        let due = start + 5.0 + INTERVAL * i as f64;
        sleep_until_unix(due - 1.0).await;
        let before = cpu_ticks(pid);
        sleep_until_unix(due + 3.0).await;
        around += cpu_ticks(pid) - before;
        sleep_until_unix(due + 5.0).await;
        let end = cpu_ticks(pid);
        per_interval.push(end - last);
        last = end;
    }
    Cpu {
        total: last - first,
        around,
        per_interval,
    }
}

fn ms(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / HZ
}

fn show(what: &str, c: &Cpu, k: u64) {
    let min = c.per_interval.iter().min().copied().unwrap_or_default();
    let max = c.per_interval.iter().max().copied().unwrap_or_default();
    println!(
        "{what}: {:.0} ms CPU over {k} intervals ({:.1} ms/interval, {:.2} % of one core; \
         per interval {:.0}–{:.0} ms); {:.0} ms in the 4 s around the collections, {:.0} ms in \
         the 6 s between",
        ms(c.total),
        ms(c.total) / k as f64,
        ms(c.total) / (k as f64 * INTERVAL * 1000.0) * 100.0,
        ms(min),
        ms(max),
        ms(c.around),
        ms(c.total - c.around),
    );
}

/// p50/p99 (ms) of `n` sequential `GET path`, each answered 200 with a non-empty `cpu`
/// series; and the last answer.
async fn query_times(cloud: &Cloud, path: &str, n: usize) -> (f64, f64, Value) {
    let (mut times, mut last) = (Vec::new(), Value::Null);
    let (s, _) = cloud.admin("GET", path, None).await; // warm-up
    assert_eq!(s, 200, "{path}");
    for _ in 0..n {
        let t0 = Instant::now();
        let (s, answer) = cloud.admin("GET", path, None).await;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(s, 200, "{path}: {answer}");
        last = answer;
    }
    let series = last["series"].as_array().cloned().unwrap_or_default();
    assert!(
        series.iter().any(|s| s["name"] == "cpu_percent"),
        "{path}: {last}"
    );
    (pct(&mut times, 0.5), pct(&mut times, 0.99), last)
}

fn points(answer: &Value, name: &str) -> usize {
    let series = answer["series"].as_array().cloned().unwrap_or_default();
    (series.iter().find(|s| s["name"] == name))
        .and_then(|s| s["points"].as_array().map(Vec::len))
        .unwrap_or_default()
}

fn series_count(answer: &Value) -> usize {
    answer["series"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/monitoring.sh"]
async fn bench_monitoring_collection_cost_and_query_time() {
    let (vms, k) = (env_or("VMS", 3), env_or("INTERVALS", 6));
    let queries = env_or("QUERIES", 50) as usize;
    // The VPC is realised in a namespace of the bench's own (removed when it ends).
    let onebox = OneBox::new();
    let mut cloud = Cloud::up(&["--netns", &onebox.host, "--cpu-overcommit", "8"]).await;
    let pid = cloud.child.as_ref().unwrap().id();
    cloud.ok(&strs(&disk_image_args("tiny")));
    net1_with_s1(&cloud);
    println!(
        "yunhan up (pid {pid}), {k} collection intervals of {INTERVAL} s each, {} CPUs, \
         load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    // 1. The baseline: no VM.
    let base = measure(pid, k).await;
    show("no VM (baseline)", &base, k);

    // 2. VMS running guests.
    let names: Vec<String> = (1..=vms).map(|i| format!("m{i}")).collect();
    for name in &names {
        cloud.ok(&tiny_vm(
            name,
            &["--subnet", "s1", "--wait", "--timeout", "240s"],
        ));
    }
    let mut ids = Vec::new();
    for name in &names {
        let vm = ready_guest(&cloud, name).await;
        ids.push(vm["metadata"]["id"].as_str().unwrap().to_string());
    }
    // Two collections with every VM, so each has its previous reading (rates).
    sleep_until_unix((unix_now() / INTERVAL).ceil() * INTERVAL + INTERVAL + 1.0).await;
    println!(
        "{vms} guests ready (TCG), load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let with = measure(pid, k).await;
    show(&format!("{vms} VMs"), &with, k);
    let per_vm = |with: u64, base: u64| (ms(with) - ms(base)) / (vms * k) as f64;
    let total = per_vm(with.total, base.total);
    // What the 4 s around the collections took above the rate of the 6 s between.
    let excess = |c: &Cpu| ms(c.around) - ms(c.total - c.around) * 4.0 / 6.0;
    println!(
        "per VM per interval: {total:.2} ms of CPU ({:.3} % of one core per VM); \
         in the 4 s around the collections: {:.2} ms; above the rate between them: {:.2} ms",
        total / (INTERVAL * 1000.0) * 100.0,
        per_vm(with.around, base.around),
        (excess(&with) - excess(&base)) / (vms * k) as f64
    );

    // 3. Query time (the VMs still running).
    let id = &ids[0];
    for since in ["31d", "10m"] {
        let path = format!("/v1/instances/{id}/metrics?since={since}&series=cpu");
        let (p50, p99, answer) = query_times(&cloud, &path, queries).await;
        println!(
            "GET …/metrics?since={since}&series=cpu: p50 {p50:.1} ms, p99 {p99:.1} ms \
             (n={queries}; step {} s, {} cpu_percent points)",
            answer["step"],
            points(&answer, "cpu_percent")
        );
    }

    // 4. The history: its series and its file.
    let mut series = 0;
    for name in &names {
        series += series_count(&cloud.ok(&["vm", "metrics", name, "--since", "10m"]));
    }
    let vm = cloud.ok(&["vm", "show", &names[0]]);
    let host = vm["status"]["host"].as_str().unwrap().to_string();
    let host_series = series_count(&cloud.ok(&["host", "metrics", &host, "--since", "10m"]));
    let file = cloud.home.path().join("data/agent/metrics.redb");
    let size = |what: &str| {
        let m = std::fs::metadata(&file).unwrap();
        println!(
            "{what}: {} bytes ({:.1} MiB), {:.1} MiB allocated",
            m.len(),
            m.len() as f64 / 1048576.0,
            (m.blocks() * 512) as f64 / 1048576.0
        );
    };
    println!(
        "series: {series} of {vms} VMs ({:.0} each) + {host_series} of the host and its pools",
        series as f64 / vms as f64
    );
    size("metrics.redb while running");
    cloud.stop(); // SIGTERM: the agent writes the history back.
    size("metrics.redb after a clean stop");
}
