//! The file browser's routes (`/v1/buckets/{id}/objects`) through the router, over a
//! MemStore and an in-memory object store: listing with prefixes and pages, an
//! upload read back byte for byte, deletes, another project's bucket (404), a bucket
//! that is not Active (409), bad keys (400), the upload limits (413), and a cloud
//! without object storage (409).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use yunhan_api::{
    BrowseError, NewObject, ObjectBrowser, ObjectContent, ObjectItem, ObjectList, ObjectQuery,
};
use yunhan_model::{Bucket, BucketPhase};
use yunhan_store::objects::Objects;

/// What the fake keeps of an object.
#[derive(Debug, Clone)]
struct Stored {
    content_type: String,
    bytes: Vec<u8>,
}

/// An object store in memory: (tenant, bucket) → key → object. Listing follows S3:
/// keys in order, grouped by the delimiter, `limit` entries a page, the token the
/// last entry given.
#[derive(Debug, Default)]
struct FakeBrowser {
    objects: Mutex<BTreeMap<(String, String), BTreeMap<String, Stored>>>,
}

fn item(key: &str, o: &Stored) -> ObjectItem {
    ObjectItem {
        key: key.to_string(),
        size: o.bytes.len() as u64,
        last_modified: "2024-05-01T12:00:00Z".into(),
        etag: format!("{:x}", o.bytes.len()),
    }
}

#[async_trait]
impl ObjectBrowser for FakeBrowser {
    async fn list(
        &self,
        tenant: &str,
        bucket: &str,
        q: &ObjectQuery,
    ) -> Result<ObjectList, BrowseError> {
        let all = self.objects.lock().unwrap();
        let empty = BTreeMap::new();
        let objects = all
            .get(&(tenant.to_string(), bucket.to_string()))
            .unwrap_or(&empty);
        let after = q.page_token.clone().unwrap_or_default();
        let mut page = ObjectList::default();
        let mut count = 0;
        for (key, o) in objects.range::<String, _>(&q.prefix..) {
            if !key.starts_with(&q.prefix) {
                break;
            }
            let rest = &key[q.prefix.len()..];
            let folder = q
                .delimiter
                .as_deref()
                .and_then(|d| rest.find(d).map(|i| (d, i)));
            let entry = match folder {
                Some((d, i)) => format!("{}{}", q.prefix, &rest[..i + d.len()]),
                None => key.clone(),
            };
            if entry <= after || page.prefixes.last() == Some(&entry) {
                continue;
            }
            if count == q.limit {
                page.next_page_token = Some(match page.items.last() {
                    Some(i) if page.prefixes.last().is_none_or(|p| &i.key > p) => i.key.clone(),
                    _ => page.prefixes.last().unwrap().clone(),
                });
                break;
            }
            count += 1;
            match folder {
                None => page.items.push(item(key, o)),
                Some(_) => page.prefixes.push(entry),
            }
        }
        Ok(page)
    }

    async fn get(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectContent, BrowseError> {
        let all = self.objects.lock().unwrap();
        let o = all
            .get(&(tenant.to_string(), bucket.to_string()))
            .and_then(|b| b.get(key))
            .cloned()
            .ok_or(BrowseError::NoSuchKey)?;
        let etag = item(key, &o).etag;
        // In two pieces, as a gateway's answer comes.
        let (a, b) = o.bytes.split_at(o.bytes.len() / 2);
        let chunks = vec![Ok(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(b))];
        Ok(ObjectContent {
            content_type: Some(o.content_type),
            length: Some(o.bytes.len() as u64),
            etag: Some(etag),
            body: futures::stream::iter(chunks).boxed(),
        })
    }

    async fn put(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        mut object: NewObject,
    ) -> Result<ObjectItem, BrowseError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = object.body.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| BrowseError::Unreachable(e.to_string()))?);
        }
        assert_eq!(bytes.len() as u64, object.length, "the declared length");
        if key.starts_with("quota/") {
            return Err(BrowseError::QuotaExceeded("QuotaExceeded".into()));
        }
        let o = Stored {
            content_type: object.content_type,
            bytes,
        };
        let made = item(key, &o);
        let mut all = self.objects.lock().unwrap();
        all.entry((tenant.to_string(), bucket.to_string()))
            .or_default()
            .insert(key.to_string(), o);
        Ok(made)
    }

    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<(), BrowseError> {
        let mut all = self.objects.lock().unwrap();
        all.get_mut(&(tenant.to_string(), bucket.to_string()))
            .and_then(|b| b.remove(key))
            .map(drop)
            .ok_or(BrowseError::NoSuchKey)
    }
}

struct Api {
    app: Router,
    objects: Objects,
    admin: String,
}

async fn body_of(resp: Response<Body>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

async fn json_of(resp: Response<Body>) -> Value {
    serde_json::from_slice(&body_of(resp).await).unwrap_or(Value::Null)
}

async fn api(browser: Option<Arc<FakeBrowser>>) -> Api {
    let store = Arc::new(yunhan_store::MemStore::new());
    let objects = Objects::new(store.clone());
    let boot = yunhan_api::bootstrap(&objects).await.unwrap().unwrap();
    let config = yunhan_api::ApiConfig {
        s3_endpoint: Some("http://127.0.0.1:7480".into()),
        object_browser: browser.map(|b| b as Arc<dyn ObjectBrowser>),
        ..Default::default()
    };
    Api {
        app: yunhan_api::router(store, config),
        objects,
        admin: boot.admin_token,
    }
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Response<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        self.app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let resp = self
            .send(
                "POST",
                path,
                token,
                Body::from(body.to_string()),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "POST {path}");
        json_of(resp).await
    }

    /// A project with a member and the member's token.
    async fn member(&self, project: &str) -> String {
        let p = self
            .post(
                "/v1/projects",
                &self.admin,
                json!({"metadata": {"name": project}, "spec": {}}),
            )
            .await;
        let user = format!("{project}-user");
        let spec = json!({"project": p["metadata"]["id"], "role": "member"});
        self.post(
            "/v1/users",
            &self.admin,
            json!({"metadata": {"name": user}, "spec": spec}),
        )
        .await;
        let key = self
            .post(
                "/v1/api-keys",
                &self.admin,
                json!({"metadata": {"name": "k"}, "spec": {"user": user}}),
            )
            .await;
        key["token"].as_str().unwrap().to_string()
    }

    /// A bucket of the token's project, in `phase`.
    async fn bucket(&self, token: &str, name: &str, phase: BucketPhase) -> String {
        let b = self
            .post(
                "/v1/buckets",
                token,
                json!({"metadata": {"name": name}, "spec": {}}),
            )
            .await;
        let id = b["metadata"]["id"].as_str().unwrap().to_string();
        let mut doc = self.objects.get::<Bucket>(&id).await.unwrap().unwrap();
        doc.status.phase = phase;
        self.objects.update::<Bucket>(&doc).await.unwrap();
        id
    }

    async fn put_object(
        &self,
        token: &str,
        bucket: &str,
        key: &str,
        bytes: &[u8],
    ) -> Response<Body> {
        let len = bytes.len().to_string();
        self.send(
            "PUT",
            &format!("/v1/buckets/{bucket}/objects/{key}"),
            token,
            Body::from(bytes.to_vec()),
            &[("content-type", "text/plain"), ("content-length", &len)],
        )
        .await
    }

    async fn list(&self, token: &str, bucket: &str, query: &str) -> (StatusCode, Value) {
        let resp = self
            .send(
                "GET",
                &format!("/v1/buckets/{bucket}/objects{query}"),
                token,
                Body::empty(),
                &[],
            )
            .await;
        (resp.status(), json_of(resp).await)
    }
}

fn keys(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect()
}

fn prefixes(page: &Value) -> Vec<&str> {
    page["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn upload_list_download_and_delete() {
    let api = api(Some(Arc::default())).await;
    let alice = api.member("p1").await;
    api.bucket(&alice, "photos", BucketPhase::Active).await;

    // Uploads: 201 with the item; the key may hold `/`, spaces (encoded) and UTF-8.
    let resp = api
        .put_object(&alice, "photos", "top.txt", b"hello world")
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let made = json_of(resp).await;
    assert_eq!(made["key"], "top.txt");
    assert_eq!(made["size"], 11);
    assert!(
        made["last_modified"].is_string() && made["etag"].is_string(),
        "{made}"
    );
    for key in [
        "dir/a.txt",
        "dir/b.txt",
        "dir/sub/c.txt",
        "z%20%C3%A9.txt",
        "docs/",
    ] {
        let resp = api.put_object(&alice, "photos", key, key.as_bytes()).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{key}");
    }

    // The top level with "/" as the delimiter: objects and folders.
    let (status, page) = api.list(&alice, "photos", "?delimiter=/").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(keys(&page), ["top.txt", "z é.txt"]);
    assert_eq!(prefixes(&page), ["dir/", "docs/"]);
    assert!(page.get("next_page_token").is_none(), "{page}");
    // Inside a folder.
    let (_, page) = api
        .list(&alice, "photos", "?prefix=dir/&delimiter=%2F")
        .await;
    assert_eq!(keys(&page), ["dir/a.txt", "dir/b.txt"]);
    assert_eq!(prefixes(&page), ["dir/sub/"]);
    // Flat, in pages of two.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_string();
    for _ in 0..10 {
        let (status, page) = api.list(&alice, "photos", &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(keys(&page).len() <= 2);
        seen.extend(keys(&page).iter().map(|k| k.to_string()));
        match page["next_page_token"].as_str() {
            Some(t) => query = format!("?limit=2&page_token={}", t.replace('/', "%2F")),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "dir/a.txt",
            "dir/b.txt",
            "dir/sub/c.txt",
            "docs/",
            "top.txt",
            "z é.txt"
        ]
    );

    // Download: the bytes, the type they were stored with, an attachment.
    let resp = api
        .send(
            "GET",
            "/v1/buckets/photos/objects/z%20%C3%A9.txt",
            &alice,
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/plain");
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"z _.txt\"; filename*=UTF-8''z%20%C3%A9.txt"
    );
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::CONTENT_LENGTH], "14");
    assert_eq!(&body_of(resp).await[..], b"z%20%C3%A9.txt");

    // A larger upload (past the API's 1 MiB JSON limit) comes back byte for byte,
    // by id as well as by name.
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let resp = api.put_object(&alice, "photos", "dir/big.bin", &big).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let id = api.objects.list::<Bucket>(None, None, 10).await.unwrap().0[0]
        .metadata
        .id
        .clone();
    let resp = api
        .send(
            "GET",
            &format!("/v1/buckets/{id}/objects/dir/big.bin"),
            &alice,
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(body_of(resp).await[..] == big[..], "the bytes differ");

    // Without a Content-Length (chunked): held in memory, then written.
    let chunks = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(Bytes::from_static(b"part one, ")),
        Ok(Bytes::from_static(b"part two")),
    ]);
    let resp = api
        .send(
            "PUT",
            "/v1/buckets/photos/objects/chunked",
            &alice,
            Body::from_stream(chunks),
            &[],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(json_of(resp).await["size"], 18);
    let resp = api
        .send(
            "GET",
            "/v1/buckets/photos/objects/chunked",
            &alice,
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(&body_of(resp).await[..], b"part one, part two");

    // Delete: 204, then 404 for the object, to a download and to a second delete.
    let path = "/v1/buckets/photos/objects/dir/a.txt";
    let resp = api.send("DELETE", path, &alice, Body::empty(), &[]).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for method in ["GET", "DELETE"] {
        let resp = api.send(method, path, &alice, Body::empty(), &[]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method}");
        assert_eq!(json_of(resp).await["code"], "not_found");
    }
    let (_, page) = api.list(&alice, "photos", "?prefix=dir/&delimiter=/").await;
    assert_eq!(keys(&page), ["dir/b.txt", "dir/big.bin"]);

    // The gateway's quota refusal keeps its stable code.
    let resp = api.put_object(&alice, "photos", "quota/x", b"x").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_of(resp).await["code"], "quota_exceeded");
}

#[tokio::test]
async fn only_the_projects_own_active_buckets_and_sane_keys() {
    let api = api(Some(Arc::default())).await;
    let alice = api.member("p1").await;
    let bob = api.member("p2").await;
    let id = api.bucket(&alice, "photos", BucketPhase::Active).await;
    api.bucket(&alice, "young", BucketPhase::Creating).await;
    let resp = api
        .put_object(&alice, "photos", "secret.txt", b"alice's")
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Another project's bucket, by id or by name, for every operation: 404.
    for bucket in [id.as_str(), "photos"] {
        let (status, err) = api.list(&bob, bucket, "").await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let path = format!("/v1/buckets/{bucket}/objects/secret.txt");
        for method in ["GET", "DELETE"] {
            let resp = api.send(method, &path, &bob, Body::empty(), &[]).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
        }
        let resp = api.put_object(&bob, bucket, "secret.txt", b"bob's").await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    // An admin reaches it with ?project=.
    let resp = api
        .send(
            "GET",
            "/v1/buckets/photos/objects/secret.txt?project=p1",
            &api.admin,
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&body_of(resp).await[..], b"alice's");

    // A bucket that is not Active: 409 naming its phase.
    let (status, err) = api.list(&alice, "young", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        err["message"].as_str().unwrap().contains("Creating"),
        "{err}"
    );
    let resp = api.put_object(&alice, "young", "a", b"a").await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    // Keys: no `.`/`..` segment, no NUL, at most 1024 bytes; bad listing parameters.
    let long = "k".repeat(1025);
    for key in ["a/%2E%2E/b", "%2E", "a%00b", long.as_str()] {
        let resp = api.put_object(&alice, "photos", key, b"x").await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{key}");
        let err = json_of(resp).await;
        assert_eq!(
            (err["code"].as_str(), err["details"]["field"].as_str()),
            (Some("invalid_field"), Some("key")),
            "{err}"
        );
    }
    let resp = api
        .put_object(&alice, "photos", &"k".repeat(1024), b"x")
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?prefix=a%00", "prefix"),
    ] {
        let (status, err) = api.list(&alice, "photos", query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(err["details"]["field"], field, "{err}");
    }
    let (status, _) = api.list(&alice, "photos", "?bogus=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Limits of uploads: a declared length past 5 GiB is refused before any byte.
    let resp = api
        .send(
            "PUT",
            "/v1/buckets/photos/objects/huge",
            &alice,
            Body::empty(),
            &[("content-length", "5368709121")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let err = json_of(resp).await;
    assert_eq!(err["code"], "payload_too_large");
    assert_eq!(err["details"]["limit_bytes"], 5u64 << 30);
}

#[tokio::test]
async fn a_cloud_without_object_storage_says_so() {
    let api = api(None).await;
    let alice = api.member("p1").await;
    let (status, err) = api.list(&alice, "photos", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("object storage is not enabled"),
        "{err}"
    );
    let resp = api.put_object(&alice, "photos", "a", b"a").await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}
