//! Routing and answering one request: envelopes, request ids, limits, metrics and the
//! access log line.

use std::borrow::Cow;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::encoding;
use super::engine_adapter::{self, EngineResult};
use super::params::{decode_component, decode_query};
use super::state::{Loaded, ReloadError};
use super::App;
use crate::api::ApiError;
use crate::engine::Split;

/// A response body: up to three byte chunks sent one after the other, with an exact length.
/// A search answer is `{"data":`, the engine's bytes and the `meta` tail: handing hyper the
/// engine's buffer as it is avoids copying ~50 KB per 1-stop answer into an envelope (hyper
/// writes the chunks with one vectored write).
#[derive(Debug, Default)]
pub struct Body {
    chunks: [Bytes; 3],
    next: usize,
}

impl Body {
    pub fn new(b: impl Into<Bytes>) -> Body {
        Body::chunks([b.into(), Bytes::new(), Bytes::new()])
    }

    fn chunks(chunks: [Bytes; 3]) -> Body {
        Body { chunks, next: 0 }
    }

    fn remaining(&self) -> u64 {
        self.chunks[self.next.min(3)..]
            .iter()
            .map(|c| c.len() as u64)
            .sum()
    }

    /// The chunks not yet sent.
    fn pending(&self) -> &[Bytes] {
        &self.chunks[self.next.min(3)..]
    }

    /// The bytes not yet sent, joined (for tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks[self.next.min(3)..].concat()
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        while this.next < this.chunks.len() {
            let c = std::mem::take(&mut this.chunks[this.next]);
            this.next += 1;
            if !c.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(c))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 64;
/// Longest request target written to the access log.
const MAX_LOGGED_TARGET: usize = 1024;

pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// What a request asks for, decided from its method and path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Search,
    /// The raw (still percent-encoded) offer id segment.
    Offer(String),
    Calendar,
    Places,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    AdminReload,
    NotFound,
    MethodNotAllowed(&'static str),
}

impl Route {
    /// The `route` label of the metrics (a fixed set, whatever the path).
    pub fn label(&self, path: &str) -> &'static str {
        match self {
            Route::Search => "search",
            Route::Offer(_) => "offer",
            Route::Calendar => "calendar",
            Route::Places => "places",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::OpenApi => "openapi",
            Route::AdminReload => "admin_reload",
            Route::NotFound => "unmatched",
            Route::MethodNotAllowed(_) => match route_of_path(path) {
                Some((_, label)) => label,
                None => "unmatched",
            },
        }
    }
}

const GET_HEAD: &str = "GET, HEAD";

/// The route a path names and the methods it takes.
fn route_of_path(path: &str) -> Option<(&'static str, &'static str)> {
    let (allow, label) = match path {
        "/v1/search" => (GET_HEAD, "search"),
        "/v1/calendar" => (GET_HEAD, "calendar"),
        "/v1/places" => (GET_HEAD, "places"),
        "/healthz" => (GET_HEAD, "healthz"),
        "/readyz" => (GET_HEAD, "readyz"),
        "/metrics" => (GET_HEAD, "metrics"),
        "/openapi.json" => (GET_HEAD, "openapi"),
        "/admin/reload" => ("POST", "admin_reload"),
        p => match p.strip_prefix("/v1/offers/") {
            Some(id) if !id.is_empty() && !id.contains('/') => (GET_HEAD, "offer"),
            _ => return None,
        },
    };
    Some((allow, label))
}

pub fn route(method: &Method, path: &str) -> Route {
    let Some((allow, label)) = route_of_path(path) else {
        return Route::NotFound;
    };
    let ok = if allow == GET_HEAD {
        method == Method::GET || method == Method::HEAD
    } else {
        method == Method::POST
    };
    if !ok {
        return Route::MethodNotAllowed(allow);
    }
    match label {
        "search" => Route::Search,
        "calendar" => Route::Calendar,
        "places" => Route::Places,
        "healthz" => Route::Healthz,
        "readyz" => Route::Readyz,
        "metrics" => Route::Metrics,
        "openapi" => Route::OpenApi,
        "admin_reload" => Route::AdminReload,
        _ => Route::Offer(
            path.strip_prefix("/v1/offers/")
                .unwrap_or_default()
                .to_string(),
        ),
    }
}

/// A sane incoming request id (1-64 of `[A-Za-z0-9_-]`), else none.
pub fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= MAX_REQUEST_ID_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| v.to_string())
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Body::new(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `{"data": ..., "meta": {..., "request_id": ...}}` with status 200.
pub fn success(data: Value, meta: Value, request_id: &str) -> Response<Body> {
    json_response(
        200,
        &json!({ "data": data, "meta": meta_with_id(meta, request_id) }),
    )
}

fn meta_with_id(meta: Value, request_id: &str) -> serde_json::Map<String, Value> {
    let mut meta = match meta {
        Value::Object(m) => m,
        Value::Null => serde_json::Map::new(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("info".into(), other);
            m
        }
    };
    meta.insert("request_id".into(), Value::String(request_id.to_string()));
    meta
}

/// [`success`] with `data` already serialised (valid JSON bytes): the same envelope, keys
/// in the same order, written without a `Value` tree for `data`.
pub fn success_raw(data: Vec<u8>, meta: Value, request_id: &str) -> Response<Body> {
    let meta = meta_with_id(meta, request_id);
    let mut tail = Vec::with_capacity(128);
    tail.extend_from_slice(b",\"meta\":");
    if serde_json::to_writer(&mut tail, &meta).is_err() {
        tail.truncate(8);
        tail.extend_from_slice(b"{}");
    }
    tail.push(b'}');
    let mut resp = Response::new(Body::chunks([
        Bytes::from_static(b"{\"data\":"),
        Bytes::from(data),
        Bytes::from(tail),
    ]));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `{"errors": [...], "meta": {"request_id": ...}}` with the error's status.
pub fn failure(err: &ApiError, request_id: &str) -> Response<Body> {
    json_response(
        err.status,
        &json!({ "errors": [err.to_json()], "meta": { "request_id": request_id } }),
    )
}

fn internal(detail: impl Into<String>) -> ApiError {
    ApiError::new(500, "internal_error", "Internal error", detail)
}

/// Counts a request in flight for as long as it lives (also on timeout or panic).
struct InFlight<'a> {
    app: &'a App,
}

impl<'a> InFlight<'a> {
    fn new(app: &'a App) -> Self {
        app.metrics
            .requests_in_flight
            .fetch_add(1, Ordering::Relaxed);
        InFlight { app }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.app
            .metrics
            .requests_in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The service: answers one request, never fails (every problem is an HTTP answer).
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, ());
    let _in_flight = InFlight::new(&app);
    let request_id = incoming_request_id(req.headers()).unwrap_or_else(|| app.new_request_id());
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let target_len = target.len();
    // Borrowed unless cut (the request keeps it alive until the log line is written).
    let logged_target: Cow<'_, str> = if target.len() > MAX_LOGGED_TARGET {
        let mut end = MAX_LOGGED_TARGET;
        while !target.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(format!("{}...", &target[..end]))
    } else {
        Cow::Borrowed(target)
    };
    let path = req.uri().path();
    let route = route(&method, path);
    let label = route.label(path);

    let mut resp = if target_len > app.config.limits.max_uri_bytes {
        failure(
            &ApiError::new(
                414,
                "uri_too_long",
                "URI too long",
                format!(
                    "the request target is {target_len} bytes; at most {} are accepted",
                    app.config.limits.max_uri_bytes
                ),
            ),
            &request_id,
        )
    } else {
        let limit = if route == Route::AdminReload {
            app.config.limits.reload_timeout
        } else {
            app.config.limits.request_timeout
        };
        let answer = async {
            discard_body(body).await;
            dispatch(&app, route, &req, &request_id).await
        };
        match tokio::time::timeout(limit, answer).await {
            Ok(resp) => resp,
            Err(_) => {
                app.metrics.request_timeouts.fetch_add(1, Ordering::Relaxed);
                failure(
                    &ApiError::new(
                        503,
                        "request_timeout",
                        "Request timed out",
                        format!(
                            "the request was not answered within {} ms; try again or narrow it",
                            limit.as_millis()
                        ),
                    ),
                    &request_id,
                )
            }
        }
    };
    // An answer this large is encoded for a client that asks, so it says so to caches
    // (smaller ones never are, whoever asks).
    if resp.body().remaining() >= encoding::GZIP_MIN_BYTES {
        resp.headers_mut()
            .insert(VARY, HeaderValue::from_static("accept-encoding"));
        if encoding::accepts_gzip(req.headers()) {
            resp = gzipped(&app, resp).await;
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    if method == Method::HEAD {
        // The headers a GET would get, no body: hyper drops it on HTTP/1.1, but over HTTP/2
        // it would send it as DATA frames, which a client resets the stream for.
        let len = resp.body().remaining();
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(len));
        *resp.body_mut() = Body::default();
    }
    let status = resp.status().as_u16();
    let latency = started.elapsed();
    app.metrics.observe(label, status, latency);
    super::log::access(&super::log::Access {
        request_id: &request_id,
        method: method.as_str(),
        path: &logged_target,
        route: label,
        status,
        latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
    });
    Ok(resp)
}

/// `resp` (whose body is large enough to gain from it, see [`encoding`]) gzip-encoded;
/// unchanged if it already has an encoding or the encoder failed.
async fn gzipped(app: &Arc<App>, resp: Response<Body>) -> Response<Body> {
    let len = resp.body().remaining();
    debug_assert!(len >= encoding::GZIP_MIN_BYTES);
    if resp.headers().contains_key(CONTENT_ENCODING) {
        return resp;
    }
    let encoded = if len <= encoding::GZIP_INLINE_MAX_BYTES {
        encoding::gzip(resp.body().pending())
    } else {
        // The chunks are shared, not copied: the unencoded body stays ready as a fallback.
        let chunks = resp.body().pending().to_vec();
        // Only with a work permit free now: the answer is ready, and a client that asks
        // for gzip takes identity too, so it never queues behind searches for one (nor
        // once the server is shutting down).
        match Arc::clone(&app.work).try_acquire_owned() {
            Ok(permit) => tokio::task::spawn_blocking(move || {
                let _permit = permit;
                encoding::gzip(&chunks)
            })
            .await
            .ok()
            .flatten(),
            Err(_) => None,
        }
    };
    let Some(encoded) = encoded else {
        return resp;
    };
    let (mut parts, _) = resp.into_parts();
    parts
        .headers
        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    // The length hyper writes is the encoded body's (from its size hint).
    parts.headers.remove(CONTENT_LENGTH);
    app.metrics
        .responses_gzipped
        .fetch_add(1, Ordering::Relaxed);
    Response::from_parts(parts, Body::new(encoded))
}

/// No route uses a request body, but one left unread ends a keep-alive connection (hyper
/// drains at most a little of it): up to this many bytes are read and dropped.
const MAX_IGNORED_BODY_BYTES: usize = 64 * 1024;
/// How long a body announced but not sent is waited for before answering anyway.
const IGNORED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and drops a request body, so that the connection can take the next request. A
/// larger one, or one that does not arrive, is left unread: the request is answered all
/// the same and the connection then closes.
async fn discard_body(body: Incoming) {
    use http_body_util::BodyExt as _;
    use hyper::body::Body as _;
    if body.is_end_stream() || body.size_hint().lower() > MAX_IGNORED_BODY_BYTES as u64 {
        return;
    }
    let read = http_body_util::Limited::new(body, MAX_IGNORED_BODY_BYTES).collect();
    let _ = tokio::time::timeout(IGNORED_BODY_WAIT, read).await;
}

async fn dispatch(app: &Arc<App>, route: Route, req: &Request<()>, rid: &str) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    match route {
        Route::NotFound => failure(
            &ApiError::not_found(format!(
                "no resource at {} (see /openapi.json)",
                req.uri().path()
            )),
            rid,
        ),
        Route::MethodNotAllowed(allow) => {
            let mut r = failure(
                &ApiError::new(
                    405,
                    "method_not_allowed",
                    "Method not allowed",
                    format!("{} takes {allow}, not {}", req.uri().path(), req.method()),
                ),
                rid,
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            r
        }
        Route::Healthz => success(json!({ "status": "ok" }), Value::Null, rid),
        Route::Readyz => readyz(app, rid),
        Route::Metrics => metrics(app),
        Route::OpenApi => {
            let mut r = Response::new(Body::new(Bytes::from_static(OPENAPI_JSON.as_bytes())));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Route::AdminReload => admin_reload(app, req.headers(), rid).await,
        Route::Places => {
            let params = match decode_query(query) {
                Ok(p) => p,
                Err(e) => return failure(&e, rid),
            };
            let (q, limit) = match crate::places::parse_params(&params) {
                Ok(v) => v,
                Err(e) => return failure(&e, rid),
            };
            run(app, rid, Exec::Inline, move |loaded, _now| {
                let data = loaded.places.search(&q, limit)?;
                let count = data.as_array().map(Vec::len).unwrap_or(0);
                let data = serde_json::to_vec(&data).map_err(|e| internal(e.to_string()))?;
                Ok((data, json!({ "count": count })))
            })
            .await
        }
        Route::Search => {
            let params = match decode_query(query) {
                Ok(p) => p,
                Err(e) => return failure(&e, rid),
            };
            let exec = search_exec(&params);
            let steps = app.config.limits.inline_search_steps;
            if exec == Exec::Blocking && steps > 0 {
                // Most searches with connections take tens of microseconds: answer them on
                // this worker within a small budget, and hand only the larger ones to the
                // blocking pool (the attempt costs them at most that budget).
                let loaded = app.snapshots.current();
                let now = app.clock.now_utc_min();
                let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    engine_adapter::search_within(
                        &loaded.snap,
                        &loaded.overlay,
                        now,
                        &params,
                        steps,
                    )
                }));
                match attempt {
                    Ok(Ok(None)) => {}
                    Ok(Ok(Some(done))) => return respond(&loaded, Ok(Ok(done)), rid),
                    Ok(Err(e)) => return respond(&loaded, Ok(Err(e)), rid),
                    Err(_) => return respond(&loaded, Err("the engine call panicked".into()), rid),
                }
            }
            // A large search may take a second core only when this is the only request in
            // flight: under load every core already serves a request, and the split's
            // helper would take CPU from them (measured: the 20-URL rotation 13.3k/s with
            // splits allowed, 14.6k/s without).
            let alone = app.metrics.requests_in_flight.load(Ordering::Relaxed) <= 1;
            let split = if alone { Split::Auto } else { Split::Never };
            run(app, rid, exec, move |l, now| {
                engine_adapter::search(&l.snap, &l.overlay, now, &params, split)
            })
            .await
        }
        Route::Calendar => {
            let params = match decode_query(query) {
                Ok(p) => p,
                Err(e) => return failure(&e, rid),
            };
            run(app, rid, Exec::Blocking, move |l, now| {
                engine_adapter::calendar(&l.snap, &l.overlay, now, &params)
            })
            .await
        }
        Route::Offer(raw) => {
            let id = match decode_component(&raw, false) {
                Ok(id) => id,
                Err(why) => {
                    return failure(
                        &ApiError::bad_parameter("id", format!("the offer id {why}")),
                        rid,
                    )
                }
            };
            run(app, rid, Exec::Inline, move |l, now| {
                engine_adapter::offer(&l.snap, &l.overlay, now, &id)
            })
            .await
        }
    }
}

/// Where an engine call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exec {
    /// On the runtime worker that serves the request, for calls that take microseconds:
    /// nonstop searches, offers (at most 6 segments re-priced) and places. Handing those to
    /// another thread cost more than the call itself (a futex wake-up and two context
    /// switches; with it the direct search did ~22,500/s instead of ~34,000/s, §2 of
    /// BENCHMARKS.md). At most one such call runs per worker thread, so they need no permit.
    Inline,
    /// On the blocking pool, at most `max_concurrent_work` at once: searches with
    /// connections (up to milliseconds each) and the calendar (tens of milliseconds). Run
    /// inline, one of them holds every other connection of its worker: under CPU contention
    /// the 1-stop p99 went from ~8 ms to ~120 ms.
    Blocking,
}

/// Where a search runs: inline only when it is nonstop (`max_connections=0`); others are
/// tried inline within `--inline-search-steps` first. The engine validates the parameters
/// either way.
fn search_exec(params: &[(String, String)]) -> Exec {
    let nonstop = params
        .iter()
        .any(|(k, v)| k == "max_connections" && v == "0");
    if nonstop {
        Exec::Inline
    } else {
        Exec::Blocking
    }
}

/// Runs a snapshot-bound call on the snapshot current when the request started.
async fn run<F>(app: &Arc<App>, rid: &str, exec: Exec, f: F) -> Response<Body>
where
    F: FnOnce(&Loaded, i64) -> EngineResult + Send + 'static,
{
    let loaded = app.snapshots.current();
    let now = app.clock.now_utc_min();
    let joined = match exec {
        // A panic is answered 500 as on the blocking pool (the engine asserts invariants).
        Exec::Inline => std::panic::catch_unwind(AssertUnwindSafe(|| f(&loaded, now)))
            .map_err(|_| "the engine call panicked".to_string()),
        Exec::Blocking => {
            let permit = match Arc::clone(&app.work).acquire_owned().await {
                Ok(p) => p,
                Err(_) => {
                    return failure(
                        &ApiError::new(
                            503,
                            "shutting_down",
                            "Shutting down",
                            "the server is stopping",
                        ),
                        rid,
                    )
                }
            };
            let loaded = Arc::clone(&loaded);
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                f(&loaded, now)
            })
            .await
            .map_err(|join| join.to_string())
        }
    };
    respond(&loaded, joined, rid)
}

/// The response to an engine call's outcome (`Err`: it panicked or could not be joined).
fn respond(loaded: &Loaded, joined: Result<EngineResult, String>, rid: &str) -> Response<Body> {
    let snapshot_id = loaded.id();
    match joined {
        Ok(Ok((data, mut meta))) => {
            if let Value::Object(m) = &mut meta {
                m.entry("snapshot_id")
                    .or_insert_with(|| Value::String(snapshot_id.to_string()));
            }
            success_raw(data, meta, rid)
        }
        Ok(Err(e)) => {
            if e.status >= 500 {
                tracing::error!(request_id = %rid, error = %e, "request failed");
            }
            failure(&e, rid)
        }
        Err(why) => {
            tracing::error!(request_id = %rid, error = %why, "request handler panicked");
            failure(&internal("the request could not be answered"), rid)
        }
    }
}

fn readyz(app: &App, rid: &str) -> Response<Body> {
    if app.draining.load(Ordering::Relaxed) {
        return failure(
            &ApiError::new(
                503,
                "shutting_down",
                "Shutting down",
                "the server is draining",
            ),
            rid,
        );
    }
    let invalidations = app.invalidations.as_ref().map(|inv| {
        let st = &inv.status;
        json!({
            "bookd": inv.bookd,
            "connected": st.connected.load(Ordering::Relaxed),
            "in_sync": st.in_sync(),
            "last_applied_seq": st.last_applied_seq.load(Ordering::Relaxed),
            "bookd_seq": st.bookd_seq.load(Ordering::Relaxed),
            "lag_seq": st.lag_seq(),
            "since_last_frame_ms": st.since_last_frame_ms(),
        })
    });
    if let Some(inv) = &app.invalidations {
        if !inv.status.in_sync() {
            let st = &inv.status;
            let why = if !st.connected.load(Ordering::Relaxed) {
                format!("not connected to bookd at {}", inv.bookd)
            } else if !st.synced.load(Ordering::Relaxed) {
                format!(
                    "connected to bookd at {}, waiting for its seat state",
                    inv.bookd
                )
            } else {
                format!(
                    "no frame from bookd at {} for {} ms",
                    inv.bookd,
                    st.since_last_frame_ms()
                )
            };
            let err = ApiError::new(
                503,
                "invalidations_not_in_sync",
                "Not in sync with bookd",
                format!("live seat counts may be stale: {why}"),
            );
            // The subscription's state goes in `meta`, for operators.
            let mut r = json_response(
                503,
                &json!({
                    "errors": [err.to_json()],
                    "meta": { "request_id": rid, "invalidations": invalidations },
                }),
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    }
    let l = app.snapshots.current();
    let m = &l.snap.manifest;
    let mut data = json!({
        "status": "ready",
        "snapshot_id": m.snapshot_id,
        "generation": l.generation,
        "created_at": m.created_at,
        "loaded_at": format::date::format_utc_seconds(l.loaded_at_unix),
        "first_date": m.first_date,
        "last_date": m.last_date,
        "clock_utc": format::date::format_utc_minutes(app.clock.now_utc_min()),
    });
    if let Some(inv) = invalidations {
        data["invalidations"] = inv;
    }
    success(data, Value::Null, rid)
}

fn metrics(app: &App) -> Response<Body> {
    let l = app.snapshots.current();
    let gauges = super::metrics::SnapshotGauges {
        generation: l.generation,
        snapshot_id: &l.snap.manifest.snapshot_id,
        created_at: &l.snap.manifest.created_at,
        loaded_at_unix: l.loaded_at_unix,
        overlay_entries: l.overlay.len(),
        places: l.places.len(),
    };
    let mut text = app.metrics.render(Some(&gauges), app.started.elapsed());
    if let Some(inv) = &app.invalidations {
        text.push_str(&inv.status.render_prometheus());
    }
    let mut r = Response::new(Body::new(text));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Compares without an early exit on the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

async fn admin_reload(app: &Arc<App>, headers: &HeaderMap, rid: &str) -> Response<Body> {
    let Some(expected) = app.config.admin_token.as_deref() else {
        return failure(
            &ApiError::new(
                403,
                "forbidden",
                "Forbidden",
                "the admin endpoint is disabled: start searchd with --admin-token or SEARCHD_ADMIN_TOKEN",
            ),
            rid,
        );
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(given) = given else {
        let mut r = failure(
            &ApiError::new(
                401,
                "unauthorized",
                "Unauthorized",
                "send `Authorization: Bearer <admin token>`",
            ),
            rid,
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"searchd-admin\""),
        );
        return r;
    };
    if !same_secret(given.as_bytes(), expected.as_bytes()) {
        return failure(
            &ApiError::new(
                403,
                "forbidden",
                "Forbidden",
                "the admin token is not valid",
            ),
            rid,
        );
    }
    // On its own task: a client that hangs up (or this request's timeout) must not abandon
    // the reload half-way, after it marked the new generation as tried (the watcher would
    // then never load it) and before the swap.
    let cell = Arc::clone(&app.snapshots);
    let reloaded = tokio::spawn(async move { cell.reload("admin", true).await })
        .await
        .unwrap_or_else(|e| Err(ReloadError::Failed(format!("the reload task stopped: {e}"))));
    match reloaded {
        Ok(o) => success(
            json!({
                "snapshot_id": o.snapshot_id,
                "generation": o.generation,
                "changed": o.changed,
            }),
            Value::Null,
            rid,
        ),
        Err(ReloadError::Rejected(m)) => failure(
            &ApiError::new(
                409,
                "snapshot_rejected",
                "Snapshot rejected",
                format!("refused the new snapshot: {m}; the previous one keeps serving"),
            ),
            rid,
        ),
        Err(ReloadError::Failed(m)) => failure(
            &ApiError::new(
                500,
                "snapshot_load_failed",
                "Snapshot load failed",
                format!("failed to load the new snapshot: {m}; the previous one keeps serving"),
            ),
            rid,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(route(&Method::GET, "/v1/places"), Route::Places);
        assert_eq!(route(&Method::HEAD, "/healthz"), Route::Healthz);
        assert_eq!(
            route(&Method::GET, "/v1/offers/abc"),
            Route::Offer("abc".into())
        );
        assert_eq!(route(&Method::GET, "/v1/offers/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/v1/offers/a/b"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/v1/places/"), Route::NotFound);
        assert_eq!(
            route(&Method::POST, "/v1/search"),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(
            route(&Method::GET, "/admin/reload"),
            Route::MethodNotAllowed("POST")
        );
        assert_eq!(
            route(&Method::DELETE, "/v1/offers/x").label("/v1/offers/x"),
            "offer"
        );
        assert_eq!(route(&Method::GET, "/nope").label("/nope"), "unmatched");
    }

    #[test]
    fn request_ids_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(incoming_request_id(&h), None);
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123_X"));
        assert_eq!(incoming_request_id(&h).as_deref(), Some("abc-123_X"));
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        assert_eq!(incoming_request_id(&h), None);
        let long = "a".repeat(65);
        h.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_str(&long).expect("header"),
        );
        assert_eq!(incoming_request_id(&h), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem"));
        assert!(!same_secret(b"token", b"token2"));
        assert!(!same_secret(b"", b"x"));
    }

    #[test]
    fn chunked_bodies_send_every_byte_with_an_exact_length() {
        use hyper::body::Body as _;
        let resp = success_raw(
            br#"{"itineraries":[]}"#.to_vec(),
            json!({ "count": 0 }),
            "rid",
        );
        let mut body = resp.into_body();
        assert_eq!(body.size_hint().exact(), Some(body.to_vec().len() as u64));
        let want = br#"{"data":{"itineraries":[]},"meta":{"count":0,"request_id":"rid"}}"#;
        assert_eq!(body.to_vec(), want.to_vec());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut got = Vec::new();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            let data = frame
                .unwrap_or_else(|e| match e {})
                .into_data()
                .unwrap_or_default();
            assert!(!data.is_empty(), "no empty frames");
            got.extend_from_slice(&data);
        }
        assert_eq!(got, want.to_vec());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        let empty = Body::new(Bytes::new());
        assert!(empty.is_end_stream());
    }

    #[test]
    fn only_nonstop_searches_run_inline() {
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            search_exec(&p(&[("origin", "AAA"), ("max_connections", "0")])),
            Exec::Inline
        );
        assert_eq!(search_exec(&p(&[("origin", "AAA")])), Exec::Blocking);
        assert_eq!(search_exec(&p(&[("max_connections", "1")])), Exec::Blocking);
        assert_eq!(
            search_exec(&p(&[("max_connections", "00")])),
            Exec::Blocking
        );
    }
}
