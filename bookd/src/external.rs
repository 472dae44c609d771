//! The payment gateway and the airline: traits, simulated implementations, and the
//! resilience around every call (timeout, retries with exponential backoff and full jitter
//! for idempotent calls only, a circuit breaker per dependency).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::ids::{hex, random_unit, sha256};
use crate::offers::LegRef;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtError {
    /// A business refusal (card declined): final, not a failure of the dependency.
    Declined(String),
    /// The dependency failed (5xx, connection error).
    Unavailable(String),
    /// No answer in time.
    Timeout,
    /// The circuit breaker is open: the call was not made (no attempt of it went out).
    CircuitOpen,
}

impl ExtError {
    fn counts_as_failure(&self) -> bool {
        matches!(self, ExtError::Unavailable(_) | ExtError::Timeout)
    }
}

pub struct ChargeRequest<'a> {
    pub idempotency_key: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub token: &'a str,
}

pub trait PaymentGateway: Send + Sync {
    /// Charges once per idempotency key (a retry returns the first charge's reference).
    fn charge<'a>(&'a self, req: ChargeRequest<'a>) -> BoxFuture<'a, Result<String, ExtError>>;
    /// The reference of the charge made with this key, if any. `None` is final: a charge
    /// with this key still on its way (an attempt that timed out) is cancelled and can no
    /// longer land (as a gateway's cancel-by-reference of a payment whose outcome is
    /// unknown does); a later `charge` with the key is declined.
    fn lookup<'a>(
        &'a self,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ExtError>>;
    /// Refunds the charge made with `charge_key` (idempotent per `idempotency_key`); no
    /// charge = nothing to refund (`Ok(None)`), and then none can land later (as in
    /// [`PaymentGateway::lookup`]).
    fn refund<'a>(
        &'a self,
        idempotency_key: &'a str,
        charge_key: &'a str,
        amount_minor: i64,
        currency: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ExtError>>;
}

pub trait Airline: Send + Sync {
    /// Confirms the booking once per idempotency key; returns the booking reference.
    fn confirm<'a>(
        &'a self,
        idempotency_key: &'a str,
        legs: &'a [LegRef],
        passengers: u32,
    ) -> BoxFuture<'a, Result<String, ExtError>>;
    /// Cancels the booking made with this key (idempotent). With no booking yet, one still
    /// on its way (an attempt that timed out) lands cancelled, and a later `confirm` with
    /// the key fails.
    fn cancel<'a>(&'a self, idempotency_key: &'a str) -> BoxFuture<'a, Result<(), ExtError>>;
}

/// Knobs of the simulated dependencies.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimConfig {
    /// Probability in [0, 1] that a call fails with a 5xx.
    pub failure_rate: f64,
    /// Added latency per call.
    pub latency: Duration,
}

impl SimConfig {
    async fn before_call(&self) -> Result<(), ExtError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.failure_rate > 0.0 && random_unit() < self.failure_rate {
            return Err(ExtError::Unavailable("simulated failure".into()));
        }
        Ok(())
    }
}

fn reference(prefix: &str, key: &str) -> String {
    format!("{prefix}_{}", &hex(&sha256(key.as_bytes()))[..16])
}

/// The simulated card gateway. Test tokens: `tok_ok` (and any other `tok_...`) charges,
/// `tok_decline` is declined, `tok_error` fails with a gateway error, `tok_slow` never
/// answers. Its ledger (table `sim_gateway_ledger`) stands for the gateway's own state;
/// charges are written through `ledger` (group commit, see [`SimLedger`]).
pub struct SimGateway {
    pub pool: Pool,
    pub config: SimConfig,
    pub ledger: Arc<SimLedger>,
}

/// One row for a simulated dependency's ledger.
#[derive(Debug, Clone)]
enum LedgerRow {
    Charge {
        key: String,
        amount_minor: i64,
        currency: String,
        reference: String,
    },
    Booking {
        key: String,
        locator: String,
    },
}

impl LedgerRow {
    fn key(&self) -> &str {
        match self {
            LedgerRow::Charge { key, .. } | LedgerRow::Booking { key, .. } => key,
        }
    }
}

struct LedgerOp {
    row: LedgerRow,
    done: oneshot::Sender<Result<(), LedgerFail>>,
}

/// Why a ledger row was not kept.
#[derive(Debug, Clone)]
enum LedgerFail {
    Storage(String),
    /// The key was cancelled (a charge voided, a booking cancelled) before this row came.
    Cancelled,
}

/// Most rows one ledger commit carries (bounds the statement's arrays).
const LEDGER_BATCH: usize = 512;
/// Most calls waiting for the ledger writer (back pressure beyond it).
const LEDGER_QUEUE: usize = 4096;

/// The simulated dependencies' durable writes (charges, airline bookings), with group
/// commit: one writer task takes every row queued while the previous commit was running
/// and writes them all in one statement (one commit), then answers each caller. A call is
/// still answered only after its row is durable, as a remote system's would be; what it
/// saves is a commit (a WAL flush) per call on the database bookd shares with these
/// stand-ins, so the simulation does not cost bookd's own transactions their CPU.
pub struct SimLedger {
    queue: mpsc::Sender<LedgerOp>,
}

impl SimLedger {
    /// Starts the writer task (on the current tokio runtime); it ends when the last
    /// `SimLedger` handle is dropped.
    pub fn start(pool: Pool) -> Arc<SimLedger> {
        let (tx, rx) = mpsc::channel(LEDGER_QUEUE);
        tokio::spawn(ledger_writer(pool, rx));
        Arc::new(SimLedger { queue: tx })
    }

    async fn write(&self, row: LedgerRow) -> Result<(), ExtError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(LedgerOp { row, done })
            .await
            .map_err(|_| db_err("the ledger writer stopped"))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(LedgerFail::Storage(e))) => Err(db_err(e)),
            Ok(Err(LedgerFail::Cancelled)) => Err(ExtError::Declined(
                "cancelled by its idempotency key before it was made".into(),
            )),
            Err(_) => Err(db_err("the ledger writer stopped")),
        }
    }
}

async fn ledger_writer(pool: Pool, mut rx: mpsc::Receiver<LedgerOp>) {
    let mut ops: Vec<LedgerOp> = Vec::with_capacity(LEDGER_BATCH);
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        ops.push(first);
        while ops.len() < LEDGER_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let rows: Vec<&LedgerRow> = ops.iter().map(|o| &o.row).collect();
        let result = write_ledger_rows(&pool, &rows).await;
        for op in ops.drain(..) {
            let answer = match &result {
                Ok(cancelled) if cancelled.contains(op.row.key()) => Err(LedgerFail::Cancelled),
                Ok(_) => Ok(()),
                Err(e) => Err(LedgerFail::Storage(e.clone())),
            };
            // A caller that timed out has gone; its retry writes the same key again.
            let _ = op.done.send(answer);
        }
    }
}

/// Writes a batch in one statement (so one commit); a key already written keeps its first
/// row (`ON CONFLICT DO NOTHING`, as the one-row writes did). Returns the batch's keys that
/// were cancelled before their row came (a void charge row, a cancelled booking), read by a
/// second statement: it sees whatever row won each key, even one committed by another
/// session while the insert ran.
async fn write_ledger_rows(
    pool: &Pool,
    rows: &[&LedgerRow],
) -> Result<std::collections::HashSet<String>, String> {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let (mut ck, mut ca, mut cc, mut cr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut bk, mut bl) = (Vec::new(), Vec::new());
    for r in rows {
        if !seen.insert(r.key()) {
            continue; // the same key twice in one INSERT: keep the first
        }
        match r {
            LedgerRow::Charge {
                key,
                amount_minor,
                currency,
                reference,
            } => {
                ck.push(key.as_str());
                ca.push(*amount_minor);
                cc.push(currency.as_str());
                cr.push(reference.as_str());
            }
            LedgerRow::Booking { key, locator } => {
                bk.push(key.as_str());
                bl.push(locator.as_str());
            }
        }
    }
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let st = client
        .prepare_cached(
            "WITH g AS (
                 INSERT INTO sim_gateway_ledger (idempotency_key, kind, amount_minor, currency,
                                                 reference)
                 SELECT k, 'charge', a, c, r
                 FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[]) AS t(k, a, c, r)
                 ON CONFLICT (idempotency_key) DO NOTHING
             ),
             b AS (
                 INSERT INTO sim_airline_bookings (idempotency_key, locator)
                 SELECT k, l FROM unnest($5::text[], $6::text[]) AS t(k, l)
                 ON CONFLICT (idempotency_key) DO NOTHING
             )
             SELECT 1",
        )
        .await
        .map_err(|e| e.to_string())?;
    client
        .execute(&st, &[&ck, &ca, &cc, &cr, &bk, &bl])
        .await
        .map_err(|e| e.to_string())?;
    let st = client
        .prepare_cached(
            "SELECT idempotency_key FROM sim_gateway_ledger
              WHERE idempotency_key = ANY($1::text[]) AND kind = 'void'
             UNION ALL
             SELECT idempotency_key FROM sim_airline_bookings
              WHERE idempotency_key = ANY($2::text[]) AND cancelled",
        )
        .await
        .map_err(|e| e.to_string())?;
    let cancelled = client
        .query(&st, &[&ck, &bk])
        .await
        .map_err(|e| e.to_string())?;
    Ok(cancelled.iter().map(|r| r.get(0)).collect())
}

/// The charge made with `charge_key`, settled for good: its reference, or `None` after
/// making sure none can land (a `void` row takes the key first; the ledger keeps the first
/// row of a key, so a charge still queued or blocked then finds the key taken).
async fn settle_charge(
    client: &deadpool_postgres::Object,
    charge_key: &str,
) -> Result<Option<String>, ExtError> {
    let voided = client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO sim_gateway_ledger
                         (idempotency_key, kind, amount_minor, currency, reference)
                     VALUES ($1, 'void', 0, '', '') ON CONFLICT (idempotency_key) DO NOTHING",
                )
                .await
                .map_err(db_err)?,
            &[&charge_key],
        )
        .await
        .map_err(db_err)?;
    if voided == 1 {
        return Ok(None);
    }
    // A second statement: it sees the row that won the key even when another session
    // committed it while the insert above waited for it.
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT kind, reference FROM sim_gateway_ledger WHERE idempotency_key = $1",
                )
                .await
                .map_err(db_err)?,
            &[&charge_key],
        )
        .await
        .map_err(db_err)?;
    Ok(row
        .filter(|r| r.get::<_, &str>(0) == "charge")
        .map(|r| r.get(1)))
}

fn db_err(e: impl std::fmt::Display) -> ExtError {
    ExtError::Unavailable(format!("gateway storage: {e}"))
}

impl PaymentGateway for SimGateway {
    fn charge<'a>(&'a self, req: ChargeRequest<'a>) -> BoxFuture<'a, Result<String, ExtError>> {
        Box::pin(async move {
            self.config.before_call().await?;
            match req.token {
                "tok_decline" => return Err(ExtError::Declined("card declined".into())),
                "tok_error" => return Err(ExtError::Unavailable("gateway error".into())),
                "tok_slow" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return Err(ExtError::Timeout);
                }
                _ => {}
            }
            let r = reference("ch", req.idempotency_key);
            self.ledger
                .write(LedgerRow::Charge {
                    key: req.idempotency_key.to_string(),
                    amount_minor: req.amount_minor,
                    currency: req.currency.to_string(),
                    reference: r.clone(),
                })
                .await?;
            Ok(r)
        })
    }

    fn lookup<'a>(
        &'a self,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ExtError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(db_err)?;
            settle_charge(&client, idempotency_key).await
        })
    }

    fn refund<'a>(
        &'a self,
        idempotency_key: &'a str,
        charge_key: &'a str,
        amount_minor: i64,
        currency: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ExtError>> {
        Box::pin(async move {
            self.config.before_call().await?;
            let client = self.pool.get().await.map_err(db_err)?;
            if settle_charge(&client, charge_key).await?.is_none() {
                return Ok(None);
            }
            let r = reference("re", idempotency_key);
            client
                .execute(&client.prepare_cached("INSERT INTO sim_gateway_ledger (idempotency_key, kind, amount_minor, currency, reference)
                     VALUES ($1, 'refund', $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING").await.map_err(db_err)?,
                    &[&idempotency_key, &amount_minor, &currency, &r],
                )
                .await
                .map_err(db_err)?;
            Ok(Some(r))
        })
    }
}

/// The simulated airline (table `sim_airline_bookings`; bookings are written through
/// `ledger`, see [`SimLedger`]).
pub struct SimAirline {
    pub pool: Pool,
    pub config: SimConfig,
    pub ledger: Arc<SimLedger>,
}

impl Airline for SimAirline {
    fn confirm<'a>(
        &'a self,
        idempotency_key: &'a str,
        _legs: &'a [LegRef],
        _passengers: u32,
    ) -> BoxFuture<'a, Result<String, ExtError>> {
        Box::pin(async move {
            self.config.before_call().await?;
            let h = sha256(idempotency_key.as_bytes());
            const A: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
            let locator: String = h[..6]
                .iter()
                .map(|b| A[(b & 31) as usize] as char)
                .collect();
            self.ledger
                .write(LedgerRow::Booking {
                    key: idempotency_key.to_string(),
                    locator: locator.clone(),
                })
                .await?;
            Ok(locator)
        })
    }

    fn cancel<'a>(&'a self, idempotency_key: &'a str) -> BoxFuture<'a, Result<(), ExtError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(db_err)?;
            client
                .execute(
                    &client
                        .prepare_cached(
                            "INSERT INTO sim_airline_bookings (idempotency_key, locator, cancelled)
                     VALUES ($1, '', true)
                     ON CONFLICT (idempotency_key) DO UPDATE SET cancelled = true",
                        )
                        .await
                        .map_err(db_err)?,
                    &[&idempotency_key],
                )
                .await
                .map_err(db_err)?;
            Ok(())
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `trial`: when the one trial call went out. A trial that never reports (its caller
    /// was dropped) stops blocking the next one after `open_for`.
    HalfOpen {
        trial: Option<Instant>,
    },
}

/// A circuit breaker: opens after `threshold` consecutive failures, stays open for
/// `open_for`, then lets one trial call through (half-open): success closes it, failure
/// opens it again.
pub struct Breaker {
    pub name: &'static str,
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(name: &'static str, threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            name,
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether a call may go out now.
    pub fn allow(&self) -> bool {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *s = State::HalfOpen {
                    trial: Some(Instant::now()),
                };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { trial: Some(t) } if t.elapsed() < self.open_for => false,
            State::HalfOpen { .. } => {
                *s = State::HalfOpen {
                    trial: Some(Instant::now()),
                };
                true
            }
        }
    }

    /// Gives the half-open trial back unresolved (a call whose success does not count,
    /// see [`probe`]): the next call becomes the trial. Before this, a successful probe
    /// holding the trial left the breaker half-open with the trial taken, refusing every
    /// call for good (every order after a database failover: `order_not_created`).
    fn release_trial(&self) {
        let mut s = self.lock();
        if let State::HalfOpen { trial: Some(_) } = *s {
            *s = State::HalfOpen { trial: None };
        }
    }

    /// Whether a half-open trial call is out and may still report.
    fn trial_pending(&self) -> bool {
        matches!(*self.lock(), State::HalfOpen { trial: Some(t) } if t.elapsed() < self.open_for)
    }

    /// Whether calls are refused right now (without taking a half-open trial).
    pub fn is_open(&self) -> bool {
        matches!(*self.lock(), State::Open { until } if Instant::now() < until)
    }

    pub fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    pub fn failure(&self) {
        let mut s = self.lock();
        *s = match *s {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: Instant::now() + self.open_for,
            },
        };
        if matches!(*s, State::Open { .. }) {
            tracing::warn!(dependency = self.name, "circuit breaker open");
        }
    }

    /// 0 closed, 1 open, 2 half-open (for /metrics).
    pub fn state_code(&self) -> u8 {
        match *self.lock() {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(max, base * 2^attempt)].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        cap.mul_f64(random_unit())
    }
}

/// Calls `f` through `breaker` with a timeout per attempt; retries failures (not
/// declines) with backoff when `idempotent`.
pub async fn call<T, F, Fut>(
    breaker: &Breaker,
    policy: &RetryPolicy,
    idempotent: bool,
    f: F,
) -> Result<T, ExtError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ExtError>>,
{
    call_inner(breaker, policy, idempotent, true, f).await
}

/// Like [`call`] for read-only status queries (e.g. "was this key charged?"): their
/// success says nothing about the operation that failed, so it does not close the
/// breaker; their failures count.
pub async fn probe<T, F, Fut>(breaker: &Breaker, policy: &RetryPolicy, f: F) -> Result<T, ExtError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ExtError>>,
{
    call_inner(breaker, policy, true, false, f).await
}

async fn call_inner<T, F, Fut>(
    breaker: &Breaker,
    policy: &RetryPolicy,
    idempotent: bool,
    record_success: bool,
    mut f: F,
) -> Result<T, ExtError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ExtError>>,
{
    let mut attempt = 0;
    // Once an attempt went out, a refusal by the breaker no longer means "not made": that
    // attempt's failure is the answer (a timed-out charge may still land, and was taken for
    // "not charged": the order failed, its charge kept and never refunded).
    let mut failed = None;
    loop {
        if !allow_or_wait(breaker, policy.timeout).await {
            return Err(failed.unwrap_or(ExtError::CircuitOpen));
        }
        let err = match tokio::time::timeout(policy.timeout, f()).await {
            Ok(Ok(v)) => {
                if record_success {
                    breaker.success();
                } else {
                    breaker.release_trial();
                }
                return Ok(v);
            }
            Ok(Err(e)) if !e.counts_as_failure() => {
                breaker.success();
                return Err(e);
            }
            Ok(Err(e)) => e,
            Err(_) => ExtError::Timeout,
        };
        breaker.failure();
        attempt += 1;
        if !idempotent || attempt >= policy.max_attempts {
            return Err(err);
        }
        failed = Some(err);
        tokio::time::sleep(policy.backoff(attempt - 1)).await;
    }
}

/// [`Breaker::allow`]; while a half-open trial is out, waits for its verdict (at most
/// `limit`) instead of refusing at once. Every call made during the trial was refused: after
/// a database failover the first charge is the trial, and an order written meanwhile failed
/// with `502 order_not_created` although the trial then closed the breaker.
async fn allow_or_wait(breaker: &Breaker, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if breaker.allow() {
            return true;
        }
        if !breaker.trial_pending() || Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_cycles_closed_open_half_open() {
        let b = Breaker::new("t", 2, Duration::from_millis(30));
        assert!(b.allow());
        b.failure();
        assert_eq!(b.state_code(), 0);
        b.failure();
        assert_eq!(b.state_code(), 1);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        assert_eq!(b.state_code(), 2);
        assert!(!b.allow(), "one trial at a time");
        b.success();
        assert_eq!(b.state_code(), 0);
    }

    fn open_then_half_open(b: &Breaker) {
        b.failure();
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
    }

    /// The regression: a probe (whose success does not close the breaker) took the
    /// half-open trial and succeeded, and every later call was refused for good.
    #[tokio::test]
    async fn a_successful_probe_in_half_open_gives_the_trial_back() {
        let b = Breaker::new("t", 1, Duration::from_millis(30));
        let p = RetryPolicy::default();
        open_then_half_open(&b);
        let r = probe(&b, &p, || async { Ok::<_, ExtError>(()) }).await;
        assert!(r.is_ok());
        assert_eq!(b.state_code(), 2, "a probe does not close the breaker");
        let r = call(&b, &p, true, || async { Ok::<_, ExtError>(()) }).await;
        assert!(r.is_ok(), "the next call is the trial: {r:?}");
        assert_eq!(b.state_code(), 0);
    }

    #[test]
    fn a_trial_that_never_reports_stops_blocking_after_the_open_period() {
        let b = Breaker::new("t", 1, Duration::from_millis(30));
        open_then_half_open(&b);
        assert!(b.allow(), "the trial goes out (and its caller is dropped)");
        assert!(!b.allow(), "one trial at a time");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "a new trial after the open period");
    }

    /// A retry refused by the breaker its own failed attempt opened reports that failure
    /// (its outcome is unknown), never `CircuitOpen` ("not made").
    #[tokio::test]
    async fn a_retry_refused_by_the_breaker_reports_the_failed_attempt() {
        let b = Breaker::new("t", 1, Duration::from_secs(30));
        let p = RetryPolicy {
            timeout: Duration::from_millis(20),
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        let r: Result<(), _> = call(&b, &p, true, || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        })
        .await;
        assert_eq!(r, Err(ExtError::Timeout));
        let r = call(&b, &p, true, || async { Ok::<_, ExtError>(()) }).await;
        assert_eq!(r, Err(ExtError::CircuitOpen), "no attempt went out");
    }

    /// A call that comes while the half-open trial is out waits for its verdict. The
    /// open period (400 ms) leaves a stalled machine ~300 ms of margin around the trial
    /// (100 ms) and the waiting call (sent 20 ms after it).
    #[tokio::test]
    async fn a_call_during_the_half_open_trial_waits_for_its_verdict() {
        const OPEN: Duration = Duration::from_millis(400);
        let b = std::sync::Arc::new(Breaker::new("t", 1, OPEN));
        let p = RetryPolicy::default();
        let half_open = |b: &Breaker| {
            b.failure();
            assert!(!b.allow());
            std::thread::sleep(OPEN + Duration::from_millis(10));
        };
        let trial = |b: &std::sync::Arc<Breaker>, p: RetryPolicy, outcome: Result<(), ExtError>| {
            let b = b.clone();
            tokio::spawn(async move {
                call(&b, &p, true, || {
                    let outcome = outcome.clone();
                    async move {
                        // Within the open period: the trial still counts as out.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        outcome
                    }
                })
                .await
            })
        };
        half_open(&b);
        let t = trial(&b, p, Ok(()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = call(&b, &p, true, || async { Ok::<_, ExtError>(()) }).await;
        assert!(r.is_ok(), "{r:?}");
        assert!(t.await.expect("trial task").is_ok());
        // A trial that fails refuses the calls that waited for it.
        half_open(&b);
        let once = RetryPolicy {
            max_attempts: 1,
            ..p
        };
        let t = trial(&b, once, Err(ExtError::Unavailable("down".into())));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = call(&b, &p, true, || async { Ok::<_, ExtError>(()) }).await;
        assert_eq!(r, Err(ExtError::CircuitOpen));
        assert!(t.await.expect("trial task").is_err());
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy::default();
        for a in 0..20 {
            assert!(p.backoff(a) <= p.max_backoff);
        }
    }
}
