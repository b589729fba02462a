//! Hardening of the API through the real binary (issue #13): `/metrics` labels
//! are a closed set and show nothing of other tenants; `If-Match` is honoured
//! or refused, never ignored; `reboot_generation` only grows by one; the CLI
//! names the body limit when the server refuses a too-large request.

mod common;

use std::time::Duration;

use common::{eventually, stderr, Cloud};
use reqwest::header::{ETAG, IF_MATCH};
use serde_json::{json, Value};

/// The `/metrics` text, anonymous (None) or with a token.
async fn metrics(cloud: &Cloud, token: Option<&str>) -> (u16, String) {
    let mut req = cloud.http.get(format!("{}/metrics", cloud.endpoint));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("GET /metrics");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The HTTP counters and process figures of a scrape: what requests can change (a
/// scrape from loopback also has the platform's figures, which move on their own).
fn http_part(scrape: &str) -> String {
    (scrape.lines())
        .filter(|l| l.contains("yunhan_http_") || l.contains("process_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A 2 KB method name unique to `i` (letters only: a valid HTTP token).
fn odd_method(i: usize) -> reqwest::Method {
    let tag: String = format!("{i:05}")
        .bytes()
        .map(|d| char::from(b'A' + (d - b'0')))
        .collect();
    let filler: String = (0..2043)
        .map(|k| char::from(b'A' + ((i + k) % 26) as u8))
        .collect();
    reqwest::Method::from_bytes(format!("Q{tag}{filler}").as_bytes()).expect("a valid method")
}

/// Sends `odd_method(i)` for every i in `range` to a matched route and an
/// unmatched path, 20 requests at a time; returns the statuses seen.
async fn send_odd_methods(cloud: &Cloud, range: std::ops::Range<usize>) -> Vec<u16> {
    const WORKERS: usize = 20;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (http, endpoint) = (cloud.http.clone(), cloud.endpoint.clone());
        let mine: Vec<usize> = range.clone().filter(|i| i % WORKERS == w).collect();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in mine {
                let path = if i % 2 == 0 {
                    "/v1/instances".to_string()
                } else {
                    format!("/nowhere/{i}")
                };
                let r = http
                    .request(odd_method(i), format!("{endpoint}{path}"))
                    .send()
                    .await
                    .expect("odd request answered");
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all
}

#[tokio::test]
async fn metrics_labels_are_a_closed_set_and_members_get_no_store_figures() {
    let cloud = Cloud::up(&[]).await;
    // Every series these requests can touch exists before the measurement.
    send_odd_methods(&cloud, 0..2).await;
    metrics(&cloud, None).await;
    let (status, before) = metrics(&cloud, None).await;
    assert_eq!(status, 200);
    let before = http_part(&before);

    let statuses = send_odd_methods(&cloud, 2..10_002).await;
    assert_eq!(statuses.len(), 10_000);
    assert!(
        statuses.iter().all(|s| (400..500).contains(s)),
        "odd methods are refused"
    );

    let (_, after) = metrics(&cloud, None).await;
    let after = http_part(&after);
    assert_eq!(
        before.lines().count(),
        after.lines().count(),
        "no new series:\n{after}"
    );
    // Only numbers change: counters, latency sums, process figures.
    let grown = after.len().abs_diff(before.len());
    assert!(grown <= 256, "/metrics changed by {grown} bytes:\n{after}");
    assert!(after.len() < 16 * 1024, "{after}");
    assert!(
        after.contains("method=\"OTHER\",route=\"/v1/instances\""),
        "{after}"
    );
    assert!(!after.contains("QAAAA"), "a raw method leaked:\n{after}");
    assert!(!after.contains("/nowhere/"), "a raw path leaked:\n{after}");
    assert!(after.contains("process_resident_memory_bytes "), "{after}");

    // Anonymous scrapes from elsewhere get nothing that moves with other tenants'
    // activity: api/tests/metrics_scope.rs (this one comes from loopback, the operator's).
    let (s, health) = cloud.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(health, json!({"status": "ok"}));
    // Members cannot see it either; admins can.
    let tenant = cloud.tenant("metrics-t", None).await;
    let (s, body) = metrics(&cloud, Some(&tenant.token)).await;
    assert_eq!(s, 403, "{body}");
    let (s, body) = metrics(&cloud, Some(&cloud.token.clone())).await;
    assert_eq!(s, 200);
    assert!(body.contains("\nyunhan_store_revision "), "{body}");
}

/// PUT `path` with `If-Match: if_match`; the status and body.
async fn put_if_match(
    cloud: &Cloud,
    token: &str,
    path: &str,
    if_match: &str,
    body: &Value,
) -> (u16, Value, Option<String>) {
    let resp = cloud
        .http
        .put(format!("{}{path}", cloud.endpoint))
        .bearer_auth(token)
        .header(IF_MATCH, if_match)
        .json(body)
        .send()
        .await
        .expect("PUT");
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (status, resp.json().await.unwrap_or(Value::Null), etag)
}

async fn etag_of(cloud: &Cloud, token: &str, path: &str) -> (String, Value) {
    let resp = cloud
        .http
        .get(format!("{}{path}", cloud.endpoint))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    let etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .expect("GET sends an ETag")
        .to_string();
    (etag, resp.json().await.unwrap())
}

#[tokio::test]
async fn if_match_is_honoured_or_refused_never_ignored() {
    let cloud = Cloud::up(&[]).await;
    let t = cloud.tenant("ifm", None).await;
    cloud.image(&t.token, "ifm-img").await;
    let spec = json!({"image": "ifm-img", "flavor": "tiny", "running": false});
    let vm = cloud.create(&t.token, "instances", "ifm-vm", spec).await;
    let path = format!("/v1/instances/{}", vm["metadata"]["id"].as_str().unwrap());
    // Settled first: the scheduler binds it and its host's agent reports it Stopped, and
    // those status writes must not land between the precondition checks below.
    eventually("ifm-vm settled", Duration::from_secs(60), || async {
        let (_, v) = cloud.call("GET", &path, Some(&t.token), None).await;
        (v["status"]["phase"] == "Stopped").then_some(())
    })
    .await;

    let (etag, doc) = etag_of(&cloud, &t.token, &path).await;
    assert_eq!(etag, format!("\"{}\"", doc["metadata"]["revision"]));
    let update = |label: &str| json!({"labels": {"step": label}, "spec": doc["spec"].clone()});

    // A matching strong ETag writes, and the answer carries the new one.
    let (s, v, new_etag) = put_if_match(&cloud, &t.token, &path, &etag, &update("one")).await;
    assert_eq!(s, 200, "{v}");
    let new_etag = new_etag.expect("PUT sends the new ETag");
    assert_eq!(new_etag, format!("\"{}\"", v["metadata"]["revision"]));
    assert_ne!(new_etag, etag);

    // The old one is stale: the revision conflict, as for a stale body revision.
    let (s, v, _) = put_if_match(&cloud, &t.token, &path, &etag, &update("two")).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");

    // Weak or unparsable preconditions are refused, not ignored.
    let weak = format!("W/{new_etag}");
    for bad in [weak.as_str(), "W/\"3\"", "garbage", "\"abc\""] {
        let (s, v, _) = put_if_match(&cloud, &t.token, &path, bad, &update("three")).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {v}"
        );
        assert!(v["message"].as_str().unwrap().contains("If-Match"), "{v}");
    }
    let (etag_now, now) = etag_of(&cloud, &t.token, &path).await;
    assert_eq!(etag_now, new_etag, "refused writes left the object alone");
    assert_eq!(now["metadata"]["labels"]["step"], "one");

    // `*`: the object exists.
    let (s, v, _) = put_if_match(&cloud, &t.token, &path, "*", &update("four")).await;
    assert_eq!(s, 200, "{v}");
}

/// Without a precondition a `PUT` is unconditional: writers racing on one
/// object (as a controller's status writes race a user's) all succeed, one
/// after the other, instead of the losers getting a 409 they never asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unconditional_puts_racing_on_one_object_all_land() {
    let cloud = Cloud::up(&[]).await;
    let t = cloud.tenant("race", None).await;
    cloud.image(&t.token, "race-img").await;
    let spec = json!({"image": "race-img", "flavor": "tiny", "running": false});
    let vm = cloud
        .create(&t.token, "instances", "race-vm", spec.clone())
        .await;
    let path = format!("/v1/instances/{}", vm["metadata"]["id"].as_str().unwrap());
    let writers = (0..8).map(|i| {
        let body = json!({"labels": {"writer": i.to_string()}, "spec": spec.clone()});
        let (cloud, token, path) = (&cloud, &t.token, &path);
        async move { cloud.call("PUT", path, Some(token), Some(&body)).await }
    });
    let answers = futures::future::join_all(writers).await;
    for (s, v) in &answers {
        assert_eq!(*s, 200, "{v}");
    }
    let mut revisions: Vec<u64> = answers
        .iter()
        .map(|(_, v)| v["metadata"]["revision"].as_u64().unwrap())
        .collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 8, "each write is its own revision");
    let (_, now) = cloud.call("GET", &path, Some(&t.token), None).await;
    let last = answers
        .iter()
        .max_by_key(|(_, v)| v["metadata"]["revision"].as_u64())
        .unwrap();
    assert_eq!(now["metadata"]["labels"], last.1["metadata"]["labels"]);
}

async fn set_generation(cloud: &Cloud, token: &str, path: &str, generation: u64) -> (u16, Value) {
    let (_, cur) = cloud.call("GET", path, Some(token), None).await;
    let mut spec = cur["spec"].clone();
    spec["reboot_generation"] = json!(generation);
    cloud
        .call("PUT", path, Some(token), Some(&json!({"spec": spec})))
        .await
}

#[tokio::test]
async fn reboot_generation_grows_by_one_and_vm_reboot_never_wraps() {
    let cloud = Cloud::up(&[]).await;
    let admin = cloud.token.clone();
    cloud.image(&admin, "rb-img").await;
    let spec = json!({"image": "rb-img", "flavor": "tiny", "running": false});
    let vm = cloud.create(&admin, "instances", "rb", spec.clone()).await;
    let path = format!("/v1/instances/{}", vm["metadata"]["id"].as_str().unwrap());

    for refused in [u64::MAX, 1 << 53, 2] {
        let (s, v) = set_generation(&cloud, &admin, &path, refused).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("invalid_field")), "{v}");
        assert_eq!(v["details"]["field"], "spec.reboot_generation", "{v}");
        assert!(v["message"].as_str().unwrap().contains("send 1"), "{v}");
    }
    let (s, v) = set_generation(&cloud, &admin, &path, 1).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = set_generation(&cloud, &admin, &path, 0).await;
    assert_eq!(s, 400, "no going back: {v}");

    // The CLI asks for the next one.
    let out = cloud.cli(&["vm", "reboot", "rb"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, cur) = cloud.call("GET", &path, Some(&admin), None).await;
    assert_eq!(cur["spec"]["reboot_generation"], 2);

    // A new VM starts with no reboots: a counter set at creation (e.g. at its end, where
    // `vm reboot` could only wrap) is refused and nothing is created.
    for (name, generation) in [
        ("rb-max", u64::MAX),
        ("rb-json-max", (1 << 53) - 1),
        ("rb-1", 1),
    ] {
        let mut spec = spec.clone();
        spec["reboot_generation"] = json!(generation);
        let body = json!({"metadata": {"name": name}, "spec": spec});
        let (s, v) = cloud
            .call("POST", "/v1/instances", Some(&admin), Some(&body))
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("invalid_field")),
            "{name}: {v}"
        );
        assert_eq!(v["details"]["field"], "spec.reboot_generation", "{v}");
        let (s, _) = cloud
            .call("GET", &format!("/v1/instances/{name}"), Some(&admin), None)
            .await;
        assert_eq!(s, 404, "{name} was not created");
    }
}

#[tokio::test]
async fn an_oversized_user_data_names_the_body_limit_not_an_unreachable_server() {
    let cloud = Cloud::up(&[]).await;
    let big = cloud.home.path().join("user-data");
    let mut data = b"#!/bin/sh\n".to_vec();
    data.resize(100 << 20, b'x');
    std::fs::write(&big, data).unwrap();
    let big = big.to_str().unwrap();
    // The server may answer 413 before the body is sent, and hang up: both the
    // read answer and the hang-up must name the limit. A few tries see both.
    for _ in 0..3 {
        let out = cloud.cli(&[
            "vm",
            "create",
            "big",
            "--image",
            "x",
            "--flavor",
            "tiny",
            "--user-data",
            big,
        ]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("--body-limit"), "{err}");
        assert!(!err.contains("cannot reach"), "{err}");
        assert!(!err.contains("Is the server running"), "{err}");
    }
    // The server is fine afterwards.
    let (s, _) = tokio::time::timeout(
        Duration::from_secs(10),
        cloud.call("GET", "/healthz", None, None),
    )
    .await
    .expect("healthz answers");
    assert_eq!(s, 200);
}
