//! JSON answers are gzipped for clients that take gzip, and only those: console files
//! keep their build-time gzip (never compressed twice), small answers stay plain.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(path: &str, gzip: bool) -> (Option<String>, Vec<u8>) {
    let store = Arc::new(yunhan_store::MemStore::new());
    let app = yunhan_api::router(store, Default::default());
    let mut req = Request::get(path);
    if gzip {
        req = req.header(header::ACCEPT_ENCODING, "gzip");
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let enc = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (enc, body)
}

#[tokio::test]
async fn json_answers_are_gzipped_for_clients_that_take_it() {
    let (enc, plain) = get("/v1/openapi.json", false).await;
    assert_eq!(enc, None);
    assert!(serde_json::from_slice::<serde_json::Value>(&plain).is_ok());
    let (enc, zipped) = get("/v1/openapi.json", true).await;
    assert_eq!(enc.as_deref(), Some("gzip"));
    assert_eq!(&zipped[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(
        zipped.len() * 5 < plain.len(),
        "{} vs {}",
        zipped.len(),
        plain.len()
    );
    // Small answers are not worth it.
    let (enc, _) = get("/healthz", true).await;
    assert_eq!(enc, None);
}

#[tokio::test]
async fn console_files_keep_their_own_gzip() {
    let (enc, body) = get("/console/", true).await;
    assert_eq!(enc.as_deref(), Some("gzip"));
    let mut html = String::new();
    gunzip(&body, &mut html);
    assert!(html.contains("/console/assets/"), "{html}");
}

/// Gunzips with the `gzip` command (no extra crate for one test); a body compressed
/// twice would come out still gzipped and fail the caller's check.
fn gunzip(gz: &[u8], out: &mut String) {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(gz).unwrap();
    let o = child.wait_with_output().unwrap();
    *out = String::from_utf8(o.stdout).unwrap();
}
