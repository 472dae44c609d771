//! The HTTP server: tokio + hyper 1 (HTTP/1.1 keep-alive and cleartext HTTP/2 on one
//! port), limits on connections and requests, the snapshot hot swap and graceful shutdown.
//!
//! - `config`: command line to a checked [`Config`].
//! - `http`: routing, envelopes, request ids, the access log.
//! - `log`: the log sink (access lines batched, everything else written through).
//! - `state`: the served snapshot, its reload and the watcher of the snapshot link.
//! - `metrics`: Prometheus text exposition.
//! - `params`: strict query string decoding.
//! - `engine_adapter`: the calls into the search engine.

pub mod config;
pub mod encoding;
mod engine_adapter;
pub mod http;
pub mod log;
pub mod metrics;
pub mod params;
pub mod state;

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

pub use config::{Cli, Config, UsageError};
use metrics::Metrics;
use state::SnapshotCell;

use crate::subscriber::{self, SubscriberConfig, SubscriberHandle};

/// The service clock: real time shifted so that it read `--now` at start.
#[derive(Debug, Clone, Copy)]
pub struct ServiceClock {
    offset_ms: i64,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ServiceClock {
    /// Starts at `start_ms` (Unix milliseconds), or is the real clock.
    pub fn new(start_ms: Option<i64>) -> ServiceClock {
        ServiceClock {
            offset_ms: start_ms.map(|s| s - unix_ms()).unwrap_or(0),
        }
    }

    pub fn now_ms(&self) -> i64 {
        unix_ms() + self.offset_ms
    }

    /// Minutes since the Unix epoch, UTC (the engine's unit).
    pub fn now_utc_min(&self) -> i64 {
        self.now_ms().div_euclid(60_000)
    }
}

/// State shared by every connection and request.
pub struct App {
    pub config: Config,
    pub snapshots: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub clock: ServiceClock,
    /// Permits for engine calls running at once.
    pub work: Arc<Semaphore>,
    /// Set when shutdown starts (`/readyz` answers 503).
    pub draining: AtomicBool,
    /// bookd's invalidation channel (`--bookd-quic`): its status for `/readyz` and
    /// `/metrics`.
    pub invalidations: Option<Invalidations>,
    pub started: Instant,
    request_seq: AtomicU64,
    request_seed: u64,
}

/// The invalidation subscription as the HTTP side sees it.
pub struct Invalidations {
    /// `--bookd-quic` as given.
    pub bookd: String,
    pub status: Arc<crate::subscriber::SubscriberStatus>,
}

impl App {
    /// A new request id: 16 hex digits, unique within this process and unlikely to repeat
    /// across processes.
    pub fn new_request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        request_id(self.request_seed, n)
    }
}

/// The `n`-th request id of a process seeded with `seed`.
fn request_id(seed: u64, n: u64) -> String {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&seed.to_le_bytes());
    buf[8..].copy_from_slice(&n.to_le_bytes());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&buf))
}

/// Tracks when a connection last had a request in flight, to close idle ones.
struct Activity {
    active: AtomicU64,
    last_ms: AtomicU64,
    origin: Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            active: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = self.origin.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        ))
    }
}

struct ActiveGuard(Arc<Activity>);

impl ActiveGuard {
    fn new(a: &Arc<Activity>) -> ActiveGuard {
        a.active.fetch_add(1, Ordering::Relaxed);
        a.touch();
        ActiveGuard(Arc::clone(a))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client connection whose writes fail once the socket has taken no byte for `limit`:
/// a client that stops reading its answer would otherwise hold the connection (and its
/// slot under `--max-connections`) for ever, since hyper waits for the write to finish
/// even on a graceful shutdown.
struct SendTimeout {
    stream: TcpStream,
    limit: Duration,
    /// Armed when a write found the socket full; cleared when a write goes through.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SendTimeout {
    fn new(stream: TcpStream, limit: Duration) -> SendTimeout {
        SendTimeout {
            stream,
            limit,
            stalled: None,
        }
    }

    /// After a write returned `res`: clears the stall on progress, else arms it and fails
    /// the write once it has lasted `limit`.
    fn check<T>(&mut self, cx: &mut Context<'_>, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took no byte of its answer for {} s",
                    limit.as_secs()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for SendTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.check(cx, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.check(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.stream).poll_flush(cx);
        this.check(cx, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.check(cx, res)
    }
}

fn http_builder(limits: &config::Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// A request head hyper refused before it reached [`http::handle`]: hyper has already
/// answered it (with an empty body: its automatic answers cannot carry ours) and closes the
/// connection, so this is only what the access log and the metrics need.
#[derive(Debug, PartialEq, Eq)]
struct RefusedHead {
    status: u16,
    why: String,
}

/// The head hyper refused, if the connection ended for that (see hyper's
/// `Server::on_error`: a parse error other than an internal one is answered 400, a head over
/// `max_buf_size` or `max_headers` 431 and a URI over its own limit 414).
fn refused_head(e: &(dyn std::error::Error + 'static)) -> Option<RefusedHead> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if !h.is_parse() || h.is_parse_status() || h.is_parse_version_h2() {
                return None;
            }
            let why = h.to_string();
            // `Parse::Internal` gets no automatic answer.
            if why.starts_with("internal") {
                return None;
            }
            let status = match (h.is_parse_too_large(), why.starts_with("URI")) {
                (true, true) => 414,
                (true, false) => 431,
                (false, _) => 400,
            };
            return Some(RefusedHead { status, why });
        }
        cur = err.source();
    }
    None
}

/// Counts and logs a refused head like an answered request (route `unparsed`, method and
/// path `-`), plus a line saying why, so that garbage sent to the port is visible.
fn log_refused_head(app: &App, refused: &RefusedHead) {
    let request_id = app.new_request_id();
    app.metrics
        .observe("unparsed", refused.status, Duration::ZERO);
    tracing::info!(
        request_id = %request_id,
        status = refused.status,
        error = %refused.why,
        "request head refused"
    );
    log::access(&log::Access {
        request_id: &request_id,
        method: "-",
        path: "-",
        route: "unparsed",
        status: refused.status,
        latency_us: 0,
    });
}

/// Shortest interval between two warnings about refused connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// How long an idle connection stays open after shutdown starts (and after its last
/// request): hyper closes an idle HTTP/1 connection at once on a graceful shutdown, and a
/// keep-alive request already sent but not yet read would be cut without an answer.
const SHUTDOWN_QUIET: Duration = Duration::from_millis(100);
/// How often a connection looks at its activity while shutting down.
const SHUTDOWN_TICK: Duration = Duration::from_millis(10);

/// Serves one accepted connection until it closes, the server shuts down or it idles out.
async fn serve_connection(
    app: Arc<App>,
    http: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let svc = {
        let app = Arc::clone(&app);
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let guard = ActiveGuard::new(&activity);
            let app = Arc::clone(&app);
            async move {
                let r = http::handle(app, req).await;
                drop(guard);
                r
            }
        })
    };
    let stream = SendTimeout::new(stream, app.config.limits.send_timeout);
    let mut conn = pin!(http.serve_connection(TokioIo::new(stream), svc));
    let idle_timeout = app.config.limits.idle_timeout;
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(idle_timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    // When shutdown started on this connection (see [`SHUTDOWN_QUIET`]).
    let mut stopping: Option<Instant> = None;
    let mut stop_tick = tokio::time::interval(SHUTDOWN_TICK);
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    match refused_head(&*e) {
                        Some(refused) => log_refused_head(&app, &refused),
                        None => tracing::debug!(error = %e, "connection ended with an error"),
                    }
                }
                break;
            }
            _ = shutdown.wait_for(|s| *s), if !closing && stopping.is_none() => {
                stopping = Some(Instant::now());
            }
            _ = stop_tick.tick(), if !closing && stopping.is_some() => {
                // A request running now ends the connection once answered (`Connection:
                // close`); an idle one closes after a quiet spell, so that a request the
                // client sent just before the signal, still in the socket, is answered
                // rather than cut.
                let quiet = |d: Duration| {
                    d >= SHUTDOWN_QUIET && stopping.is_some_and(|t| t.elapsed() >= SHUTDOWN_QUIET)
                };
                if activity.idle_for().is_none_or(quiet) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tick.tick(), if !closing => {
                if activity.idle_for().is_some_and(|d| d >= idle_timeout) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Loads the snapshot, binds, serves until SIGTERM/SIGINT, drains, returns.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let path = config.snapshot.clone();
    let first = tokio::task::spawn_blocking(move || state::load(&path, 1))
        .await
        .context("failed to run the snapshot loader")?
        .map_err(|e| anyhow::anyhow!("{}", e.message()))
        .with_context(|| format!("failed to load --snapshot {}", config.snapshot.display()))?;
    tracing::info!(
        snapshot_id = %first.id(),
        dir = %first.snap.dir.display(),
        created_at = %first.snap.manifest.created_at,
        "snapshot loaded"
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to bind --listen {}", config.listen))?;
    let local: SocketAddr = listener
        .local_addr()
        .context("failed to read the bound address")?;

    let snapshots = Arc::new(SnapshotCell::new(
        config.snapshot.clone(),
        first,
        Arc::clone(&metrics),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    // The subscription outlives the drain: requests in flight keep seeing live seats.
    let (sub_stop_tx, sub_stop_rx) = watch::channel(false);
    let subscription = match &config.quic {
        Some(q) => Some(subscribe(q, &snapshots, sub_stop_rx)?),
        None => None,
    };
    let limits = config.limits.clone();
    let app = Arc::new(App {
        clock: ServiceClock::new(config.now_ms),
        work: Arc::new(Semaphore::new(limits.max_concurrent_work)),
        draining: AtomicBool::new(false),
        invalidations: subscription.as_ref().map(|s| Invalidations {
            bookd: s.bookd.clone(),
            status: s.handle.status(),
        }),
        started: Instant::now(),
        request_seq: AtomicU64::new(0),
        request_seed: (unix_ms() as u64) ^ (u64::from(std::process::id()) << 40),
        config,
        snapshots: Arc::clone(&snapshots),
        metrics: Arc::clone(&metrics),
    });
    let http = Arc::new(http_builder(&limits));
    let watcher =
        tokio::spawn(Arc::clone(&snapshots).watch(limits.watch_interval, stop_rx.clone()));
    let conns = Arc::new(Semaphore::new(limits.max_connections));

    tracing::info!(
        addr = %local,
        max_connections = limits.max_connections,
        clock_utc = %format::date::format_utc_minutes(app.clock.now_utc_min()),
        "listening"
    );

    let mut signal = pin!(shutdown_signal());
    // Refusals are logged at most once per second (a flood of connections must not flood
    // the log too), each line with the count since the previous one.
    let mut refusals_unlogged: u64 = 0;
    let mut refusal_logged_at: Option<Instant> = None;
    let reason = loop {
        let accepted = tokio::select! {
            sig = signal.as_mut() => break sig?,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            refusals_unlogged += 1;
            if refusal_logged_at.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                tracing::warn!(
                    peer = %peer,
                    limit = limits.max_connections,
                    refused = refusals_unlogged,
                    "connection limit reached; new connections closed since the last warning"
                );
                refusals_unlogged = 0;
                refusal_logged_at = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
        metrics.connections_active.fetch_add(1, Ordering::Relaxed);
        let app = Arc::clone(&app);
        let http = Arc::clone(&http);
        let rx = stop_rx.clone();
        let m = Arc::clone(&metrics);
        tokio::spawn(async move {
            serve_connection(app, http, stream, rx).await;
            m.connections_active.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    };

    // Stop accepting, let in-flight requests finish, close idle connections.
    tracing::info!(signal = reason, "shutting down: draining connections");
    app.draining.store(true, Ordering::Relaxed);
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::select! {
        r = tokio::time::timeout(limits.shutdown_timeout, conns.acquire_many(all)) => r.is_ok(),
        _ = shutdown_signal() => false,
    };
    // A reload in progress is abandoned (its snapshot is never served).
    watcher.abort();
    if let Some(s) = subscription {
        let _ = sub_stop_tx.send(true);
        s.publications.abort();
        // The subscriber saw the stop signal: it closes its connection to bookd.
        let _ = tokio::time::timeout(Duration::from_secs(2), s.task).await;
        snapshots.set_swap_hook(None);
    }
    if drained {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!(
            open = metrics.connections_active.load(Ordering::Relaxed),
            "shutdown timeout or second signal: closing the remaining connections"
        );
    }
    Ok(())
}

/// A running invalidation subscription.
struct Subscription {
    bookd: String,
    handle: SubscriberHandle<SnapshotCell>,
    task: tokio::task::JoinHandle<()>,
    /// Reloads the snapshot when bookd announces a new one.
    publications: tokio::task::JoinHandle<()>,
}

/// Subscribes to bookd's invalidations (`--bookd-quic`): the overlay of the snapshot in
/// service follows bookd's inventory, every new snapshot is filled before its swap, and a
/// snapshot bookd announces is loaded at once. Fails (naming the file) when the
/// certificates cannot be loaded.
fn subscribe(
    q: &config::QuicConfig,
    snapshots: &Arc<SnapshotCell>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Subscription> {
    let sc = SubscriberConfig::new(q.bookd.clone(), q.cluster_dir.clone(), q.name.clone());
    let (handle, task) = subscriber::spawn(sc, Arc::clone(snapshots), stop.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("--cluster-dir {}", q.cluster_dir.display()))?;
    let hook: Arc<dyn state::SwapHook> = Arc::new(handle.clone());
    snapshots.set_swap_hook(Some(hook));
    let publications = tokio::spawn(reload_on_publish(
        Arc::clone(snapshots),
        handle.published_snapshots(),
        stop,
    ));
    tracing::info!(bookd = %q.bookd, name = %q.name, "subscribing to bookd's invalidations");
    Ok(Subscription {
        bookd: q.bookd.clone(),
        handle,
        task,
        publications,
    })
}

/// When bookd announces a snapshot (`SnapshotPublished`), reloads the snapshot path at
/// once instead of waiting for the watcher's next tick; retries for a few seconds while the
/// path does not show the announced snapshot yet (it may be published there a moment later).
async fn reload_on_publish(
    cell: Arc<SnapshotCell>,
    mut published: watch::Receiver<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    const ATTEMPTS: u32 = 20;
    const PAUSE: Duration = Duration::from_millis(250);
    loop {
        tokio::select! {
            r = published.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(id) = published.borrow_and_update().clone() else {
            continue;
        };
        for attempt in 0..ATTEMPTS {
            if cell.current().id() == id {
                break;
            }
            // Failures are logged and counted by `reload`; a refused generation is retried
            // only when the path names another one.
            let _ = cell.reload("bookd", false).await;
            if cell.current().id() == id || published.has_changed().unwrap_or(true) {
                break;
            }
            if attempt + 1 == ATTEMPTS {
                tracing::warn!(
                    snapshot_id = %id,
                    serving = %cell.current().id(),
                    "bookd announced a snapshot that the snapshot path does not show; still serving the loaded one"
                );
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(PAUSE) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Builds the runtime and serves `config` (blocking until shutdown).
pub fn run(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("searchd")
        .max_blocking_threads(64)
        .build()
        .context("failed to start the async runtime")?;
    let result = rt.block_on(serve(config));
    // Blocking work still running (a long engine call) must not hold the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_clock_starts_at_now_and_runs() {
        let start = 1_356_998_400_000; // 2013-01-01T00:00:00Z
        let c = ServiceClock::new(Some(start));
        let t = c.now_ms();
        assert!((start..start + 5_000).contains(&t), "{t}");
        assert_eq!(c.now_utc_min(), start / 60_000);
        let real = ServiceClock::new(None);
        assert!((real.now_ms() - unix_ms()).abs() < 5_000);
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let ids: std::collections::HashSet<String> =
            (0..1000u64).map(|n| request_id(42, n)).collect();
        assert!(ids.iter().all(|id| id.len() == 16));
        assert_eq!(ids.len(), 1000);
    }
}
