//! The web console's pages, served at `/console` from the assets embedded in the
//! binary (`yunhan-console`) or, for development, from a directory
//! (`ApiConfig::console_dir`). Every answer carries a strict Content-Security-Policy:
//! scripts and styles only from this origin, no inline script, no framing.
//! `/console/assets/<file>` are the app's files; any other path under `/console/`
//! answers `index.html`, so the app's own URLs (e.g. `/console/vms/ins-…`) reload.

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::Shared;

/// The policy of every console answer (docs/console.md explains each part).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the console's files come from.
#[derive(Debug, Clone, Default)]
pub enum ConsoleAssets {
    /// Compiled into the binary (production).
    #[default]
    Embedded,
    /// Read from this directory at each request (developing the console).
    Dir(PathBuf),
}

pub(crate) fn routes(r: Router<Shared>) -> Router<Shared> {
    r.route("/", get(to_console))
        .route("/console", get(to_console))
        .route("/console/", get(index))
        .route("/console/{*path}", get(page))
}

async fn to_console() -> Redirect {
    Redirect::to("/console/")
}

async fn index(State(s): State<Shared>, headers: HeaderMap) -> Response {
    serve(&s.config.console, "index.html", &headers).await
}

async fn page(State(s): State<Shared>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    if path.starts_with("assets/") {
        serve(&s.config.console, &path, &headers).await
    } else {
        serve(&s.config.console, "index.html", &headers).await
    }
}

/// A file's bytes and, when the client takes gzip and a `.gz` was built, those instead.
struct Body {
    /// The embedded files are served without a copy.
    bytes: Bytes,
    gzipped: bool,
}

async fn read(assets: &ConsoleAssets, path: &str, gzip_ok: bool) -> Option<Body> {
    match assets {
        ConsoleAssets::Embedded => {
            let a = yunhan_console::asset(path)?;
            Some(match a.gzip.filter(|_| gzip_ok) {
                Some(gz) => Body {
                    bytes: Bytes::from_static(gz),
                    gzipped: true,
                },
                None => Body {
                    bytes: Bytes::from_static(a.body),
                    gzipped: false,
                },
            })
        }
        ConsoleAssets::Dir(dir) => {
            if path.split('/').any(|part| part == ".." || part.is_empty()) {
                return None;
            }
            let file = dir.join(path);
            if gzip_ok {
                if let Ok(bytes) = tokio::fs::read(format!("{}.gz", file.display())).await {
                    return Some(Body {
                        bytes: bytes.into(),
                        gzipped: true,
                    });
                }
            }
            let bytes = tokio::fs::read(&file).await.ok()?;
            Some(Body {
                bytes: bytes.into(),
                gzipped: false,
            })
        }
    }
}

fn takes_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}

async fn serve(assets: &ConsoleAssets, path: &str, headers: &HeaderMap) -> Response {
    let Some(body) = read(assets, path, takes_gzip(headers)).await else {
        let msg = if path == "index.html" {
            "The web console's assets are not in this build; run scripts/console build."
        } else {
            "No such console file."
        };
        return secured((StatusCode::NOT_FOUND, msg).into_response());
    };
    let mut resp = body.bytes.into_response();
    let h = resp.headers_mut();
    let ctype = yunhan_console::content_type_of(path);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if body.gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    secured(resp)
}

/// The security headers of every console answer.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let csp = HeaderValue::from_static(CONTENT_SECURITY_POLICY);
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
