//! Block storage through the real binary: volumes on the local pool plugged
//! into real TCG guests over QMP, data written and read from inside the
//! guests, snapshots, restore, online extend, re-plug after a VM restart, and
//! the API's refusals.

mod common;

use std::time::Duration;

use common::guest_disk::{device_of, read_pattern, wait_device, write_pattern};
use common::{
    bootable_root_args, disk_image_args, eventually, kernel_image_args, stderr, stdout, strs,
    tiny_vm, words, Cloud, GuestShell,
};
use serde_json::{json, Value};

const GIB: u64 = 1 << 30;

fn show(cloud: &Cloud, kind: &str, name: &str) -> Value {
    let out = cloud.cli(&[kind, "show", name, "-o", "json"]);
    assert!(out.status.success(), "{kind} show {name}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs a CLI command that must succeed.
fn ok(cloud: &Cloud, args: &[&str]) -> String {
    let out = cloud.cli(args);
    assert!(
        out.status.success(),
        "yunhan {}: {}{}",
        args.join(" "),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

async fn wait_phase(cloud: &Cloud, kind: &str, name: &str, phase: &str) -> Value {
    eventually(
        &format!("{kind} {name} to be {phase}"),
        Duration::from_secs(120),
        || async {
            let v = show(cloud, kind, name);
            (v["status"]["phase"] == phase).then_some(v)
        },
    )
    .await
}

/// Boots direct-kernel guests named `vms` and makes volume v1 in `pool`
/// meanwhile; returns the volume and a shell on each guest.
async fn guests_and_a_volume(cloud: &Cloud, pool: &str, vms: &[&str]) -> (Value, Vec<GuestShell>) {
    ok(cloud, &strs(&kernel_image_args("dk")));
    for vm in vms {
        ok(
            cloud,
            &["vm", "create", vm, "--image", "dk", "--flavor", "tiny"],
        );
    }
    // The volume is made while the guests boot.
    ok(
        cloud,
        &[
            "volume", "create", "v1", "--size", "64MiB", "--pool", pool, "--wait",
        ],
    );
    let v = show(cloud, "volume", "v1");
    assert_eq!(v["status"]["phase"], "Available", "{v}");
    assert_eq!(v["status"]["logical_bytes"].as_u64(), Some(64 << 20), "{v}");
    assert_eq!(v["spec"]["pool"], pool, "{v}");
    let mut shells = Vec::new();
    for vm in vms {
        let v = wait_phase(cloud, "vm", vm, "Running").await;
        let id = v["metadata"]["id"].as_str().unwrap().to_string();
        eventually("READY", Duration::from_secs(240), || async {
            stdout(&cloud.cli(&["vm", "log", vm]))
                .contains(&format!("YUNHAN-READY hostname={vm}"))
                .then_some(())
        })
        .await;
        shells.push(GuestShell::open(cloud, &id).await);
    }
    (v, shells)
}

/// Two guests, vm1 and vm2, and volume v1 in `pool`.
async fn two_guests_and_a_volume(cloud: &Cloud, pool: &str) -> (Value, GuestShell, GuestShell) {
    let (v, shells) = guests_and_a_volume(cloud, pool, &["vm1", "vm2"]).await;
    let [sh1, sh2] = <[GuestShell; 2]>::try_from(shells).ok().unwrap();
    (v, sh1, sh2)
}

/// A `scripts/ceph-dev` cluster, and the server arguments that keep pool `rbdvols` on it
/// (OSDs as the failure domain: the dev cluster is one host).
async fn dev_ceph() -> (yunhan_testkit::DevCeph, Vec<String>) {
    let ceph = tokio::task::spawn_blocking(yunhan_testkit::DevCeph::start)
        .await
        .unwrap();
    let conf = ceph.conf().to_str().unwrap();
    let args = [
        "--ceph-conf",
        conf,
        "--ceph-pool",
        "rbdvols",
        "--ceph-failure-domain",
        "osd",
    ]
    .map(String::from)
    .to_vec();
    (ceph, args)
}

/// A `scripts/ceph-dev` cluster and a cloud whose `rbdvols` pool lives on it.
async fn ceph_cloud() -> (yunhan_testkit::DevCeph, Cloud) {
    let (ceph, args) = dev_ceph().await;
    let cloud = Cloud::up(&strs(&args)).await;
    (ceph, cloud)
}

/// The volume's life with real guests: data written in vm1 read back in vm2
/// after a move, snapshot + overwrite + restore, online extend, re-plug
/// after a VM restart, refusals, and deletion of everything.
async fn volume_lifecycle(cloud: &Cloud, vol: &Value, mut sh1: GuestShell, mut sh2: GuestShell) {
    let vol_id = vol["metadata"]["id"].as_str().unwrap().to_string();
    // Attach to vm1, write a pattern from inside the guest.
    ok(cloud, &["volume", "attach", "v1", "--vm", "vm1", "--wait"]);
    let v = show(cloud, "volume", "v1");
    assert_eq!(v["status"]["phase"], "InUse", "{v}");
    assert_eq!(v["status"]["device"], vol_id.as_str());
    let dev = device_of(&mut sh1, &vol_id).await;
    write_pattern(&mut sh1, &dev, "YUNHAN-DATA-ALPHA").await;

    // Detach (hot unplug): the disk leaves vm1; attach to vm2 and read it back.
    ok(cloud, &["volume", "detach", "v1", "--wait"]);
    wait_device(&mut sh1, &vol_id, false).await;
    ok(cloud, &["volume", "attach", "v1", "--vm", "vm2", "--wait"]);
    let dev2 = device_of(&mut sh2, &vol_id).await;
    assert_eq!(read_pattern(&mut sh2, &dev2, 17).await, "YUNHAN-DATA-ALPHA");

    // Snapshot, overwrite, restore (detached), read the original back.
    ok(cloud, &words("snapshot create s1 --volume v1 --wait"));
    let s = show(cloud, "snapshot", "s1");
    assert_eq!(s["status"]["size_bytes"].as_u64(), Some(64 << 20), "{s}");
    write_pattern(&mut sh2, &dev2, "YUNHAN-DATA-OMEGA").await;
    assert_eq!(read_pattern(&mut sh2, &dev2, 17).await, "YUNHAN-DATA-OMEGA");
    let out = cloud.cli(&["volume", "restore", "v1", "--snapshot", "s1"]);
    assert!(
        !out.status.success(),
        "restoring an attached volume is refused"
    );
    assert!(stderr(&out).contains("detach"), "{}", stderr(&out));
    ok(cloud, &["volume", "detach", "v1", "--wait"]);
    ok(cloud, &words("volume restore v1 --snapshot s1 --wait"));
    ok(cloud, &["volume", "attach", "v1", "--vm", "vm2", "--wait"]);
    let dev2 = device_of(&mut sh2, &vol_id).await;
    assert_eq!(read_pattern(&mut sh2, &dev2, 17).await, "YUNHAN-DATA-ALPHA");

    // Extend online: the guest sees the new size without a reboot.
    ok(cloud, &words("volume extend v1 --size 128MiB --wait"));
    let sectors = (128u64 << 20) / 512;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = sh2
            .run(&format!("echo \"size=$(cat /sys/block/{dev2}/size)=\""))
            .await;
        if out.contains(&format!("size={sectors}=")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest never saw 128 MiB: {out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Shrinking is refused.
    let out = cloud.cli(&["volume", "extend", "v1", "--size", "64MiB"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("shrink"), "{}", stderr(&out));

    // A restarted VM gets its volume back (plugged into the new QEMU).
    let before = show(cloud, "volume", "v1")["status"]["attached_since"].clone();
    ok(cloud, &["vm", "stop", "vm2", "--wait"]);
    ok(cloud, &["vm", "start", "vm2", "--wait"]);
    let v = eventually(
        "v1 re-plugged into vm2",
        Duration::from_secs(120),
        || async {
            let v = show(cloud, "volume", "v1");
            (v["status"]["phase"] == "InUse" && v["status"]["attached_since"] != before)
                .then_some(v)
        },
    )
    .await;
    let vm2_id = show(cloud, "vm", "vm2")["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["status"]["attached_to"], vm2_id.as_str());

    // Deleting an attached volume, or one with snapshots, is refused; then
    // everything goes, file included.
    let out = cloud.cli(&["volume", "delete", "v1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("detach"), "{}", stderr(&out));
    ok(cloud, &["volume", "detach", "v1", "--wait"]);
    let out = cloud.cli(&["volume", "delete", "v1"]);
    assert!(stderr(&out).contains("snapshot"), "{}", stderr(&out));
    ok(cloud, &["snapshot", "delete", "s1", "--wait"]);
    ok(cloud, &["volume", "delete", "v1", "--wait"]);
    let (_, p) = cloud.admin("GET", "/v1/projects/admin", None).await;
    assert_eq!(p["status"]["usage"]["volume_gib"], 0, "{p}");
}

/// `yunhan storage status` once the agent has reported its pools.
async fn storage_status(cloud: &Cloud, needle: &str) -> String {
    eventually("pool figures", Duration::from_secs(30), || async {
        let out = stdout(&cloud.cli(&["storage", "status"]));
        out.contains(needle).then_some(out)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_storage_local_volume_moves_snapshots_restores_and_extends_in_real_guests() {
    let cloud = Cloud::up(&[]).await;
    let (v, sh1, sh2) = two_guests_and_a_volume(&cloud, "local").await;
    let vol_id = v["metadata"]["id"].as_str().unwrap().to_string();
    let file = cloud
        .home
        .path()
        .join(format!("data/agent/volumes/volumes/{vol_id}.raw"));
    let meta = std::fs::metadata(&file).expect("the volume's file");
    assert_eq!(meta.len(), 64 << 20);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 1 << 20,
        "thin"
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );

    volume_lifecycle(&cloud, &v, sh1, sh2).await;
    assert!(!file.exists(), "the volume's file is gone");
    let out = storage_status(&cloud, "local").await;
    assert!(
        out.contains("CAPACITY") && out.contains("OVERCOMMIT"),
        "{out}"
    );
    assert!(out.contains("host file system"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_storage_ceph_volume_moves_snapshots_restores_and_extends_in_real_guests() {
    let (ceph, cloud) = ceph_cloud().await;
    let conf = ceph.conf().to_str().unwrap().to_string();
    let out = storage_status(&cloud, "rbdvols").await;
    assert!(out.contains("HEALTH_OK"), "{out}");
    assert!(
        out.contains("replicated size 3 min_size 2, failure domain osd"),
        "{out}"
    );
    let (v, sh1, sh2) = two_guests_and_a_volume(&cloud, "rbdvols").await;
    volume_lifecycle(&cloud, &v, sh1, sh2).await;

    // Boot from a volume that is an RBD copy-on-write clone of a disk image.
    ok(&cloud, &strs(&disk_image_args("tiny")));
    let img_id = show(&cloud, "image", "tiny")["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&cloud, &bootable_root_args("root1", "rbdvols"));
    let root = show(&cloud, "volume", "root1");
    let root_id = root["metadata"]["id"].as_str().unwrap().to_string();
    let info = std::process::Command::new("rbd")
        .args([
            "-c",
            &conf,
            "info",
            &format!("rbdvols/{root_id}"),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).expect("rbd info JSON");
    assert_eq!(
        info["parent"]["image"],
        format!(".img.{img_id}").as_str(),
        "a CoW clone: {info}"
    );
    assert_eq!(info["size"].as_u64(), Some(GIB), "{info}");
    ok(
        &cloud,
        &tiny_vm("vm3", &["--boot-volume", "root1", "--wait"]),
    );
    eventually(
        "vm3 booted from its RBD root",
        Duration::from_secs(240),
        || async {
            let log = stdout(&cloud.cli(&["vm", "log", "vm3"]));
            (log.contains("YUNHAN-BOOT count=1") && log.contains("YUNHAN-READY hostname=vm3"))
                .then_some(())
        },
    )
    .await;
    let vm3 = show(&cloud, "vm", "vm3");
    let root = wait_phase(&cloud, "volume", "root1", "InUse").await;
    assert_eq!(
        root["status"]["attached_to"], vm3["metadata"]["id"],
        "{root}"
    );
    assert!(
        !cloud
            .home
            .path()
            .join(format!(
                "data/agent/vms/{}/disk.raw",
                vm3["metadata"]["id"].as_str().unwrap()
            ))
            .exists(),
        "no local copy"
    );
    let out = cloud.cli(&["volume", "delete", "root1"]);
    assert!(stderr(&out).contains("root disk"), "{}", stderr(&out));
    ok(&cloud, &["vm", "delete", "vm3", "--wait"]);
    ok(&cloud, &["volume", "delete", "root1", "--wait"]);

    // The volumes are gone from the pool.
    let out = std::process::Command::new("rbd")
        .args(["-c", &conf, "ls", "-p", "rbdvols"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("vol-"), "{}", stdout(&out));
}

#[tokio::test]
async fn e2e_storage_bad_input_is_refused_and_nothing_is_left() {
    let cloud = Cloud::up(&[]).await;
    let t = cloud.token.clone();
    let post = |spec: Value| {
        let body = json!({"metadata": {"name": "bad"}, "spec": spec});
        let cloud = &cloud;
        async move { cloud.admin("POST", "/v1/volumes", Some(&body)).await }
    };
    let cases = [
        ("size 0", json!({"size_bytes": 0}), 400, "invalid_field"),
        (
            "absurd size",
            json!({"size_bytes": 1u64 << 60}),
            400,
            "invalid_field",
        ),
        (
            "partial sector",
            json!({"size_bytes": 1000}),
            400,
            "invalid_field",
        ),
        (
            "unknown pool",
            json!({"size_bytes": GIB, "pool": "gold"}),
            404,
            "not_found",
        ),
        (
            "unknown snapshot",
            json!({"size_bytes": GIB, "source": {"snapshot": "nope"}}),
            404,
            "not_found",
        ),
        (
            "unknown image",
            json!({"size_bytes": GIB, "source": {"image": "nope"}}),
            404,
            "not_found",
        ),
        (
            "unknown instance",
            json!({"size_bytes": GIB, "instance": "nope"}),
            404,
            "not_found",
        ),
        (
            "restore on create",
            json!({"size_bytes": GIB, "restore": {"snapshot": "x", "generation": 1}}),
            400,
            "invalid_field",
        ),
    ];
    for (what, spec, status, code) in cases {
        let (s, v) = post(spec).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{what}: {v}");
    }
    let (s, v) = cloud
        .admin(
            "POST",
            "/v1/snapshots",
            Some(&json!({"metadata": {"name": "s"}, "spec": {"volume": "nope"}})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");

    let vol = cloud
        .create(&t, "volumes", "v", json!({"size_bytes": GIB}))
        .await;
    let id = vol["metadata"]["id"].as_str().unwrap();
    let update = |spec: Value| {
        let cloud = &cloud;
        let path = format!("/v1/volumes/{id}");
        async move {
            cloud
                .admin("PUT", &path, Some(&json!({"spec": spec})))
                .await
        }
    };
    let (s, v) = update(json!({"size_bytes": GIB / 2})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalid_field")),
        "shrink: {v}"
    );
    assert!(v["message"].as_str().unwrap().contains("shrink"), "{v}");
    let (s, v) = update(json!({"size_bytes": GIB, "pool": "other"})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("conflict")),
        "pool change: {v}"
    );
    let (s, v) =
        update(json!({"size_bytes": GIB, "restore": {"snapshot": "nope", "generation": 1}})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("not_found")),
        "restore from nothing: {v}"
    );

    // Another project sees nothing.
    let other = cloud.tenant("other", None).await;
    let (s, _) = cloud
        .call(
            "GET",
            &format!("/v1/volumes/{id}"),
            Some(&other.token),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, v) = cloud
        .call(
            "POST",
            "/v1/snapshots",
            Some(&other.token),
            Some(&json!({"metadata": {"name": "s"}, "spec": {"volume": id}})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");

    // The one good volume is made by the agent, charged once, and deleted cleanly.
    let v = wait_phase(&cloud, "volume", "v", "Available").await;
    assert!(
        v["status"]["host"].as_str().unwrap().starts_with("hst-"),
        "{v}"
    );
    let (_, list) = cloud.admin("GET", "/v1/volumes", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let (_, p) = cloud.admin("GET", "/v1/projects/admin", None).await;
    assert_eq!(p["status"]["usage"]["volume_gib"], 1);
    // Deleting the VM a volume is attached to detaches it.
    cloud.image(&t, "img").await;
    ok(
        &cloud,
        &[
            "vm",
            "create",
            "x",
            "--image",
            "img",
            "--flavor",
            "tiny",
            "--stopped",
        ],
    );
    ok(&cloud, &["volume", "attach", "v", "--vm", "x"]);
    let out = cloud.cli(&["volume", "delete", "v"]);
    assert!(stderr(&out).contains("detach it first"), "{}", stderr(&out));
    ok(&cloud, &["vm", "delete", "x", "--wait"]);
    assert!(show(&cloud, "volume", "v")["spec"]["instance"].is_null());
    ok(&cloud, &["volume", "delete", "v", "--wait"]);
    let dir = cloud.home.path().join("data/agent/volumes/volumes");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file left");
}

/// The md5 sum the guest printed (32 hex digits before "  -").
fn md5_of(out: &str) -> String {
    out.split_whitespace()
        .zip(out.split_whitespace().skip(1))
        .find(|(h, dash)| *dash == "-" && h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| panic!("no md5 sum in {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_storage_ceph_osd_stopped_while_the_guest_writes_no_io_error_data_intact() {
    const BLOCKS: u32 = 512; // 2 MiB in 4 KiB writes, each fsync'ed
    let (ceph, cloud) = ceph_cloud().await;
    let conf = ceph.conf().to_str().unwrap().to_string();
    let (v, mut shells) = guests_and_a_volume(&cloud, "rbdvols", &["vm1"]).await;
    let mut sh = shells.pop().unwrap();
    let vol_id = v["metadata"]["id"].as_str().unwrap().to_string();
    ok(&cloud, &["volume", "attach", "v1", "--vm", "vm1", "--wait"]);
    let dev = device_of(&mut sh, &vol_id).await;
    // A 4 KiB block of a known pattern, and the checksum of BLOCKS copies.
    sh.run("i=0; : > /tmp/blk; while [ $i -lt 256 ]; do printf 'YUNHAN-FAULT%04d' $i >> /tmp/blk; i=$((i+1)); done")
        .await;
    let want = md5_of(
        &sh.run(&format!(
            "i=0; while [ $i -lt {BLOCKS} ]; do cat /tmp/blk; i=$((i+1)); done | md5sum"
        ))
        .await,
    );
    // Read from the disk, not the guest's page cache (dropped first).
    let read_back = format!(
        "sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/{dev} bs=4096 count={BLOCKS} 2>/dev/null | md5sum"
    );

    // The guest writes while one of the three OSDs is stopped (size 3,
    // min_size 2: the writes are acknowledged by the two others).
    let writer = format!(
        "err=0; i=0; while [ $i -lt {BLOCKS} ]; do dd if=/tmp/blk of=/dev/{dev} bs=4096 seek=$i count=1 conv=fsync 2>/dev/null || err=$((err+1)); i=$((i+1)); done; echo \"ioerrors=$err=\""
    );
    let ((out, written_at), stopped_at) = tokio::join!(
        async {
            let out = sh.run_within(&writer, Duration::from_secs(180)).await;
            (out, std::time::Instant::now())
        },
        async {
            tokio::task::block_in_place(|| ceph.osd_stop(1));
            std::time::Instant::now()
        }
    );
    assert!(
        written_at > stopped_at,
        "the writes went on after the OSD was down"
    );
    let out = out.expect("the writes finished");
    assert!(out.contains("ioerrors=0="), "{out}");
    let health = |conf: &str| {
        let out = std::process::Command::new("ceph")
            .args(["-c", conf, "health"])
            .output()
            .unwrap();
        stdout(&out)
    };
    assert!(
        health(&conf).contains("HEALTH_WARN"),
        "degraded while the OSD is down"
    );
    assert_eq!(
        md5_of(&sh.run(&read_back).await),
        want,
        "data intact (degraded)"
    );

    // The OSD returns: the cluster recovers to HEALTH_OK, the data is the same.
    tokio::task::block_in_place(|| ceph.osd_start(1));
    eventually(
        "HEALTH_OK after the OSD returned",
        Duration::from_secs(120),
        || async { health(&conf).starts_with("HEALTH_OK").then_some(()) },
    )
    .await;
    assert_eq!(
        md5_of(&sh.run(&read_back).await),
        want,
        "data intact (recovered)"
    );
    let log = stdout(&cloud.cli(&["vm", "log", "vm1"]));
    assert!(
        !log.contains("I/O error"),
        "the guest saw an I/O error: {log}"
    );
    ok(&cloud, &["volume", "detach", "v1", "--wait"]);
    // A second client, outside the guest, reads the same bytes from the cluster.
    let export = format!(
        "rbd -c {conf} export rbdvols/{vol_id} - 2>/dev/null | head -c {} | md5sum",
        BLOCKS * 4096
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &export])
        .output()
        .unwrap();
    assert_eq!(md5_of(&stdout(&out)), want, "rbd export of the volume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_storage_two_hosts_local_volumes_stay_ceph_volumes_follow_the_vm() {
    let (_ceph, ceph_args) = dev_ceph().await;
    let cloud = common::EtcdCloud::start(2, &strs(&ceph_args)).await;
    let run = |args: &[&str]| {
        let out = cloud.cli(args);
        assert!(
            out.status.success(),
            "yunhan {}: {}",
            args.join(" "),
            stderr(&out)
        );
    };
    run(&strs(&kernel_image_args("dk")));
    run(&["placement-group", "create", "spread", "--policy", "hard"]);
    for vm in ["vm-a", "vm-b"] {
        run(&[
            "vm",
            "create",
            vm,
            "--image",
            "dk",
            "--flavor",
            "tiny",
            "--placement-group",
            "spread",
            "--stopped",
        ]);
    }
    // Two local volumes: the binder spreads them over the two hosts.
    for v in ["l1", "l2"] {
        run(&["volume", "create", v, "--size", "64MiB", "--wait"]);
    }
    let host = |kind: &str, name: &str| -> String {
        cloud.show(kind, name)["status"]["host"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (h1, h2) = (host("volume", "l1"), host("volume", "l2"));
    assert!(
        h1.starts_with("hst-") && h2.starts_with("hst-") && h1 != h2,
        "{h1} {h2}"
    );
    let (vm_there, vm_here) = eventually("both VMs placed", Duration::from_secs(30), || async {
        let (a, b) = (host("vm", "vm-a"), host("vm", "vm-b"));
        if a.is_empty() || b.is_empty() {
            return None;
        }
        Some(if a == h1 {
            ("vm-b", "vm-a")
        } else {
            ("vm-a", "vm-b")
        })
    })
    .await;
    // A local volume only attaches to VMs on its host.
    let out = cloud.cli(&["volume", "attach", "l1", "--vm", vm_there]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only attach to VMs on its host"),
        "{}",
        stderr(&out)
    );
    run(&["volume", "attach", "l1", "--vm", vm_here]);

    // A Ceph volume made on one host follows the VM to the other: rebound on
    // attach, then plugged by the agent there.
    run(&[
        "volume", "create", "c1", "--size", "64MiB", "--pool", "rbdvols", "--wait",
    ]);
    let c1_host = host("volume", "c1");
    let target = if host("vm", "vm-a") == c1_host {
        "vm-b"
    } else {
        "vm-a"
    };
    run(&["vm", "start", target, "--wait"]);
    run(&["volume", "attach", "c1", "--vm", target, "--wait"]);
    let c1 = cloud.show("volume", "c1");
    let vm = cloud.show("vm", target);
    assert_eq!(c1["status"]["host"], vm["status"]["host"], "{c1}");
    assert_ne!(c1["status"]["host"].as_str(), Some(c1_host.as_str()));
    assert_eq!(c1["status"]["attached_to"], vm["metadata"]["id"], "{c1}");
    run(&["volume", "detach", "c1", "--wait"]);
    run(&["volume", "detach", "l1"]);
    for v in ["c1", "l1", "l2"] {
        run(&["volume", "delete", v, "--wait"]);
    }
}
