//! Compute benchmark: time from `POST /v1/instances` to the VM reported
//! Running (QEMU up) and to the guest's readiness marker on its console, for
//! 20 VMs started 10 at a time on one host (`yunhan up`, release build).
//!
//!   cargo run --release -p yunhan --example compute_bench -- [TOTAL] [WAVE] [disk|kernel]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{pct, start};

/// Sends `req` and reads the JSON it answers (a benchmark stops at the first failure).
async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let wave: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let kind = args.get(3).cloned().unwrap_or_else(|| "kernel".into());
    // 10 one-vCPU VMs on a 2-core host need more than the default 1:2 CPU overcommit.
    let server = start(&["up", "--cpu-overcommit", "8"]);
    let http = reqwest::Client::new();
    let (e, t) = (server.endpoint.clone(), server.token.clone());
    let api = |m: reqwest::Method, p: &str| http.request(m, format!("{e}{p}")).bearer_auth(&t);
    server.upload_test_guest(&http, "guest", &kind).await;

    let mut to_running = Vec::new();
    let mut to_ready = Vec::new();
    let mut accel = String::new();
    for w in 0..total.div_ceil(wave) {
        let names: Vec<String> = (0..wave.min(total - w * wave))
            .map(|i| format!("b{w}-{i}"))
            .collect();
        let mut pending = Vec::new();
        for n in &names {
            let t0 = Instant::now();
            let vm = json!({"metadata": {"name": n}, "spec": {"image": "guest", "flavor": "tiny"}});
            let v = json_of(api(reqwest::Method::POST, "/v1/instances").json(&vm)).await;
            pending.push((
                v["metadata"]["id"].as_str().unwrap().to_string(),
                n.clone(),
                t0,
                None::<Duration>,
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "VMs did not become ready in time"
            );
            let mut left = Vec::new();
            for (vid, name, t0, running) in pending {
                let v = json_of(api(reqwest::Method::GET, &format!("/v1/instances/{vid}"))).await;
                assert!(
                    !matches!(
                        v["status"]["phase"].as_str(),
                        Some("Failed" | "Unschedulable")
                    ),
                    "{v}"
                );
                let running =
                    running.or_else(|| (v["status"]["phase"] == "Running").then(|| t0.elapsed()));
                if accel.is_empty() {
                    accel = v["status"]["accel"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                }
                let log = match running {
                    Some(_) => api(
                        reqwest::Method::GET,
                        &format!("/v1/instances/{vid}/console"),
                    )
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
                    None => String::new(),
                };
                if log.contains(&format!("YUNHAN-READY hostname={name}")) {
                    to_running.push(running.unwrap());
                    to_ready.push(t0.elapsed());
                } else {
                    left.push((vid, name, t0, running));
                }
            }
            pending = left;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for n in &names {
            api(reqwest::Method::DELETE, &format!("/v1/instances/{n}"))
                .send()
                .await
                .unwrap();
        }
        // Wait for the wave to be gone before the next one.
        loop {
            let l = json_of(api(reqwest::Method::GET, "/v1/instances")).await;
            if l["items"].as_array().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    to_running.sort();
    to_ready.sort();
    println!("{total} VMs ({kind} boot), {wave} at a time, accel={accel}, 256 MiB / 1 vCPU each");
    println!(
        "POST → Running (QEMU up):   p50 {:>8.0} ms  p99 {:>8.0} ms",
        pct(&to_running, 0.5),
        pct(&to_running, 0.99)
    );
    println!(
        "POST → readiness marker:    p50 {:>8.0} ms  p99 {:>8.0} ms",
        pct(&to_ready, 0.5),
        pct(&to_ready, 0.99)
    );
}
