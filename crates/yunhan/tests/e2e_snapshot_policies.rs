//! Snapshot policies through the real binary (`yunhan up`, the local pool): a policy
//! every 5 s with keep 3 takes its snapshots, prunes its own oldest and never a user's,
//! stops when disabled and leaves its snapshots when deleted; the API's refusals.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, stderr, Cloud};
use serde_json::{json, Value};
use yunhan_model::epoch_of;

const GIB: u64 = 1 << 30;

/// `GET path` as the admin; panics unless 200.
async fn get(cloud: &Cloud, path: &str) -> Value {
    let (s, v) = cloud.admin("GET", path, None).await;
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

/// The snapshots the policy `id` made (by its label), oldest name first.
async fn policy_snapshots(cloud: &Cloud, id: &str) -> Vec<Value> {
    let list = get(cloud, "/v1/snapshots").await;
    let mut mine: Vec<Value> = (list["items"].as_array().unwrap().iter())
        .filter(|s| s["metadata"]["labels"]["snapshot-policy"] == id)
        .cloned()
        .collect();
    mine.sort_by_key(|s| s["metadata"]["name"].as_str().unwrap().to_string());
    mine
}

/// A volume on the local pool, once its agent made it (Available).
async fn available_volume(cloud: &Cloud, token: &str, name: &str) -> String {
    let vol = cloud
        .create(token, "volumes", name, json!({"size_bytes": GIB}))
        .await;
    let id = vol["metadata"]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/volumes/{id}");
    eventually(
        "the volume to be Available",
        Duration::from_secs(30),
        || {
            let path = path.clone();
            async move {
                let (_, v) = cloud.call("GET", &path, Some(token), None).await;
                (v["status"]["phase"] == "Available").then_some(())
            }
        },
    )
    .await;
    id
}

/// The client's arguments creating policy `name` of volume `data1` on `schedule`,
/// keeping 3.
fn create_policy<'a>(name: &'a str, schedule: &'a str) -> Vec<&'a str> {
    let mut args = vec!["snapshot", "policy", "create", name, "--volume", "data1"];
    args.extend(["--schedule", schedule, "--keep", "3"]);
    args
}

/// The policy, polled until `done` accepts it.
async fn policy_until(
    cloud: &Cloud,
    what: &str,
    wait: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, Duration::from_secs(wait), || async {
        let p = get(cloud, "/v1/snapshot-policies/nightly").await;
        done(&p).then_some(p)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_snapshot_policy_takes_prunes_its_own_and_stops_when_disabled() {
    let started = Instant::now();
    let cloud = Cloud::up(&[]).await;
    let token = cloud.token.clone();
    available_volume(&cloud, &token, "data1").await;
    let mine = cloud.ok(&[
        "snapshot", "create", "by-hand", "--volume", "data1", "--wait",
    ]);
    assert_eq!(mine["status"]["phase"], "Available", "{mine}");

    let created = cloud.ok(&create_policy("nightly", "*/5 * * * * *"));
    assert_eq!(
        created["status"]["consistency"], "crash-consistent",
        "{created}"
    );
    let id = created["metadata"]["id"].as_str().unwrap().to_string();

    // Five runs, 5 s apart: about 25 s.
    let p = policy_until(&cloud, "5 runs of the policy", 60, |p| {
        p["status"]["taken"].as_u64().unwrap_or(0) >= 5
    })
    .await;
    assert_eq!(p["status"]["last_error"], Value::Null, "{p}");
    let disabled = cloud.ok(&["snapshot", "policy", "disable", "nightly"]);
    assert_eq!(disabled["spec"]["enabled"], false, "{disabled}");
    let p = policy_until(&cloud, "the policy to be unscheduled", 10, |p| {
        p["status"]["next_run"].is_null()
    })
    .await;
    let taken = p["status"]["taken"].as_u64().unwrap();
    assert!(taken >= 5, "{p}");

    // The pruned ones are deleted by the volume's agent: exactly 3 remain.
    let snaps = eventually("3 policy snapshots", Duration::from_secs(20), || async {
        let s = policy_snapshots(&cloud, &id).await;
        let done = s.iter().all(|s| s["status"]["phase"] == "Available");
        (s.len() == 3 && done).then_some(s)
    })
    .await;
    assert_newest(&snaps, &p);
    let text = String::from_utf8(cloud.cli(&["snapshot", "policy", "list"]).stdout).unwrap();
    assert!(
        text.contains("nightly") && text.contains("*/5 * * * * *"),
        "{text}"
    );

    // Disabled: nothing more for 12 s (an observation window, not a wait for an event).
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let p = get(&cloud, "/v1/snapshot-policies/nightly").await;
        assert_eq!(p["status"]["taken"].as_u64(), Some(taken), "{p}");
        assert_eq!(policy_snapshots(&cloud, &id).await.len(), 3);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The user's own snapshot was never touched; deleting the policy leaves its snapshots.
    get(&cloud, "/v1/snapshots/by-hand").await;
    let out = cloud.cli(&["snapshot", "policy", "delete", "nightly"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(policy_snapshots(&cloud, &id).await.len(), 3);
    eprintln!("took {:?}", started.elapsed());
}

/// The three kept are the newest: their due times (in their names) rise in steps of the
/// 5 s schedule and the newest is the last run's.
fn assert_newest(snaps: &[Value], policy: &Value) {
    let stamp = |s: &Value| {
        let name = s["metadata"]["name"].as_str().unwrap();
        let t = name.strip_prefix("nightly-").unwrap();
        let (d, h) = (&t[..8], &t[9..15]);
        let rfc = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &d[..4],
            &d[4..6],
            &d[6..],
            &h[..2],
            &h[2..4],
            &h[4..]
        );
        epoch_of(&rfc).unwrap()
    };
    let times: Vec<i64> = snaps.iter().map(stamp).collect();
    let steps = times
        .windows(2)
        .all(|w| w[1] > w[0] && (w[1] - w[0]) % 5 == 0);
    assert!(steps, "{times:?}");
    let last_run = epoch_of(policy["status"]["last_run"].as_str().unwrap()).unwrap();
    assert!(
        (0..5).contains(&(last_run - times[2])),
        "{times:?} {policy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_snapshot_policy_bad_input_is_refused_and_nothing_is_created() {
    let cloud = Cloud::up(&[]).await;
    let admin = cloud.token.clone();
    let other = cloud.tenant("other", None).await;
    let theirs = available_volume(&cloud, &other.token, "theirs").await;
    available_volume(&cloud, &admin, "data1").await;

    let spec =
        |schedule: &str, keep: u32| json!({"volume": "data1", "schedule": schedule, "keep": keep});
    let cases = [
        (
            "never fires",
            spec("0 0 30 2 *", 3),
            400,
            "invalid_field",
            "spec.schedule",
        ),
        (
            "bad syntax",
            spec("every day", 3),
            400,
            "invalid_field",
            "spec.schedule",
        ),
        (
            "keep 0",
            spec("* * * * *", 0),
            400,
            "invalid_field",
            "spec.keep",
        ),
        (
            "keep 101",
            spec("* * * * *", 101),
            400,
            "invalid_field",
            "spec.keep",
        ),
        (
            "another project's volume",
            json!({"volume": theirs, "schedule": "* * * * *", "keep": 3}),
            404,
            "not_found",
            "spec.volume",
        ),
        (
            "volume and instance",
            json!({"volume": "data1", "instance": "vm1", "schedule": "* * * * *", "keep": 3}),
            400,
            "invalid_field",
            "spec.volume",
        ),
    ];
    for (what, spec, status, code, field) in cases {
        let (s, v) = cloud.post(&admin, "snapshot-policies", "bad", spec).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{what}: {v}");
        assert_eq!(v["details"]["field"], field, "{what}: {v}");
    }
    let long = "p".repeat(41);
    let (s, v) = cloud
        .post(&admin, "snapshot-policies", &long, spec("* * * * *", 3))
        .await;
    assert_eq!(
        (s, v["details"]["field"].as_str()),
        (400, Some("metadata.name")),
        "{v}"
    );
    let labelled = json!({"metadata": {"name": "forged", "labels": {"snapshot-policy": "spol-1"}}, "spec": {"volume": "data1"}});
    let (s, v) = cloud.admin("POST", "/v1/snapshots", Some(&labelled)).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_field")), "{v}");
    let out = cloud.cli(&create_policy("feb30", "0 0 30 2 *"));
    assert!(
        !out.status.success() && stderr(&out).contains("never fires"),
        "{}",
        stderr(&out)
    );
    for path in ["/v1/snapshot-policies", "/v1/snapshots"] {
        let list = get(&cloud, path).await;
        assert_eq!(list["items"], json!([]), "{path}: {list}");
    }

    // The contract line; another project sees nothing of it.
    let p = cloud.ok(&create_policy("nightly", "*/1 * * * *"));
    assert_eq!(p["spec"]["keep"], 3, "{p}");
    let p = policy_until(&cloud, "a next run", 10, |p| {
        p["status"]["next_run"].is_string()
    })
    .await;
    assert!(
        p["status"]["next_run"].as_str().unwrap().ends_with(":00Z"),
        "{p}"
    );
    let path = format!(
        "/v1/snapshot-policies/{}",
        p["metadata"]["id"].as_str().unwrap()
    );
    let (s, v) = cloud.call("GET", &path, Some(&other.token), None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = cloud.call("DELETE", &path, Some(&other.token), None).await;
    assert_eq!(s, 404, "{v}");
    let (_, list) = cloud
        .call("GET", "/v1/snapshot-policies", Some(&other.token), None)
        .await;
    assert_eq!(list["items"], json!([]), "{list}");
}
