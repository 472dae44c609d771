//! `searchd --snapshot DIR --listen ADDR [--now RFC3339] [--admin-token TOKEN]
//! [--bookd-quic ADDR --cluster-dir D --name NAME]`: serves the search API.
//!
//! Exit status: 0 on success (and after a graceful shutdown), 2 on bad usage, 1 on failure,
//! with a one-line error on stderr naming the file or parameter at fault.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use searchd::server::log::{self as slog, LogSink};
use searchd::server::{self, Cli, Config, UsageError};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("searchd: error: {e} (see searchd --help)");
            ExitCode::from(2)
        }
        Err(e) => {
            // One line: the context chain joined.
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("searchd: error: {line}");
            ExitCode::from(1)
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.print()?;
            return Ok(());
        }
        Err(e) => {
            // clap's message is several lines (what is wrong, tip, usage): keep the first
            // paragraph on one line.
            let text = e.render().to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let msg = first.join(" ");
            let msg = msg.trim_start_matches("error: ");
            let msg = if msg.is_empty() {
                "invalid arguments"
            } else {
                msg
            };
            return Err(UsageError(msg.to_string()).into());
        }
    };
    let env_token = match std::env::var(server::config::ADMIN_TOKEN_ENV) {
        Ok(t) => Some(t),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(UsageError(format!(
                "{}: the value is not valid UTF-8",
                server::config::ADMIN_TOKEN_ENV
            ))
            .into())
        }
    };
    let config = Config::from_cli(cli, env_token)?;
    let sink = init_logging();
    let result = server::run(config);
    // The access lines still batched (graceful shutdown loses none).
    let _ = sink.flush();
    result
}

/// One JSON object per line on stderr, access lines batched (see `server::log`); level from
/// `SEARCHD_LOG` (default `info`).
fn init_logging() -> LogSink {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEARCHD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let sink = LogSink::new(Box::new(std::io::stderr()));
    if let Err(e) = sink.spawn_flusher() {
        eprintln!("searchd: warning: failed to start the log flusher ({e}); access lines are flushed when the buffer fills and at exit");
    }
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .try_init();
    slog::install_access_sink(&sink);
    sink
}
