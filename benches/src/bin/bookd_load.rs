//! Load generator for bookd (loopback only): N workers, each on one keep-alive HTTP/1.1
//! connection, create confirmed instant orders (`POST /v1/orders`, card `tok_ok`) and then
//! holds (`POST /v1/holds`), bounded by a count and a time per phase. Offers are real
//! searchd offer ids of direct flights found in-process on the same snapshot bookd serves.
//! Afterwards it checks the inventory on bookd's embedded cluster: no row with
//! sold + held > capacity, and the seats sold and held equal what the clients were told.
//!
//! ```text
//! bookd_load --addr 127.0.0.1:8081 --key KEY --snapshot /tmp/snap-global \
//!     --state-dir /tmp/bookd-bench/state --workers 32 --orders 20000 --holds 5000 --secs 60
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use benches::{now_utc_min, quantile, Workload};
use clap::Parser;
use format::Snapshot;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use searchd::engine::{self, Clock};
use searchd::overlay::Overlay;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// bookd's HTTP address (loopback only).
    #[arg(long)]
    addr: SocketAddr,
    /// API key (`bookd keys create`).
    #[arg(long)]
    key: String,
    /// The snapshot bookd serves (offers are searched in it).
    #[arg(long)]
    snapshot: PathBuf,
    /// bookd's --state-dir: the inventory is checked on its embedded cluster afterwards.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Concurrent workers (one connection each).
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Orders to attempt (phase 1).
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
    /// Holds to attempt (phase 2).
    #[arg(long, default_value_t = 5_000)]
    holds: usize,
    /// Time bound of each phase, seconds.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Hub airports whose direct markets supply offers.
    #[arg(long, default_value_t = 40)]
    hubs: usize,
    /// Send no Idempotency-Key header (by default every POST has a unique one, as a
    /// careful client would send).
    #[arg(long)]
    no_idempotency_key: bool,
    /// Departure days (from the workload date) searched for offers.
    #[arg(long, default_value_t = 14)]
    days: i32,
    /// Open loop for the orders phase: issue orders on a fixed schedule of R per second
    /// (instead of `--workers` closed-loop clients); latency is measured from each
    /// request's scheduled send time, so a stalled server is not hidden by a client that
    /// waits before sending (coordinated omission).
    #[arg(long)]
    order_rate: Option<f64>,
    /// Open loop for the holds phase: R holds per second on a fixed schedule.
    #[arg(long)]
    hold_rate: Option<f64>,
    /// Open loop: upper bound on connections (a request whose send time comes while all
    /// are busy opens a new one; at the bound it waits and the run reports it).
    #[arg(long, default_value_t = 4096)]
    max_conns: usize,
}

/// One bookable offer (a direct flight, 1 adult) and the seats its class shows.
struct Offer {
    id: String,
    seats: u64,
    /// Dated legs of the itinerary (a through flight has several): inventory rows an
    /// order of one passenger takes a seat on.
    legs: u64,
}

fn find_offers(args: &Args) -> Result<Vec<Offer>> {
    let snap = Snapshot::open(&args.snapshot)
        .with_context(|| format!("opening {}", args.snapshot.display()))?;
    engine::prepare(&snap);
    let w = Workload::new(&snap);
    let net = snap.network.get();
    let places = snap.places.get();
    let n = places.airports.len();
    let mut by_size: Vec<(usize, u16)> = (0..n)
        .map(|a| (net.segments_from(a as u16).len(), a as u16))
        .collect();
    by_size.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let code = |a: u16| String::from_utf8_lossy(&places.airports[a as usize].iata).into_owned();
    let overlay = Overlay::new();
    let clock = Clock {
        now_utc_min: now_utc_min(),
    };
    let d0 = format::date::parse_iso(&w.date).ok_or_else(|| anyhow!("bad date"))?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for &(_, a) in by_size.iter().take(args.hubs) {
        for m in net.markets_from(a) {
            let b = m.dest.to_native();
            for day in 0..args.days {
                let params = vec![
                    ("origin".to_string(), code(a)),
                    ("destination".to_string(), code(b)),
                    ("date".to_string(), format::date::format_iso(d0 + day)),
                    ("max_connections".to_string(), "0".to_string()),
                    ("limit".to_string(), "1000".to_string()),
                ];
                let Ok((data, _)) = engine::search(&snap, &overlay, clock, &params) else {
                    continue;
                };
                for it in data["itineraries"].as_array().into_iter().flatten() {
                    let seats = it["seats_available"].as_u64().unwrap_or(0);
                    let id = it["id"].as_str().unwrap_or_default().to_string();
                    let legs: u64 = it["slices"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|s| s["segments"].as_array().into_iter().flatten())
                        .map(|g| 1 + g["stops"].as_array().map_or(0, |a| a.len() as u64))
                        .sum();
                    if seats > 0 && !id.is_empty() && seen.insert(id.clone()) {
                        out.push(Offer { id, seats, legs });
                    }
                }
            }
        }
    }
    Ok(out)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn post(
    sender: &mut Sender,
    addr: SocketAddr,
    path: &str,
    key: &str,
    idem: Option<&str>,
    body: &Value,
) -> Result<(u16, Value)> {
    sender.ready().await?;
    let mut req = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, v))
}

fn body(offer: &str, order: bool, i: usize) -> Value {
    let mut b = json!({
        "offer_id": offer,
        "passengers": [{"type": "adult", "given_name": "Ada",
                        "family_name": format!("Bench-{}", ["a","b","c","d","e","f"][i % 6]),
                        "born_on": "1990-05-17"}],
        "contact": {"email": "bench@example.com"},
    });
    if order {
        b["payment"] = json!({"type": "card", "token": "tok_ok"});
    }
    b
}

#[derive(Default)]
struct Tally {
    /// Open loop: requests that could not be sent at their scheduled time because
    /// `--max-conns` connections were all busy (their latency still counts from the
    /// scheduled time).
    late_for_conn: AtomicU64,
    /// Open loop: connections opened.
    conns: AtomicU64,
    ok: AtomicU64,
    sold_out: AtomicU64,
    /// Open loop: latency from the moment the request was actually sent (for comparison
    /// with `lat_ns`, which counts from the scheduled time).
    sent_ns: Mutex<Vec<u64>>,
    /// Open loop: (second of the schedule the request was due in, latency from the due time).
    by_sec: Mutex<Vec<(u64, u64)>>,
    other: AtomicU64,
    seats: AtomicU64,
    lat_ns: Mutex<Vec<u64>>,
    errors: Mutex<Vec<String>>,
}

/// Counts one answer; `next_offer` moves the request's lane to its next offer (sold out,
/// price changed or expired).
fn classify(
    tally: &Tally,
    order: bool,
    offer: &Offer,
    status: u16,
    v: &Value,
    next_offer: impl Fn(),
) {
    let code = v["errors"][0]["code"].as_str().unwrap_or("");
    match status {
        201 if !order || v["data"]["status"] == "confirmed" => {
            tally.ok.fetch_add(1, Relaxed);
            tally.seats.fetch_add(offer.legs, Relaxed);
        }
        // Sold out at the offer's price: no seats left, or only in a dearer class.
        409 if code == "seats_unavailable" || code == "price_changed" => {
            tally.sold_out.fetch_add(1, Relaxed);
            next_offer();
        }
        _ => {
            tally.other.fetch_add(1, Relaxed);
            if let Ok(mut e) = tally.errors.lock() {
                if e.len() < 20 {
                    e.push(format!("{status} {v}"));
                }
            }
            // A price change or expired offer: move on too.
            if status == 409 || status == 410 {
                next_offer();
            }
        }
    }
}

/// Open-loop phase: request i is due at `start + i / rate`, for `total` requests or until
/// `--secs`. Each request runs in its own task on an idle connection, or a new one when all
/// are busy, so a slow answer never delays the next send; latency counts from the due
/// time. Request i books on lane `i % workers`, lanes advance through the offers like the
/// closed-loop workers do.
async fn open_phase(
    args: &Args,
    offers: Arc<Vec<Offer>>,
    cursors: Arc<Vec<AtomicUsize>>,
    order: bool,
    total: usize,
    rate: f64,
) -> Result<(Arc<Tally>, Duration)> {
    if !(rate.is_finite() && rate > 0.0) {
        bail!("the request rate must be a positive number, got {rate}");
    }
    let path = if order { "/v1/orders" } else { "/v1/holds" };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tally = Arc::new(Tally::default());
    let idle: Arc<Mutex<Vec<Sender>>> = Arc::new(Mutex::new(Vec::new()));
    let permits = Arc::new(tokio::sync::Semaphore::new(args.max_conns.max(1)));
    let lanes = cursors.len().max(1);
    let start = tokio::time::Instant::now();
    let secs = Duration::from_secs(args.secs);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due - start >= secs {
            break;
        }
        tokio::time::sleep_until(due).await;
        let lane = i % lanes;
        let c = cursors[lane].load(Relaxed);
        let Some(_) = offers.get(c * lanes + lane) else {
            println!("  offers exhausted after {i} requests");
            break;
        };
        let (offers, cursors, tally, idle, permits) = (
            offers.clone(),
            cursors.clone(),
            tally.clone(),
            idle.clone(),
            permits.clone(),
        );
        let (addr, key, no_idem) = (args.addr, args.key.clone(), args.no_idempotency_key);
        tasks.spawn(async move {
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    tally.late_for_conn.fetch_add(1, Relaxed);
                    permits.acquire_owned().await?
                }
            };
            // Skip idle connections the server has closed meanwhile (its keep-alive
            // timeout): sending on one fails with "channel closed" before any request
            // leaves, which is the client's fault, not an answer.
            let pooled = idle.lock().ok().and_then(|mut v| {
                while let Some(s) = v.pop() {
                    if !s.is_closed() {
                        return Some(s);
                    }
                }
                None
            });
            let mut sender = match pooled {
                Some(s) => s,
                None => {
                    tally.conns.fetch_add(1, Relaxed);
                    connect(addr).await?
                }
            };
            let offer = &offers[c * lanes + lane];
            let idem = format!("bench-{run}-{}-open-{i}", if order { "o" } else { "h" });
            let sent = Instant::now();
            let r = post(
                &mut sender,
                addr,
                path,
                &key,
                (!no_idem).then_some(idem.as_str()),
                &body(&offer.id, order, i),
            )
            .await;
            let now = tokio::time::Instant::now();
            match r {
                Ok((status, v)) => {
                    if let Ok(mut l) = tally.lat_ns.lock() {
                        l.push((now - due).as_nanos() as u64);
                    }
                    if let Ok(mut l) = tally.by_sec.lock() {
                        l.push(((due - start).as_secs(), (now - due).as_nanos() as u64));
                    }
                    if let Ok(mut l) = tally.sent_ns.lock() {
                        l.push(sent.elapsed().as_nanos() as u64);
                    }
                    classify(&tally, order, offer, status, &v, || {
                        // Only the first answer that finds offer `c` sold out moves the lane.
                        let _ = cursors[lane].compare_exchange(c, c + 1, Relaxed, Relaxed);
                    });
                    if let Ok(mut v) = idle.lock() {
                        v.push(sender);
                    }
                }
                Err(e) => {
                    tally.other.fetch_add(1, Relaxed);
                    if let Ok(mut v) = tally.errors.lock() {
                        if v.len() < 20 {
                            v.push(e.to_string());
                        }
                    }
                }
            }
            drop(permit);
            anyhow::Ok(())
        });
        // Reap finished tasks as we go so the set stays small.
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((tally, start.elapsed()))
}

/// One phase: `total` POSTs to `path` by `workers` connections, stops at `deadline`.
async fn phase(
    args: &Args,
    offers: Arc<Vec<Offer>>,
    cursors: Arc<Vec<AtomicUsize>>,
    order: bool,
    total: usize,
) -> Result<(Arc<Tally>, Duration)> {
    let path = if order { "/v1/orders" } else { "/v1/holds" };
    // Idempotency keys unique to this run (a rerun must not replay an earlier answer).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tally = Arc::new(Tally::default());
    let issued = Arc::new(AtomicUsize::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for wno in 0..args.workers {
        let (offers, cursors, tally, issued, exhausted) = (
            offers.clone(),
            cursors.clone(),
            tally.clone(),
            issued.clone(),
            exhausted.clone(),
        );
        let (addr, key, no_idem) = (args.addr, args.key.clone(), args.no_idempotency_key);
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut lat = Vec::new();
            loop {
                let i = issued.fetch_add(1, Relaxed);
                if i >= total || Instant::now() >= deadline || exhausted.load(Relaxed) {
                    break;
                }
                // Worker w books offers w, w + W, w + 2W, ... (W workers) in turn, moving to
                // its next one when the current one sells out: workers spread over distinct
                // flights, as independent customers would, instead of all queueing on one
                // inventory row.
                let cursor = &cursors[wno];
                let oi = cursor.load(Relaxed) * cursors.len() + wno;
                let Some(offer) = offers.get(oi) else {
                    exhausted.store(true, Relaxed);
                    break;
                };
                let offer: &Offer = offer;
                let idem = format!("bench-{run}-{}-{wno}-{i}", if order { "o" } else { "h" });
                let t = Instant::now();
                let (status, v) = match post(
                    &mut sender,
                    addr,
                    path,
                    &key,
                    (!no_idem).then_some(idem.as_str()),
                    &body(&offer.id, order, i),
                )
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        // A broken connection: count it, reconnect.
                        tally.other.fetch_add(1, Relaxed);
                        tally.errors.lock().map(|mut v| v.push(e.to_string())).ok();
                        sender = connect(addr).await?;
                        continue;
                    }
                };
                lat.push(t.elapsed().as_nanos() as u64);
                classify(&tally, order, offer, status, &v, || {
                    cursor.fetch_add(1, Relaxed);
                });
            }
            if let Ok(mut all) = tally.lat_ns.lock() {
                all.extend(lat);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((tally, start.elapsed()))
}

fn print_phase(name: &str, t: &Tally, took: Duration) -> (u64, u64) {
    let mut lat = t.lat_ns.lock().map(|v| v.clone()).unwrap_or_default();
    lat.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    let ok = t.ok.load(Relaxed);
    println!(
        "{name}: {ok} ok, {} sold out (409), {} other in {:.2} s = {:.0} ok/s, {:.0} requests/s; \
         latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        t.sold_out.load(Relaxed),
        t.other.load(Relaxed),
        took.as_secs_f64(),
        ok as f64 / took.as_secs_f64(),
        lat.len() as f64 / took.as_secs_f64(),
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.9)),
        ms(quantile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or(0)),
    );
    let mut sent = t.sent_ns.lock().map(|v| v.clone()).unwrap_or_default();
    if !sent.is_empty() {
        sent.sort_unstable();
        println!(
            "  open loop: {} connections opened, {} requests waited for a connection; \
             latency from the actual send ms p50 {:.2} p90 {:.2} p99 {:.2}",
            t.conns.load(Relaxed),
            t.late_for_conn.load(Relaxed),
            ms(quantile(&sent, 0.5)),
            ms(quantile(&sent, 0.9)),
            ms(quantile(&sent, 0.99)),
        );
    }
    let by_sec = t.by_sec.lock().map(|v| v.clone()).unwrap_or_default();
    if let Some(last) = by_sec.iter().map(|x| x.0).max() {
        // Where the tail comes from: p99 per 5-second window of the schedule.
        let mut line = String::from("  p50/p99 ms per 5 s of the schedule:");
        for w in 0..=last / 5 {
            let mut l: Vec<u64> = by_sec
                .iter()
                .filter(|x| x.0 / 5 == w)
                .map(|x| x.1)
                .collect();
            l.sort_unstable();
            line.push_str(&format!(
                " [{}-{} s] {:.1}/{:.1}",
                w * 5,
                w * 5 + 5,
                ms(quantile(&l, 0.5)),
                ms(quantile(&l, 0.99))
            ));
        }
        println!("{line}");
        // Stalls in detail (a cold start, a WAL segment being created): p99 / max per second.
        let mut line = String::from("  p99/max ms per 1 s:");
        for sec in 0..=last.min(119) {
            let mut l: Vec<u64> = by_sec.iter().filter(|x| x.0 == sec).map(|x| x.1).collect();
            l.sort_unstable();
            line.push_str(&format!(
                " [{sec}] {:.1}/{:.1}",
                ms(quantile(&l, 0.99)),
                ms(l.last().copied().unwrap_or(0))
            ));
        }
        println!("{line}");
    }
    if let Ok(e) = t.errors.lock() {
        for x in e.iter().take(5) {
            println!("  unexpected: {x}");
        }
    }
    (ok, t.seats.load(Relaxed))
}

/// CPU time of this process and of the whole machine, in clock ticks (`/proc`), to report
/// the load tool's share of the cores it shares with bookd and PostgreSQL.
#[derive(Clone, Copy)]
struct Cpu {
    own: u64,
    busy: u64,
    total: u64,
}

fn cpu_now() -> Option<Cpu> {
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = own.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some(Cpu {
        own,
        busy: total - idle,
        total,
    })
}

fn print_cpu(name: &str, a: Option<Cpu>, b: Option<Cpu>) {
    let (Some(a), Some(b)) = (a, b) else {
        return;
    };
    let (own, busy, total) = (b.own - a.own, b.busy - a.busy, (b.total - a.total).max(1));
    println!(
        "  {name} CPU: load tool {:.1} s ({:.0} % of all CPU time, {:.0} % of the busy time); \
         machine busy {:.0} %",
        own as f64 / 100.0,
        100.0 * own as f64 / total as f64,
        100.0 * own as f64 / busy.max(1) as f64,
        100.0 * busy as f64 / total as f64,
    );
}

async fn db(state: &std::path::Path) -> Result<tokio_postgres::Client> {
    let layout = bookd::pg::Layout::new(state).map_err(|e| anyhow!("{e}"))?;
    let (db, conn) = layout
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to bookd's embedded cluster")?;
    tokio::spawn(conn);
    Ok(db)
}

/// Seats sold and held over the whole inventory.
async fn totals(db: &tokio_postgres::Client) -> Result<(i64, i64)> {
    let r = db
        .query_one(
            "SELECT COALESCE(sum(sold), 0)::bigint, COALESCE(sum(held), 0)::bigint FROM inventory",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

async fn verify(
    db: &tokio_postgres::Client,
    before: (i64, i64),
    sold_seats: u64,
    held_seats: u64,
) -> Result<()> {
    let sc: String = db.query_one("SHOW synchronous_commit", &[]).await?.get(0);
    let fsync: String = db.query_one("SHOW fsync", &[]).await?.get(0);
    println!("cluster: synchronous_commit={sc} fsync={fsync}");
    let r = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE sold + held > capacity),
                    COALESCE(sum(sold), 0)::bigint, COALESCE(sum(held), 0)::bigint,
                    COALESCE(sum(capacity), 0)::bigint
             FROM inventory",
            &[],
        )
        .await?;
    let (rows, over, sold, held, cap): (i64, i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let confirmed: i64 = db
        .query_one(
            "SELECT count(*) FROM orders WHERE status = 'confirmed'",
            &[],
        )
        .await?
        .get(0);
    println!(
        "inventory: {rows} rows, capacity {cap}, sold {sold}, held {held}; oversold rows: {over}; \
         confirmed orders in the database: {confirmed}"
    );
    println!(
        "clients were told: {sold_seats} leg-seats sold (confirmed orders), {held_seats} leg-seats held"
    );
    if over != 0 {
        bail!("{over} inventory rows are oversold");
    }
    println!(
        "this run: sold +{}, held +{} (before: sold {}, held {})",
        sold - before.0,
        held - before.1,
        before.0,
        before.1
    );
    if (sold - before.0) as u64 != sold_seats || (held - before.1) as u64 != held_seats {
        bail!("the inventory does not match the answers the clients got");
    }
    println!("zero oversold seats; sold and held match the clients' confirmations");
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        bail!("--addr must be a loopback address");
    }
    let t = Instant::now();
    let offers = find_offers(&args)?;
    let seats: u64 = offers.iter().map(|o| o.seats).sum();
    println!(
        "{} direct offers with {seats} seats found in {:.1} s",
        offers.len(),
        t.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = match &args.state_dir {
            Some(state) => Some(db(state).await?),
            None => None,
        };
        let before = match &client {
            Some(c) => totals(c).await?,
            None => (0, 0),
        };
        let offers = Arc::new(offers);
        let cursors: Arc<Vec<AtomicUsize>> =
            Arc::new((0..args.workers).map(|_| AtomicUsize::new(0)).collect());
        let c0 = cpu_now();
        let (o, took) = match args.order_rate {
            Some(r) => {
                open_phase(&args, offers.clone(), cursors.clone(), true, args.orders, r).await?
            }
            None => phase(&args, offers.clone(), cursors.clone(), true, args.orders).await?,
        };
        let c1 = cpu_now();
        let name = match args.order_rate {
            Some(r) => format!("orders (POST /v1/orders, tok_ok), open loop at {r}/s"),
            None => format!(
                "orders (POST /v1/orders, tok_ok), {} closed-loop clients",
                args.workers
            ),
        };
        let (_, sold) = print_phase(&name, &o, took);
        print_cpu("orders", c0, c1);
        let (h, took) = match args.hold_rate {
            Some(r) => open_phase(&args, offers, cursors, false, args.holds, r).await?,
            None => phase(&args, offers, cursors, false, args.holds).await?,
        };
        let c2 = cpu_now();
        let name = match args.hold_rate {
            Some(r) => format!("holds (POST /v1/holds), open loop at {r}/s"),
            None => format!(
                "holds (POST /v1/holds), {} closed-loop clients",
                args.workers
            ),
        };
        let (_, held) = print_phase(&name, &h, took);
        print_cpu("holds", c1, c2);
        if let Some(c) = &client {
            verify(c, before, sold, held).await?;
        }
        anyhow::Ok(())
    })
}
