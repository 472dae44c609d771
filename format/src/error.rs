//! The one error type of the format crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the snapshot is damaged, truncated, of another version or another kind.
    #[error("{path}: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    /// A file the manifest lists is missing.
    #[error("{path}: missing (listed in the manifest)")]
    Missing { path: PathBuf },
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
            source,
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
