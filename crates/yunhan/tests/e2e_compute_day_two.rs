//! Compute, day two, through the real binary: resizing a VM (the guest sees its new
//! vCPUs, memory and disk), the refusals a resize meets (running, disk shrink, no room,
//! quota), and admins steering overcommit per host (what the scheduler admits follows
//! it, `host list` shows allocated against capacity).

mod common;

use std::time::Duration;

use common::guest_disk::{device_of, read_pattern, write_pattern};
use common::{eventually, kernel_image_args, stderr, stdout, strs, words, Cloud, GuestShell};
use serde_json::{json, Value};

/// The first number after `label` in the guest's answer (e.g. `CPUS=2`).
fn figure(answer: &str, label: &str) -> u64 {
    let at = answer
        .rfind(label)
        .unwrap_or_else(|| panic!("no {label} in {answer:?}"));
    let digits: String = answer[at + label.len()..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// vCPUs, memory (KiB) and the first disk's size (512-byte sectors) as the guest sees them.
async fn guest_shape(cloud: &Cloud, id: &str) -> (u64, u64, u64) {
    let mut sh = GuestShell::open(cloud, id).await;
    let out = sh
        .run(
            "echo CPUS=$(nproc) MEM=$(grep MemTotal /proc/meminfo) DISK=$(cat /sys/block/vda/size)",
        )
        .await;
    (
        figure(&out, "CPUS="),
        figure(&out, "MEM="),
        figure(&out, "DISK="),
    )
}

fn fails_with(cloud: &Cloud, args: &[&str], needle: &str) {
    let out = cloud.cli(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
}

fn host(cloud: &Cloud) -> Value {
    let hosts = cloud.ok(&["host", "list"]);
    hosts[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_resize_a_vm_and_steer_overcommit() {
    let cloud = Cloud::up(&[]).await;
    cloud.ok(&strs(&kernel_image_args("dk")));
    let vm = cloud.ok(&[
        "vm",
        "create",
        "web1",
        "--image",
        "dk",
        "--flavor",
        "tiny",
        "--wait",
        "--timeout",
        "240s",
    ]);
    let id = vm["metadata"]["id"].as_str().unwrap().to_string();
    let (cpus, mem_kib, _) = guest_shape(&cloud, &id).await;
    assert_eq!(cpus, 1);
    assert!(mem_kib < 256 * 1024, "{mem_kib} KiB on a 256 MiB flavor");

    // Running: refused with what to do; stopped: resized, charged, shown.
    fails_with(
        &cloud,
        &["vm", "resize", "web1", "--flavor", "medium"],
        "stop it first",
    );
    cloud.ok(&["vm", "stop", "web1", "--wait"]);
    let v = cloud.ok(&["vm", "resize", "web1", "--flavor", "medium", "--wait"]);
    let s = &v["status"];
    assert_eq!(
        (s["vcpus"].as_u64(), s["memory_mib"].as_u64()),
        (Some(2), Some(2048))
    );
    assert_eq!(s["disk_gib"], 20);
    fails_with(
        &cloud,
        &["vm", "resize", "web1", "--flavor", "tiny"],
        "disks only grow",
    );
    cloud.ok(&words(
        "flavor create huge --vcpus 64 --memory-mib 1024 --disk-gib 20",
    ));
    fails_with(
        &cloud,
        &["vm", "resize", "web1", "--flavor", "huge"],
        "does not fit its host",
    );
    let v = cloud.ok(&["vm", "show", "web1"]);
    assert_eq!(
        v["status"]["vcpus"], 2,
        "a refused resize changes nothing: {v}"
    );

    // The guest boots at its new size.
    cloud.ok(&["vm", "start", "web1", "--wait", "--timeout", "240s"]);
    let (cpus, mem_kib, sectors) = guest_shape(&cloud, &id).await;
    assert_eq!(cpus, 2);
    assert!(mem_kib > 1800 * 1024, "{mem_kib} KiB on a 2048 MiB flavor");
    assert_eq!(sectors * 512, 20 << 30, "the root disk grew to 20 GiB");

    rebuild_keeps_the_vm_and_its_volume(&cloud, &id).await;
    overcommit_steers_the_scheduler(&cloud).await;
    a_resize_over_quota_is_refused(&cloud).await;
}

/// `vm rebuild --image`: a fresh root disk from another image (its kernel command line
/// carries a marker), the same VM id, its volume attached with its data, its size kept;
/// another project's private image is 404.
async fn rebuild_keeps_the_vm_and_its_volume(cloud: &Cloud, id: &str) {
    let mut dk2 = kernel_image_args("dk2");
    let cmdline = dk2.last_mut().unwrap();
    cmdline.push_str(" yunhan.image=dk2");
    cloud.ok(&strs(&dk2));
    let vol = cloud.ok(&words("volume create d1 --size 1GiB --wait"));
    let vol_id = vol["metadata"]["id"].as_str().unwrap();
    cloud.ok(&["volume", "attach", "d1", "--vm", "web1", "--wait"]);
    let mut sh = GuestShell::open(cloud, id).await;
    let dev = device_of(&mut sh, vol_id).await;
    write_pattern(&mut sh, &dev, "DATA-KEPT").await;
    write_pattern(&mut sh, "vda", "OLD-ROOT").await;
    drop(sh);

    let v = cloud.ok(&[
        "vm",
        "rebuild",
        "web1",
        "--image",
        "dk2",
        "--wait",
        "--timeout",
        "240s",
    ]);
    assert_eq!(v["metadata"]["id"], id, "{v}");
    assert_eq!(
        (
            v["status"]["rebuild_generation"].as_u64(),
            v["spec"]["image"].as_str()
        ),
        (Some(1), Some("dk2"))
    );
    assert_eq!(v["status"]["phase"], "Running", "{v}");
    let mut sh = GuestShell::open(cloud, id).await;
    let out = sh.run("cat /proc/cmdline").await;
    assert!(
        out.contains("yunhan.image=dk2"),
        "not the new image's kernel: {out}"
    );
    assert_ne!(
        read_pattern(&mut sh, "vda", 8).await,
        "OLD-ROOT",
        "the old root disk survived"
    );
    let dev = device_of(&mut sh, vol_id).await;
    assert_eq!(read_pattern(&mut sh, &dev, 9).await, "DATA-KEPT");
    drop(sh);
    assert_eq!(
        guest_shape(cloud, id).await.2 * 512,
        20 << 30,
        "the flavor's disk size"
    );

    let t = cloud.tenant("other", None).await;
    let theirs = cloud.image(&t.token, "theirs").await;
    let theirs = theirs["metadata"]["id"].as_str().unwrap();
    fails_with(
        cloud,
        &["vm", "rebuild", "web1", "--image", theirs],
        "not found",
    );
    let v = cloud.ok(&["vm", "show", "web1"]);
    assert_eq!(
        v["spec"]["image"], "dk2",
        "a refused rebuild changes nothing: {v}"
    );
}

/// `host set --cpu-overcommit`: a VM that did not fit now fits, and the reverse;
/// `host list` shows allocated against capacity; `host rebalance` names what cannot
/// move; members may not steer.
async fn overcommit_steers_the_scheduler(cloud: &Cloud) {
    let h = host(cloud);
    let (name, cpus) = (
        h["metadata"]["name"].as_str().unwrap().to_string(),
        h["spec"]["cpus"].as_u64().unwrap(),
    );
    let a = &h["status"]["allocation"];
    assert_eq!(
        (a["vcpus"].as_u64(), a["cpu_ratio"].as_f64()),
        (Some(2), Some(2.0)),
        "{h}"
    );
    assert_eq!(a["vcpu_limit"].as_u64(), Some(cpus * 2), "{h}");

    cloud.ok(&["host", "set", &name, "--cpu-overcommit", "1"]);
    let limited = |limit: u64| async move {
        let h = host(cloud);
        let a = &h["status"]["allocation"];
        (a["vcpu_limit"].as_u64() == Some(limit)).then_some(h)
    };
    eventually("vCPU limit at 1:1", Duration::from_secs(20), || {
        limited(cpus)
    })
    .await;
    // 2 of `cpus` given out: a 4-vCPU VM has no room at 1:1 …
    cloud.ok(&[
        "vm",
        "create",
        "big",
        "--image",
        "dk",
        "--flavor",
        "large",
        "--stopped",
    ]);
    let phase = |vm: &'static str, want: &'static str| async move {
        let v = cloud.ok(&["vm", "show", vm]);
        (v["status"]["phase"] == want).then_some(v)
    };
    let v = eventually("big unschedulable", Duration::from_secs(20), || {
        phase("big", "Unschedulable")
    })
    .await;
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not enough vCPUs"),
        "{v}"
    );
    // … and has at 4:1.
    cloud.ok(&["host", "set", &name, "--cpu-overcommit", "4"]);
    eventually("big placed at 4:1", Duration::from_secs(20), || {
        phase("big", "Stopped")
    })
    .await;
    let h = eventually("big counted", Duration::from_secs(20), || async {
        let h = host(cloud);
        (h["status"]["allocation"]["vcpus"] == 6).then_some(h)
    })
    .await;
    assert_eq!(
        h["status"]["allocation"]["vcpu_limit"].as_u64(),
        Some(cpus * 4),
        "{h}"
    );
    // The reverse: back at 1:1, a 1-vCPU VM does not fit; `cluster` restores 2:1.
    cloud.ok(&["host", "set", &name, "--cpu-overcommit", "1"]);
    eventually("1:1 again", Duration::from_secs(20), || limited(cpus)).await;
    cloud.ok(&[
        "vm",
        "create",
        "c",
        "--image",
        "dk",
        "--flavor",
        "tiny",
        "--stopped",
    ]);
    eventually("c unschedulable", Duration::from_secs(20), || {
        phase("c", "Unschedulable")
    })
    .await;
    let h = cloud.ok(&["host", "set", &name, "--cpu-overcommit", "cluster"]);
    assert!(h["spec"].get("cpu_overcommit").is_none(), "{h}");
    fails_with(
        cloud,
        &["host", "set", &name, "--cpu-overcommit", "40"],
        "from 1 to 16",
    );

    // Back at 2:1, 6 of `cpus × 2` vCPUs: the host is above 80 %, and nothing can move
    // (one host; web1's and big's root disks are on it): the dry run says so.
    let plan = cloud.ok(&["host", "rebalance"]);
    assert_eq!(plan["moves"], json!([]), "{plan}");
    let before = plan["hosts"][0]["before_percent"].as_f64().unwrap();
    assert!((before - 600.0 / (cpus * 2) as f64).abs() < 0.1, "{plan}");
    let why = |vm: &str| {
        let pinned = plan["pinned"].as_array().unwrap();
        let p = pinned.iter().find(|p| p["name"] == vm);
        p.and_then(|p| p["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        why("web1").contains("root disk is a copy on its host"),
        "{plan}"
    );
    assert!(
        why("big").contains("root disk is a copy on its host"),
        "{plan}"
    );
    let table = stdout(&cloud.cli(&["host", "rebalance", "--target", "90"]));
    assert!(
        table.contains("Cannot move") && table.contains("web1"),
        "{table}"
    );

    let t = cloud.tenant("steer", None).await;
    let (code, _) = cloud
        .call("GET", "/v1/rebalance", Some(&t.token), None)
        .await;
    assert_eq!(code, 403, "a member asked for a rebalance plan");
    let id = h["metadata"]["id"].as_str().unwrap();
    let mut spec = h["spec"].clone();
    spec["cpu_overcommit"] = json!(8.0);
    let (code, body) = cloud
        .call(
            "PUT",
            &format!("/v1/hosts/{id}"),
            Some(&t.token),
            Some(&json!({"spec": spec})),
        )
        .await;
    assert!(
        code == 403 || code == 404,
        "a member set a host's overcommit: {code} {body}"
    );
}

/// A resize that would pass the project's vCPU quota: 403 quota_exceeded, nothing changed.
async fn a_resize_over_quota_is_refused(cloud: &Cloud) {
    let quota = json!({"instances": 5, "vcpus": 1, "memory_mib": 100_000, "volume_gib": 100, "elastic_ips": 1});
    let t = cloud.tenant("frugal", Some(quota)).await;
    let image = cloud.image(&t.token, "mine").await;
    let spec = json!({"flavor": "tiny", "image": image["metadata"]["id"], "running": false});
    let vm = cloud.create(&t.token, "instances", "lean", spec).await;
    let path = format!("/v1/instances/{}", vm["metadata"]["id"].as_str().unwrap());
    let mut spec = vm["spec"].clone();
    spec["flavor"] = json!("medium");
    let (code, body) = cloud
        .call("PUT", &path, Some(&t.token), Some(&json!({"spec": spec})))
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["code"], "quota_exceeded", "{body}");
    let (_, now) = cloud.call("GET", &path, Some(&t.token), None).await;
    assert_eq!(now["status"]["vcpus"], 1, "{now}");
}
