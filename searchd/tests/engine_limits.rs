//! The work budget: a query that needs more is refused with 422 `query_too_broad`, never
//! answered partially. (Own test binary: the budget override is process-wide.)
#![allow(clippy::unwrap_used)]

mod engine_common;

use std::sync::atomic::Ordering;

use engine_common::*;

/// The budget override is process-wide: tests that set it take turns.
static BUDGET: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn too_broad_queries_are_refused_not_truncated() {
    let _turn = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new(&[("AAA", "US"), ("BBB", "US"), ("CCC", "US")]);
    let d = d0();
    for i in 0..30u16 {
        let t = 300 + i32::from(i) * 20;
        w.flights.push(flight(
            "XX",
            100 + i,
            &[d],
            vec![leg_min("AAA", "BBB", t, t + 60)],
        ));
        w.flights.push(flight(
            "XX",
            200 + i,
            &[d],
            vec![leg_min("BBB", "CCC", t + 120, t + 180)],
        ));
    }
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 1000));
    w.fares.push(fare("XX", "BBB", "CCC", b'Y', 1000));
    let b = build(&w);
    let date = iso(d);
    let p = [
        ("origin", "AAA"),
        ("destination", "CCC"),
        ("date", date.as_str()),
    ];
    let (_, meta) = search(&b, &p);
    let total = meta["total"].as_u64().unwrap();
    assert!(total > 100, "{total}");
    searchd::engine::WORK_LIMIT_OVERRIDE.store(50, Ordering::Relaxed);
    let e = search_err(&b, &p);
    assert_eq!((e.status, e.code), (422, "query_too_broad"));
    let q = searchd::engine::parse_search(&b.snap, &params(&p)).unwrap();
    let r = searchd::engine::run_search(&b.snap, &b.overlay, clock(), &q);
    assert!(r.too_broad && r.itineraries.is_empty());
    let cal = params(&[
        ("origin", "AAA"),
        ("destination", "CCC"),
        ("from", &date),
        ("to", &date),
    ]);
    let e = searchd::engine::calendar(&b.snap, &b.overlay, clock(), &cal).unwrap_err();
    assert_eq!(e.status, 422);
    // A narrow query within the same budget still works.
    let narrow = [
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("date", date.as_str()),
        ("max_connections", "0"),
    ];
    let (_, meta) = search(&b, &narrow);
    assert_eq!(meta["total"], 30);
    searchd::engine::WORK_LIMIT_OVERRIDE.store(0, Ordering::Relaxed);
    let (_, meta) = search(&b, &p);
    assert_eq!(meta["total"].as_u64(), Some(total));
}

/// A search split in two parallel parts is refused exactly when a whole run is: the parts
/// count the steps a whole run counts, and the budget applies to their sum. Checked at
/// every budget from 1 step to the first one the whole run fits in.
#[test]
fn split_searches_run_out_of_budget_exactly_when_whole_ones_do() {
    let _turn = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    use searchd::engine::{run_search_with, Split};
    let b = build(&spokes(5, 3, 1000));
    let q = spokes_query(&b, "50");
    let run = |split| run_search_with(&b.snap, &b.overlay, clock(), &q, split);
    let whole = run(Split::Never);
    assert!(whole.total >= 15, "{}", whole.total);
    let mut budget = 1u64;
    loop {
        searchd::engine::WORK_LIMIT_OVERRIDE.store(budget, Ordering::Relaxed);
        let (w1, s1) = (run(Split::Never), run(Split::Always));
        assert_eq!(w1.too_broad, s1.too_broad, "budget {budget}");
        if !w1.too_broad {
            assert_eq!(w1.itineraries, s1.itineraries, "budget {budget}");
            assert_eq!(w1.total, s1.total, "budget {budget}");
            break;
        }
        assert!(s1.itineraries.is_empty());
        budget += 1;
        assert!(budget < 100_000, "the whole run never fits");
    }
    searchd::engine::WORK_LIMIT_OVERRIDE.store(0, Ordering::Relaxed);
    assert!(
        budget > 10,
        "the budget loop should have refused some: {budget}"
    );
}

/// Many split searches at once from several threads (jobs posted while another is
/// waiting, retracted, taken late) all answer exactly as whole runs.
#[test]
fn concurrent_split_searches_answer_as_whole_ones() {
    use searchd::engine::{run_search_with, Split};
    let _turn = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    let b = build(&spokes(7, 4, 900));
    let q = spokes_query(&b, "7");
    let whole = run_search_with(&b.snap, &b.overlay, clock(), &q, Split::Never);
    assert!(whole.total >= 28, "{}", whole.total);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..300 {
                    let r = run_search_with(&b.snap, &b.overlay, clock(), &q, Split::Always);
                    assert_eq!(r.itineraries, whole.itineraries);
                    assert_eq!(r.total, whole.total);
                    assert!(!r.too_broad);
                }
            });
        }
    });
}

/// A network from AAA to CCC through `n_vias` connection points VAA, VAB.., each with `per_via`
/// flights in and out on d0 (XX, class Y); the first legs' fares step up by 10 from `fare0`.
fn spokes(n_vias: usize, per_via: u16, fare0: i64) -> World {
    assert!(n_vias <= 26 * 26);
    let letter = |i: usize| char::from(b'A' + i as u8);
    let vias: Vec<String> = (0..n_vias)
        .map(|k| format!("V{}{}", letter(k / 26), letter(k % 26)))
        .collect();
    let mut airports = vec![("AAA", "US"), ("CCC", "US")];
    airports.extend(vias.iter().map(|v| (v.as_str(), "US")));
    let mut w = World::new(&airports);
    let d = d0();
    for (k, v) in vias.iter().enumerate() {
        for i in 0..per_via {
            let t = 240 + i32::from(i) * 35 + k as i32 * 11;
            let n = 100 + k as u16 * 10 + i;
            w.flights
                .push(flight("XX", n, &[d], vec![leg_min("AAA", v, t, t + 50)]));
            w.flights.push(flight(
                "XX",
                n + 500,
                &[d],
                vec![leg_min(v, "CCC", t + 110, t + 170)],
            ));
        }
        w.fares
            .push(fare("XX", "AAA", v, b'Y', fare0 + k as i64 * 10));
        w.fares.push(fare("XX", v, "CCC", b'Y', 1000));
    }
    w
}

/// The search from AAA to CCC on d0 over a [`spokes`] network, keeping `limit` results.
fn spokes_query(b: &Built, limit: &str) -> searchd::engine::SearchQuery {
    let date = iso(d0());
    searchd::engine::parse_search(
        &b.snap,
        &params(&[
            ("origin", "AAA"),
            ("destination", "CCC"),
            ("date", date.as_str()),
            ("limit", limit),
        ]),
    )
    .unwrap()
}

/// The server's inline attempt (`search_raw_within` with less than the whole budget) is not
/// made for a search with many connection points: it would very likely run out and be
/// thrown away. With fewer points, or the whole budget, it runs and answers as
/// `search_raw` does.
#[test]
fn inline_attempts_skip_searches_with_many_connection_points() {
    use searchd::engine::{search_raw, search_raw_within};
    let _turn = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    searchd::engine::WORK_LIMIT_OVERRIDE.store(1_000_000, Ordering::Relaxed);
    let date = iso(d0());
    let p = params(&[
        ("origin", "AAA"),
        ("destination", "CCC"),
        ("date", date.as_str()),
    ]);
    for (vias, attempted) in [(95, true), (96, false), (100, false)] {
        let b = build(&spokes(vias, 1, 1000));
        let within = |max_work| {
            search_raw_within(&b.snap, &b.overlay, clock(), &p, max_work)
                .unwrap_or_else(|e| panic!("{vias} vias: {e:?}"))
        };
        let (bytes, meta) = search_raw(&b.snap, &b.overlay, clock(), &p).unwrap();
        assert_eq!(meta["total"].as_u64(), Some(vias as u64), "{vias} vias");
        // Far more than the few hundred steps the search takes, but less than the budget.
        let inline = within(999_999);
        assert_eq!(inline.is_some(), attempted, "{vias} vias");
        if let Some((b2, _)) = inline {
            assert_eq!(b2, bytes, "{vias} vias");
        }
        // The whole budget: always run.
        let (b3, _) = within(1_000_000).expect("the whole budget runs every search");
        assert_eq!(b3, bytes, "{vias} vias");
    }
    searchd::engine::WORK_LIMIT_OVERRIDE.store(0, Ordering::Relaxed);
}
