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
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
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

/// The server's body limit in bytes (`--body-limit`), for the 413 message.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn too_large(limit: Option<usize>) -> ApiError {
    match limit {
        Some(n) => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request is too large: the server accepts at most {n} bytes (--body-limit)"
            ),
        )
        .with_detail("limit_bytes", n),
        None => ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large"),
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

/// The `If-Match` precondition of a write. The API's entity tags are strong
/// and carry the object's revision (`ETag: "42"`); `*` asks only that the
/// object exists. A weak tag (`W/"42"`, useless for a write) or anything
/// unparsable is refused with `invalid_request` rather than ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No `If-Match` header: the write is unconditional.
    Absent,
    /// `*`: any current revision.
    Any,
    /// `"r1", "r2"`: one of these revisions (a bare `42` is accepted too).
    Revisions(Vec<u64>),
}

impl IfMatch {
    /// Parses the values of every `If-Match` header of a request.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<IfMatch, ApiError> {
        let mut tags = Vec::new();
        for v in values {
            let v = std::str::from_utf8(v).map_err(|_| bad_if_match("it is not ASCII text"))?;
            tags.extend(v.split(',').map(str::trim));
        }
        match tags.as_slice() {
            [] => Ok(IfMatch::Absent),
            ["*"] => Ok(IfMatch::Any),
            _ => tags
                .iter()
                .map(|t| parse_tag(t))
                .collect::<Result<_, _>>()
                .map(IfMatch::Revisions),
        }
    }

    /// Ok when an object at `current` satisfies the precondition; otherwise
    /// the same `conflict` (409) a stale body `revision` gets.
    pub fn check(&self, current: u64) -> Result<(), HttpError> {
        let IfMatch::Revisions(want) = self else {
            return Ok(());
        };
        if want.contains(&current) {
            return Ok(());
        }
        let want = want
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the object is at revision {current}, not {want}; read it again and retry"),
        )
        .with_detail("revision", current)
        .into())
    }
}

/// One entity tag: `"42"` or `42`.
fn parse_tag(tag: &str) -> Result<u64, ApiError> {
    if tag.starts_with("W/") {
        return Err(bad_if_match(&format!(
            "{tag:.40} is a weak entity tag; a write needs the strong ETag a GET returns, e.g. \"42\""
        )));
    }
    let bare = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    match bare.parse::<u64>() {
        Ok(rev) if bare.bytes().all(|b| b.is_ascii_digit()) => Ok(rev),
        _ => Err(bad_if_match(&format!(
            "{tag:.40} is not an ETag of this API; send the ETag a GET returns (the object's revision, e.g. \"42\") or *"
        ))),
    }
}

fn bad_if_match(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("bad If-Match header: {why}"),
    )
    .with_detail("header", "If-Match")
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let values = parts.headers.get_all(header::IF_MATCH);
        Ok(IfMatch::parse(values.iter().map(|v| v.as_bytes()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<IfMatch, ApiError> {
        IfMatch::parse([v.as_bytes()])
    }

    #[test]
    fn strong_tags_star_and_bare_revisions_parse() {
        assert_eq!(IfMatch::parse([]).unwrap(), IfMatch::Absent);
        assert_eq!(parse("*").unwrap(), IfMatch::Any);
        assert_eq!(parse("\"3\"").unwrap(), IfMatch::Revisions(vec![3]));
        assert_eq!(parse("3").unwrap(), IfMatch::Revisions(vec![3]));
        assert_eq!(
            parse(" \"3\" , \"7\"").unwrap(),
            IfMatch::Revisions(vec![3, 7])
        );
    }

    #[test]
    fn weak_and_garbage_tags_are_refused_not_ignored() {
        for bad in [
            "W/\"3\"",
            "garbage",
            "",
            "\"\"",
            "\"3",
            "\"-3\"",
            "\"+3\"",
            "\"3\", W/\"4\"",
            "*, \"3\"",
            "99999999999999999999999",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}");
            assert!(e.message.contains("If-Match"), "{bad}: {}", e.message);
        }
        assert!(parse("W/\"3\"").unwrap_err().message.contains("weak"));
        assert!(IfMatch::parse([&b"\"\xff\""[..]]).is_err());
    }

    #[test]
    fn a_mismatch_is_the_revision_conflict() {
        assert!(IfMatch::Absent.check(5).is_ok());
        assert!(IfMatch::Any.check(5).is_ok());
        assert!(IfMatch::Revisions(vec![4, 5]).check(5).is_ok());
        let e = IfMatch::Revisions(vec![4]).check(5).unwrap_err().error;
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(e.message.contains("revision 5, not 4"), "{}", e.message);
    }

    #[test]
    fn too_large_names_the_limit() {
        let e = too_large(Some(1024));
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        assert!(
            e.message.contains("at most 1024 bytes (--body-limit)"),
            "{}",
            e.message
        );
    }
}
