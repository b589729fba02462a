//! Images through the real binary, as a tenant would try to misuse them: only
//! admins publish (create and update), names resolve to the caller's own
//! project first, data are written once and only in parts of the image's kind,
//! odd raw disks are refused, images count against the project's quota (count
//! and bytes — a plain raw over it and a qcow2 that would unpack past it leave
//! nothing behind), members never see server paths, and server-path imports
//! come only from the import directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Cloud, Tenant};
use serde_json::{json, Value};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// `PUT /v1/images/{id}/data?{query}` with `body`; the status and JSON answer.
async fn put_data(
    cloud: &Cloud,
    token: &str,
    id: &str,
    query: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let r = cloud
        .http
        .put(format!("{}/v1/images/{id}/data?{query}", cloud.endpoint))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The same upload without a Content-Length (chunked): the server only learns
/// the size while receiving.
async fn put_chunked(
    cloud: &Cloud,
    token: &str,
    id: &str,
    chunks: usize,
    len: usize,
) -> (u16, Value) {
    let parts = (0..chunks).map(move |_| Ok::<_, std::io::Error>(vec![0xabu8; len]));
    let r = cloud
        .http
        .put(format!("{}/v1/images/{id}/data", cloud.endpoint))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(parts)))
        .send()
        .await
        .expect("upload");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn new_image(cloud: &Cloud, token: &str, name: &str, spec: Value) -> String {
    let img = cloud.create(token, "images", name, spec).await;
    img["metadata"]["id"].as_str().unwrap().to_string()
}

fn image_store(cloud: &Cloud) -> PathBuf {
    cloud.home.path().join("data/images")
}

/// The files in the image store (sorted names).
fn stored_files(cloud: &Cloud) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(image_store(cloud))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn usage(cloud: &Cloud, project: &str) -> Value {
    let (s, p) = cloud
        .admin("GET", &format!("/v1/projects/{project}"), None)
        .await;
    assert_eq!(s, 200, "{p}");
    p["status"]["usage"].clone()
}

/// A compressed qcow2 `dir/NAME.qcow2` of `bytes` of one repeated byte: tiny on
/// the wire, `bytes` once converted.
fn compressed_qcow2(dir: &std::path::Path, name: &str, bytes: u64) -> std::path::PathBuf {
    let pattern = dir.join(format!("{name}.raw"));
    std::fs::write(&pattern, vec![0x5au8; bytes as usize]).unwrap();
    let out = dir.join(format!("{name}.qcow2"));
    let (src, dst) = (pattern.to_str().unwrap(), out.to_str().unwrap());
    qemu_img(&["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", src, dst]);
    out
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_code(what: &str, got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(
        (got.0, got.1["code"].as_str()),
        (status, Some(code)),
        "{what}: {}",
        got.1
    );
}

/// A tenant whose image quota is `images` images and `bytes` bytes.
async fn tenant_with_image_quota(cloud: &Cloud, name: &str, images: u64, bytes: u64) -> Tenant {
    let quota = json!({"instances": 10, "vcpus": 20, "memory_mib": 40960, "volume_gib": 100,
        "elastic_ips": 1, "images": images, "image_bytes": bytes});
    cloud.tenant(name, Some(quota)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_only_admins_publish_and_names_resolve_to_the_own_project_first() {
    let cloud = Cloud::up(&[]).await;
    let t1 = cloud.tenant("t1", None).await;
    let t2 = cloud.tenant("t2", None).await;

    let create = json!({"metadata": {"name": "mine"}, "spec": {"public": true}});
    let r = cloud
        .call("POST", "/v1/images", Some(&t1.token), Some(&create))
        .await;
    assert_code("a member creating a public image", &r, 403, "forbidden");

    cloud.image(&t1.token, "tiny").await;
    let publish = json!({"spec": {"public": true}});
    let r = cloud
        .call("PUT", "/v1/images/tiny", Some(&t1.token), Some(&publish))
        .await;
    assert_code("a member publishing by update", &r, 403, "forbidden");
    let (_, tiny) = cloud
        .call("GET", "/v1/images/tiny", Some(&t2.token), None)
        .await;
    assert_eq!(tiny["code"], "not_found", "still private: {tiny}");

    // The admin publishes ubuntu-22.04; t2 holds a (Pending) image of that name.
    cloud.image(&cloud.token, "ubuntu-22.04").await;
    let r = cloud
        .admin(
            "PUT",
            "/v1/images/ubuntu-22.04",
            Some(&json!({"spec": {"public": true, "os": "test"}})),
        )
        .await;
    assert_eq!(r.0, 200, "an admin publishes: {}", r.1);
    new_image(&cloud, &t2.token, "ubuntu-22.04", json!({})).await;
    let vm = json!({"metadata": {"name": "v"}, "spec": {"image": "ubuntu-22.04", "flavor": "tiny", "running": false}});
    let r = cloud
        .call("POST", "/v1/instances", Some(&t2.token), Some(&vm))
        .await;
    assert_code(
        "t2's own image wins over the public one",
        &r,
        409,
        "conflict",
    );
    assert!(
        r.1["message"].as_str().unwrap().contains("Pending"),
        "{}",
        r.1
    );
    let r = cloud
        .call("POST", "/v1/instances", Some(&t1.token), Some(&vm))
        .await;
    assert_eq!(r.0, 201, "t1 gets the admin's public image: {}", r.1);
    let id = r.1["metadata"]["id"].as_str().unwrap();
    let (s, _) = cloud
        .call(
            "DELETE",
            &format!("/v1/instances/{id}"),
            Some(&t1.token),
            None,
        )
        .await;
    assert!(s == 204 || s == 202, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_image_data_is_written_once_in_parts_of_its_kind_and_paths_stay_private() {
    let cloud = Cloud::up(&[]).await;
    let t = cloud.tenant("t", None).await;
    let tiny = cloud.image(&t.token, "tiny").await;
    let id = tiny["metadata"]["id"].as_str().unwrap();
    let checksum = tiny["status"]["checksum"].clone();

    let r = put_data(
        &cloud,
        &t.token,
        id,
        "part=disk",
        vec![1u8; 64 * KIB as usize],
    )
    .await;
    assert_code("re-uploading an Active image", &r, 409, "conflict");
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .contains("create a new image"),
        "{}",
        r.1
    );
    let r = put_data(&cloud, &t.token, id, "part=kernel", vec![1u8; 4096]).await;
    assert_code("a kernel onto an Active disk image", &r, 409, "conflict");

    let pending = new_image(&cloud, &t.token, "pending-disk", json!({})).await;
    let r = put_data(&cloud, &t.token, &pending, "part=kernel", vec![1u8; 4096]).await;
    assert_code("a kernel onto a disk image", &r, 409, "conflict");
    assert!(
        r.1["message"].as_str().unwrap().contains("disk image"),
        "{}",
        r.1
    );
    let direct = new_image(
        &cloud,
        &t.token,
        "direct",
        json!({"kernel_cmdline": "console=ttyS0"}),
    )
    .await;
    let r = put_data(
        &cloud,
        &t.token,
        &direct,
        "part=disk",
        vec![0u8; 64 * KIB as usize],
    )
    .await;
    assert_code("a disk onto a direct-kernel image", &r, 409, "conflict");
    let change = json!({"spec": {"kernel_cmdline": "console=ttyS0 init=/bin/evil"}});
    let r = cloud
        .call(
            "PUT",
            &format!("/v1/images/{direct}"),
            Some(&t.token),
            Some(&change),
        )
        .await;
    assert_code("changing the kernel command line", &r, 409, "conflict");

    let files = stored_files(&cloud);
    let r = put_data(&cloud, &t.token, &pending, "part=disk", vec![0u8; 1000]).await;
    assert_code("a raw disk of 1000 bytes", &r, 400, "invalid_field");
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .contains("whole 512-byte sectors"),
        "{}",
        r.1
    );
    assert_eq!(
        stored_files(&cloud),
        files,
        "nothing kept of the refused upload"
    );
    let (_, img) = cloud
        .call(
            "GET",
            &format!("/v1/images/{pending}"),
            Some(&t.token),
            None,
        )
        .await;
    assert_eq!(img["status"]["phase"], "Failed", "{img}");
    assert!(
        img["status"]["message"]
            .as_str()
            .unwrap()
            .contains("512-byte"),
        "{img}"
    );

    // The agent finds the files through the store; tenants never see server paths.
    let (_, mine) = cloud
        .call("GET", "/v1/images/tiny", Some(&t.token), None)
        .await;
    assert_eq!(mine["status"]["checksum"], checksum);
    assert!(mine["status"].get("disk_path").is_none(), "{mine}");
    let (_, list) = cloud.call("GET", "/v1/images", Some(&t.token), None).await;
    let items = list["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|i| i["status"].get("disk_path").is_none()),
        "{list}"
    );
    let (_, seen) = cloud.admin("GET", &format!("/v1/images/{id}"), None).await;
    let path = seen["status"]["disk_path"]
        .as_str()
        .expect("admins see the path");
    assert!(Path::new(path).starts_with(image_store(&cloud)), "{path}");
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a stored image is the server's alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_image_quota_refuses_big_disks_and_qcow2_bombs_leaving_nothing() {
    let cloud = Cloud::up(&[]).await;
    let work = tempfile::tempdir().unwrap();
    // Refused bodies stay small: a server that answers before reading a body
    // closes the connection, and a big unread body would turn into a reset.
    let tight = tenant_with_image_quota(&cloud, "tight", 3, 32 * KIB).await;
    let raw = new_image(&cloud, &tight.token, "raw", json!({})).await;
    let r = put_data(
        &cloud,
        &tight.token,
        &raw,
        "part=disk",
        vec![0xabu8; 48 * KIB as usize],
    )
    .await;
    assert_code(
        "a 48 KiB raw over a 32 KiB quota",
        &r,
        403,
        "quota_exceeded",
    );
    assert_eq!(r.1["details"]["resource"], "image_bytes", "{}", r.1);
    let r = put_chunked(&cloud, &tight.token, &raw, 3, 16 * KIB as usize).await;
    assert_code(
        "the same without a Content-Length",
        &r,
        403,
        "quota_exceeded",
    );
    assert_eq!(usage(&cloud, &tight.project).await["image_bytes"], 0);

    let t = tenant_with_image_quota(&cloud, "small", 3, MIB).await;
    // Within the quota: a disk of data, charged what it holds after conversion.
    let one = new_image(&cloud, &t.token, "one", json!({})).await;
    let r = put_data(
        &cloud,
        &t.token,
        &one,
        "part=disk",
        vec![0xabu8; 64 * KIB as usize],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["status"]["stored_bytes"], 64 * KIB, "{}", r.1);
    let before = usage(&cloud, &t.project).await;
    assert_eq!(before["image_bytes"], 64 * KIB, "{before}");
    assert_eq!(before["images"], 1, "{before}");
    let files = stored_files(&cloud);

    // qcow2 files of a few hundred KiB that would unpack to 4 GiB (empty) or
    // 16 MiB (data): refused before any conversion.
    let empty_bomb = work.path().join("bomb.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        empty_bomb.to_str().unwrap(),
        "4G",
    ]);
    let data_bomb = compressed_qcow2(work.path(), "data-bomb", 16 * MIB);
    let big = new_image(&cloud, &t.token, "big", json!({})).await;
    for bomb in [&empty_bomb, &data_bomb] {
        let bytes = std::fs::read(bomb).unwrap();
        assert!(
            (bytes.len() as u64) < MIB / 2,
            "the bomb itself fits the quota"
        );
        let r = put_data(&cloud, &t.token, &big, "part=disk", bytes).await;
        assert_code(&bomb.display().to_string(), &r, 403, "quota_exceeded");
        assert!(
            r.1["details"]["requested"].as_u64().unwrap() > MIB,
            "{}",
            r.1
        );
    }
    let (_, img) = cloud
        .call("GET", "/v1/images/big", Some(&t.token), None)
        .await;
    assert_eq!(img["status"]["phase"], "Failed", "{img}");
    assert!(
        img["status"]["message"].as_str().unwrap().contains("quota"),
        "{img}"
    );
    assert_eq!(img["status"]["stored_bytes"], 0, "{img}");
    assert_eq!(
        stored_files(&cloud),
        files,
        "no file left of the refused uploads"
    );
    let after = usage(&cloud, &t.project).await;
    assert_eq!(
        after["image_bytes"], before["image_bytes"],
        "nothing charged: {after}"
    );

    // A qcow2 that fits converts; the count quota stops the fourth image.
    let small = compressed_qcow2(work.path(), "small", 256 * KIB);
    let r = put_data(
        &cloud,
        &t.token,
        &big,
        "part=disk",
        std::fs::read(&small).unwrap(),
    )
    .await;
    assert_eq!(r.0, 200, "a 256 KiB qcow2 fits: {}", r.1);
    assert_eq!(r.1["status"]["source_format"], "qcow2");
    assert_eq!(r.1["status"]["stored_bytes"], 256 * KIB, "{}", r.1);
    new_image(&cloud, &t.token, "three", json!({})).await;
    let four = json!({"metadata": {"name": "four"}, "spec": {}});
    let r = cloud
        .call("POST", "/v1/images", Some(&t.token), Some(&four))
        .await;
    assert_code("a fourth image", &r, 403, "quota_exceeded");
    assert_eq!(r.1["details"]["resource"], "images", "{}", r.1);
    let u = usage(&cloud, &t.project).await;
    let held = (u["images"].as_u64(), u["image_bytes"].as_u64());
    assert_eq!(held, (Some(3), Some(320 * KIB)), "{u}");

    // Deleting images gives their quota back.
    for name in ["one", "big", "three"] {
        let (s, _) = cloud
            .call(
                "DELETE",
                &format!("/v1/images/{name}"),
                Some(&t.token),
                None,
            )
            .await;
        assert_eq!(s, 204);
    }
    let u = usage(&cloud, &t.project).await;
    let held = (u["images"].as_u64(), u["image_bytes"].as_u64());
    assert_eq!(held, (Some(0), Some(0)), "{u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_server_path_imports_come_only_from_the_import_directory() {
    let cloud = Cloud::up(&[]).await;
    let import_dir = cloud.home.path().join("data/import");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&import_dir),
        0o700,
        "up creates <data-dir>/import, the server's alone"
    );
    let img = new_image(&cloud, &cloud.token, "imported", json!({})).await;
    let admin = cloud.token.clone();

    let link = import_dir.join("shadow.raw");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    let sneaky = format!("{}/../store", import_dir.display());
    for src in ["/etc/shadow", link.to_str().unwrap(), &sneaky] {
        let r = put_data(&cloud, &admin, &img, &format!("source={src}"), Vec::new()).await;
        assert_code(src, &r, 403, "forbidden");
        let m = r.1["message"].as_str().unwrap();
        assert!(
            m.contains(&import_dir.display().to_string()),
            "says where imports live: {m}"
        );
    }

    let t = cloud.tenant("t", None).await;
    let theirs = new_image(&cloud, &t.token, "theirs", json!({})).await;
    let disk = import_dir.join("disk.raw");
    std::fs::write(&disk, vec![0u8; MIB as usize]).unwrap();
    let source = format!("source={}", disk.display());
    let r = put_data(&cloud, &t.token, &theirs, &source, Vec::new()).await;
    assert_code("a member importing a server path", &r, 403, "forbidden");

    let r = put_data(&cloud, &admin, &img, &source, Vec::new()).await;
    assert_eq!(r.0, 200, "a file in the import directory: {}", r.1);
    assert_eq!(r.1["status"]["phase"], "Active");
}
