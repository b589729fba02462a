//! API benchmark: create + get of volumes through the REST API, N concurrent
//! clients, against `yunhan up` (embedded store) and `yunhan server` on a
//! 3-member etcd cluster, in the same run. Prints ops/s, p50/p99 and ratios.
//!
//!   cargo run --release -p yunhan --example api_bench -- [COUNT] [CLIENTS]

use serde_json::json;

mod common;
use common::{pct, start, Server};

/// Runs `count` operations from `clients` tasks; returns (ops/s, p50 ms, p99 ms).
async fn run<F, Fut>(count: usize, clients: usize, op: F) -> (f64, f64, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (all, elapsed) = yunhan_testkit::closed_loop(count, clients, op).await;
    let rate = count as f64 / elapsed.as_secs_f64();
    (rate, pct(&all, 0.5), pct(&all, 0.99))
}

async fn bench(name: &str, s: &Server, count: usize, clients: usize) -> [(f64, f64, f64); 2] {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    // One untimed request so the token is verified (argon2) and cached.
    http.get(format!("{}/v1/whoami", s.endpoint))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let (h, e, t) = (http.clone(), s.endpoint.clone(), s.token.clone());
    let create = run(count, clients, move |i| {
        let (h, e, t) = (h.clone(), e.clone(), t.clone());
        async move {
            let body = json!({"metadata": {"name": format!("v{i}"), "labels": {"bench": "api"}}, "spec": {"size_bytes": 1073741824u64}});
            let r = h.post(format!("{e}/v1/volumes")).bearer_auth(&t).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        }
    })
    .await;
    let (h, e, t) = (http.clone(), s.endpoint.clone(), s.token.clone());
    let get = run(count, clients, move |i| {
        let (h, e, t) = (h.clone(), e.clone(), t.clone());
        async move {
            let r = h
                .get(format!("{e}/v1/volumes/v{i}"))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    })
    .await;
    println!("{name:<22} create {:>8.0}/s p50 {:>6.2} ms p99 {:>7.2} ms | get {:>8.0}/s p50 {:>6.2} ms p99 {:>7.2} ms",
        create.0, create.1, create.2, get.0, get.1, get.2);
    [create, get]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(32);
    // Quota: the admin project's default volume quota is 2000 GiB.
    let count = count.min(1900);
    println!(
        "API create+get of volumes: {count} ops, {clients} concurrent clients (release build)"
    );
    let embedded = start(&["up"]);
    let e = bench("up (embedded store)", &embedded, count, clients).await;
    drop(embedded);
    let etcd = yunhan_testkit::EtcdCluster::start(3);
    let server = start(&["server", "--store", &etcd.store_url()]);
    let c = bench("server (3-member etcd)", &server, count, clients).await;
    println!(
        "ratio embedded/etcd: create {:.1}x, get {:.1}x",
        e[0].0 / c[0].0,
        e[1].0 / c[1].0
    );
}
