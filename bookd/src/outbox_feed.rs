//! The outbox on PostgreSQL as the invalidation publisher's [`InventoryFeed`].
//!
//! - Sequence numbers: every transaction that changes inventory collects its changes in an
//!   [`OutboxBatch`] and, as its last statement before COMMIT, allocates their seqs from the
//!   one row of `outbox_head` (`UPDATE outbox_head SET seq = seq + n`) and writes the outbox
//!   rows ([`write_batch`]). The row lock is held until COMMIT, so these transactions commit
//!   in seq order: `outbox_head.seq` is a watermark (every change at or below it is
//!   visible, none lower commits later) and the visible outbox is always a prefix.
//! - Notification: after a successful COMMIT the service advances the [`SeqSignal`]
//!   in-process; the feed also polls `outbox_head` (every 200 ms by default) for changes
//!   made by another process on the same database and for commits whose outcome the service
//!   could not see.
//! - Retention: [`prune`] (called by the sweeper) deletes the oldest rows beyond the window
//!   (`keep_seqs` seqs or `keep_age`, whichever is reached first), a bounded number per
//!   call, and records the highest pruned seq in `outbox_pruned`; `changes_after` returns
//!   `None` for a range that starts at or below it (the node then gets a full state).
//! - Every outbox row carries the absolute seats remaining of its leg class.
//! - History tokens: every outbox row carries the random token of the transaction that
//!   numbered it (`outbox_head.token` is the head row's, `outbox_pruned.token` the row at
//!   `through`'s; 0 for rows older than schema version 6). `changes_after` reads the token
//!   at its `after` position and those of the rows it returns in the same statement, and
//!   `full_state` the head's token with the head, so the publisher learns which history a
//!   node's seq belongs to without another round trip (see `format::wire`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use format::wire::{Entry, LegKey};
use tokio::sync::watch;

use crate::quic::{Changes, FeedError, FullInventory, InventoryFeed};

/// A fresh history token: random, never 0 (the token of rows older than history tokens).
pub fn history_token() -> Result<u64, crate::Error> {
    loop {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| {
            crate::Error::Other(format!("no randomness for an outbox history token: {e}"))
        })?;
        let token = u64::from_le_bytes(b);
        if token != 0 {
            return Ok(token);
        }
    }
}

/// A token as PostgreSQL stores it (bigint: the same 64 bits).
fn token_to_db(token: u64) -> i64 {
    token as i64
}

/// A token as PostgreSQL stored it.
fn token_from_db(token: i64) -> u64 {
    token as u64
}

/// One inventory change of a transaction (the row's seats remaining after it).
#[derive(Debug, Clone)]
struct Change {
    carrier: String,
    flight_number: i32,
    date: String,
    origin: String,
    booking_class: String,
    remaining: i32,
    reason: String,
}

/// The inventory changes of one transaction, in order; written to the outbox by
/// [`write_batch`] right before COMMIT.
#[derive(Debug, Default)]
pub struct OutboxBatch {
    changes: Vec<Change>,
}

impl OutboxBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        carrier: &str,
        flight_number: i32,
        date: &str,
        origin: &str,
        booking_class: &str,
        remaining: i32,
        reason: &str,
    ) {
        self.changes.push(Change {
            carrier: carrier.to_string(),
            flight_number,
            date: date.to_string(),
            origin: origin.to_string(),
            booking_class: booking_class.to_string(),
            remaining,
            reason: reason.to_string(),
        });
    }
}

/// Allocates the batch's seqs under the `outbox_head` row lock and writes its outbox rows.
/// Call it as the transaction's last statement: the lock is held until COMMIT or ROLLBACK,
/// so every committing transaction waits for it and the work done under it is kept to the
/// INSERT. (`inventory.last_seq` is no longer written: a second UPDATE of every changed row
/// under the lock cost 60 % of this statement and capped the outbox at ~25,000 changes/s on
/// 2 cores; the full state does not need it, see [`PgFeed`]'s `full_state`.) The rows get a
/// fresh history token, as a sequencer transaction's do. Returns the highest seq written
/// (`None` for an empty batch, which takes no lock).
pub async fn write_batch(
    tx: &Transaction<'_>,
    batch: &OutboxBatch,
) -> Result<Option<u64>, crate::Error> {
    if batch.changes.is_empty() {
        return Ok(None);
    }
    let token = token_to_db(history_token()?);
    let n = batch.changes.len() as i64;
    let col = |f: fn(&Change) -> String| batch.changes.iter().map(f).collect::<Vec<String>>();
    let carriers = col(|c| c.carrier.clone());
    let dates = col(|c| c.date.clone());
    let origins = col(|c| c.origin.clone());
    let classes = col(|c| c.booking_class.clone());
    let reasons = col(|c| c.reason.clone());
    let numbers: Vec<i32> = batch.changes.iter().map(|c| c.flight_number).collect();
    let remaining: Vec<i32> = batch.changes.iter().map(|c| c.remaining).collect();
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "WITH h AS (
                 UPDATE outbox_head SET seq = seq + $1::bigint, token = $9::bigint
                 RETURNING seq - $1::bigint AS base
             ),
             r AS (
                 SELECT t.carrier, t.flight_number, t.dep_date::date AS dep_date, t.origin,
                        t.booking_class, t.remaining, t.reason, t.i
                 FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
                             $7::int[], $8::text[])
                      WITH ORDINALITY AS t(carrier, flight_number, dep_date, origin,
                                           booking_class, remaining, reason, i)
             ),
             ins AS (
                 INSERT INTO outbox (seq, carrier, flight_number, dep_date, origin, booking_class,
                                     seats_remaining, reason, token)
                 SELECT h.base + r.i, r.carrier, r.flight_number, r.dep_date, r.origin,
                        r.booking_class, r.remaining, r.reason, $9::bigint
                 FROM h, r
             )
             SELECT base + $1::bigint FROM h",
            )
            .await?,
            &[
                &n, &carriers, &numbers, &dates, &origins, &classes, &remaining, &reasons, &token,
            ],
        )
        .await?;
    let last: i64 = row.get(0);
    Ok(u64::try_from(last).ok())
}

/// The newest committed outbox seq known in this process; feeds the publisher's
/// `watch_seq`. Only ever moves forward.
#[derive(Debug)]
pub struct SeqSignal {
    tx: watch::Sender<u64>,
}

impl SeqSignal {
    pub fn new(initial: u64) -> Arc<SeqSignal> {
        let (tx, _) = watch::channel(initial);
        Arc::new(SeqSignal { tx })
    }

    /// Records that every change up to `seq` is committed (called after COMMIT).
    pub fn advance(&self, seq: u64) {
        self.tx.send_if_modified(|cur| {
            if seq > *cur {
                *cur = seq;
                true
            } else {
                false
            }
        });
    }

    pub fn current(&self) -> u64 {
        *self.tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

/// The committed watermark: `outbox_head.seq`.
pub async fn read_head(client: &deadpool_postgres::Client) -> Result<u64, tokio_postgres::Error> {
    let row = client
        .query_one(
            &client.prepare_cached("SELECT seq FROM outbox_head").await?,
            &[],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// How much of the outbox is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Rows more than this many seqs below the head are pruned.
    pub keep_seqs: u64,
    /// Rows older than this are pruned.
    pub keep_age: Duration,
    /// Most rows deleted per `prune` call.
    pub max_delete: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_seqs: 1_000_000,
            keep_age: Duration::from_secs(24 * 3600),
            max_delete: 20_000,
        }
    }
}

/// Deletes the oldest outbox rows beyond the retention window (at most `max_delete`, a
/// prefix in seq order) and records the highest deleted seq with its history token (the
/// token at a position whose row is gone, for nodes resuming there). Returns how many rows
/// went. Never touches `outbox_head`, so bookings are not blocked.
pub async fn prune(pool: &Pool, retention: &Retention) -> Result<u64, crate::Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let head = i64::try_from(read_head_tx(&tx).await?).unwrap_or(i64::MAX);
    let keep = i64::try_from(retention.keep_seqs).unwrap_or(i64::MAX);
    let below = head.saturating_sub(keep);
    let age_secs = retention.keep_age.as_secs_f64();
    let cut = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT seq, token
             FROM (SELECT seq, token, created_at FROM outbox ORDER BY seq LIMIT $1) h
             WHERE seq <= $2 OR created_at < now() - make_interval(secs => $3)
             ORDER BY seq DESC LIMIT 1",
            )
            .await?,
            &[&retention.max_delete.max(1), &below, &age_secs],
        )
        .await?;
    let Some((cut, cut_token)) = cut.map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1))) else {
        return Ok(0);
    };
    let n = tx
        .execute(
            &tx.prepare_cached("DELETE FROM outbox WHERE seq <= $1")
                .await?,
            &[&cut],
        )
        .await?;
    // (Every SET expression reads the row as it was: the token follows `through` only when
    // this cut moves it.)
    tx.execute(
        &tx.prepare_cached(
            "UPDATE outbox_pruned SET token = CASE WHEN $1 > through THEN $2 ELSE token END,
                                     through = GREATEST(through, $1)",
        )
        .await?,
        &[&cut, &cut_token],
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

async fn read_head_tx(tx: &Transaction<'_>) -> Result<u64, tokio_postgres::Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached("SELECT seq FROM outbox_head").await?,
            &[],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// The outbox and inventory on PostgreSQL as an [`InventoryFeed`].
pub struct PgFeed {
    pool: Pool,
    signal: Arc<SeqSignal>,
    /// Most leg classes a full state may hold (more is an error, not an allocation).
    pub max_full_state: usize,
}

impl PgFeed {
    /// A feed over `pool` following `signal` (advance it after each commit); starts a task
    /// that polls `outbox_head` every `poll` until `shutdown` turns true.
    pub fn start(
        pool: Pool,
        signal: Arc<SeqSignal>,
        poll: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> (Arc<PgFeed>, tokio::task::JoinHandle<()>) {
        let feed = Arc::new(PgFeed {
            pool,
            signal,
            max_full_state: 5_000_000,
        });
        let task = tokio::spawn(poll_head(feed.clone(), poll, shutdown));
        (feed, task)
    }
}

async fn poll_head(feed: Arc<PgFeed>, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            r = shutdown.wait_for(|s| *s) => { let _ = r; return; }
        }
        let head = async {
            let client = feed.pool.get().await.map_err(|e| e.to_string())?;
            read_head(&client).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), head).await {
            Ok(Ok(seq)) => {
                if failing {
                    tracing::info!("outbox poll recovered");
                    failing = false;
                }
                feed.signal.advance(seq);
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "outbox poll failed; retrying");
                    failing = true;
                }
            }
            Err(_) => {
                if !failing {
                    tracing::warn!("outbox poll timed out; retrying");
                    failing = true;
                }
            }
        }
    }
}

/// A leg key from an outbox or inventory row; `None` for a row that cannot be one (never
/// written by bookd, which only books snapshot legs).
pub(crate) fn leg_key(
    carrier: &str,
    flight: i32,
    day: i32,
    origin: &str,
    class: &str,
) -> Option<LegKey> {
    let carrier = format::model::carrier_code(carrier)?;
    let origin: [u8; 3] = origin.as_bytes().try_into().ok()?;
    let &[booking_class] = class.as_bytes() else {
        return None;
    };
    Some(LegKey {
        carrier,
        flight_number: u16::try_from(flight).ok()?,
        date: day,
        origin,
        booking_class,
    })
}

fn seats(remaining: i32) -> u16 {
    u16::try_from(remaining.max(0)).unwrap_or(u16::MAX)
}

/// A leg class's seats remaining from a row of (carrier, flight_number, day number,
/// origin, booking_class, remaining); `None` (logged) for a row that is not a leg key.
pub(crate) fn inventory_seats(r: &tokio_postgres::Row) -> Option<(LegKey, u16)> {
    let (carrier, flight, day, origin, class, remaining): (String, i32, i32, String, String, i32) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    let Some(key) = leg_key(&carrier, flight, day, &origin, &class) else {
        tracing::warn!(carrier, flight, "inventory row is not a leg key; skipped");
        return None;
    };
    Some((key, seats(remaining)))
}

impl InventoryFeed for PgFeed {
    async fn changes_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<Changes>, FeedError> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit.clamp(1, format::wire::MAX_BATCH)).unwrap_or(1);
        let client = self.pool.get().await?;
        // One statement, one snapshot: the pruning mark, the token at `after` and the rows
        // agree. A UNION ALL (the mark's row first, then the rows in seq order), not a join:
        // with a join the planner multiplies its row estimates (`outbox_pruned` is never
        // analyzed on a fresh database: 2,200 rows assumed) and the cost crossed
        // `jit_above_cost`, so every read paid ~170 ms of JIT compilation (regression:
        // `--feed pg` of `invalidation_throughput` saw commit -> applied p50 270 ms).
        // The token at `after` is the head's when `after` is at or past the head, else the
        // newest retained row's at or below it, else (every row up to `after` pruned) the
        // token of the row at `through`: one index probe, in the statement already sent.
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "(SELECT through AS mark, NULL::bigint AS seq, NULL::text AS carrier,
                         NULL::int AS flight_number, NULL::int AS day, NULL::text AS origin,
                         NULL::text AS booking_class, NULL::int AS seats_remaining,
                         COALESCE(
                             (SELECT token FROM outbox_head WHERE seq <= $1),
                             (SELECT token FROM outbox WHERE seq <= $1 ORDER BY seq DESC LIMIT 1),
                             token) AS token
                  FROM outbox_pruned LIMIT 1)
                 UNION ALL
                 (SELECT NULL::bigint, seq, carrier, flight_number,
                         dep_date - DATE '1970-01-01', origin, booking_class, seats_remaining,
                         token
                  FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2)",
                    )
                    .await?,
                &[&after, &limit],
            )
            .await?;
        let Some((through, after_token)) = rows
            .iter()
            .find_map(|r| Some((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(8))))
        else {
            return Err("outbox_pruned has no row".into());
        };
        if after < through {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut last_token = None;
        let mut last_seq = None;
        let mut rows_read = 0;
        for r in &rows {
            let Some(seq) = r.get::<_, Option<i64>>(1) else {
                continue;
            };
            rows_read += 1;
            last_seq = u64::try_from(seq).ok();
            // Of every row read, skipped ones included: the token at the batch's end.
            last_token = Some(token_from_db(r.get(8)));
            let (carrier, flight, day, origin, class, remaining): (
                String,
                i32,
                i32,
                String,
                String,
                i32,
            ) = (r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7));
            let Some(key) = leg_key(&carrier, flight, day, &origin, &class) else {
                tracing::warn!(seq, "outbox row is not a leg key; skipped");
                continue;
            };
            out.push(Entry {
                key,
                seats: seats(remaining),
                seq: u64::try_from(seq).unwrap_or(0),
            });
        }
        Ok(Some(Changes {
            entries: out,
            after_token: Some(token_from_db(after_token)),
            last_token,
            last_seq,
            rows_read,
        }))
    }

    /// Every leg class's seats as of the outbox head, each entry stamped with that head:
    /// the state is consistent as of `as_of`, and a node only uses an entry's seq to order
    /// it against later changes (all above `as_of`), so per-row seqs are not needed. The
    /// head's token is read with the head.
    async fn full_state(&self) -> Result<FullInventory, FeedError> {
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let head = tx
            .query_one(
                &tx.prepare_cached("SELECT seq, token FROM outbox_head")
                    .await?,
                &[],
            )
            .await?;
        let as_of = u64::try_from(head.get::<_, i64>(0)).unwrap_or(0);
        let as_of_token = token_from_db(head.get(1));
        let max = i64::try_from(self.max_full_state).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                &tx.prepare_cached(
                    "SELECT carrier, flight_number, dep_date - DATE '1970-01-01', origin,
                        booking_class, capacity - sold - held
                 FROM inventory LIMIT $1",
                )
                .await?,
                &[&max.saturating_add(1)],
            )
            .await?;
        tx.commit().await?;
        if rows.len() > self.max_full_state {
            return Err(format!(
                "inventory has more than {} leg classes: too large for a full state",
                self.max_full_state
            )
            .into());
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some((key, seats)) = inventory_seats(r) else {
                continue;
            };
            out.push(Entry {
                key,
                seats,
                seq: as_of,
            });
        }
        Ok(FullInventory {
            as_of,
            as_of_token,
            entries: out,
        })
    }

    fn current_seq(&self) -> u64 {
        self.signal.current()
    }

    fn watch_seq(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }
}
