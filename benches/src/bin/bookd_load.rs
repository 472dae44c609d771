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
    ok: AtomicU64,
    sold_out: AtomicU64,
    other: AtomicU64,
    seats: AtomicU64,
    lat_ns: Mutex<Vec<u64>>,
    errors: Mutex<Vec<String>>,
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
                let code = v["errors"][0]["code"].as_str().unwrap_or("");
                match status {
                    201 if !order || v["data"]["status"] == "confirmed" => {
                        tally.ok.fetch_add(1, Relaxed);
                        tally.seats.fetch_add(offer.legs, Relaxed);
                    }
                    409 if code == "seats_unavailable" => {
                        tally.sold_out.fetch_add(1, Relaxed);
                        cursor.fetch_add(1, Relaxed);
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
                            cursor.fetch_add(1, Relaxed);
                        }
                    }
                }
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
        "{name}: {ok} ok, {} seats_unavailable, {} other in {:.2} s = {:.0} ok/s, {:.0} requests/s; \
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
    if let Ok(e) = t.errors.lock() {
        for x in e.iter().take(5) {
            println!("  unexpected: {x}");
        }
    }
    (ok, t.seats.load(Relaxed))
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
        let (o, took) = phase(&args, offers.clone(), cursors.clone(), true, args.orders).await?;
        let (_, sold) = print_phase("orders (POST /v1/orders, tok_ok)", &o, took);
        let (h, took) = phase(&args, offers, cursors, false, args.holds).await?;
        let (_, held) = print_phase("holds (POST /v1/holds)", &h, took);
        if let Some(c) = &client {
            verify(c, before, sold, held).await?;
        }
        anyhow::Ok(())
    })
}
