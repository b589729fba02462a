//! Metering through the real binary (issue #17): a VM that runs twice ~45 s with a stop
//! in the middle is billed its real running time (from the agent's `started_at` and
//! `stopped_at`) in vCPU-seconds, per vCPU, to ±2 s; the usage survives a kill -9 of
//! `yunhan up` and is not counted twice; the admin's price list prices it; another
//! project's member cannot read it, and a member cannot set prices.

mod common;

use std::time::Duration;

use common::{disk_image_args, eventually, stderr, strs, tiny_vm, Cloud};
use serde_json::{json, Value};

fn vm(cloud: &Cloud) -> Value {
    cloud.ok(&["vm", "show", "m1"])
}

fn epoch(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    yunhan_model::epoch_of(s).unwrap_or_else(|| panic!("not RFC 3339: {s}"))
}

/// Runs the VM (it is stopped) for about `secs` and stops it; the seconds it really ran,
/// from the agent's times.
async fn run_for(cloud: &Cloud, secs: u64) -> i64 {
    let out = cloud.cli(&["vm", "start", "m1", "--wait"]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    // The billing window itself is what is measured: sleeping through it is the test.
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let out = cloud.cli(&["vm", "stop", "m1", "--wait"]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    let s = vm(cloud)["status"].clone();
    assert_eq!(s["phase"], "Stopped", "{s}");
    epoch(&s["stopped_at"]) - epoch(&s["started_at"])
}

/// The usage line of the VM in `yunhan usage --project admin -o json`.
fn line(cloud: &Cloud) -> (Value, Value) {
    let usage = cloud.ok(&["usage", "--project", "admin"]);
    let lines = usage["lines"].as_array().cloned().unwrap_or_default();
    let id = vm(cloud)["metadata"]["id"].clone();
    let l = lines.into_iter().find(|l| l["resource"] == id);
    (l.unwrap_or(Value::Null), usage)
}

/// Waits until the VM's billed seconds are `want` (±2) and returns its line: within one
/// metering resync (30 s, a pass at least that often) and some slack, since a pass that
/// began before the VM's last change may leave it to the next.
async fn billed(cloud: &Cloud, want: i64) -> Value {
    eventually(
        &format!("{want} s billed"),
        Duration::from_secs(40),
        || async {
            let (l, _) = line(cloud);
            let got = l["seconds"].as_i64()?;
            ((got - want).abs() <= 2).then_some(l)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_metering_bills_a_vm_to_the_second_across_a_restart() {
    let mut cloud = Cloud::up(&[]).await;
    let out = cloud.cli(&strs(&disk_image_args("tiny")));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cloud.cli(&tiny_vm("m1", &["--wait", "--timeout", "240s"]));
    assert!(out.status.success(), "vm create: {}", stderr(&out));
    let out = cloud.cli(&["vm", "stop", "m1", "--wait"]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    let boot = {
        let s = vm(&cloud)["status"].clone();
        epoch(&s["stopped_at"]) - epoch(&s["started_at"])
    };
    let vcpus = vm(&cloud)["status"]["vcpus"].as_f64().unwrap();
    assert!(vcpus >= 1.0);

    // ~45 s, a stop, ~45 s: ~90 s running, each second from the agent's real times.
    let first = run_for(&cloud, 45).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = run_for(&cloud, 45).await;
    let ran = boot + first + second;
    eprintln!("ran {boot} + {first} + {second} = {ran} s on {vcpus} vCPUs");
    assert!((85..=110).contains(&(first + second)), "{first} + {second}");
    let l = billed(&cloud, ran).await;
    let per_vcpu = l["meters"]["vcpu_seconds"].as_f64().unwrap() / vcpus;
    assert!(
        (per_vcpu - ran as f64).abs() <= 2.0,
        "{per_vcpu} vs {ran}: {l}"
    );

    // Prices: the admin sets them (a member may read, not set; bad prices are refused).
    let member = cloud.tenant("meterb", None).await;
    let prices = json!({"currency": "EUR", "vcpu_hour": 3.6});
    let (s, v) = (cloud.call("PUT", "/v1/price-list", Some(&member.token), Some(&prices))).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let bad = json!({"currency": "EUR", "vcpu_hour": -1});
    let (s, v) = cloud.admin("PUT", "/v1/price-list", Some(&bad)).await;
    assert_eq!(
        (s, v["details"]["field"].as_str()),
        (400, Some("vcpu_hour")),
        "{v}"
    );
    let (s, v) = cloud.admin("PUT", "/v1/price-list", Some(&prices)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = cloud
        .call("GET", "/v1/price-list", Some(&member.token), None)
        .await;
    assert_eq!((s, v["vcpu_hour"].as_f64()), (200, Some(3.6)), "{v}");
    // Price changes are in the audit trail, refused ones too.
    let (_, ev) = cloud.admin("GET", "/v1/events?kind=price-list", None).await;
    let outcomes: Vec<u64> = (ev["items"].as_array().unwrap().iter())
        .filter(|e| e["action"] == "update")
        .map(|e| e["outcome"].as_u64().unwrap())
        .collect();
    assert_eq!(outcomes, [403, 400, 200], "{ev}");
    let (l, usage) = line(&cloud);
    let vcpu_seconds = l["meters"]["vcpu_seconds"].as_f64().unwrap();
    assert_eq!(usage["currency"], "EUR");
    let cost = usage["total_cost"].as_f64().unwrap();
    assert!((cost - vcpu_seconds * 0.001).abs() < 1e-5, "{usage}");
    let stopped_usage = l;

    // Another project's member: 404 for the admin's usage, its own is empty.
    let (s, v) = (cloud.call("GET", "/v1/usage?project=admin", Some(&member.token), None)).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = cloud
        .call("GET", "/v1/usage?from=1h", Some(&member.token), None)
        .await;
    assert_eq!(
        (s, v["lines"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    let (s, v) = cloud.admin("GET", "/v1/usage?from=soon", None).await;
    assert_eq!(
        (s, v["details"]["field"].as_str()),
        (400, Some("from")),
        "{v}"
    );

    // kill -9 and up again on the same data: the usage is still there, unchanged ...
    cloud.kill9();
    cloud.start().await;
    assert_eq!(line(&cloud).0, stopped_usage, "usage after a restart");
    // ... and passes go on from where they were: 5 s more is 5 s more, nothing twice.
    let third = run_for(&cloud, 5).await;
    billed(&cloud, ran + third).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let l = billed(&cloud, ran + third).await;
    eprintln!("billed {} s after the restart: {l}", ran + third);
}
