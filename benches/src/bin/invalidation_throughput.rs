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
fn difference(feed: &MemoryFeed, node: &Node) -> Option<String> {
    let state = feed.state();
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
    for (k, &seats) in &state {
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
        if let Some(d) = difference(&feed, n) {
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
