use std::time::Duration;

/// Everything that can go wrong talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// QEMU answered the command with `{"error": {"class": ..., "desc": ...}}`.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        /// The QMP error class, e.g. `GenericError`, `CommandNotFound`, `DeviceNotFound`.
        class: String,
        desc: String,
    },
    #[error("QMP I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol (bad greeting, unparsable JSON, unexpected message).
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    #[error("QMP {what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// The connection is closed (QEMU exited, or the socket was closed).
    #[error("QMP connection closed")]
    Disconnected,
    /// The event receiver fell behind and `skipped` events were dropped.
    #[error("QMP event stream lagged, {skipped} events dropped")]
    EventsLagged { skipped: u64 },
    #[error("QMP (de)serialisation of {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl QmpError {
    /// The QMP error class if this is a command error.
    pub fn class(&self) -> Option<&str> {
        match self {
            QmpError::Command { class, .. } => Some(class),
            _ => None,
        }
    }
}

pub type Result<T, E = QmpError> = std::result::Result<T, E>;
