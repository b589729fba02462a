//! Monitoring through the real binary (issue #17): a guest's CPU, disk and network show
//! in `yunhan vm metrics` as the guest does them; the host's figures in `yunhan host
//! metrics`; every VM's latest samples on `/metrics`, labelled, in a format promtool
//! accepts; and the history survives a restart of `yunhan up`.

mod common;

use std::time::Duration;

use common::onebox::{ready_guest, OneBox};
use common::{disk_image_args, eventually, net1_with_s1, strs, tiny_vm, Cloud, GuestShell};
use serde_json::Value;

/// The points of series `name` in `vm metrics NAME --since 10m -o json`.
fn points(answer: &Value, name: &str) -> Vec<f64> {
    let series = answer["series"].as_array().cloned().unwrap_or_default();
    (series.iter().find(|s| s["name"] == name))
        .and_then(|s| s["points"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect()
}

/// The total a rate series adds up to over the window (points are 10 s slots).
fn total(answer: &Value, name: &str) -> f64 {
    let step = answer["step"].as_f64().unwrap();
    points(answer, name).iter().map(|v| v * step).sum()
}

fn vm_metrics(cloud: &Cloud, series: &str) -> Value {
    cloud.ok(&[
        "vm", "metrics", "web1", "--since", "10m", "--series", series,
    ])
}

/// Polls `vm metrics` until `ok` holds for its answer (the host collects every 10 s).
async fn until(cloud: &Cloud, what: &str, series: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(what, Duration::from_secs(90), || async {
        let answer = vm_metrics(cloud, series);
        ok(&answer).then_some(answer)
    })
    .await
}

fn last(answer: &Value, name: &str) -> Option<f64> {
    points(answer, name).last().copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_monitoring_shows_what_a_guest_does_and_keeps_it_across_a_restart() {
    // The VPC is realised in a namespace of the test's own (removed when it ends).
    let onebox = OneBox::new();
    let mut cloud = Cloud::up(&["--netns", &onebox.host]).await;
    cloud.ok(&strs(&disk_image_args("tiny")));
    net1_with_s1(&cloud);
    cloud.ok(&tiny_vm(
        "web1",
        &["--subnet", "s1", "--wait", "--timeout", "240s"],
    ));
    let vm = ready_guest(&cloud, "web1").await;
    let id = vm["metadata"]["id"].as_str().unwrap().to_string();
    let mut sh = GuestShell::open(&cloud, &id).await;

    // CPU: a spinning guest is busy, an idle one is not. One spinning guest on the machine
    // at a time: two on 2 cores would each get less than the 80 % measured here.
    let spin = tokio::task::spawn_blocking(|| yunhan_testkit::machine_lock("guest-cpu"));
    let spin = spin.await.unwrap();
    sh.run("(while :; do :; done) & echo $! > /tmp/spin").await;
    until(&cloud, "cpu > 80 %", "cpu", |a| {
        last(a, "cpu_percent").is_some_and(|c| c > 80.0)
    })
    .await;
    sh.run("kill $(cat /tmp/spin)").await;
    until(&cloud, "cpu < 10 %", "cpu", |a| {
        last(a, "cpu_percent").is_some_and(|c| c < 10.0)
    })
    .await;
    drop(spin);

    // Disk: 50 MiB written straight to the (unused) root disk.
    let out = sh
        .run("dd if=/dev/zero of=/dev/vda bs=1M count=50 conv=fsync 2>&1 | tail -1")
        .await;
    assert!(out.contains("50+0 records out"), "{out}");
    until(&cloud, "≥ 50 MiB of disk writes", "disk", |a| {
        total(a, "disk_write_bytes_per_second") >= 50.0 * 1048576.0
    })
    .await;

    // A volume: its own writes, through `volume metrics`.
    cloud.ok(&["volume", "create", "v1", "--size", "64MiB", "--wait"]);
    cloud.ok(&["volume", "attach", "v1", "--vm", "web1", "--wait"]);
    let vol = cloud.ok(&["volume", "show", "v1"])["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let find = format!(
        "for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = {vol} ] && echo \"dev=${{d##*/}}=\"; done"
    );
    let out = sh.run(&find).await;
    let dev = (out.split("dev=").skip(1))
        .filter_map(|s| s.split('=').next())
        .find(|d| d.starts_with("vd"))
        .unwrap_or_else(|| panic!("the volume in the guest: {out}"))
        .to_string();
    let out = sh
        .run(&format!(
            "dd if=/dev/zero of=/dev/{dev} bs=1M count=20 conv=fsync 2>&1 | tail -1"
        ))
        .await;
    assert!(out.contains("20+0 records out"), "{out}");
    eventually(
        "≥ 20 MiB of volume writes",
        Duration::from_secs(90),
        || async {
            let a = cloud.ok(&["volume", "metrics", "v1", "--since", "10m"]);
            (total(&a, "write_bytes_per_second") >= 20.0 * 1048576.0).then_some(())
        },
    )
    .await;

    // Network: 2,000 echo requests to the subnet's gateway, as fast as it answers.
    let gateway = cloud.ok(&["subnet", "show", "s1"])["status"]["gateway_ip"]
        .as_str()
        .unwrap()
        .to_string();
    let out = sh
        .run(&format!("ping -A -q -c 2000 {gateway} | tail -2"))
        .await;
    assert!(out.contains("2000 packets transmitted"), "{out}");
    let nic = nic_of(&cloud);
    let (tx, rx) = (
        format!("nic/{nic}/tx_packets_per_second"),
        format!("nic/{nic}/rx_packets_per_second"),
    );
    until(&cloud, "2,000 packets each way", "nic", |a| {
        total(a, &tx) >= 2000.0 && total(a, &rx) >= 2000.0
    })
    .await;

    // The host: its own figures and its pools'.
    let host = vm["status"]["host"].as_str().unwrap();
    let h = cloud.ok(&["host", "metrics", host, "--since", "10m"]);
    for name in [
        "cpu_percent",
        "memory_used_bytes",
        "load1",
        "pool/local/used_bytes",
    ] {
        assert!(!points(&h, name).is_empty(), "{name}: {h}");
    }
    let chart = cloud.cli(&["vm", "metrics", "web1", "--since", "10m"]);
    let chart = String::from_utf8_lossy(&chart.stdout).into_owned();
    assert!(
        chart.contains("cpu_percent") && chart.contains("max"),
        "{chart}"
    );

    // Prometheus: the latest samples, labelled, in a format promtool accepts.
    let scrape = (cloud
        .http
        .get(format!("{}/metrics", cloud.endpoint))
        .send()
        .await)
        .unwrap()
        .text()
        .await
        .unwrap();
    let project = vm["metadata"]["project"].as_str().unwrap();
    let labels = format!("{{project=\"{project}\",instance=\"{id}\",name=\"web1\",host=\"");
    assert!(
        scrape.contains(&format!("yunhan_vm_cpu_percent{labels}")),
        "{scrape}"
    );
    promtool_accepts(&scrape);

    // The history survives a restart: the spin is still there.
    drop(sh);
    cloud.stop();
    cloud.start().await;
    let a = vm_metrics(&cloud, "cpu");
    let busy = points(&a, "cpu_percent")
        .iter()
        .filter(|c| **c > 80.0)
        .count();
    assert!(busy >= 1, "the busy minutes are gone after a restart: {a}");
}

/// The id of web1's NIC.
fn nic_of(cloud: &Cloud) -> String {
    let nics = cloud.ok(&["nic", "list"]);
    (nics.as_array().unwrap().iter())
        .find(|n| {
            n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("web1")
        })
        .and_then(|n| n["metadata"]["id"].as_str())
        .expect("web1's NIC")
        .to_string()
}

fn promtool_accepts(scrape: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // Not a parse error, and not even a lint remark (naming, HELP, TYPE).
    assert!(out.status.success(), "promtool check metrics: {said}");
}
