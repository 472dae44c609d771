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
    let snap = format::Snapshot::open(snapshot).unwrap();
    let overlay = searchd::overlay::Overlay::new();
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
    // The fourth seat in M does not exist: bookd's inventory refuses it.
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
    assert_eq!(r.code(), "seats_unavailable");

    // A hold on the same engine offer for 2 adults (class M for 2 needs 2 seats: none left,
    // but the id was made for one adult; the party comes from the id).
    let (offer2, price2) = engine_offer(&snapshot, &date_of(4), 2);
    assert_eq!(price2, json!({"amount": "160.00", "currency": "EUR"}));
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key),
            None,
            Some(&hold_body(&offer2, 2)),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body["data"]["price"],
        json!({"amount": "160.00", "currency": "EUR"})
    );

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
