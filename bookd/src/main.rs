//! `bookd`: the booking service and its key management commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bookd",
    version,
    about = "Booking API: holds, orders, payments, cancellations"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to serve HTTP on, e.g. 127.0.0.1:8081.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Snapshot directory (offers and seat capacities).
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// State directory: embedded PostgreSQL cluster, data key.
    #[arg(long, default_value = "./state")]
    state_dir: PathBuf,
    /// Use this PostgreSQL (libpq URL or key=value; several hosts allowed) instead of the
    /// embedded cluster.
    #[arg(long)]
    database_url: Option<String>,
    /// Patroni REST endpoints of the hosts of --database-url, comma-separated, in the same
    /// order (e.g. http://10.0.0.1:8008,http://10.0.0.2:8008,http://10.0.0.3:8008).
    /// bookd then asks each `GET /primary` every 0.5 s (1 s timeout) and writes only to
    /// the leader: when the leader changes, or its Patroni stops answering for 1.5 s,
    /// connections to the old one are closed (statements running there, a COMMIT waiting
    /// for a synchronous standby included, end at once and are settled on the new
    /// primary), and while no node is leader requests get 503. Without it a primary whose
    /// Patroni alone died keeps bookd's connections, and their commits hang.
    #[arg(long, requires = "database_url", value_name = "URL[,URL...]")]
    patroni_api: Option<String>,
    /// Start the service clock at this RFC 3339 instant.
    #[arg(long)]
    now: Option<String>,
    /// UDP address to push seat invalidations to searchd nodes over QUIC (mutual TLS),
    /// e.g. 127.0.0.1:8091.
    #[arg(long, requires = "cluster_dir")]
    quic_listen: Option<SocketAddr>,
    /// Cluster directory of --quic-listen: the cluster CA and bookd's certificate
    /// (made by `bookd certs init`).
    #[arg(long, requires = "quic_listen")]
    cluster_dir: Option<PathBuf>,
    /// Milliseconds between polls of the outbox for changes made by another process.
    #[arg(long, default_value_t = 200)]
    outbox_poll_ms: u64,
    /// Outbox retention: rows more than this many sequence numbers old are pruned.
    #[arg(long, default_value_t = 1_000_000)]
    outbox_retention_seqs: u64,
    /// Outbox retention: rows older than this many seconds are pruned.
    #[arg(long, default_value_t = 86_400)]
    outbox_retention_secs: u64,
    /// Key for passenger data at rest (64 hex characters); default STATE/data.key.
    #[arg(long)]
    data_key_file: Option<PathBuf>,
    /// Accept `leg:CARRIER:NUMBER:DATE:ORIGIN:CLASS:PRICE` test offer ids instead of
    /// searchd's (test suites only: the id sets its own price).
    #[arg(long)]
    test_offer_ids: bool,
    /// Seconds a hold guarantees seats and price.
    #[arg(long, default_value_t = 900)]
    hold_ttl_secs: u64,
    /// Milliseconds between expiry sweeps.
    #[arg(long, default_value_t = 1000)]
    sweep_interval_ms: u64,
    /// Requests per second per API key (token refill rate).
    #[arg(long, default_value_t = 50.0)]
    rate_limit: f64,
    /// Burst size per API key.
    #[arg(long, default_value_t = 100.0)]
    rate_burst: f64,
    /// Database connections.
    #[arg(long, default_value_t = 32)]
    pool_size: usize,
    /// Simulated payment gateway: failure probability per call.
    #[arg(long, default_value_t = 0.0)]
    sim_payment_failure_rate: f64,
    /// Simulated payment gateway: latency per call, ms.
    #[arg(long, default_value_t = 0)]
    sim_payment_latency_ms: u64,
    /// Simulated airline: failure probability per call.
    #[arg(long, default_value_t = 0.0)]
    sim_airline_failure_rate: f64,
    /// Simulated airline: latency per call, ms.
    #[arg(long, default_value_t = 0)]
    sim_airline_latency_ms: u64,
    /// Timeout per payment gateway call, ms.
    #[arg(long, default_value_t = 2000)]
    payment_timeout_ms: u64,
    /// Timeout per airline call, ms.
    #[arg(long, default_value_t = 2000)]
    airline_timeout_ms: u64,
    /// Attempts per idempotent external call.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Consecutive failures that open a circuit breaker.
    #[arg(long, default_value_t = 5)]
    breaker_threshold: u32,
    /// Seconds a circuit breaker stays open before a trial call.
    #[arg(long, default_value_t = 10)]
    breaker_open_secs: u64,
    /// Milliseconds a request waits for a write transaction's statements, and again for
    /// its COMMIT (100 to 600000). A COMMIT not answered in time (e.g. waiting for a
    /// synchronous standby that is down) has an unknown outcome: its connection is closed
    /// and the request settles it as when the connection breaks during COMMIT (503 "retry
    /// with the same Idempotency-Key" while the database cannot tell yet).
    #[arg(long, default_value_t = 5000)]
    commit_timeout_ms: u64,
    /// Most HTTP connections open at once (1 to 65536). A connection over the limit is
    /// closed at once, counted in `bookd_http_connections_refused_total` and logged (at
    /// most one line a second).
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true)]
    max_connections: usize,
    /// Seconds a keep-alive HTTP connection may wait for its next request before it is
    /// closed (1 to 3600). A request in progress is never cut.
    #[arg(long, default_value_t = 60, allow_negative_numbers = true)]
    idle_timeout_secs: u64,
    /// Seconds an answer may wait to send a single byte, i.e. a client that stopped reading,
    /// before its connection is closed (1 to 3600); otherwise it would keep its connection
    /// slot for ever.
    #[arg(long, default_value_t = 30, allow_negative_numbers = true)]
    send_timeout_secs: u64,
}

#[derive(Subcommand)]
enum Command {
    /// API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Certificates of the invalidation channel's cluster.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
}

#[derive(Subcommand)]
enum CertsAction {
    /// Make the cluster CA (D/ca.crt, D/ca.key) and bookd's own certificate
    /// (D/bookd.crt, D/bookd.key); refuses a directory that already has a CA.
    Init {
        #[arg(long)]
        cluster_dir: PathBuf,
    },
    /// Issue a node's certificate (D/NAME.crt, D/NAME.key) signed by the cluster CA;
    /// issuing an existing name again replaces (rotates) it.
    Issue {
        #[arg(long)]
        cluster_dir: PathBuf,
        /// Node name: 1 to 64 characters of a-z, 0-9 and - (not "ca").
        #[arg(long)]
        name: String,
    },
}

/// Bounds of `--max-connections`.
const MAX_CONNECTIONS: std::ops::RangeInclusive<usize> = 1..=65_536;
/// Bounds of `--idle-timeout-secs` and `--send-timeout-secs`.
const HTTP_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=3600;

/// Bounds of `--commit-timeout-ms`.
const MIN_COMMIT_TIMEOUT_MS: u64 = 100;
const MAX_COMMIT_TIMEOUT_MS: u64 = 600_000;

/// A bad parameter value found after parsing: exit code 2.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key; prints it (and nothing else) on stdout.
    Create(KeyArgs),
    /// Revoke the active key with this name.
    Revoke(KeyArgs),
}

#[derive(clap::Args)]
struct KeyArgs {
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "./state")]
    state_dir: PathBuf,
    #[arg(long)]
    database_url: Option<String>,
    /// Patroni REST endpoints of the hosts of --database-url, comma-separated, in the same
    /// order (as the server's --patroni-api). Each is asked `GET /primary` once (1 s
    /// timeout) and the key is written on the one leader only; with no single leader the
    /// command writes nothing and fails (run it again).
    #[arg(long, requires = "database_url", value_name = "URL[,URL...]")]
    patroni_api: Option<String>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BOOKD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Certs { action }) => {
            let written = match action {
                CertsAction::Init { cluster_dir } => bookd::certs::init(&cluster_dir)?,
                CertsAction::Issue { cluster_dir, name } => {
                    if let Err(e) = bookd::certs::validate_name(&name) {
                        return Err(Usage(format!("--name: {e}")).into());
                    }
                    bookd::certs::issue(&cluster_dir, &name)?
                }
            };
            for f in written.files {
                println!("{}", f.display());
            }
            Ok(())
        }
        Some(Command::Keys { action }) => {
            let (create, a) = match action {
                KeysAction::Create(a) => (true, a),
                KeysAction::Revoke(a) => (false, a),
            };
            // Checked before anything is started (the embedded cluster included).
            bookd::keys::check_name(&a.name).map_err(|e| Usage(config_message(e)))?;
            if let Some(u) = &a.database_url {
                bookd::db::parse_url(u).map_err(|e| Usage(config_message(e)))?;
            }
            let patroni_api = match &a.patroni_api {
                Some(list) => {
                    Some(bookd::patroni::parse_endpoints(list).map_err(|e| Usage(e.to_string()))?)
                }
                None => None,
            };
            let out = bookd::run_keys(
                &a.state_dir,
                a.database_url.as_deref(),
                patroni_api.as_deref(),
                create,
                &a.name,
            )?;
            if let Some(key) = out {
                println!("{key}");
            }
            Ok(())
        }
        None => {
            let s = cli.serve;
            let listen = s
                .listen
                .ok_or_else(|| Usage("--listen is required".into()))?;
            let snapshot = s
                .snapshot
                .ok_or_else(|| Usage("--snapshot is required".into()))?;
            let now_ms = match &s.now {
                Some(t) => Some(bookd::clock::Clock::parse_rfc3339(t).ok_or_else(|| {
                    Usage(format!(
                        "--now: {t:?} is not an RFC 3339 instant (e.g. 2026-03-01T08:00:00Z)"
                    ))
                })?),
                None => None,
            };
            for (name, v) in [
                ("--sim-payment-failure-rate", s.sim_payment_failure_rate),
                ("--sim-airline-failure-rate", s.sim_airline_failure_rate),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(Usage(format!("{name}: a probability from 0 to 1")).into());
                }
            }
            if !(s.rate_limit > 0.0 && s.rate_limit.is_finite()) {
                return Err(Usage("--rate-limit: a positive number".into()).into());
            }
            if !(s.rate_burst >= 1.0 && s.rate_burst.is_finite()) {
                return Err(Usage("--rate-burst: at least 1".into()).into());
            }
            if let Some(u) = &s.database_url {
                bookd::db::parse_url(u).map_err(|e| Usage(config_message(e)))?;
            }
            if !(MIN_COMMIT_TIMEOUT_MS..=MAX_COMMIT_TIMEOUT_MS).contains(&s.commit_timeout_ms) {
                // Below 100 ms a busy moment of a healthy primary would look like an outage;
                // above 10 min a client gave up long before.
                return Err(Usage(format!(
                    "--commit-timeout-ms: from {MIN_COMMIT_TIMEOUT_MS} to {MAX_COMMIT_TIMEOUT_MS}"
                ))
                .into());
            }
            if !MAX_CONNECTIONS.contains(&s.max_connections) {
                return Err(Usage(format!(
                    "--max-connections: {} is out of range {}-{}",
                    s.max_connections,
                    MAX_CONNECTIONS.start(),
                    MAX_CONNECTIONS.end()
                ))
                .into());
            }
            for (name, v) in [
                ("--idle-timeout-secs", s.idle_timeout_secs),
                ("--send-timeout-secs", s.send_timeout_secs),
            ] {
                if !HTTP_TIMEOUT_SECS.contains(&v) {
                    return Err(Usage(format!(
                        "{name}: {v} is out of range {}-{} seconds",
                        HTTP_TIMEOUT_SECS.start(),
                        HTTP_TIMEOUT_SECS.end()
                    ))
                    .into());
                }
            }
            let patroni_api = match &s.patroni_api {
                Some(list) => {
                    Some(bookd::patroni::parse_endpoints(list).map_err(|e| Usage(e.to_string()))?)
                }
                None => None,
            };
            let policy = |ms: u64| bookd::external::RetryPolicy {
                timeout: Duration::from_millis(ms.max(1)),
                max_attempts: s.max_attempts.max(1),
                ..Default::default()
            };
            bookd::run_server(bookd::ServerConfig {
                listen,
                snapshot,
                state_dir: s.state_dir,
                database_url: s.database_url,
                now_ms,
                data_key_file: s.data_key_file,
                test_offer_ids: s.test_offer_ids,
                pool_size: s.pool_size.max(2),
                hold_ttl: Duration::from_secs(s.hold_ttl_secs.max(1)),
                sweep_interval: Duration::from_millis(s.sweep_interval_ms.max(10)),
                rate: bookd::http::RateLimit {
                    rate: s.rate_limit,
                    burst: s.rate_burst,
                },
                payment: bookd::external::SimConfig {
                    failure_rate: s.sim_payment_failure_rate,
                    latency: Duration::from_millis(s.sim_payment_latency_ms),
                },
                airline: bookd::external::SimConfig {
                    failure_rate: s.sim_airline_failure_rate,
                    latency: Duration::from_millis(s.sim_airline_latency_ms),
                },
                payment_policy: policy(s.payment_timeout_ms),
                airline_policy: policy(s.airline_timeout_ms),
                breaker_threshold: s.breaker_threshold,
                breaker_open_for: Duration::from_secs(s.breaker_open_secs),
                commit_timeout: Duration::from_millis(s.commit_timeout_ms),
                quic_listen: s.quic_listen,
                cluster_dir: s.cluster_dir,
                outbox_poll: Duration::from_millis(s.outbox_poll_ms.clamp(10, 60_000)),
                outbox_retention: bookd::outbox_feed::Retention {
                    keep_seqs: s.outbox_retention_seqs.max(1),
                    keep_age: Duration::from_secs(s.outbox_retention_secs.max(1)),
                    ..Default::default()
                },
                patroni_api,
                http_limits: bookd::http::Limits {
                    max_connections: s.max_connections,
                    idle_timeout: Duration::from_secs(s.idle_timeout_secs),
                    send_timeout: Duration::from_secs(s.send_timeout_secs),
                    ..Default::default()
                },
            })?;
            Ok(())
        }
    }
}

/// "bookd keys: a subcommand is required (create, revoke)" for the group named on the
/// command line.
fn missing_subcommand() -> String {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let group = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| cmd.find_subcommand(&a).cloned());
    match group {
        Some(g) => {
            let names: Vec<&str> = g.get_subcommands().map(|c| c.get_name()).collect();
            format!(
                "bookd {}: a subcommand is required ({})",
                g.get_name(),
                names.join(", ")
            )
        }
        None => "a subcommand is required".to_string(),
    }
}

/// The text of a parameter error without its "configuration: " prefix.
fn config_message(e: bookd::Error) -> String {
    match e {
        bookd::Error::Config(m) => m,
        other => other.to_string(),
    }
}

/// clap's message on one line: its first paragraph (what is wrong), without usage and tip.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
    line.trim_start_matches("error: ").to_string()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `bookd keys` or `bookd certs` alone: clap's text is the group's help, whose
            // first paragraph is only its description.
            eprintln!("bookd: error: {} (see bookd --help)", missing_subcommand());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("bookd: error: {} (see bookd --help)", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined.
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("bookd: error: {line}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
