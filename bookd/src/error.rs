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
    // Not `#[from]` (a source): the snapshot error's text is already in the message, and the
    // chain printed on one line would repeat it.
    #[error("snapshot: {0}")]
    Snapshot(format::Error),
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

impl From<format::Error> for Error {
    fn from(e: format::Error) -> Self {
        Error::Snapshot(e)
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Pool(with_causes(&e))
    }
}

/// `e` and its chain of causes on one line ("error connecting to server" alone does not say
/// why: the refused connection or the server's own message is a cause), each said once.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg.replace('\n', " ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
