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

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Pool, Transaction};
use serde_json::{json, Value};

use crate::api::{ApiError, Money};
use crate::crypto::DataKey;
use crate::external::{
    call, probe, Airline, Breaker, ChargeRequest, ExtError, PaymentGateway, RetryPolicy,
};
use crate::metrics::Metrics;
use crate::offers::{CapacitySource, LegRef, OfferResolver, PaxCounts};
use crate::outbox_feed::{self, OutboxBatch, SeqSignal};
use crate::util::{failpoint, new_id, rfc3339_ms, Clock};
use crate::validate::{self, BookingInput, Contact, OrderInput, OrderSource, Passenger};

#[derive(Debug, Clone)]
pub struct Config {
    pub hold_ttl: Duration,
    pub sweep_interval: Duration,
    pub payment_policy: RetryPolicy,
    pub airline_policy: RetryPolicy,
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
}

/// Who is calling, for one request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub api_key_id: i64,
    pub request_id: String,
    /// The `Idempotency-Key` claimed for this request, if any.
    pub idempotency_key: Option<String>,
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
    outbox: &mut OutboxBatch,
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

struct OrderCore {
    id: String,
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

impl Service {
    /// Holds `seats` on every leg of an offer inside `tx`, or answers 409 `seats_unavailable`
    /// (the caller's transaction then rolls back when it is dropped).
    async fn hold_seats(
        &self,
        tx: &Transaction<'_>,
        legs: &[LegRef],
        seats: i32,
        reason: &str,
        outbox: &mut OutboxBatch,
    ) -> Result<(), ApiError> {
        if adjust(tx, self.capacity.as_ref(), legs, seats, 0, reason, outbox).await? {
            return Ok(());
        }
        self.metrics.seats_unavailable.fetch_add(1, Relaxed);
        Err(ApiError::seats_unavailable(
            "not enough seats left in the offer's booking class",
        ))
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Writes the transaction's outbox changes (their seqs allocated under the
    /// `outbox_head` row lock, held until COMMIT, so outbox seqs commit in order), commits,
    /// and advances the invalidation feed's watermark.
    async fn commit_with_outbox(
        &self,
        tx: Transaction<'_>,
        outbox: &OutboxBatch,
    ) -> Result<(), tokio_postgres::Error> {
        let seq = outbox_feed::write_batch(&tx, outbox).await?;
        tx.commit().await?;
        if let Some(seq) = seq {
            self.outbox_seq.advance(seq);
        }
        Ok(())
    }

    async fn load_core(&self, order_id: &str) -> Result<Option<OrderCore>, ApiError> {
        let client = self.pool.get().await?;
        let Some(r) = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT id, api_key_id, status, saga_step, seats, price_minor, currency,
                        failure_code, seats_released, refund_minor
                 FROM orders WHERE id = $1",
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
        let offer = self.resolver.resolve(&input.offer_id, now)?;
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
        let personal = serde_json::to_vec(&Personal {
            passengers: input.passengers.clone(),
            contact: input.contact.clone(),
        })
        .map_err(|_| ApiError::internal("cannot encode passengers"))?;
        let enc = self
            .key
            .encrypt(&hold_id, &personal)
            .map_err(|_| ApiError::internal("cannot encrypt passengers"))?;
        let legs_json = serde_json::to_string(&offer.legs)
            .map_err(|_| ApiError::internal("cannot encode legs"))?;
        let price = money(offer.current.amount_minor, &offer.current.currency);
        let data = json!({
            "id": hold_id,
            "status": "held",
            "expires_at": rfc3339_ms(expires),
            "price": price,
            "order": {
                "id": Value::Null,
                "offer_id": offer.offer_id,
                "segments": offer.legs.iter().map(|l| json!({
                    "carrier": l.carrier, "flight_number": l.flight_number.to_string(),
                    "departure_date": l.date, "origin": l.origin, "destination": l.destination,
                    "booking_class": l.booking_class,
                })).collect::<Vec<_>>(),
                "passengers": input.passengers,
                "contact": input.contact,
                "price": price,
            },
        });
        let mut reply = Reply::data(201, data, &ctx.request_id);

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut outbox = OutboxBatch::new();
        self.hold_seats(&tx, &offer.legs, seats, "hold", &mut outbox)
            .await?;
        let p = offer.passengers;
        tx.execute(&tx.prepare_cached("INSERT INTO holds (id, api_key_id, offer_id, status, seats, legs, adults, children,
                                infants, price_minor, currency, refundable, passengers_enc,
                                created_ms, expires_ms)
             VALUES ($1, $2, $3, 'held', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)").await?,
            &[
                &hold_id,
                &ctx.api_key_id,
                &offer.offer_id,
                &seats,
                &legs_json,
                &i16::from(p.adults),
                &i16::from(p.children),
                &i16::from(p.infants),
                &offer.current.amount_minor,
                &offer.current.currency,
                &offer.refundable,
                &enc,
                &now,
                &expires,
            ],
        )
        .await?;
        audit(&tx, &actor(ctx.api_key_id), "hold.create", &hold_id).await?;
        if let Some(k) = &ctx.idempotency_key {
            tx.execute(&tx.prepare_cached("UPDATE idempotency_keys SET status = 'done', response_status = 201, response_body = $3
                 WHERE api_key_id = $1 AND key = $2").await?,
                &[&ctx.api_key_id, k, &reply.body.to_string()],
            )
            .await?;
            reply.stored = true;
        }
        if let Err(e) = self.commit_with_outbox(tx, &outbox).await {
            if !outcome_unknown(&e) {
                return Err(e.into());
            }
            // Resolve through the database: did the hold commit?
            if !self
                .exists("SELECT 1 FROM holds WHERE id = $1", &hold_id)
                .await?
            {
                return Err(ApiError::unavailable(
                    "the database connection was lost; no hold was made",
                ));
            }
        }
        self.metrics.holds_created.fetch_add(1, Relaxed);
        self.metrics
            .hold_latency
            .observe_ms(started.elapsed().as_secs_f64() * 1000.0);
        Ok(reply)
    }

    /// Asks (retrying for a few seconds) whether a row exists, to settle an unknown commit.
    async fn exists(&self, sql: &str, id: &str) -> Result<bool, ApiError> {
        let mut last = None;
        for _ in 0..20 {
            match self.pool.get().await {
                Ok(c) => {
                    match async { c.query_opt(&c.prepare_cached(sql).await?, &[&id]).await }.await {
                        Ok(r) => return Ok(r.is_some()),
                        Err(e) => last = Some(ApiError::from(e)),
                    }
                }
                Err(e) => last = Some(ApiError::from(e)),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(last.unwrap_or_else(|| ApiError::unavailable("database unavailable")))
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
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut outbox = OutboxBatch::new();
        let (hold_id, offer_id, legs, seats, price, currency, refundable, personal) = match &input
            .source
        {
            OrderSource::Hold(hold_id) => {
                let Some(h) = tx
                    .query_opt(&tx.prepare_cached("SELECT status, expires_ms, offer_id, legs, seats, price_minor, currency,
                                    refundable, passengers_enc
                             FROM holds WHERE id = $1 AND api_key_id = $2 FOR UPDATE").await?,
                        &[hold_id, &ctx.api_key_id],
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
                if status != "held" || expires <= now {
                    return Err(ApiError::offer_expired(
                        "the hold has expired and its seats were released",
                    )
                    .with_parameter("hold_id"));
                }
                let legs: Vec<LegRef> = serde_json::from_str(&h.get::<_, String>(3))
                    .map_err(|_| ApiError::internal("corrupt hold"))?;
                let blob: Vec<u8> = h.get(8);
                let personal: Personal = self
                    .key
                    .decrypt(hold_id, &blob)
                    .ok()
                    .and_then(|p| serde_json::from_slice(&p).ok())
                    .ok_or_else(|| ApiError::internal("cannot decrypt the hold"))?;
                let price: i64 = h.get(5);
                let currency: String = h.get(6);
                if let Some((exp, cur)) = &input.expected_total {
                    if *exp != price || *cur != currency {
                        return Err(ApiError::price_changed(&Money::from_minor(
                            price, &currency,
                        )));
                    }
                }
                tx.execute(
                    &tx.prepare_cached("UPDATE holds SET status = 'ordered' WHERE id = $1")
                        .await?,
                    &[hold_id],
                )
                .await?;
                (
                    hold_id.clone(),
                    h.get::<_, String>(2),
                    legs,
                    h.get::<_, i32>(4),
                    price,
                    currency,
                    h.get::<_, bool>(7),
                    personal,
                )
            }
            OrderSource::Offer(b) => {
                let offer = self.resolver.resolve(&b.offer_id, now)?;
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
                self.hold_seats(&tx, &offer.legs, seats, "order", &mut outbox)
                    .await?;
                let hold_id = new_id("hld");
                let personal = Personal {
                    passengers: b.passengers.clone(),
                    contact: b.contact.clone(),
                };
                let plain = serde_json::to_vec(&personal)
                    .map_err(|_| ApiError::internal("cannot encode passengers"))?;
                let enc = self
                    .key
                    .encrypt(&hold_id, &plain)
                    .map_err(|_| ApiError::internal("cannot encrypt"))?;
                let legs_json = serde_json::to_string(&offer.legs)
                    .map_err(|_| ApiError::internal("cannot encode legs"))?;
                let p: PaxCounts = offer.passengers;
                tx.execute(&tx.prepare_cached("INSERT INTO holds (id, api_key_id, offer_id, status, seats, legs, adults,
                                children, infants, price_minor, currency, refundable,
                                passengers_enc, created_ms, expires_ms)
                         VALUES ($1, $2, $3, 'ordered', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)").await?,
                        &[
                            &hold_id,
                            &ctx.api_key_id,
                            &offer.offer_id,
                            &seats,
                            &legs_json,
                            &i16::from(p.adults),
                            &i16::from(p.children),
                            &i16::from(p.infants),
                            &cur.amount_minor,
                            &cur.currency,
                            &offer.refundable,
                            &enc,
                            &now,
                        ],
                    )
                    .await?;
                (
                    hold_id,
                    offer.offer_id.clone(),
                    offer.legs.clone(),
                    seats,
                    cur.amount_minor,
                    cur.currency.clone(),
                    offer.refundable,
                    personal,
                )
            }
        };
        let contact_plain = serde_json::to_vec(&personal.contact)
            .map_err(|_| ApiError::internal("cannot encode contact"))?;
        let contact_enc = self
            .key
            .encrypt(&order_id, &contact_plain)
            .map_err(|_| ApiError::internal("cannot encrypt"))?;
        tx.execute(&tx.prepare_cached("INSERT INTO orders (id, api_key_id, hold_id, offer_id, status, saga_step, seats,
                                 price_minor, currency, refundable, contact_enc, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, 'pending', 'seats_held', $5, $6, $7, $8, $9, $10, $10)").await?,
            &[
                &order_id,
                &ctx.api_key_id,
                &hold_id,
                &offer_id,
                &seats,
                &price,
                &currency,
                &refundable,
                &contact_enc,
                &now,
            ],
        )
        .await?;
        for (i, l) in legs.iter().enumerate() {
            tx.execute(&tx.prepare_cached("INSERT INTO order_segments (order_id, idx, carrier, flight_number, dep_date, origin,
                                             destination, booking_class)
                 VALUES ($1, $2, $3, $4, $5::text::date, $6, $7, $8)").await?,
                &[
                    &order_id,
                    &(i as i16),
                    &l.carrier,
                    &i32::from(l.flight_number),
                    &l.date,
                    &l.origin,
                    &l.destination,
                    &l.booking_class,
                ],
            )
            .await?;
        }
        for (i, p) in personal.passengers.iter().enumerate() {
            let plain =
                serde_json::to_vec(p).map_err(|_| ApiError::internal("cannot encode passenger"))?;
            let enc = self
                .key
                .encrypt(&format!("{order_id}/{i}"), &plain)
                .map_err(|_| ApiError::internal("cannot encrypt"))?;
            tx.execute(&tx.prepare_cached("INSERT INTO passengers (order_id, idx, passenger_type, data_enc) VALUES ($1, $2, $3, $4)").await?,
                &[&order_id, &(i as i16), &p.ptype.as_str(), &enc],
            )
            .await?;
        }
        tx.execute(&tx.prepare_cached("INSERT INTO payments (order_id, kind, idempotency_key, amount_minor, currency, status,
                                   created_ms, updated_ms)
             VALUES ($1, 'charge', $2, $3, $4, 'pending', $5, $5)").await?,
            &[
                &order_id,
                &format!("chg_{order_id}"),
                &price,
                &currency,
                &now,
            ],
        )
        .await?;
        audit(&tx, &actor(ctx.api_key_id), "order.create", &order_id).await?;
        if let Some(k) = &ctx.idempotency_key {
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE idempotency_keys SET order_id = $3 WHERE api_key_id = $1 AND key = $2",
                )
                .await?,
                &[&ctx.api_key_id, k, &order_id],
            )
            .await?;
        }
        if let Err(e) = self.commit_with_outbox(tx, &outbox).await {
            if !outcome_unknown(&e) {
                return Err(e.into());
            }
            if !self
                .exists("SELECT 1 FROM orders WHERE id = $1", &order_id)
                .await?
            {
                return Err(ApiError::order_not_created(
                    "the database connection was lost before the order was stored; nothing was kept",
                ));
            }
        }
        drop(client);
        failpoint("seats_held");
        let reply = self
            .run_saga(&order_id, Some(&input.token), &ctx.request_id)
            .await?;
        self.metrics
            .order_latency
            .observe_ms(started.elapsed().as_secs_f64() * 1000.0);
        Ok(reply)
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
        inventory: Option<(i32, i32, &str)>,
        payment: Option<(&str, &str)>,
        reply: Option<&Reply>,
        booking_ref: Option<&str>,
    ) -> Result<bool, ApiError> {
        let now = self.now();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut outbox = OutboxBatch::new();
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
            return Ok(false);
        }
        if let Some((dh, ds, reason)) = inventory {
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
        match self.commit_with_outbox(tx, &outbox).await {
            Ok(()) => Ok(true),
            Err(e) if outcome_unknown(&e) => {
                // Settle it: did the step move?
                let c = self.pool.get().await?;
                let r = c
                    .query_opt(
                        &c.prepare_cached("SELECT saga_step FROM orders WHERE id = $1")
                            .await?,
                        &[&o.id],
                    )
                    .await?;
                Ok(r.is_some_and(|r| r.get::<_, String>(0) == to))
            }
            Err(e) => Err(e.into()),
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
        for _ in 0..16 {
            let o = self
                .load_core(order_id)
                .await?
                .ok_or_else(|| ApiError::internal("order vanished"))?;
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
                                    Some((-o.seats, 0, "payment_declined")),
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
                                    Some((-o.seats, 0, "payment_failed")),
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
                                Some((-o.seats, 0, "payment_unknown")),
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
                                    Some((-o.seats, o.seats, "order_confirmed")),
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
                                Some((-o.seats, 0, "airline_failed")),
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
                                let c = self.pool.get().await?;
                                c.execute(&c.prepare_cached("INSERT INTO payments (order_id, kind, idempotency_key, amount_minor,
                                                           currency, status, created_ms, updated_ms)
                                     VALUES ($1, 'refund', $2, $3, $4, 'succeeded', $5, $5)
                                     ON CONFLICT (order_id, kind) DO NOTHING").await?,
                                    &[&o.id, &refund_key, &o.price_minor, &o.currency, &now],
                                )
                                .await?;
                            }
                            let pay_status = if refunded.is_some() {
                                "succeeded"
                            } else {
                                "not_charged"
                            };
                            let release = if o.seats_released {
                                None
                            } else {
                                Some((-o.seats, 0, "compensated"))
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
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut outbox = OutboxBatch::new();
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
            drop(tx);
            return self.order_reply(order_id, 200, &ctx.request_id).await;
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
        let refund = if refundable { price } else { 0 };
        tx.execute(&tx.prepare_cached("UPDATE orders SET status = 'cancelled', saga_step = 'cancelling', refund_minor = $2,
                               updated_ms = $3 WHERE id = $1").await?,
            &[&order_id, &refund, &now],
        )
        .await?;
        let legs = self
            .load_core(order_id)
            .await?
            .map(|o| (o.legs, o.seats))
            .ok_or_else(|| ApiError::internal("order vanished"))?;
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
        if let Err(e) = self.commit_with_outbox(tx, &outbox).await {
            if !outcome_unknown(&e) {
                return Err(e.into());
            }
            let c = self.pool.get().await?;
            let st = c
                .query_opt(
                    &c.prepare_cached("SELECT status FROM orders WHERE id = $1")
                        .await?,
                    &[&order_id],
                )
                .await?;
            if st.is_none_or(|r| r.get::<_, String>(0) != "cancelled") {
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

    // ---------------------------------------------------------------- background

    /// Releases holds past their expiry; returns how many.
    pub async fn sweep_expired(&self) -> Result<u64, ApiError> {
        let now = self.now();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut outbox = OutboxBatch::new();
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
        self.commit_with_outbox(tx, &outbox).await?;
        self.metrics
            .holds_expired
            .fetch_add(rows.len() as u64, Relaxed);
        Ok(rows.len() as u64)
    }

    /// Finishes or compensates every saga left in flight. At start-up (`all`) every
    /// non-final order; later only those stuck for a while (compensations and refunds
    /// whose dependency was down).
    pub async fn recover(&self, all: bool) -> Result<u64, ApiError> {
        let client = self.pool.get().await?;
        let stale = self.now() - 5_000;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT id FROM orders
                 WHERE saga_step NOT IN ('confirmed', 'compensated', 'cancelled')
                   AND ($1 OR (updated_ms < $2 AND saga_step IN ('compensating', 'cancelling')))
                 ORDER BY seq",
                    )
                    .await?,
                &[&all, &stale],
            )
            .await?;
        drop(client);
        let mut n = 0;
        for r in rows {
            let id: String = r.get(0);
            let rid = new_id("rec");
            match self.run_saga(&id, None, &rid).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(order = %id, error = %e, "recovery did not settle"),
            }
        }
        if all {
            // Requests that crashed before storing anything: let their retries run again.
            let c = self.pool.get().await?;
            c.execute(&c.prepare_cached("DELETE FROM idempotency_keys WHERE status = 'in_progress' AND order_id IS NULL").await?,
                &[],
            )
            .await?;
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
