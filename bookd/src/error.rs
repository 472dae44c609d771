//! The library's error type (the binary wraps it in `anyhow`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is in the message, not also the error's source: the chain is printed on
    // one line, and the OS error would appear twice.
    #[error("{context} {}: {cause}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("PostgreSQL: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(String),
    #[error("embedded PostgreSQL: {0}")]
    Embedded(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("snapshot: {0}")]
    Snapshot(#[from] format::Error),
    #[error("data key: {0}")]
    Crypto(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            cause: source,
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Pool(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
