//! Hand-computed search scenarios: directs, through flights, connections at their limits,
//! MCT precedence, metros, round trips, filters, errors, pricing, offers and the calendar.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod engine_common;

use engine_common::*;
use serde_json::Value;

fn base_airports() -> World {
    World::new(&[
        ("AAA", "US"),
        ("BBB", "US"),
        ("CCC", "US"),
        ("DDD", "FR"),
        ("EEE", "FR"),
    ])
}

/// XX1 on date `d`: AAA 08:00-09:00 BBB 10:00-11:00 CCC, one through flight.
fn through_aaa_bbb_ccc(d: i32) -> FlightSpec {
    flight(
        "XX",
        1,
        &[d],
        vec![
            leg("AAA", "BBB", "08:00", "09:00"),
            leg("BBB", "CCC", "10:00", "11:00"),
        ],
    )
}

fn q<'a>(o: &'a str, d: &'a str, date: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("origin", o), ("destination", d), ("date", date)]
}

fn with<'a>(
    mut base: Vec<(&'a str, &'a str)>,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.extend_from_slice(more);
    base
}

#[test]
fn direct_and_through_flight_boarded_at_a_middle_stop() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        100,
        &[d],
        vec![
            leg("AAA", "BBB", "08:00", "10:00"),
            leg("BBB", "CCC", "11:00", "13:00"),
        ],
    ));
    w.fares.push(fare("XX", "AAA", "CCC", b'Y', 30000));
    w.fares.push(fare("XX", "BBB", "CCC", b'Y', 10000));
    let b = build(&w);
    let date = iso(d);
    let (data, meta) = search(&b, &q("AAA", "CCC", &date));
    assert_eq!(describe(&data), vec!["XX100 AAA-CCC"]);
    assert_eq!(meta["total"], 1);
    assert_eq!(meta["count"], 1);
    let it = &data["itineraries"][0];
    assert_eq!(it["price"]["amount"], "300.00");
    assert_eq!(it["price"]["currency"], "USD");
    let seg = &it["slices"][0]["segments"][0];
    assert_eq!(seg["stops"], serde_json::json!(["BBB"]));
    assert_eq!(seg["departure_utc"], "2025-06-02T08:00:00Z");
    assert_eq!(seg["arrival_local"], "2025-06-02T13:00");
    assert_eq!(seg["flight_number"], "100");
    assert_eq!(seg["aircraft"], "320");
    assert_eq!(it["slices"][0]["duration_minutes"], 300);
    assert_eq!(it["fares"][0]["segments"], serde_json::json!([0]));
    assert_eq!(it["fares"][0]["booking_class"], "Y");
    assert_eq!(it["fares"][0]["cabin"], "economy");
    assert_eq!(it["seats_available"], 9);

    let (data, _) = search(&b, &q("BBB", "CCC", &date));
    assert_eq!(describe(&data), vec!["XX100 BBB-CCC"]);
    assert_eq!(
        data["itineraries"][0]["slices"][0]["departure_local"],
        "2025-06-02T11:00"
    );
    assert_eq!(prices(&data), vec!["100.00 USD"]);
    // Never a connection between two legs of the same dated flight, even with 2 stops.
    let (data, _) = search(
        &b,
        &with(q("AAA", "CCC", &date), &[("max_connections", "2")]),
    );
    assert_eq!(describe(&data), vec!["XX100 AAA-CCC"]);
    // Another date: nothing.
    let (data, meta) = search(&b, &q("AAA", "CCC", &iso(d + 1)));
    assert_eq!(describe(&data).len(), 0);
    assert_eq!(meta["total"], 0);
}

fn connection_world() -> World {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "10:00")],
    ));
    w.flights.push(flight(
        "YY",
        2,
        &[d],
        vec![leg("BBB", "CCC", "11:00", "12:00")],
    )); // 60 = MCT
    w.flights.push(flight(
        "YY",
        3,
        &[d],
        vec![leg("BBB", "CCC", "10:59", "12:00")],
    )); // 59
    w.flights.push(flight(
        "YY",
        4,
        &[d + 1],
        vec![leg("BBB", "CCC", "10:00", "11:00")],
    )); // 1440
    w.flights.push(flight(
        "YY",
        5,
        &[d + 1],
        vec![leg("BBB", "CCC", "10:01", "11:00")],
    )); // 1441
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 10000));
    w.fares.push(fare("YY", "BBB", "CCC", b'Y', 5000));
    w
}

#[test]
fn one_stop_at_the_connection_limits() {
    let b = build(&connection_world());
    let date = iso(d0());
    let (data, meta) = search(&b, &with(q("AAA", "CCC", &date), &[("sort", "departure")]));
    assert_eq!(
        describe(&data),
        vec!["XX1 AAA-BBB|YY2 BBB-CCC", "XX1 AAA-BBB|YY4 BBB-CCC"]
    );
    assert_eq!(meta["total"], 2);
    assert_eq!(prices(&data), vec!["150.00 USD", "150.00 USD"]);
    let fares = &data["itineraries"][0]["fares"];
    assert_eq!(fares[0]["segments"], serde_json::json!([0]));
    assert_eq!(fares[1]["segments"], serde_json::json!([1]));
    // The override replaces the table (one minute short now allowed).
    let (data, _) = search(
        &b,
        &with(
            q("AAA", "CCC", &date),
            &[("sort", "departure"), ("min_connection_minutes", "59")],
        ),
    );
    assert_eq!(
        describe(&data),
        // Same slice departure (XX1 08:00): then the id, which orders YY2 before YY3.
        vec![
            "XX1 AAA-BBB|YY2 BBB-CCC",
            "XX1 AAA-BBB|YY3 BBB-CCC",
            "XX1 AAA-BBB|YY4 BBB-CCC"
        ]
    );
    let (data, _) = search(
        &b,
        &with(q("AAA", "CCC", &date), &[("max_connection_minutes", "60")]),
    );
    assert_eq!(describe(&data), vec!["XX1 AAA-BBB|YY2 BBB-CCC"]);
    let (data, _) = search(
        &b,
        &with(q("AAA", "CCC", &date), &[("max_connections", "0")]),
    );
    assert_eq!(describe(&data).len(), 0);
    // Default sort is price, then departure: YY2 (d0) before YY4 (d0+1).
    let (data, _) = search(&b, &q("AAA", "CCC", &date));
    assert_eq!(
        describe(&data),
        vec!["XX1 AAA-BBB|YY2 BBB-CCC", "XX1 AAA-BBB|YY4 BBB-CCC"]
    );
    // Duration: YY2 (4h) before YY4 (27h).
    let (data, _) = search(
        &b,
        &with(
            q("AAA", "CCC", &date),
            &[("sort", "duration"), ("limit", "1")],
        ),
    );
    assert_eq!(describe(&data), vec!["XX1 AAA-BBB|YY2 BBB-CCC"]);
    assert_eq!(data["itineraries"][0]["slices"][0]["duration_minutes"], 240);
}

#[test]
fn connections_across_midnight_dst_and_the_date_line() {
    let mut w = base_airports();
    let d = d0();
    // Across midnight (UTC and local): arrive 23:30, leave 00:40 the next day (70 min).
    w.flights.push(flight(
        "XX",
        10,
        &[d],
        vec![leg("AAA", "BBB", "21:00", "23:30")],
    ));
    w.flights.push(flight(
        "XX",
        11,
        &[d + 1],
        vec![leg("BBB", "CCC", "00:40", "02:00")],
    ));
    w.flights.push(flight(
        "XX",
        12,
        &[d + 1],
        vec![leg("BBB", "CCC", "00:29", "02:00")],
    )); // 59
        // DST at DDD: the arrival is on summer time (+120), the departure on winter time (+60):
        // local 12:00 arrival, local 11:30 departure, but 90 minutes later in UTC.
    w.flights.push(flight(
        "XX",
        20,
        &[d],
        vec![leg("EEE", "DDD", "08:00", "10:00").offsets(120, 120)],
    ));
    w.flights.push(flight(
        "XX",
        21,
        &[d],
        vec![leg("DDD", "CCC", "11:30", "18:00").offsets(60, 0)],
    ));
    // Date line: AAA at +13:00, BBB at -10:00; leave AAA local 2025-06-03 08:00 (UTC 06-02
    // 19:00), arrive BBB UTC 06-03 01:00 = local 06-02 15:00; connect 90 min later.
    w.flights.push(flight(
        "ZZ",
        30,
        &[d],
        vec![leg("AAA", "BBB", "19:00", "25:00").offsets(780, -600)],
    ));
    w.flights.push(flight(
        "ZZ",
        31,
        &[d],
        vec![leg("BBB", "EEE", "26:30", "30:00").offsets(-600, 0)],
    ));
    for (c, o, de) in [
        ("XX", "AAA", "BBB"),
        ("XX", "BBB", "CCC"),
        ("XX", "EEE", "DDD"),
        ("XX", "DDD", "CCC"),
        ("ZZ", "AAA", "BBB"),
        ("ZZ", "BBB", "EEE"),
    ] {
        w.fares.push(fare(c, o, de, b'Y', 1000));
    }
    let b = build(&w);
    let (data, _) = search(&b, &q("AAA", "CCC", &iso(d)));
    assert_eq!(describe(&data), vec!["XX10 AAA-BBB|XX11 BBB-CCC"]);
    let (data, _) = search(&b, &q("EEE", "CCC", &iso(d)));
    assert_eq!(describe(&data), vec!["XX20 EEE-DDD|XX21 DDD-CCC"]);
    let s = &data["itineraries"][0]["slices"][0]["segments"];
    assert_eq!(s[0]["arrival_local"], "2025-06-02T12:00");
    assert_eq!(s[1]["departure_local"], "2025-06-02T12:30");
    // The date-line trip leaves AAA on local 2025-06-03.
    let (data, _) = search(&b, &q("AAA", "EEE", &iso(d + 1)));
    assert_eq!(describe(&data), vec!["ZZ30 AAA-BBB|ZZ31 BBB-EEE"]);
    let s = &data["itineraries"][0]["slices"][0]["segments"];
    assert_eq!(s[0]["departure_local"], "2025-06-03T08:00");
    assert_eq!(s[0]["arrival_local"], "2025-06-02T15:00");
    assert_eq!(s[1]["departure_utc"], "2025-06-03T02:30:00Z");
    // On 06-02 only XX10 (arrives 23:30 UTC) connects to ZZ31 (leaves 02:30 UTC).
    let (data, _) = search(&b, &q("AAA", "EEE", &iso(d)));
    assert_eq!(describe(&data), vec!["XX10 AAA-BBB|ZZ31 BBB-EEE"]);
}

/// Departures from BBB at each gap after an XX arrival; returns the smallest accepted gap.
fn min_gap(rules: &[(&str, u8, u16, &str, &str)], dep_dest: &str) -> i64 {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "10:00")],
    ));
    let gaps = [
        29, 30, 44, 45, 59, 60, 79, 80, 89, 90, 99, 100, 109, 110, 130,
    ];
    for (i, g) in gaps.iter().enumerate() {
        w.flights.push(flight(
            "YY",
            200 + i as u16,
            &[d],
            vec![leg_min("BBB", dep_dest, 600 + g, 700 + g)],
        ));
    }
    w.mct = rules
        .iter()
        .map(|(s, t, m, a, b)| (s.to_string(), *t, *m, a.to_string(), b.to_string()))
        .collect();
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 1000));
    w.fares.push(fare("YY", "BBB", dep_dest, b'Y', 1000));
    let b = build(&w);
    let (data, _) = search(
        &b,
        &with(q("AAA", dep_dest, &iso(d)), &[("sort", "departure")]),
    );
    let its = data["itineraries"].as_array().unwrap();
    let first = &its[0]["slices"][0]["segments"][1]["departure_utc"];
    let t = first.as_str().unwrap();
    let h: i64 = t[11..13].parse().unwrap();
    let m: i64 = t[14..16].parse().unwrap();
    h * 60 + m - 600
}

#[test]
fn mct_precedence() {
    // No rule: the default 60.
    assert_eq!(min_gap(&[], "CCC"), 60);
    let star = ("*", 0, 30, "", "");
    assert_eq!(min_gap(&[star], "CCC"), 30);
    // A named station beats `*` even when `*` is more specific otherwise.
    let star_specific = ("*", 1, 45, "XX", "YY");
    assert_eq!(min_gap(&[star_specific, ("BBB", 0, 90, "", "")], "CCC"), 90);
    // Exact type beats `*` at the same station.
    assert_eq!(
        min_gap(&[("BBB", 1, 80, "", ""), ("BBB", 0, 90, "", "")], "CCC"),
        80
    );
    // More carriers beat an exact type.
    assert_eq!(
        min_gap(&[("BBB", 1, 80, "", ""), ("BBB", 0, 100, "XX", "")], "CCC"),
        100
    );
    // Full tie: the larger minutes wins, whatever the row order.
    assert_eq!(
        min_gap(
            &[("BBB", 0, 100, "XX", ""), ("BBB", 0, 110, "XX", "")],
            "CCC"
        ),
        110
    );
    assert_eq!(
        min_gap(
            &[("BBB", 0, 110, "XX", ""), ("BBB", 0, 100, "XX", "")],
            "CCC"
        ),
        110
    );
    // Type DI (domestic arrival, international departure to DDD in FR) vs DD.
    let rules = [("BBB", 1, 45, "", ""), ("BBB", 2, 130, "", "")];
    assert_eq!(min_gap(&rules, "CCC"), 45);
    assert_eq!(min_gap(&rules, "DDD"), 130);
    // A carrier-specific rule that does not match is ignored.
    assert_eq!(min_gap(&[("BBB", 0, 100, "ZZ", "")], "CCC"), 60);
}

#[test]
fn two_stops_and_no_revisits() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "09:00")],
    ));
    w.flights.push(flight(
        "XX",
        2,
        &[d],
        vec![leg("BBB", "CCC", "10:00", "11:00")],
    ));
    w.flights.push(flight(
        "XX",
        3,
        &[d],
        vec![leg("CCC", "DDD", "12:00", "13:00")],
    ));
    // Revisits BBB: CCC -> BBB -> DDD cannot follow AAA-BBB-CCC.
    w.flights.push(flight(
        "XX",
        4,
        &[d],
        vec![
            leg("CCC", "BBB", "12:00", "12:30"),
            leg("BBB", "DDD", "13:00", "14:00"),
        ],
    ));
    for (o, de) in [
        ("AAA", "BBB"),
        ("BBB", "CCC"),
        ("CCC", "DDD"),
        ("CCC", "BBB"),
        ("BBB", "DDD"),
        ("CCC", "DDD"),
    ] {
        w.fares.push(fare("XX", o, de, b'Y', 1000));
    }
    w.fares.push(fare("XX", "AAA", "DDD", b'Y', 2500));
    let b = build(&w);
    let date = iso(d);
    // XX4 boarded at its middle stop BBB.
    let (data, _) = search(&b, &q("AAA", "DDD", &date));
    assert_eq!(describe(&data), vec!["XX1 AAA-BBB|XX4 BBB-DDD"]);
    let (data, meta) = search(
        &b,
        &with(q("AAA", "DDD", &date), &[("max_connections", "2")]),
    );
    // XX1|XX2|XX4 (CCC-BBB-DDD) revisits BBB.
    assert_eq!(
        describe(&data),
        vec![
            "XX1 AAA-BBB|XX4 BBB-DDD",
            "XX1 AAA-BBB|XX2 BBB-CCC|XX3 CCC-DDD"
        ]
    );
    assert_eq!(meta["total"], 2);
    // Two locals (20.00) beat the through fare (25.00); for three segments AAA-BBB plus
    // BBB-DDD over the last two (20.00) beats AAA-DDD (25.00) and three locals (30.00).
    assert_eq!(prices(&data), vec!["20.00 USD", "20.00 USD"]);
    assert_eq!(
        data["itineraries"][1]["fares"][0]["segments"],
        serde_json::json!([0])
    );
    assert_eq!(
        data["itineraries"][1]["fares"][1]["segments"],
        serde_json::json!([1, 2])
    );
    assert_eq!(data["itineraries"][0]["fares"].as_array().unwrap().len(), 2);
    // From BBB: XX2|XX4 would come back to BBB.
    let (data, _) = search(&b, &with(q("BBB", "DDD", &date), &[("sort", "departure")]));
    assert_eq!(
        describe(&data),
        vec!["XX2 BBB-CCC|XX3 CCC-DDD", "XX4 BBB-DDD"]
    );
}

/// AAA, and a metro `code` over BBB and CCC: XX1 AAA-BBB 08:00, XX2 AAA-CCC 09:00,
/// XX3 BBB-CCC 10:00, each with a Y fare.
fn metro_world(code: &str) -> World {
    let mut w = base_airports();
    w.metros
        .push((code.into(), vec!["BBB".into(), "CCC".into()]));
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "09:00")],
    ));
    w.flights.push(flight(
        "XX",
        2,
        &[d],
        vec![leg("AAA", "CCC", "09:00", "10:00")],
    ));
    w.flights.push(flight(
        "XX",
        3,
        &[d],
        vec![leg("BBB", "CCC", "10:00", "11:00")],
    ));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 1000));
    w.fares.push(fare("XX", "AAA", "CCC", b'Y', 2000));
    w.fares.push(fare("XX", "BBB", "CCC", b'Y', 500));
    w
}

#[test]
fn metro_codes_and_unknown_codes() {
    // A trip to the metro ends at its first airport: no AAA-BBB-CCC connection (XX3).
    let w = metro_world("MET");
    let d = d0();
    let b = build(&w);
    let (data, meta) = search(&b, &q("AAA", "met", &iso(d)));
    assert_eq!(describe(&data), vec!["XX1 AAA-BBB", "XX2 AAA-CCC"]);
    assert_eq!(meta["total"], 2);
    let e = search_err(&b, &q("AAA", "QQQ", &iso(d)));
    assert_eq!(
        (e.status, e.parameter.as_deref()),
        (400, Some("destination"))
    );
    let e = search_err(&b, &q("MET", "BBB", &iso(d)));
    assert_eq!(e.status, 400);
}

/// Regression: with IATA's real metro file, 19 metro codes are also an airport's (HOU is
/// Hobby, and the city of Hobby and IAH). `IAH` to `HOU` was a 400 ("must differ"); a user
/// means Hobby. Here `CCC` is an airport and the metro of CCC and BBB.
#[test]
fn a_dual_code_against_another_airport_of_its_city_means_the_airport() {
    let mut w = metro_world("CCC");
    let d = d0();
    w.flights.push(flight(
        "XX",
        4,
        &[d],
        vec![leg("CCC", "BBB", "12:00", "13:00")],
    ));
    w.fares.push(fare("XX", "CCC", "BBB", b'Y', 500));
    let b = build(&w);
    let day = iso(d);
    // From elsewhere the code is the whole city.
    let (data, _) = search(&b, &q("AAA", "CCC", &day));
    assert_eq!(describe(&data), vec!["XX1 AAA-BBB", "XX2 AAA-CCC"]);
    // From or to the city's other airport it is the airport.
    let (data, meta) = search(&b, &q("BBB", "CCC", &day));
    assert_eq!(
        (describe(&data), &meta["total"]),
        (vec!["XX3 BBB-CCC".to_string()], &serde_json::json!(1))
    );
    let (data, _) = search(&b, &q("CCC", "BBB", &day));
    assert_eq!(describe(&data), vec!["XX4 CCC-BBB"]);
    let (data, _) = search(&b, &with(q("BBB", "CCC", &day), &[("return_date", &day)]));
    assert_eq!(describe(&data), vec!["XX3 BBB-CCC / XX4 CCC-BBB"]);
    // The same code at both ends is still refused.
    let e = search_err(&b, &q("CCC", "ccc", &day));
    assert_eq!(
        (e.status, e.parameter.as_deref()),
        (400, Some("destination"))
    );
}

fn round_trip_world() -> World {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "09:00")],
    ));
    w.flights.push(flight(
        "YY",
        2,
        &[d],
        vec![leg("AAA", "BBB", "07:00", "09:30")],
    ));
    w.flights.push(flight(
        "XX",
        3,
        &[d + 3],
        vec![leg("BBB", "AAA", "08:00", "09:00")],
    ));
    w.flights.push(flight(
        "YY",
        4,
        &[d + 3],
        vec![leg("BBB", "AAA", "12:00", "13:00")],
    ));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 10000));
    w.fares.push(fare("YY", "AAA", "BBB", b'Y', 20000));
    w.fares.push(fare("XX", "BBB", "AAA", b'Y', 5000));
    w.fares
        .push(fare("YY", "BBB", "AAA", b'Y', 8000).currency(b"EUR"));
    w
}

/// Regression: a same-day round trip paired a return that left before the outbound landed
/// (found by an independent oracle on the Gna sample: RUN-MRU XX108 landing 17:40 with
/// XX103 leaving MRU at 09:25). The return must leave at least the minimum connection time
/// after landing.
#[test]
fn same_day_round_trips_turn_round_after_landing() {
    let mut w = base_airports();
    let d = d0();
    // XX1 out; back before landing (XX5), 30 min after (XX6, under the 60-min default MCT)
    // and exactly 60 min after (XX7).
    for (number, from, to, dep, arr) in [
        (1, "AAA", "BBB", "08:00", "09:00"),
        (5, "BBB", "AAA", "07:00", "08:00"),
        (6, "BBB", "AAA", "09:30", "10:30"),
        (7, "BBB", "AAA", "10:00", "11:00"),
    ] {
        w.flights
            .push(flight("XX", number, &[d], vec![leg(from, to, dep, arr)]));
    }
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 10000));
    w.fares.push(fare("XX", "BBB", "AAA", b'Y', 5000));
    let b = build(&w);
    let day = iso(d);
    let rt = with(q("AAA", "BBB", &day), &[("return_date", &day)]);
    for sort in ["price", "departure", "duration"] {
        for priced_only in ["true", "false"] {
            let p = with(rt.clone(), &[("sort", sort), ("priced_only", priced_only)]);
            let (data, meta) = search(&b, &p);
            assert_eq!(describe(&data), vec!["XX1 AAA-BBB / XX7 BBB-AAA"], "{p:?}");
            assert_eq!(meta["total"], 1, "{p:?}");
        }
    }
    let (data, meta) = search(&b, &with(rt.clone(), &[("max_price", "150")]));
    assert_eq!(
        (describe(&data).len(), &meta["total"]),
        (1, &serde_json::json!(1))
    );
    // The query's minimum replaces the table's, as for a connection.
    let (data, meta) = search(
        &b,
        &with(
            rt.clone(),
            &[("min_connection_minutes", "30"), ("sort", "departure")],
        ),
    );
    assert_eq!(
        describe(&data),
        vec!["XX1 AAA-BBB / XX6 BBB-AAA", "XX1 AAA-BBB / XX7 BBB-AAA"]
    );
    assert_eq!(meta["total"], 2);
    // An offer whose return is retimed to leave before the outbound lands has expired.
    let id = data["itineraries"][1]["id"].as_str().unwrap().to_string();
    let mut w2 = w.clone();
    for f in w2.flights.iter_mut().filter(|f| f.number == 7) {
        *f = flight("XX", 7, &[d], vec![leg("BBB", "AAA", "06:00", "07:00")]);
    }
    let b2 = build(&w2);
    let e = searchd::engine::offer(&b2.snap, &b2.overlay, clock(), &id).unwrap_err();
    assert_eq!((e.status, e.code), (410, "offer_expired"), "{}", e.detail);
    let (o, _) = searchd::engine::offer(&b.snap, &b.overlay, clock(), &id).unwrap();
    assert_eq!(o["price"]["amount"], "150.00");
}

#[test]
fn round_trips_price_pairs_in_one_currency() {
    let b = build(&round_trip_world());
    let (d, r) = (iso(d0()), iso(d0() + 3));
    let rt = with(q("AAA", "BBB", &d), &[("return_date", &r)]);
    let (data, meta) = search(&b, &rt);
    // YY4 is in EUR: pairs with it have no common currency.
    assert_eq!(
        describe(&data),
        vec!["XX1 AAA-BBB / XX3 BBB-AAA", "YY2 AAA-BBB / XX3 BBB-AAA"]
    );
    assert_eq!(prices(&data), vec!["150.00 USD", "250.00 USD"]);
    assert_eq!(meta["total"], 2);
    let f = &data["itineraries"][0]["fares"];
    assert_eq!(f[1]["segments"], serde_json::json!([1]));
    let (data, meta) = search(&b, &with(rt.clone(), &[("priced_only", "false")]));
    assert_eq!(meta["total"], 4);
    assert_eq!(
        prices(&data),
        vec!["150.00 USD", "250.00 USD", "null", "null"]
    );
    // Unpriced pairs in departure order then id: YY2 (07:00) first.
    assert_eq!(describe(&data)[2], "YY2 AAA-BBB / YY4 BBB-AAA");
    let (data, meta) = search(&b, &with(rt.clone(), &[("max_price", "200")]));
    assert_eq!(meta["total"], 1);
    assert_eq!(prices(&data), vec!["150.00 USD"]);
    let (data, meta) = search(
        &b,
        &with(
            rt.clone(),
            &[
                ("priced_only", "false"),
                ("sort", "departure"),
                ("limit", "3"),
            ],
        ),
    );
    assert_eq!(meta["total"], 4);
    assert_eq!(
        describe(&data),
        vec![
            "YY2 AAA-BBB / XX3 BBB-AAA",
            "YY2 AAA-BBB / YY4 BBB-AAA",
            "XX1 AAA-BBB / XX3 BBB-AAA"
        ]
    );
    let (data, _) = search(
        &b,
        &with(
            rt.clone(),
            &[
                ("priced_only", "false"),
                ("sort", "duration"),
                ("limit", "1"),
            ],
        ),
    );
    // Durations: XX1 60 + XX3 60 = 120 is the shortest.
    assert_eq!(describe(&data), vec!["XX1 AAA-BBB / XX3 BBB-AAA"]);
    // A return before the date is refused.
    let e = search_err(&b, &with(q("AAA", "BBB", &r), &[("return_date", &d)]));
    assert_eq!(e.parameter.as_deref(), Some("return_date"));
}

#[test]
fn filters() {
    let mut w = connection_world();
    let d = d0();
    w.flights.push(flight(
        "ZZ",
        9,
        &[d],
        vec![leg("AAA", "CCC", "14:00", "16:00")],
    ));
    w.fares.push(fare("ZZ", "AAA", "CCC", b'Y', 40000));
    let b = build(&w);
    let date = iso(d);
    let base = q("AAA", "CCC", &date);
    let run = |more: &[(&str, &str)]| describe(&search(&b, &with(base.clone(), more)).0);
    assert_eq!(
        run(&[]),
        vec![
            "XX1 AAA-BBB|YY2 BBB-CCC",
            "XX1 AAA-BBB|YY4 BBB-CCC",
            "ZZ9 AAA-CCC"
        ]
    );
    assert_eq!(run(&[("carriers", "ZZ")]), vec!["ZZ9 AAA-CCC"]);
    assert_eq!(run(&[("carriers", "xx,yy")]).len(), 2);
    assert_eq!(run(&[("carriers", "XX")]).len(), 0);
    assert_eq!(run(&[("carriers", "QQ")]).len(), 0);
    assert_eq!(run(&[("exclude_carriers", "YY")]), vec!["ZZ9 AAA-CCC"]);
    assert_eq!(run(&[("depart_after", "08:01")]), vec!["ZZ9 AAA-CCC"]);
    assert_eq!(run(&[("depart_after", "14:00")]), vec!["ZZ9 AAA-CCC"]);
    assert_eq!(run(&[("depart_before", "14:00")]).len(), 3);
    assert_eq!(run(&[("depart_before", "13:59")]).len(), 2);
    assert_eq!(run(&[("max_price", "150")]).len(), 2);
    assert_eq!(run(&[("max_price", "149.99")]).len(), 0);
    assert_eq!(run(&[("sort", "departure")])[2], "ZZ9 AAA-CCC");
    assert_eq!(run(&[("sort", "duration")])[0], "ZZ9 AAA-CCC");
    let (data, meta) = search(&b, &with(base.clone(), &[("limit", "1")]));
    assert_eq!(
        (meta["count"].as_u64(), meta["total"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(describe(&data), vec!["XX1 AAA-BBB|YY2 BBB-CCC"]);
    // Business only: no fares, so nothing priced.
    assert_eq!(run(&[("cabin", "business")]).len(), 0);
    assert_eq!(
        run(&[("cabin", "business"), ("priced_only", "false")]).len(),
        3
    );
    assert_eq!(
        prices(
            &search(
                &b,
                &with(
                    base.clone(),
                    &[("cabin", "business"), ("priced_only", "false")]
                )
            )
            .0
        ),
        vec!["null"; 3]
    );
    let (data, _) = search(
        &b,
        &with(
            base.clone(),
            &[("cabin", "business"), ("priced_only", "false")],
        ),
    );
    assert_eq!(data["itineraries"][0]["seats_available"], Value::Null);
}

#[test]
fn every_parameter_error() {
    let b = build(&connection_world());
    let date = iso(d0());
    let base = q("AAA", "CCC", &date);
    let cases: Vec<(Vec<(&str, &str)>, &str, &str)> = vec![
        (
            vec![("destination", "CCC"), ("date", &date)],
            "origin",
            "missing_parameter",
        ),
        (
            vec![("origin", "AAA"), ("date", &date)],
            "destination",
            "missing_parameter",
        ),
        (
            vec![("origin", "AAA"), ("destination", "CCC")],
            "date",
            "missing_parameter",
        ),
        (
            with(base.clone(), &[("bogus", "1")]),
            "bogus",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("adults", "1"), ("adults", "2")]),
            "adults",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("adults", "0")]),
            "adults",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("adults", "10")]),
            "adults",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("adults", "x")]),
            "adults",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("children", "10")]),
            "children",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("adults", "5"), ("children", "5")]),
            "children",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("infants", "2")]),
            "infants",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("cabin", "coach")]),
            "cabin",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("max_connections", "3")]),
            "max_connections",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("min_connection_minutes", "-1")]),
            "min_connection_minutes",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("max_connection_minutes", "99999")]),
            "max_connection_minutes",
            "invalid_parameter",
        ),
        (
            with(
                base.clone(),
                &[
                    ("min_connection_minutes", "100"),
                    ("max_connection_minutes", "50"),
                ],
            ),
            "min_connection_minutes",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("carriers", "X")]),
            "carriers",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("exclude_carriers", "XX,")]),
            "exclude_carriers",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("depart_after", "24:00")]),
            "depart_after",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("depart_before", "9:00")]),
            "depart_before",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("max_price", "-5")]),
            "max_price",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("max_price", "1e3")]),
            "max_price",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("priced_only", "yes")]),
            "priced_only",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("sort", "cheap")]),
            "sort",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("limit", "0")]),
            "limit",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("limit", "1001")]),
            "limit",
            "invalid_parameter",
        ),
        (
            with(base.clone(), &[("return_date", "2025-13-01")]),
            "return_date",
            "invalid_parameter",
        ),
        (
            vec![
                ("origin", "AAA"),
                ("destination", "CCC"),
                ("date", "2025-02-30"),
            ],
            "date",
            "invalid_parameter",
        ),
        (
            vec![("origin", "AA"), ("destination", "CCC"), ("date", &date)],
            "origin",
            "invalid_parameter",
        ),
        (
            vec![("origin", "AAA"), ("destination", "AAA"), ("date", &date)],
            "destination",
            "invalid_parameter",
        ),
    ];
    for (p, param, code) in cases {
        let e = search_err(&b, &p);
        assert_eq!(e.status, 400, "{p:?}");
        assert_eq!(e.code, code, "{p:?}");
        assert_eq!(e.parameter.as_deref(), Some(param), "{p:?}");
    }
    // Limits that are fine.
    search(
        &b,
        &with(
            base.clone(),
            &[("limit", "1000"), ("adults", "9"), ("infants", "9")],
        ),
    );
}

#[test]
fn child_and_infant_pricing_and_seats() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "09:00")],
    ));
    w.open_classes = vec![];
    w.avail.push(seats("XX", 1, d, "AAA", b'Y', 9));
    w.avail.push(seats("XX", 1, d, "AAA", b'M', 1));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 10000));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 7500).ptype(1));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 1000).ptype(2));
    w.fares.push(fare("XX", "AAA", "BBB", b'M', 8000));
    let b = build(&w);
    let date = iso(d);
    let base = q("AAA", "BBB", &date);
    let price = |more: &[(&str, &str)]| prices(&search(&b, &with(base.clone(), more)).0);
    assert_eq!(price(&[]), vec!["80.00 USD"]);
    // M has one seat: two seated passengers need Y: 100 + 75 (CHD) + 10 (INF).
    assert_eq!(
        price(&[("children", "1"), ("infants", "1")]),
        vec!["185.00 USD"]
    );
    // An infant takes no seat: M still fits, and M has no INF fare: 80 + 0.
    assert_eq!(price(&[("infants", "1")]), vec!["80.00 USD"]);
    assert_eq!(price(&[("adults", "2")]), vec!["200.00 USD"]);
    let (data, _) = search(&b, &with(base.clone(), &[("adults", "2")]));
    assert_eq!(data["itineraries"][0]["seats_available"], 9);
    // The overlay replaces the snapshot: Y down to 1 seat leaves no valid construction for 2.
    let fi = 0u32;
    let key = format::model::avail_key(fi, 0, (d - (d - 2)) as u16, b'Y');
    b.overlay.apply(&[(key, 1)]);
    assert_eq!(
        price(&[("adults", "2"), ("priced_only", "false")]),
        vec!["null"]
    );
    b.overlay.apply(&[(key, 0)]);
    assert_eq!(price(&[]), vec!["80.00 USD"]);
    let key_m = format::model::avail_key(fi, 0, 2, b'M');
    b.overlay.apply(&[(key_m, 0)]);
    assert_eq!(price(&[("priced_only", "false")]), vec!["null"]);
}

#[test]
fn child_without_chd_fare_pays_adult_and_infant_with_inf() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "09:00")],
    ));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 10000));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 2000).ptype(2));
    // A CHD fare of another class does not apply to Y.
    w.fares.push(fare("XX", "AAA", "BBB", b'M', 100).ptype(1));
    let b = build(&w);
    let (data, _) = search(
        &b,
        &with(
            q("AAA", "BBB", &iso(d)),
            &[("adults", "2"), ("children", "1"), ("infants", "2")],
        ),
    );
    assert_eq!(prices(&data), vec!["340.00 USD"]);
}

#[test]
fn seats_on_every_leg_of_a_component_and_fare_rules() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(through_aaa_bbb_ccc(d));
    w.open_classes = vec![b'Y'];
    w.avail.push(seats("XX", 1, d, "AAA", b'M', 5));
    w.avail.push(seats("XX", 1, d, "BBB", b'M', 0));
    w.fares.push(fare("XX", "AAA", "CCC", b'Y', 30000));
    w.fares.push(fare("XX", "AAA", "CCC", b'M', 10000));
    // Fare rules on K (open everywhere): each of these is invalid on d0 (Monday) bought 30 days ahead.
    w.avail.push(seats("XX", 1, d, "AAA", b'K', 9));
    w.avail.push(seats("XX", 1, d, "BBB", b'K', 9));
    w.fares.push(fare("XX", "AAA", "CCC", b'K', 5000).ap(31));
    w.fares
        .push(fare("XX", "AAA", "CCC", b'K', 5100).days(0b1111110));
    w.fares
        .push(fare("XX", "AAA", "CCC", b'K', 5200).dates(d + 1, d + 10));
    w.fares
        .push(fare("XX", "AAA", "CCC", b'K', 5300).dates(d - 10, d - 1));
    w.fares.push(fare("XX", "AAA", "CCC", b'K', 5400).cabin(2));
    let b = build(&w);
    let date = iso(d);
    // Without a cabin, the business fare is the cheapest.
    let (data, _) = search(&b, &q("AAA", "CCC", &date));
    assert_eq!(prices(&data), vec!["54.00 USD"]);
    let (data, _) = search(&b, &with(q("AAA", "CCC", &date), &[("cabin", "economy")]));
    assert_eq!(prices(&data), vec!["300.00 USD"]);
    let (data, _) = search(&b, &with(q("AAA", "CCC", &date), &[("cabin", "business")]));
    assert_eq!(prices(&data), vec!["54.00 USD"]);
    assert_eq!(data["itineraries"][0]["fares"][0]["cabin"], "business");
    // Open M on the second leg: M wins; AP exactly 30 days is met.
    let mut w2 = w.clone();
    w2.avail.retain(|a| !(a.origin == "BBB" && a.class == b'M'));
    w2.avail.push(seats("XX", 1, d, "BBB", b'M', 2));
    w2.fares.push(fare("XX", "AAA", "CCC", b'K', 4000).ap(30));
    let b2 = build(&w2);
    let eco = [("cabin", "economy")];
    let (data, _) = search(&b2, &with(q("AAA", "CCC", &date), &eco));
    assert_eq!(prices(&data), vec!["40.00 USD"]);
    let (data, _) = search(
        &b2,
        &with(
            q("AAA", "CCC", &date),
            &[("adults", "3"), ("cabin", "economy")],
        ),
    );
    // K has 9 seats: 3 x 40.
    assert_eq!(prices(&data), vec!["120.00 USD"]);
    let (data, _) = search(
        &b2,
        &with(
            q("AAA", "CCC", &date),
            &[("carriers", "XX"), ("exclude_carriers", "XX")],
        ),
    );
    assert_eq!(prices(&data).len(), 0);
    let _ = data;
}

#[test]
fn mixed_currency_constructions_are_invalid() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "09:00")],
    ));
    w.flights.push(flight(
        "YY",
        2,
        &[d],
        vec![leg("BBB", "CCC", "10:00", "11:00")],
    ));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 10000));
    w.fares
        .push(fare("YY", "BBB", "CCC", b'Y', 5000).currency(b"EUR"));
    let b = build(&w);
    let date = iso(d);
    let (data, meta) = search(&b, &q("AAA", "CCC", &date));
    assert_eq!(
        (describe(&data).len(), meta["total"].as_u64()),
        (0, Some(0))
    );
    let (data, _) = search(
        &b,
        &with(q("AAA", "CCC", &date), &[("priced_only", "false")]),
    );
    assert_eq!(prices(&data), vec!["null"]);
}

/// Regression: equal values in two currencies kept their order of discovery, so a calendar
/// day could show the GBP copy of the itinerary its search showed in EUR (found by the
/// oracle on the Gna sample). The first currency code wins, everywhere.
#[test]
fn equal_values_in_two_currencies_show_the_first_currency_code() {
    let mut w = base_airports();
    w.open_classes = vec![b'Y', b'B'];
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![leg("AAA", "BBB", "08:00", "09:00")],
    ));
    // B comes before Y in fare order, so GBP is found first.
    w.fares
        .push(fare("XX", "AAA", "BBB", b'B', 10000).currency(b"GBP"));
    w.fares
        .push(fare("XX", "AAA", "BBB", b'Y', 10000).currency(b"EUR"));
    let b = build(&w);
    let date = iso(d);
    let (data, _) = search(&b, &q("AAA", "BBB", &date));
    let it = &data["itineraries"][0];
    assert_eq!(it["price"]["currency"], "EUR", "{it}");
    assert_eq!(it["fares"][0]["booking_class"], "Y");
    let params: Vec<(String, String)> = [
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("from", date.as_str()),
        ("to", date.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (cal, _) = searchd::engine::calendar(&b.snap, &b.overlay, clock(), &params).unwrap();
    let day = &cal["days"][0];
    assert_eq!(day["lowest_price"]["currency"], "EUR", "{day}");
    assert_eq!(day["itinerary_id"], it["id"]);
    // A round trip's pair too: EUR both ways as well as GBP both ways at equal totals.
    w.flights.push(flight(
        "XX",
        2,
        &[d + 1],
        vec![leg("BBB", "AAA", "08:00", "09:00")],
    ));
    w.fares
        .push(fare("XX", "BBB", "AAA", b'B', 5000).currency(b"GBP"));
    w.fares
        .push(fare("XX", "BBB", "AAA", b'Y', 5000).currency(b"EUR"));
    let b = build(&w);
    let ret = iso(d + 1);
    let (data, _) = search(&b, &with(q("AAA", "BBB", &date), &[("return_date", &ret)]));
    assert_eq!(data["itineraries"][0]["price"]["currency"], "EUR");
    assert_eq!(prices(&data), vec!["150.00 EUR"]);
}

#[test]
fn offers_round_trip_reprice_and_expire() {
    let mut w = round_trip_world();
    w.open_classes = vec![b'Y', b'M'];
    w.fares.push(fare("XX", "AAA", "BBB", b'M', 9000));
    let b = build(&w);
    let (d, r) = (iso(d0()), iso(d0() + 3));
    let (data, _) = search(
        &b,
        &with(q("AAA", "BBB", &d), &[("return_date", &r), ("adults", "2")]),
    );
    let it = &data["itineraries"][0];
    assert_eq!(it["price"]["amount"], "280.00");
    let id = it["id"].as_str().unwrap().to_string();
    assert!(id.len() <= 256);
    let (o, _) = searchd::engine::offer(&b.snap, &b.overlay, clock(), &id).unwrap();
    assert_eq!(o["price_changed"], false);
    assert_eq!(o["id"], id.as_str());
    assert_eq!(o["price"], it["price"]);
    assert_eq!(o["slices"], it["slices"]);
    // Close M on XX1: the offer re-prices at Y.
    let key = format::model::avail_key(0, 0, 2, b'M');
    b.overlay.apply(&[(key, 0)]);
    let (o, _) = searchd::engine::offer(&b.snap, &b.overlay, clock(), &id).unwrap();
    assert_eq!(o["price_changed"], true);
    assert_eq!(o["price"]["amount"], "300.00");
    // The typed decoder keeps the party.
    let r2 = searchd::engine::decode_offer(&b.snap, &id).unwrap();
    assert_eq!((r2.adults, r2.slices.len()), (2, 2));
    // Tampering: every single-character change is refused with a 400, never a panic.
    for i in 0..id.len() {
        let mut t = id.clone().into_bytes();
        t[i] = if t[i] == b'0' { b'1' } else { b'0' };
        let t = String::from_utf8(t).unwrap();
        let e = searchd::engine::offer(&b.snap, &b.overlay, clock(), &t).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_offer_id"));
        // Regression: the error named no parameter (openapi: `source.parameter` = `id`).
        assert_eq!(e.parameter.as_deref(), Some("id"));
    }
    for bad in [
        "",
        "zz",
        "abc",
        &id[..id.len() - 2],
        &format!("{id}00"),
        &id.to_uppercase(),
    ] {
        let e = searchd::engine::offer(&b.snap, &b.overlay, clock(), bad).unwrap_err();
        assert_eq!(e.status, 400, "{bad}");
    }
    // A new snapshot without XX3: the offer is gone.
    let mut w3 = round_trip_world();
    w3.flights.retain(|f| f.number != 3);
    let b3 = build(&w3);
    let e = searchd::engine::offer(&b3.snap, &b3.overlay, clock(), &id).unwrap_err();
    assert_eq!((e.status, e.code), (410, "offer_expired"));
    // An equivalent snapshot rebuilt from scratch (a reload) keeps the id valid.
    let b4 = build(&w);
    let (o4, _) = searchd::engine::offer(&b4.snap, &b4.overlay, clock(), &id).unwrap();
    assert_eq!(o4["price_changed"], false);
    assert_eq!(o4["id"], id.as_str());
}

#[test]
fn calendar_lowest_price_per_day() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d, d + 1],
        vec![leg("AAA", "BBB", "08:00", "09:00")],
    ));
    w.flights.push(flight(
        "XX",
        2,
        &[d + 1],
        vec![leg("AAA", "BBB", "12:00", "13:00")],
    ));
    w.fares
        .push(fare("XX", "AAA", "BBB", b'Y', 10000).days(0b0000001));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 12000));
    let b = build(&w);
    let p = params(&[
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("from", &iso(d - 1)),
        ("to", &iso(d + 2)),
    ]);
    let (data, meta) = searchd::engine::calendar(&b.snap, &b.overlay, clock(), &p).unwrap();
    assert_eq!(meta["count"], 4);
    let days = data["days"].as_array().unwrap();
    let got: Vec<(String, Value)> = days
        .iter()
        .map(|x| {
            (
                x["date"].as_str().unwrap().to_string(),
                x["lowest_price"]["amount"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (iso(d - 1), Value::Null),
            (iso(d), Value::from("100.00")),
            (iso(d + 1), Value::from("120.00")),
            (iso(d + 2), Value::Null),
        ]
    );
    assert!(days[1]["itinerary_id"].is_string());
    assert!(days[0]["itinerary_id"].is_null());
    // The itinerary id re-prices to the same amount.
    let id = days[2]["itinerary_id"].as_str().unwrap();
    let (o, _) = searchd::engine::offer(&b.snap, &b.overlay, clock(), id).unwrap();
    assert_eq!(o["price"]["amount"], "120.00");
    assert_eq!(o["slices"][0]["segments"][0]["flight_number"], "1");
    // Range checks.
    let p = params(&[
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("from", &iso(d)),
        ("to", &iso(d + 62)),
    ]);
    let e = searchd::engine::calendar(&b.snap, &b.overlay, clock(), &p).unwrap_err();
    assert_eq!((e.status, e.parameter.as_deref()), (400, Some("to")));
    let p = params(&[
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("from", &iso(d)),
        ("to", &iso(d + 61)),
    ]);
    assert!(searchd::engine::calendar(&b.snap, &b.overlay, clock(), &p).is_ok());
    let p = params(&[
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("from", &iso(d)),
        ("to", &iso(d)),
        ("sort", "price"),
    ]);
    let e = searchd::engine::calendar(&b.snap, &b.overlay, clock(), &p).unwrap_err();
    assert_eq!(e.parameter.as_deref(), Some("sort"));
}

#[test]
fn non_passenger_legs_are_never_offered() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(flight(
        "XX",
        1,
        &[d],
        vec![
            leg("AAA", "BBB", "08:00", "09:00"),
            leg("BBB", "CCC", "10:00", "11:00").service(b'F'),
        ],
    ));
    w.fares.push(fare("XX", "AAA", "BBB", b'Y', 1000));
    w.fares.push(fare("XX", "AAA", "CCC", b'Y', 1000));
    w.fares.push(fare("XX", "BBB", "CCC", b'Y', 1000));
    let b = build(&w);
    assert_eq!(describe(&search(&b, &q("AAA", "BBB", &iso(d))).0).len(), 1);
    assert_eq!(describe(&search(&b, &q("AAA", "CCC", &iso(d))).0).len(), 0);
    assert_eq!(describe(&search(&b, &q("BBB", "CCC", &iso(d))).0).len(), 0);
}

/// Live overlay entries replace the snapshot leg by leg and class by class on a through
/// flight: a class closed on one leg closes the segment, a class the snapshot has no row
/// for opens only with entries on every leg, and the segment's seats are the fewest over
/// its legs of whichever source each leg has.
#[test]
fn overlay_entries_replace_the_snapshot_leg_by_leg_on_a_through_flight() {
    let mut w = base_airports();
    let d = d0();
    w.flights.push(through_aaa_bbb_ccc(d));
    w.open_classes = vec![];
    for origin in ["AAA", "BBB"] {
        w.avail.push(seats("XX", 1, d, origin, b'Y', 9));
        w.avail.push(seats("XX", 1, d, origin, b'M', 5));
    }
    w.fares.push(fare("XX", "AAA", "CCC", b'Y', 20000));
    w.fares.push(fare("XX", "AAA", "CCC", b'M', 15000));
    w.fares.push(fare("XX", "AAA", "CCC", b'B', 10000));
    let b = build(&w);
    let date = iso(d);
    let base = q("AAA", "CCC", &date);
    let answer = || {
        let (data, _) = search(&b, &with(base.clone(), &[("max_connections", "0")]));
        let it = &data["itineraries"][0];
        (
            it["price"]["amount"].as_str().unwrap_or("").to_string(),
            it["seats_available"].as_u64().unwrap_or(0),
        )
    };
    assert_eq!(answer(), ("150.00".to_string(), 5));
    let key = |leg: u8, class: u8| format::model::avail_key(0, leg, 2, class);
    // M sold out on the second leg only: the segment has no M.
    b.overlay.apply(&[(key(1, b'M'), 0)]);
    assert_eq!(answer(), ("200.00".to_string(), 9));
    // M back with 4 on the second leg: the first leg's snapshot 5 and the overlay's 4.
    b.overlay.apply(&[(key(1, b'M'), 4), (key(0, b'Y'), 2)]);
    assert_eq!(answer(), ("150.00".to_string(), 4));
    // B has no snapshot row: an entry on one leg does not open it, on both legs it does.
    b.overlay.apply(&[(key(0, b'B'), 3)]);
    assert_eq!(answer(), ("150.00".to_string(), 4));
    b.overlay.apply(&[(key(1, b'B'), 7)]);
    assert_eq!(answer(), ("100.00".to_string(), 3));
}

/// A flight flying three weekdays for three weeks has availability rows on those days only;
/// its seats are read by position among them. Each date's seats must be that date's, on
/// each leg of a through flight, and a date it does not fly must find nothing.
#[test]
fn seats_of_a_flight_flying_some_weekdays_are_the_searched_dates() {
    let mut w = base_airports();
    w.open_classes = vec![b'M', b'Y'];
    let d = d0();
    let dates: Vec<i32> = [0, 2, 4, 7, 9, 11, 14, 16, 18]
        .iter()
        .map(|k| d + k)
        .collect();
    w.flights.push(flight(
        "XX",
        7,
        &dates,
        vec![
            leg("AAA", "BBB", "08:00", "09:00"),
            leg("BBB", "CCC", "10:00", "11:00"),
        ],
    ));
    w.fares.push(fare("XX", "AAA", "CCC", b'M', 10000));
    w.fares.push(fare("XX", "AAA", "CCC", b'Y', 20000));
    // Date k: class M has k seats on the first leg and 8 - k on the second (both 9 when
    // the override is absent: the last date keeps the open default on both legs).
    for (k, &date) in dates.iter().enumerate().take(8) {
        w.avail.push(seats("XX", 7, date, "AAA", b'M', k as u16));
        w.avail
            .push(seats("XX", 7, date, "BBB", b'M', 8 - k as u16));
    }
    let b = build(&w);
    for (k, &date) in dates.iter().enumerate() {
        let (data, meta) = search(&b, &q("AAA", "CCC", &iso(date)));
        assert_eq!(meta["total"], 1, "date index {k}");
        let it = &data["itineraries"][0];
        let (m_first, m_second) = if k < 8 { (k, 8 - k) } else { (9, 9) };
        let m_open = m_first.min(m_second);
        if m_open >= 1 {
            assert_eq!(it["price"]["amount"], "100.00", "date index {k}");
            assert_eq!(it["fares"][0]["booking_class"], "M", "date index {k}");
            assert_eq!(it["seats_available"], m_open, "date index {k}");
        } else {
            assert_eq!(it["price"]["amount"], "200.00", "date index {k}");
            assert_eq!(it["fares"][0]["booking_class"], "Y", "date index {k}");
            assert_eq!(it["seats_available"], 9, "date index {k}");
        }
    }
    for k in [1, 3, 5, 6, 8] {
        let (_, meta) = search(&b, &q("AAA", "CCC", &iso(d + k)));
        assert_eq!(meta["total"], 0, "day {k} has no flight");
    }
}
