use serde::{Deserialize, Serialize};

/// Stable, documented error codes. The string form is part of the API contract
/// (`docs/errors.md`): clients match on it, so never rename a variant's string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON.
    MalformedJson,
    /// The body is JSON but does not match the schema (unknown field, wrong type, missing field).
    InvalidRequest,
    /// A field has a value the API does not accept (see `details.field`).
    InvalidField,
    /// The `Content-Type` is not `application/json`.
    UnsupportedMediaType,
    /// The request body exceeds the server's limit.
    PayloadTooLarge,
    /// No valid bearer token was presented.
    Unauthenticated,
    /// The caller is authenticated but the operation needs the platform-admin role.
    Forbidden,
    /// The object does not exist (or belongs to another project).
    NotFound,
    /// An object with this name already exists in this scope.
    AlreadyExists,
    /// The object changed since it was read, or is in a state that forbids the operation.
    Conflict,
    /// The project's quota does not allow this.
    QuotaExceeded,
    /// The subnet (or elastic IP pool) has no free address left.
    IpExhausted,
    /// Too many requests for this API key; retry after `Retry-After` seconds.
    RateLimited,
    /// The HTTP method is not allowed on this path.
    MethodNotAllowed,
    /// The server failed; the request may be retried.
    Internal,
    /// A dependency (the store) is unavailable; retry later.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedJson | ErrorCode::InvalidRequest | ErrorCode::InvalidField => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden | ErrorCode::QuotaExceeded => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::AlreadyExists | ErrorCode::Conflict | ErrorCode::IpExhausted => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::IpExhausted => "ip_exhausted",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::MalformedJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidField,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Conflict,
        ErrorCode::QuotaExceeded,
        ErrorCode::IpExhausted,
        ErrorCode::RateLimited,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one error body every API error uses: `{code, message, details}`.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, thiserror::Error,
)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    /// A sentence for humans, saying what is wrong and, where possible, what to do.
    pub message: String,
    /// Machine-readable context (e.g. `{"field": "spec.vcpus"}`); an empty object when none.
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }

    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// A field failed validation; `field` is its JSON path (e.g. `spec.vcpus`).
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidField, message).with_detail("field", field)
    }

    pub fn not_found(kind: &str, what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{kind} {what:?} not found"))
            .with_detail("kind", kind)
    }
}
