//! Idempotency-Key: same key and body = same stored response (even after a restart);
//! different body = 422; racing retries execute once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn same_response_conflicts_and_races() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Bookd::new(
        tmp.path(),
        &["--rate-limit", "100000", "--rate-burst", "100000"],
    );
    let key = b.new_key("idem");
    let body = order_body(&offer(30, "Y", 1), 1, "tok_ok");
    let r1 = b
        .call("POST", "/v1/orders", Some(&key), Some("k-1"), Some(&body))
        .await;
    assert_eq!(r1.status, 201, "{:?}", r1.body);
    let r2 = b
        .call("POST", "/v1/orders", Some(&key), Some("k-1"), Some(&body))
        .await;
    assert_eq!(r2.status, 201);
    assert_eq!(r1.body, r2.body, "the stored response is replayed");
    assert_eq!(r2.headers.get("idempotent-replayed").unwrap(), "true");
    // Same key, different body: 422.
    let other = order_body(&offer(31, "Y", 1), 1, "tok_ok");
    let r = b
        .call("POST", "/v1/orders", Some(&key), Some("k-1"), Some(&other))
        .await;
    assert_eq!((r.status, r.code()), (422, "idempotency_key_reused"));
    // Regression: a body that failed validation was stored under its key, so the corrected
    // request with the same key was refused as a reuse (422). Nothing ran: nothing stored.
    let mut invalid = order_body(&offer(36, "Y", 1), 1, "tok_ok");
    invalid["contact"]["email"] = serde_json::json!("not an address");
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("v-1"),
            Some(&invalid),
        )
        .await;
    assert_eq!(
        (r.status, r.param()),
        (400, "contact.email"),
        "{:?}",
        r.body
    );
    let fixed = order_body(&offer(36, "Y", 1), 1, "tok_ok");
    let r = b
        .call("POST", "/v1/orders", Some(&key), Some("v-1"), Some(&fixed))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Errors of requests that ran are stored: a decline replays as the same 402.
    let declined = order_body(&offer(30, "Y", 1), 1, "tok_decline");
    let d1 = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("k-2"),
            Some(&declined),
        )
        .await;
    assert_eq!(d1.status, 402);
    let d2 = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("k-2"),
            Some(&declined),
        )
        .await;
    assert_eq!(d1.body, d2.body);
    // Holds too.
    let hb = hold_body(&offer(32, "M", 2), 2);
    let h1 = b
        .call("POST", "/v1/holds", Some(&key), Some("h-1"), Some(&hb))
        .await;
    let h2 = b
        .call("POST", "/v1/holds", Some(&key), Some("h-1"), Some(&hb))
        .await;
    assert_eq!((h1.status, &h1.body), (201, &h2.body));
    // Keys are per API key: another key may use the same Idempotency-Key.
    let key2 = b.new_key("idem2");
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key2),
            Some("h-1"),
            Some(&hold_body(&offer(32, "M", 1), 1)),
        )
        .await;
    assert_eq!(r.status, 201);

    // After a restart: the same stored response.
    b.stop();
    b.start();
    let r3 = b
        .call("POST", "/v1/orders", Some(&key), Some("k-1"), Some(&body))
        .await;
    assert_eq!(r1.body, r3.body);
    let h3 = b
        .call("POST", "/v1/holds", Some(&key), Some("h-1"), Some(&hb))
        .await;
    assert_eq!(h1.body, h3.body);

    // 16 retries racing with one key: one order, every answer the same 201 (or 409
    // idempotency_in_progress).
    let b = Arc::new(b);
    let key = Arc::new(key);
    let body = Arc::new(order_body(&offer(33, "Y", 2), 2, "tok_ok"));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (b, key, body) = (b.clone(), key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            b.call(
                "POST",
                "/v1/orders",
                Some(&key),
                Some("race-1"),
                Some(&body),
            )
            .await
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => bodies.push(r.body),
            409 => assert_eq!(r.code(), "idempotency_in_progress"),
            s => panic!("unexpected {s}: {:?}", r.body),
        }
    }
    assert!(!bodies.is_empty());
    assert!(bodies.iter().all(|x| *x == bodies[0]));
    let db = b.db().await;
    let orders: i64 = db
        .query_one(
            "SELECT count(*) FROM orders o JOIN order_segments s ON s.order_id = o.id
             WHERE s.dep_date = $1::text::date",
            &[&date_of(33)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 1, "racing retries executed once");
    check_consistency(&db).await;
}
