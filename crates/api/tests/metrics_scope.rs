//! Who sees what on `/metrics`: anonymous scrapes from elsewhere get the HTTP counters
//! only; scrapes from the server's own machine (loopback) are the operator's and also
//! get the platform figures (the store revision, every VM's, host's and pool's latest
//! samples: docs/monitoring.md).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn scrape_from(client: &str) -> String {
    let store = Arc::new(yunhan_store::MemStore::new());
    let app = yunhan_api::router(store, Default::default());
    let mut req = Request::get("/metrics").body(Body::empty()).unwrap();
    let addr: SocketAddr = client.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn anonymous_scrapes_from_elsewhere_see_no_platform_figures() {
    let text = scrape_from("10.1.2.3:40000").await;
    assert!(text.contains("yunhan_http_requests_total"), "{text}");
    assert!(!text.contains("yunhan_store_revision"), "{text}");
}

#[tokio::test]
async fn scrapes_from_the_machine_itself_see_the_platform_figures() {
    let text = scrape_from("127.0.0.1:40000").await;
    assert!(text.contains("\nyunhan_store_revision "), "{text}");
}
