//! The work budget: a query that needs more is refused with 422 `query_too_broad`, never
//! answered partially. (Own test binary: the budget override is process-wide.)
#![allow(clippy::unwrap_used)]

mod engine_common;

use std::sync::atomic::Ordering;

use engine_common::*;

#[test]
fn too_broad_queries_are_refused_not_truncated() {
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
