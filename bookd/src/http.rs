//! The HTTP API (hyper 1): connection limits (see [`connection`]), routing, authentication,
//! rate limits, idempotency, body limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::ApiError;
use crate::connection;
pub use crate::connection::Limits;
use crate::ids::{new_id, sha256};
use crate::service::{Ctx, Reply, Service, IDEMPOTENCY_CLAIMED};
use crate::validate;

pub const MAX_BODY: usize = 64 * 1024;
/// Longest a request body may take to arrive (a request in progress is exempt from the
/// connection's idle and head timeouts, so a body sent byte by byte would otherwise hold the
/// connection and its slot for ever).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Tokens per second.
    pub rate: f64,
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// When a key was looked up, and its (id, revoked) if it exists.
type CachedKey = (Instant, Option<(i64, bool)>);

pub struct App {
    pub svc: Arc<Service>,
    pub rate: RateLimit,
    buckets: Mutex<HashMap<i64, Bucket>>,
    keys: Mutex<HashMap<[u8; 32], CachedKey>>,
    pub key_cache_ttl: Duration,
    pub idem_wait: Duration,
    /// The invalidation publisher's counters, appended to `/metrics` (with `--quic-listen`).
    pub quic_stats: Option<Arc<crate::quic::PublisherStats>>,
}

impl App {
    pub fn new(svc: Arc<Service>, rate: RateLimit) -> App {
        App {
            svc,
            rate,
            buckets: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            key_cache_ttl: Duration::from_secs(1),
            idem_wait: Duration::from_secs(10),
            quic_stats: None,
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: u16, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(e: &ApiError, rid: &str) -> Resp {
    let mut r = json_response(e.status, &e.body(rid));
    if let Some(s) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
    }
    if let Some(allow) = e.allow {
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    }
    r
}

/// Logs the connections refused under `--max-connections` at most once a second (a flood
/// of them must not flood the log too); every one is counted in `/metrics`.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    /// Refused since the last line.
    unlogged: u64,
}

impl RefusalLog {
    fn refused(&mut self, peer: SocketAddr, limit: usize) {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            limit,
            refused = self.unlogged,
            last_peer = %peer,
            "connection limit reached (--max-connections): closing new connections at once"
        );
        self.last = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// Serves until `shutdown` turns true, then drains open connections (up to
/// `limits.drain_timeout`): a request in flight is answered, idle connections are closed.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let http = Arc::new(connection::builder(&limits));
    let limits = Arc::new(limits);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let metrics = Arc::clone(&app.svc.metrics);
    let mut refusals = RefusalLog::default();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Closed at once (as searchd does): a connection over the limit costs nothing more.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Relaxed);
            refusals.refused(peer, limits.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_accepted.fetch_add(1, Relaxed);
        let open = OpenConnection::new(&metrics);
        let app = app.clone();
        let http = Arc::clone(&http);
        let limits = Arc::clone(&limits);
        let sd = shutdown.clone();
        conns.spawn(async move {
            let metrics = Arc::clone(&app.svc.metrics);
            let handler = move |req| {
                let app = app.clone();
                async move { handle(app, req, peer).await }
            };
            connection::serve(&http, &limits, &metrics, stream, handler, sd).await;
            drop((open, slot));
        });
        while conns.try_join_next().is_some() {}
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            open = conns.len(),
            "shutdown: connections still open after the drain timeout are closed"
        );
    }
    Ok(())
}

/// An open connection in the `bookd_http_connections_active` gauge.
struct OpenConnection(Arc<crate::metrics::Metrics>);

impl OpenConnection {
    fn new(m: &Arc<crate::metrics::Metrics>) -> OpenConnection {
        m.connections_active.fetch_add(1, Relaxed);
        OpenConnection(Arc::clone(m))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Relaxed);
    }
}

async fn handle(app: Arc<App>, req: Request<Incoming>, _peer: SocketAddr) -> Resp {
    let rid = new_id("req");
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match route(&app, req, &rid).await {
        Ok(r) => r,
        Err(e) => error_response(&e, &rid),
    };
    let status = resp.status().as_u16();
    app.svc.metrics.count_status(status);
    // No bodies, headers or query strings are logged: they may carry personal data.
    tracing::info!(
        request_id = %rid,
        method = %method,
        path = %path,
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    let mut resp = resp;
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    // Bodies are JSON. A request that says it sends something else is refused (a client
    // posting a form by mistake gets told, not a hold); one that says nothing is read as
    // JSON.
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let media = ct
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        if media.as_deref() != Some("application/json") {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                "Unsupported media type",
                "request bodies are JSON: send `Content-Type: application/json`",
            )
            .with_parameter("Content-Type"));
        }
    }
    let too_big = || {
        ApiError::new(
            413,
            "payload_too_large",
            "Payload too large",
            format!("the body exceeds {MAX_BODY} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_BODY as u64 {
            return Err(too_big());
        }
    }
    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let Ok(read) = tokio::time::timeout(BODY_TIMEOUT, body).await else {
        return Err(ApiError::new(
            408,
            "request_timeout",
            "Request timeout",
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )
        .with_parameter("body"));
    };
    match read {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_big())
            } else {
                Err(ApiError::bad("body", "the body could not be read"))
            }
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad("body", format!("invalid JSON: {e}")))
}

async fn route(app: &Arc<App>, req: Request<Incoming>, rid: &str) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method.clone(), path.as_str()) {
        (Method::GET, "/healthz") => {
            return Ok(json_response(
                200,
                &json!({"data": {"status": "ok"}, "meta": {"request_id": rid}}),
            ))
        }
        (Method::GET, "/readyz") => {
            let ok = tokio::time::timeout(Duration::from_secs(2), async {
                let c = app.svc.pool.get().await.ok()?;
                c.query_one("SELECT 1", &[]).await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            return if ok {
                Ok(json_response(
                    200,
                    &json!({"data": {"status": "ready"}, "meta": {"request_id": rid}}),
                ))
            } else {
                Err(ApiError::unavailable("the database is not reachable"))
            };
        }
        (Method::GET, "/metrics") => {
            let mut text = app.svc.metrics.render(&[
                ("payment_gateway", app.svc.pay_breaker.state_code()),
                ("airline", app.svc.air_breaker.state_code()),
            ]);
            text.push_str(&format!(
                "# HELP bookd_outbox_seq newest committed outbox seq seen by this process\n\
                 # TYPE bookd_outbox_seq gauge\nbookd_outbox_seq {}\n",
                app.svc.outbox_seq.current()
            ));
            if let Some(q) = &app.quic_stats {
                text.push_str(&q.render_prometheus());
            }
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(r);
        }
        _ => {}
    }
    if !path.starts_with("/v1/") {
        return Err(ApiError::not_found("no such endpoint"));
    }
    // Authentication, then the key's rate limit.
    let key_id = authenticate(app, &req).await?;
    let (allowed, remaining, reset, next_in) = take_token(app, key_id);
    let limit_headers = |r: &mut Resp| {
        let h = r.headers_mut();
        for (k, v) in [
            ("ratelimit-limit", format!("{}", app.rate.burst as u64)),
            ("ratelimit-remaining", format!("{remaining}")),
            ("ratelimit-reset", format!("{reset}")),
            ("ratelimit-policy", format!("{};w=1", app.rate.rate as u64)),
        ] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
    };
    if !allowed {
        app.svc.metrics.rate_limited.fetch_add(1, Relaxed);
        let mut e = ApiError::new(
            429,
            "rate_limited",
            "Too many requests",
            "this API key's request rate limit is exceeded",
        );
        // When one more request is allowed (not when the bucket is full again).
        e.retry_after = Some(next_in.max(1));
        let mut r = error_response(&e, rid);
        limit_headers(&mut r);
        return Ok(r);
    }
    let idem_header = req
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string));
    let mut r = dispatch(app, req, method, &path, key_id, rid, idem_header).await?;
    limit_headers(&mut r);
    Ok(r)
}

async fn authenticate(app: &App, req: &Request<Incoming>) -> Result<i64, ApiError> {
    let unauthorized = |d: &str| {
        ApiError::new(401, "unauthorized", "Unauthorized", d).with_parameter("Authorization")
    };
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("an `Authorization: Bearer KEY` header is required"))?;
    let text = header
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    // The scheme is case-insensitive (RFC 9110, 11.1).
    let key = text
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or_else(|| unauthorized("expected `Bearer KEY`"))?;
    let h = sha256(key.as_bytes());
    let cached = {
        let map = app.keys.lock().map_err(|_| ApiError::internal("lock"))?;
        map.get(&h)
            .filter(|(at, _)| at.elapsed() < app.key_cache_ttl)
            .map(|(_, v)| *v)
    };
    let found = match cached {
        Some(v) => v,
        None => {
            let c = app.svc.pool.get().await?;
            let row = c
                .query_opt(
                    &c.prepare_cached(
                        "SELECT id, revoked_at IS NOT NULL FROM api_keys WHERE key_hash = $1",
                    )
                    .await?,
                    &[&h.as_slice()],
                )
                .await?;
            let v = row.map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1)));
            if let Ok(mut map) = app.keys.lock() {
                if map.len() > 10_000 {
                    map.clear();
                }
                map.insert(h, (Instant::now(), v));
            }
            v
        }
    };
    match found {
        None => Err(unauthorized("unknown API key")),
        Some((_, true)) => Err(ApiError::new(
            403,
            "forbidden",
            "Forbidden",
            "this API key has been revoked",
        )
        .with_parameter("Authorization")),
        Some((id, false)) => Ok(id),
    }
}

/// Token bucket per key: (allowed, remaining, seconds until full, seconds until the next
/// token).
fn take_token(app: &App, key_id: i64) -> (bool, u64, u64, u64) {
    let Ok(mut map) = app.buckets.lock() else {
        return (true, 0, 0, 0);
    };
    let now = Instant::now();
    let b = map.entry(key_id).or_insert(Bucket {
        tokens: app.rate.burst,
        at: now,
    });
    let dt = now.duration_since(b.at).as_secs_f64();
    b.tokens = (b.tokens + dt * app.rate.rate).min(app.rate.burst);
    b.at = now;
    let allowed = b.tokens >= 1.0;
    if allowed {
        b.tokens -= 1.0;
    }
    let rate = app.rate.rate.max(1e-9);
    let reset = ((app.rate.burst - b.tokens) / rate).ceil() as u64;
    let next_in = ((1.0 - b.tokens).max(0.0) / rate).ceil() as u64;
    (allowed, b.tokens.floor() as u64, reset, next_in)
}

enum Claim {
    Execute,
    Replay(u16, String),
}

async fn claim(app: &App, key_id: i64, idem: &str, hash: &[u8; 32]) -> Result<Claim, ApiError> {
    let deadline = Instant::now() + app.idem_wait;
    loop {
        let c = app.svc.write_conn().await?;
        let now = app.svc.clock.now_ms();
        // Bounded: it commits, and its COMMIT can wait for a synchronous standby.
        let inserted = app.svc.bounded(&c.cut(), async {
            Ok(c.execute(&c.prepare_cached("INSERT INTO idempotency_keys (api_key_id, key, request_hash, status, created_ms)
                 VALUES ($1, $2, $3, 'in_progress', $4) ON CONFLICT DO NOTHING").await?,
                &[&key_id, &idem, &hash.as_slice(), &now],
            )
            .await?)
        }).await?;
        if inserted == 1 {
            return Ok(Claim::Execute);
        }
        let Some(row) = c
            .query_opt(&c.prepare_cached("SELECT request_hash, status, response_status, response_body FROM idempotency_keys
                 WHERE api_key_id = $1 AND key = $2").await?,
                &[&key_id, &idem],
            )
            .await?
        else {
            continue; // released meanwhile: try to claim again
        };
        let stored_hash: Vec<u8> = row.get(0);
        if stored_hash != hash.as_slice() {
            return Err(ApiError::new(
                422,
                "idempotency_key_reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request",
            )
            .with_parameter("Idempotency-Key"));
        }
        let status: String = row.get(1);
        if status == "done" {
            let s: Option<i32> = row.get(2);
            let b: Option<String> = row.get(3);
            if let (Some(s), Some(b)) = (s, b) {
                return Ok(Claim::Replay(u16::try_from(s).unwrap_or(500), b));
            }
        }
        drop(c);
        if Instant::now() > deadline {
            let mut e = ApiError::new(
                409,
                "idempotency_in_progress",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry",
            )
            .with_parameter("Idempotency-Key");
            e.retry_after = Some(1);
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finish_claim(app: &App, key_id: i64, idem: &str, reply: &Reply) {
    let Ok(c) = app.svc.write_conn().await else {
        return;
    };
    let res = app
        .svc
        .bounded(&c.cut(), async {
            let n = if reply.status >= 500 && reply.status != 502 {
                // Nothing was decided: let a retry execute again.
                let st = c
                    .prepare_cached(
                        "DELETE FROM idempotency_keys
                         WHERE api_key_id = $1 AND key = $2 AND status = 'in_progress'",
                    )
                    .await?;
                c.execute(&st, &[&key_id, &idem]).await?
            } else {
                let st = c
                    .prepare_cached(
                        "UPDATE idempotency_keys SET status = 'done', response_status = $3, response_body = $4
                         WHERE api_key_id = $1 AND key = $2 AND status = 'in_progress'",
                    )
                    .await?;
                c.execute(
                    &st,
                    &[
                        &key_id,
                        &idem,
                        &i32::from(reply.status),
                        &reply.body.to_string(),
                    ],
                )
                .await?
            };
            Ok(n)
        })
        .await;
    if let Err(e) = res {
        tracing::warn!(error = %e.detail, "cannot store the idempotent response");
    }
}

/// The methods a `/v1` resource takes (its `Allow` header), `None` for no such resource.
fn methods_of(segs: &[&str]) -> Option<&'static str> {
    match segs {
        ["orders"] => Some("GET, POST"),
        ["orders", _] | ["holds", _] => Some("GET"),
        ["holds"] | ["orders", _, "cancel"] | ["holds", _, "cancel"] => Some("POST"),
        _ => None,
    }
}

async fn dispatch(
    app: &Arc<App>,
    req: Request<Incoming>,
    method: Method,
    path: &str,
    key_id: i64,
    rid: &str,
    idem_header: Option<Result<String, hyper::header::ToStrError>>,
) -> Result<Resp, ApiError> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    let mut ctx = Ctx::new(key_id, rid);
    let Some(allow) = methods_of(&segs) else {
        return Err(ApiError::not_found("no such endpoint"));
    };
    if !allow.split(", ").any(|m| m == method.as_str()) {
        let mut e = ApiError::new(
            405,
            "method_not_allowed",
            "Method not allowed",
            format!("{path} takes {allow}, not {method}"),
        );
        e.allow = Some(allow);
        return Err(e);
    }
    if method == Method::GET {
        return match segs.as_slice() {
            ["orders"] => {
                let (limit, after) = list_params(req.uri().query())?;
                let r = app.svc.list_orders(&ctx, limit, after.as_deref()).await?;
                Ok(json_response(r.status, &r.body))
            }
            ["orders", id] => {
                let r = app.svc.get_order(&ctx, id).await?;
                Ok(json_response(r.status, &r.body))
            }
            ["holds", id] => {
                let r = app.svc.get_hold(&ctx, id).await?;
                Ok(json_response(r.status, &r.body))
            }
            _ => Err(ApiError::not_found("no such endpoint")),
        };
    }
    let body = read_body(req).await?;
    let idem = match idem_header {
        None => None,
        Some(Ok(k))
            if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            Some(k)
        }
        Some(_) => {
            return Err(ApiError::bad(
                "Idempotency-Key",
                "1-255 printable ASCII characters",
            ))
        }
    };
    let value = parse_json(&body)?;
    // Holds and orders claim their key inside their own deciding transaction (no commit of
    // its own); a cancellation claims it first, here.
    let claims_itself = matches!(segs.as_slice(), ["holds"] | ["orders"]);
    // Held until this request ends: recovery leaves a claim this request runs alone.
    let mut _running_claim = None;
    if let Some(k) = &idem {
        let mut h = Vec::with_capacity(body.len() + 64);
        h.extend_from_slice(b"POST ");
        h.extend_from_slice(path.as_bytes());
        h.push(0);
        h.extend_from_slice(value.to_string().as_bytes());
        let hash = sha256(&h);
        ctx.idempotency_key = Some(k.clone());
        ctx.request_hash = Some(hash);
        if !claims_itself {
            match claim(app, key_id, k, &hash).await? {
                Claim::Replay(status, body) => return Ok(replay(app, status, body)),
                Claim::Execute => {
                    _running_claim = Some(app.svc.live_claims.own((key_id, k.clone())));
                    ctx.claimed.store(true, Relaxed);
                }
            }
        }
    }
    // A request that lost its key to a concurrent or earlier one answers with that one's
    // stored response; rarely the other released its claim meanwhile: then run again.
    for _ in 0..4 {
        // A body that fails validation ran nothing, so, like one that is not JSON, its
        // answer is not stored under the key: the client may fix it and send it again with
        // the same key (as Stripe's Idempotency-Key does). Holds and orders have no claim yet.
        let result = match segs.as_slice() {
            ["holds"] => {
                app.svc
                    .create_hold(&ctx, validate::hold_request(&value)?)
                    .await
            }
            ["orders"] => {
                app.svc
                    .create_order(&ctx, validate::order_request(&value)?)
                    .await
            }
            ["orders", id, "cancel"] => app.svc.cancel_order(&ctx, id).await,
            ["holds", id, "cancel"] => app.svc.release_hold(&ctx, id).await,
            _ => Err(ApiError::not_found("no such endpoint")),
        };
        let (Some(k), Some(hash)) = (&ctx.idempotency_key, ctx.request_hash) else {
            let reply = result?;
            return Ok(json_response(reply.status, &reply.body));
        };
        let claimed = ctx.claimed.load(Relaxed);
        let reply = match result {
            Ok(r) => r,
            Err(e) if e.code == IDEMPOTENCY_CLAIMED => match claim(app, key_id, k, &hash).await? {
                Claim::Replay(status, body) => return Ok(replay(app, status, body)),
                Claim::Execute => {
                    release_claim(app, key_id, k).await;
                    continue;
                }
            },
            Err(e) if claimed => {
                finish_claim(app, key_id, k, &Reply::error(&e, rid)).await;
                return Err(e);
            }
            Err(e) => {
                // Nothing of this request committed. Store a final error (a retry gets
                // it again), unless the key is taken: then that request's answer counts.
                let transient = e.status >= 500 && e.status != 502;
                let free = if transient {
                    !key_exists(app, key_id, k).await?
                } else {
                    store_new(app, key_id, k, &hash, &Reply::error(&e, rid)).await?
                };
                if free {
                    return Err(e);
                }
                match claim(app, key_id, k, &hash).await? {
                    Claim::Replay(status, body) => return Ok(replay(app, status, body)),
                    Claim::Execute => {
                        release_claim(app, key_id, k).await;
                        continue;
                    }
                }
            }
        };
        if claimed && !reply.stored {
            finish_claim(app, key_id, k, &reply).await;
        }
        return Ok(json_response(reply.status, &reply.body));
    }
    Err(ApiError::new(
        409,
        "idempotency_in_progress",
        "Request in progress",
        "a request with this Idempotency-Key is still being processed; retry",
    )
    .with_parameter("Idempotency-Key"))
}

fn replay(app: &App, status: u16, body: String) -> Resp {
    app.svc.metrics.idempotent_replays.fetch_add(1, Relaxed);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}

/// Whether the key has a row (a request that failed transiently must not hide another's
/// stored answer).
async fn key_exists(app: &App, key_id: i64, idem: &str) -> Result<bool, ApiError> {
    let c = app.svc.pool.get().await?;
    let row = c
        .query_opt(
            &c.prepare_cached("SELECT 1 FROM idempotency_keys WHERE api_key_id = $1 AND key = $2")
                .await?,
            &[&key_id, &idem],
        )
        .await?;
    Ok(row.is_some())
}

/// Stores a final reply under a key nobody claimed; `false` when the key is taken (the
/// insert waits for a claim that is not committed yet).
async fn store_new(
    app: &App,
    key_id: i64,
    idem: &str,
    hash: &[u8; 32],
    reply: &Reply,
) -> Result<bool, ApiError> {
    let c = app.svc.write_conn().await?;
    let now = app.svc.clock.now_ms();
    let n = app
        .svc
        .bounded(&c.cut(), async {
            Ok(c.execute(
                &c.prepare_cached(
                    "INSERT INTO idempotency_keys (api_key_id, key, request_hash, status,
                                                   response_status, response_body, created_ms)
                     VALUES ($1, $2, $3, 'done', $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .await?,
                &[
                    &key_id,
                    &idem,
                    &hash.as_slice(),
                    &i32::from(reply.status),
                    &reply.body.to_string(),
                    &now,
                ],
            )
            .await?)
        })
        .await?;
    Ok(n == 1)
}

/// Gives up a claim taken by [`claim`] that will not be used.
async fn release_claim(app: &App, key_id: i64, idem: &str) {
    let res = async {
        let c = app.svc.write_conn().await?;
        app.svc
            .bounded(&c.cut(), async {
                let st = c
                    .prepare_cached(
                        "DELETE FROM idempotency_keys
                         WHERE api_key_id = $1 AND key = $2 AND status = 'in_progress'
                           AND order_id IS NULL",
                    )
                    .await?;
                Ok(c.execute(&st, &[&key_id, &idem]).await?)
            })
            .await
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e.detail, "cannot release an idempotency claim");
    }
}

fn list_params(query: Option<&str>) -> Result<(i64, Option<String>), ApiError> {
    let mut limit = 50i64;
    let mut after = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=200).contains(l))
                    .ok_or_else(|| ApiError::bad("limit", "an integer from 1 to 200"))?;
            }
            "after" => {
                if v.is_empty()
                    || v.len() > 64
                    || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(ApiError::bad("after", "not a cursor from a previous page"));
                }
                after = Some(v.to_string());
            }
            _ => {}
        }
    }
    Ok((limit, after))
}
