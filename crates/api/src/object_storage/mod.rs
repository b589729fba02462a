//! Object storage (docs/object-storage.md): [`buckets`], their [`objects`] (the file
//! browser) and [`s3_keys`]. The API
//! writes the documents (and an S3 key's secret, beside its document); the
//! object-storage controller makes them real in the S3 gateway. A cloud started
//! without a gateway (no `--ceph-conf`) refuses both with a 409 that says so.

pub(crate) mod buckets;
pub(crate) mod objects;
pub(crate) mod s3_keys;

use yunhan_model::{ApiError, ErrorCode};

use crate::error::HttpError;
use crate::AppState;

/// The S3 endpoint of this cloud, or the 409 telling how to get one.
pub(crate) fn endpoint(s: &AppState) -> Result<&str, HttpError> {
    s.config
        .s3_endpoint
        .as_deref()
        .ok_or_else(|| not_enabled().into())
}

/// The 409 of a cloud without object storage.
pub(crate) fn not_enabled() -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        "object storage is not enabled on this cloud: start it on a Ceph cluster (yunhan up --ceph-conf FILE) so it runs an S3 gateway",
    )
}
