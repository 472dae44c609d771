//! A fresh start: the request pool is open (every connection, its booking statements
//! prepared and planned) before bookd answers, and that warm-up wrote nothing.
//!
//! Broke: the pool opened its connections under the first burst of bookings, all 32 new
//! PostgreSQL backends loading catalog caches and planning the booking statements at once,
//! so the first second of an open-loop run after a fresh start carried the run's p99.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// `--pool-size` of the test server (small: the test cluster is shared with other tests).
const POOL: i64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_is_open_before_the_first_request_and_warm_up_writes_nothing() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pool = POOL.to_string();
    let b = Bookd::new(tmp.path(), &["--pool-size", &pool]);
    let db = b.db().await;

    // No request has reached bookd yet (only its readiness probe): the request pool's
    // connections are open already. bookd's other connections (the sequencer's) count too,
    // so at least POOL, and this test's own session is left out.
    let open: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND application_name = 'bookd'
               AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        open >= POOL,
        "{open} bookd connections open before the first request, want at least {POOL}"
    );

    // Planning the statements (EXPLAIN EXECUTE) ran nothing: no booking, claim, audit or
    // outbox row exists.
    for table in [
        "inventory",
        "holds",
        "orders",
        "idempotency_keys",
        "audit",
        "outbox_pending",
        "payments",
    ] {
        let n: i64 = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "the warm-up left {n} rows in {table}");
    }

    // The warmed connections serve bookings with their cached statements (a warm-up that
    // dropped them, e.g. with DEALLOCATE ALL, would fail these with "prepared statement
    // does not exist"). More holds than connections, concurrently, so every one is used.
    let key = b.new_key("warm");
    let mut calls = Vec::new();
    for i in 0..(2 * POOL as u32) {
        let offer_id = offer(1 + i % 5, "Y", 1);
        let body = hold_body(&offer_id, 1).to_string().into_bytes();
        let headers = vec![("authorization".to_string(), format!("Bearer {key}"))];
        let addr = b.addr;
        calls.push(tokio::spawn(async move {
            http(addr, "POST", "/v1/holds", &headers, Some(body)).await
        }));
    }
    for c in calls {
        let r = c.await.unwrap();
        assert_eq!(r.status, 201, "hold on a warmed connection: {:?}", r.body);
    }
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(6, "Y", 1), 1, "tok_ok")),
        )
        .await;
    assert_eq!(r.status, 201, "order on a warmed connection: {:?}", r.body);
    check_consistency(&db).await;
}
