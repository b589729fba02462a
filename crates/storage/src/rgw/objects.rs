//! Objects in a tenant's bucket, read and written with the tenant's platform
//! key (the web console's file browser, through the API): S3 ListObjectsV2,
//! GetObject and PutObject with their bodies streamed, HeadObject and
//! DeleteObject.
//!
//! The pure parts — the list request, the listing's XML, the answers' dates —
//! are functions of their own, tested here with the gateway's own answers
//! (`testdata/list_objects_v2*.xml`).

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use reqwest::Method;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::admin::RgwAdmin;
use super::s3::{xml_element, S3Request, S3Response, StreamingRequest};
use super::{validate_bucket, validate_tenant, RgwError};
use crate::StorageError;

/// The longest object key S3 allows, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// The most keys one ListObjectsV2 answers.
pub const MAX_LIST_KEYS: u32 = 1000;
/// How much of an error's body is read (S3 error documents are small).
const MAX_ERROR_BODY: usize = 64 << 10;

/// An object's bytes as they come.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An object key the browser reads and writes: 1–[`MAX_KEY_BYTES`] bytes, no
/// NUL, and no `.` or `..` path segment (HTTP clients and URL libraries
/// rewrite those, so such an object could not be addressed reliably).
pub fn validate_object_key(key: &str) -> Result<(), StorageError> {
    let why = if key.is_empty() || key.len() > MAX_KEY_BYTES {
        format!(
            "an object key is 1-{MAX_KEY_BYTES} bytes of UTF-8 (this one is {})",
            key.len()
        )
    } else if key.contains('\0') {
        "an object key cannot hold a NUL character".to_string()
    } else if key.split('/').any(|s| s == "." || s == "..") {
        "an object key cannot have `.` or `..` as a path segment".to_string()
    } else {
        return Ok(());
    };
    Err(StorageError::invalid(why))
}

/// One page of a bucket's listing to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListObjects {
    /// Only keys starting with this (`""`: all).
    pub prefix: String,
    /// Group keys by what follows the prefix up to this (usually `/`) into
    /// common prefixes; `None`: a flat listing.
    pub delimiter: Option<String>,
    /// The previous page's [`ObjectListing::next_continuation_token`].
    pub continuation_token: Option<String>,
    /// Keys and prefixes per page, 1–[`MAX_LIST_KEYS`].
    pub max_keys: u32,
}

impl Default for ListObjects {
    fn default() -> Self {
        ListObjects {
            prefix: String::new(),
            delimiter: None,
            continuation_token: None,
            max_keys: MAX_LIST_KEYS,
        }
    }
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The full key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// RFC 3339, UTC, whole seconds.
    pub last_modified: String,
    /// The gateway's entity tag, without quotes (the MD5 of a simple
    /// upload's bytes, `<md5>-<parts>` of a multipart one).
    pub etag: String,
}

/// One page of a bucket's listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectListing {
    /// The objects of the page, in key order.
    pub objects: Vec<ObjectEntry>,
    /// With a delimiter: the "directories" (prefix + … + delimiter), in order.
    pub common_prefixes: Vec<String>,
    /// Ask again with this for the next page; `None` on the last one.
    pub next_continuation_token: Option<String>,
}

/// An object being read: its headers, and its bytes as they arrive.
pub struct ObjectData {
    /// As it was stored (`None`: the gateway said none).
    pub content_type: Option<String>,
    /// Bytes, when the gateway said.
    pub content_length: Option<u64>,
    /// Without quotes.
    pub etag: Option<String>,
    /// RFC 3339, UTC.
    pub last_modified: Option<String>,
    /// The bytes.
    pub body: ByteStream,
}

impl std::fmt::Debug for ObjectData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectData")
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .field("etag", &self.etag)
            .field("last_modified", &self.last_modified)
            .finish_non_exhaustive()
    }
}

/// An object to write: S3's PutObject needs its length before its bytes.
pub struct ObjectUpload {
    /// Stored with the object and answered on reads.
    pub content_type: String,
    /// Exactly the bytes `body` yields (more or fewer fail the upload).
    pub content_length: u64,
    /// The bytes.
    pub body: ByteStream,
}

impl std::fmt::Debug for ObjectUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectUpload")
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// The ListObjectsV2 request for `q` (path-style, on the tenant's own bucket).
pub(crate) fn list_request(bucket: &str, q: &ListObjects) -> S3Request {
    let max_keys = q.max_keys.clamp(1, MAX_LIST_KEYS).to_string();
    let mut r = S3Request::new(Method::GET, format!("/{bucket}"))
        .query("list-type", "2")
        .query("max-keys", &max_keys);
    if !q.prefix.is_empty() {
        r = r.query("prefix", &q.prefix);
    }
    if let Some(d) = q.delimiter.as_deref().filter(|d| !d.is_empty()) {
        r = r.query("delimiter", d);
    }
    if let Some(t) = q.continuation_token.as_deref().filter(|t| !t.is_empty()) {
        r = r.query("continuation-token", t);
    }
    r
}

/// The path of an object (not encoded).
fn object_path(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{key}")
}

/// XML's five entities and character references; anything else is kept as it is.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest
            .find(';')
            .and_then(|end| Some((entity(&rest[1..end])?, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    let number = |digits: &str, radix| u32::from_str_radix(digits, radix).ok()?.try_into().ok();
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
            Some(hex) => number(hex, 16),
            None => number(name.strip_prefix('#')?, 10),
        },
    }
}

/// The contents of every `<name>…</name>` of `xml`, in order (not nested).
fn blocks<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(len) = body.find(&close) else {
            break;
        };
        found.push(&body[..len]);
        rest = &body[len + close.len()..];
    }
    found
}

/// An S3 time (`2024-05-01T12:00:00.123Z`) as the API writes times: RFC 3339,
/// UTC, whole seconds; anything unparsable as it came.
fn rfc3339_seconds(t: &str) -> String {
    OffsetDateTime::parse(t, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// An HTTP date (`Wed, 01 May 2024 12:00:00 GMT`, the `Last-Modified` header)
/// as RFC 3339 UTC.
fn http_date(t: &str) -> Option<String> {
    let f = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = PrimitiveDateTime::parse(t.trim(), &f).ok()?.assume_utc();
    t.format(&Rfc3339).ok()
}

fn unparsable(why: String) -> RgwError {
    StorageError::Backend {
        command: "S3 ListObjectsV2".into(),
        stderr: format!("unexpected answer: {why}"),
    }
    .into()
}

fn parse_entry(block: &str) -> Result<ObjectEntry, RgwError> {
    let field = |name| xml_element(block, name).map(|v| unescape(&v));
    let key = field("Key").ok_or_else(|| unparsable("an object without <Key>".into()))?;
    let size = field("Size")
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| unparsable(format!("object {key:?} without a <Size>")))?;
    Ok(ObjectEntry {
        size,
        last_modified: field("LastModified")
            .map(|t| rfc3339_seconds(t.trim()))
            .unwrap_or_default(),
        etag: field("ETag")
            .map(|e| e.trim().trim_matches('"').to_string())
            .unwrap_or_default(),
        key,
    })
}

/// A ListObjectsV2 answer (`<ListBucketResult>`).
pub(crate) fn parse_listing(xml: &str) -> Result<ObjectListing, RgwError> {
    if !xml.contains("<ListBucketResult") {
        let start: String = xml.chars().take(200).collect();
        return Err(unparsable(format!("no <ListBucketResult> in {start:?}")));
    }
    let objects = blocks(xml, "Contents")
        .into_iter()
        .map(parse_entry)
        .collect::<Result<Vec<_>, _>>()?;
    let common_prefixes = blocks(xml, "CommonPrefixes")
        .into_iter()
        .filter_map(|b| xml_element(b, "Prefix"))
        .map(|p| unescape(&p))
        .collect();
    let truncated = xml_element(xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
    let next_continuation_token = xml_element(xml, "NextContinuationToken")
        .map(|t| unescape(&t))
        .filter(|t| truncated && !t.is_empty());
    Ok(ObjectListing {
        objects,
        common_prefixes,
        next_continuation_token,
    })
}

fn header(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

fn etag_of(headers: &HeaderMap) -> Option<String> {
    header(headers, ETAG).map(|e| e.trim().trim_matches('"').to_string())
}

/// S3's codes about the bucket itself, named as such.
fn about_bucket(e: RgwError, bucket: &str) -> RgwError {
    match e.s3_code() {
        Some("NoSuchBucket") => RgwError::NoSuchBucket(bucket.to_string()),
        _ => e,
    }
}

/// A platform key the gateway no longer knows (the tenant was made again elsewhere).
fn stale_key(e: &RgwError) -> bool {
    matches!(
        e.s3_code(),
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch")
    )
}

/// A 2xx answer as it is; any other as the error it says (its body read, up to a bound).
async fn success(resp: reqwest::Response, op: &str) -> Result<reqwest::Response, RgwError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    Err(S3Response { status, body }.into_error(op))
}

impl RgwAdmin {
    /// Sends a request without a body with the tenant's platform key; a key the
    /// gateway refuses as unknown is looked up again, once.
    async fn bodiless(
        &self,
        tenant: &str,
        op: &str,
        method: Method,
        path: &str,
    ) -> Result<reqwest::Response, RgwError> {
        let request = || StreamingRequest {
            method: method.clone(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
        };
        let key = self.platform_key(tenant).await?;
        let resp = self.s3()?.send_streaming(request(), &key).await?;
        match success(resp, op).await {
            Err(e) if stale_key(&e) => {}
            other => return other,
        }
        self.cache_key(tenant, None);
        let key = self.platform_key(tenant).await?;
        let resp = self.s3()?.send_streaming(request(), &key).await?;
        success(resp, op).await
    }

    /// One page of the objects of `bucket` (ListObjectsV2).
    pub async fn list_objects(
        &self,
        tenant: &str,
        bucket: &str,
        q: &ListObjects,
    ) -> Result<ObjectListing, RgwError> {
        validate_tenant(tenant)?;
        validate_bucket(bucket)?;
        let resp = self.s3_platform(tenant, &list_request(bucket, q)).await?;
        if !resp.is_success() {
            return Err(about_bucket(resp.into_error("ListObjectsV2"), bucket));
        }
        parse_listing(&String::from_utf8_lossy(&resp.body))
    }

    /// An object's headers and its bytes as they come (GetObject). A missing
    /// key is the S3 error `NoSuchKey`.
    pub async fn get_object(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectData, RgwError> {
        validate_tenant(tenant)?;
        validate_bucket(bucket)?;
        validate_object_key(key)?;
        let resp = self
            .bodiless(tenant, "GetObject", Method::GET, &object_path(bucket, key))
            .await
            .map_err(|e| about_bucket(e, bucket))?;
        let headers = resp.headers();
        let data = ObjectData {
            content_type: header(headers, CONTENT_TYPE),
            content_length: header(headers, CONTENT_LENGTH).and_then(|l| l.parse().ok()),
            etag: etag_of(headers),
            last_modified: header(headers, LAST_MODIFIED).and_then(|t| http_date(&t)),
            body: resp.bytes_stream().map_err(std::io::Error::other).boxed(),
        };
        Ok(data)
    }

    /// What a listing would say of one object (HeadObject); a missing key is
    /// the S3 error `NoSuchKey`.
    pub async fn head_object(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectEntry, RgwError> {
        validate_tenant(tenant)?;
        validate_bucket(bucket)?;
        validate_object_key(key)?;
        let path = object_path(bucket, key);
        let resp = match self
            .bodiless(tenant, "HeadObject", Method::HEAD, &path)
            .await
        {
            Ok(resp) => resp,
            // A HEAD answer has no body to name the error.
            Err(RgwError::S3 {
                status: 404,
                op,
                message,
                ..
            }) => {
                return Err(RgwError::S3 {
                    op,
                    status: 404,
                    code: "NoSuchKey".into(),
                    message,
                })
            }
            Err(e) => return Err(about_bucket(e, bucket)),
        };
        let headers = resp.headers();
        Ok(ObjectEntry {
            key: key.to_string(),
            size: header(headers, CONTENT_LENGTH)
                .and_then(|l| l.parse().ok())
                .unwrap_or_default(),
            last_modified: header(headers, LAST_MODIFIED)
                .and_then(|t| http_date(&t))
                .unwrap_or_default(),
            etag: etag_of(headers).unwrap_or_default(),
        })
    }

    /// Writes an object (PutObject, its body streamed unsigned) and answers it
    /// as a listing would. The gateway refuses one past a quota with
    /// `QuotaExceeded`.
    pub async fn put_object(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        upload: ObjectUpload,
    ) -> Result<ObjectEntry, RgwError> {
        validate_tenant(tenant)?;
        validate_bucket(bucket)?;
        validate_object_key(key)?;
        let creds = self.platform_key(tenant).await?;
        let req = StreamingRequest {
            method: Method::PUT,
            path: object_path(bucket, key),
            headers: vec![
                (CONTENT_TYPE.to_string(), upload.content_type.clone()),
                (
                    CONTENT_LENGTH.to_string(),
                    upload.content_length.to_string(),
                ),
            ],
            body: Some(reqwest::Body::wrap_stream(upload.body)),
        };
        let resp = match success(self.s3()?.send_streaming(req, &creds).await?, "PutObject").await {
            Ok(resp) => resp,
            Err(e) => {
                if stale_key(&e) {
                    // The body is gone: the next upload finds the key again.
                    self.cache_key(tenant, None);
                }
                return Err(about_bucket(e, bucket));
            }
        };
        let etag = etag_of(resp.headers()).unwrap_or_default();
        // The gateway's own time and tag; what we know if it cannot say.
        match self.head_object(tenant, bucket, key).await {
            Ok(entry) => Ok(entry),
            Err(e) => {
                tracing::warn!(error = %e, bucket, "cannot read back an object just written");
                Ok(ObjectEntry {
                    key: key.to_string(),
                    size: upload.content_length,
                    last_modified: rfc3339_seconds(
                        &OffsetDateTime::now_utc()
                            .format(&Rfc3339)
                            .unwrap_or_default(),
                    ),
                    etag,
                })
            }
        }
    }

    /// Deletes an object (DeleteObject). S3 answers 204 whether or not it was
    /// there.
    pub async fn delete_object(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(), RgwError> {
        validate_tenant(tenant)?;
        validate_bucket(bucket)?;
        validate_object_key(key)?;
        let req = S3Request::new(Method::DELETE, object_path(bucket, key));
        let resp = self.s3_platform(tenant, &req).await?;
        match resp.is_success() {
            true => Ok(()),
            false => Err(about_bucket(resp.into_error("DeleteObject"), bucket)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE_1: &str = include_str!("testdata/list_objects_v2.xml");
    const PAGE_2: &str = include_str!("testdata/list_objects_v2_last.xml");

    #[test]
    fn keys() {
        for good in [
            "a",
            "dir/",
            "dir/a b+c.txt",
            "日本/語",
            "a..b",
            ".hidden",
            "a//b",
        ] {
            assert!(validate_object_key(good).is_ok(), "{good}");
        }
        assert!(validate_object_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        for bad in ["", "a\0b", ".", "..", "a/../b", "a/./b", "dir/.."] {
            assert!(validate_object_key(bad).is_err(), "{bad:?}");
        }
        // 1024 bytes, not characters.
        let e = validate_object_key(&"é".repeat(513))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1026"), "{e}");
    }

    #[test]
    fn list_requests() {
        let q = ListObjects {
            prefix: "dir/a b".into(),
            delimiter: Some("/".into()),
            continuation_token: Some("1ZmwiP+Tok/en==".into()),
            max_keys: 2,
        };
        let r = list_request("photos", &q);
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.path, "/photos");
        assert_eq!(
            r.wire_query(),
            "continuation-token=1ZmwiP%2BTok%2Fen%3D%3D&delimiter=%2F&list-type=2&max-keys=2&prefix=dir%2Fa%20b"
        );
        let flat = list_request("photos", &ListObjects::default());
        assert_eq!(flat.wire_query(), "list-type=2&max-keys=1000");
        let clamped = ListObjects {
            max_keys: 0,
            delimiter: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(
            list_request("p", &clamped).wire_query(),
            "list-type=2&max-keys=1"
        );
        assert_eq!(object_path("photos", "dir/a b"), "/photos/dir/a b");
    }

    #[test]
    fn listings_parse() {
        let l = parse_listing(PAGE_1).unwrap();
        assert_eq!(
            l.objects,
            [
                ObjectEntry {
                    key: "a & <b>.txt".into(),
                    size: 11,
                    last_modified: "2024-05-01T12:00:00Z".into(),
                    etag: "5eb63bbbe01eeed093cb22bb8f5acdc3".into(),
                },
                ObjectEntry {
                    key: "big.iso".into(),
                    size: 15728640,
                    last_modified: "2024-05-01T12:00:01Z".into(),
                    etag: "2bc6fb0e6b5a5f5f0e3ae2e8d8c4f7a3-3".into(),
                },
            ]
        );
        assert_eq!(l.common_prefixes, ["dir/", "docs/"]);
        assert_eq!(
            l.next_continuation_token.as_deref(),
            Some("1ZmwiP+Tok/en==")
        );
        let last = parse_listing(PAGE_2).unwrap();
        assert_eq!(last.objects.len(), 1);
        assert_eq!(last.objects[0].key, "zz\u{e9}");
        assert!(last.common_prefixes.is_empty());
        assert_eq!(last.next_continuation_token, None);
        let empty = parse_listing(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>photos</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>"#,
        )
        .unwrap();
        assert_eq!(empty, ObjectListing::default());
        let e = parse_listing("<html>oops</html>").unwrap_err().to_string();
        assert!(e.contains("no <ListBucketResult>"), "{e}");
        let e =
            parse_listing("<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>")
                .unwrap_err()
                .to_string();
        assert!(e.contains("without a <Size>"), "{e}");
    }

    #[test]
    fn xml_text() {
        assert_eq!(
            unescape("a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;"),
            "a & b <c> \"d\" 'e'"
        );
        assert_eq!(unescape("&#233;&#xE9;&#X41;"), "ééA");
        assert_eq!(
            unescape("AT&T &bogus; & &#xD800;"),
            "AT&T &bogus; & &#xD800;"
        );
        assert_eq!(blocks("<a>1</a><b/><a>2</a><a>3", "a"), ["1", "2"]);
    }

    #[test]
    fn times() {
        assert_eq!(
            rfc3339_seconds("2024-05-01T12:00:00.999Z"),
            "2024-05-01T12:00:00Z"
        );
        assert_eq!(
            rfc3339_seconds("2024-05-01T14:00:00+02:00"),
            "2024-05-01T12:00:00Z"
        );
        assert_eq!(rfc3339_seconds("yesterday"), "yesterday");
        assert_eq!(
            http_date("Wed, 01 May 2024 12:00:00 GMT").as_deref(),
            Some("2024-05-01T12:00:00Z")
        );
        assert_eq!(http_date("01/05/2024"), None);
    }

    #[test]
    fn errors_about_the_bucket() {
        let e = S3Response {
            status: 404,
            body: b"<Error><Code>NoSuchBucket</Code></Error>".to_vec(),
        }
        .into_error("GetObject");
        assert!(matches!(about_bucket(e, "photos"), RgwError::NoSuchBucket(b) if b == "photos"));
        let e = S3Response {
            status: 404,
            body: b"<Error><Code>NoSuchKey</Code></Error>".to_vec(),
        }
        .into_error("GetObject");
        assert_eq!(about_bucket(e, "photos").s3_code(), Some("NoSuchKey"));
        let stale = S3Response {
            status: 403,
            body: b"<Error><Code>InvalidAccessKeyId</Code></Error>".to_vec(),
        }
        .into_error("GetObject");
        assert!(stale_key(&stale));
    }
}
