//! Outbox sequence numbers assigned after commit.
//!
//! A transaction that changes inventory writes its changes to `outbox_pending` (in the same
//! transaction, right after the guarded `UPDATE inventory`) and takes no shared lock. The
//! [`Sequencer`] task moves committed pending rows to `outbox` in `id` order, numbering
//! them `head + 1, head + 2, ...` and advancing `outbox_head.seq`, all in one transaction
//! that first locks the `outbox_head` row. So, for the readers in `outbox_feed.rs`:
//!
//! - seqs are gap-free and commit in order: only sequencer transactions write `outbox`,
//!   they are serialised by the `outbox_head` row lock (also across bookd processes on one
//!   database: a second sequencer waits for the lock, then its next statement sees a fresh
//!   snapshot without the rows the first one moved), and each keeps the lock until its
//!   COMMIT, so `outbox_head.seq` is still a watermark (every seq at or below it visible);
//! - per leg class, seq order is change order: two transactions changing the same
//!   inventory row are ordered by its row lock; the second writes its pending row (and
//!   draws its `id`) only after the first committed, so the sequencer never sees the second
//!   without the first and numbers them in `id` order. Rows of different leg classes may
//!   be numbered in another order than they committed, which no reader can tell apart: each
//!   outbox row carries its leg class's absolute seats remaining;
//! - nothing is lost: pending rows commit with the booking; a crash between booking and
//!   sequencing leaves them pending, and the next sequencer run (at start, on every
//!   booking commit, and every `poll`) moves them;
//! - every sequencer transaction draws a fresh random, non-zero history token
//!   ([`crate::outbox_feed::history_token`]) and writes it on every row it numbers and on
//!   `outbox_head` (the token of the head row). A database restored from a backup, or a
//!   primary that lost its newest commits in a failover, numbers the same seqs again in
//!   other transactions, with other tokens: a node resuming from a seq of the lost history
//!   is told apart (see `format::wire`) and gets a full state.
//!
//! What changes for a reader: a committed inventory change reaches `outbox` one sequencer
//! transaction later (a few ms under load), and a full state (inventory read with the head)
//! may already include changes numbered above its head; replaying those (absolute values)
//! ends in the same state.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{watch, Notify};

use crate::outbox_feed::SeqSignal;
use crate::Result;

/// Most pending rows one sequencer transaction moves.
const MOVE_BATCH: i64 = 20_000;

/// The inventory changes of one transaction, in order (`seats_remaining` is the leg
/// class's absolute seats remaining after the change).
#[derive(Debug, Default)]
pub struct PendingBatch {
    carriers: Vec<String>,
    numbers: Vec<i32>,
    dates: Vec<String>,
    origins: Vec<String>,
    classes: Vec<String>,
    remaining: Vec<i32>,
    reasons: Vec<String>,
}

impl PendingBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.carriers.is_empty()
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
        self.carriers.push(carrier.to_string());
        self.numbers.push(flight_number);
        self.dates.push(date.to_string());
        self.origins.push(origin.to_string());
        self.classes.push(booking_class.to_string());
        self.remaining.push(remaining);
        self.reasons.push(reason.to_string());
    }
}

/// Writes `batch` to `outbox_pending` inside the transaction that changed the inventory
/// (after the change: its row locks order the ids of one leg class).
pub async fn write_pending(
    tx: &Transaction<'_>,
    batch: &PendingBatch,
) -> Result<(), tokio_postgres::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO outbox_pending (carrier, flight_number, dep_date, origin, booking_class,
                                         seats_remaining, reason)
             SELECT c, f, d::date, o, b, r, w
             FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::int[],
                         $7::text[]) WITH ORDINALITY AS t(c, f, d, o, b, r, w, i)
             ORDER BY i",
        )
        .await?,
        &[
            &batch.carriers,
            &batch.numbers,
            &batch.dates,
            &batch.origins,
            &batch.classes,
            &batch.remaining,
            &batch.reasons,
        ],
    )
    .await?;
    Ok(())
}

/// Moves committed pending rows to `outbox` (see the module documentation), all under one
/// fresh history token; returns the head after the move and how many rows moved.
/// `None` when nothing was pending (checked without a transaction or lock, through the
/// primary key: an idle sequencer costs one indexed read per poll, and an empty move would
/// cost a WAL flush, its row lock giving it a transaction id).
///
/// The move itself is one round trip: `BEGIN`, the `outbox_head` row lock, the move and
/// `COMMIT` are pipelined on one connection. PostgreSQL still runs them one after the
/// other, so the move statement's snapshot (READ COMMITTED: taken when the statement
/// starts) is taken after the lock is granted, and it reads the current head itself. If the
/// lock or the move fails, the server answers the pipelined `COMMIT` of the failed
/// transaction with a rollback and the connection is idle again.
pub async fn move_pending(pool: &Pool, max: i64) -> Result<Option<(u64, i64)>> {
    let client = pool.get().await?;
    {
        // Through the primary key: a queue table's heap starts with pages of dead rows
        // until autovacuum reaches them, which a sequential scan would walk every time.
        let any = client
            .query_opt(
                &client
                    .prepare_cached("SELECT id FROM outbox_pending ORDER BY id LIMIT 1")
                    .await?,
                &[],
            )
            .await?
            .is_some();
        if !any {
            return Ok(None);
        }
    }
    let lock = client
        .prepare_cached("SELECT seq FROM outbox_head FOR UPDATE")
        .await?;
    // The rows to move are the first `max` visible ids: an index range scan below the
    // (`max` + 1)-th visible id (or all of them), instead of probing the key once per row.
    let mv = client
        .prepare_cached(
            "WITH h0 AS (SELECT seq FROM outbox_head),
                  p AS (
                     DELETE FROM outbox_pending
                     WHERE id < COALESCE(
                         (SELECT id FROM outbox_pending ORDER BY id OFFSET $1 LIMIT 1),
                         9223372036854775807)
                     RETURNING *
                  ),
                  n AS (SELECT p.*, row_number() OVER (ORDER BY p.id) AS k FROM p),
                  ins AS (
                     INSERT INTO outbox (seq, carrier, flight_number, dep_date, origin,
                                         booking_class, seats_remaining, reason, created_at,
                                         token)
                     SELECT (SELECT seq FROM h0) + k, carrier, flight_number, dep_date, origin,
                            booking_class, seats_remaining, reason, created_at, $2::bigint
                     FROM n ORDER BY k
                  ),
                  h AS (
                     UPDATE outbox_head SET seq = seq + (SELECT count(*) FROM n),
                            token = CASE WHEN EXISTS (SELECT 1 FROM n) THEN $2::bigint
                                         ELSE token END
                  )
             SELECT (SELECT seq FROM h0) + count(*), count(*) FROM n",
        )
        .await?;
    // Stored as bigint: the same 64 bits (`as` reinterprets them, both ways).
    let token = crate::outbox_feed::history_token()? as i64;
    let begin = client.prepare_cached("BEGIN").await?;
    let commit = client.prepare_cached("COMMIT").await?;
    // tokio-postgres sends a request when its future is first polled: polling the four in
    // this fixed order (unlike `tokio::join!`, which rotates its start) puts them on the
    // wire in this order.
    let move_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&max, &token];
    let mut f_begin = std::pin::pin!(client.execute(&begin, &[]));
    let mut f_lock = std::pin::pin!(client.query_one(&lock, &[]));
    let mut f_move = std::pin::pin!(client.query_one(&mv, &move_params));
    let mut f_commit = std::pin::pin!(client.execute(&commit, &[]));
    let (mut r_begin, mut r_lock, mut r_move, mut r_commit) = (None, None, None, None);
    std::future::poll_fn(|cx| {
        if r_begin.is_none() {
            if let Poll::Ready(r) = f_begin.as_mut().poll(cx) {
                r_begin = Some(r);
            }
        }
        if r_lock.is_none() {
            if let Poll::Ready(r) = f_lock.as_mut().poll(cx) {
                r_lock = Some(r);
            }
        }
        if r_move.is_none() {
            if let Poll::Ready(r) = f_move.as_mut().poll(cx) {
                r_move = Some(r);
            }
        }
        if r_commit.is_none() {
            if let Poll::Ready(r) = f_commit.as_mut().poll(cx) {
                r_commit = Some(r);
            }
        }
        if r_begin.is_some() && r_lock.is_some() && r_move.is_some() && r_commit.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    let (Some(begin), Some(locked), Some(moved), Some(commit)) =
        (r_begin, r_lock, r_move, r_commit)
    else {
        unreachable!("the poll_fn above ends only when all four are ready");
    };
    begin?;
    locked?;
    let row = moved?;
    commit?;
    let head: i64 = row.get(0);
    let moved: i64 = row.get(1);
    debug_assert!(moved <= max, "moved {moved} rows, at most {max} asked");
    if moved == 0 {
        return Ok(None);
    }
    Ok(Some((u64::try_from(head).unwrap_or(0), moved)))
}

/// The sequencer task's handle: bookings [`Sequencer::wake`] it after each commit that
/// wrote pending rows.
pub struct Sequencer {
    wake: Notify,
    /// Moves started so far (a move started after a commit includes its rows).
    started: AtomicU64,
    /// Moves finished so far (committed, found nothing, or failed).
    finished: watch::Sender<u64>,
}

impl Sequencer {
    /// Starts the task: it moves pending rows whenever woken, every `poll` (rows of other
    /// processes, or left by a crash), and once at start; after every move it advances
    /// `signal` (the invalidation feed's watermark). Ends when `shutdown` turns true, after
    /// a last move.
    pub fn start(
        pool: Pool,
        signal: Arc<SeqSignal>,
        poll: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Arc<Sequencer>, tokio::task::JoinHandle<()>) {
        let me = Arc::new(Sequencer {
            wake: Notify::new(),
            started: AtomicU64::new(0),
            finished: watch::channel(0).0,
        });
        let task = {
            let me = me.clone();
            tokio::spawn(async move {
                let mut failing = false;
                loop {
                    let stop = *shutdown.borrow();
                    // Drain: a full batch means more may be waiting.
                    loop {
                        let run = me.started.fetch_add(1, SeqCst) + 1;
                        let result = move_pending(&pool, MOVE_BATCH).await;
                        me.finished.send_replace(run);
                        match result {
                            Ok(None) => {
                                if failing {
                                    tracing::info!("outbox sequencer recovered");
                                    failing = false;
                                }
                                break;
                            }
                            Ok(Some((head, moved))) => {
                                if failing {
                                    tracing::info!("outbox sequencer recovered");
                                    failing = false;
                                }
                                signal.advance(head);
                                if moved < MOVE_BATCH {
                                    break;
                                }
                            }
                            Err(e) => {
                                if !failing {
                                    tracing::warn!(error = %e, "outbox sequencer; retrying");
                                    failing = true;
                                }
                                break;
                            }
                        }
                    }
                    if stop {
                        return;
                    }
                    let wait = if failing {
                        poll.max(Duration::from_millis(500))
                    } else {
                        poll
                    };
                    tokio::select! {
                        _ = me.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        r = shutdown.changed() => { let _ = r; }
                    }
                }
            })
        };
        (me, task)
    }

    /// A transaction that wrote pending rows committed (or may have: a lost COMMIT).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Called right after a COMMIT that wrote pending rows: wakes the sequencer and waits
    /// (at most `limit`) until a move that started after that COMMIT has finished, so that
    /// the changes are in `outbox` when the request answers, as they were when bookings
    /// numbered them themselves. Under load many commits share one move. After `limit`
    /// (the database failing) the changes stay pending and a later move numbers them.
    pub async fn sequenced(&self, limit: Duration) {
        let after = self.started.load(SeqCst);
        let mut rx = self.finished.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done > after)).await;
    }
}
