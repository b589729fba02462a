//! Tenant isolation through the real binary (issue #13, items 5 and 6): a VM's
//! QEMU, under its own uid, reads nothing on the host but its own VM directory;
//! placement groups belong to a project, so another tenant's group of the same
//! name never changes where (or whether) a VM is placed.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{disk_image_args, eventually, stderr, strs, tiny_vm, Cloud, Tenant};
use serde_json::{json, Value};

fn vm_id(cloud: &Cloud, name: &str) -> String {
    let out = cloud.cli(&["vm", "show", name, "-o", "json"]);
    assert!(out.status.success(), "vm show {name}: {}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["metadata"]["id"].as_str().unwrap().to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `cmd` under exactly the uid and gid a VM's QEMU has (no supplementary groups).
fn run_as(ids: (u32, u32), cmd: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .arg(format!("--reuid={}", ids.0))
        .arg(format!("--regid={}", ids.1))
        .arg("--clear-groups")
        .args(cmd)
        .output()
        .expect("setpriv (util-linux)")
}

fn assert_denied(ids: (u32, u32), cmd: &[&str]) {
    let out = run_as(ids, cmd);
    assert!(
        !out.status.success() && stderr(&out).contains("Permission denied"),
        "the QEMU uid {} must not be able to run {cmd:?}: status {}, stdout {:?}, stderr {:?}",
        ids.0,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

fn assert_allowed(ids: (u32, u32), cmd: &[&str]) {
    let out = run_as(ids, cmd);
    assert!(
        out.status.success(),
        "the QEMU uid {} must be able to run {cmd:?}: {}",
        ids.0,
        stderr(&out)
    );
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_vms_qemu_reads_nothing_on_the_host_but_its_own_directory() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: per-VM QEMU uids need root");
        return;
    }
    let mut cloud = Cloud::up(&[]).await;
    let out = cloud.cli(&strs(&disk_image_args("tiny")));
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["va", "vb"] {
        let out = cloud.cli(&tiny_vm(name, &["--wait", "--timeout", "240s"]));
        assert!(out.status.success(), "vm create {name}: {}", stderr(&out));
    }
    let data = cloud.home.path().join("data");
    let vms = data.join("agent/vms");
    let (a, b) = (vms.join(vm_id(&cloud, "va")), vms.join(vm_id(&cloud, "vb")));
    let uid: u32 = std::fs::read_to_string(a.join("uid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ids = (uid, std::fs::metadata(&a).unwrap().gid());
    assert_ne!(
        std::fs::metadata(&b).unwrap().uid(),
        uid,
        "each VM has its own uid"
    );

    // The modes docs/compute.md states.
    let images = data.join("images");
    let image_files = files_in(&images);
    assert!(!image_files.is_empty(), "the image store holds the image");
    for (path, want) in [
        (data.clone(), 0o711),
        (data.join("store"), 0o700),
        (data.join("store/store.redb"), 0o600),
        (images.clone(), 0o700),
        (data.join("agent"), 0o711),
        (vms.clone(), 0o711),
        (data.join("agent/volumes"), 0o711),
        (data.join("agent/volumes/snapshots"), 0o700),
        (a.clone(), 0o700),
        (b.clone(), 0o700),
    ] {
        assert_eq!(
            (path.display().to_string(), mode(&path)),
            (path.display().to_string(), want)
        );
    }

    // What VM A's QEMU cannot do: read the store, the images, VM B's files, list the VMs.
    let p = |p: &Path| p.to_str().unwrap().to_string();
    assert_denied(ids, &["cat", &p(&data.join("store/store.redb"))]);
    assert_denied(ids, &["ls", &p(&data.join("store"))]);
    assert_denied(ids, &["ls", &p(&images)]);
    for f in &image_files {
        assert_denied(ids, &["cat", &p(f)]);
    }
    assert_denied(ids, &["ls", &p(&vms)]);
    assert_denied(ids, &["ls", &p(&data.join("agent"))]);
    assert_denied(ids, &["ls", &p(&b)]);
    assert_denied(ids, &["cat", &p(&b.join("disk.raw"))]);
    assert_denied(ids, &["cat", &p(&b.join("serial.log"))]);
    assert_denied(ids, &["ls", &p(&data.join("agent/volumes"))]);
    // What it still can: reach its own directory (its VM runs from there).
    assert_allowed(ids, &["ls", &p(&a)]);
    assert_allowed(ids, &["test", "-r", &p(&a.join("disk.raw"))]);
    let out = cloud.cli(&["vm", "show", "va", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["phase"], "Running", "{v}");

    // An older data directory is tightened when the cloud starts on it.
    for d in [&data, &vms, &images] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in &image_files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    cloud.kill9();
    cloud.start().await;
    assert_eq!(
        [mode(&data), mode(&vms), mode(&images)],
        [0o711, 0o711, 0o700]
    );
    for f in &image_files {
        assert_eq!((f.clone(), mode(f)), (f.clone(), 0o600));
    }
    assert_denied(ids, &["ls", &p(&vms)]);
}

async fn post(cloud: &Cloud, t: &Tenant, plural: &str, body: Value) -> (u16, Value) {
    let path = format!("/v1/{plural}");
    cloud.call("POST", &path, Some(&t.token), Some(&body)).await
}

/// Creates stopped VM `name` of `t` in placement group `group` (name or id); asserts 201.
async fn member(cloud: &Cloud, t: &Tenant, name: &str, group: &str) -> Value {
    let spec =
        json!({"image": "img", "flavor": "tiny", "running": false, "placement_group": group});
    let (s, v) = post(
        cloud,
        t,
        "instances",
        json!({"metadata": {"name": name}, "spec": spec}),
    )
    .await;
    assert_eq!(s, 201, "{name}: {v}");
    v
}

async fn settled(cloud: &Cloud, t: &Tenant, id: &str) -> Value {
    let path = format!("/v1/instances/{id}");
    eventually(
        &format!("{id} scheduled or refused"),
        Duration::from_secs(30),
        || async {
            let (_, v) = cloud.call("GET", &path, Some(&t.token), None).await;
            let placed = v["status"]["host"].is_string();
            (placed || v["status"]["phase"] == "Unschedulable").then_some(v)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_placement_groups_of_the_same_name_in_two_projects_never_interact() {
    let cloud = Cloud::up(&[]).await;
    let (ta, tb) = (
        cloud.tenant("ta", None).await,
        cloud.tenant("tb", None).await,
    );
    let hard = json!({"policy": "hard_anti_affinity"});
    let mut gid = Vec::new();
    for t in [&ta, &tb] {
        cloud.image(&t.token, "img").await;
        let body = json!({"metadata": {"name": "db"}, "spec": hard});
        let (s, g) = post(&cloud, t, "placement-groups", body).await;
        assert_eq!(s, 201, "{g}");
        gid.push(g["metadata"]["id"].as_str().unwrap().to_string());
    }
    // A's first member takes the only host; B's `db` members are placed beside it.
    let a1 = member(&cloud, &ta, "a1", "db").await;
    assert_eq!(a1["spec"]["placement_group"], gid[0], "stored as the id");
    let a1 = settled(&cloud, &ta, a1["metadata"]["id"].as_str().unwrap()).await;
    let host = a1["status"]["host"]
        .as_str()
        .expect("a1 placed")
        .to_string();
    let b1 = member(&cloud, &tb, "b1", "db").await;
    assert_eq!(b1["spec"]["placement_group"], gid[1]);
    let b1 = settled(&cloud, &tb, b1["metadata"]["id"].as_str().unwrap()).await;
    assert_eq!(b1["status"]["host"], host.as_str(), "{b1}");
    // A's rule is A's: its second member has no other host, whatever B named its group.
    let a2 = member(&cloud, &ta, "a2", &gid[0]).await;
    let a2 = settled(&cloud, &ta, a2["metadata"]["id"].as_str().unwrap()).await;
    assert_eq!(a2["status"]["phase"], "Unschedulable", "{a2}");
    let why = a2["status"]["message"].as_str().unwrap();
    assert!(why.contains("hard anti-affinity"), "{why}");

    // B naming A's group by its id: refused exactly like an id that does not exist.
    let missing = "pg-0000000000000000";
    let mut refusals = Vec::new();
    for g in [gid[0].as_str(), missing, "nosuch"] {
        let spec =
            json!({"image": "img", "flavor": "tiny", "running": false, "placement_group": g});
        let r = post(
            &cloud,
            &tb,
            "instances",
            json!({"metadata": {"name": "bx"}, "spec": spec}),
        )
        .await;
        assert_eq!(
            (r.0, r.1["code"].as_str()),
            (400, Some("invalid_field")),
            "{g}: {}",
            r.1
        );
        let msg = r.1["message"].as_str().unwrap().to_string();
        assert!(msg.contains("'yunhan placement-group list'"), "{msg}");
        refusals.push(msg.replace(g, "X"));
    }
    assert_eq!(
        refusals[0], refusals[1],
        "another project's group looks missing"
    );
    assert_eq!(
        refusals[0],
        "placement group \"X\" does not exist; 'yunhan placement-group list' shows the placement groups"
    );

    // A's group still has members, so it cannot be deleted (the check compares ids).
    let (s, v) = cloud
        .call(
            "DELETE",
            &format!("/v1/placement-groups/{}", gid[0]),
            Some(&ta.token),
            None,
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("still has instance"),
        "{v}"
    );
}
