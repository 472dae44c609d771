//! One HTTP connection's limits: the send timeout, the idle keep-alive timeout, the request
//! head timeout, and the request heads hyper refuses by itself (logged and counted).
//!
//! bookd's own small copy of searchd's design (`searchd/src/server/mod.rs`), for HTTP/1.1
//! only. One difference: hyper's `header_read_timeout` also runs while a keep-alive
//! connection waits for its next request, so it would close every idle connection after the
//! head timeout whatever `--idle-timeout-secs` says; here the head timeout runs from the
//! head's first byte and the idle timeout from the end of the last request.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Limits of bookd's HTTP server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--max-connections`: a connection over it is closed at once.
    pub max_connections: usize,
    /// `--idle-timeout-secs`: a keep-alive connection that waits this long for its next
    /// request is closed.
    pub idle_timeout: Duration,
    /// `--send-timeout-secs`: a connection whose answer takes no byte for this long (its
    /// client stopped reading) is closed.
    pub send_timeout: Duration,
    /// From a request head's first byte to its last; also how long a new connection may
    /// wait before its first byte.
    pub head_timeout: Duration,
    /// hyper's read buffer, which must hold the request line and headers (431 beyond).
    pub max_head_bytes: usize,
    /// Headers per request (431 beyond).
    pub max_headers: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The connection builder for `limits` (the head timeout is the connection's own).
pub fn builder(limits: &Limits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(None)
        .max_buf_size(limits.max_head_bytes)
        // `max_buf_size` alone is no head limit: hyper reads into all of its buffer's
        // capacity, so a whole head over the limit that arrives in one read is taken.
        .max_header_size(limits.max_head_bytes)
        .max_headers(limits.max_headers);
    b
}

/// How often a connection looks at its timers.
const TICK: Duration = Duration::from_millis(250);
/// On shutdown, an idle connection is closed only once it has been quiet this long (since
/// the shutdown began and since its last request or byte): hyper closes an idle HTTP/1
/// connection at once on a graceful shutdown, and a keep-alive request the client sent
/// just before (or as) the signal came, still in the socket, would be cut unanswered.
const SHUTDOWN_QUIET: Duration = Duration::from_millis(250);
/// How often a connection looks at its activity while shutting down.
const SHUTDOWN_TICK: Duration = Duration::from_millis(10);

/// What a connection is doing, from its requests and the bytes it reads.
struct Activity {
    origin: Instant,
    /// Requests being handled.
    active: AtomicU64,
    /// Requests begun on this connection.
    begun: AtomicU64,
    /// Milliseconds since `origin` when a request last began or ended.
    last_ms: AtomicU64,
    /// 1 + milliseconds since `origin` of the first byte read since then; 0 when none.
    head_from: AtomicU64,
    /// Set when a write failed for `--send-timeout-secs`.
    send_timed_out: AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// A request is being handled, or the connection waits within its limits.
    Fine,
    /// No request and no byte for the idle timeout (the head timeout before a first request).
    Idle,
    /// A request head started and did not end within the head timeout.
    HeadTimedOut,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            active: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            head_from: AtomicU64::new(0),
            send_timed_out: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn read_some(&self) {
        if self.head_from.load(Relaxed) == 0 {
            let _ = self
                .head_from
                .compare_exchange(0, self.now_ms() + 1, Relaxed, Relaxed);
        }
    }

    /// A request began or ended: the bytes read so far were its.
    fn mark(&self) {
        self.last_ms.store(self.now_ms(), Relaxed);
        self.head_from.store(0, Relaxed);
    }

    /// No request in flight, no byte of a next one, and none for `quiet`.
    fn quiet_for(&self, quiet: Duration) -> bool {
        self.active.load(Relaxed) == 0
            && self.head_from.load(Relaxed) == 0
            && Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Relaxed)))
                >= quiet
    }

    fn state(&self, limits: &Limits) -> State {
        if self.active.load(Relaxed) > 0 {
            return State::Fine;
        }
        let now = self.now_ms();
        let head_from = self.head_from.load(Relaxed);
        if head_from > 0 {
            let waited = Duration::from_millis(now.saturating_sub(head_from - 1));
            return if waited >= limits.head_timeout {
                State::HeadTimedOut
            } else {
                State::Fine
            };
        }
        let limit = if self.begun.load(Relaxed) == 0 {
            limits.idle_timeout.min(limits.head_timeout)
        } else {
            limits.idle_timeout
        };
        let idle = Duration::from_millis(now.saturating_sub(self.last_ms.load(Relaxed)));
        if idle >= limit {
            State::Idle
        } else {
            State::Fine
        }
    }
}

/// A request being handled (from its head until its handler returned).
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Busy {
        a.active.fetch_add(1, Relaxed);
        a.begun.fetch_add(1, Relaxed);
        a.mark();
        Busy(Arc::clone(a))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.mark();
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// The client socket: notes the bytes it reads in [`Activity`], and fails a write once the
/// socket has taken no byte for the send timeout (hyper would wait for ever, even on a
/// graceful shutdown, and the connection would keep its slot under `--max-connections`).
struct Io {
    stream: TcpStream,
    activity: Arc<Activity>,
    send_timeout: Duration,
    /// Armed when a write found the socket full; cleared when a write goes through.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Io {
    fn check<T>(&mut self, cx: &mut Context<'_>, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let limit = self.send_timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.activity.send_timed_out.store(true, Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the client took no byte of its answer for {} s",
                        limit.as_secs()
                    ),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read_some();
        }
        res
    }
}

impl AsyncWrite for Io {
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

/// A request head hyper refused before any handler saw it. hyper has answered it already
/// (with an empty body: its automatic answers cannot carry ours) and closes the connection.
#[derive(Debug, PartialEq, Eq)]
pub struct RefusedHead {
    pub status: u16,
    /// hyper's reason.
    pub why: String,
}

/// The head hyper refused, if the connection ended for that (hyper's `Server::on_error`: a
/// parse error other than an internal one is answered 400, a head over `max_buf_size` or
/// `max_headers` 431 and a URI over its own limit 414).
pub fn refused_head(e: &(dyn std::error::Error + 'static)) -> Option<RefusedHead> {
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

/// Serves one accepted connection with `handler` until it closes, idles out, breaks a
/// limit, or the server shuts down (a request in flight is answered first).
pub async fn serve<H, F>(
    http: &http1::Builder,
    limits: &Limits,
    metrics: &Metrics,
    stream: TcpStream,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let svc = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |req| {
            let busy = Busy::new(&activity);
            let answer = handler(req);
            async move {
                let r = answer.await;
                drop(busy);
                Ok::<_, Infallible>(r)
            }
        })
    };
    let io = Io {
        stream,
        activity: Arc::clone(&activity),
        send_timeout: limits.send_timeout,
        stalled: None,
    };
    let conn = http.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    // When the shutdown began (see [`SHUTDOWN_QUIET`]).
    let mut stopping: Option<Instant> = None;
    let mut stop_tick = tokio::time::interval(SHUTDOWN_TICK);
    let res = loop {
        tokio::select! {
            res = conn.as_mut() => break res,
            _ = shutdown.wait_for(|s| *s), if !closing && stopping.is_none() => {
                stopping = Some(Instant::now());
            }
            _ = stop_tick.tick(), if !closing && stopping.is_some() => {
                // A request in flight ends the connection once answered (`Connection:
                // close`); an idle one closes after a quiet spell.
                let busy = activity.active.load(Relaxed) > 0;
                let quiet = stopping.is_some_and(|t| t.elapsed() >= SHUTDOWN_QUIET)
                    && activity.quiet_for(SHUTDOWN_QUIET);
                if busy || quiet {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tick.tick(), if !closing => match activity.state(limits) {
                State::Fine => {}
                State::Idle => {
                    // Closes at once when idle, else after the answer being written.
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                State::HeadTimedOut => {
                    metrics.connections_head_timed_out.fetch_add(1, Relaxed);
                    tracing::debug!(
                        timeout_s = limits.head_timeout.as_secs(),
                        "closing a connection whose request head was not complete in time"
                    );
                    return;
                }
            },
        }
    };
    if activity.send_timed_out.load(Relaxed) {
        metrics.connections_send_timed_out.fetch_add(1, Relaxed);
        tracing::info!(
            timeout_s = limits.send_timeout.as_secs(),
            "closed a connection whose client took no byte of its answer for the send timeout"
        );
        return;
    }
    if let Err(e) = res {
        match refused_head(&e) {
            Some(r) => {
                metrics.count_refused_head(r.status);
                // Logged like an answered request (no method or path: there is none).
                tracing::info!(
                    request_id = %crate::ids::new_id("req"),
                    method = "-",
                    path = "-",
                    status = r.status,
                    error = %r.why,
                    "request head refused"
                );
            }
            None => tracing::debug!(error = %e, "connection ended with an error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            idle_timeout: Duration::from_millis(300),
            head_timeout: Duration::from_millis(100),
            ..Limits::default()
        }
    }

    #[test]
    fn a_new_connection_gets_the_shorter_of_the_idle_and_head_timeouts() {
        let a = Activity::new();
        assert_eq!(a.state(&limits()), State::Fine);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(a.state(&limits()), State::Idle);
    }

    #[test]
    fn between_requests_the_idle_timeout_applies_and_a_head_has_the_head_timeout() {
        let a = Arc::new(Activity::new());
        drop(Busy::new(&a));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(a.state(&limits()), State::Fine, "idle but within 300 ms");
        a.read_some();
        std::thread::sleep(Duration::from_millis(60));
        a.read_some(); // a later byte does not restart the head's clock
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(a.state(&limits()), State::HeadTimedOut);
    }

    #[test]
    fn a_request_in_flight_is_never_timed_out() {
        let a = Arc::new(Activity::new());
        let busy = Busy::new(&a);
        a.read_some(); // its body
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(a.state(&limits()), State::Fine);
        drop(busy);
        assert_eq!(
            a.state(&limits()),
            State::Fine,
            "its body is not a new head"
        );
    }
}
