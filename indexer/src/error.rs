//! The one error type of the indexer library.

use std::path::PathBuf;

/// Everything that can stop a build, an inspect or a verify.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A feed row (or record) is malformed. `line` is 1-based; `field` names the column.
    #[error("{file}:{line}: field `{field}`: {message}")]
    Feed {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
    /// A whole feed is unusable (missing header, wrong columns, empty file).
    #[error("{file}: {message}")]
    FeedFile { file: String, message: String },
    // The cause is in the message, not also the error's source (the chain is printed on one
    // line, and the OS error would appear twice).
    #[error("failed to {action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] format::Error),
    #[error("failed to build the places index: {0}")]
    Places(String),
}

impl Error {
    /// A row error; `file` is the feed's file name as the user gave it.
    pub fn feed(
        file: impl Into<String>,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Feed {
            file: file.into(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }

    /// True for errors that `--lenient` turns into counted skips.
    pub fn is_row_error(&self) -> bool {
        matches!(self, Error::Feed { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
