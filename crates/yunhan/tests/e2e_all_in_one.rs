//! `yunhan up` as a fresh user meets it: the outside contract.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{eventually, stderr, stdout, Cloud};
use serde_json::Value;

#[tokio::test]
async fn e2e_up_contract_host_ready_config_health_openapi_metrics() {
    let cloud = Cloud::up(&[]).await;

    // The config names the endpoint and the admin token, mode 0600.
    let cfg = std::fs::read_to_string(cloud.config_path()).unwrap();
    assert!(
        cfg.contains(&format!("endpoint = \"{}\"", cloud.endpoint)),
        "{cfg}"
    );
    assert!(cfg.contains("token = \"yh_"), "{cfg}");
    let mode = std::fs::metadata(cloud.config_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Within 60 s: one host, Ready — as a table and as JSON.
    let table = eventually("host Ready", Duration::from_secs(60), || async {
        let out = cloud.cli(&["host", "list"]);
        let text = stdout(&out);
        (out.status.success() && text.contains("Ready")).then_some(text)
    })
    .await;
    assert!(table.starts_with("NAME"), "a table with headers: {table}");
    let out = cloud.cli(&["host", "list", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hosts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = hosts.as_array().unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["status"]["phase"], "Ready");

    let (s, h) = cloud.call("GET", "/healthz", None, None).await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let (s, doc) = cloud.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/instances"]["post"].is_object());
    let metrics = cloud
        .http
        .get(format!("{}/metrics", cloud.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# TYPE yunhan_http_requests_total counter"),
        "{text}"
    );
    // The store revision would tell anyone how busy other tenants are: admins, and the
    // machine's own operator (a scrape from loopback; elsewhere: api/tests/metrics_scope.rs).
    assert!(text.contains("yunhan_store_revision"), "{text}");

    // Out of the box: flavors, including a small one.
    let out = cloud.cli(&["flavor", "list"]);
    assert!(stdout(&out).contains("small"), "{}", stdout(&out));
}

#[tokio::test]
async fn e2e_cli_errors_teach_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    // No config yet: say how to start.
    let out = std::process::Command::new(common::BIN)
        .args(["host", "list"])
        .env("HOME", home.path())
        .env_remove("YUNHAN_ENDPOINT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("yunhan up"), "{}", stderr(&out));
    // Connection refused: say the server is not running and how to start it.
    let out = std::process::Command::new(common::BIN)
        .args([
            "host",
            "list",
            "--endpoint",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach") && err.contains("yunhan up"),
        "{err}"
    );
}

#[tokio::test]
async fn e2e_vm_create_is_scheduled_and_delete_wait_finishes() {
    let cloud = Cloud::up(&[]).await;
    let disk = cloud.home.path().join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let out = cloud.cli(&[
        "image",
        "create",
        "tiny",
        "--os",
        "busybox",
        "--file",
        disk.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Active"), "{}", stdout(&out));
    // Not a disk: refused, and the image is rolled back.
    let junk = cloud.home.path().join("junk.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "/etc/hostname",
            "-F",
            "raw",
        ])
        .arg(&junk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cloud.cli(&[
        "image",
        "create",
        "escape",
        "--file",
        junk.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("backing file"), "{}", stderr(&out));
    let out = cloud.cli(&["image", "list"]);
    assert!(!stdout(&out).contains("escape"), "{}", stdout(&out));
    let out = cloud.cli(&[
        "vm", "create", "vm1", "--image", "tiny", "--flavor", "tiny", "-o", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The scheduler binds it to the only host.
    let host = eventually("vm1 scheduled", Duration::from_secs(30), || async {
        let out = cloud.cli(&["vm", "show", "vm1", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["status"]["host"].as_str().map(str::to_string)
    })
    .await;
    assert!(host.starts_with("hst-"));
    let out = cloud.cli(&["vm", "delete", "vm1", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cloud.cli(&["vm", "show", "vm1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    // Quota released.
    let (_, p) = cloud.admin("GET", "/v1/projects/admin", None).await;
    assert_eq!(p["status"]["usage"]["instances"], 0, "{p}");
}

#[tokio::test]
async fn e2e_kill9_mid_write_loses_no_acknowledged_write() {
    let mut cloud = Cloud::up(&[]).await;
    let token = cloud.token.clone();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let http = cloud.http.clone();
        let url = format!("{}/v1/volumes", cloud.endpoint);
        let token = token.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let body = serde_json::json!({"metadata": {"name": format!("v{w}-{i}")}, "spec": {"size_bytes": 1073741824u64}});
                match http.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status() == 201 => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        acked.lock().unwrap().push(v["metadata"]["id"].as_str().unwrap_or_default().to_string());
                    }
                    _ => return,
                }
            }
        }));
    }
    eventually(
        "some acknowledged writes",
        Duration::from_secs(60),
        || async { (acked.lock().unwrap().len() >= 200).then_some(()) },
    )
    .await;
    cloud.kill9(); // mid-write: the writers are still going
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    cloud.start().await;
    for id in &acked {
        let (s, v) = cloud.admin("GET", &format!("/v1/volumes/{id}"), None).await;
        assert_eq!(s, 200, "acknowledged volume {id} lost after kill -9: {v}");
    }
    // Quota usage matches the objects that exist (written in the same transactions).
    let (_, vols) = cloud.admin("GET", "/v1/volumes?limit=1000", None).await;
    let n = vols["items"].as_array().unwrap().len() as u64;
    let (_, p) = cloud.admin("GET", "/v1/projects/admin", None).await;
    assert_eq!(p["status"]["usage"]["volume_gib"].as_u64().unwrap(), n);
    assert!(n >= acked.len() as u64);
}
