//! Search latency on a searchd node while bookd's invalidations stream into its overlay.
//!
//! One process, one snapshot loaded as searchd loads it (`searchd::server::state::load`,
//! which also prepares the engine). The engine runs the `benches::Workload` searches
//! (direct, priced 1-stop, as `engine_latency` does) on the main thread, in three phases:
//!
//! - `A`: empty overlay, no stream (the baseline: every seat lookup is one atomic load);
//! - `B`: the overlay filled by the subscriber (a full state over QUIC) with every leg class
//!   of the pool, no stream (the cost of a non-empty overlay);
//! - `C`: the same, while a producer thread pushes `--rate` absolute seat changes per second
//!   into bookd's `MemoryFeed`, fanned out by `bookd::quic::Publisher` over QUIC (mutual
//!   TLS, certificates from `bookd::certs`) to the node's `searchd::subscriber`, which
//!   resolves each leg key through the snapshot (`subscriber::resolve_leg`) and applies it
//!   to the overlay the searches read.
//!
//! The key pool: the snapshot's own availability keys (real leg classes) whose base day is
//! the workload's search date +-1, decoded into leg keys and kept only when
//! `resolve_leg` maps them back to the same overlay key. Seat values are drawn from 0-9,
//! so some classes searches price are sold out, in `B` and `C` alike. Afterwards the node's
//! overlay is compared with the feed entry by entry.
//!
//! With `--nodes N`, N-1 more nodes (each its own `Loaded` of the same snapshot, its own
//! certificate and subscriber) take the same stream on the same cores, as 4 searchd nodes
//! subscribed to one bookd would on one machine; the searches run on the first node, and
//! every node's overlay is compared with the feed at the end.
//!
//! `search_under_invalidations --snapshot /tmp/snap-global [-n 20000] [--rate 60000] [--nodes 4]`

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use benches::{now_utc_min, quantile, Workload};
use bookd::quic::{InventoryFeed, MemoryFeed, Publisher, PublisherConfig};
use clap::Parser;
use format::wire::LegKey;
use searchd::engine::{self, Clock, SearchQuery};
use searchd::server::state::Loaded;
use searchd::subscriber::{self, OverlayTarget, SubscriberConfig};
use tokio::sync::watch;

#[derive(Parser)]
#[command(about = "search latency with and without invalidations streaming into the overlay")]
struct Args {
    /// Snapshot directory.
    #[arg(long)]
    snapshot: PathBuf,
    /// Searches per kind and phase (rotating over the kind's pairs).
    #[arg(short, default_value_t = 20_000)]
    n: usize,
    /// Seat changes per second pushed during phase C.
    #[arg(long, default_value_t = 60_000)]
    rate: u64,
    /// Changes per `set_many` call (one commit).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Most leg classes in the pool.
    #[arg(long, default_value_t = 2_000_000)]
    max_keys: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Subscribed searchd nodes (1-8); the searches run on the first.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
}

/// Most `--nodes` (each holds a prepared snapshot of its own).
const MAX_NODES: usize = 8;

/// The node's snapshot in service: one `Loaded`, never swapped.
struct One(Arc<Loaded>);

impl OverlayTarget for One {
    type View = Loaded;
    fn current(&self) -> Arc<Loaded> {
        self.0.clone()
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Real leg classes of the snapshot around day index `day`: (leg key, overlay key).
fn key_pool(loaded: &Loaded, day: i64, max: usize) -> (Vec<(LegKey, u64)>, usize) {
    let snap = &loaded.snap;
    let net = snap.network.get();
    let places = snap.places.get();
    let first_day = i64::from(net.first_day.to_native());
    let mut out = Vec::new();
    let mut dropped = 0usize;
    for k in snap.availability.get().keys.iter().map(|k| k.to_native()) {
        let d = i64::from(((k >> 8) & 0xffff) as u16);
        if (d - day).abs() > 1 {
            continue;
        }
        let flight = (k >> 32) as usize;
        let leg = ((k >> 24) & 0xff) as usize;
        let class = (k & 0xff) as u8;
        let Some(f) = net.flights.get(flight) else {
            dropped += 1;
            continue;
        };
        let Some(l) = net.flight_legs(f).get(leg) else {
            dropped += 1;
            continue;
        };
        let (Some(carrier), Some(origin)) = (
            net.carriers.get(f.carrier.to_native() as usize),
            places.airports.get(l.dep.to_native() as usize),
        ) else {
            dropped += 1;
            continue;
        };
        let local = i64::from(l.dep_utc_min.to_native()) + i64::from(l.dep_offset_min.to_native());
        let key = LegKey {
            carrier: *carrier,
            flight_number: f.number.to_native(),
            date: (first_day + d + local.div_euclid(1440)) as i32,
            origin: origin.iata,
            booking_class: class,
        };
        // Only keys bookd could name unambiguously (the first flight of a number wins).
        if subscriber::resolve_leg(snap, &key) == Some(k) {
            out.push((key, k));
        } else {
            dropped += 1;
        }
        if out.len() >= max {
            break;
        }
    }
    (out, dropped)
}

struct Lat {
    direct: Vec<u64>,
    one_stop: Vec<u64>,
    /// The 1-stop pair whose searches took longest in total (its index in the workload's
    /// pairs) and its own sorted latencies: the mix's p99 lies in its distribution.
    slowest: (usize, Vec<u64>),
}

fn measure(
    loaded: &Loaded,
    clock: Clock,
    n: usize,
    direct: &[SearchQuery],
    one: &[SearchQuery],
) -> Lat {
    let run = |qs: &[SearchQuery]| {
        for q in qs {
            for _ in 0..3 {
                std::hint::black_box(engine::run_search(&loaded.snap, &loaded.overlay, clock, q));
            }
        }
        let mut v = Vec::with_capacity(n);
        let mut per_pair = vec![Vec::with_capacity(n / qs.len() + 1); qs.len()];
        for i in 0..n {
            let q = &qs[i % qs.len()];
            let t = Instant::now();
            let r = engine::run_search(&loaded.snap, &loaded.overlay, clock, q);
            let ns = t.elapsed().as_nanos() as u64;
            v.push(ns);
            per_pair[i % qs.len()].push(ns);
            std::hint::black_box(r);
        }
        v.sort_unstable();
        let slowest = per_pair
            .into_iter()
            .enumerate()
            .max_by_key(|(_, l)| l.iter().sum::<u64>())
            .map(|(i, mut l)| {
                l.sort_unstable();
                (i, l)
            })
            .unwrap_or_default();
        (v, slowest)
    };
    let (direct, _) = run(direct);
    let (one_stop, slowest) = run(one);
    Lat {
        direct,
        one_stop,
        slowest,
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn print_phase(name: &str, l: &Lat, pairs: &[(String, String)]) {
    let (i, slow) = &l.slowest;
    let pair = pairs
        .get(*i)
        .map_or(String::new(), |(o, d)| format!("{o}-{d}"));
    println!(
        "{name}: slowest 1-stop pair {pair} p50 {:.1} us p90 {:.1} us p99 {:.1} us",
        us(quantile(slow, 0.5)),
        us(quantile(slow, 0.9)),
        us(quantile(slow, 0.99)),
    );
    println!(
        "{name}: direct p50 {:.1} us p99 {:.1} us | 1-stop priced p50 {:.1} us p90 {:.1} us p99 {:.1} us max {:.1} us",
        us(quantile(&l.direct, 0.5)),
        us(quantile(&l.direct, 0.99)),
        us(quantile(&l.one_stop, 0.5)),
        us(quantile(&l.one_stop, 0.9)),
        us(quantile(&l.one_stop, 0.99)),
        us(l.one_stop.last().copied().unwrap_or(0)),
    );
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.n == 0 || args.batch == 0 || args.rate == 0 {
        bail!("-n, --batch and --rate must be positive");
    }
    if !(1..=MAX_NODES).contains(&args.nodes) {
        bail!("--nodes must be 1 to {MAX_NODES}");
    }
    let t = Instant::now();
    let loaded = searchd::server::state::load(&args.snapshot, 1)
        .map_err(|e| anyhow!("{}: {}", args.snapshot.display(), e.message()))?;
    let loaded = Arc::new(loaded);
    eprintln!("loaded and prepared in {:?}", t.elapsed());
    let w = Workload::new(&loaded.snap);
    let parse = |qs: Vec<Vec<(String, String)>>| -> Result<Vec<SearchQuery>> {
        qs.iter()
            .map(|p| engine::parse_search(&loaded.snap, p).map_err(|e| anyhow!("{p:?}: {e:?}")))
            .collect()
    };
    let direct = parse(w.direct_pairs.iter().map(|(o, d)| w.direct(o, d)).collect())?;
    let one = parse(
        w.one_stop_pairs
            .iter()
            .map(|(o, d)| w.one_stop(o, d))
            .collect(),
    )?;
    let clock = Clock {
        now_utc_min: now_utc_min(),
    };
    let net = loaded.snap.network.get();
    let search_day = i64::from(format::date::parse_iso(&w.date).context("workload date")?)
        - i64::from(net.first_day.to_native());
    let t = Instant::now();
    let (pool, dropped) = key_pool(&loaded, search_day, args.max_keys);
    if pool.is_empty() {
        bail!("no availability keys around {}", w.date);
    }
    println!(
        "snapshot {} ({}); search date {}; key pool: {} leg classes with base day {} +-1 ({} dropped: ambiguous or unresolvable), built in {:.2} s",
        args.snapshot.display(),
        loaded.id(),
        w.date,
        pool.len(),
        format::date::format_iso(net.first_day.to_native() + search_day as i32),
        dropped,
        t.elapsed().as_secs_f64()
    );

    // ---- A: empty overlay, no stream.
    let a = measure(&loaded, clock, args.n, &direct, &one);
    print_phase(
        "A  empty overlay, no stream          ",
        &a,
        &w.one_stop_pairs,
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let tmp = tempfile::tempdir().context("tempdir")?;
    let dir = tmp.path().join("cluster");
    bookd::certs::init(&dir).context("certs init")?;
    // The other nodes' snapshots are loaded now, so that loading does not overlap phase B.
    let mut node_views = vec![loaded.clone()];
    for i in 2..=args.nodes {
        let l = searchd::server::state::load(&args.snapshot, 1)
            .map_err(|e| anyhow!("loading node n{i}: {}", e.message()))?;
        node_views.push(Arc::new(l));
    }
    for i in 1..=args.nodes {
        bookd::certs::issue(&dir, &format!("n{i}")).context("certs issue")?;
    }
    let feed = Arc::new(MemoryFeed::new(4_000_000));
    let mut rng = Rng(args.seed);
    let initial: Vec<(LegKey, u16)> = pool
        .iter()
        .map(|&(k, _)| (k, (rng.next() % 10) as u16))
        .collect();
    feed.set_many(&initial);
    let (publisher, handles, stop_tx, tasks) = rt.block_on(async {
        let mut pc = PublisherConfig::new("127.0.0.1:0".parse()?, dir.clone());
        pc.heartbeat = Duration::from_millis(100);
        let publisher = Publisher::start(pc, feed.clone()).await?;
        let addr = publisher.local_addr().context("publisher address")?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (mut handles, mut tasks) = (Vec::new(), Vec::new());
        for (i, view) in node_views.iter().enumerate() {
            let mut sc = SubscriberConfig::new(addr.to_string(), &dir, format!("n{}", i + 1));
            sc.silence_timeout = Duration::from_millis(1500);
            let (handle, task) =
                subscriber::spawn(sc, Arc::new(One(view.clone())), stop_rx.clone())
                    .map_err(|e| anyhow!("{e}"))?;
            handles.push(handle);
            tasks.push(task);
        }
        anyhow::Ok((publisher, handles, stop_tx, tasks))
    })?;
    let statuses: Vec<_> = handles.iter().map(|h| h.status()).collect();
    // The measured node's.
    let status = statuses[0].clone();
    let wait_seq = |seq: u64, within: Duration| -> Result<()> {
        let deadline = Instant::now() + within;
        for (i, st) in statuses.iter().enumerate() {
            while st.last_applied_seq.load(Ordering::Relaxed) < seq {
                if Instant::now() > deadline {
                    bail!("node n{} did not apply seq {seq} within {within:?}", i + 1);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    };
    wait_seq(feed.current_seq(), Duration::from_secs(120))?;
    println!(
        "{} node(s) synced: {} overlay entries each (from a full state over QUIC)",
        args.nodes,
        loaded.overlay.len()
    );

    // ---- B: filled overlay, no stream.
    let b = measure(&loaded, clock, args.n, &direct, &one);
    print_phase(
        "B  filled overlay, no stream         ",
        &b,
        &w.one_stop_pairs,
    );

    // ---- C: filled overlay, changes streaming in at --rate.
    let stop = Arc::new(AtomicBool::new(false));
    let seq_before = feed.current_seq();
    let applied_before = status.entries_applied.load(Ordering::Relaxed);
    let producer = {
        let feed = feed.clone();
        let stop = stop.clone();
        let keys: Vec<LegKey> = pool.iter().map(|&(k, _)| k).collect();
        let (rate, batch) = (args.rate, args.batch);
        let mut rng = Rng(args.seed ^ 0x5eed);
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut pushed = 0u64;
            let mut buf = Vec::with_capacity(batch);
            while !stop.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                while pushed + batch as u64 <= due {
                    buf.clear();
                    for _ in 0..batch {
                        let k = keys[(rng.next() % keys.len() as u64) as usize];
                        buf.push((k, (rng.next() % 10) as u16));
                    }
                    feed.set_many(&buf);
                    pushed += batch as u64;
                }
                // Sleep until the next batch is due: bookd commits a batch at a time, and
                // waking in between would only take the searches' cores for nothing.
                let next = (pushed + batch as u64) as f64 / rate as f64;
                let wait = next - started.elapsed().as_secs_f64();
                if wait > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(wait.min(0.01)));
                }
            }
            (pushed, started.elapsed())
        })
    };
    // Let the stream reach its rate before measuring.
    std::thread::sleep(Duration::from_millis(500));
    let c_seq0 = status.last_applied_seq.load(Ordering::Relaxed);
    let c_t0 = Instant::now();
    let c = measure(&loaded, clock, args.n, &direct, &one);
    let c_took = c_t0.elapsed();
    let c_seq1 = status.last_applied_seq.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let (pushed, push_took) = producer.join().map_err(|_| anyhow!("producer panicked"))?;
    print_phase(
        "C  filled overlay, stream at --rate  ",
        &c,
        &w.one_stop_pairs,
    );
    println!(
        "C  stream: {pushed} changes pushed in {:.2} s = {:.0}/s offered; applied by the node during the searches: {} seqs in {:.2} s = {:.0} invalidations/s",
        push_took.as_secs_f64(),
        pushed as f64 / push_took.as_secs_f64().max(1e-9),
        c_seq1 - c_seq0,
        c_took.as_secs_f64(),
        (c_seq1 - c_seq0) as f64 / c_took.as_secs_f64().max(1e-9)
    );
    let last = feed.current_seq();
    let t = Instant::now();
    wait_seq(last, Duration::from_secs(120))?;
    println!(
        "every node at the last seq {} {:.3} s after the producer stopped ({} changes in phase C, {} entries applied by the first)",
        last,
        t.elapsed().as_secs_f64(),
        last - seq_before,
        status.entries_applied.load(Ordering::Relaxed) - applied_before
    );

    // Correctness: every node's overlay equals the feed, entry by entry, through its snapshot.
    let state = feed.state();
    let mut equal = true;
    for (i, view) in node_views.iter().enumerate() {
        let mut mismatches = 0usize;
        for (k, &seats) in &state {
            let got = subscriber::resolve_leg(&view.snap, k).and_then(|ok| view.overlay.seats(ok));
            if got != Some(seats) {
                if mismatches < 5 {
                    eprintln!("MISMATCH n{} {k:?}: overlay {got:?}, feed {seats}", i + 1);
                }
                mismatches += 1;
            }
        }
        let same = mismatches == 0 && view.overlay.len() == state.len();
        equal &= same;
        println!(
            "n{}: overlay equals the feed entry by entry ({} leg classes, overlay {}): {}",
            i + 1,
            state.len(),
            view.overlay.len(),
            if same { "yes" } else { "NO" }
        );
    }
    let ratio = |x: &[u64], y: &[u64], p: f64| quantile(x, p) as f64 / quantile(y, p).max(1) as f64;
    println!(
        "ratios C/A: direct p50 {:.2}, 1-stop p50 {:.2}, 1-stop p99 {:.2}; C/B: direct p50 {:.2}, 1-stop p50 {:.2}, 1-stop p99 {:.2}",
        ratio(&c.direct, &a.direct, 0.5),
        ratio(&c.one_stop, &a.one_stop, 0.5),
        ratio(&c.one_stop, &a.one_stop, 0.99),
        ratio(&c.direct, &b.direct, 0.5),
        ratio(&c.one_stop, &b.one_stop, 0.5),
        ratio(&c.one_stop, &b.one_stop, 0.99),
    );
    rt.block_on(async {
        stop_tx.send_replace(true);
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        publisher.shutdown().await;
    });
    if !equal {
        bail!("an overlay differs from the feed");
    }
    Ok(())
}
