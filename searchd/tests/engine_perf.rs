//! Timing of the engine on a real snapshot (not a criterion suite; a quick check):
//! `ENGINE_PERF_SNAPSHOT=DIR cargo test --release -p searchd --test engine_perf -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use format::Snapshot;
use searchd::engine::{self, Clock};
use searchd::overlay::Overlay;

fn pct(mut v: Vec<u128>, p: f64) -> u128 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn time<F: FnMut() -> usize>(name: &str, n: usize, mut f: F) {
    if let Ok(filter) = std::env::var("ENGINE_PERF_FILTER") {
        if !name.contains(&filter) {
            return;
        }
    }
    let n = std::env::var("ENGINE_PERF_REPEAT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(n, |k| n * k);
    let mut found = 0;
    for _ in 0..3 {
        found = f();
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(f());
        v.push(t.elapsed().as_nanos());
    }
    eprintln!(
        "{name:50} results {found:5}  p50 {:8.1} us  p99 {:8.1} us",
        pct(v.clone(), 0.5) as f64 / 1000.0,
        pct(v, 0.99) as f64 / 1000.0
    );
}

#[test]
#[ignore]
fn engine_timings() {
    let Ok(dir) = std::env::var("ENGINE_PERF_SNAPSHOT") else {
        eprintln!("ENGINE_PERF_SNAPSHOT not set; skipping");
        return;
    };
    let t = Instant::now();
    let snap = Snapshot::open(std::path::Path::new(&dir)).unwrap();
    eprintln!("opened in {:?}", t.elapsed());
    let t = Instant::now();
    engine::prepare(&snap);
    eprintln!("prepared in {:?}", t.elapsed());
    let overlay = Overlay::new();
    let net = snap.network.get();
    let places = snap.places.get();
    let n = places.airports.len();
    let mut by_size: Vec<(usize, u16)> = (0..n)
        .map(|a| (net.segments_from(a as u16).len(), a as u16))
        .collect();
    by_size.sort_unstable_by(|a, b| b.cmp(a));
    let code = |a: u16| String::from_utf8_lossy(&places.airports[a as usize].iata).into_owned();
    let first = snap.manifest.first_date.clone().unwrap();
    let d0 = format::date::parse_iso(&first).unwrap() + 7;
    let date = format::date::format_iso(d0);
    let clock = Clock {
        now_utc_min: i64::from(d0 - 5) * 1440,
    };
    let hubs: Vec<u16> = by_size.iter().take(12).map(|x| x.1).collect();
    eprintln!(
        "hubs: {:?}",
        hubs.iter()
            .map(|&h| (code(h), net.markets_from(h).len()))
            .collect::<Vec<_>>()
    );
    // Pairs of hubs with and without a direct market.
    for (i, &a) in hubs.iter().enumerate().take(4) {
        for &b in hubs.iter().skip(i + 1).take(3) {
            let (ca, cb) = (code(a), code(b));
            let base = vec![
                ("origin".to_string(), ca.clone()),
                ("destination".to_string(), cb.clone()),
                ("date".to_string(), date.clone()),
            ];
            let mut p0 = base.clone();
            p0.push(("max_connections".into(), "0".into()));
            let q0 = engine::parse_search(&snap, &p0).unwrap();
            time(&format!("direct {ca}-{cb}"), 2000, || {
                engine::run_search(&snap, &overlay, clock, &q0).total as usize
            });
            let q1 = engine::parse_search(&snap, &base).unwrap();
            time(&format!("1-stop {ca}-{cb}"), 300, || {
                engine::run_search(&snap, &overlay, clock, &q1).total as usize
            });
            time(&format!("1-stop {ca}-{cb} JSON"), 100, || {
                engine::search(&snap, &overlay, clock, &base)
                    .map(|r| r.1["count"].as_u64().unwrap_or(0) as usize)
                    .unwrap_or(0)
            });
            let mut pr = base.clone();
            pr.push(("return_date".into(), format::date::format_iso(d0 + 7)));
            let qr = engine::parse_search(&snap, &pr).unwrap();
            time(&format!("round trip 1-stop {ca}-{cb}"), 100, || {
                engine::run_search(&snap, &overlay, clock, &qr).total as usize
            });
            let pc = vec![
                ("origin".to_string(), ca.clone()),
                ("destination".to_string(), cb.clone()),
                ("from".to_string(), date.clone()),
                ("to".to_string(), format::date::format_iso(d0 + 30)),
            ];
            time(&format!("calendar 31 days {ca}-{cb}"), 30, || {
                engine::calendar(&snap, &overlay, clock, &pc)
                    .map(|r| r.1["count"].as_u64().unwrap_or(0) as usize)
                    .unwrap_or(0)
            });
        }
    }
    // Spoke to spoke with 2 stops.
    let small: Vec<u16> = by_size
        .iter()
        .skip(n / 3)
        .step_by(97)
        .take(3)
        .map(|x| x.1)
        .collect();
    for w in small.windows(2) {
        let p = vec![
            ("origin".to_string(), code(w[0])),
            ("destination".to_string(), code(w[1])),
            ("date".to_string(), date.clone()),
            ("max_connections".to_string(), "2".to_string()),
        ];
        let q = engine::parse_search(&snap, &p).unwrap();
        time(&format!("2-stop {}-{}", code(w[0]), code(w[1])), 20, || {
            let r = engine::run_search(&snap, &overlay, clock, &q);
            if r.too_broad {
                usize::MAX
            } else {
                r.total as usize
            }
        });
    }
}
