//! Invalidation latency: a seat booked or cancelled through a real `bookd` (embedded
//! PostgreSQL, `--quic-listen`) until every one of N in-process searchd subscribers shows
//! the new seat count in its overlay (over the snapshot built from `fixtures/data`).
//!
//! bookd's commit happens inside the request (and an order's response only comes after its
//! saga), so the commit instant is observed from outside: while each request runs, a
//! watcher queries bookd's PostgreSQL in a loop for the class's seats remaining, and the
//! first query that returns the new value marks `db_visible` (at most one query round
//! trip after the commit). Reported per change: `db_visible -> visible on every node`
//! (commit -> visible, understated by at most that round trip; negative when the nodes
//! were faster than the watcher) and `request -> visible on every node` (an upper bound that
//! includes the HTTP request and the booking transaction). The watcher competes for the
//! same 2 cores.
//!
//! `cargo build --release -p bookd -p benches && target/release/invalidation_latency --nodes 4`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use format::wire::LegKey;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use searchd::overlay::Overlay;
use searchd::subscriber::{self, LiveView, OverlayTarget, SubscriberConfig, SubscriberHandle};
use serde_json::{json, Value};
use tokio::sync::watch;

#[derive(Parser)]
#[command(about = "bookd commit -> searchd overlay latency over QUIC")]
struct Args {
    /// The bookd binary (default: next to this one).
    #[arg(long)]
    bookd: Option<PathBuf>,
    /// searchd nodes subscribed.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Seat changes measured (orders and cancellations alternate).
    #[arg(long, default_value_t = 400)]
    changes: usize,
}

const NOW: &str = "2005-06-01T00:00:00Z";

struct SnapView {
    snap: Arc<format::Snapshot>,
    overlay: Overlay,
}

impl LiveView for SnapView {
    fn generation(&self) -> u64 {
        1
    }
    fn resolve(&self, key: &LegKey) -> Option<u64> {
        subscriber::resolve_leg(&self.snap, key)
    }
    fn overlay(&self) -> &Overlay {
        &self.overlay
    }
}

struct SnapTarget(Arc<SnapView>);

impl OverlayTarget for SnapTarget {
    type View = SnapView;
    fn current(&self) -> Arc<SnapView> {
        self.0.clone()
    }
}

/// Kills (SIGTERM, then SIGKILL) the bookd child on the way out.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run_bookd(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("{}: cannot run", bin.display()))?;
    if !out.status.success() {
        bail!(
            "bookd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port(udp: bool) -> Result<u16> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    })
}

async fn post(
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!((1..=64).contains(&args.nodes), "--nodes: 1 to 64");
    anyhow::ensure!(
        (2..=100_000).contains(&args.changes),
        "--changes: 2 to 100000"
    );
    let bin = match args.bookd {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("no directory for this binary")?
            .join("bookd"),
    };
    anyhow::ensure!(bin.exists(), "--bookd {}: no such file", bin.display());
    let tmp = tempfile::tempdir()?;
    {
        use std::os::unix::fs::PermissionsExt;
        // The embedded cluster runs as an unprivileged user that must traverse it.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))?;
    }
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data");
    let snap_dir = tmp.path().join("snap");
    indexer::build::build(
        &indexer::build::BuildConfig {
            ssim: vec![fx.join("gna_iata_sample.ssim")],
            airports: fx.join("airports.csv"),
            metros: Some(fx.join("metro_areas.csv")),
            mct: Some(fx.join("small/mct.csv")),
            fares: Some(fx.join("small/fares.csv")),
            availability: Some(fx.join("small/availability.csv")),
            lenient: false,
            out: snap_dir.clone(),
        },
        &indexer::build::NoProgress,
    )?;
    let snap = Arc::new(format::Snapshot::open(&snap_dir)?);
    let cluster = tmp.path().join("cluster");
    let cluster_s = cluster.to_string_lossy().to_string();
    run_bookd(&bin, &["certs", "init", "--cluster-dir", &cluster_s])?;
    for i in 0..args.nodes {
        let name = format!("n{i}");
        run_bookd(
            &bin,
            &[
                "certs",
                "issue",
                "--cluster-dir",
                &cluster_s,
                "--name",
                &name,
            ],
        )?;
    }
    let state = tmp.path().join("state");
    let state_s = state.to_string_lossy().to_string();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port(false)?).parse()?;
    let quic: SocketAddr = format!("127.0.0.1:{}", free_port(true)?).parse()?;
    let log = std::fs::File::create(tmp.path().join("bookd.log"))?;
    let child = Command::new(&bin)
        .args([
            "--listen",
            &http.to_string(),
            "--quic-listen",
            &quic.to_string(),
        ])
        .args([
            "--cluster-dir",
            &cluster_s,
            "--state-dir",
            &state_s,
            "--now",
            NOW,
        ])
        .args(["--rate-limit", "1000000", "--rate-burst", "1000000"])
        // Orders name legs directly (`leg:` ids) to time the channel, not the search.
        .arg("--test-offer-ids")
        .arg("--snapshot")
        .arg(&snap_dir)
        .env("BOOKD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("spawn bookd")?;
    let mut guard = Guard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(http).await.is_err() {
        if let Some(c) = guard.0.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                guard.0 = None;
                bail!("bookd exited during start-up ({st}); see its log");
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "bookd did not start within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = run_bookd(
        &bin,
        &["keys", "create", "--name", "bench", "--state-dir", &state_s],
    )?;

    // Nodes.
    let (stop, stop_rx) = watch::channel(false);
    let mut nodes: Vec<(Arc<SnapTarget>, SubscriberHandle<SnapTarget>)> = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..args.nodes {
        let mut c = SubscriberConfig::new(quic.to_string(), &cluster, format!("n{i}"));
        c.backoff_max = Duration::from_millis(300);
        let target = Arc::new(SnapTarget(Arc::new(SnapView {
            snap: snap.clone(),
            overlay: Overlay::new(),
        })));
        let (h, t) = subscriber::spawn(c, target.clone(), stop_rx.clone())?;
        nodes.push((target, h));
        tasks.push(t);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|(_, h)| h.status().in_sync()) {
        anyhow::ensure!(Instant::now() < deadline, "nodes did not sync within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // One class of XX 102 RUN 2005-06-16 (Y, 9 seats): order one seat, cancel it, again.
    let (carrier, number, date, origin, class, capacity) =
        ("XX", 102u16, "2005-06-16", "RUN", "Y", 9u16);
    let lk = LegKey {
        carrier: format::model::carrier_code(carrier).context("carrier")?,
        flight_number: number,
        date: format::date::parse_iso(date).context("date")?,
        origin: *b"RUN",
        booking_class: b'Y',
    };
    let ok =
        subscriber::resolve_leg(&snap, &lk).context("the fixture leg is not in the snapshot")?;
    let passenger = json!([{"type": "adult", "given_name": "Ada", "family_name": "Lovelace",
                            "born_on": "1980-01-01"}]);
    // The class's price: a probe at a wrong price is refused with the price (nothing kept).
    let probe = json!({
        "offer_id": format!("leg:{carrier}:{number}:{date}:{origin}:{class}:1EUR:1"),
        "passengers": passenger,
        "contact": {"email": "ada@example.com"},
        "payment": {"type": "card", "token": "tok_ok"},
    });
    let (status, resp) = post(http, "/v1/orders", &key, Some(&probe)).await?;
    anyhow::ensure!(
        status == 409 && resp["errors"][0]["code"] == "price_changed",
        "price probe: {status} {resp}"
    );
    let p = &resp["errors"][0]["meta"]["price"];
    let price = format!(
        "{}{}",
        p["amount"]
            .as_str()
            .context("price amount")?
            .replace('.', "")
            .trim_start_matches('0'),
        p["currency"].as_str().context("price currency")?
    );
    let mut open: Option<String> = None;
    let (mut to_visible, mut after_db) = (Vec::new(), Vec::new());
    let layout = bookd::pg::Layout::new(&state)?;
    let (db, conn) = layout
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .context("connect to bookd's PostgreSQL")?;
    tokio::spawn(conn);
    let db = Arc::new(db);
    let seats_sql = "SELECT capacity - sold - held FROM inventory WHERE carrier = 'XX'
                     AND flight_number = 102 AND dep_date = '2005-06-16' AND origin = 'RUN'
                     AND booking_class = 'Y'";
    let started = Instant::now();
    for i in 0..args.changes {
        let (path, body, expect) = match &open {
            None => (
                "/v1/orders".to_string(),
                Some(json!({
                    "offer_id": format!("leg:{carrier}:{number}:{date}:{origin}:{class}:{price}:1"),
                    "passengers": passenger,
                    "contact": {"email": "ada@example.com"},
                    "payment": {"type": "card", "token": "tok_ok"},
                })),
                capacity - 1,
            ),
            Some(id) => (format!("/v1/orders/{id}/cancel"), None, capacity),
        };
        // Both observers run from before the request on blocking threads, polling with short
        // OS sleeps (so that they leave CPU to bookd and the nodes).
        let watcher = {
            let db = db.clone();
            let rt = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let v = rt
                        .block_on(db.query_opt(seats_sql, &[]))
                        .ok()
                        .map(|r| r.map_or(i32::from(capacity), |r| r.get::<_, i32>(0)));
                    if v == Some(i32::from(expect)) {
                        return Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                None
            })
        };
        let seen = {
            let targets: Vec<Arc<SnapTarget>> = nodes.iter().map(|(t, _)| t.clone()).collect();
            tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if targets
                        .iter()
                        .all(|t| t.current().overlay.seats(ok) == Some(expect))
                    {
                        return Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
                None
            })
        };
        let t0 = Instant::now();
        let (status, resp) = post(http, &path, &key, body.as_ref()).await?;
        anyhow::ensure!(status == 200 || status == 201, "{path}: {status} {resp}");
        open = match open {
            None => Some(resp["data"]["id"].as_str().context("order id")?.to_string()),
            Some(_) => None,
        };
        let t1 = seen
            .await?
            .with_context(|| format!("change {i} not visible on every node within 10 s"))?;
        let t_db = watcher
            .await?
            .context("the database never showed the change")?;
        to_visible.push((t1 - t0).as_secs_f64() * 1000.0);
        after_db.push(if t1 >= t_db {
            (t1 - t_db).as_secs_f64() * 1000.0
        } else {
            -((t_db - t1).as_secs_f64() * 1000.0)
        });
    }
    let elapsed = started.elapsed();
    to_visible.sort_by(f64::total_cmp);
    after_db.sort_by(f64::total_cmp);
    println!(
        "{} seat changes, {} nodes, {:.1} s ({} build)",
        to_visible.len(),
        args.nodes,
        elapsed.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for (name, v) in [
        ("db_visible -> visible on every node", &after_db),
        ("request -> visible on every node", &to_visible),
    ] {
        println!(
            "{name}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            percentile(v, 0.50),
            percentile(v, 0.99),
            percentile(v, 1.0)
        );
    }
    stop.send_replace(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    drop(guard);
    Ok(())
}
