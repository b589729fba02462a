//! Image documents name files on the server (`status.disk_path` and the
//! like): the agents read them from the store, but only platform admins see
//! them in API responses.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::images::upload::internal;
use crate::Shared;

/// Status fields that name files on the server: platform admins only.
const SERVER_PATHS: [&str; 3] = ["disk_path", "kernel_path", "initrd_path"];

/// Middleware: responses about images leave out the server's file paths
/// unless the caller is a platform admin (the agents read them from the store).
pub(crate) async fn hide_server_paths(
    State(s): State<Shared>,
    req: Request,
    next: Next,
) -> Response {
    if !req.uri().path().starts_with("/v1/images") {
        return next.run(req).await;
    }
    let token = bearer_token(req.headers());
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let resp = next.run(req).await;
    // Only successful answers carry images; the handler has just accepted the
    // token, so asking again is answered from the authenticator's cache.
    if !resp.status().is_success() {
        return resp;
    }
    let admin = match token {
        Some(t) => s
            .auth
            .authenticate(&t, client)
            .await
            .is_ok_and(|p| p.is_admin()),
        None => false,
    };
    if admin {
        return resp;
    }
    without_paths(resp).await
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim()
        .split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

async fn without_paths(resp: Response) -> Response {
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return internal("cannot read the response", e).into_response(),
    };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    strip_paths(&mut v);
    parts.headers.remove(header::CONTENT_LENGTH);
    let out = serde_json::to_vec(&v).unwrap_or_default();
    Response::from_parts(parts, Body::from(out))
}

/// Removes the server paths from an image document or a list of them.
fn strip_paths(v: &mut serde_json::Value) {
    if let Some(items) = v.get_mut("items").and_then(|i| i.as_array_mut()) {
        items.iter_mut().for_each(strip_paths);
    }
    if let Some(status) = v.get_mut("status").and_then(|s| s.as_object_mut()) {
        for key in SERVER_PATHS {
            status.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_see_no_server_paths_in_documents_or_lists() {
        let doc = serde_json::json!({"status": {"phase": "Active", "disk_path": "/srv/x.raw",
            "kernel_path": "/srv/x.kernel", "initrd_path": "/srv/x.initrd", "checksum": "sha256:0"}});
        let mut list = serde_json::json!({"items": [doc.clone(), doc.clone()]});
        let mut one = doc;
        strip_paths(&mut one);
        strip_paths(&mut list);
        let want = serde_json::json!({"status": {"phase": "Active", "checksum": "sha256:0"}});
        assert_eq!(one, want);
        assert_eq!(list["items"][1], want);
    }
}
