//! The search engine in-process (no HTTP) on a real snapshot: direct search between hubs,
//! priced 1-stop search between large hubs, a 31-day calendar, places autocomplete and the
//! JSON rendering of a search response. Reads `BENCH_SNAPSHOT` (the global synthetic
//! snapshot, see BENCHMARKS.md); skips when it is unset or absent.
//!
//! Hubs, pairs and dates come from `benches::Workload` (deterministic: airports ranked by
//! departing segment patterns). Criterion reports means and medians; the tail (p99) comes
//! from `src/bin/engine_latency.rs` over the same queries.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use benches::{now_utc_min, Workload};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use format::Snapshot;
use searchd::engine::{self, Clock};
use searchd::overlay::Overlay;
use searchd::places::PlacesIndex;
use serde_json::json;

fn snapshot() -> Option<Snapshot> {
    let Some(p) = std::env::var_os("BENCH_SNAPSHOT").map(PathBuf::from) else {
        eprintln!("skipped: set BENCH_SNAPSHOT to a snapshot directory (e.g. /tmp/snap-global)");
        return None;
    };
    if !p.exists() {
        eprintln!("skipped: BENCH_SNAPSHOT={} does not exist", p.display());
        return None;
    }
    match Snapshot::open(&p) {
        Ok(s) => {
            engine::prepare(&s);
            Some(s)
        }
        Err(e) => panic!("opening {}: {e}", p.display()),
    }
}

fn clock() -> Clock {
    Clock {
        now_utc_min: now_utc_min(),
    }
}

fn engine_benches(c: &mut Criterion) {
    let Some(snap) = snapshot() else { return };
    let w = Workload::new(&snap);
    eprintln!("hubs: {:?}; date {}", w.hubs, w.date);
    let overlay = Overlay::new();
    let clock = clock();

    let mut g = c.benchmark_group("search_direct");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    for (o, d) in w.direct_pairs.iter().take(4) {
        let q = engine::parse_search(&snap, &w.direct(o, d)).expect("direct query parses");
        g.bench_function(BenchmarkId::from_parameter(format!("{o}-{d}")), |b| {
            b.iter(|| black_box(engine::run_search(&snap, &overlay, clock, black_box(&q))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("search_1stop_priced");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for (o, d) in &w.one_stop_pairs {
        let q = engine::parse_search(&snap, &w.one_stop(o, d)).expect("1-stop query parses");
        g.bench_function(BenchmarkId::from_parameter(format!("{o}-{d}")), |b| {
            b.iter(|| black_box(engine::run_search(&snap, &overlay, clock, black_box(&q))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("calendar_31d");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    for (o, d) in &w.one_stop_pairs {
        let q = engine::parse_calendar(&snap, &w.calendar(o, d)).expect("calendar parses");
        g.bench_function(BenchmarkId::from_parameter(format!("{o}-{d}")), |b| {
            b.iter(|| {
                black_box(engine::calendar::run_calendar(
                    &snap,
                    &overlay,
                    clock,
                    black_box(&q),
                ))
            })
        });
    }
    g.finish();

    // JSON: parse + run + render to a serde_json::Value (`engine::search`), parse + run +
    // render to bytes (`engine::search_raw`, what the server sends), and the
    // serialisation of the full response envelope the server writes. Rendering cost =
    // `search_json` - `search_1stop_priced` of the same pair in the same run.
    let mut g = c.benchmark_group("render_json");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for (o, d) in w.one_stop_pairs.iter().take(2) {
        let params = w.one_stop(o, d);
        let q = engine::parse_search(&snap, &params).expect("parses");
        g.bench_function(BenchmarkId::new("parse_only", format!("{o}-{d}")), |b| {
            b.iter(|| black_box(engine::parse_search(&snap, black_box(&params))))
        });
        g.bench_function(
            BenchmarkId::new("run_search_only", format!("{o}-{d}")),
            |b| b.iter(|| black_box(engine::run_search(&snap, &overlay, clock, black_box(&q)))),
        );
        g.bench_function(BenchmarkId::new("search_json", format!("{o}-{d}")), |b| {
            b.iter(|| black_box(engine::search(&snap, &overlay, clock, black_box(&params))))
        });
        // What the server does since the render rewrite: parse + run + write `data` straight
        // to JSON bytes (`engine::search_raw`, no `Value` tree).
        g.bench_function(BenchmarkId::new("search_raw", format!("{o}-{d}")), |b| {
            b.iter(|| {
                black_box(engine::search_raw(
                    &snap,
                    &overlay,
                    clock,
                    black_box(&params),
                ))
            })
        });
        let (data, meta) = engine::search(&snap, &overlay, clock, &params).expect("search");
        let body = json!({ "data": data, "meta": meta });
        let bytes = serde_json::to_vec(&body).expect("serialises").len();
        eprintln!("{o}-{d}: response body {bytes} bytes");
        g.bench_function(BenchmarkId::new("to_vec", format!("{o}-{d}")), |b| {
            b.iter(|| black_box(serde_json::to_vec(black_box(&body))))
        });
    }
    g.finish();
}

fn places_benches(c: &mut Criterion) {
    let Some(snap) = snapshot() else { return };
    let w = Workload::new(&snap);
    let idx = PlacesIndex::open(&snap).expect("places index opens");
    // An exact code (the largest hub), 3- and 5-letter prefixes of the first hub city with
    // at least 7 letters, that city with two letters swapped (one typo), and the snapshot's
    // first metro code: all derived from the snapshot, so they exist in any snapshot.
    let hub = &w.hubs[0].0;
    let city = w
        .hubs
        .iter()
        .filter_map(|(code, _)| idx.find(code, 1).ok()?.into_iter().next())
        .map(|p| p.city.to_lowercase())
        .find(|c| c.chars().count() >= 7 && c.chars().all(|ch| ch.is_ascii_alphabetic()))
        .unwrap_or_else(|| "london".to_string());
    let mut typo: Vec<char> = city.chars().collect();
    typo.swap(2, 3);
    let typo: String = typo.into_iter().collect();
    let metro = snap
        .places
        .get()
        .metros
        .first()
        .map(|m| String::from_utf8_lossy(&m.code).to_lowercase())
        .unwrap_or_else(|| "nyc".to_string());
    let queries = [
        ("code", hub.to_lowercase()),
        ("prefix3", city.chars().take(3).collect::<String>()),
        ("prefix5", city.chars().take(5).collect::<String>()),
        ("typo", typo),
        ("metro", metro),
    ];
    let mut g = c.benchmark_group("places");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    for (name, q) in &queries {
        let n = idx.find(q, 10).map(|v| v.len()).unwrap_or(0);
        eprintln!("places {name} {q:?}: {n} results");
        g.bench_function(BenchmarkId::new(*name, q), |b| {
            b.iter(|| black_box(idx.search(black_box(q), 10)))
        });
    }
    g.finish();
}

criterion_group!(benches, engine_benches, places_benches);
criterion_main!(benches);
