//! Command line: raw arguments (clap) turned into a checked [`Config`] once.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Environment variable read for the admin token when `--admin-token` is not given.
pub const ADMIN_TOKEN_ENV: &str = "SEARCHD_ADMIN_TOKEN";

/// A command line that is not usable as given (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// searchd: serves the flight search API over a snapshot.
#[derive(Parser, Debug)]
#[command(
    name = "searchd",
    version,
    about = "Serves the flight search API (itineraries, offers, fare calendar, places) over a snapshot",
    after_help = "Endpoints: GET /v1/search, /v1/offers/{id}, /v1/calendar, /v1/places, /healthz, \
/readyz, /metrics, /openapi.json; POST /admin/reload.\n\
The snapshot path is watched: when a new generation is published there it is validated and \
swapped in without failing a request (a broken one is refused and the old one keeps serving).\n\
With --bookd-quic the node follows bookd's seat counts (a new snapshot is filled with them \
before it serves, and a snapshot bookd announces is loaded at once); /metrics adds \
searchd_invalidation_* (last applied seq, lag, reconnects, refused frames).\n\
Logs: one JSON object per line on stderr (level from SEARCHD_LOG, default `info`).\n\
Exit status: 0 on success (including shutdown on SIGTERM/SIGINT), 2 on bad usage, 1 on failure."
)]
pub struct Cli {
    /// Snapshot directory (or the link `indexer build --out` publishes); watched for new generations
    #[arg(long, value_name = "DIR")]
    pub snapshot: PathBuf,

    /// Address to listen on, e.g. 127.0.0.1:8080 or [::]:8080 (HTTP/1.1 and cleartext HTTP/2)
    #[arg(long, value_name = "ADDR")]
    pub listen: String,

    /// Start the service clock at this RFC 3339 time (e.g. 2026-03-01T08:00:00Z); it runs at
    /// real speed from there
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,

    /// Bearer token for POST /admin/reload (default: the SEARCHD_ADMIN_TOKEN environment
    /// variable, which keeps it out of `ps`); without one the admin endpoint answers 403
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,

    /// Subscribe to bookd's seat invalidations over QUIC at ADDR (HOST:PORT, bookd's
    /// --quic-listen; with --cluster-dir and --name): seats sold or released through bookd
    /// replace the snapshot's figures within milliseconds, and /readyz answers 503 while the
    /// node is not in sync
    #[arg(long, value_name = "ADDR")]
    pub bookd_quic: Option<String>,

    /// Cluster directory (made by `bookd certs init` and `bookd certs issue`) holding ca.crt
    /// and this node's NAME.crt and NAME.key (with --bookd-quic)
    #[arg(long, value_name = "D")]
    pub cluster_dir: Option<PathBuf>,

    /// This node's name in the cluster: its certificate's name, 1-64 characters of a-z 0-9
    /// and -, not starting or ending with - (with --bookd-quic)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Most simultaneous client connections; more are closed at once
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,

    /// Longest a request may take before it is answered 503
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub request_timeout: u64,

    /// Longest a connection may wait to send any byte of an answer (a client that stops
    /// reading); it is then closed
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub send_timeout: u64,

    /// Longest to wait for in-flight requests on shutdown
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub shutdown_timeout: u64,

    /// Engine steps a search with connections may take on the thread that read the request
    /// before it is handed to the pool of blocking threads (0: always handed over; a search
    /// with 96 or more connection points always is); bounds how long one search holds a
    /// thread that serves other connections
    #[arg(long, value_name = "STEPS", default_value_t = DEFAULT_INLINE_SEARCH_STEPS)]
    pub inline_search_steps: u64,
}

/// See [`Cli::inline_search_steps`]: ~70-120 us of engine work on the benchmark machine
/// (15-22 steps per microsecond), which most 1-stop searches between hubs fit in
/// (OSL-YYC: 512 steps, 35 us), while the largest do not (SDQ-MIA: 13,287 steps, ~600 us).
pub const DEFAULT_INLINE_SEARCH_STEPS: u64 = 1_500;

/// The most [`Cli::inline_search_steps`] accepted (~3-7 ms of work).
pub const MAX_INLINE_SEARCH_STEPS: u64 = 100_000;

/// Group of options for bookd's invalidation channel (`--bookd-quic`).
#[derive(Debug, Clone)]
pub struct QuicConfig {
    pub bookd: String,
    pub cluster_dir: PathBuf,
    pub name: String,
}

/// Limits applied to every connection and request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Longest accepted request target (path and query), bytes: 414 beyond.
    pub max_uri_bytes: usize,
    /// HTTP/1 read buffer (request line plus headers): 431 beyond.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Time to receive a request's headers; also closes idle HTTP/1 keep-alive connections.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 too).
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    /// A connection whose answer cannot take a single byte for this long (its client stopped
    /// reading) is closed, so that it does not hold a connection slot for ever.
    pub send_timeout: Duration,
    /// `POST /admin/reload` validates a whole snapshot, so it gets longer.
    pub reload_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Engine calls running at once (CPU bound); further requests wait their turn within
    /// their timeout.
    pub max_concurrent_work: usize,
    pub max_h2_streams: u32,
    /// How often the snapshot link is checked for a new generation.
    pub watch_interval: Duration,
    /// See [`Cli::inline_search_steps`].
    pub inline_search_steps: u64,
}

impl Limits {
    pub fn defaults() -> Limits {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Limits {
            max_connections: 1024,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            reload_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(15),
            max_concurrent_work: (cores * 2).max(2),
            max_h2_streams: 128,
            watch_interval: Duration::from_millis(500),
            inline_search_steps: DEFAULT_INLINE_SEARCH_STEPS,
        }
    }
}

/// The checked configuration of a run.
#[derive(Debug, Clone)]
pub struct Config {
    pub snapshot: PathBuf,
    pub listen: SocketAddr,
    /// Service clock start, milliseconds since the Unix epoch (`--now`).
    pub now_ms: Option<i64>,
    pub admin_token: Option<String>,
    pub quic: Option<QuicConfig>,
    pub limits: Limits,
}

impl Config {
    /// Checks the raw arguments; `env_token` is the value of [`ADMIN_TOKEN_ENV`], if set.
    pub fn from_cli(cli: Cli, env_token: Option<String>) -> Result<Config, UsageError> {
        if cli.snapshot.as_os_str().is_empty() {
            return Err(usage("--snapshot: the path is empty"));
        }
        let listen = parse_listen(&cli.listen)?;
        let now_ms = match &cli.now {
            None => None,
            Some(t) => Some(parse_rfc3339_ms(t).map_err(|e| {
                usage(format!(
                    "--now: {e} in {t:?} (expected RFC 3339, e.g. 2026-03-01T08:00:00Z)"
                ))
            })?),
        };
        let admin_token = match cli.admin_token {
            Some(t) => Some(check_token(&t, "--admin-token")?),
            None => match env_token {
                Some(t) => Some(check_token(&t, ADMIN_TOKEN_ENV)?),
                None => None,
            },
        };
        let quic = match (cli.bookd_quic, cli.cluster_dir, cli.name) {
            (None, None, None) => None,
            (Some(bookd), Some(cluster_dir), Some(name)) => {
                check_host_port(&bookd).map_err(|e| usage(format!("--bookd-quic: {e}")))?;
                if cluster_dir.as_os_str().is_empty() {
                    return Err(usage("--cluster-dir: the path is empty"));
                }
                // The rule of `bookd certs issue` (node names are DNS names in certificates).
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    || name.starts_with('-')
                    || name.ends_with('-')
                {
                    return Err(usage(format!(
                        "--name: {name:?} must be 1-64 characters of a-z 0-9 and -, not starting or ending with -"
                    )));
                }
                Some(QuicConfig {
                    bookd,
                    cluster_dir,
                    name,
                })
            }
            (b, c, n) => {
                let missing: Vec<&str> = [
                    (b.is_none(), "--bookd-quic"),
                    (c.is_none(), "--cluster-dir"),
                    (n.is_none(), "--name"),
                ]
                .iter()
                .filter(|(m, _)| *m)
                .map(|(_, f)| *f)
                .collect();
                return Err(usage(format!(
                    "--bookd-quic, --cluster-dir and --name go together: missing {}",
                    missing.join(" and ")
                )));
            }
        };
        let mut limits = Limits::defaults();
        if !(1..=65_536).contains(&cli.max_connections) {
            return Err(usage(format!(
                "--max-connections: {} is out of range 1-65536",
                cli.max_connections
            )));
        }
        limits.max_connections = cli.max_connections;
        if !(1..=3600).contains(&cli.request_timeout) {
            return Err(usage(format!(
                "--request-timeout: {} is out of range 1-3600 seconds",
                cli.request_timeout
            )));
        }
        limits.request_timeout = Duration::from_secs(cli.request_timeout);
        if !(1..=3600).contains(&cli.send_timeout) {
            return Err(usage(format!(
                "--send-timeout: {} is out of range 1-3600 seconds",
                cli.send_timeout
            )));
        }
        limits.send_timeout = Duration::from_secs(cli.send_timeout);
        if cli.shutdown_timeout > 3600 {
            return Err(usage(format!(
                "--shutdown-timeout: {} is out of range 0-3600 seconds",
                cli.shutdown_timeout
            )));
        }
        limits.shutdown_timeout = Duration::from_secs(cli.shutdown_timeout);
        if cli.inline_search_steps > MAX_INLINE_SEARCH_STEPS {
            return Err(usage(format!(
                "--inline-search-steps: {} is out of range 0-{MAX_INLINE_SEARCH_STEPS}",
                cli.inline_search_steps
            )));
        }
        limits.inline_search_steps = cli.inline_search_steps;
        Ok(Config {
            snapshot: cli.snapshot,
            listen,
            now_ms,
            admin_token,
            quic,
            limits,
        })
    }
}

fn check_token(t: &str, what: &str) -> Result<String, UsageError> {
    if t.is_empty() || t.len() > 512 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(usage(format!(
            "{what}: the token must be 1-512 printable ASCII characters without spaces"
        )));
    }
    Ok(t.to_string())
}

fn parse_listen(s: &str) -> Result<SocketAddr, UsageError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    check_host_port(s).map_err(|e| usage(format!("--listen: {e}")))?;
    // A host name (e.g. localhost:8080): resolve it once, at start.
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| usage(format!("--listen: failed to resolve {s:?}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| usage(format!("--listen: {s:?} resolves to no address")))
}

fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{s:?} has no valid port (0-65535)"))?;
    Ok(())
}

/// Parses an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`) into
/// milliseconds since the Unix epoch.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err("too short".into());
    }
    let date = s.get(0..10).ok_or("not ASCII")?;
    let days = format::date::parse_iso(date).ok_or("invalid date")?;
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err("expected `T` between date and time".into());
    }
    let num2 = |i: usize| -> Result<i64, String> {
        match (b.get(i), b.get(i + 1)) {
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                Ok(i64::from((x - b'0') * 10 + (y - b'0')))
            }
            _ => Err(format!("expected two digits at byte {i}")),
        }
    };
    let (hh, mm, ss) = (num2(11)?, num2(14)?, num2(17)?);
    if b[13] != b':' || b[16] != b':' {
        return Err("expected HH:MM:SS".into());
    }
    if hh > 23 || mm > 59 || ss > 60 {
        return Err("time of day out of range".into());
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut scale = 100;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            millis += i64::from(d - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return Err("expected digits after `.`".into());
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num2(i + 1)?, num2(i + 4)?);
            if oh > 23 || om > 59 {
                return Err("offset out of range".into());
            }
            let m = oh * 60 + om;
            if sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return Err("expected `Z` or a +HH:MM offset at the end".into()),
    };
    let secs = i64::from(days) * 86_400 + hh * 3600 + mm * 60 + ss.min(59) - offset_min * 60;
    Ok(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Config, String> {
        let mut all = vec!["searchd"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        Config::from_cli(cli, None).map_err(|e| e.0)
    }

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(
            parse_rfc3339_ms("2026-03-01T08:00:00Z"),
            Ok((i64::from(format::date::days_from_civil(2026, 3, 1)) * 86_400 + 8 * 3600) * 1000)
        );
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T08:00:00",
            "2026-03-01 08:00Z",
            "yesterday",
            "2026-03-01T08:00:00+0100",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_arguments() {
        let ok = cli(&["--snapshot", "s", "--listen", "127.0.0.1:0"]).expect("minimal");
        assert!(ok.quic.is_none() && ok.now_ms.is_none() && ok.admin_token.is_none());
        let e = cli(&["--snapshot", "s", "--listen", "nowhere"]).expect_err("listen");
        assert!(e.contains("--listen"), "{e}");
        let e =
            cli(&["--snapshot", "s", "--listen", "127.0.0.1:1", "--now", "x"]).expect_err("now");
        assert!(e.contains("--now"), "{e}");
        let e = cli(&[
            "--snapshot",
            "s",
            "--listen",
            "127.0.0.1:1",
            "--bookd-quic",
            "127.0.0.1:4433",
        ])
        .expect_err("group");
        assert!(e.contains("--cluster-dir and --name"), "{e}");
        let g = cli(&[
            "--snapshot",
            "s",
            "--listen",
            "127.0.0.1:1",
            "--bookd-quic",
            "bookd.local:4433",
            "--cluster-dir",
            "c",
            "--name",
            "node-1",
        ])
        .expect("group");
        assert_eq!(g.quic.map(|q| q.name), Some("node-1".to_string()));
        for bad in ["Node-1", "node_1", "-n", "n-", ""] {
            let e = cli(&[
                "--snapshot",
                "s",
                "--listen",
                "127.0.0.1:1",
                "--bookd-quic",
                "127.0.0.1:4433",
                "--cluster-dir",
                "c",
                &format!("--name={bad}"),
            ])
            .expect_err("bad name");
            assert!(e.contains("--name"), "{bad}: {e}");
        }
        let e = cli(&[
            "--snapshot",
            "s",
            "--listen",
            "127.0.0.1:1",
            "--admin-token",
            "",
        ])
        .expect_err("empty token");
        assert!(e.contains("--admin-token"), "{e}");
        let e = cli(&[
            "--snapshot",
            "s",
            "--listen",
            "127.0.0.1:1",
            "--max-connections",
            "0",
        ])
        .expect_err("connections");
        assert!(e.contains("--max-connections"), "{e}");
    }
}
