//! The API's promises: tenant isolation (authorization matrix), atomic
//! quotas under a create storm, rate limiting, and bad input → 4xx.

mod common;

use std::collections::HashSet;

use common::{Cloud, Tenant};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Admin,
    Owner,
    Other,
    NoToken,
    BadToken,
}

const ALL: [Who; 5] = [
    Who::Admin,
    Who::Owner,
    Who::Other,
    Who::NoToken,
    Who::BadToken,
];

struct World {
    cloud: Cloud,
    a: Tenant,
    b: Tenant,
}

impl World {
    fn token(&self, who: Who) -> Option<String> {
        match who {
            Who::Admin => Some(self.cloud.token.clone()),
            Who::Owner => Some(self.a.token.clone()),
            Who::Other => Some(self.b.token.clone()),
            Who::NoToken => None,
            Who::BadToken => Some("yh_0123456789abcdef_00ff".into()),
        }
    }

    async fn call(&self, who: Who, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.cloud
            .call(method, path, self.token(who).as_deref(), body)
            .await
    }
}

/// Objects owned by tenant A, one per project-scoped kind: (plural, id, update body).
async fn objects_of_a(w: &World) -> Vec<(&'static str, String, Value)> {
    let t = w.a.token.clone();
    // Instances boot only Active images: one with data.
    let img = w.cloud.image(&t, "a-img").await;
    let vm = w
        .cloud
        .create(
            &t,
            "instances",
            "a-vm",
            json!({"image": "a-img", "flavor": "tiny"}),
        )
        .await;
    let vol = w
        .cloud
        .create(&t, "volumes", "a-vol", json!({"size_bytes": 1073741824u64}))
        .await;
    let (s, key) = w
        .call(
            Who::Owner,
            "POST",
            "/v1/api-keys",
            Some(&json!({"metadata": {"name": "a-extra"}, "spec": {}})),
        )
        .await;
    assert_eq!(s, 201);
    let id = |v: &Value| v["metadata"]["id"].as_str().unwrap().to_string();
    vec![
        ("images", id(&img), json!({"spec": {"os": "changed"}})),
        (
            "instances",
            id(&vm),
            json!({"spec": {"image": "a-img", "flavor": "tiny", "running": false}}),
        ),
        (
            "volumes",
            id(&vol),
            json!({"spec": {"size_bytes": 2147483648u64}}),
        ),
        ("api-keys", id(&key["api_key"]), Value::Null),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_authorization_matrix_has_no_cross_tenant_access() {
    let cloud = Cloud::up(&[]).await;
    let a = cloud.tenant("tenant-a", None).await;
    let b = cloud.tenant("tenant-b", None).await;
    let w = World { cloud, a, b };
    let owned = objects_of_a(&w).await;
    let mut checked = 0;

    for (plural, id, update) in &owned {
        for who in ALL {
            let unauth = matches!(who, Who::NoToken | Who::BadToken);
            // Read one.
            let (s, v) = w
                .call(who, "GET", &format!("/v1/{plural}/{id}"), None)
                .await;
            let want = match who {
                Who::Admin | Who::Owner => 200,
                Who::Other => 404,
                _ => 401,
            };
            assert_eq!(s, want, "GET {plural}/{id} as {who:?}: {v}");
            if unauth {
                assert_eq!(v["code"], "unauthenticated");
            }
            if who == Who::Other {
                assert_eq!(v["code"], "not_found");
                assert!(v.get("metadata").is_none());
            }
            // List: visible to admin and owner, never to the other tenant.
            let (s, v) = w.call(who, "GET", &format!("/v1/{plural}"), None).await;
            assert_eq!(
                s,
                if unauth { 401 } else { 200 },
                "LIST {plural} as {who:?}: {v}"
            );
            if !unauth {
                let ids: HashSet<&str> = v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|i| i["metadata"]["id"].as_str())
                    .collect();
                assert_eq!(
                    ids.contains(id.as_str()),
                    who != Who::Other,
                    "LIST {plural} as {who:?}"
                );
            }
            // Write: the other tenant cannot even tell it exists.
            if !update.is_null() {
                let (s, v) = w
                    .call(who, "PUT", &format!("/v1/{plural}/{id}"), Some(update))
                    .await;
                let want = match who {
                    Who::Admin | Who::Owner => 200,
                    Who::Other => 404,
                    _ => 401,
                };
                assert_eq!(s, want, "PUT {plural}/{id} as {who:?}: {v}");
            }
            checked += 3;
        }
        for who in [Who::Other, Who::NoToken, Who::BadToken] {
            let (s, _) = w
                .call(who, "DELETE", &format!("/v1/{plural}/{id}"), None)
                .await;
            assert_eq!(
                s,
                if who == Who::Other { 404 } else { 401 },
                "DELETE {plural}/{id} as {who:?}"
            );
            let (s, _) = w
                .call(Who::Owner, "GET", &format!("/v1/{plural}/{id}"), None)
                .await;
            assert_eq!(s, 200, "{plural}/{id} must survive a refused delete");
            checked += 1;
        }
    }

    // The other tenant cannot create in A's project, nor name A's objects.
    let (s, v) = w.call(Who::Other, "POST", "/v1/volumes", Some(&json!({"metadata": {"name": "x", "project": w.a.project}, "spec": {"size_bytes": 1073741824u64}}))).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, _) = w.call(Who::Other, "GET", "/v1/volumes/a-vol", None).await;
    assert_eq!(s, 404, "names resolve in the caller's own project");
    let (s, _) = w.call(Who::Other, "POST", "/v1/instances", Some(&json!({"metadata": {"name": "steal"}, "spec": {"image": "a-img", "flavor": "tiny"}}))).await;
    assert_eq!(s, 400, "another project's private image is not usable");

    // Platform-wide and admin-only kinds.
    let flavor = json!({"metadata": {"name": "f-x"}, "spec": {"vcpus": 1, "memory_mib": 128, "disk_gib": 1}});
    let user_path = format!("/v1/users/{}", w.a.user);
    let project_path = format!("/v1/projects/{}", w.a.project);
    let table: Vec<(&str, &str, Option<Value>, [u16; 5])> = vec![
        // method, path, body, [admin, owner, other, none, bad]
        ("GET", "/v1/flavors", None, [200, 200, 200, 401, 401]),
        ("GET", "/v1/flavors/tiny", None, [200, 200, 200, 401, 401]),
        (
            "POST",
            "/v1/flavors",
            Some(flavor.clone()),
            [201, 403, 403, 401, 401],
        ),
        (
            "PUT",
            "/v1/flavors/f-x",
            Some(json!({"spec": {"vcpus": 2, "memory_mib": 128, "disk_gib": 1}})),
            [200, 403, 403, 401, 401],
        ),
        ("GET", "/v1/hosts", None, [200, 403, 403, 401, 401]),
        ("GET", "/v1/users", None, [200, 403, 403, 401, 401]),
        ("GET", &user_path, None, [200, 403, 403, 401, 401]),
        (
            "POST",
            "/v1/users",
            Some(
                json!({"metadata": {"name": "u-x"}, "spec": {"project": w.a.project, "role": "admin"}}),
            ),
            [201, 403, 403, 401, 401],
        ),
        (
            "POST",
            "/v1/projects",
            Some(json!({"metadata": {"name": "p-x"}, "spec": {}})),
            [201, 403, 403, 401, 401],
        ),
        ("GET", &project_path, None, [200, 200, 404, 401, 401]),
        (
            "PUT",
            &project_path,
            Some(
                json!({"spec": {"quota": {"instances": 1000, "vcpus": 1000, "memory_mib": 1000000, "volume_gib": 1000, "elastic_ips": 10}}}),
            ),
            [200, 403, 403, 401, 401],
        ),
        ("GET", "/v1/whoami", None, [200, 200, 200, 401, 401]),
        (
            "POST",
            "/v1/api-keys",
            Some(json!({"metadata": {"name": "k-for-a"}, "spec": {"user": w.a.user}})),
            [201, 201, 403, 401, 401],
        ),
        ("DELETE", "/v1/flavors/f-x", None, [204, 403, 403, 401, 401]),
    ];
    for (method, path, body, want) in &table {
        for (i, who) in ALL.iter().enumerate() {
            // Creates must not collide with the admin's earlier success.
            let body = body.clone().map(|mut b| {
                if *method == "POST" && i > 0 {
                    let n = format!("{}-{i}", b["metadata"]["name"].as_str().unwrap());
                    b["metadata"]["name"] = json!(n);
                }
                b
            });
            // Deletes: admin last, so members see the object exist.
            let who = if *method == "DELETE" {
                ALL[(i + 1) % 5]
            } else {
                *who
            };
            let want = if *method == "DELETE" {
                want[(i + 1) % 5]
            } else {
                want[i]
            };
            let (s, v) = w.call(who, method, path, body.as_ref()).await;
            assert_eq!(s, want, "{method} {path} as {who:?}: {v}");
            checked += 1;
        }
    }
    // Members listing projects see only their own.
    let (_, v) = w.call(Who::Owner, "GET", "/v1/projects", None).await;
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["metadata"]["id"].as_str())
        .collect();
    assert_eq!(ids, vec![w.a.project.as_str()]);
    assert!(checked > 100, "matrix covered {checked} cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_quota_holds_under_100_concurrent_creates() {
    let cloud = Cloud::up(&[]).await;
    let quota = json!({"instances": 7, "vcpus": 1000, "memory_mib": 1_000_000, "volume_gib": 1000, "elastic_ips": 1});
    let t = cloud.tenant("racer", Some(quota)).await;
    cloud.image(&t.token, "img").await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let http = cloud.http.clone();
        let url = format!("{}/v1/instances", cloud.endpoint);
        let token = t.token.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"metadata": {"name": format!("vm-{i}")}, "spec": {"image": "img", "flavor": "tiny"}});
            let r = http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v["code"].as_str().map(str::to_string))
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, _) => created += 1,
            (403, Some(code)) => assert_eq!(code, "quota_exceeded"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(created, 7, "exactly the quota, not one more");
    let (_, p) = cloud
        .admin("GET", &format!("/v1/projects/{}", t.project), None)
        .await;
    assert_eq!(p["status"]["usage"]["instances"], 7);
    let (_, list) = cloud
        .call("GET", "/v1/instances", Some(&t.token), None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn e2e_rate_limit_answers_429_with_retry_after() {
    let cloud = Cloud::up(&["--rate-limit", "0.5", "--rate-burst", "5"]).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let r = cloud
            .http
            .get(format!("{}/v1/whoami", cloud.endpoint))
            .bearer_auth(&cloud.token)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "rate_limited");
        }
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&secs));
}

#[tokio::test]
async fn e2e_bad_input_gets_clear_4xx_and_changes_nothing() {
    let cloud = Cloud::up(&["--body-limit", "4096"]).await;
    let url = |p: &str| format!("{}{}", cloud.endpoint, p);
    let raw = |method: reqwest::Method, path: &str, ctype: &str, body: Vec<u8>| {
        cloud
            .http
            .request(method, url(path))
            .bearer_auth(&cloud.token)
            .header("content-type", ctype.to_string())
            .body(body)
    };
    let post = |path: &str, body: &[u8]| {
        raw(
            reqwest::Method::POST,
            path,
            "application/json",
            body.to_vec(),
        )
    };
    let volume = |body: &[u8]| post("/v1/volumes", body);
    let empty = |method, path: &str| raw(method, path, "application/json", vec![]);
    let get = |path: &str| empty(reqwest::Method::GET, path);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed JSON",
            volume(b"{\"metadata\": "),
            400,
            "malformed_json",
        ),
        (
            "unknown field",
            volume(br#"{"metadata":{"name":"v"},"spec":{"size_bytes":1073741824,"colour":"red"}}"#),
            400,
            "invalid_request",
        ),
        (
            "unknown top-level field",
            volume(br#"{"metadata":{"name":"v"},"spec":{"size_bytes":1073741824},"status":{}}"#),
            400,
            "invalid_request",
        ),
        (
            "wrong type",
            volume(br#"{"metadata":{"name":"v"},"spec":{"size_bytes":"big"}}"#),
            400,
            "invalid_request",
        ),
        (
            "negative number",
            volume(br#"{"metadata":{"name":"v"},"spec":{"size_bytes":-1}}"#),
            400,
            "invalid_request",
        ),
        (
            "missing spec",
            volume(br#"{"metadata":{"name":"v"}}"#),
            400,
            "invalid_request",
        ),
        (
            "control characters in name",
            volume(br#"{"metadata":{"name":"a\u0007b"},"spec":{"size_bytes":1073741824}}"#),
            400,
            "invalid_field",
        ),
        (
            "empty name",
            volume(br#"{"metadata":{"name":""},"spec":{"size_bytes":1073741824}}"#),
            400,
            "invalid_field",
        ),
        (
            "absurd size",
            volume(br#"{"metadata":{"name":"v"},"spec":{"size_bytes":99999999999999999}}"#),
            400,
            "invalid_field",
        ),
        (
            "not JSON content type",
            raw(
                reqwest::Method::POST,
                "/v1/volumes",
                "text/plain",
                b"hello".to_vec(),
            ),
            415,
            "unsupported_media_type",
        ),
        (
            "oversized body",
            volume(&[b' '; 8192]),
            413,
            "payload_too_large",
        ),
        (
            "unknown flavor",
            post(
                "/v1/instances",
                br#"{"metadata":{"name":"v"},"spec":{"image":"nope","flavor":"huge"}}"#,
            ),
            400,
            "invalid_field",
        ),
        (
            "missing id",
            get("/v1/volumes/vol-00000000deadbeef"),
            404,
            "not_found",
        ),
        (
            "missing name",
            empty(reqwest::Method::DELETE, "/v1/volumes/nothing-here"),
            404,
            "not_found",
        ),
        (
            "bad page token",
            get("/v1/volumes?page_token=zz"),
            400,
            "invalid_field",
        ),
        (
            "limit out of range",
            get("/v1/volumes?limit=0"),
            400,
            "invalid_field",
        ),
        (
            "limit not a number",
            get("/v1/volumes?limit=ten"),
            400,
            "invalid_request",
        ),
        (
            "unknown query parameter",
            get("/v1/volumes?colour=red"),
            400,
            "invalid_request",
        ),
        ("unknown endpoint", get("/v1/teapots"), 404, "not_found"),
        (
            "method not allowed",
            empty(reqwest::Method::PATCH, "/v1/volumes"),
            405,
            "method_not_allowed",
        ),
        (
            "stale revision",
            raw(
                reqwest::Method::PUT,
                "/v1/flavors/tiny",
                "application/json",
                br#"{"revision":999999999,"spec":{"vcpus":1,"memory_mib":256,"disk_gib":1}}"#
                    .to_vec(),
            ),
            409,
            "conflict",
        ),
    ];
    for (what, req, status, code) in cases {
        // A server may close the connection right after refusing a too-large
        // body; the refusal itself is what we check, so retry a reset once.
        let r = match req.try_clone().unwrap().send().await {
            Ok(r) => r,
            Err(_) if status == 413 => req.send().await.unwrap(),
            Err(e) => panic!("{what}: {e}"),
        };
        let got = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{what}: {body}"
        );
        assert!(
            !body["message"].as_str().unwrap_or_default().is_empty(),
            "{what}: a message for humans"
        );
    }
    // Name clash.
    cloud
        .create(
            &cloud.token,
            "volumes",
            "twin",
            json!({"size_bytes": 1073741824u64}),
        )
        .await;
    let (s, v) = cloud
        .admin(
            "POST",
            "/v1/volumes",
            Some(&json!({"metadata": {"name": "twin"}, "spec": {"size_bytes": 1073741824u64}})),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("already_exists")),
        "{v}"
    );
    // Nothing half-made: exactly one volume, one GiB charged.
    let (_, list) = cloud.admin("GET", "/v1/volumes", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let (_, p) = cloud.admin("GET", "/v1/projects/admin", None).await;
    assert_eq!(p["status"]["usage"]["volume_gib"], 1);
    // Deleting a project that holds resources is refused.
    let (s, v) = cloud.admin("DELETE", "/v1/projects/admin", None).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
}

#[tokio::test]
async fn e2e_pagination_walks_every_object_once() {
    let cloud = Cloud::up(&[]).await;
    for i in 0..25 {
        cloud
            .create(
                &cloud.token,
                "volumes",
                &format!("p{i:02}"),
                json!({"size_bytes": 1073741824u64}),
            )
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/volumes?limit=10".to_string();
    loop {
        let (s, v) = cloud.admin("GET", &path, None).await;
        assert_eq!(s, 200);
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        seen.extend(
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match v["next_page_token"].as_str() {
            Some(t) => path = format!("/v1/volumes?limit=10&page_token={t}"),
            None => break,
        }
    }
    seen.sort();
    let want: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(seen, want);
}
