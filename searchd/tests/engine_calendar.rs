//! The calendar's cheapest-only pruning (price lower bounds from the booking classes a
//! flight has availability rows for, and from the days it has rows on) against the
//! search, where the live overlay or the availability window changes what is bookable.
#![allow(clippy::unwrap_used)]

mod engine_common;

use engine_common::*;

/// AAA -> CCC -> BBB on XX on `d0()`, class Y open (the generator's rows), class K filed
/// cheaper on both legs but with no availability row in the snapshot; and a nonstop.
fn world() -> World {
    let mut w = World::new(&[("AAA", "US"), ("BBB", "US"), ("CCC", "US")]);
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "CCC", "08:00", "09:00")],
    ));
    w.flights.push(flight(
        "XX",
        2,
        &[d],
        vec![leg("CCC", "BBB", "11:00", "12:00")],
    ));
    // A nonstop at 150 sets the calendar's cap before the connection is looked at.
    w.flights.push(flight(
        "XX",
        3,
        &[d],
        vec![leg("AAA", "BBB", "07:00", "09:00")],
    ));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 15000));
    for (o, de) in [("AAA", "CCC"), ("CCC", "BBB")] {
        w.fares.push(fare("XX", o, de, b'Y', 10000));
        w.fares.push(fare("XX", o, de, b'K', 3000));
    }
    w
}

fn cal_price(b: &Built) -> (Option<String>, Option<String>) {
    let p = params(&[
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("from", &iso(d0())),
        ("to", &iso(d0())),
    ]);
    let (data, _) = searchd::engine::calendar(&b.snap, &b.overlay, clock(), &p).unwrap();
    let day = &data["days"][0];
    (
        day["lowest_price"]["amount"].as_str().map(str::to_string),
        day["itinerary_id"].as_str().map(str::to_string),
    )
}

fn search_first(b: &Built) -> (Option<String>, Option<String>) {
    let date = iso(d0());
    let (data, _) = search(
        b,
        &[
            ("origin", "AAA"),
            ("destination", "BBB"),
            ("date", &date),
            ("limit", "1"),
        ],
    );
    let it = &data["itineraries"][0];
    (
        it["price"]["amount"].as_str().map(str::to_string),
        it["id"].as_str().map(str::to_string),
    )
}

#[test]
fn calendar_prices_a_class_opened_only_by_the_live_overlay() {
    let b = build(&world());
    // Snapshot only: K has no row on either flight, so Y + Y = 200 and the nonstop wins.
    assert_eq!(cal_price(&b).0.as_deref(), Some("150.00"));
    assert_eq!(cal_price(&b), search_first(&b));
    // The overlay opens K on both legs (flights 0 and 1, leg 0, base day d0 - first day).
    let day = 2u16;
    b.overlay.apply(&[
        (format::model::avail_key(0, 0, day, b'K'), 4),
        (format::model::avail_key(1, 0, day, b'K'), 4),
    ]);
    assert_eq!(cal_price(&b).0.as_deref(), Some("60.00"));
    assert_eq!(cal_price(&b), search_first(&b));
}

#[test]
fn calendar_days_outside_the_availability_rows_are_unpriced() {
    let mut w = world();
    let d = d0();
    // The same flights also operate the next day, but the rows cover `d0()` only.
    w.flights.truncate(2);
    w.flights[0].dates.push(d + 1);
    w.flights[1].dates.push(d + 1);
    w.open_classes = vec![];
    for fi in 0..2 {
        for c in [b'Y', b'K'] {
            w.raw_avail.push((fi, 0, d, c, 5));
        }
    }
    let b = build(&w);
    let p = params(&[
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("from", &iso(d)),
        ("to", &iso(d + 1)),
    ]);
    let (data, _) = searchd::engine::calendar(&b.snap, &b.overlay, clock(), &p).unwrap();
    let got: Vec<Option<&str>> = data["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["lowest_price"]["amount"].as_str())
        .collect();
    assert_eq!(got, vec![Some("60.00"), None]);
    // The search agrees: on d + 1 the connection exists but cannot be priced.
    let date = iso(d + 1);
    let (data, meta) = search(
        &b,
        &[
            ("origin", "AAA"),
            ("destination", "BBB"),
            ("date", &date),
            ("priced_only", "false"),
        ],
    );
    assert_eq!(meta["total"], 1);
    assert!(data["itineraries"][0]["price"].is_null());
}
