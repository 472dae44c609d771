//! bookd with its production offer resolver: offer ids come from searchd's engine, are
//! re-priced by the same engine, and a `leg:` test id is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

/// The cheapest offer AAA->BBB on `date` for `adults`, from the engine itself.
fn engine_offer(
    snapshot: &std::path::Path,
    date: &str,
    adults: u32,
) -> (String, serde_json::Value) {
    engine_offer_with(snapshot, date, adults, &[])
}

/// [`engine_offer`] with live seats in some classes of the one flight (as searchd has them
/// from bookd).
fn engine_offer_with(
    snapshot: &std::path::Path,
    date: &str,
    adults: u32,
    live: &[(u8, u16)],
) -> (String, serde_json::Value) {
    let snap = format::Snapshot::open(snapshot).unwrap();
    let overlay = searchd::overlay::Overlay::new();
    let day = format::date::parse_iso(date).unwrap() - snap.network.get().first_day.to_native();
    let updates: Vec<(u64, u16)> = live
        .iter()
        .map(|&(class, seats)| (format::model::avail_key(0, 0, day as u16, class), seats))
        .collect();
    overlay.apply(&updates);
    let now = format::date::parse_iso("2030-01-01").unwrap();
    let clock = searchd::engine::Clock {
        now_utc_min: i64::from(now) * 1440,
    };
    let params: Vec<(String, String)> = [
        ("origin", "AAA"),
        ("destination", "BBB"),
        ("date", date),
        ("adults", &adults.to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (data, _meta) = searchd::engine::search(&snap, &overlay, clock, &params).unwrap();
    assert!(data["itineraries"][0].is_object(), "no itinerary: {data}");
    let it = data["itineraries"][0].clone();
    (it["id"].as_str().unwrap().to_string(), it["price"].clone())
}

/// Holds `offer_id` for `adults` and checks the hold is made at `amount` EUR.
async fn assert_held_at(b: &Bookd, key: &str, offer_id: &str, adults: usize, amount: &str) {
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(key),
            None,
            Some(&hold_body(offer_id, adults)),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body["data"]["price"],
        json!({"amount": amount, "currency": "EUR"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_offer_ids_book_until_the_class_is_sold_out() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("s")).unwrap();
    let snapshot = build_snapshot(&tmp.path().join("s"));
    let b = Bookd::with_engine_offers(tmp.path(), &snapshot, NOW);
    let key = b.new_key("agency");
    let date = date_of(3);

    // The cheapest offer is class M at 80.00 EUR; M has 3 seats.
    let (offer_id, price) = engine_offer(&snapshot, &date, 1);
    assert_eq!(price, json!({"amount": "80.00", "currency": "EUR"}));
    for i in 0..3 {
        let r = b
            .call(
                "POST",
                "/v1/orders",
                Some(&key),
                None,
                Some(&order_body(&offer_id, 1, "tok_ok")),
            )
            .await;
        assert_eq!(r.status, 201, "order {i}: {:?}", r.body);
        assert_eq!(r.body["data"]["status"], "confirmed");
        assert_eq!(
            r.body["data"]["price"],
            json!({"amount": "80.00", "currency": "EUR"})
        );
    }
    // The fourth seat in M does not exist, but Y has seats: the itinerary now costs 100.00,
    // and bookd says so (what searchd, fed by bookd, now offers) rather than "no seats".
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer_id, 1, "tok_ok")),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.code(), "price_changed");
    assert_eq!(
        r.body["errors"][0]["meta"]["price"],
        json!({"amount": "100.00", "currency": "EUR"}),
        "{:?}",
        r.body
    );
    // Regression: accepting the new price booked nothing (bookd priced the id against the
    // snapshot's M again: 409 price_changed at 80.00, then 409 seats_unavailable at M).
    let mut accept = order_body(&offer_id, 1, "tok_ok");
    accept["expected_total"] = json!({"amount": "100.00", "currency": "EUR"});
    let r = b
        .call("POST", "/v1/orders", Some(&key), None, Some(&accept))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["data"]["segments"][0]["booking_class"], "Y");
    // ... and so does the id searchd makes once it has bookd's seats (M at 0): Y, 100.00.
    let (live_id, live_price) = engine_offer_with(&snapshot, &date, 1, &[(b'M', 0)]);
    assert_eq!(live_price, json!({"amount": "100.00", "currency": "EUR"}));
    assert_held_at(&b, &key, &live_id, 1, "100.00").await;

    // A hold on the same engine offer for 2 adults (class M for 2 needs 2 seats: none left,
    // but the id was made for one adult; the party comes from the id).
    let (offer2, price2) = engine_offer(&snapshot, &date_of(4), 2);
    assert_eq!(price2, json!({"amount": "160.00", "currency": "EUR"}));
    assert_held_at(&b, &key, &offer2, 2, "160.00").await;

    // A tampered id is a 400 naming offer_id; a test `leg:` id is not an offer here.
    let mut bad = offer_id.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    for id in [bad.as_str(), "leg:XX:100:2030-01-04:AAA:Y:100.00"] {
        let r = b
            .call(
                "POST",
                "/v1/orders",
                Some(&key),
                None,
                Some(&order_body(id, 1, "tok_ok")),
            )
            .await;
        assert_eq!(r.status, 400, "{id}: {:?}", r.body);
        assert_eq!(r.param(), "offer_id", "{:?}", r.body);
    }
}

/// Regression: bookd held and sold seats on a flight that had already left (the engine
/// resolver had no departure check; the hold's `expires_at` was clamped into the past).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_departed_flight_is_gone_for_holds_and_orders() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("s")).unwrap();
    let snapshot = build_snapshot(&tmp.path().join("s"));
    // The flight leaves at 10:00 on day 0; bookd's clock is 12:00 that day.
    let b = Bookd::with_engine_offers(tmp.path(), &snapshot, "2030-01-01T12:00:00Z");
    let key = b.new_key("agency");
    let (gone, _) = engine_offer(&snapshot, &date_of(0), 1);
    for (path, body) in [
        ("/v1/holds", hold_body(&gone, 1)),
        ("/v1/orders", order_body(&gone, 1, "tok_ok")),
    ] {
        let r = b.call("POST", path, Some(&key), None, Some(&body)).await;
        assert_eq!(r.status, 410, "{path}: {:?}", r.body);
        assert_eq!(r.code(), "offer_expired", "{path}");
    }
    // The next day's flight is still for sale.
    let (next, _) = engine_offer(&snapshot, &date_of(1), 1);
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key),
            None,
            Some(&hold_body(&next, 1)),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}
