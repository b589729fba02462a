//! The audit trail through the real binary (issue #17): every API write is an event (who,
//! which project, what, the outcome), read back with `GET /v1/events` and `yunhan events`;
//! a member sees their own project's events and no other's, an admin sees every scope.

mod common;

use common::Cloud;
use serde_json::{json, Value};

/// (action, kind, target, outcome) of each event in a `GET /v1/events` answer.
fn rows(events: &Value) -> Vec<(String, String, String, u64)> {
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
    (events["items"].as_array().unwrap().iter())
        .map(|e| {
            (
                s(e, "action"),
                s(e, "kind"),
                s(e, "target"),
                e["outcome"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn row(action: &str, kind: &str, target: &str, outcome: u64) -> (String, String, String, u64) {
    (action.into(), kind.into(), target.into(), outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_events_record_writes_and_members_see_only_their_own() {
    let cloud = Cloud::up(&[]).await;
    let a = cloud.tenant("evta", None).await;
    let b = cloud.tenant("evtb", None).await;
    let soft = json!({"policy": "soft_anti_affinity"});
    let (s, v) = cloud
        .post(&a.token, "placement-groups", "pg1", soft.clone())
        .await;
    assert_eq!(s, 201, "{v}");
    let pg1 = v["metadata"]["id"].as_str().unwrap().to_string();
    let (s, v) = cloud
        .post(&a.token, "placement-groups", "Bad Name", soft.clone())
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = (cloud.call("DELETE", "/v1/placement-groups/pg1", Some(&a.token), None)).await;
    assert_eq!(s, 204);
    let (s, v) = cloud.post(&b.token, "placement-groups", "pg2", soft).await;
    assert_eq!(s, 201);
    let pg2 = v["metadata"]["id"].as_str().unwrap().to_string();

    // a's: its three writes in order, by its user, in its project; none of b's. A create
    // names the new object (a refused one, nothing).
    let (s, ev) = cloud
        .call("GET", "/v1/events?since=10m", Some(&a.token), None)
        .await;
    assert_eq!(s, 200, "{ev}");
    assert_eq!(
        rows(&ev),
        [
            row("create", "placement-groups", &pg1, 201),
            row("create", "placement-groups", "", 400),
            row("delete", "placement-groups", "pg1", 204),
        ],
        "{ev}"
    );
    assert!(
        (ev["items"].as_array().unwrap().iter())
            .all(|e| e["actor"] == a.user.as_str() && e["project"] == a.project.as_str()),
        "{ev}"
    );
    let (_, evb) = cloud.call("GET", "/v1/events", Some(&b.token), None).await;
    assert_eq!(
        rows(&evb),
        [row("create", "placement-groups", &pg2, 201)],
        "{evb}"
    );
    // Another project's events are not the member's to read.
    let other = format!("/v1/events?project={}", b.project);
    let (s, v) = cloud.call("GET", &other, Some(&a.token), None).await;
    assert_eq!(s, 404, "{v}");

    // The admin: every scope (its own writes, the projects and users it made, both
    // tenants'), or one project's.
    let (_, all) = cloud.admin("GET", "/v1/events?since=10m", None).await;
    let all = rows(&all);
    assert!(
        all.contains(&row("create", "projects", &a.project, 201)),
        "{all:?}"
    );
    assert!(
        all.contains(&row("delete", "placement-groups", "pg1", 204)),
        "{all:?}"
    );
    assert_eq!(all.iter().filter(|r| r.1 == "placement-groups").count(), 4);
    let (_, only_b) = cloud
        .admin("GET", "/v1/events?project=evtb&kind=placement-groups", None)
        .await;
    assert_eq!(
        rows(&only_b),
        [row("create", "placement-groups", &pg2, 201)]
    );
    let (_, last) = cloud.admin("GET", "/v1/events?limit=1", None).await;
    assert_eq!(last["items"].as_array().map(Vec::len), Some(1), "{last}");

    // Bad input: a clear 400, and reading records nothing.
    for q in ["since=10w", "since=", "limit=0", "limit=1001", "colour=red"] {
        let (s, v) = cloud.admin("GET", &format!("/v1/events?{q}"), None).await;
        assert_eq!(s, 400, "{q}: {v}");
    }
    let (_, again) = cloud
        .call("GET", "/v1/events?since=10m", Some(&a.token), None)
        .await;
    assert_eq!(rows(&again).len(), 3, "reads are not events: {again}");

    // Request ids: the caller's own, answered and recorded; a made one otherwise.
    let url = format!("{}/v1/placement-groups", cloud.endpoint);
    let sent = (cloud.http.post(&url))
        .bearer_auth(&b.token)
        .header("x-request-id", "evt-req-42")
        .json(&json!({"metadata": {"name": "pg3"}, "spec": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    assert_eq!(sent.headers()["x-request-id"], "evt-req-42");
    let made = (cloud.http.get(&url).bearer_auth(&b.token).send().await).unwrap();
    let made = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 16, "{made}");
    let (_, evb) = cloud.call("GET", "/v1/events", Some(&b.token), None).await;
    let last = evb["items"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last["request_id"], "evt-req-42", "{evb}");

    // The CLI's contract line.
    let listed = cloud.ok(&["events", "--since", "10m"]);
    let listed = listed.as_array().cloned().unwrap_or_default();
    assert!(
        listed
            .iter()
            .any(|e| e["kind"] == "projects" && e["action"] == "create"),
        "{listed:?}"
    );
}
