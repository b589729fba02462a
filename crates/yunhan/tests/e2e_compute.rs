//! Compute through the real binary: the outside contract with a real
//! QEMU guest under TCG, VMs outliving a kill -9 of the all-in-one process,
//! and hard anti-affinity across two agents.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    disk_image_args, eventually, kernel_image_args, stderr, stdout, strs, tiny_vm, Cloud,
};
use serde_json::Value;

fn vm(cloud: &Cloud, name: &str) -> Value {
    let out = cloud.cli(&["vm", "show", name, "-o", "json"]);
    assert!(out.status.success(), "vm show {name}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn log(cloud: &Cloud, name: &str) -> String {
    stdout(&cloud.cli(&["vm", "log", name]))
}

async fn wait_log(cloud: &Cloud, name: &str, needle: &str, timeout: Duration) -> String {
    eventually(
        &format!("{needle:?} on {name}'s console"),
        timeout,
        || async {
            let l = log(cloud, name);
            l.contains(needle).then_some(l)
        },
    )
    .await
}

/// Types into the guest's shell over the API's WebSocket console and reads the answer.
async fn interactive_console_answers(cloud: &Cloud, id: &str) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let url = format!(
        "{}/v1/instances/{id}/console/attach",
        cloud.endpoint.replace("http://", "ws://")
    );
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", cloud.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("console WebSocket");
    // The guest opens a shell when Enter is pressed; ask it to compute something
    // (repeating until the shell is there), and poll the answer with a deadline.
    ws.send(Message::Binary(b"\n".to_vec().into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while !seen.contains("answer-42") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer on the console: {seen}"
        );
        ws.send(Message::Binary(b"echo answer-$((6*7))\n".to_vec().into()))
            .await
            .unwrap();
        let round = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(round, ws.next()).await {
            if let Message::Binary(b) = msg {
                seen.push_str(&String::from_utf8_lossy(&b));
                if seen.contains("answer-42") {
                    break;
                }
            }
        }
    }
    assert!(seen.contains("answer-42"));
    // Without a token: refused before any upgrade.
    let req = url.into_client_request().unwrap();
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
}

fn proc_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn qemu_pid(cloud: &Cloud, id: &str) -> Option<u32> {
    let p = cloud
        .home
        .path()
        .join(format!("data/agent/vms/{id}/qemu.pid"));
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_compute_contract_image_vm_lifecycle_and_console() {
    let cloud = Cloud::up(&[]).await;
    let out = cloud.cli(&strs(&disk_image_args("tiny")));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cloud.cli(&["flavor", "list"]);
    assert!(stdout(&out).contains("tiny"));

    let out = cloud.cli(&tiny_vm("vm1", &["--wait", "--timeout", "240s"]));
    assert!(out.status.success(), "vm create --wait: {}", stderr(&out));
    let v = vm(&cloud, "vm1");
    assert_eq!(v["status"]["phase"], "Running", "{v}");
    assert!(v["status"]["host"].as_str().unwrap().starts_with("hst-"));
    wait_log(
        &cloud,
        "vm1",
        "YUNHAN-READY hostname=vm1",
        Duration::from_secs(240),
    )
    .await;
    interactive_console_answers(&cloud, v["metadata"]["id"].as_str().unwrap()).await;

    let out = cloud.cli(&["vm", "stop", "vm1", "--wait"]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    assert_eq!(vm(&cloud, "vm1")["status"]["phase"], "Stopped");
    let out = cloud.cli(&["vm", "start", "vm1", "--wait"]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert_eq!(vm(&cloud, "vm1")["status"]["phase"], "Running");

    let id = vm(&cloud, "vm1")["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = qemu_pid(&cloud, &id).expect("a pidfile for the running VM");
    let out = cloud.cli(&["vm", "delete", "vm1", "--wait"]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    eventually("QEMU gone", Duration::from_secs(30), || async {
        (!pid_alive(pid)).then_some(())
    })
    .await;
    assert!(
        !cloud
            .home
            .path()
            .join(format!("data/agent/vms/{id}"))
            .exists(),
        "nothing left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_vms_outlive_a_kill9_of_the_all_in_one_and_are_reattached() {
    let mut cloud = Cloud::up(&[]).await;
    let out = cloud.cli(&strs(&kernel_image_args("dk")));
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["va", "vb"] {
        let out = cloud.cli(&["vm", "create", name, "--image", "dk", "--flavor", "tiny"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for name in ["va", "vb"] {
        wait_log(
            &cloud,
            name,
            &format!("YUNHAN-READY hostname={name}"),
            Duration::from_secs(240),
        )
        .await;
    }
    let ids: Vec<String> = ["va", "vb"]
        .iter()
        .map(|n| {
            vm(&cloud, n)["metadata"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let pids: Vec<u32> = ids.iter().map(|id| qemu_pid(&cloud, id).unwrap()).collect();
    let logs: Vec<String> = ["va", "vb"]
        .iter()
        .map(|n| {
            vm(&cloud, n)["status"]["console_log"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    // Containment: each guest's QEMU runs under its own unprivileged uid and
    // owns only its own files (mode 0600), so one cannot open the other's disk.
    let uids: Vec<u32> = pids.iter().map(|p| proc_uid(*p)).collect();
    assert!(
        uids.iter().all(|u| *u != 0),
        "QEMU must not run as root: {uids:?}"
    );
    assert_ne!(uids[0], uids[1], "one uid per VM");
    for (id, uid) in ids.iter().zip(&uids) {
        use std::os::unix::fs::MetadataExt;
        let disk = cloud
            .home
            .path()
            .join(format!("data/agent/vms/{id}/disk.raw"));
        let meta = std::fs::metadata(&disk)
            .unwrap_or_else(|_| std::fs::metadata(disk.with_file_name("kernel")).unwrap());
        assert_eq!(
            (meta.uid(), meta.mode() & 0o077),
            (*uid, 0),
            "{id}: owned by its VM, private"
        );
    }
    cloud.kill9();
    // The guests keep running and their consoles keep ticking.
    for (pid, log) in pids.iter().zip(&logs) {
        assert!(pid_alive(*pid), "QEMU {pid} died with the agent");
        let before = std::fs::metadata(log).unwrap().len();
        eventually(
            "console output continues",
            Duration::from_secs(30),
            || async { (std::fs::metadata(log).unwrap().len() > before).then_some(()) },
        )
        .await;
    }
    cloud.start().await;
    for (name, pid) in ["va", "vb"].iter().zip(&pids) {
        eventually(
            &format!("{name} reported Running after restart"),
            Duration::from_secs(60),
            || async { (vm(&cloud, name)["status"]["phase"] == "Running").then_some(()) },
        )
        .await;
        let id = vm(&cloud, name)["metadata"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            qemu_pid(&cloud, &id),
            Some(*pid),
            "re-attached, not restarted"
        );
    }
    for name in ["va", "vb"] {
        let out = cloud.cli(&["vm", "delete", name, "--wait"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for pid in pids {
        assert!(!pid_alive(pid));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_two_agents_hard_anti_affinity_spreads_then_refuses() {
    let cloud = common::EtcdCloud::start(2, &[]).await;
    let cli = |args: &[&str]| cloud.cli(args);
    let out = cli(&strs(&kernel_image_args("dk")));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["placement-group", "create", "web", "--policy", "hard"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["web-1", "web-2", "web-3"] {
        let out = cli(&[
            "vm",
            "create",
            name,
            "--image",
            "dk",
            "--flavor",
            "tiny",
            "--placement-group",
            "web",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let show = |name: &str| cloud.show("vm", name);
    let hosts: Vec<String> = eventually(
        "two members placed, the third refused",
        Duration::from_secs(60),
        || async {
            let v: Vec<Value> = ["web-1", "web-2", "web-3"]
                .iter()
                .map(|n| show(n))
                .collect();
            let placed: Vec<String> = v
                .iter()
                .filter_map(|x| x["status"]["host"].as_str().map(str::to_string))
                .collect();
            let refused = v
                .iter()
                .filter(|x| x["status"]["phase"] == "Unschedulable")
                .count();
            (placed.len() == 2 && refused == 1).then_some(placed)
        },
    )
    .await;
    assert_ne!(hosts[0], hosts[1], "hard anti-affinity: different hosts");
    let refused = ["web-1", "web-2", "web-3"]
        .iter()
        .map(|n| show(n))
        .find(|x| x["status"]["phase"] == "Unschedulable")
        .unwrap();
    assert!(
        refused["status"]["message"]
            .as_str()
            .unwrap()
            .contains("anti-affinity"),
        "{refused}"
    );
    for name in ["web-1", "web-2", "web-3"] {
        let out = cli(&["vm", "delete", name, "--wait"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}
