//! A minimal S3 client: path-style requests, signed with [`sigv4`] (or
//! anonymous), for the few calls the driver makes itself and for tests.

use std::time::Duration;

use reqwest::Url;
use time::macros::format_description;
use time::OffsetDateTime;

use super::sigv4::{self, Signable};
use super::RgwError;
use crate::StorageError;

/// The HTTP method of an [`S3Request`] (reqwest's).
pub use reqwest::Method;

/// How long one S3 call may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take for a call whose body streams.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `x-amz-content-sha256` of a body that is not hashed in advance.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// An S3 key pair. `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key: String,
    /// The secret it is signed with.
    pub secret_key: String,
}

impl S3Credentials {
    /// A key pair.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        S3Credentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// One path-style S3 request.
#[derive(Debug, Clone)]
pub struct S3Request {
    /// The HTTP method.
    pub method: Method,
    /// Not encoded: `/bucket/key`, `/tenant:bucket/key`.
    pub path: String,
    /// Not encoded; `("policy", "")` is the sub-resource `?policy`.
    pub query: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

impl S3Request {
    /// `method path`, no query, empty body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        S3Request {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a query parameter (`""` for a sub-resource without a value).
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The query as sent: encoded, sorted, `key` alone for an empty value.
    pub(crate) fn wire_query(&self) -> String {
        let mut q: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| match v.is_empty() {
                true => sigv4::uri_encode(k, true),
                false => format!(
                    "{}={}",
                    sigv4::uri_encode(k, true),
                    sigv4::uri_encode(v, true)
                ),
            })
            .collect();
        q.sort();
        q.join("&")
    }
}

/// Whatever the gateway answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Response {
    /// The HTTP status.
    pub status: u16,
    /// The body as received.
    pub body: Vec<u8>,
}

impl S3Response {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `<Code>` of an S3 error document.
    pub fn error_code(&self) -> Option<String> {
        xml_element(&String::from_utf8_lossy(&self.body), "Code")
    }

    /// The response as an error of operation `op`.
    pub fn into_error(self, op: &str) -> RgwError {
        let text = String::from_utf8_lossy(&self.body);
        RgwError::S3 {
            op: op.to_string(),
            status: self.status,
            code: xml_element(&text, "Code").unwrap_or_else(|| format!("HTTP {}", self.status)),
            message: xml_element(&text, "Message").unwrap_or_default(),
        }
    }
}

/// The text of the first `<name>…</name>` in `xml` (S3 error documents are
/// flat; no XML parser needed).
pub(crate) fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].to_string())
}

/// An S3 endpoint (`http://host:port`), spoken to path-style.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: reqwest::Client,
    /// For objects' bodies: no overall timeout (a 5 GiB upload takes its time).
    streaming: reqwest::Client,
    endpoint: String,
    base: Url,
    /// The `Host` header (and signed host): `host[:port]`.
    host: String,
}

impl S3Client {
    /// A client for `endpoint` (`http://127.0.0.1:7480`).
    pub fn new(endpoint: &str) -> Result<Self, RgwError> {
        let bad = |why: &str| StorageError::invalid(format!("S3 endpoint `{endpoint}`: {why}"));
        let base = Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(bad("no host").into()),
        };
        let no_client = |e: reqwest::Error| RgwError::Unreachable {
            endpoint: endpoint.to_string(),
            why: format!("cannot build an HTTP client: {e}"),
        };
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(no_client)?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(no_client)?;
        Ok(S3Client {
            http,
            streaming,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            base,
            host,
        })
    }

    /// The endpoint, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends `req`, signed with `creds` or anonymous; any HTTP status is `Ok`.
    pub async fn send(
        &self,
        req: &S3Request,
        creds: Option<&S3Credentials>,
    ) -> Result<S3Response, RgwError> {
        let (url, path) = self.url(&req.path, &req.wire_query());
        let mut builder = self.http.request(req.method.clone(), url);
        let payload_hash = sigv4::sha256_hex(&req.body);
        let signing = Signing {
            method: &req.method,
            encoded_path: &path,
            query: &req.query,
            payload_hash: &payload_hash,
        };
        for (name, value) in self.signed_headers(&signing, creds) {
            builder = builder.header(name, value);
        }
        let resp = builder
            .body(req.body.clone())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.unreachable(e))?
            .to_vec();
        Ok(S3Response { status, body })
    }

    /// Sends `req` signed with `creds` and answers as soon as the headers are in:
    /// the body of the answer is the caller's to read (any HTTP status is `Ok`).
    /// A request body is sent as it comes, its payload unsigned
    /// (`UNSIGNED-PAYLOAD`); no overall timeout.
    pub async fn send_streaming(
        &self,
        req: StreamingRequest,
        creds: &S3Credentials,
    ) -> Result<reqwest::Response, RgwError> {
        let (url, path) = self.url(&req.path, "");
        let mut builder = self.streaming.request(req.method.clone(), url);
        let payload_hash = match req.body {
            Some(_) => UNSIGNED_PAYLOAD,
            None => sigv4::EMPTY_SHA256,
        };
        let signing = Signing {
            method: &req.method,
            encoded_path: &path,
            query: &[],
            payload_hash,
        };
        for (name, value) in self.signed_headers(&signing, Some(creds)) {
            builder = builder.header(name, value);
        }
        for (name, value) in req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        builder.send().await.map_err(|e| self.unreachable(e))
    }

    /// The URL of `path` (not encoded) with `query` (encoded), and the encoded path.
    fn url(&self, path: &str, query: &str) -> (Url, String) {
        let path = sigv4::uri_encode(path, false);
        let mut url = self.base.clone();
        url.set_path(&path);
        url.set_query((!query.is_empty()).then_some(query));
        (url, path)
    }

    /// The gateway did not answer (or its answer broke off).
    pub(crate) fn unreachable(&self, e: reqwest::Error) -> RgwError {
        RgwError::Unreachable {
            endpoint: self.endpoint.clone(),
            why: e.to_string(),
        }
    }

    /// Like [`S3Client::send`], but a non-2xx answer is `RgwError::S3` naming `op`.
    pub async fn call(
        &self,
        op: &str,
        req: &S3Request,
        creds: Option<&S3Credentials>,
    ) -> Result<S3Response, RgwError> {
        let resp = self.send(req, creds).await?;
        match resp.is_success() {
            true => Ok(resp),
            false => Err(resp.into_error(op)),
        }
    }

    /// `host`, and with credentials `x-amz-date`, `x-amz-content-sha256`
    /// and `authorization`.
    fn signed_headers(
        &self,
        req: &Signing<'_>,
        creds: Option<&S3Credentials>,
    ) -> Vec<(String, String)> {
        let mut headers = vec![("host".to_string(), self.host.clone())];
        let Some(creds) = creds else {
            return headers;
        };
        headers.push(("x-amz-date".into(), amz_date(OffsetDateTime::now_utc())));
        headers.push(("x-amz-content-sha256".into(), req.payload_hash.to_string()));
        let auth = sigv4::authorization(
            &creds.access_key,
            &creds.secret_key,
            &Signable {
                method: req.method.as_str(),
                canonical_uri: req.encoded_path,
                query: req.query,
                headers: &headers,
                payload_hash: req.payload_hash,
                amz_date: &headers[1].1,
            },
        );
        headers.push(("authorization".into(), auth));
        headers
    }
}

/// What [`S3Client::signed_headers`] signs.
struct Signing<'a> {
    method: &'a Method,
    encoded_path: &'a str,
    query: &'a [(String, String)],
    payload_hash: &'a str,
}

/// A request for [`S3Client::send_streaming`]: no query, a body that streams.
#[derive(Debug)]
pub struct StreamingRequest {
    /// The HTTP method.
    pub method: Method,
    /// Not encoded: `/bucket/key`.
    pub path: String,
    /// Sent, not signed (e.g. `content-type`, `content-length`).
    pub headers: Vec<(String, String)>,
    /// `None`: no body.
    pub body: Option<reqwest::Body>,
}

/// `YYYYMMDDTHHMMSSZ`.
fn amz_date(t: OffsetDateTime) -> String {
    let f = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIED: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>QuotaExceeded</Code><Message></Message><BucketName>photos</BucketName><RequestId>tx0-default</RequestId><HostId>111b-default-default</HostId></Error>"#;

    #[test]
    fn s3_errors_carry_code_and_message() {
        let r = S3Response {
            status: 403,
            body: DENIED.into(),
        };
        assert_eq!(r.error_code().as_deref(), Some("QuotaExceeded"));
        let e = r.into_error("PutObject");
        assert_eq!(e.s3_code(), Some("QuotaExceeded"));
        assert_eq!(
            e.to_string(),
            "the S3 gateway refused `PutObject`: QuotaExceeded "
        );
        let with_message = S3Response {
            status: 409,
            body: b"<Error><Code>BucketNotEmpty</Code><Message>not empty</Message></Error>"
                .to_vec(),
        };
        assert!(matches!(
            with_message.into_error("DeleteBucket"),
            RgwError::S3 { status: 409, ref code, ref message, .. } if code == "BucketNotEmpty" && message == "not empty"
        ));
        let bare = S3Response {
            status: 502,
            body: b"bad gateway".to_vec(),
        };
        assert_eq!(bare.into_error("x").s3_code(), Some("HTTP 502"));
    }

    #[test]
    fn requests_on_the_wire() {
        let r = S3Request::new(Method::PUT, "/photos")
            .query("policy", "")
            .query("a", "x y");
        assert_eq!(r.wire_query(), "a=x%20y&policy");
        assert_eq!(
            amz_date(time::macros::datetime!(2013-05-24 0:00 UTC)),
            "20130524T000000Z"
        );
        let c = S3Client::new("http://127.0.0.1:7480/").unwrap();
        assert_eq!(c.host, "127.0.0.1:7480");
        assert_eq!(c.endpoint(), "http://127.0.0.1:7480");
        assert!(S3Client::new("not a url").is_err());
        let creds = S3Credentials::new("AK", "very-secret");
        assert!(!format!("{creds:?}").contains("very-secret"));
        let hash = sigv4::sha256_hex(&r.body);
        let signing = Signing {
            method: &r.method,
            encoded_path: "/photos",
            query: &r.query,
            payload_hash: &hash,
        };
        let headers = c.signed_headers(&signing, Some(&creds));
        let names: Vec<_> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "x-amz-date",
                "x-amz-content-sha256",
                "authorization"
            ]
        );
        assert_eq!(c.signed_headers(&signing, None).len(), 1);
    }
}
