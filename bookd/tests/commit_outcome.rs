//! A COMMIT whose outcome bookd cannot know (the database connection dies around it):
//! bookd answers `502 order_not_created` only when nothing was kept, and otherwise finds
//! out what committed before answering, so that its answer, the stored idempotent
//! response and the database agree.
//!
//! bookd runs with `--database-url` pointing at a fault-injecting proxy
//! (`common/pgproxy.rs`) in front of a real PostgreSQL cluster started by this test. The
//! proxy breaks the connection of one chosen transaction (the one carrying the request's
//! `Idempotency-Key`, or the order id for a cancellation) in three ways:
//! - `DropBeforeCommit`: the COMMIT never reaches the server (nothing was kept);
//! - `DropAfterCommit`: the server committed, its answer is lost;
//! - `LateCommit`: the client sees the connection die first, the COMMIT reaches the server
//!   a moment later (so an immediate "is it there?" lookup would answer wrongly).
//!
//! Each is run for holds, instant orders, orders from a hold and cancellations; every
//! answer is checked against the database (holds, orders, seats held/sold, outbox, the
//! simulated gateway's ledger) and against a retry with the same `Idempotency-Key`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/pgproxy.rs"]
mod pgproxy;

use std::time::Duration;

use common::*;
use pgproxy::{Fault, PgProxy, Upstream};
use serde_json::{json, Value};

const LATE: Fault = Fault::LateCommit(Duration::from_millis(400));

/// Field order matters: bookd stops first, then the proxy, then the cluster.
struct Env {
    b: Bookd,
    proxy: PgProxy,
    key: String,
    db: tokio_postgres::Client,
    _pg: bookd::pg::Embedded,
    _tmp: tempfile::TempDir,
}

async fn setup(name: &str) -> Option<Env> {
    if !pg_available() {
        return None;
    }
    let tmp = cluster_tempdir();
    let state = tmp.path().join("state");
    let pg = tokio::task::block_in_place(|| bookd::pg::Embedded::start(&state))
        .expect("start the test's PostgreSQL");
    let sock = pg
        .layout
        .socket_dir
        .join(format!(".s.PGSQL.{}", bookd::pg::SOCKET_PORT));
    let proxy = PgProxy::start(Upstream::Unix(sock)).await;
    let url = proxy.url(bookd::pg::DB_USER, bookd::pg::DB_NAME);
    // bookd uses the external cluster through the proxy; its state directory only keeps
    // the data key (and `bookd keys` attaches to the cluster this test owns there).
    let b = tokio::task::block_in_place(|| {
        Bookd::new(
            tmp.path(),
            &[
                "--database-url",
                &url,
                "--rate-limit",
                "10000",
                "--rate-burst",
                "10000",
            ],
        )
    });
    let key = tokio::task::block_in_place(|| b.new_key(name));
    let db = b.db().await;
    Some(Env {
        b,
        proxy,
        key,
        db,
        _pg: pg,
        _tmp: tmp,
    })
}

impl Env {
    async fn post(&self, path: &str, idem: &str, body: &Value) -> Resp {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.b
                .call("POST", path, Some(&self.key), Some(idem), Some(body)),
        )
        .await
        .unwrap_or_else(|_| panic!("POST {path} ({idem}) did not answer within 30 s"))
    }

    /// Arms `fault`, runs `POST path`, and checks that the fault hit exactly once.
    async fn post_with_fault(
        &self,
        fault: Fault,
        needle: &str,
        path: &str,
        idem: &str,
        body: &Value,
    ) -> Resp {
        self.proxy.arm(fault, &[needle]);
        let r = self.post(path, idem, body).await;
        let still_armed = self.proxy.disarm();
        // A late COMMIT is recorded once the server answered it, which a wrong (too early)
        // answer from bookd can precede.
        let mut fired = self.proxy.take_fired();
        for _ in 0..100 {
            if !fired.is_empty() || still_armed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            fired = self.proxy.take_fired();
        }
        assert!(
            !still_armed && fired.len() == 1,
            "{fault:?} on {path} ({idem}) did not hit its COMMIT: {fired:?}; answer {r:?}"
        );
        let f = &fired[0];
        match fault {
            // Recorded when the session ends (its delay is not kept).
            Fault::BlackHole(_) => assert_eq!(
                f.server_reply.as_deref(),
                Some("closed by server"),
                "bookd ended the backend of the lost transaction"
            ),
            _ => assert_eq!(f.fault, fault),
        }
        match fault {
            Fault::BlackHole(_) => {}
            Fault::DropBeforeCommit => assert_eq!(f.server_reply, None),
            _ => assert_eq!(
                f.server_reply.as_deref(),
                Some("COMMIT"),
                "the server committed the cut transaction"
            ),
        }
        r
    }

    async fn count(&self, sql: &str, arg: &str) -> i64 {
        self.db
            .query_one(sql, &[&arg])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    async fn ledger_rows(&self) -> i64 {
        self.db
            .query_one(
                "SELECT count(*) FROM sim_gateway_ledger WHERE kind <> 'void'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// (held, sold, outbox rows) of class Y on `day`, once every committed change has been
    /// numbered into `outbox` (where bookd writes changes to `outbox_pending` first).
    async fn seats(&self, day: u32) -> (i32, i32, i64) {
        let date = date_of(day);
        for _ in 0..500 {
            let pending: i64 = self
                .db
                .query_one(
                    "SELECT CASE WHEN to_regclass('outbox_pending') IS NULL THEN 0
                            ELSE (xpath('/row/c/text()',
                                        query_to_xml('SELECT count(*) AS c FROM outbox_pending',
                                                     false, true, '')))[1]::text::bigint END",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (held, sold) = self
            .db
            .query_opt(
                "SELECT held, sold FROM inventory WHERE carrier = 'XX' AND flight_number = 100
                   AND dep_date = $1::text::date AND booking_class = 'Y'",
                &[&date],
            )
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
            .unwrap_or((0, 0));
        let outbox = self
            .count(
                "SELECT count(*) FROM outbox WHERE dep_date = $1::text::date AND booking_class = 'Y'",
                &date,
            )
            .await;
        (held, sold, outbox)
    }

    /// A retry with the same key replays the first answer.
    async fn assert_replayed(&self, path: &str, idem: &str, body: &Value, first: &Resp) {
        let again = self.post(path, idem, body).await;
        assert_eq!(
            (again.status, &again.body),
            (first.status, &first.body),
            "a retry of {idem} replays the answer given"
        );
        assert_eq!(
            again
                .headers
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
    }
}

fn data_id(r: &Resp) -> String {
    r.body["data"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no data.id in {r:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_commit_outcome_unknown() {
    let Some(env) = setup("holds").await else {
        return;
    };
    const COUNT_HOLDS: &str = "SELECT count(*) FROM holds WHERE offer_id = $1";

    // Nothing kept: a retryable error that is not stored; the retry makes the hold.
    let (day, idem) = (1, "hold-drop-before-commit");
    let body = hold_body(&offer(day, "Y", 2), 2);
    let r = env
        .post_with_fault(Fault::DropBeforeCommit, idem, "/v1/holds", idem, &body)
        .await;
    assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{r:?}");
    assert_eq!(env.count(COUNT_HOLDS, &offer(day, "Y", 2)).await, 0);
    assert_eq!(env.seats(day).await, (0, 0, 0), "no seats held, no outbox");
    let retry = env.post("/v1/holds", idem, &body).await;
    assert_eq!(retry.status, 201, "the retry executes: {retry:?}");
    assert_eq!(env.count(COUNT_HOLDS, &offer(day, "Y", 2)).await, 1);
    assert_eq!(env.seats(day).await, (2, 0, 1));

    // Committed (answer lost, or COMMIT arriving late): the hold, exactly once.
    for (day, fault, idem) in [
        (2, Fault::DropAfterCommit, "hold-drop-after-commit"),
        (3, LATE, "hold-late-commit"),
    ] {
        let body = hold_body(&offer(day, "Y", 2), 2);
        let r = env
            .post_with_fault(fault, idem, "/v1/holds", idem, &body)
            .await;
        assert_eq!(
            r.status, 201,
            "{fault:?}: the committed hold is answered: {r:?}"
        );
        let id = data_id(&r);
        assert_eq!(
            env.count(
                "SELECT count(*) FROM holds WHERE id = $1 AND status = 'held'",
                &id
            )
            .await,
            1
        );
        assert_eq!(env.count(COUNT_HOLDS, &offer(day, "Y", 2)).await, 1);
        assert_eq!(
            env.seats(day).await,
            (2, 0, 1),
            "{fault:?}: 2 seats held once"
        );
        env.assert_replayed("/v1/holds", idem, &body, &r).await;
        assert_eq!(env.count(COUNT_HOLDS, &offer(day, "Y", 2)).await, 1);
    }
    check_consistency(&env.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instant_order_commit_outcome_unknown() {
    let Some(env) = setup("instant").await else {
        return;
    };
    const COUNT_ORDERS: &str = "SELECT count(*) FROM orders WHERE offer_id = $1";
    const COUNT_HOLDS: &str = "SELECT count(*) FROM holds WHERE offer_id = $1";

    // Nothing kept: 502 order_not_created, stored (a retry replays it).
    let (day, idem) = (11, "instant-drop-before-commit");
    let body = order_body(&offer(day, "Y", 1), 1, "tok_ok");
    let ledger = env.ledger_rows().await;
    let r = env
        .post_with_fault(Fault::DropBeforeCommit, idem, "/v1/orders", idem, &body)
        .await;
    assert_eq!((r.status, r.code()), (502, "order_not_created"), "{r:?}");
    assert_eq!(env.count(COUNT_ORDERS, &offer(day, "Y", 1)).await, 0);
    assert_eq!(env.count(COUNT_HOLDS, &offer(day, "Y", 1)).await, 0);
    assert_eq!(env.seats(day).await, (0, 0, 0), "no seats, no outbox");
    assert_eq!(env.ledger_rows().await, ledger, "nothing charged");
    env.assert_replayed("/v1/orders", idem, &body, &r).await;
    assert_eq!(env.count(COUNT_ORDERS, &offer(day, "Y", 1)).await, 0);

    // The COMMIT lost in a partition: the old backend sits idle in its transaction, holding
    // its locks, and would commit if the COMMIT still came. bookd must not wait for it
    // forever nor guess: it ends that transaction and then answers 502, nothing kept.
    let (day, idem) = (14, "instant-black-hole");
    let body = order_body(&offer(day, "Y", 1), 1, "tok_ok");
    let ledger = env.ledger_rows().await;
    let r = env
        .post_with_fault(
            Fault::BlackHole(Duration::from_secs(25)),
            idem,
            "/v1/orders",
            idem,
            &body,
        )
        .await;
    assert_eq!((r.status, r.code()), (502, "order_not_created"), "{r:?}");
    assert_eq!(env.count(COUNT_ORDERS, &offer(day, "Y", 1)).await, 0);
    assert_eq!(env.seats(day).await, (0, 0, 0), "no seats, no outbox");
    assert_eq!(env.ledger_rows().await, ledger, "nothing charged");
    env.assert_replayed("/v1/orders", idem, &body, &r).await;

    // Committed: the order goes on through its saga and is answered confirmed, once.
    for (day, fault, idem) in [
        (12, Fault::DropAfterCommit, "instant-drop-after-commit"),
        (13, LATE, "instant-late-commit"),
    ] {
        let body = order_body(&offer(day, "Y", 1), 1, "tok_ok");
        let ledger = env.ledger_rows().await;
        let r = env
            .post_with_fault(fault, idem, "/v1/orders", idem, &body)
            .await;
        assert_eq!(
            r.status, 201,
            "{fault:?}: the committed order is answered: {r:?}"
        );
        assert_eq!(r.body["data"]["status"], "confirmed", "{r:?}");
        let id = data_id(&r);
        assert_eq!(env.count(COUNT_ORDERS, &offer(day, "Y", 1)).await, 1);
        assert_eq!(
            env.count(
                "SELECT count(*) FROM orders WHERE id = $1 AND status = 'confirmed'",
                &id
            )
            .await,
            1
        );
        assert_eq!(env.seats(day).await, (0, 1, 1), "{fault:?}: one seat sold");
        assert_eq!(
            env.count(
                "SELECT count(*) FROM sim_gateway_ledger WHERE idempotency_key = $1 AND kind = 'charge'",
                &format!("chg_{id}")
            )
            .await,
            1,
            "charged once"
        );
        assert_eq!(env.ledger_rows().await, ledger + 1, "one gateway call kept");
        env.assert_replayed("/v1/orders", idem, &body, &r).await;
        assert_eq!(env.count(COUNT_ORDERS, &offer(day, "Y", 1)).await, 1);
    }

    // A late COMMIT on a leg whose inventory row already existed (the waits above were on
    // rows the lost transaction had inserted itself).
    let (day, idem) = (13, "instant-late-commit-existing-row");
    let body = order_body(&offer(day, "Y", 2), 2, "tok_ok");
    let r = env
        .post_with_fault(LATE, idem, "/v1/orders", idem, &body)
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["data"]["status"], "confirmed", "{r:?}");
    assert_eq!(env.count(COUNT_ORDERS, &offer(day, "Y", 2)).await, 1);
    assert_eq!(env.seats(day).await, (0, 3, 2), "1 + 2 seats sold");
    check_consistency(&env.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_from_hold_commit_outcome_unknown() {
    let Some(env) = setup("from-hold").await else {
        return;
    };
    const COUNT_ORDERS: &str = "SELECT count(*) FROM orders WHERE hold_id = $1";
    const HOLD_STATUS: &str = "SELECT count(*) FROM holds WHERE id = $1 AND status = 'held'";
    let make_hold = |day: u32| {
        let env = &env;
        async move {
            let r = env
                .post(
                    "/v1/holds",
                    &format!("from-hold-hold-{day}"),
                    &hold_body(&offer(day, "Y", 2), 2),
                )
                .await;
            assert_eq!(r.status, 201, "{r:?}");
            data_id(&r)
        }
    };
    let order =
        |hold: &str| json!({"hold_id": hold, "payment": {"type": "card", "token": "tok_ok"}});

    // Nothing kept: 502 order_not_created; the hold keeps its seats and can still be ordered.
    let (day, idem) = (21, "from-hold-drop-before-commit");
    let hold = make_hold(day).await;
    let body = order(&hold);
    let ledger = env.ledger_rows().await;
    let r = env
        .post_with_fault(Fault::DropBeforeCommit, idem, "/v1/orders", idem, &body)
        .await;
    assert_eq!((r.status, r.code()), (502, "order_not_created"), "{r:?}");
    assert_eq!(env.count(COUNT_ORDERS, &hold).await, 0);
    assert_eq!(
        env.count(HOLD_STATUS, &hold).await,
        1,
        "the hold is untouched"
    );
    assert_eq!(
        env.seats(day).await,
        (2, 0, 1),
        "the hold's seats stay held"
    );
    assert_eq!(env.ledger_rows().await, ledger, "nothing charged");
    env.assert_replayed("/v1/orders", idem, &body, &r).await;
    let again = env.post("/v1/orders", "from-hold-second-try", &body).await;
    assert_eq!(again.status, 201, "the hold is still usable: {again:?}");
    assert_eq!(env.seats(day).await, (0, 2, 1));

    // Committed: the order from the hold, confirmed once.
    for (day, fault, idem) in [
        (22, Fault::DropAfterCommit, "from-hold-drop-after-commit"),
        (23, LATE, "from-hold-late-commit"),
    ] {
        let hold = make_hold(day).await;
        let body = order(&hold);
        let ledger = env.ledger_rows().await;
        let r = env
            .post_with_fault(fault, idem, "/v1/orders", idem, &body)
            .await;
        assert_eq!(
            r.status, 201,
            "{fault:?}: the committed order is answered: {r:?}"
        );
        assert_eq!(r.body["data"]["status"], "confirmed", "{r:?}");
        let id = data_id(&r);
        assert_eq!(env.count(COUNT_ORDERS, &hold).await, 1);
        assert_eq!(
            env.count(
                "SELECT count(*) FROM holds WHERE id = $1 AND status = 'ordered'",
                &hold
            )
            .await,
            1
        );
        assert_eq!(env.seats(day).await, (0, 2, 1), "{fault:?}: two seats sold");
        assert_eq!(
            env.count(
                "SELECT count(*) FROM sim_gateway_ledger WHERE idempotency_key = $1 AND kind = 'charge'",
                &format!("chg_{id}")
            )
            .await,
            1,
            "charged once"
        );
        assert_eq!(env.ledger_rows().await, ledger + 1, "one gateway call kept");
        env.assert_replayed("/v1/orders", idem, &body, &r).await;
    }
    check_consistency(&env.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_commit_outcome_unknown() {
    let Some(env) = setup("cancel").await else {
        return;
    };
    let confirmed_order = |day: u32| {
        let env = &env;
        async move {
            let r = env
                .post(
                    "/v1/orders",
                    &format!("cancel-order-{day}"),
                    &order_body(&offer(day, "Y", 1), 1, "tok_ok"),
                )
                .await;
            assert_eq!(r.status, 201, "{r:?}");
            data_id(&r)
        }
    };
    let refunds = |id: String| {
        let env = &env;
        async move {
            env.count(
                "SELECT count(*) FROM sim_gateway_ledger WHERE idempotency_key = $1 AND kind = 'refund'",
                &format!("ref_{id}"),
            )
            .await
        }
    };
    let cancelled = |r: &Resp| {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["data"]["status"], "cancelled", "{r:?}");
        assert_eq!(
            r.body["data"]["refund_amount"],
            json!({"amount": "100.00", "currency": "EUR"}),
            "{r:?}"
        );
    };
    let empty = json!({});

    // Nothing kept: a retryable error (not stored); the order stays confirmed and paid, the
    // retry with the same key cancels and refunds it once.
    let (day, idem) = (31, "cancel-drop-before-commit");
    let id = confirmed_order(day).await;
    let path = format!("/v1/orders/{id}/cancel");
    let r = env
        .post_with_fault(Fault::DropBeforeCommit, &id, &path, idem, &empty)
        .await;
    assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{r:?}");
    assert_eq!(
        env.count(
            "SELECT count(*) FROM orders WHERE id = $1 AND status = 'confirmed'",
            &id
        )
        .await,
        1
    );
    assert_eq!(env.seats(day).await, (0, 1, 1), "the seat stays sold");
    assert_eq!(refunds(id.clone()).await, 0);
    let retry = env.post(&path, idem, &empty).await;
    cancelled(&retry);
    assert_eq!(env.seats(day).await, (0, 0, 2), "the seat returns to sale");
    assert_eq!(refunds(id.clone()).await, 1);

    // Committed: cancelled and refunded once.
    for (day, fault, idem) in [
        (32, Fault::DropAfterCommit, "cancel-drop-after-commit"),
        (33, LATE, "cancel-late-commit"),
    ] {
        let id = confirmed_order(day).await;
        let path = format!("/v1/orders/{id}/cancel");
        let r = env.post_with_fault(fault, &id, &path, idem, &empty).await;
        cancelled(&r);
        assert_eq!(
            env.seats(day).await,
            (0, 0, 2),
            "{fault:?}: the seat returns"
        );
        assert_eq!(refunds(id.clone()).await, 1, "{fault:?}: refunded once");
        let again = env.post(&path, idem, &empty).await;
        cancelled(&again);
        assert_eq!(refunds(id.clone()).await, 1);
    }
    check_consistency(&env.db).await;
}

/// Without an `Idempotency-Key` bookd settles the lost COMMIT all the same (by the ids it
/// generated), so a client that cannot retry still gets the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_without_idempotency_key_commit_outcome_unknown() {
    let Some(env) = setup("no-key").await else {
        return;
    };
    for (day, fault) in [
        (51, Fault::DropBeforeCommit),
        (52, Fault::DropAfterCommit),
        (53, LATE),
    ] {
        let offer_id = offer(day, "Y", 1);
        let body = order_body(&offer_id, 1, "tok_ok");
        // The offer id is bound by the statements of the order's transaction.
        env.proxy.arm(fault, &[&offer_id]);
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            env.b
                .call("POST", "/v1/orders", Some(&env.key), None, Some(&body)),
        )
        .await
        .expect("answered within 30 s");
        let mut fired = env.proxy.take_fired();
        for _ in 0..100 {
            if !fired.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            fired = env.proxy.take_fired();
        }
        assert_eq!(fired.len(), 1, "{fault:?} hit the order's COMMIT: {r:?}");
        let orders = env
            .count("SELECT count(*) FROM orders WHERE offer_id = $1", &offer_id)
            .await;
        if fault == Fault::DropBeforeCommit {
            assert_eq!((r.status, r.code()), (502, "order_not_created"), "{r:?}");
            assert_eq!(orders, 0);
            assert_eq!(env.seats(day).await, (0, 0, 0));
        } else {
            assert_eq!(r.status, 201, "{fault:?}: {r:?}");
            assert_eq!(r.body["data"]["status"], "confirmed", "{r:?}");
            assert_eq!(orders, 1);
            assert_eq!(env.seats(day).await, (0, 1, 1));
        }
    }
    check_consistency(&env.db).await;
}

/// A saga step's COMMIT lost (here `seats_held -> payment_charged`, recognised by the
/// step name it binds): the order still ends confirmed, charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saga_step_commit_outcome_unknown() {
    let Some(env) = setup("saga-step").await else {
        return;
    };
    for (day, fault, idem) in [
        (41, Fault::DropBeforeCommit, "step-drop-before-commit"),
        (42, Fault::DropAfterCommit, "step-drop-after-commit"),
        (43, LATE, "step-late-commit"),
    ] {
        let body = order_body(&offer(day, "Y", 1), 1, "tok_ok");
        let ledger = env.ledger_rows().await;
        let r = env
            .post_with_fault(fault, "payment_charged", "/v1/orders", idem, &body)
            .await;
        assert_eq!(r.status, 201, "{fault:?}: {r:?}");
        assert_eq!(r.body["data"]["status"], "confirmed", "{r:?}");
        let id = data_id(&r);
        assert_eq!(
            env.count(
                "SELECT count(*) FROM orders WHERE id = $1 AND status = 'confirmed'",
                &id
            )
            .await,
            1
        );
        assert_eq!(env.seats(day).await, (0, 1, 1), "{fault:?}: one seat sold");
        assert_eq!(
            env.count(
                "SELECT count(*) FROM sim_gateway_ledger WHERE idempotency_key = $1 AND kind = 'charge'",
                &format!("chg_{id}")
            )
            .await,
            1,
            "charged once"
        );
        assert_eq!(env.ledger_rows().await, ledger + 1, "one gateway call kept");
        env.assert_replayed("/v1/orders", idem, &body, &r).await;
    }
    check_consistency(&env.db).await;
}

/// The fault injector itself, against the real server: each fault hits the COMMIT it was
/// armed for (explicit, or the Sync of a statement run on its own), and the server's state
/// is what the fault means.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_cuts_the_armed_commit() {
    if !pg_available() {
        return;
    }
    let tmp = cluster_tempdir();
    let pg = tokio::task::block_in_place(|| bookd::pg::Embedded::start(&tmp.path().join("state")))
        .expect("start the test's PostgreSQL");
    let (direct, conn) = pg
        .layout
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    direct
        .batch_execute("CREATE TABLE t (k text PRIMARY KEY)")
        .await
        .unwrap();
    let sock = pg
        .layout
        .socket_dir
        .join(format!(".s.PGSQL.{}", bookd::pg::SOCKET_PORT));
    let proxy = PgProxy::start(Upstream::Unix(sock)).await;
    let url = proxy.url(bookd::pg::DB_USER, bookd::pg::DB_NAME);
    let kept = |k: String| {
        let direct = &direct;
        async move {
            direct
                .query_opt("SELECT 1 FROM t WHERE k = $1", &[&k])
                .await
                .unwrap()
                .is_some()
        }
    };
    let faults = [
        (Fault::DropBeforeCommit, false),
        (Fault::DropAfterCommit, true),
        (Fault::LateCommit(Duration::from_millis(200)), true),
    ];
    for (i, (fault, committed)) in faults.into_iter().enumerate() {
        for explicit in [true, false] {
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let k = format!("key-{i}-{explicit}");
            let other = format!("other-{i}-{explicit}");
            proxy.arm(fault, &[&k]);
            // A statement without the needle commits untouched.
            client
                .execute("INSERT INTO t VALUES ($1)", &[&other])
                .await
                .unwrap();
            let res = if explicit {
                let tx = client.transaction().await.unwrap();
                tx.execute("INSERT INTO t VALUES ($1)", &[&k])
                    .await
                    .unwrap();
                tx.commit().await
            } else {
                client
                    .execute("INSERT INTO t VALUES ($1)", &[&k])
                    .await
                    .map(|_| ())
            };
            let e = res.expect_err("the connection is cut at the commit");
            assert!(e.as_db_error().is_none(), "a lost connection: {e}");
            let mut fired = proxy.take_fired();
            for _ in 0..100 {
                if !fired.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                fired = proxy.take_fired();
            }
            assert_eq!(fired.len(), 1, "{fault:?} explicit={explicit}: {fired:?}");
            // Once the old backend is gone, the state is final.
            for _ in 0..100 {
                let n: i64 = direct
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if n == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                kept(k).await,
                committed,
                "{fault:?} explicit={explicit}: {fired:?}"
            );
            assert!(kept(other).await);
        }
    }
}
