//! Store benchmark driver (run through `bench/store.sh`): CAS creates
//! (`StoreExt::create`) of ~500-byte JSON documents, then gets of the same
//! keys, from `--clients` concurrent tasks sharing one store handle, against
//! the embedded store (temp dir) and a 3-member etcd on loopback started here.
//!
//! Usage: store_bench [--count N] [--clients C] [--members M] [--only embedded|etcd]
use std::sync::Arc;
use std::time::{Duration, Instant};

use yunhan_store::{EmbeddedStore, Store, StoreExt};
use yunhan_testkit::EtcdCluster;

struct Args {
    count: usize,
    clients: usize,
    members: usize,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        count: 20_000,
        clients: 64,
        members: 3,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--count" => a.count = val().parse().expect("--count N"),
            "--clients" => a.clients = val().parse().expect("--clients C"),
            "--members" => a.members = val().parse().expect("--members M"),
            "--only" => a.only = Some(val()),
            other => panic!(
                "unknown argument {other}; usage: store_bench [--count N] [--clients C] \
                 [--members M] [--only embedded|etcd]"
            ),
        }
    }
    a
}

/// A ~500-byte resource document, shaped like the API's objects.
fn doc(i: usize) -> Vec<u8> {
    let mut v = serde_json::json!({
        "kind": "instance",
        "metadata": {
            "id": format!("ins-{i:012x}"),
            "name": format!("bench-{i:08}"),
            "project": "prj-0000000000bench",
            "labels": {"tier": "bench", "owner": "store-bench"},
            "created_at": "2025-01-01T00:00:00Z",
            "revision": 0
        },
        "spec": {
            "cpus": 2, "memory_mib": 2048, "image": "img-debian-12",
            "network": "net-0000000000bench", "disk_gib": 20,
            "description": ""
        },
        "status": {"state": "pending", "node": null}
    });
    let len = serde_json::to_vec(&v).unwrap().len();
    v["spec"]["description"] = "x".repeat(500usize.saturating_sub(len)).into();
    serde_json::to_vec(&v).unwrap()
}

struct Stats {
    ops: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op(i)` for i in 0..count from `clients` tasks; latency per op.
async fn run<F, Fut>(count: usize, clients: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (all, elapsed) = yunhan_testkit::closed_loop(count, clients, op).await;
    let pct = |p: usize| all[(all.len() * p / 100).min(all.len() - 1)];
    Stats {
        ops: all.len(),
        elapsed,
        p50: pct(50),
        p99: pct(99),
        max: *all.last().unwrap(),
    }
}

async fn bench(store: Arc<dyn Store>, a: &Args) -> (Stats, Stats) {
    let run_id = std::process::id();
    let key = move |i: usize| format!("/bench/{run_id}/instances/{i:08}");
    // Warm up connections and caches (not measured, other keys).
    for i in 0..200 {
        store
            .put(&format!("/bench/{run_id}/warmup/{i}"), doc(i))
            .await
            .expect("warm-up put");
    }
    let s = store.clone();
    let create = run(a.count, a.clients, move |i| {
        let s = s.clone();
        let k = key(i);
        async move {
            assert!(s.create(&k, doc(i)).await.expect("create"), "{k} existed");
        }
    })
    .await;
    let s = store.clone();
    let get = run(a.count, a.clients, move |i| {
        let s = s.clone();
        let k = key(i);
        async move {
            assert!(s.get(&k).await.expect("get").is_some(), "{k} missing");
        }
    })
    .await;
    (create, get)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn row(backend: &str, op: &str, s: &Stats, clients: usize) {
    println!(
        "| {backend:<18} | {op:<6} | {:>6} | {clients:>7} | {:>8.0} | {:>6} | {:>6} | {:>7} |",
        s.ops,
        s.rate(),
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
}

#[tokio::main]
async fn main() {
    let a = parse_args();
    let want = |name: &str| a.only.as_deref().is_none_or(|o| o == name);
    println!(
        "store benchmark: {} CAS creates of {}-byte JSON docs, then {} gets, {} concurrent clients, {} cores",
        a.count,
        doc(0).len(),
        a.count,
        a.clients,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();

    if want("embedded") {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        let r = bench(store.clone(), &a).await;
        drop(store);
        results.push(("embedded".to_string(), r));
    }
    if want("etcd") {
        let t = Instant::now();
        let cluster = EtcdCluster::start(a.members);
        eprintln!(
            "etcd: {} member(s) healthy in {:?} ({})",
            a.members,
            t.elapsed(),
            cluster.store_url()
        );
        let store = yunhan_store::open(&cluster.store_url())
            .await
            .expect("connect to etcd");
        let r = bench(store, &a).await;
        results.push((format!("etcd ({} members)", a.members), r));
    }

    println!();
    println!(
        "| backend            | op     |  count | clients |    ops/s | p50 ms | p99 ms |  max ms |"
    );
    println!(
        "|--------------------|--------|-------:|--------:|---------:|-------:|-------:|--------:|"
    );
    for (name, (create, get)) in &results {
        row(name, "create", create, a.clients);
        row(name, "get", get, a.clients);
    }
    if let [(_, (ec, eg)), (_, (xc, xg))] = results.as_slice() {
        println!();
        println!(
            "embedded/etcd throughput ratio: create {:.1}x, get {:.1}x",
            ec.rate() / xc.rate(),
            eg.rate() / xg.rate()
        );
    }
    if let Some((_, (c, _))) = results.iter().find(|(n, _)| n == "embedded") {
        let ok = c.rate() >= 5000.0 && c.p99 < Duration::from_millis(10);
        println!(
            "aim (embedded ≥ 5000 creates/s, p99 < 10 ms): {}",
            if ok { "met" } else { "MISSED" }
        );
    }
}
