use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use yunhan_model::{ApiError, ErrorCode};
use yunhan_store::{objects::ObjectError, StoreError};

/// An [`ApiError`] on its way out as an HTTP response.
#[derive(Debug)]
pub struct HttpError {
    pub error: ApiError,
    pub retry_after: Option<u64>,
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> Self {
        HttpError {
            error,
            retry_after: None,
        }
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store error");
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the store failed: {e}; retry shortly"),
        )
        .into()
    }
}

impl From<ObjectError> for HttpError {
    fn from(e: ObjectError) -> Self {
        let err = match e {
            ObjectError::Store(s) => return s.into(),
            ObjectError::AlreadyExists { kind, name } => ApiError::new(
                ErrorCode::AlreadyExists,
                format!("a {kind} named {name:?} already exists; choose another name"),
            )
            .with_detail("name", name),
            ObjectError::ProjectNotFound(p) => ApiError::invalid_field(
                "metadata.project",
                format!("project {p:?} does not exist"),
            ),
            ObjectError::QuotaExceeded { resource, used, limit } => ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "quota exceeded: this would use {used} {resource} but the project's limit is {limit}; free some resources or ask an admin to raise the quota"
                ),
            )
            .with_detail("resource", resource)
            .with_detail("limit", limit)
            .with_detail("requested", used),
            ObjectError::Conflict(rev) => ApiError::new(
                ErrorCode::Conflict,
                format!("the object changed since revision {rev}; read it again and retry"),
            )
            .with_detail("revision", rev),
            ObjectError::Corrupt { key, why } => {
                tracing::error!(%key, %why, "corrupt document");
                ApiError::new(ErrorCode::Internal, "a stored document is unreadable")
            }
        };
        err.into()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(&self.error)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub type Result<T, E = HttpError> = std::result::Result<T, E>;
