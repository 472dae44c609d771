//! Holds, orders (the booking saga), cancellations, expiry and recovery.
//!
//! Saga of an order, each step persisted in `orders.saga_step` before the next begins:
//! `seats_held` (seats held, order and charge rows written in one transaction) ->
//! charge the card (gateway idempotency key `chg_<order>`) -> `payment_charged` ->
//! confirm with the airline (key `air_<order>`) -> `confirmed` (held seats become sold).
//! A decline or a provably absent charge releases the seats (`compensated`); a failure
//! after the charge goes through `compensating` (seats released, then the charge
//! refunded with key `ref_<order>`). Every transition is a guarded
//! `UPDATE ... WHERE saga_step = <expected>`, so recovery and a live driver never apply
//! one twice.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Pool, Transaction};
use format::wire::LegKey;
use serde_json::{json, Value};

use crate::api::{ApiError, Money};
use crate::clock::{rfc3339_ms, Clock};
use crate::crypto::DataKey;
use crate::external::{
    call, probe, Airline, Breaker, ChargeRequest, ExtError, PaymentGateway, RetryPolicy,
};
use crate::ids::new_id;
use crate::metrics::Metrics;
use crate::offers::{CapacitySource, LegRef, OfferResolver, PaxCounts, Price, ResolvedOffer};
use crate::outbox_feed::{inventory_seats, SeqSignal};
use crate::sequencer::{write_pending, PendingBatch, Sequencer};
use crate::validate::{self, BookingInput, Contact, OrderInput, OrderSource, Passenger};

#[derive(Debug, Clone)]
pub struct Config {
    pub hold_ttl: Duration,
    pub sweep_interval: Duration,
    pub payment_policy: RetryPolicy,
    pub airline_policy: RetryPolicy,
    /// `--commit-timeout-ms`: the longest a request waits for the statements of a write
    /// transaction and, again, for its COMMIT (see [`WriteConn`]).
    pub commit_timeout: Duration,
}

pub struct Service {
    pub pool: Pool,
    pub clock: Clock,
    pub resolver: Arc<dyn OfferResolver>,
    pub capacity: Arc<dyn CapacitySource>,
    pub key: DataKey,
    pub gateway: Arc<dyn PaymentGateway>,
    pub airline: Arc<dyn Airline>,
    pub pay_breaker: Breaker,
    pub air_breaker: Breaker,
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
    /// Advanced after every COMMIT that wrote outbox rows (the invalidation feed).
    pub outbox_seq: Arc<SeqSignal>,
    /// Numbers the outbox changes this process commits (woken after each such commit).
    pub sequencer: Arc<Sequencer>,
    /// Orders whose saga a request of this process is driving (see [`LiveSet`]).
    pub live_sagas: LiveSagas,
    /// Cancellations' `Idempotency-Key` claims a request of this process runs (see [`LiveSet`]).
    pub live_claims: LiveClaims,
}

/// What requests of this process are working on now, so that the periodic recovery leaves
/// it alone: it takes over only what no request drives any more. In memory, as one bookd
/// process serves one database.
/// - [`LiveSagas`]: orders whose saga a request drives (a saga whose request gave up when
///   the database failed over under it would otherwise stay pending, its seats held and its
///   `Idempotency-Key` in progress, until bookd restarts);
/// - [`LiveClaims`]: the `Idempotency-Key` claims of cancellations a request is running (a
///   claim left in progress by a request that is gone, e.g. one whose COMMIT was given up
///   and landed later, would answer 409 to every retry until bookd restarts).
#[derive(Debug)]
pub struct LiveSet<K>(std::sync::Mutex<std::collections::HashSet<K>>);

pub type LiveSagas = LiveSet<String>;
/// (API key id, `Idempotency-Key`).
pub type LiveClaims = LiveSet<(i64, String)>;

impl<K> Default for LiveSet<K> {
    fn default() -> Self {
        LiveSet(std::sync::Mutex::new(std::collections::HashSet::new()))
    }
}

/// Membership of one entry in a [`LiveSet`], for as long as the request holds it.
pub struct LiveEntry<'a, K: std::hash::Hash + Eq> {
    set: &'a LiveSet<K>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Clone> LiveSet<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<K>> {
        // The set stays consistent under a panic (an insert or a remove is all it sees).
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `key` until the returned entry is dropped. Each key has one owner at a time
    /// (order ids are unique; a claim has one request executing it).
    pub fn own(&self, key: K) -> LiveEntry<'_, K> {
        let fresh = self.lock().insert(key.clone());
        debug_assert!(fresh, "a live entry has one owner");
        LiveEntry { set: self, key }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.lock().contains(key)
    }
}

impl<K: std::hash::Hash + Eq> Drop for LiveEntry<'_, K> {
    fn drop(&mut self) {
        self.set
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// Who is calling, for one request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub api_key_id: i64,
    pub request_id: String,
    /// The request's `Idempotency-Key`, if any. Holds and orders claim it inside their
    /// deciding transaction (with `request_hash`); other requests claim it before the call.
    pub idempotency_key: Option<String>,
    /// sha256 of the request (method, path, canonical body), stored with the claim.
    pub request_hash: Option<[u8; 32]>,
    /// Set once a claim row of this request has committed (the hold's or order's first
    /// transaction): only then may the caller update or release that row.
    pub claimed: Arc<AtomicBool>,
}

impl Ctx {
    pub fn new(api_key_id: i64, request_id: &str) -> Ctx {
        Ctx {
            api_key_id,
            request_id: request_id.to_string(),
            idempotency_key: None,
            request_hash: None,
            claimed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn idem_params(&self) -> (Option<&str>, Option<&[u8]>) {
        match (&self.idempotency_key, &self.request_hash) {
            (Some(k), Some(h)) => (Some(k.as_str()), Some(h.as_slice())),
            _ => (None, None),
        }
    }
}

/// `ApiError::code` of the marker a hold or order returns when its transaction found its
/// `Idempotency-Key` already claimed: the HTTP layer then replays (or waits for) the
/// stored response. Never sent to a client.
pub const IDEMPOTENCY_CLAIMED: &str = "idempotency_key_claimed";

fn idempotency_claimed() -> ApiError {
    ApiError::new(
        409,
        IDEMPOTENCY_CLAIMED,
        "Idempotency key claimed",
        "another request with this Idempotency-Key came first",
    )
}

/// An offer's legs as statement parameters (one array per column, in the offer's order).
struct LegColumns<'a> {
    carriers: Vec<&'a str>,
    numbers: Vec<i32>,
    dates: Vec<&'a str>,
    origins: Vec<&'a str>,
    destinations: Vec<&'a str>,
    classes: Vec<&'a str>,
}

impl<'a> LegColumns<'a> {
    fn new(legs: &'a [LegRef]) -> Self {
        LegColumns {
            carriers: legs.iter().map(|l| l.carrier.as_str()).collect(),
            numbers: legs.iter().map(|l| i32::from(l.flight_number)).collect(),
            dates: legs.iter().map(|l| l.date.as_str()).collect(),
            origins: legs.iter().map(|l| l.origin.as_str()).collect(),
            destinations: legs.iter().map(|l| l.destination.as_str()).collect(),
            classes: legs.iter().map(|l| l.booking_class.as_str()).collect(),
        }
    }
}

/// The shared part of the deciding statement of a hold and of an order (one statement
/// instead of a claim, one UPDATE per leg, and one INSERT per row):
/// `legs` are the offer's legs in order (`i` from 1); `inv` takes `$SEATS` held seats on
/// every leg whose class has them, locking the rows in key order (the order `adjust` uses,
/// so two bookings of the same legs cannot deadlock), and `ob` writes each change with the
/// seats remaining after it to `outbox_pending` (see `sequencer.rs`); the final SELECT
/// reports whether the
/// claim was inserted, how many legs have no inventory row yet, and the indexes of the
/// legs taken.
#[rustfmt::skip]
macro_rules! take_seats_sql {
    ($claim:literal, $legs:literal, $seats:literal, $instant:literal, $reason:literal,
     $rest:literal) => {
        concat!(
            "WITH claim AS (", $claim, "),
             legs AS (SELECT * FROM unnest(", $legs, ")
                      WITH ORDINALITY AS u(carrier, flight_number, dep_date, origin,
                                           destination, booking_class, i)),
             inv AS (
                 UPDATE inventory v SET held = v.held + ", $seats, "
                 FROM (SELECT * FROM legs WHERE ", $instant, "
                       ORDER BY carrier COLLATE \"C\", flight_number, dep_date COLLATE \"C\",
                                origin COLLATE \"C\", booking_class COLLATE \"C\") u
                 WHERE v.carrier = u.carrier AND v.flight_number = u.flight_number
                   AND v.dep_date = u.dep_date::date AND v.origin = u.origin
                   AND v.booking_class = u.booking_class
                   AND v.capacity - v.sold - v.held >= ", $seats, "
                 RETURNING u.i, v.capacity - v.sold - v.held AS remaining
             ),
             ob AS (
                 INSERT INTO outbox_pending (carrier, flight_number, dep_date, origin,
                                             booking_class, seats_remaining, reason)
                 SELECT l.carrier, l.flight_number, l.dep_date::date, l.origin,
                        l.booking_class, inv.remaining, ", $reason, "
                 FROM inv JOIN legs l ON l.i = inv.i
                 ORDER BY inv.i
             ), ", $rest, "
             SELECT (SELECT count(*) FROM claim),
                    (SELECT count(*) FROM legs u WHERE ", $instant, " AND NOT EXISTS (
                         SELECT 1 FROM inventory v
                         WHERE v.carrier = u.carrier AND v.flight_number = u.flight_number
                           AND v.dep_date = u.dep_date::date AND v.origin = u.origin
                           AND v.booking_class = u.booking_class)),
                    ARRAY(SELECT i FROM inv ORDER BY i)"
        )
    };
}

/// A hold: the claim (stored as done with the response, `$16`-`$18`), the seats, the hold
/// row and its audit row.
const HOLD_SQL: &str = take_seats_sql!(
    "INSERT INTO idempotency_keys (api_key_id, key, request_hash, status, response_status,
                                   response_body, created_ms)
     SELECT $2, $16::text, $17::bytea, 'done', 201, $18::text, $13
     WHERE $16::text IS NOT NULL
     ON CONFLICT DO NOTHING RETURNING 1",
    "$19::text[], $20::int[], $21::text[], $22::text[], $23::text[], $24::text[]",
    "$4::int",
    "true",
    "'hold'",
    "h AS (
         INSERT INTO holds (id, api_key_id, offer_id, status, seats, legs, adults, children,
                            infants, price_minor, currency, refundable, passengers_enc,
                            created_ms, expires_ms)
         VALUES ($1, $2, $3, 'held', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     ),
     a AS (INSERT INTO audit (actor, action, subject) VALUES ($15, 'hold.create', $1))"
);

/// An order's first transaction: the claim (`in_progress`, with the order id), the seats
/// and a hold row in state `ordered` for an instant order (`$14`; an order from a hold
/// moves that hold instead), the order, its segments, passengers, pending charge and
/// audit row.
const ORDER_SQL: &str = take_seats_sql!(
    "INSERT INTO idempotency_keys (api_key_id, key, request_hash, status, order_id, created_ms)
     SELECT $2, $12::text, $13::bytea, 'in_progress', $1, $10
     WHERE $12::text IS NOT NULL
     ON CONFLICT DO NOTHING RETURNING 1",
    "$20::text[], $21::int[], $22::text[], $23::text[], $24::text[], $25::text[]",
    "$5::int",
    "$14::bool",
    "'order'",
    "h AS (
         INSERT INTO holds (id, api_key_id, offer_id, status, seats, legs, adults, children,
                            infants, price_minor, currency, refundable, passengers_enc,
                            created_ms, expires_ms, instant)
         SELECT $3, $2, $4, 'ordered', $5, $15, $16, $17, $18, $6, $7, $8, $19, $10, $10, true
         WHERE $14::bool
     ),
     hu AS (UPDATE holds SET status = 'ordered' WHERE id = $3 AND NOT $14::bool),
     o AS (
         INSERT INTO orders (id, api_key_id, hold_id, offer_id, status, saga_step, seats,
                             price_minor, currency, refundable, contact_enc, created_ms,
                             updated_ms)
         VALUES ($1, $2, $3, $4, 'pending', 'seats_held', $5, $6, $7, $8, $9, $10, $10)
     ),
     s AS (
         INSERT INTO order_segments (order_id, idx, carrier, flight_number, dep_date, origin,
                                     destination, booking_class)
         SELECT $1, (i - 1)::smallint, carrier, flight_number, dep_date::date, origin,
                destination, booking_class
         FROM legs
     ),
     p AS (
         INSERT INTO passengers (order_id, idx, passenger_type, data_enc)
         SELECT $1, (x.i - 1)::smallint, x.t, x.d
         FROM unnest($26::text[], $27::bytea[]) WITH ORDINALITY AS x(t, d, i)
     ),
     pay AS (
         INSERT INTO payments (order_id, kind, idempotency_key, amount_minor, currency, status,
                               created_ms, updated_ms)
         VALUES ($1, 'charge', $28, $6, $7, 'pending', $10, $10)
     ),
     a AS (INSERT INTO audit (actor, action, subject) VALUES ($11, 'order.create', $1))"
);

/// The live saga's last step when the charge and the airline both answered at once:
/// `seats_held` -> `confirmed` with the charge recorded, held seats sold on every leg, the
/// audit rows of both steps (`$12`) and the stored idempotent response, in one statement
/// (one commit) instead of the `payment_charged` and `confirmed` transactions. Guarded like [`Service::transition`]
/// (nothing happens unless the order is still in `seats_held`); a leg without `$4` held
/// seats would mean inconsistent inventory: the division by zero then aborts the statement
/// (and so the whole change).
const CONFIRM_SQL: &str = "WITH o AS (
         UPDATE orders SET saga_step = 'confirmed', status = 'confirmed', updated_ms = $2,
                           booking_reference = $3
         WHERE id = $1 AND saga_step = 'seats_held'
         RETURNING id
     ),
     inv AS (
         UPDATE inventory v SET held = v.held - $4::int, sold = v.sold + $4::int
         FROM (SELECT * FROM unnest($6::text[], $7::int[], $8::text[], $9::text[], $10::text[])
                   AS t(carrier, flight_number, dep_date, origin, booking_class)
               WHERE EXISTS (SELECT 1 FROM o)
               ORDER BY carrier COLLATE \"C\", flight_number, dep_date COLLATE \"C\",
                        origin COLLATE \"C\", booking_class COLLATE \"C\") u
         WHERE v.carrier = u.carrier AND v.flight_number = u.flight_number
           AND v.dep_date = u.dep_date::date AND v.origin = u.origin
           AND v.booking_class = u.booking_class AND v.held >= $4::int
         RETURNING 1
     ),
     pay AS (
         UPDATE payments SET status = 'succeeded', updated_ms = $2
         WHERE order_id IN (SELECT id FROM o) AND kind = 'charge'
     ),
     a AS (
         INSERT INTO audit (actor, action, subject)
         SELECT 'saga', x.action, o.id FROM o, unnest($12::text[]) WITH ORDINALITY AS x(action, i)
         ORDER BY x.i
     ),
     k AS (
         UPDATE idempotency_keys SET status = 'done', response_status = 201, response_body = $5
         WHERE order_id IN (SELECT id FROM o) AND status = 'in_progress'
     )
     SELECT n, 1 / (n = 0 OR m = $11::bigint)::int
     FROM (SELECT (SELECT count(*) FROM o) AS n, (SELECT count(*) FROM inv) AS m) c";

/// What a hold's or order's deciding statement reported.
struct Taken {
    claimed: bool,
    missing: i64,
    /// Indexes (from 1) of the legs whose seats were taken, ascending.
    idx: Vec<i64>,
}

impl Taken {
    fn from_row(row: &tokio_postgres::Row) -> Taken {
        Taken {
            claimed: row.get::<_, i64>(0) > 0,
            missing: row.get(1),
            idx: row.get(2),
        }
    }
}

const INSERT_INVENTORY_SQL: &str =
    "INSERT INTO inventory (carrier, flight_number, dep_date, origin,
                        booking_class, capacity)
     SELECT c, f, d::date, o, b, k
     FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[],
                 $6::int[]) AS t(c, f, d, o, b, k)
     ORDER BY c COLLATE \"C\", f, d COLLATE \"C\", o COLLATE \"C\", b COLLATE \"C\"
     ON CONFLICT DO NOTHING";

/// Creates the inventory rows of legs booked for the first time, from the snapshot's
/// capacity (a no-op for rows that exist; waits for a concurrent inserter), inside the
/// booking's transaction: a booking that then fails leaves no row without an outbox row.
async fn create_inventory_rows(
    client: &Transaction<'_>,
    capacity: &dyn CapacitySource,
    legs: &[LegRef],
) -> Result<(), ApiError> {
    let cols = LegColumns::new(legs);
    let caps: Vec<i32> = legs
        .iter()
        .map(|l| i32::try_from(capacity.capacity(l)).unwrap_or(i32::MAX))
        .collect();
    client
        .execute(
            &client.prepare_cached(INSERT_INVENTORY_SQL).await?,
            &[
                &cols.carriers,
                &cols.numbers,
                &cols.dates,
                &cols.origins,
                &cols.classes,
                &caps,
            ],
        )
        .await?;
    Ok(())
}

/// A response: status and the whole body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Already stored as the idempotent response (inside the deciding transaction).
    pub stored: bool,
}

impl Reply {
    fn data(status: u16, data: Value, request_id: &str) -> Reply {
        Reply {
            status,
            body: json!({ "data": data, "meta": { "request_id": request_id } }),
            stored: false,
        }
    }
    pub fn error(e: &ApiError, request_id: &str) -> Reply {
        Reply {
            status: e.status,
            body: e.body(request_id),
            stored: false,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Personal {
    passengers: Vec<Passenger>,
    contact: Contact,
}

/// [`Service::seal_hold`]'s result.
struct SealedHold {
    personal: Personal,
    enc: Vec<u8>,
    legs_json: String,
}

/// What a hold's JSON is made of.
struct HoldView<'a> {
    id: &'a str,
    /// `held`, `ordered`, `expired` or `released`.
    status: &'a str,
    expires_ms: i64,
    offer_id: &'a str,
    legs: &'a [LegRef],
    personal: &'a Personal,
    price_minor: i64,
    currency: &'a str,
    /// The order made from it that has not failed, if any.
    order_id: Option<&'a str>,
}

/// A hold as `POST /v1/holds` and `GET /v1/holds/{id}` show it; `order` is the order it
/// makes (or made: `order.id`).
fn hold_json(h: &HoldView<'_>) -> Value {
    let price = money(h.price_minor, h.currency);
    json!({
        "id": h.id,
        "status": h.status,
        "expires_at": rfc3339_ms(h.expires_ms),
        "price": price,
        "order": {
            "id": h.order_id,
            "offer_id": h.offer_id,
            "segments": h.legs.iter().map(|l| json!({
                "carrier": l.carrier, "flight_number": l.flight_number.to_string(),
                "departure_date": l.date, "origin": l.origin, "destination": l.destination,
                "booking_class": l.booking_class,
            })).collect::<Vec<_>>(),
            "passengers": h.personal.passengers,
            "contact": h.personal.contact,
            "price": price,
        },
    })
}

fn money(minor: i64, cur: &str) -> Value {
    json!(Money::from_minor(minor, cur))
}

fn today(now_ms: i64) -> i32 {
    now_ms.div_euclid(86_400_000) as i32
}

fn failure_error(code: &str) -> ApiError {
    match code {
        "payment_declined" => ApiError::new(
            402,
            "payment_declined",
            "Payment declined",
            "the card was declined; no seats were kept",
        ),
        _ => ApiError::order_not_created(
            "the order could not be completed; no seats were kept and any charge is refunded",
        ),
    }
}

/// `held`/`sold` changes on every leg, each changing the seats remaining adding an outbox
/// change to `outbox`, guarded
/// so that `sold + held <= capacity` and neither goes negative. `false` when a leg has too
/// few seats (the caller rolls back). The caller writes `outbox` with
/// [`Service::commit_with_outbox`].
async fn adjust(
    tx: &Transaction<'_>,
    capacity: &dyn CapacitySource,
    legs: &[LegRef],
    d_held: i32,
    d_sold: i32,
    reason: &str,
    outbox: &mut PendingBatch,
) -> Result<bool, ApiError> {
    let mut sorted: Vec<&LegRef> = legs.iter().collect();
    sorted.sort();
    let update = tx
        .prepare_cached(
            "UPDATE inventory SET held = held + $6::int, sold = sold + $7::int
             WHERE carrier = $1 AND flight_number = $2 AND dep_date = $3::text::date
               AND origin = $4 AND booking_class = $5
               AND capacity - sold - held >= $6::int + $7::int
               AND held + $6::int >= 0 AND sold + $7::int >= 0
             RETURNING capacity - sold - held",
        )
        .await?;
    for leg in sorted {
        let fnum = i32::from(leg.flight_number);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &leg.carrier,
            &fnum,
            &leg.date,
            &leg.origin,
            &leg.booking_class,
            &d_held,
            &d_sold,
        ];
        let mut row = tx.query_opt(&update, &params).await?;
        if row.is_none() && d_held + d_sold > 0 {
            // Either too few seats or no row yet for this leg class: create the row from the
            // snapshot's capacity (a no-op when it exists, or waits for a concurrent
            // inserter), then try once more; only that answer decides.
            let cap = i32::try_from(capacity.capacity(leg)).unwrap_or(i32::MAX);
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO inventory (carrier, flight_number, dep_date, origin,
                                            booking_class, capacity)
                     VALUES ($1, $2, $3::text::date, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .await?,
                &[
                    &leg.carrier,
                    &fnum,
                    &leg.date,
                    &leg.origin,
                    &leg.booking_class,
                    &cap,
                ],
            )
            .await?;
            row = tx.query_opt(&update, &params).await?;
        }
        let Some(row) = row else {
            if d_held + d_sold > 0 {
                return Ok(false);
            }
            tracing::error!(reason, "inventory release found no matching seats");
            return Err(ApiError::internal("inventory is inconsistent"));
        };
        // The absolute seats remaining, written to the outbox right before COMMIT. A move
        // between held and sold (an order's confirmation) leaves it unchanged: no outbox
        // change, so such a transaction does not take the `outbox_head` lock at all.
        if d_held + d_sold != 0 {
            outbox.push(
                &leg.carrier,
                fnum,
                &leg.date,
                &leg.origin,
                &leg.booking_class,
                row.get(0),
                reason,
            );
        }
    }
    Ok(true)
}

async fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    subject: &str,
) -> Result<(), ApiError> {
    tx.execute(
        &tx.prepare_cached("INSERT INTO audit (actor, action, subject) VALUES ($1, $2, $3)")
            .await?,
        &[&actor, &action, &subject],
    )
    .await?;
    Ok(())
}

fn actor(key_id: i64) -> String {
    format!("api_key:{key_id}")
}

/// Whether a commit error leaves the outcome unknown (the connection broke) rather than
/// reporting a rollback from the server.
fn outcome_unknown(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none()
}

/// What a client is told when a COMMIT's outcome stays unknown: its retry with the same
/// key finds the result once the database knows it.
const OUTCOME_NOT_KNOWN_YET: &str = "the database did not answer the COMMIT and its outcome is \
                                     not known yet; retry with the same Idempotency-Key";

/// A pooled connection of a write transaction. Once a wait on it was given up
/// ([`Cut`]), dropping it closes it instead of returning it to the pool: the server may
/// still be running what was sent (a COMMIT waiting for a synchronous standby goes on
/// whatever the client does), and the next request's statements would queue behind it.
pub(crate) struct WriteConn {
    /// Always `Some` until dropped (taken out only in `drop`).
    obj: Option<deadpool_postgres::Object>,
    cut: Cut,
}

impl WriteConn {
    fn new(obj: deadpool_postgres::Object) -> WriteConn {
        WriteConn {
            obj: Some(obj),
            cut: Cut::default(),
        }
    }

    /// The mark to set when a wait on this connection is given up (a handle, so that it can
    /// be set while a transaction borrows the connection).
    pub(crate) fn cut(&self) -> Cut {
        self.cut.clone()
    }
}

impl std::ops::Deref for WriteConn {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        self.obj
            .as_ref()
            .expect("a WriteConn holds its connection until dropped")
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.obj
            .as_mut()
            .expect("a WriteConn holds its connection until dropped")
    }
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        if self.cut.is_set() {
            if let Some(obj) = self.obj.take() {
                // Out of the pool; dropping the client aborts its connection task, which
                // closes the socket.
                drop(deadpool_postgres::Object::take(obj));
            }
        }
    }
}

/// Set when a wait on a [`WriteConn`] was given up.
#[derive(Clone, Default)]
pub(crate) struct Cut(Arc<AtomicBool>);

impl Cut {
    fn set(&self) {
        self.0.store(true, Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Relaxed)
    }
}

/// Why a COMMIT did not answer "committed".
enum CommitFailed {
    /// Nothing was committed (the server refused, or a statement before the COMMIT failed).
    Failed(ApiError),
    /// No answer: the connection broke, or `commit_timeout` passed while the COMMIT waited.
    /// It may have committed, or commit later: settle it before answering.
    Unknown,
}

impl From<CommitFailed> for ApiError {
    fn from(e: CommitFailed) -> ApiError {
        match e {
            CommitFailed::Failed(e) => e,
            CommitFailed::Unknown => ApiError::unavailable(OUTCOME_NOT_KNOWN_YET),
        }
    }
}

/// Why settling a lost COMMIT did not finish.
enum Unsettled {
    /// The transaction in the way is still waiting for a synchronous standby: nothing can be
    /// known until replication resumes (or it is cancelled, which would keep it locally).
    Replicating,
    Error(ApiError),
}

impl From<ApiError> for Unsettled {
    fn from(e: ApiError) -> Unsettled {
        Unsettled::Error(e)
    }
}

impl From<tokio_postgres::Error> for Unsettled {
    fn from(e: tokio_postgres::Error) -> Unsettled {
        Unsettled::Error(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for Unsettled {
    fn from(e: deadpool_postgres::PoolError) -> Unsettled {
        Unsettled::Error(e.into())
    }
}

/// Rows a transaction whose COMMIT was lost had locked (updated or `FOR UPDATE`), so that
/// settling its outcome can wait for it to end: they stay locked until its backend has
/// committed or rolled back.
enum Locked<'a> {
    /// Inventory rows of these legs (the transaction may have inserted them).
    Legs(&'a [LegRef]),
    Hold(&'a str),
    Order(&'a str),
}

/// What an order's first transaction writes, from its hold or its offer.
struct OrderPlan {
    hold_id: String,
    offer_id: String,
    legs: Vec<LegRef>,
    seats: i32,
    price: i64,
    currency: String,
    refundable: bool,
    personal: Personal,
    /// Instant order: seats are taken and a hold row (state `ordered`) is written with
    /// `hold_legs_json`, `pax` and `hold_enc`; from a hold: that hold moves to `ordered`.
    instant: bool,
    hold_legs_json: String,
    pax: [i16; 3],
    hold_enc: Vec<u8>,
}

/// The state a live request hands to its saga: no need to read back what it just wrote.
struct Live {
    core: OrderCore,
    /// The order as the API shows it (`order_json`'s shape), status `pending`.
    view: Value,
}

/// What a saga step does with an order's seats.
#[derive(Clone, Copy)]
enum SeatMove<'a> {
    /// Changes held and sold seats on every leg by these amounts (the outbox reason).
    Adjust(i32, i32, &'a str),
    /// Gives the held seats back to the client's hold they came from: a payment that
    /// failed before any charge leaves the client free to pay again until the hold expires.
    BackToHold,
}

struct OrderCore {
    id: String,
    /// The hold the order was made from (for an instant order, its own `instant` hold row).
    hold_id: String,
    /// Whether that hold is one a client made with `POST /v1/holds`.
    client_hold: bool,
    api_key_id: i64,
    status: String,
    step: String,
    seats: i32,
    price_minor: i64,
    currency: String,
    failure_code: Option<String>,
    seats_released: bool,
    refund_minor: Option<i64>,
    legs: Vec<LegRef>,
}

impl OrderCore {
    /// How a payment failure before any charge releases the seats: back to a client's
    /// hold, else back on sale.
    fn release_to_hold_or_sale<'a>(&self, reason: &'a str) -> Option<SeatMove<'a>> {
        Some(if self.client_hold {
            SeatMove::BackToHold
        } else {
            SeatMove::Adjust(-self.seats, 0, reason)
        })
    }
}

impl Service {
    /// Opens `n` pooled connections before serving, prepares the booking statements on
    /// each and has PostgreSQL plan them once (`EXPLAIN EXECUTE` with NULL parameters:
    /// planned and initialised, never run, so nothing is written). Otherwise the pool opens
    /// them under the first burst of requests and every new backend starts, loads its
    /// catalog caches and plans the large booking CTEs at the same moment, on the same 2
    /// cores, contending on the lock manager (measured: 13 backends waiting on
    /// `LWLock:LockManager` 50 ms into a cold open-loop run) while requests queue.
    /// Returns how many connections were warmed; a failure only leaves the rest cold.
    pub async fn warm_pool(&self, n: usize) -> usize {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let client = match self.pool.get().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a pooled connection to warm it");
                    break;
                }
            };
            for sql in [HOLD_SQL, ORDER_SQL, CONFIRM_SQL, INSERT_INVENTORY_SQL] {
                let params = match client.prepare_cached(sql).await {
                    Ok(st) => st.params().len(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot prepare a booking statement");
                        break;
                    }
                };
                let nulls = vec!["NULL"; params].join(", ");
                let plan = format!(
                    "PREPARE bookd_warm AS {sql}; EXPLAIN EXECUTE bookd_warm({nulls}); \
                     DEALLOCATE bookd_warm"
                );
                if let Err(e) = client.batch_execute(&plan).await {
                    tracing::warn!(error = %e, "cannot plan a booking statement");
                    // The name must not stay taken if only the EXPLAIN failed (not
                    // `DEALLOCATE ALL`: that would drop the cached statements too).
                    let _ = client.batch_execute("DEALLOCATE bookd_warm").await;
                }
            }
            // Held until all are open, so that the pool opens a new one each time.
            held.push(client);
        }
        held.len()
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A connection for a write transaction (see [`WriteConn`]).
    pub(crate) async fn write_conn(&self) -> Result<WriteConn, ApiError> {
        Ok(WriteConn::new(self.pool.get().await?))
    }

    /// Runs statements of a write transaction (never its COMMIT: see [`Service::commit`]),
    /// waiting at most `commit_timeout` for them. A statement can wait without end on a
    /// node Patroni still calls the leader: on a row lock held by a COMMIT that waits for a
    /// synchronous standby, on a stalled disk. Given up, nothing was committed (no COMMIT
    /// was sent): the connection is closed, which rolls the transaction back.
    pub(crate) async fn bounded<T>(
        &self,
        cut: &Cut,
        work: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.cfg.commit_timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                cut.set();
                self.metrics.statements_timed_out.fetch_add(1, Relaxed);
                tracing::warn!(
                    limit_ms = self.cfg.commit_timeout.as_millis() as u64,
                    "a write transaction's statement did not finish in time; rolled back"
                );
                Err(ApiError::unavailable(
                    "the booking database did not answer in time; retry later",
                ))
            }
        }
    }

    /// COMMITs `tx`, waiting at most `commit_timeout`. A COMMIT on a primary whose
    /// synchronous standbys are all gone waits until one comes back, and cancelling it
    /// would only make it a local commit: so bookd stops waiting instead, and the outcome
    /// is unknown (it may still commit later), exactly as when the connection breaks during
    /// the COMMIT. The connection is closed (`cut`), never reused.
    async fn commit(&self, cut: &Cut, tx: Transaction<'_>) -> Result<(), CommitFailed> {
        // `commit` marks the transaction done before sending COMMIT: dropping this future
        // when the time is up sends no ROLLBACK behind it.
        match tokio::time::timeout(self.cfg.commit_timeout, tx.commit()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if outcome_unknown(&e) => {
                cut.set();
                tracing::warn!(error = %e, "connection lost during COMMIT; settling it");
                Err(CommitFailed::Unknown)
            }
            Ok(Err(e)) => Err(CommitFailed::Failed(e.into())),
            Err(_) => {
                cut.set();
                self.metrics.commits_timed_out.fetch_add(1, Relaxed);
                tracing::warn!(
                    limit_ms = self.cfg.commit_timeout.as_millis() as u64,
                    "COMMIT not answered in time; its outcome is unknown, settling it"
                );
                Err(CommitFailed::Unknown)
            }
        }
    }

    /// Writes the transaction's outbox changes to `outbox_pending` (numbered after
    /// COMMIT by the [`Sequencer`]; no shared lock is taken), commits, and waits until
    /// they are numbered.
    async fn commit_with_outbox(
        &self,
        cut: &Cut,
        tx: Transaction<'_>,
        outbox: &PendingBatch,
    ) -> Result<(), CommitFailed> {
        self.bounded(cut, async { Ok(write_pending(&tx, outbox).await?) })
            .await
            .map_err(CommitFailed::Failed)?;
        let r = self.commit(cut, tx).await;
        if !outbox.is_empty() {
            self.after_commit(r.is_ok()).await;
        }
        r
    }

    /// After a COMMIT that wrote pending outbox rows: waits until they are numbered into
    /// `outbox`; after a lost COMMIT (it may have landed) only wakes the sequencer.
    async fn after_commit(&self, committed: bool) {
        if committed {
            self.sequencer.sequenced(Duration::from_secs(5)).await;
        } else {
            self.sequencer.wake();
        }
    }

    /// Commits a hold's or order's first transaction, whose statement wrote its outbox
    /// changes itself (`seats_taken`: whether it changed inventory).
    async fn commit_taken(
        &self,
        cut: &Cut,
        tx: Transaction<'_>,
        seats_taken: bool,
    ) -> Result<(), CommitFailed> {
        let r = self.commit(cut, tx).await;
        if seats_taken {
            self.after_commit(r.is_ok()).await;
        }
        r
    }

    async fn load_core(&self, order_id: &str) -> Result<Option<OrderCore>, ApiError> {
        let client = self.pool.get().await?;
        let Some(r) = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT o.id, o.api_key_id, o.status, o.saga_step, o.seats, o.price_minor,
                                o.currency, o.failure_code, o.seats_released, o.refund_minor,
                                o.hold_id, NOT h.instant
                         FROM orders o JOIN holds h ON h.id = o.hold_id WHERE o.id = $1",
                    )
                    .await?,
                &[&order_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let legs = client
            .query(&client.prepare_cached("SELECT carrier, flight_number, dep_date::text, origin, destination, booking_class
                 FROM order_segments WHERE order_id = $1 ORDER BY idx").await?,
                &[&order_id],
            )
            .await?
            .iter()
            .map(|s| LegRef {
                carrier: s.get(0),
                flight_number: u16::try_from(s.get::<_, i32>(1)).unwrap_or(0),
                date: s.get(2),
                origin: s.get(3),
                destination: s.get(4),
                booking_class: s.get(5),
            })
            .collect();
        Ok(Some(OrderCore {
            id: r.get(0),
            api_key_id: r.get(1),
            status: r.get(2),
            step: r.get(3),
            seats: r.get(4),
            price_minor: r.get(5),
            currency: r.get(6),
            failure_code: r.get(7),
            seats_released: r.get(8),
            refund_minor: r.get(9),
            hold_id: r.get(10),
            client_hold: r.get(11),
            legs,
        }))
    }

    /// The order as the API shows it (decrypting passenger data).
    pub async fn order_json(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        order_id: &str,
    ) -> Result<Option<Value>, ApiError> {
        let Some(r) = client
            .query_opt(&client.prepare_cached("SELECT id, status, booking_reference, hold_id, offer_id, price_minor, currency,
                        refund_minor, contact_enc, created_ms, updated_ms, saga_step
                 FROM orders WHERE id = $1").await?,
                &[&order_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let currency: String = r.get(6);
        let segs: Vec<Value> = client
            .query(&client.prepare_cached("SELECT carrier, flight_number, dep_date::text, origin, destination, booking_class
                 FROM order_segments WHERE order_id = $1 ORDER BY idx").await?,
                &[&order_id],
            )
            .await?
            .iter()
            .map(|s| {
                json!({
                    "carrier": s.get::<_, String>(0),
                    "flight_number": s.get::<_, i32>(1).to_string(),
                    "departure_date": s.get::<_, String>(2),
                    "origin": s.get::<_, String>(3),
                    "destination": s.get::<_, String>(4),
                    "booking_class": s.get::<_, String>(5),
                })
            })
            .collect();
        let mut pax = Vec::new();
        for p in client
            .query(
                &client
                    .prepare_cached(
                        "SELECT idx, data_enc FROM passengers WHERE order_id = $1 ORDER BY idx",
                    )
                    .await?,
                &[&order_id],
            )
            .await?
        {
            let idx: i16 = p.get(0);
            let blob: Vec<u8> = p.get(1);
            let plain = self
                .key
                .decrypt(&format!("{order_id}/{idx}"), &blob)
                .map_err(|_| ApiError::internal("cannot decrypt passenger data"))?;
            let v: Passenger = serde_json::from_slice(&plain)
                .map_err(|_| ApiError::internal("corrupt passenger data"))?;
            pax.push(json!(v));
        }
        let contact_blob: Vec<u8> = r.get(8);
        let contact: Value = self
            .key
            .decrypt(order_id, &contact_blob)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .unwrap_or(Value::Null);
        let refund: Option<i64> = r.get(7);
        let step: String = r.get(11);
        Ok(Some(json!({
            "id": r.get::<_, String>(0),
            "status": r.get::<_, String>(1),
            "booking_reference": r.get::<_, Option<String>>(2),
            "hold_id": r.get::<_, String>(3),
            "offer_id": r.get::<_, String>(4),
            "price": money(r.get(5), &currency),
            "segments": segs,
            "passengers": pax,
            "contact": contact,
            "refund_amount": refund.map(|m| money(m, &currency)),
            "refund_status": match (refund, step.as_str()) {
                (None, _) => Value::Null,
                (Some(_), "cancelling") => json!("pending"),
                (Some(_), _) => json!("refunded"),
            },
            "created_at": rfc3339_ms(r.get(9)),
            "updated_at": rfc3339_ms(r.get(10)),
        })))
    }

    async fn complete_idem_for_order(
        tx: &Transaction<'_>,
        order_id: &str,
        reply: &Reply,
    ) -> Result<(), ApiError> {
        let body = reply.body.to_string();
        tx.execute(&tx.prepare_cached("UPDATE idempotency_keys SET status = 'done', response_status = $2, response_body = $3
             WHERE order_id = $1 AND status = 'in_progress'").await?,
            &[&order_id, &i32::from(reply.status), &body],
        )
        .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- holds

    pub async fn create_hold(&self, ctx: &Ctx, input: BookingInput) -> Result<Reply, ApiError> {
        let started = Instant::now();
        let now = self.now();
        let mut client = self.write_conn().await?;
        let cut = client.cut();
        let offer = self
            .resolve_offer(&client, &input.offer_id, now, None)
            .await?;
        validate::check_against_offer(&input.passengers, &offer, today(now))?;
        if offer.current != offer.quoted {
            return Err(ApiError::price_changed(&Money::from_minor(
                offer.current.amount_minor,
                &offer.current.currency,
            )));
        }
        let hold_id = new_id("hld");
        let ttl = i64::try_from(self.cfg.hold_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = now.saturating_add(ttl).min(offer.departs_ms);
        let seats = i32::try_from(offer.seats()).unwrap_or(i32::MAX);
        let SealedHold {
            personal,
            enc,
            legs_json,
        } = self.seal_hold(&hold_id, &input.passengers, &input.contact, &offer.legs)?;
        let data = hold_json(&HoldView {
            id: &hold_id,
            status: "held",
            expires_ms: expires,
            offer_id: &offer.offer_id,
            legs: &offer.legs,
            personal: &personal,
            price_minor: offer.current.amount_minor,
            currency: &offer.current.currency,
            order_id: None,
        });
        let mut reply = Reply::data(201, data, &ctx.request_id);

        // One transaction, one commit: claim + seats + hold + audit in one statement, then
        // the outbox rows.
        let cols = LegColumns::new(&offer.legs);
        let (idem_key, idem_hash) = ctx.idem_params();
        let body_text = idem_key.map(|_| reply.body.to_string());
        let actor = actor(ctx.api_key_id);
        let p = offer.passengers;
        let (adults, children, infants) = (
            i16::from(p.adults),
            i16::from(p.children),
            i16::from(p.infants),
        );
        let mut attempts = 0;
        let tx = loop {
            let (decided, taken) = self
                .bounded(&cut, async {
                    let tx = client.transaction().await?;
                    if attempts > 0 {
                        create_inventory_rows(&tx, self.capacity.as_ref(), &offer.legs).await?;
                    }
                    let row = tx
                        .query_one(
                            &tx.prepare_cached(HOLD_SQL).await?,
                            &[
                                &hold_id,
                                &ctx.api_key_id,
                                &offer.offer_id,
                                &seats,
                                &legs_json,
                                &adults,
                                &children,
                                &infants,
                                &offer.current.amount_minor,
                                &offer.current.currency,
                                &offer.refundable,
                                &enc,
                                &now,
                                &expires,
                                &actor,
                                &idem_key,
                                &idem_hash,
                                &body_text,
                                &cols.carriers,
                                &cols.numbers,
                                &cols.dates,
                                &cols.origins,
                                &cols.destinations,
                                &cols.classes,
                            ],
                        )
                        .await?;
                    let taken = Taken::from_row(&row);
                    if idem_key.is_some() && !taken.claimed {
                        return Err(idempotency_claimed());
                    }
                    let complete = taken.idx.len() == offer.legs.len();
                    Ok((complete.then_some(tx), taken))
                })
                .await?;
            if let Some(tx) = decided {
                break tx;
            }
            // Ends its borrow of `client` (it is `None` here).
            drop(decided);
            if taken.missing == 0 || attempts >= 2 {
                self.metrics.seats_unavailable.fetch_add(1, Relaxed);
                return Err(self
                    .sold_out(&client, &input.offer_id, now, &offer.legs, &offer.current)
                    .await);
            }
            // A leg class booked for the first time: create its row, then decide again.
            attempts += 1;
        };
        if let Err(e) = self.commit_taken(&cut, tx, true).await {
            let CommitFailed::Unknown = e else {
                return Err(e.into());
            };
            // Resolve through the database: did the hold commit?
            let locked = [Locked::Legs(&offer.legs)];
            let probe = "SELECT id FROM holds WHERE id = $1";
            if self
                .settle_lost_commit(&locked, probe, &hold_id)
                .await?
                .is_none()
            {
                return Err(ApiError::unavailable(
                    "the database connection was lost before the hold was stored; no hold was made",
                ));
            }
        }
        if idem_key.is_some() {
            // The response was stored with the claim, in the same commit.
            reply.stored = true;
            ctx.claimed.store(true, Relaxed);
        }
        self.metrics.holds_created.fetch_add(1, Relaxed);
        self.metrics
            .hold_latency
            .observe_ms(started.elapsed().as_secs_f64() * 1000.0);
        Ok(reply)
    }

    /// Settles a COMMIT whose outcome is unknown (the connection broke, or
    /// `commit_timeout` passed): the first column of
    /// `probe` (`$1` = `id`, one text column) once the lost transaction has ended, `None`
    /// when it left no such row. An immediate lookup is no proof: the COMMIT may still be
    /// on its way to (or running in) the old backend and land after the lookup. So this
    /// first locks rows that transaction locked (`locked`), which waits until it has
    /// committed or rolled back, and only then reads `probe` (a new snapshot). Retries for
    /// about 10 s while the database is unreachable or the wait times out (a backend cut off
    /// from its client keeps its locks until it notices); then 503: the outcome stays
    /// unknown, so callers must not answer "nothing was kept". 503 at once when the wait is
    /// on a COMMIT waiting for a synchronous standby: the request already waited
    /// `commit_timeout` for that, and only replication can end it.
    async fn settle_lost_commit(
        &self,
        locked: &[Locked<'_>],
        probe: &str,
        id: &str,
    ) -> Result<Option<String>, ApiError> {
        let deadline = Instant::now() + Duration::from_secs(12);
        loop {
            match self.try_settle(locked, probe, id).await {
                Ok(found) => {
                    if found.is_some() {
                        // It committed: its outbox changes (if any) are numbered before
                        // the answer, as after a COMMIT that answered.
                        self.sequencer.sequenced(Duration::from_secs(5)).await;
                    }
                    return Ok(found);
                }
                Err(Unsettled::Replicating) => {
                    tracing::warn!(
                        id,
                        "a lost COMMIT waits for a synchronous standby; its outcome is not \
                         known yet"
                    );
                    return Err(ApiError::unavailable(OUTCOME_NOT_KNOWN_YET));
                }
                Err(Unsettled::Error(e)) if Instant::now() >= deadline => {
                    tracing::warn!(error = %e, "cannot settle a lost commit");
                    return Err(ApiError::unavailable(OUTCOME_NOT_KNOWN_YET));
                }
                Err(Unsettled::Error(_)) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn try_settle(
        &self,
        locked: &[Locked<'_>],
        probe: &str,
        id: &str,
    ) -> Result<Option<String>, Unsettled> {
        let mut client = self.write_conn().await?;
        let cut = client.cut();
        let r = self.try_settle_on(&mut client, locked, probe, id).await;
        if matches!(r, Err(Unsettled::Replicating)) {
            // Its lock wait is still queued on the server (up to `lock_timeout`).
            cut.set();
        }
        r
    }

    async fn try_settle_on(
        &self,
        client: &mut deadpool_postgres::Object,
        locked: &[Locked<'_>],
        probe: &str,
        id: &str,
    ) -> Result<Option<String>, Unsettled> {
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL lock_timeout = '6s'").await?;
        let me: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        for l in locked {
            match l {
                Locked::Hold(h) => {
                    let sql = "SELECT 1 FROM holds WHERE id = $1 FOR SHARE";
                    self.wait_lost(me, tx.query_opt(sql, &[h])).await?;
                }
                Locked::Order(o) => {
                    let sql = "SELECT 1 FROM orders WHERE id = $1 FOR SHARE";
                    self.wait_lost(me, tx.query_opt(sql, &[o])).await?;
                }
                Locked::Legs(legs) => {
                    let mut sorted: Vec<&LegRef> = legs.iter().collect();
                    sorted.sort();
                    for leg in sorted {
                        let fnum = i32::from(leg.flight_number);
                        let cap = i32::try_from(self.capacity.capacity(leg)).unwrap_or(i32::MAX);
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
                            &leg.carrier,
                            &fnum,
                            &leg.date,
                            &leg.origin,
                            &leg.booking_class,
                            &cap,
                        ];
                        // A row inserted by the lost transaction is invisible until it
                        // ends: inserting the same key waits for it. Rolled back below.
                        let insert = tx.execute(
                            "INSERT INTO inventory (carrier, flight_number, dep_date, origin,
                                                    booking_class, capacity)
                             VALUES ($1, $2, $3::text::date, $4, $5, $6) ON CONFLICT DO NOTHING",
                            &params,
                        );
                        self.wait_lost(me, insert).await?;
                        let lock = tx.query_opt(
                            "SELECT 1 FROM inventory
                             WHERE carrier = $1 AND flight_number = $2
                               AND dep_date = $3::text::date AND origin = $4
                               AND booking_class = $5 FOR SHARE",
                            &params[..5],
                        );
                        self.wait_lost(me, lock).await?;
                    }
                }
            }
        }
        let found = tx.query_opt(probe, &[&id]).await?.map(|r| r.get(0));
        tx.rollback().await?;
        Ok(found)
    }

    /// Runs a lock wait of the settling backend `me`. A lost COMMIT may never arrive (a
    /// partition): its backend then sits idle in its transaction, holding the locks, and
    /// could still commit if the COMMIT came later. Every second, a backend that blocks
    /// `me` and has been idle inside a transaction for 3 s is terminated (bookd never
    /// leaves a transaction idle that long), which rolls it back and makes the outcome
    /// certain. A backend still running its COMMIT is left alone (terminating a commit
    /// that waits for synchronous replication would keep it locally); when that COMMIT
    /// waits for a synchronous standby, waiting on is pointless: [`Unsettled::Replicating`].
    async fn wait_lost<T>(
        &self,
        me: i32,
        wait: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Unsettled> {
        tokio::pin!(wait);
        // The first look soon: a request whose COMMIT timed out is waiting for this.
        let mut looks = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_millis(200),
            Duration::from_secs(1),
        );
        loop {
            tokio::select! {
                r = &mut wait => return Ok(r?),
                _ = looks.tick() => {
                    let Ok(c) = self.pool.get().await else { continue };
                    // Every COMMIT of a replicated cluster waits for its standbys a moment:
                    // only one waiting as long as a request may is stuck.
                    let stuck_after = self.cfg.commit_timeout.as_secs_f64();
                    let blockers = c
                        .query(
                            "SELECT pid,
                                    coalesce(wait_event = 'SyncRep'
                                             AND query_start < now() - make_interval(secs => $2),
                                             false),
                                    CASE WHEN state IN ('idle in transaction',
                                                        'idle in transaction (aborted)')
                                          AND state_change < now() - interval '3 seconds'
                                         THEN pg_terminate_backend(pid)
                                         ELSE false END
                             FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids($1))",
                            &[&me, &stuck_after],
                        )
                        .await;
                    let Ok(rows) = blockers else { continue };
                    let mut replicating = false;
                    for r in rows {
                        let pid: i32 = r.get(0);
                        replicating |= r.get::<_, bool>(1);
                        if r.get::<_, bool>(2) {
                            tracing::warn!(pid, "ended a transaction whose COMMIT was lost");
                        }
                    }
                    if replicating {
                        return Err(Unsettled::Replicating);
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- orders

    pub async fn create_order(&self, ctx: &Ctx, input: OrderInput) -> Result<Reply, ApiError> {
        let started = Instant::now();
        if self.pay_breaker.is_open() {
            let mut e = ApiError::new(
                503,
                "payment_unavailable",
                "Payment gateway unavailable",
                "the payment gateway is failing; nothing was charged or kept, retry later",
            );
            e.retry_after = Some(5);
            return Err(e);
        }
        if self.air_breaker.is_open() {
            let mut e = ApiError::new(
                503,
                "airline_unavailable",
                "Airline unavailable",
                "the airline is not confirming bookings; nothing was charged or kept, retry later",
            );
            e.retry_after = Some(5);
            return Err(e);
        }
        let now = self.now();
        let order_id = new_id("ord");
        // Before the order can exist: recovery must never see it undriven while we drive it.
        let _driving = self.live_sagas.own(order_id.clone());
        let mut client = self.write_conn().await?;
        let cut = client.cut();
        // One transaction, one commit: (the hold's row lock,) then claim + seats + hold +
        // order rows + charge + audit in one statement, then the outbox rows.
        let (tx, plan, taken) = match &input.source {
            OrderSource::Hold(hold_id) => {
                self.bounded(&cut, async {
                    let tx = client.transaction().await?;
                    let plan = self.plan_from_hold(&tx, ctx, hold_id, &input, now).await?;
                    let taken = self
                        .order_statement(&tx, ctx, &plan, &order_id, now)
                        .await?;
                    Ok((tx, plan, taken))
                })
                .await?
            }
            OrderSource::Offer(b) => {
                let expected = input.expected_total.as_ref().map(|(amount, cur)| Price {
                    amount_minor: *amount,
                    currency: cur.clone(),
                });
                let offer = self
                    .resolve_offer(&client, &b.offer_id, now, expected.as_ref())
                    .await?;
                let plan = self.plan_instant(b, offer, &input, now)?;
                let mut attempts = 0;
                let (tx, taken) = loop {
                    let (decided, taken) = self
                        .bounded(&cut, async {
                            let tx = client.transaction().await?;
                            if attempts > 0 {
                                create_inventory_rows(&tx, self.capacity.as_ref(), &plan.legs)
                                    .await?;
                            }
                            let taken = self
                                .order_statement(&tx, ctx, &plan, &order_id, now)
                                .await?;
                            let lost_claim = ctx.idempotency_key.is_some() && !taken.claimed;
                            let decided = lost_claim || taken.idx.len() == plan.legs.len();
                            Ok((decided.then_some(tx), taken))
                        })
                        .await?;
                    if let Some(tx) = decided {
                        break (tx, taken);
                    }
                    // Ends its borrow of `client` (it is `None` here).
                    drop(decided);
                    if taken.missing == 0 || attempts >= 2 {
                        self.metrics.seats_unavailable.fetch_add(1, Relaxed);
                        let quoted = Price {
                            amount_minor: plan.price,
                            currency: plan.currency.clone(),
                        };
                        let legs = &plan.legs;
                        return Err(self
                            .sold_out(&client, &b.offer_id, now, legs, &quoted)
                            .await);
                    }
                    // A leg class booked for the first time: create its row, decide again.
                    attempts += 1;
                };
                (tx, plan, taken)
            }
        };
        if ctx.idempotency_key.is_some() && !taken.claimed {
            return Err(idempotency_claimed());
        }
        let seats_taken = !taken.idx.is_empty();
        let OrderPlan {
            hold_id,
            offer_id,
            legs,
            seats,
            price,
            currency,
            personal,
            instant,
            ..
        } = plan;
        if let Err(e) = self.commit_taken(&cut, tx, seats_taken).await {
            let CommitFailed::Unknown = e else {
                return Err(e.into());
            };
            let locked = [Locked::Hold(&hold_id), Locked::Legs(&legs)];
            let probe = "SELECT id FROM orders WHERE id = $1";
            if self
                .settle_lost_commit(&locked, probe, &order_id)
                .await?
                .is_none()
            {
                return Err(ApiError::order_not_created(
                    "the database connection was lost before the order was stored; nothing was kept",
                ));
            }
        }
        drop(client);
        if ctx.idempotency_key.is_some() {
            ctx.claimed.store(true, Relaxed);
        }
        failpoint("seats_held");
        // The saga goes on from what this request knows (no reads): the order as the API
        // shows it (the same shape as `order_json`) and its core.
        let view = json!({
            "id": order_id,
            "status": "pending",
            "booking_reference": Value::Null,
            "hold_id": hold_id,
            "offer_id": offer_id,
            "price": money(price, &currency),
            "segments": legs.iter().map(|l| json!({
                "carrier": l.carrier,
                "flight_number": l.flight_number.to_string(),
                "departure_date": l.date,
                "origin": l.origin,
                "destination": l.destination,
                "booking_class": l.booking_class,
            })).collect::<Vec<_>>(),
            "passengers": personal.passengers,
            "contact": personal.contact,
            "refund_amount": Value::Null,
            "refund_status": Value::Null,
            "created_at": rfc3339_ms(now),
            "updated_at": rfc3339_ms(now),
        });
        let core = OrderCore {
            id: order_id.clone(),
            api_key_id: ctx.api_key_id,
            status: "pending".into(),
            step: "seats_held".into(),
            seats,
            price_minor: price,
            currency,
            failure_code: None,
            seats_released: false,
            refund_minor: None,
            hold_id: hold_id.clone(),
            client_hold: !instant,
            legs,
        };
        let reply = self
            .drive_saga(
                &order_id,
                Some(&input.token),
                &ctx.request_id,
                Some(Live { core, view }),
            )
            .await?;
        self.metrics
            .order_latency
            .observe_ms(started.elapsed().as_secs_f64() * 1000.0);
        Ok(reply)
    }

    /// An order from a hold: locks the hold row (`FOR UPDATE`, first statement of `tx`) and
    /// checks it can be ordered.
    async fn plan_from_hold(
        &self,
        tx: &Transaction<'_>,
        ctx: &Ctx,
        hold_id: &str,
        input: &OrderInput,
        now: i64,
    ) -> Result<OrderPlan, ApiError> {
        let Some(h) = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT status, expires_ms, offer_id, legs, seats, price_minor, currency,
                            refundable, passengers_enc
                     FROM holds WHERE id = $1 AND api_key_id = $2 FOR UPDATE",
                )
                .await?,
                &[&hold_id, &ctx.api_key_id],
            )
            .await?
        else {
            return Err(ApiError::not_found("no such hold").with_parameter("hold_id"));
        };
        let status: String = h.get(0);
        let expires: i64 = h.get(1);
        if status == "ordered" {
            return Err(ApiError::new(
                409,
                "hold_already_ordered",
                "Hold already ordered",
                "an order was already made from this hold",
            )
            .with_parameter("hold_id"));
        }
        if status == "released" {
            return Err(ApiError::offer_expired(
                "the hold was released and its seats went back on sale",
            )
            .with_parameter("hold_id"));
        }
        if status != "held" || expires <= now {
            return Err(ApiError::offer_expired(
                "the hold has expired and its seats were released",
            )
            .with_parameter("hold_id"));
        }
        let legs: Vec<LegRef> = serde_json::from_str(&h.get::<_, String>(3))
            .map_err(|_| ApiError::internal("corrupt hold"))?;
        let personal = self.hold_personal(hold_id, &h.get::<_, Vec<u8>>(8))?;
        let price: i64 = h.get(5);
        let currency: String = h.get(6);
        if let Some((exp, cur)) = &input.expected_total {
            if *exp != price || *cur != currency {
                return Err(ApiError::price_changed(&Money::from_minor(
                    price, &currency,
                )));
            }
        }
        Ok(OrderPlan {
            hold_id: hold_id.to_string(),
            offer_id: h.get(2),
            legs,
            seats: h.get(4),
            price,
            currency,
            refundable: h.get(7),
            personal,
            instant: false,
            hold_legs_json: String::new(),
            pax: [0; 3],
            hold_enc: Vec::new(),
        })
    }

    /// Resolves an offer for booking. Priced first against the snapshot's seats; when that
    /// price is not the one the client expects (`expected`, else the offer's quote), again
    /// against bookd's inventory for the offer's legs: searchd prices with bookd's live
    /// seats, so a class sold out since the snapshot gives way to the next one there, and
    /// bookd must see the same price or the client could never book it.
    /// `client` is the request's own connection (a second one per request could exhaust
    /// the pool under load and deadlock it).
    async fn resolve_offer(
        &self,
        client: &deadpool_postgres::Client,
        offer_id: &str,
        now: i64,
        expected: Option<&Price>,
    ) -> Result<ResolvedOffer, ApiError> {
        let offer = self.resolver.resolve(offer_id, now)?;
        if offer.current == *expected.unwrap_or(&offer.quoted) {
            return Ok(offer);
        }
        let live = self.live_seats(client, &offer.legs).await?;
        self.resolver.resolve_live(offer_id, now, &live)
    }

    /// The answer when the offer's classes lack seats on `legs`: `409 price_changed` with
    /// the price the itinerary has now in other classes, if it is not `price` (what searchd
    /// shows), else `409 seats_unavailable`.
    async fn sold_out(
        &self,
        client: &deadpool_postgres::Client,
        offer_id: &str,
        now: i64,
        legs: &[LegRef],
        price: &Price,
    ) -> ApiError {
        let unavailable =
            || ApiError::seats_unavailable("not enough seats left in the offer's booking class");
        let Ok(live) = self.live_seats(client, legs).await else {
            return unavailable();
        };
        match self.resolver.resolve_live(offer_id, now, &live) {
            Ok(now_offer) if now_offer.current != *price => ApiError::price_changed(
                &Money::from_minor(now_offer.current.amount_minor, &now_offer.current.currency),
            ),
            _ => unavailable(),
        }
    }

    /// Seats remaining in every booking class bookd has inventory for on these legs.
    async fn live_seats(
        &self,
        client: &deadpool_postgres::Client,
        legs: &[LegRef],
    ) -> Result<Vec<(LegKey, u16)>, ApiError> {
        debug_assert!(
            legs.len() <= 64,
            "an offer has at most 2 slices of 3 segments"
        );
        let cols = LegColumns::new(legs);
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT i.carrier, i.flight_number, i.dep_date - DATE '1970-01-01',
                                i.origin, i.booking_class, i.capacity - i.sold - i.held
                         FROM unnest($1::text[], $2::int[], $3::text[], $4::text[])
                              AS l(carrier, flight_number, dep_date, origin)
                         JOIN inventory i
                           ON i.carrier = l.carrier AND i.flight_number = l.flight_number
                          AND i.dep_date = l.dep_date::date AND i.origin = l.origin",
                    )
                    .await?,
                &[&cols.carriers, &cols.numbers, &cols.dates, &cols.origins],
            )
            .await?;
        Ok(rows.iter().filter_map(inventory_seats).collect())
    }

    /// What a new hold stores besides its figures: the passengers and contact encrypted
    /// under the hold's id, and its legs as JSON.
    fn seal_hold(
        &self,
        hold_id: &str,
        passengers: &[Passenger],
        contact: &Contact,
        legs: &[LegRef],
    ) -> Result<SealedHold, ApiError> {
        let personal = Personal {
            passengers: passengers.to_vec(),
            contact: contact.clone(),
        };
        let plain = serde_json::to_vec(&personal)
            .map_err(|_| ApiError::internal("cannot encode passengers"))?;
        let enc = self
            .key
            .encrypt(hold_id, &plain)
            .map_err(|_| ApiError::internal("cannot encrypt passengers"))?;
        let legs_json =
            serde_json::to_string(legs).map_err(|_| ApiError::internal("cannot encode legs"))?;
        Ok(SealedHold {
            personal,
            enc,
            legs_json,
        })
    }

    /// An instant order: checks the resolved offer (no database work).
    fn plan_instant(
        &self,
        b: &BookingInput,
        offer: ResolvedOffer,
        input: &OrderInput,
        now: i64,
    ) -> Result<OrderPlan, ApiError> {
        validate::check_against_offer(&b.passengers, &offer, today(now))?;
        let cur = &offer.current;
        let changed = match &input.expected_total {
            Some((exp, c)) => *exp != cur.amount_minor || *c != cur.currency,
            None => offer.current != offer.quoted,
        };
        if changed {
            return Err(ApiError::price_changed(&Money::from_minor(
                cur.amount_minor,
                &cur.currency,
            )));
        }
        let seats = i32::try_from(offer.seats()).unwrap_or(i32::MAX);
        let hold_id = new_id("hld");
        let SealedHold {
            personal,
            enc: hold_enc,
            legs_json: hold_legs_json,
        } = self.seal_hold(&hold_id, &b.passengers, &b.contact, &offer.legs)?;
        let p: PaxCounts = offer.passengers;
        Ok(OrderPlan {
            hold_id,
            offer_id: offer.offer_id.clone(),
            seats,
            price: cur.amount_minor,
            currency: cur.currency.clone(),
            refundable: offer.refundable,
            legs: offer.legs,
            personal,
            instant: true,
            hold_legs_json,
            pax: [
                i16::from(p.adults),
                i16::from(p.children),
                i16::from(p.infants),
            ],
            hold_enc,
        })
    }

    /// Runs an order's deciding statement ([`ORDER_SQL`]) in `tx`.
    async fn order_statement(
        &self,
        tx: &Transaction<'_>,
        ctx: &Ctx,
        plan: &OrderPlan,
        order_id: &str,
        now: i64,
    ) -> Result<Taken, ApiError> {
        let contact_plain = serde_json::to_vec(&plan.personal.contact)
            .map_err(|_| ApiError::internal("cannot encode contact"))?;
        let contact_enc = self
            .key
            .encrypt(order_id, &contact_plain)
            .map_err(|_| ApiError::internal("cannot encrypt"))?;
        let mut pax_types = Vec::with_capacity(plan.personal.passengers.len());
        let mut pax_data = Vec::with_capacity(plan.personal.passengers.len());
        for (i, p) in plan.personal.passengers.iter().enumerate() {
            let plain =
                serde_json::to_vec(p).map_err(|_| ApiError::internal("cannot encode passenger"))?;
            let enc = self
                .key
                .encrypt(&format!("{order_id}/{i}"), &plain)
                .map_err(|_| ApiError::internal("cannot encrypt"))?;
            pax_types.push(p.ptype.as_str());
            pax_data.push(enc);
        }
        let cols = LegColumns::new(&plan.legs);
        let (idem_key, idem_hash) = ctx.idem_params();
        let actor = actor(ctx.api_key_id);
        let charge_key = format!("chg_{order_id}");
        let row = tx
            .query_one(
                &tx.prepare_cached(ORDER_SQL).await?,
                &[
                    &order_id,
                    &ctx.api_key_id,
                    &plan.hold_id,
                    &plan.offer_id,
                    &plan.seats,
                    &plan.price,
                    &plan.currency,
                    &plan.refundable,
                    &contact_enc,
                    &now,
                    &actor,
                    &idem_key,
                    &idem_hash,
                    &plan.instant,
                    &plan.hold_legs_json,
                    &plan.pax[0],
                    &plan.pax[1],
                    &plan.pax[2],
                    &plan.hold_enc,
                    &cols.carriers,
                    &cols.numbers,
                    &cols.dates,
                    &cols.origins,
                    &cols.destinations,
                    &cols.classes,
                    &pax_types,
                    &pax_data,
                    &charge_key,
                ],
            )
            .await?;
        Ok(Taken::from_row(&row))
    }

    /// The live path after a successful charge: confirm with the airline at once and
    /// record charge + confirmation in one statement ([`CONFIRM_SQL`]). `None` when the
    /// saga must go on from the database (the airline failed: compensation started; or
    /// another driver moved the order first).
    async fn confirm_live(
        &self,
        o: &OrderCore,
        mut view: Value,
        rid: &str,
    ) -> Result<Option<Reply>, ApiError> {
        let air_key = format!("air_{}", o.id);
        let pax = u32::try_from(o.seats).unwrap_or(0);
        let res = call(&self.air_breaker, &self.cfg.airline_policy, true, || {
            self.airline.confirm(&air_key, &o.legs, pax)
        })
        .await;
        let locator = match res {
            Ok(l) => l,
            Err(_) => {
                // Charged but not confirmed: release the seats and refund, as from
                // `payment_charged` (the refund runs in the next round).
                self.transition(
                    o,
                    "seats_held",
                    "compensating",
                    "pending",
                    ", failure_code = 'order_not_created', seats_released = true",
                    Some(SeatMove::Adjust(-o.seats, 0, "airline_failed")),
                    Some(("charge", "succeeded")),
                    None,
                    None,
                )
                .await?;
                return Ok(None);
            }
        };
        failpoint("airline_confirmed_unrecorded");
        let now = self.now();
        view["status"] = json!("confirmed");
        view["booking_reference"] = json!(locator);
        view["updated_at"] = json!(rfc3339_ms(now));
        let r = Reply::data(201, view, rid);
        let body = r.body.to_string();
        let cols = LegColumns::new(&o.legs);
        let n_legs = o.legs.len() as i64;
        let booking_ref = sql_safe(&locator);
        let actions = ["order.payment_charged", "order.confirmed"];
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
            &o.id,
            &now,
            &booking_ref,
            &o.seats,
            &body,
            &cols.carriers,
            &cols.numbers,
            &cols.dates,
            &cols.origins,
            &cols.classes,
            &n_legs,
            &actions.as_slice(),
        ];
        let mut client = self.write_conn().await?;
        let cut = client.cut();
        let (tx, moved) = self
            .bounded(&cut, async {
                let tx = client.transaction().await?;
                let row = tx
                    .query_one(&tx.prepare_cached(CONFIRM_SQL).await?, &params)
                    .await?;
                Ok((tx, row.get::<_, i64>(0) > 0))
            })
            .await?;
        if !moved {
            return Ok(None);
        }
        if let Err(e) = self.commit(&cut, tx).await {
            let CommitFailed::Unknown = e else {
                return Err(e.into());
            };
            // Settle it like `transition` does: did the step move?
            drop(client);
            let probe = "SELECT saga_step FROM orders WHERE id = $1";
            let step = self
                .settle_lost_commit(&[Locked::Order(&o.id)], probe, &o.id)
                .await?;
            if step.as_deref() != Some("confirmed") {
                return Ok(None);
            }
        }
        failpoint("confirmed");
        self.metrics.orders_confirmed.fetch_add(1, Relaxed);
        Ok(Some(Reply { stored: true, ..r }))
    }

    /// Moves `order` from step `from` to `to` (with extra column updates and inventory
    /// changes) in one transaction; `false` when another driver moved it first.
    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &self,
        o: &OrderCore,
        from: &str,
        to: &str,
        status: &str,
        set_sql: &str,
        inventory: Option<SeatMove<'_>>,
        payment: Option<(&str, &str)>,
        reply: Option<&Reply>,
        booking_ref: Option<&str>,
    ) -> Result<bool, ApiError> {
        let now = self.now();
        let mut client = self.write_conn().await?;
        let cut = client.cut();
        let mut outbox = PendingBatch::new();
        let tx = self.bounded(&cut, async {
            let tx = client.transaction().await?;
            let sql = format!(
                "UPDATE orders SET saga_step = $3, status = $4, updated_ms = $5,
                        booking_reference = COALESCE($6::text, booking_reference) {set_sql}
                 WHERE id = $1 AND saga_step = $2"
            );
            // `set_sql` is one of a few fixed strings, so the statement cache stays small.
            let n = tx
                .execute(
                    &tx.prepare_cached(&sql).await?,
                    &[&o.id, &from, &to, &status, &now, &booking_ref],
                )
                .await?;
            if n == 0 {
                return Ok(None);
            }
            match inventory {
                Some(SeatMove::Adjust(dh, ds, reason)) => {
                    adjust(
                        &tx,
                        self.capacity.as_ref(),
                        &o.legs,
                        dh,
                        ds,
                        reason,
                        &mut outbox,
                    )
                    .await?;
                }
                Some(SeatMove::BackToHold) => {
                    // The inventory keeps them held: they change owner, not state. An expired
                    // hold is released by the next sweep.
                    let n = tx
                        .execute(
                            &tx.prepare_cached(
                                "UPDATE holds SET status = 'held' WHERE id = $1 AND status = 'ordered'",
                            )
                            .await?,
                            &[&o.hold_id],
                        )
                        .await?;
                    if n != 1 {
                        return Err(ApiError::internal(
                            "the order's hold is not in state ordered",
                        ));
                    }
                }
                None => {}
            }
            if let Some((kind, pstatus)) = payment {
                tx.execute(&tx.prepare_cached("UPDATE payments SET status = $3, updated_ms = $4 WHERE order_id = $1 AND kind = $2").await?,
                    &[&o.id, &kind, &pstatus, &now],
                )
                .await?;
            }
            audit(&tx, "saga", &format!("order.{to}"), &o.id).await?;
            if let Some(r) = reply {
                Self::complete_idem_for_order(&tx, &o.id, r).await?;
            }
            Ok(Some(tx))
        }).await?;
        // Another driver moved it first.
        let Some(tx) = tx else {
            return Ok(false);
        };
        match self.commit_with_outbox(&cut, tx, &outbox).await {
            Ok(()) => Ok(true),
            Err(CommitFailed::Unknown) => {
                // Settle it: did the step move?
                let probe = "SELECT saga_step FROM orders WHERE id = $1";
                let step = self
                    .settle_lost_commit(&[Locked::Order(&o.id)], probe, &o.id)
                    .await?;
                Ok(step.as_deref() == Some(to))
            }
            Err(CommitFailed::Failed(e)) => Err(e),
        }
    }

    async fn order_reply(&self, order_id: &str, status: u16, rid: &str) -> Result<Reply, ApiError> {
        let client = self.pool.get().await?;
        let data = self
            .order_json(&client, order_id)
            .await?
            .ok_or_else(|| ApiError::internal("order vanished"))?;
        Ok(Reply::data(status, data, rid))
    }

    /// Drives an order's saga to a final state and returns the response for it.
    /// `token` is given on the live path; recovery (no token) never charges anew, it only
    /// learns through the gateway's idempotency key whether the charge happened.
    pub async fn run_saga(
        &self,
        order_id: &str,
        token: Option<&str>,
        rid: &str,
    ) -> Result<Reply, ApiError> {
        self.drive_saga(order_id, token, rid, None).await
    }

    /// [`Service::run_saga`]; `live` (the request that just wrote the order) starts from
    /// its in-memory state, and while it lasts a successful charge goes straight on to the
    /// airline and one confirming statement ([`Service::confirm_live`]) instead of
    /// recording `payment_charged` first. Recovery does not need that step recorded: from
    /// `seats_held` it asks the gateway by the charge's idempotency key.
    async fn drive_saga(
        &self,
        order_id: &str,
        token: Option<&str>,
        rid: &str,
        mut live: Option<Live>,
    ) -> Result<Reply, ApiError> {
        for _ in 0..16 {
            let (o, view) = match live.take() {
                Some(l) => (l.core, Some(l.view)),
                None => (
                    self.load_core(order_id)
                        .await?
                        .ok_or_else(|| ApiError::internal("order vanished"))?,
                    None,
                ),
            };
            let charge_key = format!("chg_{}", o.id);
            match o.step.as_str() {
                "seats_held" => {
                    let outcome = match token {
                        Some(t) => {
                            call(&self.pay_breaker, &self.cfg.payment_policy, true, || {
                                self.gateway.charge(ChargeRequest {
                                    idempotency_key: &charge_key,
                                    amount_minor: o.price_minor,
                                    currency: &o.currency,
                                    token: t,
                                })
                            })
                            .await
                        }
                        None => Err(ExtError::Unavailable("recovery".into())),
                    };
                    let charged =
                        match outcome {
                            Ok(_) => Some(true),
                            Err(ExtError::Declined(_)) => {
                                let r = self.final_failure_reply("payment_declined", rid);
                                if self
                                .transition(
                                    &o,
                                    "seats_held",
                                    "compensated",
                                    "failed",
                                    ", failure_code = 'payment_declined', seats_released = true",
                                    o.release_to_hold_or_sale("payment_declined"),
                                    Some(("charge", "declined")),
                                    Some(&r), None)
                                .await?
                            {
                                self.metrics.orders_failed.fetch_add(1, Relaxed);
                                return Ok(Reply { stored: true, ..r });
                            }
                                continue;
                            }
                            Err(ExtError::CircuitOpen) if token.is_some() => Some(false),
                            Err(_) => {
                                // Unknown whether the card was charged: ask by the key.
                                match probe(&self.pay_breaker, &self.cfg.payment_policy, || {
                                    self.gateway.lookup(&charge_key)
                                })
                                .await
                                {
                                    Ok(found) => Some(found.is_some()),
                                    Err(_) => None,
                                }
                            }
                        };
                    match charged {
                        Some(true) => {
                            failpoint("payment_charged_unrecorded");
                            if let Some(view) = view {
                                match self.confirm_live(&o, view, rid).await? {
                                    Some(reply) => return Ok(reply),
                                    None => continue,
                                }
                            }
                            self.transition(
                                &o,
                                "seats_held",
                                "payment_charged",
                                "pending",
                                "",
                                None,
                                Some(("charge", "succeeded")),
                                None,
                                None,
                            )
                            .await?;
                            failpoint("payment_recorded");
                        }
                        Some(false) => {
                            let r = self.final_failure_reply("order_not_created", rid);
                            if self
                                .transition(
                                    &o,
                                    "seats_held",
                                    "compensated",
                                    "failed",
                                    ", failure_code = 'order_not_created', seats_released = true",
                                    o.release_to_hold_or_sale("payment_failed"),
                                    Some(("charge", "not_charged")),
                                    Some(&r),
                                    None,
                                )
                                .await?
                            {
                                self.metrics.orders_failed.fetch_add(1, Relaxed);
                                return Ok(Reply { stored: true, ..r });
                            }
                        }
                        None => {
                            self.transition(
                                &o,
                                "seats_held",
                                "compensating",
                                "pending",
                                ", failure_code = 'order_not_created', seats_released = true",
                                Some(SeatMove::Adjust(-o.seats, 0, "payment_unknown")),
                                None,
                                None,
                                None,
                            )
                            .await?;
                        }
                    }
                }
                "payment_charged" => {
                    let air_key = format!("air_{}", o.id);
                    let pax = u32::try_from(o.seats).unwrap_or(0);
                    let res = call(&self.air_breaker, &self.cfg.airline_policy, true, || {
                        self.airline.confirm(&air_key, &o.legs, pax)
                    })
                    .await;
                    match res {
                        Ok(locator) => {
                            failpoint("airline_confirmed_unrecorded");
                            let client = self.pool.get().await?;
                            let mut data = self
                                .order_json(&client, &o.id)
                                .await?
                                .ok_or_else(|| ApiError::internal("order vanished"))?;
                            drop(client);
                            data["status"] = json!("confirmed");
                            data["booking_reference"] = json!(locator);
                            let r = Reply::data(201, data, rid);
                            if self
                                .transition(
                                    &o,
                                    "payment_charged",
                                    "confirmed",
                                    "confirmed",
                                    "",
                                    Some(SeatMove::Adjust(-o.seats, o.seats, "order_confirmed")),
                                    None,
                                    Some(&r),
                                    Some(&sql_safe(&locator)),
                                )
                                .await?
                            {
                                failpoint("confirmed");
                                self.metrics.orders_confirmed.fetch_add(1, Relaxed);
                                return Ok(Reply { stored: true, ..r });
                            }
                        }
                        Err(_) => {
                            self.transition(
                                &o,
                                "payment_charged",
                                "compensating",
                                "pending",
                                ", failure_code = 'order_not_created', seats_released = true",
                                Some(SeatMove::Adjust(-o.seats, 0, "airline_failed")),
                                None,
                                None,
                                None,
                            )
                            .await?;
                        }
                    }
                }
                "compensating" => {
                    let air_key = format!("air_{}", o.id);
                    let _ = call(&self.air_breaker, &self.cfg.airline_policy, true, || {
                        self.airline.cancel(&air_key)
                    })
                    .await;
                    let refund_key = format!("ref_{}", o.id);
                    let refund = call(&self.pay_breaker, &self.cfg.payment_policy, true, || {
                        self.gateway
                            .refund(&refund_key, &charge_key, o.price_minor, &o.currency)
                    })
                    .await;
                    let code = o
                        .failure_code
                        .clone()
                        .unwrap_or_else(|| "order_not_created".into());
                    let r = self.final_failure_reply(&code, rid);
                    match refund {
                        Ok(refunded) => {
                            let now = self.now();
                            if refunded.is_some() {
                                // Idempotent: an unknown outcome is written again next round.
                                let c = self.write_conn().await?;
                                self.bounded(&c.cut(), async {
                                    c.execute(&c.prepare_cached("INSERT INTO payments (order_id, kind, idempotency_key, amount_minor,
                                                               currency, status, created_ms, updated_ms)
                                         VALUES ($1, 'refund', $2, $3, $4, 'succeeded', $5, $5)
                                         ON CONFLICT (order_id, kind) DO NOTHING").await?,
                                        &[&o.id, &refund_key, &o.price_minor, &o.currency, &now],
                                    )
                                    .await?;
                                    Ok(())
                                }).await?;
                            }
                            let pay_status = if refunded.is_some() {
                                "succeeded"
                            } else {
                                "not_charged"
                            };
                            let release = if o.seats_released {
                                None
                            } else {
                                Some(SeatMove::Adjust(-o.seats, 0, "compensated"))
                            };
                            if self
                                .transition(
                                    &o,
                                    "compensating",
                                    "compensated",
                                    "failed",
                                    ", seats_released = true",
                                    release,
                                    Some(("charge", pay_status)),
                                    Some(&r),
                                    None,
                                )
                                .await?
                            {
                                self.metrics.orders_failed.fetch_add(1, Relaxed);
                                return Ok(Reply { stored: true, ..r });
                            }
                        }
                        Err(_) => {
                            // The refund is retried by the background recovery; the order
                            // will not be kept either way.
                            return Ok(r);
                        }
                    }
                }
                "cancelling" => {
                    if let Some(amount) = o.refund_minor.filter(|a| *a > 0) {
                        let refund_key = format!("ref_{}", o.id);
                        let res = call(&self.pay_breaker, &self.cfg.payment_policy, true, || {
                            self.gateway
                                .refund(&refund_key, &charge_key, amount, &o.currency)
                        })
                        .await;
                        if res.is_err() {
                            return self.order_reply(&o.id, 200, rid).await;
                        }
                    }
                    self.transition(
                        &o,
                        "cancelling",
                        "cancelled",
                        "cancelled",
                        "",
                        None,
                        Some(("refund", "succeeded")),
                        None,
                        None,
                    )
                    .await?;
                }
                "confirmed" | "cancelled" => {
                    let status = if o.step == "confirmed" { 201 } else { 200 };
                    return self.order_reply(&o.id, status, rid).await;
                }
                _ => {
                    let code = o
                        .failure_code
                        .clone()
                        .unwrap_or_else(|| "order_not_created".into());
                    let _ = o.status;
                    let _ = o.api_key_id;
                    return Ok(self.final_failure_reply(&code, rid));
                }
            }
        }
        Err(ApiError::internal("the saga did not settle"))
    }

    fn final_failure_reply(&self, code: &str, rid: &str) -> Reply {
        Reply::error(&failure_error(code), rid)
    }

    // ---------------------------------------------------------------- reads

    pub async fn get_order(&self, ctx: &Ctx, order_id: &str) -> Result<Reply, ApiError> {
        let client = self.pool.get().await?;
        let owner = client
            .query_opt(&client.prepare_cached("SELECT 1 FROM orders WHERE id = $1 AND api_key_id = $2 AND status <> 'failed'").await?,
                &[&order_id, &ctx.api_key_id],
            )
            .await?;
        if owner.is_none() {
            return Err(ApiError::not_found("no such order"));
        }
        let data = self
            .order_json(&client, order_id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such order"))?;
        Ok(Reply::data(200, data, &ctx.request_id))
    }

    pub async fn list_orders(
        &self,
        ctx: &Ctx,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Reply, ApiError> {
        let client = self.pool.get().await?;
        let after_seq: i64 = match after {
            None => 0,
            Some(a) => client
                .query_opt(
                    &client
                        .prepare_cached("SELECT seq FROM orders WHERE id = $1 AND api_key_id = $2")
                        .await?,
                    &[&a, &ctx.api_key_id],
                )
                .await?
                .map(|r| r.get(0))
                .ok_or_else(|| ApiError::bad("after", "not a cursor from a previous page"))?,
        };
        let rows = client
            .query(&client.prepare_cached("SELECT id FROM orders WHERE api_key_id = $1 AND seq > $2 AND status <> 'failed'
                 ORDER BY seq LIMIT $3").await?,
                &[&ctx.api_key_id, &after_seq, &(limit + 1)],
            )
            .await?;
        let more = rows.len() as i64 > limit;
        let mut items = Vec::new();
        for r in rows.iter().take(limit as usize) {
            let id: String = r.get(0);
            if let Some(v) = self.order_json(&client, &id).await? {
                items.push(v);
            }
        }
        let next = if more {
            items
                .last()
                .and_then(|v| v["id"].as_str())
                .map(str::to_string)
        } else {
            None
        };
        Ok(Reply {
            status: 200,
            body: json!({
                "data": items,
                "meta": { "request_id": ctx.request_id, "limit": limit, "after": next },
            }),
            stored: false,
        })
    }

    // ---------------------------------------------------------------- cancel

    pub async fn cancel_order(&self, ctx: &Ctx, order_id: &str) -> Result<Reply, ApiError> {
        let now = self.now();
        let mut client = self.write_conn().await?;
        let cut = client.cut();
        let mut outbox = PendingBatch::new();
        // In a block: the transaction's borrow of `client` ends with it.
        let committed = {
            let tx = self.bounded(&cut, async {
                let tx = client.transaction().await?;
                let Some(r) = tx
                    .query_opt(
                        &tx.prepare_cached(
                            "SELECT status, refundable, price_minor, currency FROM orders
                         WHERE id = $1 AND api_key_id = $2 AND status <> 'failed' FOR UPDATE",
                        )
                        .await?,
                        &[&order_id, &ctx.api_key_id],
                    )
                    .await?
                else {
                    return Err(ApiError::not_found("no such order"));
                };
                let status: String = r.get(0);
                if status == "cancelled" {
                    return Ok(None);
                }
                if status != "confirmed" {
                    return Err(ApiError::new(
                        409,
                        "order_not_cancellable",
                        "Order not cancellable",
                        format!("an order in status {status} cannot be cancelled"),
                    ));
                }
                let refundable: bool = r.get(1);
                let price: i64 = r.get(2);
                let currency: String = r.get(3);
                let legs = self
                    .load_core(order_id)
                    .await?
                    .map(|o| (o.legs, o.seats))
                    .ok_or_else(|| ApiError::internal("order vanished"))?;
                // A flown order is not refunded, and its seats cannot go back on sale.
                if legs.0.iter().any(|l| self.departed(l, now)) {
                    return Err(ApiError::new(
                        409,
                        "order_not_cancellable",
                        "Order not cancellable",
                        "the order's first flight has departed",
                    ));
                }
                let refund = if refundable { price } else { 0 };
                tx.execute(&tx.prepare_cached("UPDATE orders SET status = 'cancelled', saga_step = 'cancelling', refund_minor = $2,
                                       updated_ms = $3 WHERE id = $1").await?,
                    &[&order_id, &refund, &now],
                )
                .await?;
                adjust(
                    &tx,
                    self.capacity.as_ref(),
                    &legs.0,
                    0,
                    -legs.1,
                    "order_cancelled",
                    &mut outbox,
                )
                .await?;
                tx.execute(&tx.prepare_cached("INSERT INTO payments (order_id, kind, idempotency_key, amount_minor, currency, status,
                                           created_ms, updated_ms)
                     VALUES ($1, 'refund', $2, $3, $4, 'pending', $5, $5)").await?,
                    &[
                        &order_id,
                        &format!("ref_{order_id}"),
                        &refund,
                        &currency,
                        &now,
                    ],
                )
                .await?;
                audit(&tx, &actor(ctx.api_key_id), "order.cancel", order_id).await?;
                Ok(Some(tx))
            }).await?;
            match tx {
                Some(tx) => Some(self.commit_with_outbox(&cut, tx, &outbox).await),
                None => None,
            }
        };
        let Some(committed) = committed else {
            // Cancelled before: answered as it is.
            return self.order_reply(order_id, 200, &ctx.request_id).await;
        };
        if let Err(e) = committed {
            let CommitFailed::Unknown = e else {
                return Err(e.into());
            };
            let probe = "SELECT status FROM orders WHERE id = $1";
            let st = self
                .settle_lost_commit(&[Locked::Order(order_id)], probe, order_id)
                .await?;
            if st.as_deref() != Some("cancelled") {
                return Err(ApiError::unavailable(
                    "the database connection was lost; the order was not cancelled",
                ));
            }
        }
        drop(client);
        self.metrics.orders_cancelled.fetch_add(1, Relaxed);
        let mut reply = self.run_saga(order_id, None, &ctx.request_id).await?;
        reply.status = 200;
        Ok(reply)
    }

    /// Whether `leg` has departed by `now`: by the snapshot in service, or, for a leg it
    /// no longer has, once its local departure date is over in every time zone.
    fn departed(&self, leg: &LegRef, now: i64) -> bool {
        let departs = self.capacity.departs_ms(leg).or_else(|| {
            validate::parse_date(&leg.date)
                .map(|d| (i64::from(d) + 1) * 86_400_000 + 12 * 3_600_000)
        });
        departs.is_some_and(|d| d <= now)
    }

    // ---------------------------------------------------------------- holds

    /// A hold's passengers and contact, stored encrypted with the hold id as associated data.
    fn hold_personal(&self, hold_id: &str, blob: &[u8]) -> Result<Personal, ApiError> {
        self.key
            .decrypt(hold_id, blob)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(|| ApiError::internal("cannot decrypt the hold"))
    }

    /// `GET /v1/holds/{id}`.
    pub async fn get_hold(&self, ctx: &Ctx, hold_id: &str) -> Result<Reply, ApiError> {
        let client = self.pool.get().await?;
        let data = self.hold_data(&client, ctx.api_key_id, hold_id).await?;
        Ok(Reply::data(200, data, &ctx.request_id))
    }

    /// The hold as the API shows it; 404 when this key has no such hold.
    async fn hold_data(
        &self,
        client: &deadpool_postgres::Client,
        api_key_id: i64,
        hold_id: &str,
    ) -> Result<Value, ApiError> {
        let Some(h) = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT h.status, h.expires_ms, h.offer_id, h.legs, h.price_minor,
                                h.currency, h.passengers_enc,
                                (SELECT o.id FROM orders o WHERE o.hold_id = h.id
                                 ORDER BY o.status = 'failed', o.seq DESC LIMIT 1)
                         FROM holds h WHERE h.id = $1 AND h.api_key_id = $2",
                    )
                    .await?,
                &[&hold_id, &api_key_id],
            )
            .await?
        else {
            return Err(ApiError::not_found("no such hold"));
        };
        let stored: String = h.get(0);
        let expires_ms: i64 = h.get(1);
        // Past its expiry a hold is expired, even before the sweep releases its seats.
        let status = if stored == "held" && expires_ms <= self.now() {
            "expired"
        } else {
            stored.as_str()
        };
        let legs: Vec<LegRef> = serde_json::from_str(&h.get::<_, String>(3))
            .map_err(|_| ApiError::internal("corrupt hold"))?;
        let personal = self.hold_personal(hold_id, &h.get::<_, Vec<u8>>(6))?;
        let offer_id: String = h.get(2);
        let currency: String = h.get(5);
        let order_id: Option<String> = h.get(7);
        Ok(hold_json(&HoldView {
            id: hold_id,
            status,
            expires_ms,
            offer_id: &offer_id,
            legs: &legs,
            personal: &personal,
            price_minor: h.get(4),
            currency: &currency,
            order_id: order_id.as_deref(),
        }))
    }

    /// `POST /v1/holds/{id}/cancel`: the client gives a hold up and its seats go back on
    /// sale at once (else they would stay held until it expires). A hold already released
    /// or expired answers its state; one that was ordered is 409 (cancel the order).
    pub async fn release_hold(&self, ctx: &Ctx, hold_id: &str) -> Result<Reply, ApiError> {
        let now = self.now();
        let mut client = self.write_conn().await?;
        let cut = client.cut();
        let (tx, h) = self
            .bounded(&cut, async {
                let tx = client.transaction().await?;
                let h = tx
                    .query_opt(
                        &tx.prepare_cached(
                            "SELECT status, expires_ms, legs, seats FROM holds
                             WHERE id = $1 AND api_key_id = $2 FOR UPDATE",
                        )
                        .await?,
                        &[&hold_id, &ctx.api_key_id],
                    )
                    .await?;
                Ok((tx, h))
            })
            .await?;
        let Some(h) = h else {
            return Err(ApiError::not_found("no such hold"));
        };
        let status: String = h.get(0);
        match status.as_str() {
            "held" => {
                let legs: Vec<LegRef> = serde_json::from_str(&h.get::<_, String>(2))
                    .map_err(|_| ApiError::internal("corrupt hold"))?;
                let seats: i32 = h.get(3);
                // Past its expiry it is released as the sweep would do it.
                let (to, reason, action) = if h.get::<_, i64>(1) <= now {
                    ("expired", "hold_expired", "hold.expire")
                } else {
                    ("released", "hold_released", "hold.release")
                };
                let mut outbox = PendingBatch::new();
                self.bounded(&cut, async {
                    adjust(
                        &tx,
                        self.capacity.as_ref(),
                        &legs,
                        -seats,
                        0,
                        reason,
                        &mut outbox,
                    )
                    .await?;
                    tx.execute(
                        &tx.prepare_cached("UPDATE holds SET status = $2 WHERE id = $1")
                            .await?,
                        &[&hold_id, &to],
                    )
                    .await?;
                    audit(&tx, &actor(ctx.api_key_id), action, hold_id).await
                })
                .await?;
                if let Err(e) = self.commit_with_outbox(&cut, tx, &outbox).await {
                    let CommitFailed::Unknown = e else {
                        return Err(e.into());
                    };
                    let probe = "SELECT status FROM holds WHERE id = $1";
                    let st = self
                        .settle_lost_commit(&[Locked::Hold(hold_id)], probe, hold_id)
                        .await?;
                    if st.as_deref() != Some(to) {
                        return Err(ApiError::unavailable(
                            "the database connection was lost; the hold was not released",
                        ));
                    }
                }
                let counter = if to == "released" {
                    &self.metrics.holds_released
                } else {
                    &self.metrics.holds_expired
                };
                counter.fetch_add(1, Relaxed);
            }
            "ordered" => {
                return Err(ApiError::new(
                    409,
                    "hold_already_ordered",
                    "Hold already ordered",
                    "an order was made from this hold: cancel the order instead",
                ))
            }
            _ => drop(tx),
        }
        drop(client);
        let client = self.pool.get().await?;
        let data = self.hold_data(&client, ctx.api_key_id, hold_id).await?;
        Ok(Reply::data(200, data, &ctx.request_id))
    }

    // ---------------------------------------------------------------- background

    /// Releases holds past their expiry; returns how many.
    pub async fn sweep_expired(&self) -> Result<u64, ApiError> {
        let now = self.now();
        let mut client = self.write_conn().await?;
        let cut = client.cut();
        let mut outbox = PendingBatch::new();
        let (tx, rows) = self
            .bounded(&cut, async {
                let tx = client.transaction().await?;
                let rows = tx
            .query(
                &tx.prepare_cached(
                    "SELECT id, legs, seats FROM holds WHERE status = 'held' AND expires_ms <= $1
                 ORDER BY expires_ms LIMIT 200 FOR UPDATE SKIP LOCKED",
                )
                .await?,
                &[&now],
            )
            .await?;
                for r in &rows {
                    let id: String = r.get(0);
                    let legs: Vec<LegRef> = serde_json::from_str(&r.get::<_, String>(1))
                        .map_err(|_| ApiError::internal("corrupt hold"))?;
                    let seats: i32 = r.get(2);
                    adjust(
                        &tx,
                        self.capacity.as_ref(),
                        &legs,
                        -seats,
                        0,
                        "hold_expired",
                        &mut outbox,
                    )
                    .await?;
                    tx.execute(
                        &tx.prepare_cached("UPDATE holds SET status = 'expired' WHERE id = $1")
                            .await?,
                        &[&id],
                    )
                    .await?;
                    audit(&tx, "system", "hold.expire", &id).await?;
                }
                Ok((tx, rows))
            })
            .await?;
        // A COMMIT whose outcome is unknown needs no settling here: the holds it expired
        // are no longer `held` if it landed, and the next sweep takes them if not.
        self.commit_with_outbox(&cut, tx, &outbox).await?;
        self.metrics
            .holds_expired
            .fetch_add(rows.len() as u64, Relaxed);
        Ok(rows.len() as u64)
    }

    /// Finishes or compensates every saga left in flight. At start-up (`all`) every
    /// non-final order; later those unchanged for a while that no request of this process
    /// drives: compensations and refunds whose dependency was down, cancellations, and
    /// orders whose request gave up (the database went away under it). At most 1,000 per
    /// round; the rest are stale by the next round and taken then.
    pub async fn recover(&self, all: bool) -> Result<u64, ApiError> {
        let client = self.pool.get().await?;
        let stale = self.now() - 5_000;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT id FROM orders
                 WHERE saga_step NOT IN ('confirmed', 'compensated', 'cancelled')
                   AND ($1 OR updated_ms < $2)
                 ORDER BY seq LIMIT 1000",
                    )
                    .await?,
                &[&all, &stale],
            )
            .await?;
        drop(client);
        let mut n = 0;
        for r in rows {
            let id: String = r.get(0);
            if !all && self.live_sagas.contains(&id) {
                continue;
            }
            let rid = new_id("rec");
            match self.run_saga(&id, None, &rid).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(order = %id, error = %e, "recovery did not settle"),
            }
        }
        // Cancellations' claims (the only in-progress claims without an order) whose request
        // is gone: at start every one (requests that crashed before storing anything); later
        // those unchanged for a while that no request of this process runs, such as one
        // whose COMMIT was given up (`--commit-timeout-ms`) and landed afterwards. A retry
        // then runs the cancellation again, which is idempotent (a cancelled order or a
        // released hold answers as it is).
        let c = self.pool.get().await?;
        let claims = c
            .query(
                &c.prepare_cached(
                    "SELECT api_key_id, key, created_ms FROM idempotency_keys
                     WHERE status = 'in_progress' AND order_id IS NULL AND ($1 OR created_ms < $2)
                     LIMIT 1000",
                )
                .await?,
                &[&all, &stale],
            )
            .await?;
        let forget = c
            .prepare_cached(
                "DELETE FROM idempotency_keys
                 WHERE api_key_id = $1 AND key = $2 AND status = 'in_progress'
                   AND order_id IS NULL AND created_ms = $3",
            )
            .await?;
        for r in claims {
            let (key_id, key, created): (i64, String, i64) = (r.get(0), r.get(1), r.get(2));
            if !all && self.live_claims.contains(&(key_id, key.clone())) {
                continue;
            }
            if c.execute(&forget, &[&key_id, &key, &created]).await? == 1 {
                self.metrics.claims_recovered.fetch_add(1, Relaxed);
            }
        }
        self.metrics.sagas_recovered.fetch_add(n, Relaxed);
        Ok(n)
    }
}

/// Booking references come from the airline adapter; keep only safe characters before
/// they are stored.
fn sql_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect()
}

/// Test-only crash injection: when the environment variable `BOOKD_FAILPOINT` names this
/// step, the process aborts here (as a crash or `kill -9` would), so tests can check that
/// recovery on restart finishes or compensates the saga.
fn failpoint(step: &str) {
    if let Ok(v) = std::env::var("BOOKD_FAILPOINT") {
        if v == step {
            eprintln!("{{\"level\":\"ERROR\",\"message\":\"failpoint {step}: aborting\"}}");
            std::process::abort();
        }
    }
}
