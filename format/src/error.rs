//! The one error type of the format crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is in the message, not also the error's source: binaries print the whole chain
    // on one line, and the OS error would appear twice.
    #[error("failed to {action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A file of the snapshot is damaged, truncated, of another version or another kind.
    #[error("{path}: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    /// A file the manifest lists is missing.
    #[error("{path}: missing (listed in the manifest)")]
    Missing { path: PathBuf },
    /// The snapshot directory, or its manifest, does not exist.
    #[error("{path}: not found ({what})")]
    NotFound { path: PathBuf, what: &'static str },
    #[error("failed to serialize {what}: {message}")]
    Serialize { what: &'static str, message: String },
    #[error("failed to publish the snapshot at {path}: {message}")]
    Publish { path: PathBuf, message: String },
    #[error("places index: {0}")]
    Places(String),
}

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
