//! End to end with the real binaries: `bookd --quic-listen` (embedded PostgreSQL) and three
//! `searchd --bookd-quic` processes over the snapshot `indexer::build` compiles from
//! `fixtures/data`, with the cluster certificates from `bookd certs init/issue`.
//!
//! Offers are searchd's own offer ids (bookd runs its production `EngineOfferResolver`, not
//! `--test-offer-ids`). Every wait is bounded.
//!
//! The searchd binary: `target/<profile>/searchd`, next to this test's `deps/` directory
//! (or `SEARCHD_BIN`), and likewise `target/<profile>/indexer` (or `INDEXER_BIN`), which
//! publishes new snapshot generations at bookd's path. `cargo test --workspace` builds them;
//! with `cargo test -p bookd` build them first
//! (`cargo build -p searchd --bin searchd -p indexer --bin indexer`). A missing or stale
//! binary (older than its crate's or format's sources) fails the test with that advice; it
//! is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{bookd_cmd, cluster_tempdir, order_body, pg_available, try_http, Resp};
use serde_json::Value;
use tokio::sync::watch;

/// The fixture feeds' clock (bookd and searchd): fares' advance purchase rules hold for the
/// legs of 2005-06-16/17.
const NOW: &str = "2005-06-01T00:00:00Z";
const VISIBLE: Duration = Duration::from_secs(10);
const CONVERGE: Duration = Duration::from_secs(40);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds bookd")
        .to_path_buf()
}

fn fixtures() -> PathBuf {
    workspace().join("fixtures/data")
}

// ------------------------------------------------------------------ binaries

fn newest_mtime(dir: &Path, newest: &mut (SystemTime, PathBuf)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            newest_mtime(&p, newest);
        } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
            if m > newest.0 {
                *newest = (m, p);
            }
        }
    }
}

/// The searchd binary of this build; panics (never skips) when it is missing or stale.
fn searchd_bin() -> PathBuf {
    fresh_bin("searchd", "SEARCHD_BIN", &["searchd/src", "format/src"])
}

/// The indexer binary of this build (`INDEXER_BIN` to override); panics when missing or
/// stale.
fn indexer_bin() -> PathBuf {
    fresh_bin("indexer", "INDEXER_BIN", &["indexer/src", "format/src"])
}

/// `target/<profile>/NAME`, next to this test's `deps/` directory (or `$env`), checked to be
/// newer than every file under `sources`.
fn fresh_bin(name: &str, env: &str, sources: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env}={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/e2e_invalidation-HASH -> target/<profile>/NAME
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is under target/<profile>/deps");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let advice = format!(
        "build it with `cargo build -p {name} --bin {name}` (`cargo test --workspace` \
         builds it too), or point {env} at one"
    );
    let built = match std::fs::metadata(&bin).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(e) => panic!(
            "the {name} binary {} is missing ({e}): {advice}",
            bin.display()
        ),
    };
    let ws = workspace();
    let mut newest = (SystemTime::UNIX_EPOCH, PathBuf::new());
    for d in sources {
        newest_mtime(&ws.join(d), &mut newest);
    }
    assert!(
        newest.0 <= built,
        "the {name} binary {} is older than {}: {advice}",
        bin.display(),
        newest.1.display()
    );
    bin
}

/// The snapshot compiled by the real indexer from the fixture feeds.
fn fixture_snapshot(tmp: &Path) -> PathBuf {
    let d = fixtures();
    let cfg = indexer::build::BuildConfig {
        ssim: vec![d.join("gna_iata_sample.ssim")],
        airports: d.join("airports.csv"),
        metros: Some(d.join("metro_areas.csv")),
        mct: Some(d.join("small/mct.csv")),
        fares: Some(d.join("small/fares.csv")),
        availability: Some(d.join("small/availability.csv")),
        lenient: false,
        out: tmp.join("snap"),
    };
    indexer::build::build(&cfg, &indexer::build::NoProgress).expect("indexer build");
    cfg.out
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("udp port")
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("tcp port")
            .port()
    }
}

/// Waits (bounded) for a JSON log line whose message is `message`; its `addr` field.
fn wait_log_addr(
    log: &Path,
    message: &str,
    child: &mut Child,
    flattened: bool,
) -> Option<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let needle = format!("\"{message}\"");
    loop {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(log) {
            let _ = f.read_to_string(&mut text);
        }
        if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
            let v: Value = serde_json::from_str(line).expect("a JSON log line");
            let addr = if flattened {
                &v["addr"]
            } else {
                &v["fields"]["addr"]
            };
            return addr.as_str().and_then(|a| a.parse().ok());
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{} exited during start-up ({st}): {text}", log.display());
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} line in {}: {text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------ bookd

struct Bookd {
    tmp: PathBuf,
    snapshot: PathBuf,
    state: PathBuf,
    cluster: PathBuf,
    listen: SocketAddr,
    quic: SocketAddr,
    child: Option<Child>,
    starts: u32,
}

impl Bookd {
    fn start(&mut self) {
        self.starts += 1;
        let log = self.tmp.join(format!("bookd-{}.log", self.starts));
        let file = std::fs::File::create(&log).expect("log");
        let mut child = Command::new(common::bin())
            .args(["--listen", &self.listen.to_string(), "--now", NOW])
            .args(["--quic-listen", &self.quic.to_string()])
            .arg("--cluster-dir")
            .arg(&self.cluster)
            .arg("--snapshot")
            .arg(&self.snapshot)
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--rate-limit", "100000", "--rate-burst", "100000"])
            .args(["--sweep-interval-ms", "100"])
            .env_remove("BOOKD_FAILPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn bookd");
        wait_log_addr(&log, "listening", &mut child, false);
        let quic = wait_log_addr(&log, "quic listening", &mut child, false);
        assert_eq!(quic, Some(self.quic), "bookd's QUIC address");
        self.child = Some(child);
    }

    /// SIGTERM and wait: a graceful stop (it stops its PostgreSQL cluster too).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    assert!(st.success(), "bookd exit status {st}");
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("bookd did not stop within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    async fn db(&self) -> tokio_postgres::Client {
        let layout = bookd::pg::Layout::new(&self.state).expect("layout");
        let (client, conn) = layout
            .pg_config()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to bookd's cluster");
        tokio::spawn(conn);
        client
    }

    /// bookd's inventory (leg class -> seats remaining) and outbox head, read together.
    async fn inventory(&self) -> (BTreeMap<LegClass, i32>, u64) {
        let mut db = self.db().await;
        let tx = db
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .expect("tx");
        let head: i64 = tx
            .query_one("SELECT seq FROM outbox_head", &[])
            .await
            .expect("head")
            .get(0);
        let rows = tx
            .query(
                "SELECT carrier, flight_number, dep_date::text, origin, booking_class,
                        capacity - sold - held FROM inventory",
                &[],
            )
            .await
            .expect("inventory");
        tx.commit().await.expect("commit");
        let inv = rows
            .iter()
            .map(|r| {
                let k = LegClass {
                    carrier: r.get::<_, String>(0).trim().to_string(),
                    number: r.get::<_, i32>(1).to_string(),
                    date: r.get(2),
                    origin: r.get(3),
                    class: r.get(4),
                };
                (k, r.get::<_, i32>(5))
            })
            .collect();
        (inv, u64::try_from(head).expect("head >= 0"))
    }
}

impl Drop for Bookd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // A crashed bookd leaves its cluster running: stop it.
        if let Some(pid) = bookd::pg::running_postmaster(&self.state.join("pgdata")) {
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
    }
}

// ------------------------------------------------------------------ searchd

struct Searchd {
    name: String,
    bin: PathBuf,
    tmp: PathBuf,
    args: Vec<String>,
    addr: SocketAddr,
    child: Option<Child>,
    starts: u32,
}

impl Searchd {
    fn new(bin: &Path, tmp: &Path, snapshot: &Path, b: &Bookd, name: &str) -> Searchd {
        let mut s = Searchd {
            name: name.to_string(),
            bin: bin.to_path_buf(),
            tmp: tmp.to_path_buf(),
            args: vec![
                "--snapshot".into(),
                snapshot.display().to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--now".into(),
                NOW.into(),
                "--bookd-quic".into(),
                b.quic.to_string(),
                "--cluster-dir".into(),
                b.cluster.display().to_string(),
                "--name".into(),
                name.into(),
            ],
            addr: "127.0.0.1:0".parse().expect("addr"),
            child: None,
            starts: 0,
        };
        s.start();
        s
    }

    fn start(&mut self) {
        self.starts += 1;
        let log = self
            .tmp
            .join(format!("searchd-{}-{}.log", self.name, self.starts));
        let file = std::fs::File::create(&log).expect("log");
        let mut child = Command::new(&self.bin)
            .args(&self.args)
            .env("SEARCHD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn searchd");
        self.addr = wait_log_addr(&log, "listening", &mut child, true).expect("searchd's address");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn get(&self, target: &str) -> Option<Resp> {
        try_http(self.addr, "GET", target, &[], None).await
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let r = self.get("/readyz").await;
            match &r {
                Some(r) if r.status == 200 => {
                    assert_eq!(r.body["data"]["invalidations"]["in_sync"], true, "{r:?}");
                    return;
                }
                Some(r) => assert_eq!(r.status, 503, "{}: /readyz {r:?}", self.name),
                None => {}
            }
            assert!(
                Instant::now() < deadline,
                "{}: not ready within {CONVERGE:?}: {r:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `searchd_invalidation_last_applied_seq` from `/metrics`.
    async fn last_applied(&self) -> Option<u64> {
        let r = self.get("/metrics").await?;
        if r.status != 200 {
            return None;
        }
        let text = r.body.as_str()?.to_string();
        text.lines()
            .find_map(|l| l.strip_prefix("searchd_invalidation_last_applied_seq "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The itinerary flying `flight` (e.g. `XX102`) in a direct search, if any.
    async fn find(&self, q: &Query, flight: &str, adults: u32) -> Option<Value> {
        let target = format!(
            "/v1/search?origin={}&destination={}&date={}&max_connections=0&adults={adults}&limit=1000",
            q.origin, q.destination, q.date
        );
        let r = self.get(&target).await.expect("searchd answers");
        assert_eq!(r.status, 200, "{}: {target}: {:?}", self.name, r.body);
        r.body["data"]["itineraries"]
            .as_array()
            .expect("itineraries")
            .iter()
            .find(|it| flight_of(it).as_deref() == Some(flight))
            .cloned()
    }
}

impl Drop for Searchd {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ------------------------------------------------------------------ offers

#[derive(Debug, Clone)]
struct Query {
    origin: &'static str,
    destination: &'static str,
    date: &'static str,
}

/// A dated leg in a booking class, as bookd's inventory names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LegClass {
    carrier: String,
    number: String,
    date: String,
    origin: String,
    class: String,
}

/// A direct one-leg itinerary found at the start, with its cheapest class then.
#[derive(Debug, Clone)]
struct Offer {
    query: Query,
    flight: String,
    leg: LegClass,
    /// Offer id for one adult.
    id: String,
    seats: i64,
}

/// `XX102` for a one-segment itinerary without intermediate stops.
fn flight_of(it: &Value) -> Option<String> {
    let slices = it["slices"].as_array()?;
    let [slice] = slices.as_slice() else {
        return None;
    };
    let segs = slice["segments"].as_array()?;
    let [seg] = segs.as_slice() else {
        return None;
    };
    if !seg["stops"].as_array().is_some_and(|s| s.is_empty()) {
        return None;
    }
    Some(format!(
        "{}{}",
        seg["carrier"].as_str()?,
        seg["flight_number"].as_str()?
    ))
}

fn class_of(it: &Value) -> Option<String> {
    it["fares"][0]["booking_class"].as_str().map(str::to_string)
}

/// The direct one-leg markets of the fixture feeds on 2005-06-16/17 (through-flight
/// segments left out, so each leg is booked in one class only).
const QUERIES: [(&str, &str, &str); 9] = [
    ("RUN", "MRU", "2005-06-16"),
    ("RUN", "MRU", "2005-06-17"),
    ("RUN", "CDG", "2005-06-16"),
    ("RUN", "CDG", "2005-06-17"),
    ("RUN", "DZA", "2005-06-16"),
    ("MRU", "RUN", "2005-06-16"),
    ("CDG", "RUN", "2005-06-16"),
    ("DZA", "RUN", "2005-06-16"),
    ("DZA", "RUN", "2005-06-17"),
];

async fn offers(node: &Searchd) -> Vec<Offer> {
    let mut out = Vec::new();
    for (o, d, date) in QUERIES {
        let q = Query {
            origin: o,
            destination: d,
            date,
        };
        let target = format!(
            "/v1/search?origin={o}&destination={d}&date={date}&max_connections=0&limit=1000"
        );
        let r = node.get(&target).await.expect("searchd answers");
        assert_eq!(r.status, 200, "{target}: {:?}", r.body);
        for it in r.body["data"]["itineraries"].as_array().expect("array") {
            let (Some(flight), Some(class)) = (flight_of(it), class_of(it)) else {
                continue;
            };
            let seg = &it["slices"][0]["segments"][0];
            out.push(Offer {
                query: q.clone(),
                leg: LegClass {
                    carrier: seg["carrier"].as_str().expect("carrier").to_string(),
                    number: seg["flight_number"].as_str().expect("number").to_string(),
                    date: date.to_string(),
                    origin: o.to_string(),
                    class,
                },
                flight,
                id: it["id"].as_str().expect("offer id").to_string(),
                seats: it["seats_available"].as_i64().expect("seats"),
            });
        }
    }
    out
}

// ------------------------------------------------------------------ bookings

struct Client {
    addr: SocketAddr,
    key: String,
}

impl Client {
    fn auth(&self) -> Vec<(String, String)> {
        vec![("authorization".into(), format!("Bearer {}", self.key))]
    }

    /// An instant order; `Ok(order id)`, `Err(status)` when refused, `Err(0)` when bookd
    /// is unreachable.
    async fn order(&self, offer_id: &str, adults: usize) -> Result<String, u16> {
        let body = order_body(offer_id, adults, "tok_ok").to_string();
        match try_http(
            self.addr,
            "POST",
            "/v1/orders",
            &self.auth(),
            Some(body.into_bytes()),
        )
        .await
        {
            Some(r) if r.status == 201 => {
                Ok(r.body["data"]["id"].as_str().expect("order id").to_string())
            }
            Some(r) if r.status == 409 || r.status >= 500 => Err(r.status),
            Some(r) => panic!("order {offer_id}: {} {}", r.status, r.body),
            None => Err(0),
        }
    }

    async fn cancel(&self, order_id: &str) -> bool {
        let path = format!("/v1/orders/{order_id}/cancel");
        matches!(
            try_http(self.addr, "POST", &path, &self.auth(), None).await,
            Some(r) if r.status == 200
        )
    }
}

/// Polls every node until `pred` holds for its itinerary on `offer`'s flight; returns how
/// long each took.
async fn until_every_node<F>(
    nodes: &[Searchd],
    offer: &Offer,
    adults: u32,
    what: &str,
    pred: F,
) -> Vec<Duration>
where
    F: Fn(Option<&Value>) -> bool,
{
    let started = Instant::now();
    let mut took = Vec::new();
    for n in nodes {
        loop {
            let it = n.find(&offer.query, &offer.flight, adults).await;
            if pred(it.as_ref()) {
                took.push(started.elapsed());
                break;
            }
            assert!(
                started.elapsed() < VISIBLE,
                "{}: {what} not visible within {VISIBLE:?}: {it:?}",
                n.name
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_through_bookd_reaches_three_searchd_processes() {
    let searchd = searchd_bin();
    if !pg_available() {
        return;
    }
    let tmp = cluster_tempdir();
    let snapshot = fixture_snapshot(tmp.path());
    let cluster = tmp.path().join("cluster");
    let c = cluster.to_str().expect("utf8 path");
    bookd_cmd(&["certs", "init", "--cluster-dir", c]);
    for n in ["n1", "n2", "n3"] {
        bookd_cmd(&["certs", "issue", "--cluster-dir", c, "--name", n]);
    }
    let mut b = Bookd {
        tmp: tmp.path().to_path_buf(),
        snapshot: snapshot.clone(),
        state: tmp.path().join("state"),
        cluster: cluster.clone(),
        listen: format!("127.0.0.1:{}", free_port(false))
            .parse()
            .expect("addr"),
        quic: format!("127.0.0.1:{}", free_port(true))
            .parse()
            .expect("addr"),
        child: None,
        starts: 0,
    };
    // A node started before bookd serves, but is not ready: its seats may be stale.
    let early = Searchd::new(&searchd, tmp.path(), &snapshot, &b, "n1");
    let r = early.get("/readyz").await.expect("readyz");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body["errors"][0]["code"], "invalidations_not_in_sync");
    assert!(
        r.body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&b.quic.to_string())),
        "the reason names bookd: {r:?}"
    );
    assert_eq!(r.body["meta"]["invalidations"]["in_sync"], false);
    assert!(r.headers.contains_key("retry-after"));
    let r = early
        .get("/v1/search?origin=RUN&destination=MRU&date=2005-06-16")
        .await
        .expect("search");
    assert_eq!(r.status, 200, "searches are answered meanwhile");

    b.start();
    let state = b.state.to_str().expect("utf8 path").to_string();
    let client = Client {
        addr: b.listen,
        key: bookd_cmd(&["keys", "create", "--name", "e2e", "--state-dir", &state])
            .trim()
            .to_string(),
    };
    let mut nodes = vec![early];
    for n in ["n2", "n3"] {
        nodes.push(Searchd::new(&searchd, tmp.path(), &snapshot, &b, n));
    }
    for n in &nodes {
        n.wait_ready().await;
    }

    // ---- The last seats of a class: the cheapest direct offer with few seats.
    let all = offers(&nodes[0]).await;
    assert!(all.len() >= 8, "direct offers in the fixtures: {all:?}");
    let small = all
        .iter()
        .filter(|o| (2..=5).contains(&o.seats))
        .min_by_key(|o| (o.query.date, o.flight.clone()))
        .expect("a class with 2 to 5 seats")
        .clone();
    eprintln!(
        "selling the last {} seats of {:?} ({})",
        small.seats, small.leg, small.flight
    );
    // The same itinerary for the whole party of `seats` adults.
    let party = u32::try_from(small.seats).expect("seats");
    let it = nodes[0]
        .find(&small.query, &small.flight, party)
        .await
        .expect("offered to the whole party");
    assert_eq!(class_of(&it), Some(small.leg.class.clone()));
    let offer_id = it["id"].as_str().expect("id").to_string();
    let before = it["price"].clone();
    let ordered = Instant::now();
    let order = client
        .order(&offer_id, party as usize)
        .await
        .expect("the order is confirmed");
    let booked = ordered.elapsed();
    let gone = until_every_node(&nodes, &small, 1, "sold out", |it| match it {
        None => true,
        Some(it) => class_of(it).as_deref() != Some(small.leg.class.as_str()),
    })
    .await;
    eprintln!("order took {booked:?}; the class left every node {gone:?} after its response");
    for n in &nodes {
        if let Some(it) = n.find(&small.query, &small.flight, 1).await {
            eprintln!(
                "{}: now {:?} at {} ({} seats)",
                n.name,
                class_of(&it),
                it["price"],
                it["seats_available"]
            );
            assert_ne!(it["price"], Value::Null);
        }
    }
    let (inv, _) = b.inventory().await;
    assert_eq!(inv.get(&small.leg), Some(&0), "bookd sold it out: {inv:?}");
    // bookd refuses one more seat.
    assert_eq!(client.order(&small.id, 1).await, Err(409));

    // ---- Cancel: offered again, with every seat, on every node.
    assert!(client.cancel(&order).await, "cancel");
    let back = until_every_node(&nodes, &small, party, "back on sale", |it| {
        it.is_some_and(|it| {
            class_of(it).as_deref() == Some(small.leg.class.as_str())
                && it["seats_available"].as_i64() == Some(small.seats)
        })
    })
    .await;
    eprintln!("cancelled: the class is back on every node after {back:?}");
    let again = nodes[1]
        .find(&small.query, &small.flight, party)
        .await
        .expect("offered");
    assert_eq!(again["price"], before, "the same price as before the sale");

    // ---- A burst of orders and cancellations over every direct offer, with a searchd
    // killed (-9) and restarted and bookd restarted in the middle of it.
    let (done_tx, done_rx) = watch::channel(false);
    let burst_offers = all.clone();
    let burst_client = Client {
        addr: client.addr,
        key: client.key.clone(),
    };
    let burst = tokio::spawn(async move {
        let mut mine: Vec<String> = Vec::new();
        let (mut ok, mut cancelled) = (0u32, 0u32);
        for i in 0..2000usize {
            if *done_rx.borrow() {
                break;
            }
            if i % 4 == 3 && !mine.is_empty() {
                let id = mine.swap_remove(i % mine.len());
                if burst_client.cancel(&id).await {
                    cancelled += 1;
                } else {
                    mine.push(id);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
            let o = &burst_offers[(i * 7) % burst_offers.len()];
            match burst_client.order(&o.id, 1).await {
                Ok(id) => {
                    ok += 1;
                    mine.push(id);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        (ok, cancelled)
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    nodes[1].kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[1].start();
    tokio::time::sleep(Duration::from_millis(800)).await;
    b.stop();
    b.start();
    tokio::time::sleep(Duration::from_millis(800)).await;
    done_tx.send_replace(true);
    let (ok, cancelled) = tokio::time::timeout(Duration::from_secs(60), burst)
        .await
        .expect("the burst ends")
        .expect("burst task");
    eprintln!("burst: {ok} orders, {cancelled} cancellations; searchd n2 killed, bookd restarted");
    assert!(ok > 0, "the burst booked something");

    // ---- Every node's last applied seq reaches bookd's outbox head...
    let started = Instant::now();
    let (inv, head) = loop {
        let (inv, head) = b.inventory().await;
        let mut seqs = Vec::new();
        for n in &nodes {
            seqs.push(n.last_applied().await);
        }
        if seqs.iter().all(|s| *s == Some(head)) {
            eprintln!(
                "every node applied bookd's outbox head {head} after {:?}",
                started.elapsed()
            );
            break (inv, head);
        }
        assert!(
            started.elapsed() < CONVERGE,
            "nodes' last applied seqs {seqs:?}, bookd's outbox head {head}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(head > 0);
    // ... and searches agree with bookd's inventory on every touched leg: the class an
    // offer was made in (the cheapest one with seats at the start) is offered with bookd's
    // seats while it has any, and not at all when it has none.
    let mut touched = 0;
    for o in &all {
        let Some(&left) = inv.get(&o.leg) else {
            continue;
        };
        touched += 1;
        for n in &nodes {
            let it = n.find(&o.query, &o.flight, 1).await;
            let class = it.as_ref().and_then(class_of);
            if left > 0 {
                let it = it.expect("offered while bookd has seats");
                assert_eq!(
                    class.as_deref(),
                    Some(o.leg.class.as_str()),
                    "{}: {o:?}",
                    n.name
                );
                assert_eq!(
                    it["seats_available"].as_i64(),
                    Some(i64::from(left)),
                    "{}: {:?} has {left} seats in bookd",
                    n.name,
                    o.leg
                );
            } else {
                assert_ne!(
                    class.as_deref(),
                    Some(o.leg.class.as_str()),
                    "{}: {:?} is sold out in bookd",
                    n.name,
                    o.leg
                );
            }
        }
    }
    assert!(touched >= 3, "the burst touched {touched} legs");
    eprintln!("searches on 3 nodes agree with bookd on {touched} touched leg classes");
    for n in &nodes {
        let r = n.get("/readyz").await.expect("readyz");
        assert_eq!(r.status, 200, "{}: {:?}", n.name, r.body);
    }
    let r = nodes[0].get("/metrics").await.expect("metrics");
    let text = r.body.as_str().unwrap_or_default();
    for m in [
        "searchd_invalidation_lag_seq",
        "searchd_invalidation_reconnects_total",
        "searchd_invalidation_frames_refused_total 0",
    ] {
        assert!(text.contains(m), "{m} in /metrics: {text}");
    }
    drop(nodes);
    b.stop();
}

/// bookd announces a snapshot (`SnapshotPublished`, from an in-process publisher here; the
/// bookd binary's own announcements are tested by
/// `a_snapshot_published_at_bookds_path_is_announced_to_every_node`): the searchd process
/// loads it, and the seats
/// bookd sold stay sold through the swap (the new snapshot's overlay is filled before it
/// serves), checked by searches running all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_snapshot_is_loaded_without_resurrecting_sold_seats() {
    let searchd = searchd_bin();
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshot = fixture_snapshot(tmp.path());
    let cluster = tmp.path().join("cluster");
    bookd::certs::init(&cluster).expect("certs init");
    bookd::certs::issue(&cluster, "n1").expect("certs issue");
    // XX 102 RUN->MRU on 2005-06-16: class M (the cheapest with seats) sold out in bookd.
    let sold = format::wire::LegKey {
        carrier: *b"XX ",
        flight_number: 102,
        date: format::date::days_from_civil(2005, 6, 16),
        origin: *b"RUN",
        booking_class: b'M',
    };
    let feed = std::sync::Arc::new(bookd::quic::MemoryFeed::new(1_000));
    feed.set(sold, 0);
    let publisher = bookd::quic::Publisher::start(
        bookd::quic::PublisherConfig::new("127.0.0.1:0".parse().expect("addr"), cluster.clone()),
        feed.clone(),
    )
    .await
    .expect("publisher starts");
    let quic = publisher.local_addr().expect("publisher address");
    let b = Bookd {
        tmp: tmp.path().to_path_buf(),
        snapshot: snapshot.clone(),
        state: tmp.path().join("unused-state"),
        cluster,
        listen: "127.0.0.1:9".parse().expect("addr"),
        quic,
        child: None,
        starts: 0,
    };
    let node = Searchd::new(&searchd, tmp.path(), &snapshot, &b, "n1");
    node.wait_ready().await;
    let q = Query {
        origin: "RUN",
        destination: "MRU",
        date: "2005-06-16",
    };
    let class = |it: Option<Value>| it.as_ref().and_then(class_of);
    assert_eq!(
        class(node.find(&q, "XX102", 1).await).as_deref(),
        Some("Y"),
        "M is sold out: the next class"
    );

    // A new generation of the snapshot (its own availability still has M seats), announced.
    let first_id = format::Snapshot::open(&snapshot)
        .expect("snapshot")
        .manifest
        .snapshot_id
        .clone();
    fixture_snapshot(tmp.path());
    let second_id = format::Snapshot::open(&snapshot)
        .expect("snapshot")
        .manifest
        .snapshot_id
        .clone();
    publisher.publish_snapshot(&second_id);
    let started = Instant::now();
    let mut searches = 0u32;
    loop {
        assert_eq!(
            class(node.find(&q, "XX102", 1).await).as_deref(),
            Some("Y"),
            "sold seats stay sold through the swap (search {searches})"
        );
        searches += 1;
        let r = node.get("/readyz").await.expect("readyz");
        if r.status == 200 && r.body["data"]["generation"] == 2 {
            // Which reload loaded it: "bookd" (the announcement) or "watch" (the link poll).
            let log =
                std::fs::read_to_string(tmp.path().join("searchd-n1-1.log")).unwrap_or_default();
            let trigger = log
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["message"] == "snapshot swapped in")
                .map(|v| v["trigger"].clone());
            eprintln!(
                "snapshot {first_id} -> {} after {:?} ({searches} searches meanwhile), trigger {trigger:?}",
                r.body["data"]["snapshot_id"],
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the announced snapshot was not loaded: {r:?}"
        );
    }
    // And the new snapshot keeps following bookd.
    feed.set(sold, 2);
    let started = Instant::now();
    loop {
        let it = node.find(&q, "XX102", 1).await;
        if class(it.clone()).as_deref() == Some("M") {
            assert_eq!(it.expect("offered")["seats_available"], 2);
            break;
        }
        assert!(started.elapsed() < VISIBLE, "M is back on sale: {it:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(node);
    publisher.shutdown().await;
}

// ------------------------------------------------------------------ snapshot publication

/// `indexer build` (the real binary) of the fixture feeds with `availability`, published
/// at `out`.
fn indexer_build(indexer: &Path, out: &Path, availability: &Path) {
    let d = fixtures();
    let output = Command::new(indexer)
        .arg("build")
        .arg("--ssim")
        .arg(d.join("gna_iata_sample.ssim"))
        .arg("--airports")
        .arg(d.join("airports.csv"))
        .arg("--metros")
        .arg(d.join("metro_areas.csv"))
        .arg("--mct")
        .arg(d.join("small/mct.csv"))
        .arg("--fares")
        .arg(d.join("small/fares.csv"))
        .arg("--availability")
        .arg(availability)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run the indexer");
    assert!(
        output.status.success(),
        "indexer build --out {}: {}",
        out.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn snapshot_id(path: &Path) -> String {
    format::Snapshot::open(path)
        .expect("a sound snapshot")
        .manifest
        .snapshot_id
}

/// Waits (bounded) for a JSON log line with this message (and, if given, this field
/// value); returns the line.
fn wait_log_line(log: &Path, message: &str, field: Option<(&str, &str)>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v["fields"]["message"] == message
                    && field.is_none_or(|(k, want)| v["fields"][k] == want)
            });
        if let Some(v) = found {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} ({field:?}) in {}: {text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Searchd {
    /// One sample from `/metrics`.
    async fn metric(&self, name: &str) -> Option<u64> {
        let r = self.get("/metrics").await?;
        let text = r.body.as_str()?.to_string();
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }
}

/// The indexer publishes a new generation at bookd's `--snapshot` path: bookd opens and
/// checks it, swaps its own copy (offers and capacities) and announces it to every node
/// (`SnapshotPublished`), and each of 3 searchd processes loads it. Seats bookd sold stay
/// sold, and a leg class that only the new snapshot has seats for is sold by bookd from the
/// new snapshot's capacity. A broken generation at the path is refused and never
/// announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_published_at_bookds_path_is_announced_to_every_node() {
    let searchd = searchd_bin();
    let indexer = indexer_bin();
    if !pg_available() {
        return;
    }
    let tmp = cluster_tempdir();
    // Generation 1: XX 103 MRU->RUN on 2005-06-16 has no availability rows (every class
    // closed: not offered, and bookd has no seats for it).
    let full = fixtures().join("small/availability.csv");
    let text = std::fs::read_to_string(&full).expect("availability");
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("XX,103,2005-06-16,MRU,"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(without.lines().count() + 2 <= text.lines().count());
    let first_avail = tmp.path().join("availability-1.csv");
    std::fs::write(&first_avail, without).expect("write availability");
    let snapshot = tmp.path().join("snap");
    indexer_build(&indexer, &snapshot, &first_avail);
    let first_id = snapshot_id(&snapshot);

    let cluster = tmp.path().join("cluster");
    let c = cluster.to_str().expect("utf8 path");
    bookd_cmd(&["certs", "init", "--cluster-dir", c]);
    for n in ["n1", "n2", "n3"] {
        bookd_cmd(&["certs", "issue", "--cluster-dir", c, "--name", n]);
    }
    let mut b = Bookd {
        tmp: tmp.path().to_path_buf(),
        snapshot: snapshot.clone(),
        state: tmp.path().join("state"),
        cluster: cluster.clone(),
        listen: format!("127.0.0.1:{}", free_port(false))
            .parse()
            .expect("addr"),
        quic: format!("127.0.0.1:{}", free_port(true))
            .parse()
            .expect("addr"),
        child: None,
        starts: 0,
    };
    b.start();
    let bookd_log = tmp.path().join("bookd-1.log");
    let state = b.state.to_str().expect("utf8 path").to_string();
    let client = Client {
        addr: b.listen,
        key: bookd_cmd(&["keys", "create", "--name", "e2e", "--state-dir", &state])
            .trim()
            .to_string(),
    };
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(Searchd::new(&searchd, tmp.path(), &snapshot, &b, n));
    }
    for n in &nodes {
        n.wait_ready().await;
    }

    // XX 103 is not offered, and bookd refuses its (unpriced) offer id.
    let mru = Query {
        origin: "MRU",
        destination: "RUN",
        date: "2005-06-16",
    };
    for n in &nodes {
        assert!(n.find(&mru, "XX103", 1).await.is_none(), "{}", n.name);
    }
    let r = nodes[0]
        .get("/v1/search?origin=MRU&destination=RUN&date=2005-06-16&max_connections=0&priced_only=false&limit=1000")
        .await
        .expect("search");
    let unpriced = r.body["data"]["itineraries"]
        .as_array()
        .expect("itineraries")
        .iter()
        .find(|it| flight_of(it).as_deref() == Some("XX103"))
        .expect("XX103 is scheduled (unpriced)")
        .clone();
    assert_eq!(unpriced["price"], Value::Null);
    let body = order_body(unpriced["id"].as_str().expect("id"), 1, "tok_ok").to_string();
    let r = try_http(
        b.listen,
        "POST",
        "/v1/orders",
        &client.auth(),
        Some(body.into_bytes()),
    )
    .await
    .expect("bookd answers");
    assert_eq!(r.status, 409, "no seats in generation 1: {:?}", r.body);

    // Sell out XX 102 RUN->MRU 2005-06-16 class M (the cheapest class with seats).
    let run = Query {
        origin: "RUN",
        destination: "MRU",
        date: "2005-06-16",
    };
    let one = nodes[0]
        .find(&run, "XX102", 1)
        .await
        .expect("XX102 offered");
    assert_eq!(class_of(&one).as_deref(), Some("M"), "{one}");
    let seats = one["seats_available"].as_i64().expect("seats");
    let party = u32::try_from(seats).expect("seats");
    let it = nodes[0]
        .find(&run, "XX102", party)
        .await
        .expect("offered to the party");
    assert_eq!(class_of(&it).as_deref(), Some("M"));
    client
        .order(it["id"].as_str().expect("id"), party as usize)
        .await
        .expect("the order is confirmed");
    let sold = Offer {
        query: run.clone(),
        flight: "XX102".into(),
        leg: LegClass {
            carrier: "XX".into(),
            number: "102".into(),
            date: "2005-06-16".into(),
            origin: "RUN".into(),
            class: "M".into(),
        },
        id: String::new(),
        seats,
    };
    let not_m = |it: Option<&Value>| it.is_none_or(|it| class_of(it).as_deref() != Some("M"));
    until_every_node(&nodes, &sold, 1, "M sold out", not_m).await;

    // A broken generation at the path: bookd refuses it and announces nothing.
    let broken = tmp.path().join("broken");
    indexer_build(&indexer, &broken, &full);
    let broken_dir = std::fs::canonicalize(&broken).expect("generation dir");
    let file = broken_dir.join("availability.rkyv");
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&file, bytes).expect("corrupt");
    let link = tmp.path().join(".snap.link-test");
    std::os::unix::fs::symlink(&broken_dir, &link).expect("link");
    std::fs::rename(&link, &snapshot).expect("publish the broken generation");
    let refused = wait_log_line(
        &bookd_log,
        "snapshot refused; keeping the one in service, nothing announced",
        None,
    );
    eprintln!(
        "bookd refused the broken generation: {}",
        refused["fields"]["error"]
    );
    // Longer than bookd's poll and a node's reaction to an announcement.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for n in &nodes {
        assert_eq!(
            n.metric("searchd_invalidation_snapshots_published_total")
                .await,
            Some(0),
            "{}: a broken snapshot was announced",
            n.name
        );
        let r = n.get("/readyz").await.expect("readyz");
        assert_eq!(r.status, 200, "{}: {:?}", n.name, r.body);
        assert_eq!(r.body["data"]["generation"], 1, "{}", n.name);
        assert_eq!(r.body["data"]["snapshot_id"], first_id.as_str());
        assert!(not_m(n.find(&run, "XX102", 1).await.as_ref()));
    }

    // The real indexer publishes generation 2 at bookd's path.
    let started = Instant::now();
    indexer_build(&indexer, &snapshot, &full);
    let second_id = snapshot_id(&snapshot);
    assert_ne!(second_id, first_id);
    let swapped = wait_log_line(
        &bookd_log,
        "snapshot swapped in",
        Some(("snapshot_id", second_id.as_str())),
    );
    assert_eq!(swapped["fields"]["announced"], true);
    for n in &nodes {
        loop {
            let r = n.get("/readyz").await.expect("readyz");
            let announced = n
                .metric("searchd_invalidation_snapshots_published_total")
                .await;
            if r.status == 200
                && r.body["data"]["generation"] == 2
                && r.body["data"]["snapshot_id"] == second_id.as_str()
                && announced == Some(1)
            {
                break;
            }
            assert!(
                started.elapsed() < CONVERGE,
                "{}: generation 2 not served/announced: {r:?}, announced {announced:?}",
                n.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "snapshot {first_id} -> {second_id} served by every node {:?} after the indexer started",
        started.elapsed()
    );

    // Sold seats stay sold on every node (generation 2's own availability has M seats).
    for n in &nodes {
        let it = n.find(&run, "XX102", 1).await;
        assert!(not_m(it.as_ref()), "{}: M resurrected: {it:?}", n.name);
    }
    let (inv, _) = b.inventory().await;
    assert_eq!(inv.get(&sold.leg), Some(&0), "{inv:?}");

    // XX 103 has seats in generation 2 only: offered everywhere, and bookd sells it with
    // generation 2's capacity.
    let mut found = None;
    for n in &nodes {
        let it = n.find(&mru, "XX103", 1).await;
        assert!(it.is_some(), "{}: XX103 offered in generation 2", n.name);
        found = it;
    }
    let it = found.expect("XX103 offered");
    let class = class_of(&it).expect("class");
    let seats = it["seats_available"].as_i64().expect("seats");
    assert!(seats >= 2, "{it}");
    client
        .order(it["id"].as_str().expect("id"), 1)
        .await
        .expect("bookd sells a class that only generation 2 has seats for");
    let leg = LegClass {
        carrier: "XX".into(),
        number: "103".into(),
        date: "2005-06-16".into(),
        origin: "MRU".into(),
        class: class.clone(),
    };
    let (inv, _) = b.inventory().await;
    assert_eq!(
        inv.get(&leg).map(|&s| i64::from(s)),
        Some(seats - 1),
        "capacity from generation 2: {inv:?}"
    );
    let new_leg = Offer {
        query: mru.clone(),
        flight: "XX103".into(),
        leg,
        id: String::new(),
        seats,
    };
    until_every_node(&nodes, &new_leg, 1, "XX103 one seat fewer", |it| {
        it.is_some_and(|it| {
            class_of(it).as_deref() == Some(class.as_str())
                && it["seats_available"].as_i64() == Some(seats - 1)
        })
    })
    .await;
    for n in &nodes {
        let r = n.get("/readyz").await.expect("readyz");
        assert_eq!(r.status, 200, "{}: {:?}", n.name, r.body);
    }
    drop(nodes);
    b.stop();
}
