//! The booking API end to end against a real PostgreSQL (bookd's embedded cluster).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_order_get_list_cancel() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(tmp.path(), &[]);
    let key = b.new_key("agency");

    let r = b.call("GET", "/healthz", None, None, None).await;
    assert_eq!(r.status, 200);
    let r = b.call("GET", "/readyz", None, None, None).await;
    assert_eq!(r.status, 200);

    // Hold two seats, then order from the hold.
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key),
            None,
            Some(&hold_body(&offer(3, "Y", 2), 2)),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let d = &r.body["data"];
    assert_eq!(d["status"], "held");
    assert_eq!(d["price"], json!({"amount": "200.00", "currency": "EUR"}));
    assert!(d["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(d["order"].is_object());
    let hold_id = d["id"].as_str().unwrap().to_string();

    let body = json!({"hold_id": hold_id, "payment": {"type": "card", "token": "tok_ok"},
                      "expected_total": {"amount": "200.00", "currency": "EUR"}});
    let r = b
        .call("POST", "/v1/orders", Some(&key), None, Some(&body))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let o = &r.body["data"];
    assert_eq!(o["status"], "confirmed");
    assert_eq!(o["booking_reference"].as_str().unwrap().len(), 6);
    assert_eq!(o["passengers"].as_array().unwrap().len(), 2);
    let order_id = o["id"].as_str().unwrap().to_string();

    // The same hold cannot be ordered twice.
    let r = b
        .call("POST", "/v1/orders", Some(&key), None, Some(&body))
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);

    // Instant orders.
    let mut ids = vec![order_id.clone()];
    for day in 4..7 {
        let r = b
            .call(
                "POST",
                "/v1/orders",
                Some(&key),
                None,
                Some(&order_body(&offer(day, "Y", 1), 1, "tok_ok")),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.body["data"]["id"].as_str().unwrap().to_string());
    }

    let r = b
        .call(
            "GET",
            &format!("/v1/orders/{order_id}"),
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["passengers"][0]["given_name"], "Ada");

    // Cursor pagination: 4 orders, pages of 3.
    let r = b
        .call("GET", "/v1/orders?limit=3", Some(&key), None, None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let page1: Vec<String> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page1, ids[..3]);
    let after = r.body["meta"]["after"].as_str().unwrap().to_string();
    let r = b
        .call(
            "GET",
            &format!("/v1/orders?limit=3&after={after}"),
            Some(&key),
            None,
            None,
        )
        .await;
    let page2: Vec<String> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page2, ids[3..]);
    assert!(r.body["meta"]["after"].is_null());
    let r = b
        .call("GET", "/v1/orders?limit=0", Some(&key), None, None)
        .await;
    assert_eq!((r.status, r.param()), (400, "limit"));

    // Cancel: refund of the refundable Y fare, seats back on sale.
    let r = b
        .call(
            "POST",
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["status"], "cancelled");
    assert_eq!(
        r.body["data"]["refund_amount"],
        json!({"amount": "200.00", "currency": "EUR"})
    );
    let db = b.db().await;
    let row = db
        .query_one("SELECT sold, held, capacity FROM inventory WHERE dep_date = $1::text::date AND booking_class = 'Y'", &[&date_of(3)])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, i32>(2)
        ),
        (0, 0, 10)
    );
    check_consistency(&db).await;

    // Passenger data is encrypted at rest.
    let rows = db
        .query("SELECT data_enc FROM passengers", &[])
        .await
        .unwrap();
    for r in rows {
        let blob: Vec<u8> = r.get(0);
        assert!(!blob.windows(3).any(|w| w == b"Ada"));
    }
    // The audit is append-only.
    assert!(db.execute("DELETE FROM audit", &[]).await.is_err());
    assert!(db
        .execute("UPDATE audit SET actor = 'x'", &[])
        .await
        .is_err());
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM audit WHERE action = 'order.cancel'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    let m = b.call("GET", "/metrics", None, None, None).await;
    assert!(m
        .body
        .as_str()
        .unwrap()
        .contains("bookd_orders_confirmed_total 4"));
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_errors_and_validation() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(tmp.path(), &[]);
    let key = b.new_key("agency");
    let post = |body: serde_json::Value| {
        let key = key.clone();
        let b = &b;
        async move {
            b.call("POST", "/v1/holds", Some(&key), None, Some(&body))
                .await
        }
    };
    // Class M has 3 seats: 4 adults do not fit.
    let r = post(hold_body(&offer(5, "M", 4), 4)).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "seats_unavailable"),
        "{:?}",
        r.body
    );
    // Class K has no availability row: 0 seats.
    let r = post(hold_body(&offer(5, "K", 1), 1)).await;
    assert_eq!((r.status, r.code()), (409, "seats_unavailable"));
    // A quoted price that is no longer the fare: 409 price_changed with the new price.
    let stale = offer(5, "Y", 1).replace("10000EUR", "9000EUR");
    let r = post(hold_body(&stale, 1)).await;
    assert_eq!((r.status, r.code()), (409, "price_changed"));
    assert_eq!(r.body["errors"][0]["meta"]["price"]["amount"], "100.00");
    // A flight that does not operate: 410.
    let r = post(hold_body("leg:XX:100:2031-06-01:AAA:Y:10000EUR:1", 1)).await;
    assert_eq!((r.status, r.code()), (410, "offer_expired"));
    let r = post(hold_body("leg:XX:999:2030-01-05:AAA:Y:10000EUR:1", 1)).await;
    assert_eq!((r.status, r.code()), (410, "offer_expired"));
    // Validation names the field.
    let mut body = hold_body(&offer(5, "Y", 1), 1);
    body["passengers"][0]["born_on"] = json!("2025-06-01");
    let r = post(body).await;
    assert_eq!(
        (r.status, r.param()),
        (400, "passengers[0].born_on"),
        "{:?}",
        r.body
    );
    let mut body = hold_body(&offer(5, "Y", 1), 1);
    body["passengers"][0]["born_on"] = json!("1990-02-30");
    assert_eq!(post(body).await.param(), "passengers[0].born_on");
    let mut body = hold_body(&offer(5, "Y", 1), 1);
    body["passengers"][0]["given_name"] = json!("");
    assert_eq!(post(body).await.param(), "passengers[0].given_name");
    let mut body = hold_body(&offer(5, "Y", 1), 1);
    body["contact"]["email"] = json!("not-an-email");
    assert_eq!(post(body).await.param(), "contact.email");
    let r = post(hold_body(&offer(5, "Y", 1), 2)).await;
    assert_eq!((r.status, r.param()), (400, "passengers"));
    let r = post(json!({"passengers": []})).await;
    assert_eq!((r.status, r.param()), (400, "offer_id"));
    // A child must be 2-11 at travel.
    let child_offer = "leg:XX:100:2030-01-06:AAA:Y:20000EUR:1:1";
    let mut body = hold_body(child_offer, 2);
    body["passengers"][1] = json!({"type": "child", "given_name": "Tom", "family_name": "Lee", "born_on": "2010-01-01"});
    let r = post(body.clone()).await;
    assert_eq!(
        (r.status, r.param()),
        (400, "passengers[1].born_on"),
        "{:?}",
        r.body
    );
    body["passengers"][1]["born_on"] = json!("2022-01-01");
    let r = post(body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Orders: a hold of another key is 404; payment must be a card.
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&json!({"hold_id": "hld_nope", "payment": {"type": "card", "token": "tok_ok"}})),
        )
        .await;
    assert_eq!((r.status, r.param()), (404, "hold_id"), "{:?}", r.body);
    let mut ob = order_body(&offer(5, "Y", 1), 1, "tok_ok");
    ob["payment"]["type"] = json!("cash");
    let r = b
        .call("POST", "/v1/orders", Some(&key), None, Some(&ob))
        .await;
    assert_eq!((r.status, r.param()), (400, "payment.type"));
    let mut ob = order_body(&offer(5, "Y", 1), 1, "tok_ok");
    ob["expected_total"] = json!({"amount": "99.00", "currency": "EUR"});
    let r = b
        .call("POST", "/v1/orders", Some(&key), None, Some(&ob))
        .await;
    assert_eq!((r.status, r.code()), (409, "price_changed"));
    // Declined card: 402 and no seat kept.
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(7, "M", 3), 3, "tok_decline")),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (402, "payment_declined"),
        "{:?}",
        r.body
    );
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(7, "M", 3), 3, "tok_ok")),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "seats were released after the decline: {:?}",
        r.body
    );
    check_consistency(&b.db().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_expiry_releases_seats() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(tmp.path(), &["--hold-ttl-secs", "1"]);
    let key = b.new_key("agency");
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key),
            None,
            Some(&hold_body(&offer(9, "M", 3), 3)),
        )
        .await;
    assert_eq!(r.status, 201);
    let hold = r.body["data"]["id"].as_str().unwrap().to_string();
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key),
            None,
            Some(&hold_body(&offer(9, "M", 1), 1)),
        )
        .await;
    assert_eq!(r.code(), "seats_unavailable");
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let r = b.call("POST", "/v1/orders", Some(&key), None, Some(&serde_json::json!({"hold_id": hold, "payment": {"type": "card", "token": "tok_ok"}}))).await;
    assert_eq!((r.status, r.code()), (410, "offer_expired"));
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key),
            None,
            Some(&hold_body(&offer(9, "M", 3), 3)),
        )
        .await;
    assert_eq!(r.status, 201, "expired seats are back on sale");
    let db = b.db().await;
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox WHERE reason = 'hold_expired'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    check_consistency(&db).await;
}

/// A client gives a hold up: its seats are back on sale at once (not when it would have
/// expired), and no order can be made from it any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn released_hold_returns_its_seats_at_once() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(tmp.path(), &[]);
    let key = b.new_key("agency");
    let other = b.new_key("other agency");
    let full = hold_body(&offer(9, "M", 3), 3);
    let r = b.post("/v1/holds", &key, &full).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = r.body["data"].clone();
    let hold = created["id"].as_str().unwrap().to_string();
    let path = format!("/v1/holds/{hold}");
    let cancel = format!("/v1/holds/{hold}/cancel");

    // GET shows what POST answered.
    let r = b.get(&path, &key).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"], created);
    // Another key has no such hold, and cannot release it.
    let r = b.get(&path, &other).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = b.post_empty(&cancel, &other).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    // Regression: a 405 had no Allow header (RFC 9110 requires one).
    for (method, path, allow) in [
        ("GET", cancel.as_str(), "POST"),
        ("GET", "/v1/holds", "POST"),
        ("DELETE", "/v1/orders", "GET, POST"),
        ("POST", path.as_str(), "GET"),
        ("PUT", path.as_str(), "GET"),
    ] {
        let r = b.call(method, path, Some(&key), None, None).await;
        assert_eq!(
            (
                r.status,
                r.code(),
                r.headers.get("allow").and_then(|v| v.to_str().ok())
            ),
            (405, "method_not_allowed", Some(allow)),
            "{method} {path}"
        );
    }

    // The class is full while the hold lasts.
    let one = hold_body(&offer(9, "M", 1), 1);
    let r = b.post("/v1/holds", &key, &one).await;
    assert_eq!(r.code(), "seats_unavailable");

    let r = b.post_empty(&cancel, &key).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["status"], "released");
    assert_eq!(r.body["data"]["order"], created["order"]);
    // Again: the same state, nothing released twice.
    let r = b.post_empty(&cancel, &key).await;
    assert_eq!(
        (r.status, &r.body["data"]["status"]),
        (200, &json!("released"))
    );

    // Back on sale now (the default hold lasts minutes).
    let r = b.post("/v1/holds", &key, &full).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let body = json!({"hold_id": hold, "payment": {"type": "card", "token": "tok_ok"}});
    let r = b.post("/v1/orders", &key, &body).await;
    assert_eq!(
        (r.status, r.code(), r.param()),
        (410, "offer_expired", "hold_id")
    );

    let db = b.db().await;
    let released: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox WHERE reason = 'hold_released'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(released, 1, "one leg class released once");
    check_consistency(&db).await;
}

/// Regression: a declined card used to use the hold up (its seats went back on sale and
/// the hold could not be ordered again), so a client whose first card failed had to search
/// and hold again. Now the seats go back to the hold, and another card can pay for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declined_payment_keeps_the_hold() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(tmp.path(), &[]);
    let key = b.new_key("agency");
    let r = b
        .post("/v1/holds", &key, &hold_body(&offer(9, "M", 3), 3))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let hold = r.body["data"]["id"].as_str().unwrap().to_string();
    let pay = |token: &str| json!({"hold_id": hold, "payment": {"type": "card", "token": token}});

    let r = b.post("/v1/orders", &key, &pay("tok_decline")).await;
    assert_eq!(
        (r.status, r.code()),
        (402, "payment_declined"),
        "{:?}",
        r.body
    );
    let r = b.get(&format!("/v1/holds/{hold}"), &key).await;
    assert_eq!(r.body["data"]["status"], "held", "{:?}", r.body);
    assert!(
        r.body["data"]["order"]["id"].is_string(),
        "the failed order is named"
    );
    // The seats stayed with the hold: nobody else can take them meanwhile.
    let one = hold_body(&offer(9, "M", 1), 1);
    let r = b.post("/v1/holds", &key, &one).await;
    assert_eq!(r.code(), "seats_unavailable");
    let db = b.db().await;
    check_consistency(&db).await;

    // A gateway that provably did not charge gives the hold back too.
    let r = b.post("/v1/orders", &key, &pay("tok_error")).await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    let r = b.get(&format!("/v1/holds/{hold}"), &key).await;
    assert_eq!(r.body["data"]["status"], "held", "{:?}", r.body);

    let r = b.post("/v1/orders", &key, &pay("tok_ok")).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["data"]["status"], "confirmed");
    let order_id = r.body["data"]["id"].as_str().unwrap().to_string();
    let r = b.get(&format!("/v1/holds/{hold}"), &key).await;
    assert_eq!(r.body["data"]["status"], "ordered");
    assert_eq!(r.body["data"]["order"]["id"], json!(order_id));
    let r = b.post("/v1/orders", &key, &pay("tok_ok")).await;
    assert_eq!((r.status, r.code()), (409, "hold_already_ordered"));
    let r = b
        .post_empty(&format!("/v1/holds/{hold}/cancel"), &key)
        .await;
    assert_eq!((r.status, r.code()), (409, "hold_already_ordered"));

    // An instant order whose card is declined puts its seats back on sale.
    let r = b
        .post(
            "/v1/orders",
            &key,
            &order_body(&offer(10, "M", 3), 3, "tok_decline"),
        )
        .await;
    assert_eq!(r.status, 402, "{:?}", r.body);
    let r = b
        .post("/v1/holds", &key, &hold_body(&offer(10, "M", 3), 3))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    check_consistency(&db).await;
}

/// Regression: cancelling ignored departure, so an order whose flight had flown was
/// cancelled with a full refund and its seats on the departed flight went "back on sale".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flown_order_cannot_be_cancelled() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = build_snapshot(tmp.path());
    // XX 100 of 2030-01-01 departs at 10:00Z: the clock starts 4 s before.
    let b = Bookd::with_snapshot(
        tmp.path(),
        &snapshot,
        "127.0.0.1:0",
        "2030-01-01T09:59:56Z",
        &[],
    );
    let key = b.new_key("agency");
    let flown = b
        .post(
            "/v1/orders",
            &key,
            &order_body(&offer(0, "Y", 1), 1, "tok_ok"),
        )
        .await;
    assert_eq!(flown.status, 201, "{:?}", flown.body);
    let flown = flown.body["data"]["id"].as_str().unwrap().to_string();
    let later = b
        .post(
            "/v1/orders",
            &key,
            &order_body(&offer(1, "Y", 1), 1, "tok_ok"),
        )
        .await;
    assert_eq!(later.status, 201, "{:?}", later.body);
    let later = later.body["data"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;

    let r = b
        .post_empty(&format!("/v1/orders/{flown}/cancel"), &key)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "order_not_cancellable"),
        "{:?}",
        r.body
    );
    let r = b.get(&format!("/v1/orders/{flown}"), &key).await;
    assert_eq!(r.body["data"]["status"], "confirmed", "{:?}", r.body);
    assert!(r.body["data"]["refund_amount"].is_null(), "{:?}", r.body);
    let db = b.db().await;
    let sold: i32 = db
        .query_one(
            "SELECT sold FROM inventory WHERE dep_date = $1::text::date AND booking_class = 'Y'",
            &[&date_of(0)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sold, 1, "the flown seat stays sold");
    // An order that has not flown yet is still cancelled and refunded.
    let r = b
        .post_empty(&format!("/v1/orders/{later}/cancel"), &key)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["status"], "cancelled");
    assert_eq!(
        r.body["data"]["refund_amount"],
        json!({"amount": "100.00", "currency": "EUR"})
    );
    check_consistency(&db).await;
}
