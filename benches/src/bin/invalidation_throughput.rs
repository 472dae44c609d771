//! Invalidation throughput: sustained seat changes per second through the QUIC invalidation
//! channel to N searchd subscribers, all in one process on 127.0.0.1 with real certificates
//! (`bookd::certs::{init, issue}` in a tempdir), set up as `bookd/tests/quic_channel.rs` does.
//!
//! The feed is bookd's in-memory `MemoryFeed`, not the PostgreSQL outbox: this measures the
//! channel (fan-out, QUIC/TLS, decoding, applying to the overlay), not the database. A
//! producer thread pushes `--changes` absolute seat updates over `--keys` leg classes in
//! batches of `--batch` (one `set_many` each) as fast as the feed accepts them; the clock
//! runs from the first push until every node's `last_applied_seq` reaches the last seq.
//! Afterwards every node is compared with the feed entry by entry. Bounded by `--timeout`.
//!
//! `cargo build --release -p benches --bin invalidation_throughput &&
//!  target/release/invalidation_throughput --nodes 4`
//!
//! `--feed pg`: the same 4 nodes fed by bookd's real outbox feed (`bookd::outbox_feed::PgFeed`)
//! on a real PostgreSQL (bookd's embedded cluster, `bookd::pg::Embedded`, in a tempdir, with
//! bookd's migrations). bookd has no bulk inventory-write path (an availability import or
//! bulk adjust), so `--writers` tasks commit seat changes as bookd's service does, batched:
//! per transaction one `UPDATE inventory ... RETURNING capacity - sold - held` over `--batch`
//! distinct leg classes (sold +-1, guarded like bookd's `adjust`), then
//! `bookd::outbox_feed::write_batch` (bookd's own function: seqs allocated under the
//! `outbox_head` row lock as the last statement, then the outbox rows), COMMIT,
//! then `SeqSignal::advance` (as `Service::commit_with_outbox`). Writers own disjoint leg
//! classes (no row-lock waits between them; the `outbox_head` lock serialises their last
//! step, as in bookd). Measured: commit -> applied on all nodes per transaction, and the
//! sustained rate; afterwards every node is compared with the `inventory` table entry by
//! entry.
//!
//! `--path sequencer` writes `bookd::sequencer::write_pending` instead of `write_batch` and
//! waits for `Sequencer::sequenced` after COMMIT (bookd's service since 14:51 UTC), with
//! bookd's `Sequencer` task on its own connection.
//!
//! `target/release/invalidation_throughput --feed pg --nodes 4 --changes 1000000 --batch 1000`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bookd::certs;
use bookd::quic::{InventoryFeed, MemoryFeed, Publisher, PublisherConfig};
use clap::Parser;
use format::wire::LegKey;
use searchd::overlay::Overlay;
use searchd::subscriber::{self, LiveView, OverlayTarget, SubscriberConfig, SubscriberHandle};
use tokio::sync::watch;

#[derive(Parser)]
#[command(about = "sustained invalidations/s over QUIC to N in-process searchd nodes")]
struct Args {
    /// searchd nodes subscribed (at most 16).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Seat changes pushed (one seq each).
    #[arg(long, default_value_t = 500_000)]
    changes: usize,
    /// Distinct leg classes the changes fall on (at most 26,000).
    #[arg(long, default_value_t = 20_000)]
    keys: u32,
    /// Changes per `set_many` call (one commit).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Give up after this many seconds (setup, push and drain each).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `memory` (bookd's `MemoryFeed`) or `pg` (bookd's outbox feed on PostgreSQL).
    #[arg(long, default_value = "memory")]
    feed: String,
    /// `--feed pg`: concurrent committing tasks (disjoint leg classes).
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// `--feed pg`: seats per leg class (half of them sold at the start).
    #[arg(long, default_value_t = 500)]
    capacity: i32,
    /// `--feed pg`: how the writers number their changes: `head` (`outbox_feed::write_batch`
    /// under the `outbox_head` lock before COMMIT) or `sequencer` (`sequencer::write_pending`
    /// before COMMIT, then `Sequencer::sequenced`, as bookd's service does since 14:51 UTC).
    #[arg(long, default_value = "head")]
    path: String,
}

/// A snapshot stand-in: every key resolves to a distinct overlay key (as in the tests).
struct TestView {
    overlay: Overlay,
}

fn overlay_key(k: &LegKey) -> Option<u64> {
    let day = u64::try_from(k.date - 20_000).ok()?;
    Some((day << 32) | (u64::from(k.flight_number) << 8) | u64::from(k.booking_class))
}

impl LiveView for TestView {
    fn generation(&self) -> u64 {
        1
    }
    fn resolve(&self, key: &LegKey) -> Option<u64> {
        overlay_key(key)
    }
    fn overlay(&self) -> &Overlay {
        &self.overlay
    }
}

struct TestTarget(Mutex<Arc<TestView>>);

impl OverlayTarget for TestTarget {
    type View = TestView;
    fn current(&self) -> Arc<TestView> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

fn key(i: u32) -> LegKey {
    LegKey {
        carrier: *b"BA ",
        flight_number: (i % 1000) as u16,
        date: 20_000 + (i / 26_000) as i32,
        origin: *b"LHR",
        booking_class: b'A' + ((i / 1000) % 26) as u8,
    }
}

/// splitmix64, as the tests' generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn changes(&mut self, n: usize, keys: u32) -> Vec<(LegKey, u16)> {
        (0..n)
            .map(|_| {
                let i = (self.next() % u64::from(keys)) as u32;
                (key(i), (self.next() % 10) as u16)
            })
            .collect()
    }
}

struct Node {
    name: String,
    target: Arc<TestTarget>,
    handle: SubscriberHandle<TestTarget>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    fn applied(&self) -> u64 {
        self.handle
            .status()
            .last_applied_seq
            .load(Ordering::Relaxed)
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn publisher_config(dir: &Path, listen: SocketAddr) -> PublisherConfig {
    let mut c = PublisherConfig::new(listen, dir.to_path_buf());
    c.heartbeat = Duration::from_millis(100);
    c.write_timeout = Duration::from_secs(3);
    c.handshake_timeout = Duration::from_secs(3);
    c
}

fn node_config(dir: &Path, bookd: SocketAddr, name: &str) -> SubscriberConfig {
    let mut c = SubscriberConfig::new(bookd.to_string(), dir, name);
    c.silence_timeout = Duration::from_millis(1500);
    c.connect_timeout = Duration::from_secs(2);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(300);
    c.refresh_interval = Duration::from_millis(20);
    c
}

fn start_node(dir: &Path, bookd: SocketAddr, name: &str) -> Result<Node> {
    let target = Arc::new(TestTarget(Mutex::new(Arc::new(TestView {
        overlay: Overlay::new(),
    }))));
    let (stop, rx) = watch::channel(false);
    let (handle, task) = subscriber::spawn(node_config(dir, bookd, name), target.clone(), rx)
        .with_context(|| format!("subscriber {name}"))?;
    Ok(Node {
        name: name.to_string(),
        target,
        handle,
        stop,
        task,
    })
}

/// The first difference between a node (held state and overlay) and the feed, if any.
fn difference(state: &BTreeMap<LegKey, u16>, node: &Node) -> Option<String> {
    let held = node.handle.entries();
    if held.len() != state.len() {
        return Some(format!(
            "{}: holds {} entries, the feed {}",
            node.name,
            held.len(),
            state.len()
        ));
    }
    let view = node.target.current();
    for (k, &seats) in state {
        match held.get(k) {
            Some(&(s, _)) if s == seats => {}
            other => {
                return Some(format!(
                    "{}: {k:?} holds {other:?}, feed {seats}",
                    node.name
                ))
            }
        }
        let got = overlay_key(k).and_then(|ok| view.overlay.seats(ok));
        if got != Some(seats) {
            return Some(format!(
                "{}: overlay {k:?} = {got:?}, feed {seats}",
                node.name
            ));
        }
    }
    None
}

/// Waits (bounded) until every node has applied `seq`; returns each node's time to do so,
/// measured from `from`.
async fn wait_applied(
    nodes: &[Node],
    seq: u64,
    from: Instant,
    within: Duration,
) -> Result<Vec<Duration>> {
    let deadline = Instant::now() + within;
    let mut done: Vec<Option<Duration>> = vec![None; nodes.len()];
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if done[i].is_none() && n.applied() >= seq {
                done[i] = Some(from.elapsed());
            }
        }
        if done.iter().all(Option::is_some) {
            return Ok(done.into_iter().flatten().collect());
        }
        if Instant::now() >= deadline {
            let at: Vec<String> = nodes
                .iter()
                .map(|n| format!("{}={}", n.name, n.applied()))
                .collect();
            bail!(
                "nodes did not apply seq {seq} in {within:?}: {}",
                at.join(" ")
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

async fn run(args: Args) -> Result<()> {
    if args.nodes == 0 || args.nodes > 16 {
        bail!("--nodes must be 1 to 16");
    }
    if args.keys == 0 || args.keys > 26_000 {
        bail!("--keys must be 1 to 26000");
    }
    match args.feed.as_str() {
        "memory" => {}
        "pg" => return run_pg(args).await,
        other => bail!("--feed {other:?}: memory or pg"),
    }
    let within = Duration::from_secs(args.timeout);
    let tmp = tempfile::tempdir().context("tempdir")?;
    let dir: PathBuf = tmp.path().join("cluster");
    certs::init(&dir).context("certs init")?;
    for n in 1..=args.nodes {
        certs::issue(&dir, &format!("n{n}")).context("certs issue")?;
    }

    // Retain everything: a node that falls behind replays instead of needing a full state.
    let feed = Arc::new(MemoryFeed::new(args.changes + args.keys as usize + 16));
    // Every leg class exists before the nodes connect (they start from a full state).
    let initial: Vec<(LegKey, u16)> = (0..args.keys).map(|i| (key(i), 9)).collect();
    feed.set_many(&initial);
    let publisher = Publisher::start(
        publisher_config(&dir, "127.0.0.1:0".parse().context("addr")?),
        feed.clone(),
    )
    .await
    .context("publisher starts")?;
    let addr = publisher.local_addr().context("publisher address")?;
    let mut nodes = Vec::new();
    for i in 1..=args.nodes {
        nodes.push(start_node(&dir, addr, &format!("n{i}"))?);
    }
    let base = feed.current_seq();
    wait_applied(&nodes, base, Instant::now(), within)
        .await
        .context("initial state")?;
    let stats = publisher.stats();
    let snap = |nodes: &[Node]| -> [u64; 8] {
        let mut out = [0u64; 8];
        out[0] = stats.queue_overflows.load(Ordering::Relaxed);
        out[1] = stats.slow_disconnects.load(Ordering::Relaxed);
        out[2] = stats.full_states_sent.load(Ordering::Relaxed);
        out[3] = stats.replays.load(Ordering::Relaxed);
        for n in nodes {
            let st = n.handle.status();
            out[4] += st.gaps.load(Ordering::Relaxed);
            out[5] += st.full_states.load(Ordering::Relaxed);
            out[6] += st.reconnects.load(Ordering::Relaxed);
            out[7] += st.frames_refused.load(Ordering::Relaxed);
        }
        out
    };
    let before = snap(&nodes);
    let frames_before = stats.frames_sent.load(Ordering::Relaxed);

    // Changes are generated up front so the push measures the feed, not the generator.
    let mut rng = Rng(args.seed);
    let batches: Vec<Vec<(LegKey, u16)>> = (0..args.changes.div_ceil(args.batch.max(1)))
        .map(|b| {
            let n = args.batch.max(1).min(args.changes - b * args.batch.max(1));
            rng.changes(n, args.keys)
        })
        .collect();
    let last = base + args.changes as u64;

    // The producer is a plain thread, as bookd's committing request handlers are not the
    // publisher's runtime; it pushes as fast as `set_many` returns.
    let started = Instant::now();
    let producer = {
        let feed = feed.clone();
        std::thread::spawn(move || {
            for b in &batches {
                feed.set_many(b);
            }
            started.elapsed()
        })
    };
    let per_node = wait_applied(&nodes, last, started, within).await;
    let push = producer
        .join()
        .map_err(|_| anyhow::anyhow!("producer panicked"))?;
    let per_node = per_node?;
    let after = snap(&nodes);
    let frames = stats.frames_sent.load(Ordering::Relaxed) - frames_before;

    // Correctness: every node equals the feed entry by entry.
    let mut equal = true;
    for n in &nodes {
        if let Some(d) = difference(&feed.state(), n) {
            eprintln!("MISMATCH {d}");
            equal = false;
        }
    }

    let all = per_node.iter().copied().max().unwrap_or_default();
    println!(
        "invalidation_throughput: {} nodes, {} changes over {} leg classes, batches of {} (in-memory feed, QUIC on 127.0.0.1)",
        args.nodes, args.changes, args.keys, args.batch
    );
    println!(
        "feed accepted {} changes in {:.3} s = {:.0} changes/s",
        args.changes,
        push.as_secs_f64(),
        rate(args.changes, push)
    );
    for (n, d) in nodes.iter().zip(&per_node) {
        println!(
            "  {}: last seq applied after {:.3} s = {:.0} invalidations/s",
            n.name,
            d.as_secs_f64(),
            rate(args.changes, *d)
        );
    }
    println!(
        "all {} nodes at seq {last} after {:.3} s: {:.0} invalidations/s per node (slowest), {:.0}/s in total",
        args.nodes,
        all.as_secs_f64(),
        rate(args.changes, all),
        rate(args.changes * args.nodes, all)
    );
    println!(
        "frames sent to nodes {frames} ({:.0} entries per frame); queue overflows {}, slow disconnects {}, full states sent {}, replays {}; node gaps {}, full states {}, reconnects {}, frames refused {}",
        (args.changes * args.nodes) as f64 / frames.max(1) as f64,
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
        after[3] - before[3],
        after[4] - before[4],
        after[5] - before[5],
        after[6] - before[6],
        after[7] - before[7],
    );
    println!(
        "nodes equal the feed entry by entry: {}",
        if equal { "yes" } else { "NO" }
    );
    for n in nodes {
        n.stop().await;
    }
    publisher.shutdown().await;
    if !equal {
        bail!("a node differs from the feed");
    }
    Ok(())
}

/// A leg class as bookd's `inventory` table stores it.
struct PgKey {
    carrier: String,
    number: i32,
    date: String,
    origin: String,
    class: String,
}

fn pg_key(k: &LegKey) -> PgKey {
    PgKey {
        carrier: format::model::carrier_str(&k.carrier).to_string(),
        number: i32::from(k.flight_number),
        date: format::date::format_iso(k.date),
        origin: String::from_utf8_lossy(&k.origin).into_owned(),
        class: (k.booking_class as char).to_string(),
    }
}

/// Sells (+1) or releases (-1) one seat on each leg class of `keys`, guarded as bookd's
/// `adjust` guards (`sold + held <= capacity`, `sold >= 0`); returns each updated row's
/// key and seats remaining.
const ADJUST_SQL: &str = "UPDATE inventory v SET sold = v.sold + d.delta
     FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::int[])
          AS d(carrier, flight_number, dep_date, origin, booking_class, delta)
     WHERE v.carrier = d.carrier AND v.flight_number = d.flight_number
       AND v.dep_date = d.dep_date::date AND v.origin = d.origin
       AND v.booking_class = d.booking_class
       AND v.capacity - v.sold - v.held >= d.delta AND v.sold + d.delta >= 0
     RETURNING v.carrier, v.flight_number, v.dep_date::text, v.origin, v.booking_class,
               v.capacity - v.sold - v.held";

/// bookd's inventory as `LegKey -> seats remaining`, with the outbox head, read in one
/// snapshot.
async fn db_state(client: &mut tokio_postgres::Client) -> Result<(BTreeMap<LegKey, u16>, u64)> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head: i64 = tx
        .query_one("SELECT seq FROM outbox_head", &[])
        .await?
        .get(0);
    let rows = tx
        .query(
            "SELECT carrier, flight_number, dep_date - DATE '1970-01-01', origin, booking_class,
                    capacity - sold - held FROM inventory",
            &[],
        )
        .await?;
    tx.commit().await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let (carrier, number, day, origin, class, left): (String, i32, i32, String, String, i32) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let key = LegKey {
            carrier: format::model::carrier_code(&carrier).context("carrier")?,
            flight_number: u16::try_from(number)?,
            date: day,
            origin: origin.as_bytes().try_into().context("origin")?,
            booking_class: *class.as_bytes().first().context("class")?,
        };
        out.insert(key, u16::try_from(left.max(0))?);
    }
    Ok((out, u64::try_from(head)?))
}

/// `--feed pg`: see the module documentation.
async fn run_pg(args: Args) -> Result<()> {
    use bookd::outbox_feed::{self, OutboxBatch, PgFeed, SeqSignal};
    if args.writers == 0 || args.writers > 64 {
        bail!("--writers must be 1 to 64");
    }
    if args.capacity < 2 || args.capacity > i32::from(u16::MAX) {
        bail!("--capacity must be 2 to 65535");
    }
    if args.path != "head" && args.path != "sequencer" {
        bail!("--path {:?}: head or sequencer", args.path);
    }
    let batch = args.batch.clamp(1, 16_384);
    if batch * args.writers > args.keys as usize {
        bail!("--batch x --writers must not exceed --keys (a batch's leg classes are distinct)");
    }
    let within = Duration::from_secs(args.timeout);
    let tmp = tempfile::tempdir().context("tempdir")?;
    // The cluster user must traverse the temporary directory.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .context("chmod tempdir")?;
    let dir: PathBuf = tmp.path().join("cluster");
    certs::init(&dir).context("certs init")?;
    for n in 1..=args.nodes {
        certs::issue(&dir, &format!("n{n}")).context("certs issue")?;
    }
    let state_dir = tmp.path().join("state");
    let t = Instant::now();
    let embedded = tokio::task::spawn_blocking(move || bookd::pg::Embedded::start(&state_dir))
        .await?
        .map_err(|e| anyhow::anyhow!("starting the embedded PostgreSQL: {e}"))?;
    let pool = bookd::db::pool(embedded.layout.pg_config(), args.writers + 6)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    bookd::db::migrate(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("migrations: {e}"))?;
    let (mut check_db, conn) = embedded
        .layout
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .context("connect")?;
    let conn_task = tokio::spawn(conn);
    let settings: Vec<String> = {
        let mut v = Vec::new();
        for s in ["synchronous_commit", "fsync", "wal_level", "shared_buffers"] {
            let r = check_db.query_one(&format!("SHOW {s}"), &[]).await?;
            v.push(format!("{s}={}", r.get::<_, String>(0)));
        }
        v
    };
    eprintln!(
        "embedded PostgreSQL up and migrated in {:.2} s ({})",
        t.elapsed().as_secs_f64(),
        settings.join(" ")
    );

    // Every leg class exists (half sold) and has an outbox row before the nodes connect.
    let keys: Vec<LegKey> = (0..args.keys).map(key).collect();
    let cols: Vec<PgKey> = keys.iter().map(pg_key).collect();
    let carriers: Vec<&str> = cols.iter().map(|c| c.carrier.as_str()).collect();
    let numbers: Vec<i32> = cols.iter().map(|c| c.number).collect();
    let dates: Vec<&str> = cols.iter().map(|c| c.date.as_str()).collect();
    let origins: Vec<&str> = cols.iter().map(|c| c.origin.as_str()).collect();
    let classes: Vec<&str> = cols.iter().map(|c| c.class.as_str()).collect();
    check_db
        .execute(
            "INSERT INTO inventory (carrier, flight_number, dep_date, origin, booking_class,
                                    capacity, sold)
             SELECT c, f, d::date, o, b, $6::int, $7::int
             FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[])
                  AS t(c, f, d, o, b)",
            &[
                &carriers,
                &numbers,
                &dates,
                &origins,
                &classes,
                &args.capacity,
                &(args.capacity / 2),
            ],
        )
        .await
        .context("seeding the inventory")?;
    {
        let mut client = pool.get().await.context("pool")?;
        let tx = client.transaction().await?;
        let zero = vec![0i32; keys.len()];
        let rows = tx
            .query(
                ADJUST_SQL,
                &[&carriers, &numbers, &dates, &origins, &classes, &zero],
            )
            .await?;
        let mut ob = OutboxBatch::new();
        for r in &rows {
            ob.push(
                r.get::<_, &str>(0),
                r.get(1),
                r.get::<_, &str>(2),
                r.get::<_, &str>(3),
                r.get::<_, &str>(4),
                r.get(5),
                "seed",
            );
        }
        outbox_feed::write_batch(&tx, &ob).await?;
        tx.commit().await?;
    }
    let head = outbox_feed::read_head(&pool.get().await.context("pool")?).await?;
    let signal = SeqSignal::new(head);
    let (stop_tx, stop_rx) = watch::channel(false);
    // bookd's sequencer on its own connection, as bookd runs it.
    let (sequencer, sequencer_task) = if args.path == "sequencer" {
        let seq_pool =
            bookd::db::pool(embedded.layout.pg_config(), 1).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (sq, task) = bookd::sequencer::Sequencer::start(
            seq_pool,
            signal.clone(),
            Duration::from_millis(200),
            stop_rx.clone(),
        );
        (Some(sq), Some(task))
    } else {
        (None, None)
    };
    let (feed, poller) = PgFeed::start(
        pool.clone(),
        signal.clone(),
        Duration::from_millis(200),
        stop_rx,
    );
    let publisher = Publisher::start(
        publisher_config(&dir, "127.0.0.1:0".parse().context("addr")?),
        feed,
    )
    .await
    .context("publisher starts")?;
    let addr = publisher.local_addr().context("publisher address")?;
    let mut nodes = Vec::new();
    for i in 1..=args.nodes {
        nodes.push(start_node(&dir, addr, &format!("n{i}"))?);
    }
    wait_applied(&nodes, head, Instant::now(), within)
        .await
        .context("initial state")?;
    let stats = publisher.stats();
    let frames_before = stats.frames_sent.load(Ordering::Relaxed);
    let overflows_before = stats.queue_overflows.load(Ordering::Relaxed);
    let replays_before = stats.replays.load(Ordering::Relaxed);
    let full_before = stats.full_states_sent.load(Ordering::Relaxed);

    // Commit -> applied on every node: commits are recorded after COMMIT returns; a
    // monitor thread polls the nodes' applied seqs (every 200 us) and matches them.
    let commits: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let statuses: Vec<_> = nodes.iter().map(|n| n.handle.status()).collect();
    let monitor_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = {
        let commits = commits.clone();
        let stop = monitor_stop.clone();
        std::thread::spawn(move || {
            let mut pending: Vec<(u64, Instant)> = Vec::new();
            let mut lat: Vec<u64> = Vec::new();
            loop {
                let done = stop.load(Ordering::Relaxed);
                if let Ok(mut c) = commits.lock() {
                    pending.append(&mut c);
                }
                let applied = statuses
                    .iter()
                    .map(|s| s.last_applied_seq.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                let now = Instant::now();
                pending.retain(|&(seq, at)| {
                    if seq <= applied {
                        lat.push(now.saturating_duration_since(at).as_micros() as u64);
                        false
                    } else {
                        true
                    }
                });
                if done && pending.is_empty() {
                    return lat;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };

    let per_writer = args.changes.div_ceil(args.writers);
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..args.writers {
        let mine: Vec<usize> = (0..keys.len()).filter(|i| i % args.writers == w).collect();
        let cols: Vec<PgKey> = mine.iter().map(|&i| pg_key(&keys[i])).collect();
        let pool = pool.clone();
        let signal = signal.clone();
        let commits = commits.clone();
        let sequencer = sequencer.clone();
        let capacity = args.capacity;
        let mut rng = Rng(args.seed.wrapping_mul(1000).wrapping_add(w as u64));
        let todo = per_writer.min(args.changes.saturating_sub(w * per_writer));
        writers.push(tokio::spawn(async move {
            let mut sold = vec![capacity / 2; cols.len()];
            let mut perm: Vec<usize> = (0..cols.len()).collect();
            let mut done = 0usize;
            let mut txns = 0u64;
            while done < todo {
                let n = batch.min(todo - done).min(cols.len());
                // n distinct leg classes: a partial Fisher-Yates shuffle.
                for i in 0..n {
                    let j = i + (rng.next() % (perm.len() - i) as u64) as usize;
                    perm.swap(i, j);
                }
                let pick = &perm[..n];
                let mut deltas = Vec::with_capacity(n);
                for &i in pick {
                    let d = if sold[i] == 0 {
                        1
                    } else if sold[i] >= capacity {
                        -1
                    } else if rng.next().is_multiple_of(2) {
                        1
                    } else {
                        -1
                    };
                    sold[i] += d;
                    deltas.push(d);
                }
                let c: Vec<&str> = pick.iter().map(|&i| cols[i].carrier.as_str()).collect();
                let f: Vec<i32> = pick.iter().map(|&i| cols[i].number).collect();
                let d: Vec<&str> = pick.iter().map(|&i| cols[i].date.as_str()).collect();
                let o: Vec<&str> = pick.iter().map(|&i| cols[i].origin.as_str()).collect();
                let b: Vec<&str> = pick.iter().map(|&i| cols[i].class.as_str()).collect();
                let mut client = pool.get().await.map_err(|e| anyhow::anyhow!("pool: {e}"))?;
                let tx = client.transaction().await?;
                let stmt = tx.prepare_cached(ADJUST_SQL).await?;
                let rows = tx.query(&stmt, &[&c, &f, &d, &o, &b, &deltas]).await?;
                if rows.len() != n {
                    bail!("{} of {n} leg classes updated", rows.len());
                }
                let mut ob = OutboxBatch::new();
                let mut pb = bookd::sequencer::PendingBatch::new();
                for r in &rows {
                    let (carrier, number, date, origin, class, left): (
                        &str,
                        i32,
                        &str,
                        &str,
                        &str,
                        i32,
                    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
                    if sequencer.is_some() {
                        pb.push(carrier, number, date, origin, class, left, "bench");
                    } else {
                        ob.push(carrier, number, date, origin, class, left, "bench");
                    }
                }
                let seq = match &sequencer {
                    None => {
                        let seq = outbox_feed::write_batch(&tx, &ob).await?;
                        tx.commit().await?;
                        seq
                    }
                    Some(_) => {
                        bookd::sequencer::write_pending(&tx, &pb).await?;
                        tx.commit().await?;
                        None
                    }
                };
                let at = Instant::now();
                let seq = match &sequencer {
                    None => seq,
                    // As the service: wait until a move that started after this COMMIT
                    // has numbered it; the head is then at or above its seqs.
                    Some(sq) => {
                        sq.sequenced(Duration::from_secs(5)).await;
                        Some(signal.current())
                    }
                };
                if let Some(seq) = seq {
                    signal.advance(seq);
                    if let Ok(mut v) = commits.lock() {
                        v.push((seq, at));
                    }
                }
                done += n;
                txns += 1;
            }
            anyhow::Ok((done, txns))
        }));
    }
    let mut total = 0usize;
    let mut txns = 0u64;
    for w in writers {
        let (n, t) = w.await??;
        total += n;
        txns += t;
    }
    let committed = started.elapsed();
    let last = signal.current();
    let per_node = wait_applied(&nodes, last, started, within).await?;
    monitor_stop.store(true, Ordering::Relaxed);
    let mut lat = monitor
        .join()
        .map_err(|_| anyhow::anyhow!("monitor panicked"))?;
    lat.sort_unstable();
    let frames = stats.frames_sent.load(Ordering::Relaxed) - frames_before;

    // Correctness: every node equals the inventory table entry by entry.
    let (db, db_head) = db_state(&mut check_db).await?;
    if db_head != last {
        bail!("outbox head {db_head}, the writers' last seq {last}");
    }
    let mut equal = true;
    for n in &nodes {
        if let Some(d) = difference(&db, n) {
            eprintln!("MISMATCH {d}");
            equal = false;
        }
    }

    let all = per_node.iter().copied().max().unwrap_or_default();
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "invalidation_throughput --feed pg --path {}: {} nodes, {total} changes over {} leg classes in {txns} transactions of up to {batch} by {} writers (bookd's outbox feed on the embedded PostgreSQL, {}; QUIC on 127.0.0.1)",
        args.path,
        args.nodes,
        args.keys,
        args.writers,
        settings.join(" ")
    );
    println!(
        "committed {total} changes in {:.3} s = {:.0} changes/s ({:.0} transactions/s)",
        committed.as_secs_f64(),
        rate(total, committed),
        txns as f64 / committed.as_secs_f64().max(1e-9)
    );
    for (n, d) in nodes.iter().zip(&per_node) {
        println!(
            "  {}: last seq applied after {:.3} s = {:.0} invalidations/s",
            n.name,
            d.as_secs_f64(),
            rate(total, *d)
        );
    }
    println!(
        "all {} nodes at seq {last} after {:.3} s: {:.0} invalidations/s per node (slowest), {:.0}/s in total",
        args.nodes,
        all.as_secs_f64(),
        rate(total, all),
        rate(total * args.nodes, all)
    );
    println!(
        "commit -> applied on all {} nodes, per transaction (n {}): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.nodes,
        lat.len(),
        ms(benches::quantile(&lat, 0.5)),
        ms(benches::quantile(&lat, 0.9)),
        ms(benches::quantile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or(0)),
    );
    println!(
        "frames sent to nodes {frames}; queue overflows {}, replays {}, full states sent {}",
        stats.queue_overflows.load(Ordering::Relaxed) - overflows_before,
        stats.replays.load(Ordering::Relaxed) - replays_before,
        stats.full_states_sent.load(Ordering::Relaxed) - full_before,
    );
    println!(
        "nodes equal the inventory table entry by entry ({} leg classes): {}",
        db.len(),
        if equal { "yes" } else { "NO" }
    );
    for n in nodes {
        n.stop().await;
    }
    publisher.shutdown().await;
    stop_tx.send_replace(true);
    let _ = poller.await;
    if let Some(t) = sequencer_task {
        let _ = t.await;
    }
    pool.close();
    drop(check_db);
    conn_task.abort();
    drop(embedded);
    if !equal {
        bail!("a node differs from the inventory table");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Two workers, as the channel tests (and the 2-core machine).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(args))
}
