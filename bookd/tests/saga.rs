//! The booking saga under crashes (the process aborted after each step, then restarted)
//! and under failing, slow and circuit-broken dependencies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// Waits until no order matches `condition` (the background recovery finishing sagas).
async fn wait_for_no_orders(db: &tokio_postgres::Client, condition: &str, secs: u64) {
    let sql = format!("SELECT count(*) FROM orders WHERE {condition}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let n: i64 = db.query_one(&sql, &[]).await.unwrap().get(0);
        if n == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} orders still match {condition} after {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Every order ends confirmed or fully compensated; one charge at most per order, and a
/// refund for every charge of an order that was not kept; no seat leaks.
async fn check_saga_invariants(db: &tokio_postgres::Client) {
    let rows = db
        .query("SELECT id, status, saga_step FROM orders", &[])
        .await
        .unwrap();
    for r in &rows {
        let id: String = r.get(0);
        let status: String = r.get(1);
        let step: String = r.get(2);
        assert!(
            matches!(
                (status.as_str(), step.as_str()),
                ("confirmed", "confirmed") | ("failed", "compensated") | ("cancelled", "cancelled")
            ),
            "order {id} left in {status}/{step}"
        );
        let charges: i64 = db
            .query_one(
                "SELECT count(*) FROM sim_gateway_ledger WHERE idempotency_key = $1 AND kind = 'charge'",
                &[&format!("chg_{id}")],
            )
            .await
            .unwrap()
            .get(0);
        assert!(charges <= 1, "double charge of {id}");
        let refunds: i64 = db
            .query_one(
                "SELECT count(*) FROM sim_gateway_ledger WHERE idempotency_key = $1",
                &[&format!("ref_{id}")],
            )
            .await
            .unwrap()
            .get(0);
        if status == "failed" {
            assert_eq!(refunds, charges, "a failed order keeps no money: {id}");
        }
        if status == "confirmed" {
            assert_eq!(
                (charges, refunds),
                (1, 0),
                "a confirmed order is paid once: {id}"
            );
        }
    }
    check_consistency(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_each_step_then_recover() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Bookd::new(tmp.path(), &[]);
    let key = b.new_key("saga");
    // (failpoint of the live request, failpoint of the first recovery, expected status of
    // the retry after recovery). The live request records the charge together with the
    // confirmation; `payment_charged` (then `payment_recorded`) is a step of recovery,
    // which a second crash interrupts there.
    let steps = [
        ("seats_held", None, 502),
        ("payment_charged_unrecorded", None, 201),
        ("payment_charged_unrecorded", Some("payment_recorded"), 201),
        ("airline_confirmed_unrecorded", None, 201),
        (
            "airline_confirmed_unrecorded",
            Some("payment_recorded"),
            201,
        ),
        ("confirmed", None, 201),
    ];
    for (i, (fp, recovery_fp, expected)) in steps.iter().enumerate() {
        b.stop();
        b.set_failpoint(Some(fp));
        b.start();
        let body = order_body(&offer(50 + i as u32, "M", 2), 2, "tok_ok");
        let idem = format!("crash-{i}-{fp}");
        let r = b
            .try_call("POST", "/v1/orders", Some(&key), Some(&idem), Some(&body))
            .await;
        assert!(r.is_none(), "{fp}: the process aborted mid-request");
        let st = b.wait_exit();
        assert!(!st.success(), "{fp}: aborted");
        if let Some(rfp) = recovery_fp {
            // Recovery crashes too, after recording `payment_charged`.
            b.set_failpoint(Some(rfp));
            let st = b.start_expect_exit();
            assert!(!st.success(), "{fp} then {rfp}: recovery aborted");
            let db = b.db().await;
            let step: String = db
                .query_one(
                    "SELECT o.saga_step FROM orders o JOIN order_segments s ON s.order_id = o.id
                     WHERE s.dep_date = $1::text::date AND s.booking_class = 'M'",
                    &[&date_of(50 + i as u32)],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(step, "payment_charged", "{fp} then {rfp}");
        }
        // Restart without the failpoint: recovery settles the saga before serving.
        b.set_failpoint(None);
        b.start();
        let r = b
            .call("POST", "/v1/orders", Some(&key), Some(&idem), Some(&body))
            .await;
        assert_eq!(r.status, *expected, "{fp}: {:?}", r.body);
        if *expected == 502 {
            assert_eq!(r.code(), "order_not_created");
        } else {
            assert_eq!(r.body["data"]["status"], "confirmed");
        }
        let db = b.db().await;
        check_saga_invariants(&db).await;
        let row = db
            .query_one("SELECT sold, held FROM inventory WHERE dep_date = $1::text::date AND booking_class = 'M'", &[&date_of(50 + i as u32)])
            .await
            .unwrap();
        let (sold, held): (i32, i32) = (row.get(0), row.get(1));
        assert_eq!(held, 0, "{fp}: no seat stays held");
        assert_eq!(sold, if *expected == 201 { 2 } else { 0 }, "{fp}");
    }
    // A crash during a cancellation's refund: recovery finishes the refund.
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(60, "Y", 1), 1, "tok_ok")),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["data"]["id"].as_str().unwrap().to_string();
    let r = b
        .call(
            "POST",
            &format!("/v1/orders/{id}/cancel"),
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let db = b.db().await;
    check_saga_invariants(&db).await;
    let refunds: i64 = db
        .query_one(
            "SELECT count(*) FROM sim_gateway_ledger WHERE idempotency_key = $1",
            &[&format!("ref_{id}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(refunds, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_errors_timeouts_and_open_circuit() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(
        tmp.path(),
        &[
            "--payment-timeout-ms",
            "200",
            "--max-attempts",
            "2",
            "--breaker-threshold",
            "4",
            "--breaker-open-secs",
            "2",
        ],
    );
    let key = b.new_key("saga");
    // tok_error: the gateway fails; nothing kept.
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(1, "M", 3), 3, "tok_error")),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (502, "order_not_created"),
        "{:?}",
        r.body
    );
    // tok_slow: the gateway times out; nothing kept. (2 attempts each: the breaker opens
    // after the 4th consecutive failure.)
    let t = std::time::Instant::now();
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(1, "M", 3), 3, "tok_slow")),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (502, "order_not_created"),
        "{:?}",
        r.body
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // The circuit is open now: a fast 503 with Retry-After, nothing reserved.
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(1, "M", 3), 3, "tok_ok")),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (503, "payment_unavailable"),
        "{:?}",
        r.body
    );
    assert!(r.headers.get("retry-after").is_some());
    let m = b.call("GET", "/metrics", None, None, None).await;
    assert!(m
        .body
        .as_str()
        .unwrap()
        .contains("bookd_circuit_state{dependency=\"payment_gateway\"} 1"));
    // After the open period a trial call goes through and closes it.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(1, "M", 3), 3, "tok_ok")),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let db = b.db().await;
    // The timed-out order's compensation could not reach the gateway while the circuit
    // was open; the background recovery finishes it.
    wait_for_no_orders(&db, "saga_step = 'compensating'", 20).await;
    check_saga_invariants(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn airline_failure_refunds_and_releases() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(
        tmp.path(),
        &[
            "--sim-airline-failure-rate",
            "1",
            "--max-attempts",
            "2",
            "--breaker-threshold",
            "100",
        ],
    );
    let key = b.new_key("saga");
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("air-1"),
            Some(&order_body(&offer(2, "M", 3), 3, "tok_ok")),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (502, "order_not_created"),
        "{:?}",
        r.body
    );
    let r2 = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("air-1"),
            Some(&order_body(&offer(2, "M", 3), 3, "tok_ok")),
        )
        .await;
    assert_eq!(r.body, r2.body);
    let db = b.db().await;
    check_saga_invariants(&db).await;
    let refunds: i64 = db
        .query_one(
            "SELECT count(*) FROM sim_gateway_ledger WHERE kind = 'refund'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(refunds, 1, "the charge was refunded");
}

/// A charge attempt that times out may still land at the gateway. When that failure opens
/// the breaker, the retry is refused (`CircuitOpen`): the order must not be taken for "not
/// charged" (failed, no refund) but settled as an unknown charge (looked up, refunded).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_that_timed_out_before_the_circuit_opened_is_refunded() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(
        tmp.path(),
        &[
            "--payment-timeout-ms",
            "300",
            "--max-attempts",
            "2",
            "--breaker-threshold",
            "1",
            "--breaker-open-secs",
            "2",
        ],
    );
    let key = b.new_key("saga");
    // The gateway's ledger is slow: its write (the charge) waits on a table lock longer
    // than the call's timeout, then lands.
    let mut locker = b.db().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE sim_gateway_ledger IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            Some("slow-ledger"),
            Some(&order_body(&offer(3, "M", 1), 1, "tok_ok")),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    assert_ne!(r.status, 201, "{:?}", r.body);
    let db = b.db().await;
    // Whatever the answer, the order ends compensated with its charge refunded (the
    // background recovery finishes what the request could not).
    wait_for_no_orders(&db, "saga_step NOT IN ('confirmed', 'compensated')", 30).await;
    let charges: i64 = db
        .query_one(
            "SELECT count(*) FROM sim_gateway_ledger WHERE kind = 'charge'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(charges, 1, "the timed-out charge landed");
    check_saga_invariants(&db).await;
}

/// Regression: the simulated gateway answered "no charge" to a lookup (and "nothing to
/// refund" to a refund) while a charge with that key was still on its way (queued for its
/// ledger, or blocked in the database), and the charge landed afterwards: the saga had
/// failed the order and kept its money. Settling a key is now final: a charge that comes
/// after its key was looked up or refunded is declined and leaves no charge, and a booking
/// that comes after its cancellation lands cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_or_booking_arriving_after_its_key_was_settled_never_lands() {
    use bookd::external::{
        Airline, ChargeRequest, ExtError, PaymentGateway, SimAirline, SimConfig, SimGateway,
        SimLedger,
    };
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(tmp.path(), &[]); // its migrations create the ledgers
    let cfg = bookd::pg::Layout::new(&b.state).unwrap().pg_config();
    let pool = bookd::db::pool(cfg, 4).unwrap();
    let ledger = SimLedger::start(pool.clone());
    let gateway = SimGateway {
        pool: pool.clone(),
        config: SimConfig::default(),
        ledger: ledger.clone(),
    };
    let airline = SimAirline {
        pool,
        config: SimConfig::default(),
        ledger,
    };
    let charge = |key: &'static str| {
        gateway.charge(ChargeRequest {
            idempotency_key: key,
            amount_minor: 12_300,
            currency: "EUR",
            token: "tok_ok",
        })
    };
    let db = b.db().await;
    let kinds = |key: &'static str| {
        let db = &db;
        async move {
            db.query(
                "SELECT kind FROM sim_gateway_ledger WHERE idempotency_key = $1",
                &[&key],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
        }
    };

    // Looked up before it was made: "not charged" holds.
    assert_eq!(gateway.lookup("chg_late").await, Ok(None));
    assert!(
        matches!(charge("chg_late").await, Err(ExtError::Declined(_))),
        "a charge after its key was looked up is declined"
    );
    assert_eq!(gateway.lookup("chg_late").await, Ok(None));
    assert_eq!(kinds("chg_late").await, ["void"]);

    // Refunded before it was made: nothing to refund, and nothing lands later.
    assert_eq!(
        gateway.refund("ref_late", "chg_late2", 12_300, "EUR").await,
        Ok(None)
    );
    assert!(matches!(
        charge("chg_late2").await,
        Err(ExtError::Declined(_))
    ));
    assert_eq!(kinds("chg_late2").await, ["void"]);

    // A charge made first is found, charged once, and refunded.
    let r = charge("chg_made").await.expect("a charge");
    assert_eq!(charge("chg_made").await, Ok(r.clone()), "idempotent");
    assert_eq!(gateway.lookup("chg_made").await, Ok(Some(r)));
    assert!(gateway
        .refund("ref_made", "chg_made", 12_300, "EUR")
        .await
        .expect("a refund")
        .is_some());
    assert_eq!(kinds("chg_made").await, ["charge"]);

    // A booking cancelled before it was made lands cancelled, and its confirm fails.
    airline.cancel("air_late").await.expect("cancel");
    assert!(airline.confirm("air_late", &[], 1).await.is_err());
    let cancelled: bool = db
        .query_one(
            "SELECT cancelled FROM sim_airline_bookings WHERE idempotency_key = 'air_late'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(cancelled);
    // One made first is confirmed, then cancelled.
    let locator = airline
        .confirm("air_made", &[], 1)
        .await
        .expect("a booking");
    assert_eq!(airline.confirm("air_made", &[], 1).await, Ok(locator));
    airline.cancel("air_made").await.expect("cancel");
}
