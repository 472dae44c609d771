//! The invalidation channel with the real bookd binary: PostgreSQL outbox -> QUIC publisher
//! -> searchd subscribers (in-process) -> overlays over the real snapshot bookd serves
//! (built from `fixtures/data`). Each node's state is checked entry by entry against
//! bookd's inventory table, and its last applied seq against the outbox head. Every wait is
//! bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use format::wire::LegKey;
use searchd::overlay::Overlay;
use searchd::subscriber::{self, LiveView, OverlayTarget, SubscriberConfig, SubscriberHandle};
use tokio::sync::watch;

/// The fixture feeds' clock: before the legs of 2005-06-16/17 depart.
const FIXTURE_NOW: &str = "2005-06-01T00:00:00Z";
const CONVERGE: Duration = Duration::from_secs(20);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data")
}

/// The snapshot bookd serves, compiled by the real indexer from the fixture feeds.
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

/// A bookable leg class of the fixture availability: (carrier, number, date, origin, class, seats).
#[derive(Debug, Clone)]
struct Leg {
    carrier: String,
    number: u16,
    date: String,
    origin: String,
    class: String,
    seats: u32,
}

fn fixture_legs() -> Vec<Leg> {
    let text = std::fs::read_to_string(fixtures().join("small/availability.csv")).expect("csv");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let seats: u32 = f.get(5)?.trim().parse().ok()?;
            let number: u16 = f[1].parse().ok()?;
            (seats > 0).then(|| Leg {
                carrier: f[0].to_string(),
                number,
                date: f[2].to_string(),
                origin: f[3].to_string(),
                class: f[4].to_string(),
                seats,
            })
        })
        .collect()
}

/// Runs a `bookd` subcommand; panics with its stderr on failure.
fn bookd_cmd(args: &[&str]) {
    let out = std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("run bookd");
    assert!(
        out.status.success(),
        "bookd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cluster directory made by the real `bookd certs init` and `bookd certs issue`.
fn cluster(tmp: &Path, nodes: &[&str]) -> PathBuf {
    let dir = tmp.join("cluster");
    let d = dir.to_str().expect("utf8 path");
    bookd_cmd(&["certs", "init", "--cluster-dir", d]);
    for n in nodes {
        bookd_cmd(&["certs", "issue", "--cluster-dir", d, "--name", n]);
    }
    dir
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

// ------------------------------------------------------------------ the searchd side

/// searchd's view of the snapshot in service: the real snapshot and an overlay.
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

struct Node {
    name: String,
    target: Arc<SnapTarget>,
    handle: SubscriberHandle<SnapTarget>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    fn start(dir: &Path, bookd: SocketAddr, name: &str, snap: &Arc<format::Snapshot>) -> Node {
        let mut c = SubscriberConfig::new(bookd.to_string(), dir, name);
        c.silence_timeout = Duration::from_millis(1500);
        c.connect_timeout = Duration::from_secs(2);
        c.backoff_min = Duration::from_millis(20);
        c.backoff_max = Duration::from_millis(300);
        c.refresh_interval = Duration::from_millis(20);
        let target = Arc::new(SnapTarget(Arc::new(SnapView {
            snap: snap.clone(),
            overlay: Overlay::new(),
        })));
        let (stop, rx) = watch::channel(false);
        let (handle, task) = subscriber::spawn(c, target.clone(), rx).expect("subscriber starts");
        Node {
            name: name.to_string(),
            target,
            handle,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

// ------------------------------------------------------------------ bookd's inventory

fn leg_key(carrier: &str, number: i32, day: i32, origin: &str, class: &str) -> LegKey {
    LegKey {
        carrier: format::model::carrier_code(carrier).expect("carrier"),
        flight_number: u16::try_from(number).expect("flight number"),
        date: day,
        origin: origin.as_bytes().try_into().expect("origin"),
        booking_class: class.as_bytes()[0],
    }
}

/// bookd's inventory (leg class -> seats remaining) and outbox head, in one snapshot.
async fn inventory(b: &Bookd) -> (BTreeMap<LegKey, u16>, u64) {
    let mut db = b.db().await;
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
            "SELECT carrier, flight_number, dep_date - DATE '1970-01-01', origin, booking_class,
                    capacity - sold - held FROM inventory",
            &[],
        )
        .await
        .expect("inventory");
    tx.commit().await.expect("commit");
    let mut out = BTreeMap::new();
    for r in rows {
        let k = leg_key(
            &r.get::<_, String>(0),
            r.get(1),
            r.get(2),
            &r.get::<_, String>(3),
            &r.get::<_, String>(4),
        );
        out.insert(k, u16::try_from(r.get::<_, i32>(5)).expect("seats"));
    }
    (out, head as u64)
}

/// The first difference between a node and bookd, entry by entry (held state, overlay
/// through the real snapshot, last applied seq); `None` when equal.
fn difference(inv: &BTreeMap<LegKey, u16>, head: u64, node: &Node) -> Option<String> {
    let n = &node.name;
    if !node.handle.status().in_sync() {
        return Some(format!("{n}: not in sync"));
    }
    let held = node.handle.entries();
    if held.len() != inv.len() {
        return Some(format!(
            "{n}: holds {} entries, bookd has {}",
            held.len(),
            inv.len()
        ));
    }
    let view = node.target.current();
    let mut mapped = 0;
    for (k, &seats) in inv {
        match held.get(k) {
            Some(&(s, _)) if s == seats => {}
            other => return Some(format!("{n}: {k:?} holds {other:?}, bookd has {seats}")),
        }
        let ok = subscriber::resolve_leg(&view.snap, k)
            .unwrap_or_else(|| panic!("bookd sold a leg the snapshot does not have: {k:?}"));
        mapped += 1;
        let got = view.overlay.seats(ok);
        if got != Some(seats) {
            return Some(format!("{n}: overlay {k:?} = {got:?}, bookd has {seats}"));
        }
    }
    if view.overlay.len() != mapped {
        return Some(format!(
            "{n}: overlay has {} entries, bookd {mapped}",
            view.overlay.len()
        ));
    }
    let last = node.handle.last_applied();
    if last != head {
        return Some(format!(
            "{n}: last applied seq {last}, bookd's outbox head {head}"
        ));
    }
    None
}

/// Waits (bounded) until every node equals bookd's inventory; returns the time it took.
async fn converge(b: &Bookd, nodes: &[&Node], what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (inv, head) = inventory(b).await;
        let diff = nodes.iter().find_map(|n| difference(&inv, head, n));
        match diff {
            None => {
                eprintln!(
                    "{what}: {} nodes equal bookd ({} entries, seq {head}) after {:?}",
                    nodes.len(),
                    inv.len(),
                    started.elapsed()
                );
                return started.elapsed();
            }
            Some(d) if started.elapsed() > CONVERGE => panic!("{what}: not converged: {d}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// bookd's PostgreSQL feed run by this test process (not by bookd), with its head poller.
struct TestFeed {
    feed: Arc<bookd::outbox_feed::PgFeed>,
    stop: watch::Sender<bool>,
    poller: tokio::task::JoinHandle<()>,
    pool: deadpool_postgres::Pool,
}

impl TestFeed {
    fn start(pool: &deadpool_postgres::Pool, head: u64, poll: Duration) -> TestFeed {
        let (stop, stop_rx) = watch::channel(false);
        let (feed, poller) = bookd::outbox_feed::PgFeed::start(
            pool.clone(),
            bookd::outbox_feed::SeqSignal::new(head),
            poll,
            stop_rx,
        );
        TestFeed {
            feed,
            stop,
            poller,
            pool: pool.clone(),
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.poller).await;
        self.pool.close();
    }
}

/// Commits `batch` as pending outbox rows in one transaction, then sequences them.
async fn commit_and_sequence(
    pool: &deadpool_postgres::Pool,
    batch: &bookd::sequencer::PendingBatch,
) {
    let mut c = pool.get().await.expect("conn");
    let tx = c.transaction().await.expect("tx");
    bookd::sequencer::write_pending(&tx, batch)
        .await
        .expect("pending rows");
    tx.commit().await.expect("commit");
    drop(c);
    bookd::sequencer::move_pending(pool, 1_000)
        .await
        .expect("move");
}

// ------------------------------------------------------------------ bookings

/// Books through bookd's HTTP API with the test offer adapter, learning each leg's price
/// from `409 price_changed`.
struct Booker {
    key: String,
    prices: std::collections::HashMap<String, String>,
}

impl Booker {
    fn offer(&self, leg: &Leg, adults: u32) -> String {
        let base = format!(
            "leg:{}:{}:{}:{}:{}",
            leg.carrier, leg.number, leg.date, leg.origin, leg.class
        );
        let price = self
            .prices
            .get(&format!("{base}:{adults}"))
            .cloned()
            .unwrap_or_else(|| "100EUR".into());
        format!("{base}:{price}:{adults}")
    }

    /// An instant order; `Some(order id)` when confirmed, `None` when sold out, failed or
    /// bookd is unreachable (restarting).
    async fn order(&mut self, addr: SocketAddr, leg: &Leg, adults: u32) -> Option<String> {
        for _ in 0..3 {
            let offer = self.offer(leg, adults);
            let body = order_body(&offer, adults as usize, "tok_ok");
            let headers = vec![("authorization".to_string(), format!("Bearer {}", self.key))];
            let r = try_http(
                addr,
                "POST",
                "/v1/orders",
                &headers,
                Some(body.to_string().into_bytes()),
            )
            .await?;
            match (r.status, r.code()) {
                (201, _) => return r.body["data"]["id"].as_str().map(str::to_string),
                (409, "price_changed") => {
                    let p = &r.body["errors"][0]["meta"]["price"];
                    let minor = bookd::api::Money::parse_minor(
                        p["amount"].as_str().expect("amount"),
                        p["currency"].as_str().expect("currency"),
                    )
                    .expect("price");
                    let cur = p["currency"].as_str().expect("currency");
                    let base = format!(
                        "leg:{}:{}:{}:{}:{}:{adults}",
                        leg.carrier, leg.number, leg.date, leg.origin, leg.class
                    );
                    self.prices.insert(base, format!("{minor}{cur}"));
                }
                (409, "seats_unavailable") => return None,
                (s, _) if s >= 500 => return None,
                _ => panic!("order on {offer}: {} {}", r.status, r.body),
            }
        }
        panic!("the price of {leg:?} does not settle")
    }

    async fn cancel(&self, addr: SocketAddr, order_id: &str) -> bool {
        let headers = vec![("authorization".to_string(), format!("Bearer {}", self.key))];
        match try_http(
            addr,
            "POST",
            &format!("/v1/orders/{order_id}/cancel"),
            &headers,
            None,
        )
        .await
        {
            Some(r) => r.status == 200,
            None => false,
        }
    }
}

async fn metrics(b: &Bookd) -> String {
    let r = b.call("GET", "/metrics", None, None, None).await;
    assert_eq!(r.status, 200);
    r.body.as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookd_invalidations_reach_every_node() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshot = fixture_snapshot(tmp.path());
    let snap = Arc::new(format::Snapshot::open(&snapshot).expect("snapshot"));
    let dir = cluster(tmp.path(), &["n1", "n2", "n3", "n4"]);
    let quic: SocketAddr = format!("127.0.0.1:{}", free_port(true))
        .parse()
        .expect("addr");
    let listen = format!("127.0.0.1:{}", free_port(false));
    let quic_s = quic.to_string();
    let mut b = Bookd::with_snapshot(
        tmp.path(),
        &snapshot,
        &listen,
        FIXTURE_NOW,
        &[
            "--quic-listen",
            &quic_s,
            "--cluster-dir",
            dir.to_str().expect("utf8"),
            "--rate-limit",
            "100000",
            "--rate-burst",
            "100000",
        ],
    );
    assert_eq!(b.quic_addr, Some(quic), "bookd logs its QUIC address");
    let mut booker = Booker {
        key: b.new_key("quic-test"),
        prices: Default::default(),
    };
    let legs = fixture_legs();
    assert!(legs.len() >= 10, "fixture legs: {legs:?}");

    let nodes: Vec<Node> = (1..=3)
        .map(|i| Node::start(&dir, quic, &format!("n{i}"), &snap))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    converge(&b, &refs, "empty inventory").await;
    let m = metrics(&b).await;
    assert!(m.contains("bookd_quic_nodes_connected 3"), "{m}");

    // Sell a class out seat by seat: after each order every node has bookd's count, and
    // the last seat leaves the overlay at 0.
    let small = legs
        .iter()
        .find(|l| (2..=5).contains(&l.seats))
        .expect("a small class")
        .clone();
    let mut orders = Vec::new();
    for _ in 0..small.seats {
        let id = booker
            .order(b.addr, &small, 1)
            .await
            .expect("a seat is left");
        orders.push(id);
        converge(&b, &refs, "after an order").await;
    }
    assert_eq!(booker.order(b.addr, &small, 1).await, None, "sold out");
    let k = leg_key(
        &small.carrier,
        i32::from(small.number),
        format::date::parse_iso(&small.date).expect("date"),
        &small.origin,
        &small.class,
    );
    for n in &nodes {
        let view = n.target.current();
        let ok = subscriber::resolve_leg(&view.snap, &k).expect("the leg is in the snapshot");
        assert_eq!(view.overlay.seats(ok), Some(0), "{}: sold out", n.name);
    }
    // Cancel: the seat is on sale again on every node.
    let last = orders.pop().expect("an order");
    assert!(booker.cancel(b.addr, &last).await, "cancel");
    converge(&b, &refs, "after a cancellation").await;
    for n in &nodes {
        let view = n.target.current();
        let ok = subscriber::resolve_leg(&view.snap, &k).expect("mapped");
        assert_eq!(view.overlay.seats(ok), Some(1), "{}: one seat back", n.name);
    }

    // A burst of orders and cancellations over many classes, with bookd restarted in the
    // middle of it (SIGTERM, start again on the same addresses).
    let (done_tx, mut done_rx) = watch::channel(false);
    let burst_legs = legs.clone();
    let addr = b.addr;
    let mut burst_booker = Booker {
        key: booker.key.clone(),
        prices: booker.prices.clone(),
    };
    let burst = tokio::spawn(async move {
        let mut mine: Vec<String> = Vec::new();
        let (mut ok, mut cancelled) = (0u32, 0u32);
        for i in 0..400usize {
            if *done_rx.borrow_and_update() {
                break;
            }
            let leg = &burst_legs[(i * 7) % burst_legs.len()];
            if i % 5 == 4 && !mine.is_empty() {
                let id = mine.swap_remove(i % mine.len());
                if burst_booker.cancel(addr, &id).await {
                    cancelled += 1;
                }
            } else if let Some(id) = burst_booker.order(addr, leg, 1 + (i % 2) as u32).await {
                ok += 1;
                mine.push(id);
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        (ok, cancelled)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.stop();
    b.start();
    tokio::time::sleep(Duration::from_millis(700)).await;
    done_tx.send_replace(true);
    let (ok, cancelled) = tokio::time::timeout(Duration::from_secs(60), burst)
        .await
        .expect("the burst ends")
        .expect("burst task");
    eprintln!("burst: {ok} orders, {cancelled} cancellations, bookd restarted");
    assert!(ok > 0, "the burst booked something");
    converge(&b, &refs, "after the burst and a bookd restart").await;
    let m = metrics(&b).await;
    let line = |name: &str| {
        m.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    eprintln!(
        "after the restart: {} / {}",
        line("bookd_quic_replays_total"),
        line("bookd_quic_full_states_sent_total")
    );

    // A node started late gets the full state.
    let late = Node::start(&dir, quic, "n4", &snap);
    let mut all: Vec<&Node> = nodes.iter().collect();
    all.push(&late);
    converge(&b, &all, "late node").await;
    assert!(
        late.handle
            .status()
            .full_states
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // And everyone keeps following.
    let some = legs
        .iter()
        .find(|l| l.seats >= 4)
        .expect("a big class")
        .clone();
    let _ = booker.order(b.addr, &some, 1).await;
    converge(&b, &all, "after one more order").await;
    let m = metrics(&b).await;
    assert!(m.contains("bookd_quic_nodes_connected 4"), "{m}");
    assert!(m.contains("bookd_outbox_seq "), "{m}");

    let db = b.db().await;
    check_consistency(&db).await;
    drop(db);
    late.stop().await;
    for n in nodes {
        n.stop().await;
    }
    b.stop();
}

/// The PostgreSQL feed on its own, from another process than bookd (this test): its poll
/// sees bookd's commits, the outbox seqs are dense and commit in order under concurrent
/// orders, `full_state` matches the inventory as of the head, and a pruned range is `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_feed_watermark_and_retention() {
    use bookd::quic::InventoryFeed;
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshot = fixture_snapshot(tmp.path());
    let mut b = Bookd::with_snapshot(
        tmp.path(),
        &snapshot,
        "127.0.0.1:0",
        FIXTURE_NOW,
        &["--rate-limit", "100000", "--rate-burst", "100000"],
    );
    let key = b.new_key("feed-test");
    let legs = fixture_legs();
    let layout = bookd::pg::Layout::new(&b.state).expect("layout");
    let pool = bookd::db::pool(layout.pg_config(), 4).expect("pool");
    let test_feed = TestFeed::start(&pool, 0, Duration::from_millis(50));
    let feed = test_feed.feed.clone();
    let mut seq_rx = feed.watch_seq();

    // Concurrent orders over every class; meanwhile a reader checks the watermark: every
    // seq up to the committed head is visible, without holes.
    // Learn the prices once, sequentially (one order per class).
    let mut booker = Booker {
        key: key.clone(),
        prices: Default::default(),
    };
    for l in &legs {
        let _ = booker.order(b.addr, l, 1).await;
    }
    let prices = booker.prices;
    let (check_stop, check_rx) = watch::channel(false);
    let checker = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut checks = 0u32;
            while !*check_rx.borrow() {
                let c = pool.get().await.expect("conn");
                let head: i64 = c
                    .query_one("SELECT seq FROM outbox_head", &[])
                    .await
                    .expect("head")
                    .get(0);
                let r = c
                    .query_one(
                        "SELECT count(*), COALESCE(min(seq), 1) FROM outbox WHERE seq <= $1",
                        &[&head],
                    )
                    .await
                    .expect("count");
                let (n, min): (i64, i64) = (r.get(0), r.get(1));
                assert_eq!(
                    n,
                    head - min + 1,
                    "outbox seqs up to the head {head} are dense"
                );
                checks += 1;
            }
            checks
        })
    };
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let mut booker = Booker {
            key: key.clone(),
            prices: prices.clone(),
        };
        let legs = legs.clone();
        let addr = b.addr;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..12usize {
                let leg = &legs[(t * 5 + i * 3) % legs.len()];
                if let Some(id) = booker.order(addr, leg, 1).await {
                    ids.push(id);
                }
                if i % 3 == 2 {
                    if let Some(id) = ids.pop() {
                        booker.cancel(addr, &id).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("booking task");
    }
    check_stop.send_replace(true);
    let checks = checker.await.expect("checker");
    assert!(checks > 0);

    // The poll (this process is not bookd) reaches the head.
    let (inv, head) = inventory(&b).await;
    tokio::time::timeout(Duration::from_secs(5), seq_rx.wait_for(|s| *s >= head))
        .await
        .expect("the poll sees bookd's commits")
        .expect("feed alive");
    assert_eq!(feed.current_seq(), head);
    let full = feed.full_state().await.expect("full state");
    let (as_of, entries) = (full.as_of, full.entries);
    assert_eq!(as_of, head);
    let got: BTreeMap<LegKey, u16> = entries.iter().map(|e| (e.key, e.seats)).collect();
    assert_eq!(got, inv, "full state = inventory");
    assert!(entries.iter().all(|e| e.seq <= as_of && e.seq > 0));
    // Replaying the whole outbox gives the same state, in seq order.
    let mut replayed = BTreeMap::new();
    let mut after = 0;
    loop {
        let batch = feed
            .changes_after(after, 7)
            .await
            .expect("changes")
            .expect("nothing pruned yet")
            .entries;
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            assert_eq!(e.seq, after + 1, "dense, ascending");
            after = e.seq;
            replayed.insert(e.key, e.seats);
        }
    }
    assert_eq!(after, head);
    assert_eq!(
        replayed, inv,
        "the outbox replays to the inventory (absolute seats)"
    );

    // Retention: restart bookd keeping 4 seqs; the sweeper prunes, an old range is gone.
    b.stop();
    b.extra
        .extend(["--outbox-retention-seqs".to_string(), "4".to_string()]);
    b.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = feed.changes_after(0, 10).await.expect("changes");
        if r.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox was not pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recent = feed
        .changes_after(head - 4, 10)
        .await
        .expect("changes")
        .expect("the last 4 seqs are kept")
        .entries;
    assert_eq!(recent.len(), 4);
    let full = feed.full_state().await.expect("full state");
    assert_eq!(full.as_of, head);
    assert_eq!(full.entries.len(), inv.len());
    test_feed.stop().await;
    b.stop();
}

/// History tokens on PostgreSQL: the rows one sequencer transaction numbers share its token,
/// two transactions' tokens differ and are never 0, `outbox_head` keeps the head row's
/// token, and the feed reads them with the rows (the token at a position, at the batch's
/// end, at the full state's head). They read back the same after bookd and its database
/// restarted, and the token at a position whose row retention deleted is still known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sequencer_transaction_gives_its_rows_one_history_token() {
    use bookd::quic::InventoryFeed;
    use bookd::sequencer::PendingBatch;
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshot = fixture_snapshot(tmp.path());
    let mut b = Bookd::with_snapshot(tmp.path(), &snapshot, "127.0.0.1:0", FIXTURE_NOW, &[]);
    let legs = fixture_legs();
    assert!(legs.len() >= 4, "the fixture has at least 4 leg classes");
    let layout = bookd::pg::Layout::new(&b.state).expect("layout");
    let pool = bookd::db::pool(layout.pg_config(), 2).expect("pool");
    // Two transactions of two changes each, sequenced one after the other: the first is
    // moved (by this move, or by bookd's sequencer first) before the second commits, and
    // the rows of one commit are always moved together.
    for pair in [&legs[0..2], &legs[2..4]] {
        let mut batch = PendingBatch::new();
        for l in pair {
            batch.push(
                &l.carrier,
                i32::from(l.number),
                &l.date,
                &l.origin,
                &l.class,
                1,
                "token-test",
            );
        }
        commit_and_sequence(&pool, &batch).await;
    }
    let read_rows = |db: tokio_postgres::Client| async move {
        let rows: Vec<(i64, i64)> = db
            .query("SELECT seq, token FROM outbox ORDER BY seq", &[])
            .await
            .expect("outbox")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let head = db
            .query_one("SELECT seq, token FROM outbox_head", &[])
            .await
            .expect("head");
        (rows, (head.get::<_, i64>(0), head.get::<_, i64>(1)))
    };
    let (rows, head) = read_rows(b.db().await).await;
    let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "a fresh outbox numbered from 1");
    let (first, second) = (rows[0].1, rows[2].1);
    assert_eq!(rows[1].1, first, "one transaction, one token");
    assert_eq!(rows[3].1, second, "one transaction, one token");
    assert_ne!(first, second, "two transactions, two tokens");
    assert!(first != 0 && second != 0, "0 is for rows older than tokens");
    assert_eq!(head, (4, second), "the head keeps its row's token");

    // The feed, from another process than bookd.
    let (first, second) = (first as u64, second as u64);
    let test_feed = TestFeed::start(&pool, 4, Duration::from_millis(50));
    let feed = test_feed.feed.clone();
    let read = feed
        .changes_after(0, 10)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(read.entries.len(), 4);
    assert_eq!((read.after_token, read.last_token), (Some(0), Some(second)));
    let read = feed
        .changes_after(2, 10)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(read.entries.len(), 2);
    assert_eq!(
        (read.after_token, read.last_token),
        (Some(first), Some(second))
    );
    let read = feed.changes_after(1, 1).await.expect("read").expect("kept");
    assert_eq!(
        (read.after_token, read.last_token),
        (Some(first), Some(first))
    );
    let read = feed
        .changes_after(4, 10)
        .await
        .expect("read")
        .expect("kept");
    assert!(read.entries.is_empty());
    assert_eq!((read.after_token, read.last_token), (Some(second), None));
    // Past the head (a node of a longer, lost history): the head row is the newest there.
    let read = feed
        .changes_after(9, 10)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(read.after_token, Some(second));
    let full = feed.full_state().await.expect("full state");
    assert_eq!((full.as_of, full.as_of_token), (4, second));
    test_feed.stop().await;

    // A restart of bookd and its PostgreSQL: the same tokens.
    b.stop();
    b.start();
    let (again, head_again) = read_rows(b.db().await).await;
    assert_eq!(again, rows, "tokens read back the same after a restart");
    assert_eq!(head_again, head);

    // Retention keeping 1 seq deletes seqs 1..=3: the token at 3 is still known.
    b.stop();
    b.extra
        .extend(["--outbox-retention-seqs".to_string(), "1".to_string()]);
    b.start();
    let db = b.db().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let pruned = loop {
        let r = db
            .query_one("SELECT through, token FROM outbox_pruned", &[])
            .await
            .expect("pruned");
        let pruned: (i64, i64) = (r.get(0), r.get(1));
        if pruned.0 == 3 {
            break pruned;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox was not pruned: {pruned:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        pruned,
        (3, second as i64),
        "the token of the newest row deleted"
    );
    let pool = bookd::db::pool(layout.pg_config(), 2).expect("pool");
    let test_feed = TestFeed::start(&pool, 4, Duration::from_millis(50));
    let feed = test_feed.feed.clone();
    let read = feed
        .changes_after(3, 10)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(read.entries.len(), 1);
    assert_eq!(
        (read.after_token, read.last_token),
        (Some(second), Some(second))
    );
    assert!(
        feed.changes_after(2, 10).await.expect("read").is_none(),
        "seq 3 is pruned"
    );
    test_feed.stop().await;
    drop(db);
    b.stop();
}

/// Regression: the publisher took a read of fewer changes than it asked for as "caught up
/// to the watermark". The PostgreSQL feed skips an outbox row that is not a leg key (and
/// logs it), so a full read with one skipped row looked short: the publisher then sent
/// `Updates` up to the watermark and the rows after the skipped one never reached a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_outbox_row_does_not_hide_the_rows_after_it() {
    use bookd::sequencer::PendingBatch;
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshot = fixture_snapshot(tmp.path());
    let dir = cluster(tmp.path(), &["n1"]);
    let b = Bookd::with_snapshot(tmp.path(), &snapshot, "127.0.0.1:0", FIXTURE_NOW, &[]);
    let legs = fixture_legs();
    let layout = bookd::pg::Layout::new(&b.state).expect("layout");
    let pool = bookd::db::pool(layout.pg_config(), 2).expect("pool");
    let test_feed = TestFeed::start(&pool, 0, Duration::from_millis(20));
    let feed = test_feed.feed.clone();
    let mut cfg =
        bookd::quic::PublisherConfig::new("127.0.0.1:0".parse().expect("addr"), dir.clone());
    // One change per read: a skipped row makes a read come back empty.
    cfg.max_batch = 1;
    cfg.heartbeat = Duration::from_millis(100);
    let publisher = bookd::quic::Publisher::start(cfg, feed.clone())
        .await
        .expect("publisher");
    let addr = publisher.local_addr().expect("addr");
    let snap = Arc::new(format::Snapshot::open(&snapshot).expect("snapshot"));
    let node = Node::start(&dir, addr, "n1", &snap);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.handle.status().in_sync() {
        assert!(Instant::now() < deadline, "the node never synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One transaction: a row that is not a leg key (seq 1), then two real changes (2, 3).
    let mut batch = PendingBatch::new();
    batch.push(
        "TOOLONG",
        1,
        "2005-06-16",
        "RUN",
        "Y",
        5,
        "skipped-row-test",
    );
    for l in &legs[..2] {
        batch.push(
            &l.carrier,
            i32::from(l.number),
            &l.date,
            &l.origin,
            &l.class,
            1,
            "skipped-row-test",
        );
    }
    commit_and_sequence(&pool, &batch).await;
    let want: Vec<LegKey> = legs[..2]
        .iter()
        .map(|l| {
            let day = format::date::parse_iso(&l.date).expect("date");
            leg_key(&l.carrier, i32::from(l.number), day, &l.origin, &l.class)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = node.handle.entries();
        let got: Vec<_> = want.iter().map(|k| held.get(k).map(|&(s, _)| s)).collect();
        if node.handle.last_applied() >= 3 && got.iter().all(|s| *s == Some(1)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node is at seq {} and holds {got:?} for the two changes after the skipped row",
            node.handle.last_applied()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
    publisher.shutdown().await;
    test_feed.stop().await;
}
