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
    fn wire_query(&self) -> String {
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
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].to_string())
}

/// An S3 endpoint (`http://host:port`), spoken to path-style.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: reqwest::Client,
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
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| RgwError::Unreachable {
                endpoint: endpoint.to_string(),
                why: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(S3Client {
            http,
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
        let path = sigv4::uri_encode(&req.path, false);
        let mut url = self.base.clone();
        url.set_path(&path);
        let query = req.wire_query();
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        let mut builder = self.http.request(req.method.clone(), url);
        for (name, value) in self.signed_headers(req, &path, creds) {
            builder = builder.header(name, value);
        }
        let unreachable = |e: reqwest::Error| RgwError::Unreachable {
            endpoint: self.endpoint.clone(),
            why: e.to_string(),
        };
        let resp = builder
            .body(req.body.clone())
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(unreachable)?.to_vec();
        Ok(S3Response { status, body })
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
        req: &S3Request,
        encoded_path: &str,
        creds: Option<&S3Credentials>,
    ) -> Vec<(String, String)> {
        let mut headers = vec![("host".to_string(), self.host.clone())];
        let Some(creds) = creds else {
            return headers;
        };
        let payload_hash = sigv4::sha256_hex(&req.body);
        headers.push(("x-amz-date".into(), amz_date(OffsetDateTime::now_utc())));
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        let auth = sigv4::authorization(
            &creds.access_key,
            &creds.secret_key,
            &Signable {
                method: req.method.as_str(),
                canonical_uri: encoded_path,
                query: &req.query,
                headers: &headers,
                payload_hash: &payload_hash,
                amz_date: &headers[1].1,
            },
        );
        headers.push(("authorization".into(), auth));
        headers
    }
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
        let headers = c.signed_headers(&r, "/photos", Some(&creds));
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
        assert_eq!(c.signed_headers(&r, "/photos", None).len(), 1);
    }
}
