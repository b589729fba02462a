//! The web console in a real browser: Debian's Chromium, driven by playwright-core
//! (`crates/console/web/e2e/console.e2e.mjs`), against a `yunhan up` started here. The
//! script logs in through the form, builds a VPC, a subnet and a VM with the console's
//! forms, sees the VM run and its serial console and metrics, stops and deletes it,
//! uploads an image with progress and attaches a volume. It shows
//! `<img src=x onerror=alert(1)>` as text (the API refuses it as a VM name, with a message
//! the form shows; as a label value it is stored and must render as those characters),
//! checks the CSP and a cross-site form POST, and logs in as a member of another project
//! who sees none of the admin's VMs or admin pages. The cloud runs on a `scripts/ceph-dev`
//! cluster with its S3 gateway, so the script also uploads, downloads and deletes a file in
//! a bucket's file browser. Screenshots go to
//! `target/artifacts/console/`.

mod common;

use std::process::Command;

use common::onebox::OneBox;
use common::{kernel_image_args, strs, Cloud};
use serde_json::{json, Value};

const ADMIN_PASSWORD: &str = "admin console password";
const MEMBER_PASSWORD: &str = "member console password";

async fn set_password(cloud: &Cloud, user: &str, password: &str) {
    let body = json!({ "password": password });
    let path = format!("/v1/users/{user}/password");
    let (s, v) = cloud.admin("PUT", &path, Some(&body)).await;
    assert_eq!(s, 204, "{v}");
}

/// Runs the browser script; its steps print as it goes.
fn run_browser(cloud: &Cloud, env: &[(&str, String)]) {
    let web = yunhan_testkit::workspace_root().join("crates/console/web");
    let script = web.join("e2e/console.e2e.mjs");
    let out = Command::new("node")
        .arg(&script)
        .current_dir(&web)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("YH_URL", &cloud.endpoint)
        .output()
        .expect("node runs (scripts/setup installs it; scripts/console installs the packages)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "the browser test failed:\n{text}");
}

#[tokio::test]
async fn e2e_console_drives_the_cloud_from_a_real_browser() {
    // On Ceph with its S3 gateway, so the bucket file browser is driven too. The VPC the
    // browser builds is realised in a namespace standing for the host, so its nft tables,
    // bridges and router namespaces go with it.
    let onebox = OneBox::new();
    let (_ceph, cloud) = Cloud::on_ceph_with_s3(&["--netns", &onebox.host]).await;
    cloud.ok(&strs(&kernel_image_args("tiny")));
    set_password(&cloud, "admin", ADMIN_PASSWORD).await;
    let member = cloud.tenant("p2", None).await;
    set_password(&cloud, "p2-user", MEMBER_PASSWORD).await;
    // The admin's own VM, which the member must never see.
    let other: Value = cloud.ok(&[
        "vm",
        "create",
        "admin-only",
        "--image",
        "tiny",
        "--flavor",
        "tiny",
    ]);
    let other_id = other["metadata"]["id"].as_str().unwrap().to_string();
    assert!(member.token.starts_with("yh_"));

    let work = tempfile::tempdir().unwrap();
    let upload = work.path().join("upload.raw");
    std::fs::write(&upload, vec![0u8; 4 << 20]).unwrap();
    let artifacts = yunhan_testkit::workspace_root().join("target/artifacts/console");
    std::fs::create_dir_all(&artifacts).unwrap();
    let env = [
        ("YH_ADMIN_USER", "admin".to_string()),
        ("YH_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
        ("YH_MEMBER_USER", "p2-user".to_string()),
        ("YH_MEMBER_PASSWORD", MEMBER_PASSWORD.to_string()),
        ("YH_OTHER_VM_ID", other_id),
        ("YH_IMAGE", "tiny".to_string()),
        ("YH_FLAVOR", "tiny".to_string()),
        // The test guest's heartbeat prints this on its serial console every few seconds.
        ("YH_MARKER", "YUNHAN-TICK".to_string()),
        ("YH_UPLOAD_FILE", upload.display().to_string()),
        ("YH_ARTIFACTS", artifacts.display().to_string()),
        ("YH_S3", "1".to_string()),
    ];
    run_browser(&cloud, &env);
    // The member's session touched nothing of the admin's.
    let vms = cloud.ok(&["vm", "list"]);
    let names: Vec<&str> = vms
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"admin-only"), "{names:?}");
}
