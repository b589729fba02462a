//! The one error type of every volume driver.

/// What a driver operation can fail with. Messages name the object and say
/// what to do; `Backend` carries the failing command and its stderr verbatim.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The volume, snapshot, image or pool does not exist.
    #[error("{kind} `{name}` does not exist")]
    NotFound { kind: &'static str, name: String },
    /// Creating something whose name is taken.
    #[error("{kind} `{name}` already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// Refused input: bad name, zero/absurd size, shrinking, …
    #[error("invalid request: {why}")]
    Invalid { why: String },
    /// The object is still needed by something else (e.g. a snapshot with
    /// copy-on-write clones).
    #[error("{what} is in use: {by}")]
    InUse { what: String, by: String },
    /// A backend command failed in a way we do not map to the above.
    #[error("`{command}` failed: {stderr}")]
    Backend { command: String, stderr: String },
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub fn invalid(why: impl Into<String>) -> Self {
        StorageError::Invalid { why: why.into() }
    }

    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        StorageError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn exists(kind: &'static str, name: impl Into<String>) -> Self {
        StorageError::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

/// A refused size or name (`yunhan_types::sizes`) is an `Invalid` request.
impl From<yunhan_types::sizes::SizeError> for StorageError {
    fn from(e: yunhan_types::sizes::SizeError) -> Self {
        StorageError::Invalid { why: e.why }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
