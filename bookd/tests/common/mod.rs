//! Test harness: a synthetic snapshot, a bookd process with its own embedded PostgreSQL
//! (a throwaway cluster in a temporary directory), a small HTTP client and SQL access.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use format::model::*;
use format::{Manifest, SnapshotWriter};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

pub const NOW: &str = "2030-01-01T00:00:00Z";
pub const N_DAYS: u32 = 64;

/// Whether PostgreSQL can be used; prints why a test is skipped. In CI (`CI` set) a
/// missing PostgreSQL is a failure, not a skip.
pub fn pg_available() -> bool {
    if bookd::pg::find_bin_dir().is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("PostgreSQL binaries are missing and CI is set: run scripts/install-postgres.sh");
    }
    eprintln!(
        "SKIPPED: no PostgreSQL binaries under /usr/lib/postgresql/*/bin \
         (run scripts/install-postgres.sh); CI is not set"
    );
    false
}

/// A snapshot with airports AAA, BBB, CCC (UTC), carrier XX, flight XX 100 AAA->BBB
/// daily at 10:00 from 2030-01-01 for 64 days; availability Y=10 and M=3 seats (no K row);
/// fares Y 100.00 EUR (refundable) and M 80.00 EUR (not refundable).
pub fn build_snapshot(parent: &Path) -> PathBuf {
    let out = parent.join("snap");
    let mut w = SnapshotWriter::create(&out).expect("writer");
    let airport = |code: &[u8; 3]| Airport {
        iata: *code,
        icao: String::new(),
        name: format!("{} airport", String::from_utf8_lossy(code)),
        city: String::from_utf8_lossy(code).into_owned(),
        subd: String::new(),
        country: *b"XA",
        tz: "UTC".into(),
        lat: 0.0,
        lon: 0.0,
    };
    let places = Places {
        airports: vec![airport(b"AAA"), airport(b"BBB"), airport(b"CCC")],
        metros: vec![],
    };
    let first_day = format::date::days_from_civil(2030, 1, 1);
    let words = N_DAYS.div_ceil(64);
    let network = Network {
        first_day,
        n_days: N_DAYS,
        words_per_set: words,
        day_sets: vec![u64::MAX; words as usize],
        carriers: vec![*b"XX "],
        flights: vec![Flight {
            carrier: 0,
            number: 100,
            suffix: 0,
            ivi: 1,
            first_leg: 0,
            n_legs: 1,
            day_set: 0,
        }],
        legs: vec![Leg {
            dep: 0,
            arr: 1,
            dep_utc_min: 600,
            arr_utc_min: 720,
            dep_offset_min: 0,
            arr_offset_min: 0,
            service_type: b'J',
            passenger: true,
            leg_seq: 1,
            aircraft: *b"738",
            prbd: TextRef { start: 0, len: 2 },
            codeshares: TextRef { start: 0, len: 0 },
            operating_carrier: *b"   ",
        }],
        text: "YM".into(),
        // The search index: XX 100 is the one segment AAA -> BBB, at 10:00 local.
        seg_offsets: vec![0, 1, 1, 1],
        segments: vec![SegmentRef {
            flight: 0,
            from_leg: 0,
            to_leg: 0,
            dest: 1,
            dep_day_shift: 0,
            dep_local_min: 600,
        }],
        market_offsets: vec![0, 1, 1, 1],
        markets: vec![Market {
            dest: 1,
            start: 0,
            end: 1,
        }],
    };
    let fare = |class: u8, amount: i64, basis: TextRef, refundable: bool| Fare {
        carrier: 0,
        origin: 0,
        dest: 1,
        basis,
        booking_class: class,
        cabin: 0,
        passenger_type: 0,
        amount_minor: amount,
        currency: *b"EUR",
        first_day: i32::MIN,
        last_day: i32::MAX,
        days_mask: 0x7f,
        advance_purchase_days: 0,
        refundable,
        change_fee_minor: -1,
    };
    let fares = Fares {
        fares: vec![
            fare(b'M', 8000, TextRef { start: 5, len: 6 }, false),
            fare(b'Y', 10000, TextRef { start: 0, len: 5 }, true),
        ],
        market_keys: vec![market_key(0, 0, 1)],
        market_starts: vec![0, 2],
        text: "YFLEXMSAVER".into(),
    };
    let mut keys = Vec::new();
    let mut seats = Vec::new();
    for day in 0..N_DAYS as u16 {
        for (class, n) in [(b'M', 3u16), (b'Y', 10u16)] {
            keys.push(avail_key(0, 0, day, class));
            seats.push(n);
        }
    }
    let availability = Availability { keys, seats };
    let n_avail = availability.keys.len() as u64;
    w.write_archive(format::snapshot::NETWORK, &network)
        .expect("network");
    w.write_archive(format::snapshot::FARES, &fares)
        .expect("fares");
    w.write_archive(format::snapshot::AVAILABILITY, &availability)
        .expect("availability");
    w.write_archive(format::snapshot::MCT, &Mct::default())
        .expect("mct");
    w.write_archive(format::snapshot::PLACES, &places)
        .expect("places");
    std::fs::create_dir_all(w.places_dir()).expect("places dir");
    format::places::build(&w.places_dir(), &places, &[0, 0, 0]).expect("places index");
    let manifest = Manifest {
        flight_patterns: 1,
        legs: 1,
        fares: 2,
        availability_records: n_avail,
        airports: 3,
        carriers: 1,
        ..Default::default()
    };
    w.finish(manifest).expect("publish");
    format::Snapshot::open(&out).expect("the test snapshot opens");
    out
}

/// An offer id of the test adapter for flight XX 100 on day `day` (0 = 2030-01-01).
pub fn offer(day: u32, class: &str, adults: u32) -> String {
    let (y, m, d) =
        format::date::civil_from_days(format::date::days_from_civil(2030, 1, 1) + day as i32);
    let price = match class {
        "Y" => 10000,
        "M" => 8000,
        _ => 5000,
    } * adults as i64;
    format!("leg:XX:100:{y:04}-{m:02}-{d:02}:AAA:{class}:{price}EUR:{adults}")
}

pub fn date_of(day: u32) -> String {
    let (y, m, d) =
        format::date::civil_from_days(format::date::days_from_civil(2030, 1, 1) + day as i32);
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn adult(i: usize) -> Value {
    json!({"type": "adult", "given_name": "Ada", "family_name": format!("Lovelace-{}", ["a","b","c","d","e","f","g","h","i"][i % 9]), "born_on": "1990-05-17"})
}

pub fn hold_body(offer_id: &str, adults: usize) -> Value {
    json!({
        "offer_id": offer_id,
        "passengers": (0..adults).map(adult).collect::<Vec<_>>(),
        "contact": {"email": "ada@example.com"},
    })
}

pub fn order_body(offer_id: &str, adults: usize, token: &str) -> Value {
    let mut b = hold_body(offer_id, adults);
    b["payment"] = json!({"type": "card", "token": token});
    b
}

/// Lets the PostgreSQL cluster's own user traverse `dir` (a test's temporary directory is
/// private to root by default).
pub fn let_cluster_in(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).expect("chmod");
}

/// A temporary directory the PostgreSQL cluster's user may traverse.
pub fn cluster_tempdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let_cluster_in(tmp.path());
    tmp
}

/// Runs a `bookd` subcommand and checks it succeeded; its stdout.
pub fn bookd_cmd(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("run bookd");
    assert!(
        out.status.success(),
        "bookd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// A running bookd (its own state directory and embedded cluster).
pub struct Bookd {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub snapshot: PathBuf,
    pub addr: SocketAddr,
    pub child: Option<Child>,
    pub extra: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `--listen` (a fixed port keeps the address across restarts).
    pub listen: String,
    /// `--now`.
    pub now: String,
    /// The QUIC address from the "quic listening" line (with `--quic-listen`).
    pub quic_addr: Option<SocketAddr>,
    /// Start with `--test-offer-ids` (offers named by `leg:` ids instead of searchd ids).
    pub test_offers: bool,
    log_no: u32,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bookd")
}

impl Bookd {
    pub fn new(tmp: &Path, extra: &[&str]) -> Bookd {
        Self::with_env(tmp, extra, &[])
    }

    pub fn with_env(tmp: &Path, extra: &[&str], env: &[(&str, &str)]) -> Bookd {
        let_cluster_in(tmp);
        let snapshot = build_snapshot(tmp);
        let mut b = Bookd {
            dir: tmp.to_path_buf(),
            state: tmp.join("state"),
            snapshot,
            addr: "127.0.0.1:0".parse().expect("addr"),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            listen: "127.0.0.1:0".into(),
            now: NOW.into(),
            quic_addr: None,
            test_offers: true,
            log_no: 0,
        };
        b.start();
        b
    }

    /// A bookd that takes searchd engine offer ids (the production resolver).
    pub fn with_engine_offers(tmp: &Path, snapshot: &Path, now: &str) -> Bookd {
        let_cluster_in(tmp);
        let mut b = Bookd {
            dir: tmp.to_path_buf(),
            state: tmp.join("state"),
            snapshot: snapshot.to_path_buf(),
            addr: "127.0.0.1:0".parse().expect("addr"),
            child: None,
            extra: vec![],
            env: vec![],
            listen: "127.0.0.1:0".into(),
            now: now.into(),
            quic_addr: None,
            test_offers: false,
            log_no: 0,
        };
        b.start();
        b
    }

    /// A bookd on a given snapshot, listening on `listen`, with its clock at `now`.
    pub fn with_snapshot(
        tmp: &Path,
        snapshot: &Path,
        listen: &str,
        now: &str,
        extra: &[&str],
    ) -> Bookd {
        let_cluster_in(tmp);
        let mut b = Bookd {
            dir: tmp.to_path_buf(),
            state: tmp.join("state"),
            snapshot: snapshot.to_path_buf(),
            addr: "127.0.0.1:0".parse().expect("addr"),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            listen: listen.into(),
            now: now.into(),
            quic_addr: None,
            test_offers: true,
            log_no: 0,
        };
        b.start();
        b
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("bookd-{}.log", self.log_no))
    }

    /// Starts the process and waits for its "listening" line (recovery runs before it).
    pub fn start(&mut self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(self.log_path()) {
                let _ = f.read_to_string(&mut text);
            }
            if let Some(line) = text.lines().find(|l| l.contains("\"listening\"")) {
                let v: Value = serde_json::from_str(line).expect("json log");
                self.addr = v["fields"]["addr"]
                    .as_str()
                    .expect("addr")
                    .parse()
                    .expect("socket addr");
                self.quic_addr = text
                    .lines()
                    .find(|l| l.contains("\"quic listening\""))
                    .and_then(|l| serde_json::from_str::<Value>(l).ok())
                    .and_then(|v| v["fields"]["addr"].as_str()?.parse().ok());
                return;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("bookd exited during start-up ({st}): {text}");
            }
            assert!(Instant::now() < deadline, "bookd did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts bookd expecting it to exit before serving (a failpoint hit during the
    /// start-up recovery); returns its exit status.
    pub fn start_expect_exit(&mut self) -> std::process::ExitStatus {
        self.spawn();
        self.wait_exit()
    }

    fn spawn(&mut self) {
        self.log_no += 1;
        let log = std::fs::File::create(self.log_path()).expect("log");
        let mut cmd = Command::new(bin());
        cmd.args([
            "--listen",
            self.listen.as_str(),
            "--now",
            self.now.as_str(),
            "--sweep-interval-ms",
            "100",
        ])
        .args(self.test_offers.then_some("--test-offer-ids"))
        .arg("--snapshot")
        .arg(&self.snapshot)
        .arg("--state-dir")
        .arg(&self.state)
        .args(&self.extra)
        .env_remove("BOOKD_FAILPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn bookd");
        self.child = Some(child);
    }

    /// Sets (or clears) the failpoint for the next `start`.
    pub fn set_failpoint(&mut self, fp: Option<&str>) {
        self.env.retain(|(k, _)| k != "BOOKD_FAILPOINT");
        if let Some(f) = fp {
            self.env.push(("BOOKD_FAILPOINT".into(), f.into()));
        }
    }

    /// SIGTERM and wait: graceful shutdown, stops the embedded cluster.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    assert!(st.success(), "bookd exit status {st}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("bookd did not stop within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Waits for the process to exit (e.g. after a failpoint abort).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("bookd did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn keys(&self, action: &str, name: &str) -> std::process::Output {
        Command::new(bin())
            .args(["keys", action, "--name", name, "--state-dir"])
            .arg(&self.state)
            .output()
            .expect("run bookd keys")
    }

    pub fn new_key(&self, name: &str) -> String {
        let out = self.keys("create", name);
        assert!(
            out.status.success(),
            "keys create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8(out.stdout).expect("utf8");
        assert_eq!(s.lines().count(), 1, "only the key on stdout: {s:?}");
        s.trim().to_string()
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        let layout = bookd::pg::Layout::new(&self.state).expect("layout");
        let (client, conn) = layout
            .pg_config()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        tokio::spawn(conn);
        client
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        idem: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let raw = body.map(|b| b.to_string().into_bytes());
        self.call_raw(method, path, key, idem, raw).await
    }

    /// `POST path` as `key`, with a JSON body.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Resp {
        self.call("POST", path, Some(key), None, Some(body)).await
    }

    /// `POST path` as `key`, without a body.
    pub async fn post_empty(&self, path: &str, key: &str) -> Resp {
        self.call("POST", path, Some(key), None, None).await
    }

    /// `GET path` as `key`.
    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call("GET", path, Some(key), None, None).await
    }

    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        idem: Option<&str>,
        body: Option<&Value>,
    ) -> Option<Resp> {
        let mut headers = vec![];
        if let Some(k) = key {
            headers.push(("authorization".to_string(), format!("Bearer {k}")));
        }
        if let Some(i) = idem {
            headers.push(("idempotency-key".to_string(), i.to_string()));
        }
        try_http(
            self.addr,
            method,
            path,
            &headers,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        idem: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut headers = vec![];
        if let Some(k) = key {
            headers.push(("authorization".to_string(), format!("Bearer {k}")));
        }
        if let Some(i) = idem {
            headers.push(("idempotency-key".to_string(), i.to_string()));
        }
        http(self.addr, method, path, &headers, body).await
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

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["errors"][0]["code"].as_str().unwrap_or("")
    }
    pub fn param(&self) -> &str {
        self.body["errors"][0]["source"]["parameter"]
            .as_str()
            .unwrap_or("")
    }
}

pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
) -> Resp {
    try_http(addr, method, path, headers, body)
        .await
        .expect("HTTP exchange")
}

/// `None` when the connection fails or breaks (e.g. the server process aborted).
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
) -> Option<Resp> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if body.is_some()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let resp = sender.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// Inventory, bookings and outbox agree for every leg: sold = seats of confirmed
/// orders (and of pending ones whose seats are not released), held = seats of live holds
/// + in-flight orders, and the last outbox row of each leg = capacity - sold - held.
pub async fn check_consistency(db: &tokio_postgres::Client) {
    // Committed changes reach `outbox` one sequencer run after their commit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending: i64 = db
            .query_one("SELECT count(*) FROM outbox_pending", &[])
            .await
            .expect("pending")
            .get(0);
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} outbox changes not sequenced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = db
        .query(
            "SELECT carrier, flight_number, dep_date::text, origin, booking_class, capacity, sold, held
             FROM inventory",
            &[],
        )
        .await
        .expect("inventory");
    for r in rows {
        let (c, f, d, o, k): (String, i32, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let (cap, sold, held): (i32, i32, i32) = (r.get(5), r.get(6), r.get(7));
        assert!(sold + held <= cap, "oversold {c}{f} {d} {k}");
        let booked: i64 = db
            .query_one(
                "SELECT COALESCE(SUM(o.seats), 0)::bigint FROM orders o
                 JOIN order_segments s ON s.order_id = o.id
                 WHERE s.carrier = $1 AND s.flight_number = $2 AND s.dep_date = $3::text::date
                   AND s.origin = $4 AND s.booking_class = $5 AND o.status = 'confirmed'",
                &[&c, &f, &d, &o, &k],
            )
            .await
            .expect("booked")
            .get(0);
        assert_eq!(
            i64::from(sold),
            booked,
            "sold vs confirmed orders on {d} {k}"
        );
        let live_holds: i64 = db
            .query_one(
                "SELECT COALESCE(SUM(h.seats), 0)::bigint FROM holds h
                 WHERE h.status = 'held' AND h.legs LIKE '%' || $1 || '%' AND h.legs LIKE '%\"' || $2 || '\"%'",
                &[&d, &k],
            )
            .await
            .expect("holds")
            .get(0);
        let in_flight: i64 = db
            .query_one(
                "SELECT COALESCE(SUM(o.seats), 0)::bigint FROM orders o
                 JOIN order_segments s ON s.order_id = o.id
                 WHERE s.dep_date = $1::text::date AND s.booking_class = $2
                   AND o.status = 'pending' AND NOT o.seats_released",
                &[&d, &k],
            )
            .await
            .expect("in flight")
            .get(0);
        assert_eq!(
            i64::from(held),
            live_holds + in_flight,
            "held vs holds on {d} {k}"
        );
        let last: i32 = db
            .query_one(
                "SELECT seats_remaining FROM outbox WHERE carrier = $1 AND flight_number = $2
                   AND dep_date = $3::text::date AND origin = $4 AND booking_class = $5
                 ORDER BY seq DESC LIMIT 1",
                &[&c, &f, &d, &o, &k],
            )
            .await
            .expect("outbox")
            .get(0);
        assert_eq!(last, cap - sold - held, "outbox vs inventory on {d} {k}");
    }
}
