//! The database goes away while a request is in the middle of an order's saga, and comes
//! back while bookd keeps running (a failover, a restart of PostgreSQL).
//!
//! What broke: the request gave up with a 5xx and left its order `pending` at
//! `seats_held`, and the periodic recovery only took over compensations and cancellations.
//! The order kept its seats held and its `Idempotency-Key` answered
//! `409 idempotency_in_progress` to every retry until bookd was restarted. Found by
//! `replicated.rs` (a Patroni failover mid-burst).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_abandoned_by_its_request_during_a_database_outage_is_settled_without_a_restart() {
    if !pg_available() {
        return;
    }
    let tmp = cluster_tempdir();
    let state = tmp.path().join("state");
    let pg = tokio::task::block_in_place(|| bookd::pg::Embedded::start(&state))
        .expect("start the test's PostgreSQL");
    let url = format!(
        "host={} port={} user={} dbname={}",
        pg.layout.socket_dir.display(),
        bookd::pg::SOCKET_PORT,
        bookd::pg::DB_USER,
        bookd::pg::DB_NAME
    );
    let mut pg = Some(pg);
    // The gateway's `tok_slow` never answers: 2 attempts of 1 s keep the saga at
    // `seats_held` long enough to take the database away under it.
    let b = tokio::task::block_in_place(|| {
        Bookd::new(
            tmp.path(),
            &[
                "--database-url",
                &url,
                "--payment-timeout-ms",
                "1000",
                "--max-attempts",
                "2",
            ],
        )
    });
    let key = tokio::task::block_in_place(|| b.new_key("outage"));
    let db = b.db().await;
    let body = order_body(&offer(2, "M", 2), 2, "tok_slow");
    let idem = "outage-1";

    let first = {
        let (addr, key, body) = (b.addr, key.clone(), body.to_string().into_bytes());
        tokio::spawn(async move {
            let headers = [
                ("authorization".to_string(), format!("Bearer {key}")),
                ("idempotency-key".to_string(), idem.to_string()),
            ];
            try_http(addr, "POST", "/v1/orders", &headers, Some(body)).await
        })
    };
    // Once the order is stored (seats held, the charge under way), stop PostgreSQL.
    let deadline = Instant::now() + Duration::from_secs(10);
    let order_id: String = loop {
        let row = db
            .query_opt(
                "SELECT id FROM orders WHERE status = 'pending' AND saga_step = 'seats_held'",
                &[],
            )
            .await
            .expect("orders");
        if let Some(r) = row {
            break r.get(0);
        }
        assert!(Instant::now() < deadline, "the order was not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(db);
    tokio::task::block_in_place(|| pg.take().expect("running").stop());

    // The request cannot finish the saga without its database: a 5xx, nothing confirmed.
    let r = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the first try answers")
        .expect("task");
    if let Some(r) = &r {
        assert!(
            r.status >= 500,
            "without a database: {} {:?}",
            r.status,
            r.body
        );
    }

    let _pg = tokio::task::block_in_place(|| bookd::pg::Embedded::start(&state))
        .expect("restart the test's PostgreSQL");
    // Retries with the same key get the order's final answer once recovery has run: the
    // charge never happened (the gateway has no record of its key), so nothing is kept.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = b
            .try_call("POST", "/v1/orders", Some(&key), Some(idem), Some(&body))
            .await;
        match r {
            Some(r) if r.status == 409 && r.code() == "idempotency_in_progress" => {}
            Some(r) if r.status >= 500 && r.code() != "order_not_created" => {}
            None => {}
            Some(r) => break r,
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned order {order_id} was not settled while bookd kept running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (r.status, r.code()),
        (502, "order_not_created"),
        "{:?}",
        r.body
    );
    let db = b.db().await;
    let row = db
        .query_one(
            "SELECT status, saga_step, seats_released FROM orders WHERE id = $1",
            &[&order_id],
        )
        .await
        .expect("order");
    let (status, step, released): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (status.as_str(), step.as_str(), released),
        ("failed", "compensated", true)
    );
    check_consistency(&db).await;
    let held: i64 = db
        .query_one("SELECT COALESCE(SUM(held), 0)::bigint FROM inventory", &[])
        .await
        .expect("held")
        .get(0);
    assert_eq!(held, 0, "the abandoned order's seats are released");
}
