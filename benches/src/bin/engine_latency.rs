//! Latency distribution of the search engine (in-process, one thread, no HTTP): runs N
//! queries per kind over a fixed list of hub pairs (see `benches::Workload`) and prints
//! p50/p90/p99/max in microseconds. Criterion gives means and medians; this gives the tail.
//!
//! `engine_latency --snapshot /tmp/snap-global [-n 20000]`
//! `engine_latency --snapshot /tmp/snap-global --urls` prints the workload's search URLs
//! (path and query) for an HTTP load generator instead.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use benches::{now_utc_min, quantile, query_string, Workload};
use clap::Parser;
use format::Snapshot;
use searchd::engine::{self, Clock, SearchQuery, Split};
use searchd::overlay::Overlay;

#[derive(Parser)]
struct Args {
    /// Snapshot directory.
    #[arg(long)]
    snapshot: PathBuf,
    /// Queries per kind (rotating over the kind's pairs).
    #[arg(short, default_value_t = 20_000)]
    n: usize,
    /// Calendar requests (31 days each; they are slower, so fewer).
    #[arg(long, default_value_t = 2_000)]
    calendar_n: usize,
    /// Print the workload's search URLs and exit.
    #[arg(long)]
    urls: bool,
    /// Only run `engine::search_raw` (parse + search + JSON bytes, as the server does) this
    /// many times on the first
    /// 1-stop pair and exit: a small workload for `valgrind --tool=callgrind`.
    #[arg(long)]
    json_only: Option<usize>,
    /// Only run the priced 1-stop search (and then the 31-day calendar) of this pair, e.g.
    /// `SDQ-MIA`, `-n` times each, and exit: a small workload for profilers.
    #[arg(long)]
    pair: Option<String>,
    /// Whether a large search may be split over two threads: `auto` (when the process is
    /// otherwise idle, as searchd does), `never` or `always`.
    #[arg(long, default_value = "auto", value_parser = parse_split)]
    split: Split,
}

fn parse_split(s: &str) -> Result<Split, String> {
    match s {
        "auto" => Ok(Split::Auto),
        "never" => Ok(Split::Never),
        "always" => Ok(Split::Always),
        _ => Err(format!("--split wants auto, never or always, got {s:?}")),
    }
}

fn report(name: &str, v: Vec<u64>, results: u64) {
    report_work(name, v, results, None);
}

/// [`report`], with the mean elementary steps (the engine's work budget unit) per query.
fn report_work(name: &str, mut v: Vec<u64>, results: u64, work: Option<u64>) {
    v.sort_unstable();
    let us = |ns: u64| ns as f64 / 1000.0;
    let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64 / 1000.0;
    println!(
        "{name:34} n {:6}  mean {:9.1}  p50 {:9.1}  p90 {:9.1}  p99 {:9.1}  max {:9.1} us  (matching itineraries/query {:.1}){}",
        v.len(),
        mean,
        us(quantile(&v, 0.50)),
        us(quantile(&v, 0.90)),
        us(quantile(&v, 0.99)),
        us(v.last().copied().unwrap_or(0)),
        results as f64 / v.len().max(1) as f64,
        work.map(|w| format!("  steps/query {:.0}", w as f64 / v.len().max(1) as f64))
            .unwrap_or_default(),
    );
}

fn parse_all(snap: &Snapshot, qs: &[Vec<(String, String)>]) -> Result<Vec<SearchQuery>> {
    qs.iter()
        .map(|p| engine::parse_search(snap, p).map_err(|e| anyhow!("{p:?}: {e:?}")))
        .collect()
}

fn run_kind(
    name: &str,
    n: usize,
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    qs: &[SearchQuery],
    split: Split,
) {
    // Warm-up: each query a few times (prepared indexes, scratch buffers, page cache).
    for q in qs {
        for _ in 0..3 {
            std::hint::black_box(engine::run_search_with(snap, overlay, clock, q, split));
        }
    }
    let mut v = Vec::with_capacity(n);
    let mut results = 0u64;
    let mut work = 0u64;
    for i in 0..n {
        let q = &qs[i % qs.len()];
        let t = Instant::now();
        let r = engine::run_search_with(snap, overlay, clock, q, split);
        v.push(t.elapsed().as_nanos() as u64);
        results += r.total;
        work += r.work;
        std::hint::black_box(r);
    }
    if qs.len() > 1 {
        // The slowest query as it ran inside the mix (caches shared with the others), which
        // is what makes the mix's tail; the per-pair runs below run one query back to back.
        let of = |k: usize| -> Vec<u64> { v.iter().skip(k).step_by(qs.len()).copied().collect() };
        let slowest = (0..qs.len())
            .max_by_key(|&k| {
                let mut x = of(k);
                x.sort_unstable();
                quantile(&x, 0.5)
            })
            .unwrap_or(0);
        let mut x = of(slowest);
        x.sort_unstable();
        println!(
            "  slowest query in the mix (#{slowest}): p50 {:.1}  p90 {:.1}  p99 {:.1} us",
            quantile(&x, 0.5) as f64 / 1000.0,
            quantile(&x, 0.9) as f64 / 1000.0,
            quantile(&x, 0.99) as f64 / 1000.0
        );
    }
    report_work(name, v, results, Some(work));
}

fn main() -> Result<()> {
    let args = Args::parse();
    let t = Instant::now();
    let snap = Snapshot::open(&args.snapshot)
        .with_context(|| format!("opening {}", args.snapshot.display()))?;
    let opened = t.elapsed();
    let t = Instant::now();
    engine::prepare(&snap);
    let prepared = t.elapsed();
    let w = Workload::new(&snap);
    if args.urls {
        for (o, d) in &w.direct_pairs {
            println!("/v1/search?{}", query_string(&w.direct(o, d)));
        }
        for (o, d) in &w.one_stop_pairs {
            println!("/v1/search?{}", query_string(&w.one_stop(o, d)));
        }
        return Ok(());
    }
    eprintln!("opened in {opened:?}, prepared in {prepared:?}");
    if let Some(n) = args.json_only {
        let overlay = Overlay::new();
        let clock = Clock {
            now_utc_min: now_utc_min(),
        };
        let (o, d) = &w.one_stop_pairs[0];
        let p = w.one_stop(o, d);
        for _ in 0..n {
            std::hint::black_box(engine::search_raw(&snap, &overlay, clock, &p).is_ok());
        }
        return Ok(());
    }
    if let Some(pair) = &args.pair {
        let (o, d) = pair
            .split_once('-')
            .ok_or_else(|| anyhow!("--pair wants ORIGIN-DESTINATION, got {pair:?}"))?;
        let overlay = Overlay::new();
        let clock = Clock {
            now_utc_min: now_utc_min(),
        };
        let q = parse_all(&snap, &[w.one_stop(o, d)])?;
        run_kind(
            &format!("1-stop {pair}"),
            args.n,
            &snap,
            &overlay,
            clock,
            &q,
            args.split,
        );
        // What the server runs for the request: parse, search and the JSON bytes.
        let params = w.one_stop(o, d);
        let mut v = Vec::with_capacity(args.n);
        for _ in 0..args.n {
            let t = Instant::now();
            let r = engine::search_raw(&snap, &overlay, clock, &params)
                .map_err(|e| anyhow!("search {params:?}: {e:?}"))?;
            v.push(t.elapsed().as_nanos() as u64);
            std::hint::black_box(r);
        }
        report(&format!("1-stop {pair} with JSON"), v, 0);
        let p = w.calendar(o, d);
        let mut v = Vec::with_capacity(args.calendar_n);
        for _ in 0..args.calendar_n {
            let t = Instant::now();
            let r = engine::calendar(&snap, &overlay, clock, &p)
                .map_err(|e| anyhow!("calendar {p:?}: {e:?}"))?;
            v.push(t.elapsed().as_nanos() as u64);
            std::hint::black_box(r);
        }
        report(&format!("calendar 31 days {pair}"), v, 0);
        return Ok(());
    }
    println!("hubs (departing segment patterns): {:?}", w.hubs);
    println!("date {}  clock {}", w.date, benches::NOW);
    println!("direct pairs: {:?}", w.direct_pairs);
    println!("1-stop pairs: {:?}", w.one_stop_pairs);
    let overlay = Overlay::new();
    let clock = Clock {
        now_utc_min: now_utc_min(),
    };
    let direct: Vec<_> = w.direct_pairs.iter().map(|(o, d)| w.direct(o, d)).collect();
    let one: Vec<_> = w
        .one_stop_pairs
        .iter()
        .map(|(o, d)| w.one_stop(o, d))
        .collect();
    let direct = parse_all(&snap, &direct)?;
    let one = parse_all(&snap, &one)?;
    run_kind(
        "direct (max_connections=0)",
        args.n,
        &snap,
        &overlay,
        clock,
        &direct,
        args.split,
    );
    run_kind(
        "1-stop priced (sort=price)",
        args.n,
        &snap,
        &overlay,
        clock,
        &one,
        args.split,
    );

    // Per pair, to see which pairs make the tail.
    for (q, (o, d)) in one.iter().zip(&w.one_stop_pairs) {
        run_kind(
            &format!("  1-stop {o}-{d}"),
            (args.n / one.len()).max(1),
            &snap,
            &overlay,
            clock,
            std::slice::from_ref(q),
            args.split,
        );
    }

    let cal: Vec<_> = w
        .one_stop_pairs
        .iter()
        .map(|(o, d)| w.calendar(o, d))
        .collect();
    let mut v = Vec::with_capacity(args.calendar_n);
    let mut days = 0u64;
    for p in &cal {
        let _ = engine::calendar(&snap, &overlay, clock, p);
    }
    for i in 0..args.calendar_n {
        let p = &cal[i % cal.len()];
        let t = Instant::now();
        let r = engine::calendar(&snap, &overlay, clock, p)
            .map_err(|e| anyhow!("calendar {p:?}: {e:?}"))?;
        v.push(t.elapsed().as_nanos() as u64);
        days += r.1["count"].as_u64().unwrap_or(0);
    }
    report("calendar 31 days (with JSON)", v, days);

    // Per pair, to see which pairs make the tail.
    for (p, (o, d)) in cal.iter().zip(&w.one_stop_pairs) {
        let n = (args.calendar_n / cal.len()).max(1);
        let mut v = Vec::with_capacity(n);
        let mut days = 0u64;
        for _ in 0..n {
            let t = Instant::now();
            let r = engine::calendar(&snap, &overlay, clock, p)
                .map_err(|e| anyhow!("calendar {p:?}: {e:?}"))?;
            v.push(t.elapsed().as_nanos() as u64);
            days += r.1["count"].as_u64().unwrap_or(0);
        }
        report(&format!("  calendar {o}-{d}"), v, days);
    }
    Ok(())
}
