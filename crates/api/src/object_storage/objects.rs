//! A bucket's objects through the API (the web console's file browser):
//! `GET /v1/buckets/{id}/objects` lists a page (with `prefix`, `delimiter`,
//! `page_token`, `limit`), and `GET`/`PUT`/`DELETE /v1/buckets/{id}/objects/{*key}`
//! download, upload and delete one object. The API does not speak S3 itself: the
//! binary gives it an [`ObjectBrowser`] (the S3 gateway with each project's platform
//! key); without one, every route is the 409 of a cloud without object storage.
//!
//! Reading needs the bucket visible to the caller, writing it writable (another
//! project's bucket is a 404, as everywhere); either needs it Active. Uploads stream
//! to the gateway with their own limit ([`MAX_OBJECT_BYTES`], S3's largest single
//! PUT), not the API's JSON body limit; one without a `Content-Length` is held in
//! memory up to [`MAX_UNSIZED_BYTES`].

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_model::{tenant_of, ApiError, Bucket, BucketPhase, ErrorCode};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::extract::QueryParams;
use crate::lookup::{find_visible, find_writable};
use crate::resource::{conflict, project_of};
use crate::{AppState, Shared};

/// The largest object one upload may write: S3's (and RGW's `rgw_max_put_size`)
/// limit of a single PUT, 5 GiB. Larger objects go through S3 multipart uploads.
pub const MAX_OBJECT_BYTES: u64 = 5 << 30;
/// The largest upload without a `Content-Length` (held in memory before it is sent).
pub const MAX_UNSIZED_BYTES: usize = 64 << 20;
/// The longest key, prefix or delimiter, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// Items per page of a listing: at most, and when `limit` is not given.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

/// An object's bytes as they come.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// One page of a bucket's objects to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectQuery {
    /// Only keys starting with this (`""`: all).
    pub prefix: String,
    /// Keys with this after the prefix are grouped into `prefixes` (`None`: a flat list).
    pub delimiter: Option<String>,
    /// The previous page's `next_page_token`.
    pub page_token: Option<String>,
    /// Items and prefixes per page, 1–1000.
    pub limit: u32,
}

/// An object in a listing (and the answer of an upload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectItem {
    /// The object's full key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// When it was written (RFC 3339 UTC).
    pub last_modified: String,
    /// The gateway's entity tag, without quotes: the MD5 of a single upload's
    /// bytes, `<md5>-<parts>` for a multipart one.
    pub etag: String,
}

/// One page of a bucket's objects.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectList {
    /// The objects of this page, in key order.
    pub items: Vec<ObjectItem>,
    /// With a `delimiter`: the "folders" under `prefix` (each ends with the
    /// delimiter); list again with one as `prefix` to open it.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// An object being downloaded.
pub struct ObjectContent {
    /// As stored (`None`: `application/octet-stream`).
    pub content_type: Option<String>,
    /// Bytes, when known.
    pub length: Option<u64>,
    /// Without quotes.
    pub etag: Option<String>,
    /// The bytes.
    pub body: ByteStream,
}

/// An object to write; `body` yields exactly `length` bytes.
pub struct NewObject {
    pub content_type: String,
    pub length: u64,
    pub body: ByteStream,
}

/// What the object store can answer instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrowseError {
    /// The key is not in the bucket (404).
    #[error("no such object")]
    NoSuchKey,
    /// The bucket is not in the gateway (being made, or removed behind our back) (409).
    #[error("the bucket is not in the S3 gateway")]
    NoSuchBucket,
    /// Past the bucket's or the project's quota (403 `quota_exceeded`).
    #[error("over quota: {0}")]
    QuotaExceeded(String),
    /// Larger than the gateway takes (413).
    #[error("too large: {0}")]
    TooLarge(String),
    /// A key, prefix or token the gateway refuses (400).
    #[error("{0}")]
    Invalid(String),
    /// The gateway answered with an error (503 `unavailable`, with its words).
    #[error("the S3 gateway refused {op}: {code} {message}")]
    Gateway {
        op: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The gateway did not answer (503).
    #[error("the S3 gateway cannot be reached: {0}")]
    Unreachable(String),
}

/// A bucket's objects in the object store: the tenant is the project's
/// (`yunhan_model::tenant_of`), the bucket its `metadata.name`.
#[async_trait]
pub trait ObjectBrowser: Send + Sync + std::fmt::Debug {
    /// One page of the bucket's objects (and, with a delimiter, prefixes).
    async fn list(
        &self,
        tenant: &str,
        bucket: &str,
        q: &ObjectQuery,
    ) -> Result<ObjectList, BrowseError>;
    /// An object's bytes; a missing key is [`BrowseError::NoSuchKey`].
    async fn get(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectContent, BrowseError>;
    /// Writes (or replaces) an object and answers it as a listing would.
    async fn put(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        object: NewObject,
    ) -> Result<ObjectItem, BrowseError>;
    /// Deletes an object; a missing key is [`BrowseError::NoSuchKey`].
    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<(), BrowseError>;
}

pub(crate) fn routes(r: Router<Shared>) -> Router<Shared> {
    r.route("/v1/buckets/{id}/objects", get(list)).route(
        "/v1/buckets/{id}/objects/{*key}",
        get(download).put(upload).delete(remove),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    prefix: Option<String>,
    delimiter: Option<String>,
    page_token: Option<String>,
    limit: Option<u32>,
    /// Admins: resolve the bucket's name in this project (id or name).
    project: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObjectParams {
    /// Admins: resolve the bucket's name in this project (id or name).
    project: Option<String>,
}

impl From<BrowseError> for HttpError {
    fn from(e: BrowseError) -> Self {
        let said = e.to_string();
        let err = match e {
            BrowseError::NoSuchKey => {
                ApiError::new(ErrorCode::NotFound, "no such object in this bucket")
                    .with_detail("kind", "Object")
            }
            BrowseError::NoSuchBucket => ApiError::new(
                ErrorCode::Conflict,
                "the bucket is not in the S3 gateway; the object-storage controller makes it again within seconds, retry then",
            ),
            BrowseError::QuotaExceeded(why) => ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "the S3 gateway refused the upload: it would pass the bucket's quota (quota_bytes, quota_objects) or the project's object_bytes ({why}); delete objects or raise the quota"
                ),
            )
            .with_detail("resource", "object_storage"),
            BrowseError::TooLarge(why) => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the S3 gateway refused the object as too large: {why}"),
            )
            .with_detail("limit_bytes", MAX_OBJECT_BYTES),
            BrowseError::Invalid(why) => ApiError::invalid_field("key", why),
            BrowseError::Gateway { status, code, .. } => {
                ApiError::new(ErrorCode::Unavailable, format!("{said}; retry shortly"))
                    .with_detail("gateway_status", status)
                    .with_detail("gateway_code", code)
            }
            BrowseError::Unreachable(_) => {
                ApiError::new(ErrorCode::Unavailable, format!("{said}; retry shortly"))
            }
        };
        err.into()
    }
}

/// The object store, or the 409 of a cloud without one.
fn browser(s: &AppState) -> Result<Arc<dyn ObjectBrowser>> {
    super::endpoint(s)?;
    s.config
        .object_browser
        .clone()
        .ok_or_else(|| super::not_enabled().into())
}

/// Why `value` (a key, prefix or delimiter) is refused, if it is.
fn text_error(what: &str, value: &str, allow_empty: bool) -> Option<String> {
    if value.is_empty() && !allow_empty || value.len() > MAX_KEY_BYTES {
        let min = if allow_empty { 0 } else { 1 };
        return Some(format!(
            "{what} is {min}–{MAX_KEY_BYTES} bytes of UTF-8, not {}",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Some(format!("{what} cannot hold a NUL character"));
    }
    None
}

/// Why `key` cannot name an object, if it cannot: 1–1024 bytes of UTF-8, no NUL,
/// no `.` or `..` path segment (HTTP clients rewrite those).
pub fn key_error(key: &str) -> Option<String> {
    if let Some(why) = text_error("an object key", key, false) {
        return Some(why);
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return Some("an object key cannot have `.` or `..` as a path segment".into());
    }
    None
}

fn check(field: &str, why: Option<String>) -> Result<()> {
    match why {
        Some(why) => Err(ApiError::invalid_field(field, why).into()),
        None => Ok(()),
    }
}

/// The bucket of the URL (visible, or writable for writes), Active.
async fn active_bucket(
    s: &AppState,
    p: &Principal,
    id: &str,
    project: Option<&str>,
    write: bool,
) -> Result<Doc<Bucket>> {
    let doc = match write {
        true => find_writable::<Bucket>(s, p, id, project).await?,
        false => find_visible::<Bucket>(s, p, id, project).await?,
    };
    if doc.status.phase != BucketPhase::Active {
        let name = &doc.metadata.name;
        let phase = doc.status.phase;
        let mut why =
            format!("bucket {name:?} is {phase:?}: its objects can be reached once it is Active");
        if !doc.status.message.is_empty() {
            why.push_str(&format!(" ({})", doc.status.message));
        }
        return Err(conflict(why));
    }
    Ok(doc)
}

fn tenant(doc: &Doc<Bucket>) -> String {
    tenant_of(project_of(doc))
}

/// `{id}` and `{*key}` of an object's URL, as the handlers take them.
type ObjectPath = std::result::Result<Path<(String, String)>, PathRejection>;

/// `{id}` and `{*key}` of the URL, the key checked.
fn object_path(path: ObjectPath) -> Result<(String, String)> {
    let Path((id, key)) = path.map_err(|e| {
        HttpError::from(ApiError::invalid_field(
            "key",
            format!("the object's path is not valid: {}", e.body_text()),
        ))
    })?;
    check("key", key_error(&key))?;
    Ok((id, key))
}

/// The object a request names, in an active bucket the caller may read (`write`:
/// change), and the browser that reaches it.
struct Target {
    browser: Arc<dyn ObjectBrowser>,
    tenant: String,
    bucket: String,
    key: String,
}

impl Target {
    async fn of(
        s: &AppState,
        p: &Principal,
        path: ObjectPath,
        project: Option<&str>,
        write: bool,
    ) -> Result<Target> {
        let browser = browser(s)?;
        let (id, key) = object_path(path)?;
        let bucket = active_bucket(s, p, &id, project, write).await?;
        Ok(Target {
            browser,
            tenant: tenant(&bucket),
            bucket: bucket.metadata.name,
            key,
        })
    }
}

/// `GET /v1/buckets/{id}/objects`: one page of the bucket's objects.
pub(crate) async fn list(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> Result<Json<ObjectList>> {
    let browser = browser(&s)?;
    let prefix = q.prefix.unwrap_or_default();
    check("prefix", text_error("prefix", &prefix, true))?;
    let delimiter = q.delimiter.filter(|d| !d.is_empty());
    if let Some(d) = &delimiter {
        check("delimiter", text_error("delimiter", d, false))?;
    }
    let page_token = q.page_token.filter(|t| !t.is_empty());
    if let Some(t) = &page_token {
        check("page_token", text_error("page_token", t, false))?;
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field("limit", format!("limit is 1–{MAX_LIMIT}")).into());
    }
    let bucket = active_bucket(&s, &p, &id, q.project.as_deref(), false).await?;
    let query = ObjectQuery {
        prefix,
        delimiter,
        page_token,
        limit,
    };
    let page = browser
        .list(&tenant(&bucket), &bucket.metadata.name, &query)
        .await
        .map_err(|e| match e {
            BrowseError::Invalid(why) => ApiError::invalid_field("page_token", why).into(),
            e => HttpError::from(e),
        })?;
    Ok(Json(page))
}

/// `Content-Disposition: attachment` naming the key's last segment: a plain ASCII
/// `filename` (anything else, quotes and backslashes as `_`) and the exact name as
/// RFC 5987 `filename*`.
pub fn content_disposition(key: &str) -> String {
    let name = key
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("object");
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(b as char)
            }
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// A content type fit for a header: visible ASCII, at most 255 bytes.
fn sane_content_type(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    let ok = !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| (b' '..=b'~').contains(&b));
    ok.then(|| v.to_string())
}

/// `GET /v1/buckets/{id}/objects/{*key}`: the object's bytes, as a download.
pub(crate) async fn download(
    State(s): State<Shared>,
    p: Principal,
    path: ObjectPath,
    QueryParams(q): QueryParams<ObjectParams>,
) -> Result<Response> {
    let t = Target::of(&s, &p, path, q.project.as_deref(), false).await?;
    let object = t.browser.get(&t.tenant, &t.bucket, &t.key).await?;
    let content_type = sane_content_type(object.content_type.as_deref())
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut resp = Response::new(Body::from_stream(object.body));
    let headers = resp.headers_mut();
    let mut set = |name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, content_type);
    set(header::CONTENT_DISPOSITION, content_disposition(&t.key));
    if let Some(len) = object.length {
        set(header::CONTENT_LENGTH, len.to_string());
    }
    if let Some(etag) = object.etag.filter(|e| !e.contains('"')) {
        set(header::ETAG, format!("\"{etag}\""));
    }
    // The API's origin also serves the web console: a tenant's file is never
    // rendered or run there, whatever its type says.
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff".into());
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; sandbox".into(),
    );
    set(header::CACHE_CONTROL, "private, no-store".into());
    Ok(resp)
}

fn too_large(why: String, limit: u64) -> HttpError {
    ApiError::new(ErrorCode::PayloadTooLarge, why)
        .with_detail("limit_bytes", limit)
        .into()
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(v) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let len = v.to_str().ok().and_then(|v| v.trim().parse().ok());
    match len {
        Some(len) => Ok(Some(len)),
        None => Err(
            ApiError::new(ErrorCode::InvalidRequest, "Content-Length is not a number")
                .with_detail("header", "content-length")
                .into(),
        ),
    }
}

/// The request body as the object store takes it: streamed with its declared
/// length, or (none declared) read into memory up to [`MAX_UNSIZED_BYTES`].
async fn object_body(headers: &HeaderMap, body: Body) -> Result<(u64, ByteStream)> {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    if let Some(len) = declared_length(headers)? {
        if len > MAX_OBJECT_BYTES {
            return Err(too_large(
                format!("an object uploaded through the API is at most {MAX_OBJECT_BYTES} bytes (5 GiB), this one is {len}; upload larger ones with an S3 client (multipart)"),
                MAX_OBJECT_BYTES,
            ));
        }
        return Ok((len, stream.boxed()));
    }
    let mut held = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            HttpError::from(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("the upload broke off: {e}"),
            ))
        })?;
        if held.len() + chunk.len() > MAX_UNSIZED_BYTES {
            return Err(too_large(
                format!("an upload without a Content-Length is at most {MAX_UNSIZED_BYTES} bytes; send Content-Length for larger objects (up to {MAX_OBJECT_BYTES} bytes)"),
                MAX_UNSIZED_BYTES as u64,
            ));
        }
        held.extend_from_slice(&chunk);
    }
    let len = held.len() as u64;
    Ok((
        len,
        futures::stream::once(async move { Ok(Bytes::from(held)) }).boxed(),
    ))
}

/// `PUT /v1/buckets/{id}/objects/{*key}` with the object's bytes as the body (any
/// `Content-Type`, stored with it): 201 with the object as a listing shows it.
pub(crate) async fn upload(
    State(s): State<Shared>,
    p: Principal,
    path: ObjectPath,
    QueryParams(q): QueryParams<ObjectParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let t = Target::of(&s, &p, path, q.project.as_deref(), true).await?;
    let content_type = sane_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .unwrap_or_else(|| "application/octet-stream".into());
    let (length, body) = object_body(&headers, body).await?;
    let object = NewObject {
        content_type,
        length,
        body,
    };
    let item = t.browser.put(&t.tenant, &t.bucket, &t.key, object).await?;
    Ok((StatusCode::CREATED, Json(item)).into_response())
}

/// `DELETE /v1/buckets/{id}/objects/{*key}`: 204; a missing key is a 404.
pub(crate) async fn remove(
    State(s): State<Shared>,
    p: Principal,
    path: ObjectPath,
    QueryParams(q): QueryParams<ObjectParams>,
) -> Result<StatusCode> {
    let t = Target::of(&s, &p, path, q.project.as_deref(), true).await?;
    t.browser.delete(&t.tenant, &t.bucket, &t.key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "dir/", "dir/a b+c.txt", "日本", ".x", "a..b"] {
            assert_eq!(key_error(good), None, "{good}");
        }
        assert_eq!(key_error(&"k".repeat(MAX_KEY_BYTES)), None);
        for bad in ["", "a\0", "..", "a/./b", "x/.."] {
            assert!(key_error(bad).is_some(), "{bad:?}");
        }
        let why = key_error(&"é".repeat(513)).unwrap();
        assert!(why.contains("not 1026"), "{why}");
    }

    #[test]
    fn downloads_are_attachments_with_safe_names() {
        assert_eq!(
            content_disposition("dir/report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            content_disposition("a\"b\\c;\r\nd é.txt"),
            "attachment; filename=\"a_b_c;__d _.txt\"; filename*=UTF-8''a%22b%5Cc%3B%0D%0Ad%20%C3%A9.txt"
        );
        assert_eq!(
            content_disposition("dir/sub/"),
            "attachment; filename=\"sub\"; filename*=UTF-8''sub"
        );
        assert_eq!(
            content_disposition("/"),
            "attachment; filename=\"object\"; filename*=UTF-8''object"
        );
        for key in ["x\ny", "\u{7f}", "日本語.txt"] {
            assert!(
                HeaderValue::from_str(&content_disposition(key)).is_ok(),
                "{key:?}"
            );
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            sane_content_type(Some(" text/plain; charset=utf-8 ")).as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(sane_content_type(Some("")), None);
        assert_eq!(sane_content_type(Some("a\u{e9}")), None);
        assert_eq!(sane_content_type(None), None);
    }

    #[test]
    fn gateway_errors_keep_stable_codes() {
        let code = |e: BrowseError| HttpError::from(e).error.code;
        assert_eq!(code(BrowseError::NoSuchKey), ErrorCode::NotFound);
        assert_eq!(code(BrowseError::NoSuchBucket), ErrorCode::Conflict);
        assert_eq!(
            code(BrowseError::QuotaExceeded("x".into())),
            ErrorCode::QuotaExceeded
        );
        assert_eq!(
            code(BrowseError::TooLarge("x".into())),
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            code(BrowseError::Invalid("x".into())),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(BrowseError::Unreachable("x".into())),
            ErrorCode::Unavailable
        );
        let e = HttpError::from(BrowseError::Gateway {
            op: "PutObject".into(),
            status: 500,
            code: "UnknownError".into(),
            message: "oops".into(),
        })
        .error;
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(
            e.message.contains("PutObject: UnknownError oops"),
            "{}",
            e.message
        );
        assert_eq!(e.details["gateway_code"], "UnknownError");
    }
}
