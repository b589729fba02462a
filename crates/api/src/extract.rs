//! Extractors that turn every malformed request into our error body
//! (`{code, message, details}`) instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use serde::de::DeserializeOwned;
use yunhan_model::{ApiError, ErrorCode};

use crate::error::HttpError;

/// A JSON body: 415 without `Content-Type: application/json`, 413 over the
/// size limit, `malformed_json` for bad syntax, `invalid_request` (with the
/// serde message, e.g. the unknown field's name) for a wrong shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with 'Content-Type: application/json'",
            )
            .into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("cannot read the body: {r}"),
                )
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let (code, what) = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                (ErrorCode::MalformedJson, "the body is not valid JSON")
            }
            Category::Data => (
                ErrorCode::InvalidRequest,
                "the body does not match the schema",
            ),
        };
        ApiError::new(code, format!("{what}: {e}"))
            .with_detail("line", e.line())
            .with_detail("column", e.column())
            .into()
    })
}

/// Query parameters with our error body on a bad value.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or_default();
        serde_urlencoded_from_str(q).map(QueryParams)
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(q: &str) -> Result<T, HttpError> {
    axum::extract::Query::<T>::try_from_uri(&format!("/?{q}").parse().map_err(|_| {
        HttpError::from(ApiError::new(
            ErrorCode::InvalidRequest,
            "malformed query string",
        ))
    })?)
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("bad query parameter: {}", e.body_text()),
        )
        .into()
    })
}
