//! A COMMIT that waits for a synchronous standby that never comes.
//!
//! What broke: on a primary with synchronous replication and every synchronous standby
//! down (a node Patroni still calls the leader), each COMMIT waits until a standby connects,
//! and bookd waited with it: the order's HTTP request did not answer at all, and requests
//! for the same seats queued behind the stuck transaction's row locks just as long.
//!
//! Here the test's own PostgreSQL names a standby that does not exist in
//! `synchronous_standby_names`, so every COMMIT waits as it would there. bookd runs with
//! `--commit-timeout-ms 1500`: it must answer within that limit (plus the settling look)
//! with the outcome-unknown answer of a COMMIT whose connection broke, keep nothing twice,
//! and settle the order truly once replication resumes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_millis(1500);
/// What an answer may take beyond the limit: the settling look (0.2 s after the COMMIT was
/// given up) and a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

async fn waiting_for_a_standby(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

async fn count(db: &tokio_postgres::Client, sql: &str, arg: &str) -> i64 {
    db.query_one(sql, &[&arg])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Makes every COMMIT of `b`'s PostgreSQL wait for a synchronous standby that never
/// connects, and returns a probe: a write of our own that waits as well (it ends with the
/// outage).
async fn start_outage(
    b: &Bookd,
    db: &tokio_postgres::Client,
) -> tokio::task::JoinHandle<Result<(), tokio_postgres::Error>> {
    // ALTER SYSTEM cannot run in the implicit transaction of a multi-statement query: one
    // statement each.
    db.batch_execute("CREATE TABLE IF NOT EXISTS sync_probe (x int)")
        .await
        .unwrap();
    db.batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'bookd_test_missing_standby'")
        .await
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    // Proof that the setting is in force: the probe waits for the standby (it writes WAL:
    // a transaction id alone commits without waiting).
    let probe = {
        let extra = b.db().await;
        tokio::spawn(async move {
            extra
                .batch_execute("INSERT INTO sync_probe VALUES (1)")
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiting_for_a_standby(db).await < 1 {
        assert!(
            Instant::now() < deadline,
            "a COMMIT never waited for the standby"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    probe
}

/// Replication "resumes": no standby is required any more, and every waiting COMMIT lands.
async fn end_outage(
    db: &tokio_postgres::Client,
    probe: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    db.batch_execute("ALTER SYSTEM RESET synchronous_standby_names")
        .await
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), probe)
        .await
        .expect("the probe's COMMIT ends once no standby is required")
        .unwrap()
        .unwrap();
}

fn start(dir: &std::path::Path) -> Bookd {
    let limit_ms = LIMIT.as_millis().to_string();
    tokio::task::block_in_place(|| {
        Bookd::new(
            dir,
            &[
                "--commit-timeout-ms",
                &limit_ms,
                "--rate-limit",
                "10000",
                "--rate-burst",
                "10000",
            ],
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_waiting_for_a_missing_standby_answers_within_the_limit() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = start(tmp.path());
    let key = tokio::task::block_in_place(|| b.new_key("sync"));
    let db = b.db().await;
    let day = 3;
    // Seats already held before the outage must stay exactly as they are.
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key),
            Some("before-the-outage"),
            Some(&hold_body(&offer(day, "Y", 2), 2)),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");

    let probe = start_outage(&b, &db).await;

    // The order: answered within the limit, with the answer of a COMMIT whose outcome is
    // unknown (it may still commit when a standby comes).
    let order = order_body(&offer(day, "Y", 1), 1, "tok_ok");
    let started = Instant::now();
    let r = tokio::time::timeout(
        LIMIT + SLACK,
        b.call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("stuck-order"),
            Some(&order),
        ),
    )
    .await
    .expect("the order is answered within the limit, not when a standby comes back");
    let took = started.elapsed();
    assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{r:?}");
    assert!(
        r.body["errors"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("retry with the same Idempotency-Key"),
        "{r:?}"
    );
    assert!(r.headers.contains_key("retry-after"), "{r:?}");
    assert!(took >= LIMIT, "it waited for the COMMIT first: {took:?}");
    // bookd gave up its connection; the server still runs that COMMIT (and the probe's).
    assert!(waiting_for_a_standby(&db).await >= 2);
    const ORDERS: &str = "SELECT count(*) FROM orders WHERE offer_id = $1";
    assert_eq!(
        count(&db, ORDERS, &offer(day, "Y", 1)).await,
        0,
        "not visible yet"
    );

    // Another order for the same seats meanwhile waits on the row lock the stuck COMMIT
    // holds: it is given up within the limit too, before any COMMIT, so nothing is kept.
    let started = Instant::now();
    let r = tokio::time::timeout(
        LIMIT + SLACK,
        b.call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("blocked-order"),
            Some(&order),
        ),
    )
    .await
    .expect("the blocked order is answered within the limit");
    assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{r:?}");
    assert!(started.elapsed() >= LIMIT);

    let m = b.call("GET", "/metrics", None, None, None).await;
    let text = m.body.as_str().expect("metrics text").to_string();
    assert!(
        text.contains("\nbookd_commits_timed_out_total 1\n"),
        "one COMMIT timed out: {text}"
    );
    assert!(
        !text.contains("\nbookd_write_statements_timed_out_total 0\n"),
        "the blocked order's statement timed out: {text}"
    );

    // Replication resumes: the stuck COMMIT lands, and the order is settled truly. Its
    // request is gone and nothing was charged, so recovery fails it and gives the seat
    // back; a retry with the same key gets that final answer, stored.
    end_outage(&db, probe).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = b
            .call(
                "POST",
                "/v1/orders",
                Some(&key),
                Some("stuck-order"),
                Some(&order),
            )
            .await;
        match (r.status, r.code()) {
            (409, "idempotency_in_progress") => {}
            (s, c) if s >= 500 && c != "order_not_created" => {}
            _ => break r,
        }
        assert!(
            Instant::now() < deadline,
            "the order whose COMMIT timed out was not settled: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((r.status, r.code()), (502, "order_not_created"), "{r:?}");
    let row = db
        .query_one(
            "SELECT id, status, saga_step, seats_released FROM orders WHERE offer_id = $1",
            &[&offer(day, "Y", 1)],
        )
        .await
        .expect("the stuck COMMIT landed: exactly one order");
    let (id, status, step, released): (String, String, String, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (status.as_str(), step.as_str(), released),
        ("failed", "compensated", true)
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sim_gateway_ledger WHERE idempotency_key = $1 AND kind = 'charge'",
            &format!("chg_{id}"),
        )
        .await,
        0,
        "nothing was charged"
    );

    // The blocked order left nothing: its retry runs now and takes the seat, once.
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("blocked-order"),
            Some(&order),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["data"]["status"], "confirmed", "{r:?}");
    assert_eq!(count(&db, ORDERS, &offer(day, "Y", 1)).await, 2);
    let (held, sold): (i32, i32) = {
        let row = db
            .query_one(
                "SELECT held, sold FROM inventory WHERE carrier = 'XX' AND flight_number = 100
                   AND dep_date = $1::text::date AND booking_class = 'Y'",
                &[&date_of(day)],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        (held, sold),
        (2, 1),
        "the first hold's 2 seats, and 1 sold once"
    );
    check_consistency(&db).await;
}

/// What broke: a cancellation claims its `Idempotency-Key` in a commit of its own before it
/// runs. When that COMMIT was given up (the standby gone) and landed after replication
/// resumed, the claim stayed in progress with no request behind it, and every retry with
/// that key answered 409 until bookd restarted. Recovery now drops such a claim once it
/// is a few seconds old and no request of this process runs it, and the retry cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancellation_claim_landed_after_its_timeout_lets_its_retry_run() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = start(tmp.path());
    let key = tokio::task::block_in_place(|| b.new_key("cancel"));
    let db = b.db().await;
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("to-cancel"),
            Some(&order_body(&offer(4, "Y", 1), 1, "tok_ok")),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["data"]["id"].as_str().expect("order id").to_string();
    let cancel = format!("/v1/orders/{id}/cancel");

    let probe = start_outage(&b, &db).await;
    let r = tokio::time::timeout(
        LIMIT + SLACK,
        b.call("POST", &cancel, Some(&key), Some("stuck-cancel"), None),
    )
    .await
    .expect("the cancellation is answered within the limit");
    assert_eq!(r.status, 503, "{r:?}");
    end_outage(&db, probe).await;
    // The claim's COMMIT has landed: in progress, with no request behind it.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM idempotency_keys WHERE key = $1 AND status = 'in_progress'",
            "stuck-cancel",
        )
        .await,
        1,
        "the given-up claim landed"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = b
            .call("POST", &cancel, Some(&key), Some("stuck-cancel"), None)
            .await;
        match (r.status, r.code()) {
            (409, "idempotency_in_progress") => {}
            (s, _) if s >= 500 => {}
            _ => break r,
        }
        assert!(
            Instant::now() < deadline,
            "a retry of the cancellation never ran: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["data"]["status"], "cancelled", "{r:?}");
    // Stored now: the same key replays the same answer.
    let again = b
        .call("POST", &cancel, Some(&key), Some("stuck-cancel"), None)
        .await;
    assert_eq!((again.status, &again.body["data"]), (200, &r.body["data"]));
    let m = b.call("GET", "/metrics", None, None, None).await;
    let text = m.body.as_str().expect("metrics text").to_string();
    assert!(
        text.contains("\nbookd_idempotency_claims_recovered_total 1\n"),
        "{text}"
    );
    check_consistency(&db).await;
}
