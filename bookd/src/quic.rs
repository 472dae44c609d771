//! The invalidation publisher: pushes seat changes from bookd's outbox to searchd nodes
//! over QUIC with mutual TLS (protocol in `format::wire`).
//!
//! - TLS: bookd presents `D/bookd.crt`; a node must present a certificate that chains to
//!   `D/ca.crt` (the only trusted root). No certificate, a self-signed one or one from another
//!   CA fails the handshake. TLS 1.3 only, ring only.
//! - Per node: the node opens one bidirectional stream and sends `Subscribe`. bookd replays
//!   the outbox after the node's `last_applied_seq`, or sends a `FullState` when the node is
//!   new, on another snapshot, ahead of bookd, further behind than `max_replay`, older than
//!   what the outbox still holds, or in another outbox history (its `last_applied_token` is
//!   not the token bookd's outbox has at that seq: bookd's database was restored from a
//!   backup, or a failover lost commits, while the node was away). Then it streams `Updates`
//!   as the sequence advances, and a `Heartbeat` every `heartbeat` interval.
//! - History tokens (`format::wire`): every read of the feed returns the token at the
//!   position it reads after, which the reader compares with the token it holds there. The
//!   fan-out finding another history under its position (a failover while bookd runs) marks
//!   every node behind; a node's session finding one under the node's position sends a full
//!   state. No extra read: the token comes with the rows.
//! - One fan-out task reads the feed once per change and encodes each batch once; every node
//!   has a bounded queue of encoded frames. When a node's queue is full the frame is dropped
//!   for that node only and the node is marked behind: its own task then catches up from the
//!   feed (replay or full state) at the node's own pace. Bookings never wait for nodes, and a
//!   slow node never slows the fan-out or other nodes. A node that does not take a frame
//!   within `write_timeout` is disconnected (it reconnects and resubscribes).
//! - Malformed, oversized or unknown-version frames from a node close that connection with an
//!   error log. Limits: `max_nodes`, `max_batch`, `wire::MAX_FRAME_BYTES`, queue length.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use format::wire::{self, Entry, FullState, Message, Subscribe, Updates};
use tokio::sync::{mpsc, watch, Mutex as AsyncMutex};
use tokio::task::JoinSet;

use crate::certs;

/// Application close codes of the channel.
pub mod codes {
    pub const SHUTDOWN: u32 = 0;
    /// A malformed, oversized or unknown-version frame, or an unexpected message.
    pub const PROTOCOL: u32 = 1;
    pub const TOO_MANY_NODES: u32 = 2;
    /// The node did not take frames within the write timeout.
    pub const TOO_SLOW: u32 = 3;
    /// The node asks for a resync (it saw a gap).
    pub const RESYNC: u32 = 4;
    pub const INTERNAL: u32 = 5;
}

/// Errors of the inventory feed (the outbox). The publisher logs them and retries.
pub type FeedError = Box<dyn std::error::Error + Send + Sync>;

/// What [`InventoryFeed::changes_after`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changes with `seq > after`, in ascending seq order, at most `limit`.
    pub entries: Vec<Entry>,
    /// The token at `after`: that of the newest change with `seq <= after` (0 when there is
    /// none); `None` when the feed does not know it, which sends a node resuming at `after`
    /// a full state.
    pub after_token: Option<u64>,
    /// The token of the newest change read (rows the feed skipped included); `None` when it
    /// read none after `after`.
    pub last_token: Option<u64>,
    /// The seq of the newest change read, rows the feed skipped included (a row it cannot
    /// turn into an entry is logged and left out of `entries`); `None` when it read none.
    pub last_seq: Option<u64>,
    /// Changes read, skipped ones included: `limit` means there may be more after
    /// `last_seq`, even when `entries` is shorter.
    pub rows_read: usize,
}

/// What [`InventoryFeed::full_state`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FullInventory {
    pub as_of: u64,
    /// The token at `as_of`.
    pub as_of_token: u64,
    pub entries: Vec<Entry>,
}

/// bookd's inventory as the publisher sees it: the outbox of seat changes, ordered by a
/// sequence number, and the current seats of every tracked leg class.
///
/// Contract the implementation must keep:
/// - `current_seq()` is a watermark: every change with `seq <= current_seq()` is visible to
///   `changes_after`, and no change with a lower seq becomes visible later (sequence numbers
///   may have holes, e.g. from rolled back transactions, but a hole is never filled later).
/// - Every change carries a history token: the same for the changes one transaction numbered,
///   random and different for every transaction, never 0 (0 is for changes from before
///   history tokens). "The token at `S`" is the token of the newest change with `seq <= S`.
/// - `changes_after(after, limit)` returns changes with `seq > after` in ascending seq order,
///   at most `limit`, with the token at `after` and the token of the last change read, from
///   one consistent read; `Ok(None)` when changes after `after` are no longer all retained
///   (the outbox was pruned past it), which sends the node a full state.
/// - `full_state()` returns the current seats of every leg class, consistent as of `as_of`
///   (every change up to `as_of` included, none after), each with a seq of at most `as_of`
///   (the seq of its last change, or `as_of` itself), and the token at `as_of`.
/// - `watch_seq()` notifies when `current_seq()` advances.
pub trait InventoryFeed: Send + Sync + 'static {
    fn changes_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Option<Changes>, FeedError>> + Send;
    fn full_state(&self) -> impl Future<Output = Result<FullInventory, FeedError>> + Send;
    fn current_seq(&self) -> u64;
    fn watch_seq(&self) -> watch::Receiver<u64>;
}

/// Publisher settings; `PublisherConfig::new` gives the defaults.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub listen: SocketAddr,
    pub cluster_dir: PathBuf,
    /// Snapshot id the inventory is based on at start (see `Publisher::publish_snapshot`).
    pub snapshot_id: String,
    pub heartbeat: Duration,
    pub max_nodes: usize,
    /// Frames queued per node before the node is marked behind.
    pub queue_frames: usize,
    /// Entries per `Updates`/`FullState` frame (at most `wire::MAX_BATCH`).
    pub max_batch: usize,
    /// A node further behind than this many sequence numbers gets a full state instead of a
    /// replay.
    pub max_replay: u64,
    /// A node that does not accept a frame within this time is disconnected.
    pub write_timeout: Duration,
    /// Time allowed for the TLS handshake and the first `Subscribe`.
    pub handshake_timeout: Duration,
    /// QUIC idle timeout (a node that vanishes is noticed after this).
    pub idle_timeout: Duration,
}

impl PublisherConfig {
    pub fn new(listen: SocketAddr, cluster_dir: PathBuf) -> Self {
        PublisherConfig {
            listen,
            cluster_dir,
            snapshot_id: String::new(),
            heartbeat: Duration::from_millis(500),
            max_nodes: 64,
            queue_frames: 256,
            max_batch: wire::MAX_BATCH,
            max_replay: 2_000_000,
            write_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error(transparent)]
    Certs(#[from] certs::CertsError),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on {addr} (UDP): {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub nodes_connected: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// TLS handshakes that failed (no, bad or foreign certificate) or timed out.
    pub handshakes_refused: AtomicU64,
    pub nodes_refused_limit: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub frames_sent: AtomicU64,
    pub entries_sent: AtomicU64,
    pub full_states_sent: AtomicU64,
    /// Full states sent because the node's position is in another outbox history than
    /// bookd's (its token differs or is no longer known).
    pub history_mismatches: AtomicU64,
    pub replays: AtomicU64,
    /// Frames dropped for a node whose queue was full (the node then catches up).
    pub queue_overflows: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub feed_errors: AtomicU64,
    /// Newest seq the fan-out has published.
    pub published_seq: AtomicU64,
}

impl PublisherStats {
    /// Prometheus text lines (`bookd_quic_*`).
    pub fn render_prometheus(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, u64); 14] = [
            (
                "bookd_quic_nodes_connected",
                "gauge",
                "searchd nodes subscribed now",
                g(&self.nodes_connected),
            ),
            (
                "bookd_quic_connections_accepted_total",
                "counter",
                "QUIC connections with a valid certificate",
                g(&self.connections_accepted),
            ),
            (
                "bookd_quic_handshakes_refused_total",
                "counter",
                "QUIC handshakes refused (certificate) or timed out",
                g(&self.handshakes_refused),
            ),
            (
                "bookd_quic_nodes_refused_limit_total",
                "counter",
                "nodes refused by the node limit",
                g(&self.nodes_refused_limit),
            ),
            (
                "bookd_quic_protocol_errors_total",
                "counter",
                "connections closed for a malformed or unexpected frame",
                g(&self.protocol_errors),
            ),
            (
                "bookd_quic_frames_sent_total",
                "counter",
                "frames written to nodes",
                g(&self.frames_sent),
            ),
            (
                "bookd_quic_entries_sent_total",
                "counter",
                "seat entries written to nodes",
                g(&self.entries_sent),
            ),
            (
                "bookd_quic_full_states_sent_total",
                "counter",
                "full states sent to nodes",
                g(&self.full_states_sent),
            ),
            (
                "bookd_quic_history_mismatches_total",
                "counter",
                "full states sent to nodes whose position is in another outbox history",
                g(&self.history_mismatches),
            ),
            (
                "bookd_quic_replays_total",
                "counter",
                "subscriptions served by an outbox replay",
                g(&self.replays),
            ),
            (
                "bookd_quic_queue_overflows_total",
                "counter",
                "frames dropped for a node whose queue was full",
                g(&self.queue_overflows),
            ),
            (
                "bookd_quic_slow_disconnects_total",
                "counter",
                "nodes disconnected for not reading",
                g(&self.slow_disconnects),
            ),
            (
                "bookd_quic_feed_errors_total",
                "counter",
                "errors reading the outbox",
                g(&self.feed_errors),
            ),
            (
                "bookd_quic_published_seq",
                "gauge",
                "newest outbox seq fanned out",
                g(&self.published_seq),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, v) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        out
    }
}

/// One encoded `Updates` frame shared by every node queue.
struct LiveFrame {
    from: u64,
    to: u64,
    /// The token at `from - 1` as the fan-out read it (`None`: not known).
    from_token: Option<u64>,
    /// The frame's `to_token`.
    to_token: u64,
    entries: u64,
    bytes: Vec<u8>,
}

struct NodeSlot {
    tx: mpsc::Sender<Arc<LiveFrame>>,
    behind: Arc<AtomicBool>,
}

struct Shared {
    config: PublisherConfig,
    stats: Arc<PublisherStats>,
    nodes: Mutex<HashMap<u64, NodeSlot>>,
    next_id: AtomicU64,
    snapshot: watch::Sender<String>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn node_count(&self) -> usize {
        match self.nodes.lock() {
            Ok(n) => n.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    fn with_nodes<R>(&self, f: impl FnOnce(&mut HashMap<u64, NodeSlot>) -> R) -> R {
        match self.nodes.lock() {
            Ok(mut n) => f(&mut n),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

/// Installs ring as the process-wide rustls provider (harmless when one is installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The QUIC server configuration: bookd's certificate, client certificates required and
/// checked against the cluster CA only.
pub fn server_config(config: &PublisherConfig) -> Result<quinn::ServerConfig, QuicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = certs::load_ca(&config.cluster_dir)?;
    let (chain, key) = certs::load_identity(&config.cluster_dir, certs::BOOKD_NAME)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| {
        QuicError::Tls(format!(
            "{}: {e}",
            config.cluster_dir.join(certs::CA_CERT_FILE).display()
        ))
    })?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| QuicError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| QuicError::Tls(format!("bookd certificate: {e}")))?;
    tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicError::Tls(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .keep_alive_interval(Some(Duration::from_secs(1)));
    if let Ok(t) = quinn::IdleTimeout::try_from(config.idle_timeout) {
        transport.max_idle_timeout(Some(t));
    }
    sc.transport_config(Arc::new(transport));
    sc.max_incoming(config.max_nodes.saturating_mul(2).max(8));
    Ok(sc)
}

/// A running publisher. Dropping it does not stop it; call `shutdown`.
pub struct Publisher {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    tasks: AsyncMutex<JoinSet<()>>,
}

impl Publisher {
    /// Binds the UDP socket and starts accepting nodes and fanning out `feed`'s changes.
    pub async fn start<F: InventoryFeed>(
        config: PublisherConfig,
        feed: Arc<F>,
    ) -> Result<Publisher, QuicError> {
        install_crypto_provider();
        let sc = server_config(&config)?;
        let endpoint =
            quinn::Endpoint::server(sc, config.listen).map_err(|cause| QuicError::Bind {
                addr: config.listen,
                cause,
            })?;
        let (snapshot, _) = watch::channel(config.snapshot_id.clone());
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            stats: Arc::new(PublisherStats::default()),
            nodes: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            snapshot,
            shutdown,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(fanout(shared.clone(), feed.clone()));
        tasks.spawn(accept_loop(endpoint.clone(), shared.clone(), feed));
        tracing::info!(
            addr = %endpoint.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "invalidation publisher listening (QUIC)"
        );
        Ok(Publisher {
            endpoint,
            shared,
            tasks: AsyncMutex::new(tasks),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    pub fn stats(&self) -> Arc<PublisherStats> {
        self.shared.stats.clone()
    }

    pub fn nodes_connected(&self) -> usize {
        self.shared.node_count()
    }

    /// Announces a new snapshot: every node gets `SnapshotPublished` (so it reloads) and then
    /// a full state under the new id.
    pub fn publish_snapshot(&self, snapshot_id: &str) {
        self.announcer().publish_snapshot(snapshot_id);
    }

    /// A handle that announces snapshots from another task (bookd's snapshot watcher).
    pub fn announcer(&self) -> Announcer {
        Announcer {
            shared: self.shared.clone(),
        }
    }

    /// Closes every connection and stops the tasks.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        self.endpoint
            .close(codes::SHUTDOWN.into(), b"bookd shutting down");
        let mut tasks = self.tasks.lock().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tasks.abort_all();
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Announces snapshots to every node of a running [`Publisher`] (cheap to clone).
#[derive(Clone)]
pub struct Announcer {
    shared: Arc<Shared>,
}

impl Announcer {
    /// See [`Publisher::publish_snapshot`]. Announcing the id already announced does nothing
    /// (a node is only sent what differs from the state it was sent under).
    pub fn publish_snapshot(&self, snapshot_id: &str) {
        let id: String = snapshot_id
            .chars()
            .take(wire::MAX_SNAPSHOT_ID_LEN)
            .collect();
        self.shared.snapshot.send_replace(id);
    }

    /// The snapshot id nodes are synced under.
    pub fn snapshot_id(&self) -> String {
        self.shared.snapshot.borrow().clone()
    }
}

/// Resolves when the shutdown flag turns true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One read of the feed after `after`.
struct Batch {
    /// The batch covers `after + 1 ..= to` (`to` is the last change read when the read was
    /// full, else at least the watermark read before the query).
    to: u64,
    /// The read returned as many changes as asked (rows the feed skipped included): there
    /// may be more right away.
    full: bool,
    /// The token at `after` (see [`Changes::after_token`]).
    after_token: Option<u64>,
    /// The token at `to`: the last change read's, else the one at `after`.
    to_token: Option<u64>,
    entries: Vec<Entry>,
}

/// Reads changes after `after`. `None`: the outbox no longer holds everything after `after`.
/// A feed that breaks its ordering contract is an error (its tokens would not say where
/// the batch ends).
async fn read_batch<F: InventoryFeed>(
    feed: &F,
    after: u64,
    limit: usize,
) -> Result<Option<Batch>, FeedError> {
    let watermark = feed.current_seq();
    let Some(changes) = feed.changes_after(after, limit).await? else {
        return Ok(None);
    };
    let Changes {
        entries,
        after_token,
        last_token,
        last_seq,
        rows_read,
    } = changes;
    if rows_read > limit || entries.len() > rows_read {
        return Err(format!(
            "the feed returned {} changes of {rows_read} read after seq {after}, {limit} at most were asked",
            entries.len()
        )
        .into());
    }
    let mut prev = after;
    for e in &entries {
        if e.seq < prev || e.seq <= after {
            return Err(format!(
                "the feed returned seq {} after seq {prev} (changes after seq {after} ascend)",
                e.seq
            )
            .into());
        }
        prev = e.seq;
    }
    let last_entry = entries.last().map_or(after, |e| e.seq);
    let last = last_seq.unwrap_or(after);
    if last < last_entry || (rows_read > 0) != last_seq.is_some() {
        return Err(format!(
            "the feed read {rows_read} changes up to seq {last_seq:?} after seq {after} but returned seq {last_entry}"
        )
        .into());
    }
    // Only a read that came back short of `limit` shows that nothing lies between its end
    // and the watermark; `rows_read`, not `entries`, says so (a skipped row is not a change
    // the node needs, but the rows after it are).
    let to = if rows_read >= limit {
        last
    } else {
        last.max(watermark)
    };
    Ok(Some(Batch {
        to: to.max(after),
        full: rows_read >= limit,
        after_token,
        to_token: last_token.or(after_token),
        entries,
    }))
}

/// Reads the feed once per change and puts each encoded batch in every node's queue.
async fn fanout<F: InventoryFeed>(shared: Arc<Shared>, feed: Arc<F>) {
    let mut seq_rx = feed.watch_seq();
    let mut shutdown = shared.shutdown.subscribe();
    let limit = shared.config.max_batch.clamp(1, wire::MAX_BATCH);
    let mut pos = feed.current_seq();
    // The token at `pos` (learnt from the first read).
    let mut pos_token: Option<u64> = None;
    shared.stats.published_seq.store(pos, Ordering::Relaxed);
    loop {
        // Drain everything up to the watermark (bounded per wake-up; the rest next round).
        for _ in 0..1024 {
            match read_batch(&*feed, pos, limit).await {
                Ok(Some(batch)) => {
                    if let (Some(had), Some(now)) = (pos_token, batch.after_token) {
                        if had != now {
                            // bookd's database went back to another history under the
                            // fan-out's position (a failover that lost commits): what nodes
                            // hold up to here may be of the lost one. Each checks its own
                            // position against the outbox.
                            tracing::warn!(
                                seq = pos,
                                "the outbox is another history at the fan-out position; nodes resync"
                            );
                            mark_all_behind(&shared);
                        }
                    }
                    pos_token = batch.after_token.or(pos_token);
                    let Batch {
                        to,
                        full,
                        to_token,
                        entries,
                        ..
                    } = batch;
                    if to <= pos {
                        break;
                    }
                    let n = entries.len() as u64;
                    let Some(to_token) = to_token.or(pos_token) else {
                        // The feed cannot say which history this batch ends in: nodes
                        // catch up from the feed (which sends them full states).
                        tracing::warn!(
                            after = pos,
                            "the outbox does not say its history token here; nodes resync"
                        );
                        mark_all_behind(&shared);
                        pos = to;
                        shared.stats.published_seq.store(pos, Ordering::Relaxed);
                        break;
                    };
                    let msg = Message::Updates(Updates {
                        from_seq: pos + 1,
                        to_seq: to,
                        to_token,
                        entries,
                    });
                    match wire::encode_frame(&msg) {
                        Ok(bytes) => broadcast(
                            &shared,
                            Arc::new(LiveFrame {
                                from: pos + 1,
                                to,
                                from_token: pos_token,
                                to_token,
                                entries: n,
                                bytes,
                            }),
                        ),
                        Err(e) => {
                            // Cannot happen with valid feed data; nodes catch up by themselves.
                            tracing::error!(error = %e, "cannot encode an update batch; nodes will catch up from the outbox");
                            mark_all_behind(&shared);
                        }
                    }
                    pos = to;
                    pos_token = Some(to_token);
                    shared.stats.published_seq.store(pos, Ordering::Relaxed);
                    if !full {
                        break;
                    }
                }
                Ok(None) => {
                    // Pruned past the fan-out's position: every node catches up on its own.
                    tracing::warn!(
                        after = pos,
                        "outbox pruned past the fan-out position; nodes resync"
                    );
                    pos = feed.current_seq();
                    pos_token = None;
                    mark_all_behind(&shared);
                    break;
                }
                Err(e) => {
                    shared.stats.feed_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "reading the outbox failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = stopped(&mut shutdown) => return,
                    }
                    break;
                }
            }
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            r = seq_rx.changed() => {
                if r.is_err() {
                    // The feed is gone: poll slowly instead.
                    tokio::time::sleep(shared.config.heartbeat).await;
                }
            }
            _ = tokio::time::sleep(shared.config.heartbeat) => {}
            _ = stopped(&mut shutdown) => return,
        }
    }
}

fn broadcast(shared: &Shared, frame: Arc<LiveFrame>) {
    shared.with_nodes(|nodes| {
        nodes.retain(|_, slot| match slot.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                slot.behind.store(true, Ordering::Release);
                shared.stats.queue_overflows.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    });
}

fn mark_all_behind(shared: &Shared) {
    shared.with_nodes(|nodes| {
        for slot in nodes.values() {
            slot.behind.store(true, Ordering::Release);
        }
    });
}

async fn accept_loop<F: InventoryFeed>(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    feed: Arc<F>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut conns = JoinSet::new();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = stopped(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Some(incoming) = incoming else { break };
        if conns.len() >= shared.config.max_nodes.saturating_mul(2).max(8) {
            // Handshakes in flight are bounded too.
            incoming.refuse();
            shared
                .stats
                .nodes_refused_limit
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        conns.spawn(handle_incoming(incoming, shared.clone(), feed.clone()));
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Why a node's session ended.
enum End {
    /// The node closed its stream or connection.
    Gone,
    Shutdown,
    Protocol(String),
    TooSlow,
    Write(String),
    Feed(String),
}

async fn handle_incoming<F: InventoryFeed>(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    feed: Arc<F>,
) {
    let remote = incoming.remote_address();
    let cfg = &shared.config;
    let conn = match incoming.accept() {
        Ok(connecting) => match tokio::time::timeout(cfg.handshake_timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                shared
                    .stats
                    .handshakes_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%remote, error = %e, "refused a node: TLS handshake failed");
                return;
            }
            Err(_) => {
                shared
                    .stats
                    .handshakes_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%remote, "refused a node: handshake timed out");
                return;
            }
        },
        Err(e) => {
            shared
                .stats
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%remote, error = %e, "refused a connection");
            return;
        }
    };
    shared
        .stats
        .connections_accepted
        .fetch_add(1, Ordering::Relaxed);
    if shared.node_count() >= cfg.max_nodes {
        shared
            .stats
            .nodes_refused_limit
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%remote, max = cfg.max_nodes, "refused a node: too many nodes");
        conn.close(codes::TOO_MANY_NODES.into(), b"too many nodes");
        return;
    }
    let first = tokio::time::timeout(cfg.handshake_timeout, async {
        let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        match read_frame(&mut recv, &mut buf, MAX_NODE_FRAME).await {
            Ok(Some(Message::Subscribe(s))) => Ok((send, recv, s)),
            Ok(Some(other)) => Err(format!("expected subscribe, got {}", other.kind())),
            Ok(None) => Err("stream closed before subscribe".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let (send, recv, sub) = match first {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%remote, error = %e, "closing a node connection: bad first frame");
            conn.close(codes::PROTOCOL.into(), truncate_reason(&e));
            return;
        }
        Err(_) => {
            shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%remote, "closing a node connection: no subscribe in time");
            conn.close(codes::PROTOCOL.into(), b"no subscribe in time");
            return;
        }
    };
    if let Err(e) = check_node_name(&conn, &sub.node) {
        shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%remote, node = %sub.node, error = %e, "closing a node connection: subscribed under another name");
        conn.close(codes::PROTOCOL.into(), truncate_reason(&e));
        return;
    }
    let node = sub.node.clone();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(cfg.queue_frames.max(1));
    let behind = Arc::new(AtomicBool::new(false));
    // Checked again where the node is registered, under the lock: nodes whose handshakes
    // completed together all passed the check above before any of them subscribed.
    let admitted = shared.with_nodes(|nodes| {
        if nodes.len() >= cfg.max_nodes {
            return false;
        }
        nodes.insert(
            id,
            NodeSlot {
                tx,
                behind: behind.clone(),
            },
        );
        true
    });
    if !admitted {
        shared
            .stats
            .nodes_refused_limit
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%remote, node = %node, max = cfg.max_nodes, "refused a node: too many nodes");
        conn.close(codes::TOO_MANY_NODES.into(), b"too many nodes");
        return;
    }
    shared.stats.nodes_connected.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%remote, node = %node, last_applied_seq = sub.last_applied_seq, last_applied_token = sub.last_applied_token, snapshot_id = %sub.snapshot_id, "node subscribed");

    let (resub_tx, resub_rx) = mpsc::channel::<Subscribe>(1);
    let mut session = NodeSession {
        shared: shared.clone(),
        feed,
        send,
        rx,
        behind,
        resub_rx,
        node: node.clone(),
        delivered: 0,
        delivered_token: 0,
        node_snapshot: String::new(),
    };
    let end = tokio::select! {
        e = session.run(sub) => e,
        e = read_node(recv, resub_tx, &node) => e,
        e = conn.closed() => {
            tracing::debug!(node = %node, error = %e, "node connection closed");
            End::Gone
        }
    };
    shared.with_nodes(|nodes| nodes.remove(&id));
    shared.stats.nodes_connected.fetch_sub(1, Ordering::Relaxed);
    match end {
        End::Gone => tracing::info!(%remote, node = %node, "node disconnected"),
        End::Shutdown => conn.close(codes::SHUTDOWN.into(), b"bookd shutting down"),
        End::Protocol(e) => {
            shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%remote, node = %node, error = %e, "closing a node connection: protocol error");
            conn.close(codes::PROTOCOL.into(), truncate_reason(&e));
        }
        End::TooSlow => {
            shared
                .stats
                .slow_disconnects
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%remote, node = %node, "disconnecting a node that does not read; it will resubscribe");
            conn.close(codes::TOO_SLOW.into(), b"too slow");
        }
        End::Write(e) => tracing::info!(%remote, node = %node, error = %e, "node stream ended"),
        End::Feed(e) => {
            tracing::error!(%remote, node = %node, error = %e, "closing a node connection: outbox unreadable");
            conn.close(codes::INTERNAL.into(), b"outbox unreadable");
        }
    }
}

/// A node subscribes under the name its certificate was issued for (the certificate's DNS
/// name, as `certs::issue` writes it): another node's name is refused.
fn check_node_name(conn: &quinn::Connection, claimed: &str) -> Result<(), String> {
    let chain = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| "no peer certificate".to_string())?;
    let leaf = chain
        .first()
        .ok_or_else(|| "no peer certificate".to_string())?;
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("unreadable peer certificate: {e}"))?;
    let issued_for = match rustls::pki_types::ServerName::try_from(claimed) {
        Ok(name) => cert.verify_is_valid_for_subject_name(&name).is_ok(),
        // An all-numeric node name ("42") is a valid node name but not a DNS name webpki
        // matches: look for its dNSName subject alternative name ([2] IA5String) as
        // `certs::issue` encodes it.
        Err(_) => {
            let mut san = vec![0x82, claimed.len() as u8];
            san.extend_from_slice(claimed.as_bytes());
            claimed.len() < 0x80 && leaf.as_ref().windows(san.len()).any(|w| w == san)
        }
    };
    if issued_for {
        Ok(())
    } else {
        Err(format!(
            "subscribed as {claimed:?}, a name its certificate is not issued for"
        ))
    }
}

/// Largest frame a node may send (only `Subscribe` is expected).
const MAX_NODE_FRAME: usize = 16 * 1024;

fn truncate_reason(s: &str) -> &[u8] {
    let b = s.as_bytes();
    &b[..b.len().min(200)]
}

/// Reads the node's side of the stream: later `Subscribe`s restart the sync; anything else
/// is a protocol error.
async fn read_node(mut recv: quinn::RecvStream, resub: mpsc::Sender<Subscribe>, node: &str) -> End {
    let mut buf = Vec::new();
    loop {
        match read_frame(&mut recv, &mut buf, MAX_NODE_FRAME).await {
            Ok(Some(Message::Subscribe(s))) => {
                if s.node != node {
                    return End::Protocol(format!("node {node:?} resubscribed as {:?}", s.node));
                }
                if resub.send(s).await.is_err() {
                    return End::Gone;
                }
            }
            Ok(Some(other)) => {
                return End::Protocol(format!("unexpected {} from a node", other.kind()))
            }
            Ok(None) => {
                // The node finished its side; keep serving until the connection closes.
                std::future::pending::<()>().await;
            }
            Err(FrameError::Read(e)) => return End::Write(e),
            Err(FrameError::Wire(e)) => return End::Protocol(e.to_string()),
        }
    }
}

#[derive(Debug)]
pub(crate) enum FrameError {
    Read(String),
    Wire(wire::WireError),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Read(e) => write!(f, "read failed: {e}"),
            FrameError::Wire(e) => write!(f, "{e}"),
        }
    }
}

/// Reads one frame; `Ok(None)` when the stream ends cleanly between frames.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<Message>, FrameError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(FrameError::Wire(wire::WireError::Truncated { len: n }))
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(FrameError::Read(e.to_string())),
    }
    let len = wire::frame_len(prefix).map_err(FrameError::Wire)?;
    if len > max {
        return Err(FrameError::Wire(wire::WireError::Oversized { len, max }));
    }
    buf.clear();
    buf.resize(len, 0);
    match recv.read_exact(buf).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(FrameError::Wire(wire::WireError::Truncated { len: n }))
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(FrameError::Read(e.to_string())),
    }
    wire::decode_payload(buf)
        .map(Some)
        .map_err(FrameError::Wire)
}

struct NodeSession<F> {
    shared: Arc<Shared>,
    feed: Arc<F>,
    send: quinn::SendStream,
    rx: mpsc::Receiver<Arc<LiveFrame>>,
    behind: Arc<AtomicBool>,
    resub_rx: mpsc::Receiver<Subscribe>,
    node: String,
    /// Everything up to this seq has been written to the node.
    delivered: u64,
    /// The token at `delivered` in the history the node was sent (or subscribed with).
    delivered_token: u64,
    /// The snapshot id the node's state was sent under.
    node_snapshot: String,
}

impl<F: InventoryFeed> NodeSession<F> {
    async fn write(&mut self, bytes: &[u8], entries: u64) -> Result<(), End> {
        match tokio::time::timeout(self.shared.config.write_timeout, self.send.write_all(bytes))
            .await
        {
            Ok(Ok(())) => {
                self.shared
                    .stats
                    .frames_sent
                    .fetch_add(1, Ordering::Relaxed);
                self.shared
                    .stats
                    .entries_sent
                    .fetch_add(entries, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(End::Write(e.to_string())),
            Err(_) => Err(End::TooSlow),
        }
    }

    async fn write_msg(&mut self, msg: &Message) -> Result<(), End> {
        let entries = match msg {
            Message::Updates(u) => u.entries.len() as u64,
            Message::FullState(f) => f.entries.len() as u64,
            _ => 0,
        };
        let bytes =
            wire::encode_frame(msg).map_err(|e| End::Feed(format!("cannot encode: {e}")))?;
        self.write(&bytes, entries).await
    }

    /// Whether a subscription must start with a full state, as far as its seq and snapshot
    /// tell. Its history is checked by the replay's first read ([`NodeSession::catch_up`]):
    /// bookd's token at `last_applied_seq` comes with the rows after it, and a token other
    /// than `last_applied_token` (or none: that position is no longer known) turns the
    /// replay into a full state, with no read of its own.
    fn needs_full(&self, sub: &Subscribe) -> bool {
        let current = self.feed.current_seq();
        let snapshot = self.shared.snapshot.borrow().clone();
        sub.last_applied_seq == 0
            || sub.snapshot_id != snapshot
            || sub.last_applied_seq > current
            || current - sub.last_applied_seq > self.shared.config.max_replay
    }

    /// Starts serving a subscription: from the node's position when its seq and snapshot
    /// allow a replay (its history is checked by the first read), else with a full state.
    async fn start(&mut self, sub: &Subscribe) -> Result<(), End> {
        let full = self.needs_full(sub);
        if !full {
            self.delivered = sub.last_applied_seq;
            self.delivered_token = sub.last_applied_token;
            self.node_snapshot = sub.snapshot_id.clone();
        }
        self.catch_up(full).await
    }

    async fn send_full_state(&mut self) -> Result<(), End> {
        let snapshot = self.shared.snapshot.borrow().clone();
        let FullInventory {
            as_of,
            as_of_token,
            entries,
        } = self.feed.full_state().await.map_err(|e| {
            self.shared
                .stats
                .feed_errors
                .fetch_add(1, Ordering::Relaxed);
            End::Feed(e.to_string())
        })?;
        let batch = self.shared.config.max_batch.clamp(1, wire::MAX_BATCH);
        let total = entries.len().div_ceil(batch).max(1);
        if total > wire::MAX_CHUNKS as usize {
            return Err(End::Feed(format!(
                "full state of {} entries exceeds the protocol limit",
                entries.len()
            )));
        }
        let mut chunks = entries.chunks(batch);
        for chunk in 0..total {
            let part = chunks.next().unwrap_or(&[]);
            let msg = Message::FullState(FullState {
                as_of_seq: as_of,
                as_of_token,
                snapshot_id: snapshot.clone(),
                chunk: chunk as u32,
                total_chunks: total as u32,
                entries: part.iter().copied().filter(|e| e.seq <= as_of).collect(),
            });
            self.write_msg(&msg).await?;
        }
        self.shared
            .stats
            .full_states_sent
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(node = %self.node, as_of_seq = as_of, entries = entries.len(), "sent a full state");
        self.delivered = as_of;
        self.delivered_token = as_of_token;
        self.node_snapshot = snapshot;
        Ok(())
    }

    /// Brings the node up to the feed's watermark from the feed itself (not the queue).
    async fn catch_up(&mut self, mut full: bool) -> Result<(), End> {
        // Frames queued so far are superseded by what the feed returns.
        while self.rx.try_recv().is_ok() {}
        self.behind.store(false, Ordering::Release);
        let batch = self.shared.config.max_batch.clamp(1, wire::MAX_BATCH);
        let mut replayed = false;
        // Bounded: a node that cannot keep up with the feed this long gets the live queue
        // anyway and is marked behind again by the fan-out.
        for _ in 0..100_000 {
            let after_full = full;
            if full {
                self.send_full_state().await?;
                full = false;
            }
            match read_batch(&*self.feed, self.delivered, batch).await {
                Ok(None) => {
                    full = true;
                    continue;
                }
                Ok(Some(read)) => {
                    if read.after_token != Some(self.delivered_token) && after_full {
                        // Not another full state (and another): the feed gave a token at the
                        // head of its full state that it no longer gives there.
                        self.shared
                            .stats
                            .feed_errors
                            .fetch_add(1, Ordering::Relaxed);
                        return Err(End::Feed(format!(
                            "the outbox's history token at seq {} is {:?} right after a full \
                             state as of it gave {}",
                            self.delivered, read.after_token, self.delivered_token
                        )));
                    }
                    if read.after_token != Some(self.delivered_token) {
                        // What the node holds up to `delivered` is another history than the
                        // outbox's (bookd's database restored from a backup, or a failover
                        // that lost commits), or one the outbox no longer knows.
                        self.shared
                            .stats
                            .history_mismatches
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            node = %self.node,
                            seq = self.delivered,
                            node_token = self.delivered_token,
                            bookd_token = ?read.after_token,
                            "the node's position is in another outbox history; sending a full state"
                        );
                        full = true;
                        continue;
                    }
                    if read.to <= self.delivered {
                        break;
                    }
                    let is_full = read.full;
                    // `to_token` falls back to the token at `delivered`, checked just above.
                    let to_token = read.to_token.unwrap_or(self.delivered_token);
                    let msg = Message::Updates(Updates {
                        from_seq: self.delivered + 1,
                        to_seq: read.to,
                        to_token,
                        entries: read.entries,
                    });
                    self.write_msg(&msg).await?;
                    self.delivered = read.to;
                    self.delivered_token = to_token;
                    replayed = true;
                    if !is_full {
                        break;
                    }
                }
                Err(e) => {
                    self.shared
                        .stats
                        .feed_errors
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(End::Feed(e.to_string()));
                }
            }
        }
        if replayed {
            self.shared.stats.replays.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), End> {
        let msg = Message::Heartbeat {
            seq: self
                .delivered
                .max(self.shared.stats.published_seq.load(Ordering::Relaxed)),
            time_unix_ms: now_ms(),
        };
        self.write_msg(&msg).await
    }

    async fn run(&mut self, first: Subscribe) -> End {
        match self.run_inner(first).await {
            Ok(()) => End::Shutdown,
            Err(e) => e,
        }
    }

    async fn run_inner(&mut self, first: Subscribe) -> Result<(), End> {
        let mut shutdown = self.shared.shutdown.subscribe();
        let mut snapshot_rx = self.shared.snapshot.subscribe();
        snapshot_rx.borrow_and_update();
        let mut tick = tokio::time::interval(self.shared.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        self.start(&first).await?;
        self.heartbeat().await?;
        loop {
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return Ok(()),
                sub = self.resub_rx.recv() => {
                    let Some(sub) = sub else { return Err(End::Gone) };
                    tracing::info!(node = %self.node, last_applied_seq = sub.last_applied_seq, last_applied_token = sub.last_applied_token, "node resubscribed");
                    self.start(&sub).await?;
                }
                r = snapshot_rx.changed() => {
                    if r.is_ok() {
                        let id = snapshot_rx.borrow_and_update().clone();
                        if id != self.node_snapshot {
                            self.write_msg(&Message::SnapshotPublished { snapshot_id: id }).await?;
                            self.catch_up(true).await?;
                        }
                    }
                }
                frame = self.rx.recv() => {
                    let Some(frame) = frame else { return Err(End::Gone) };
                    if self.behind.load(Ordering::Acquire) {
                        self.catch_up(false).await?;
                        continue;
                    }
                    if frame.to <= self.delivered {
                        continue;
                    }
                    if frame.from > self.delivered + 1 {
                        // Frames this node never got (it joined or caught up in between).
                        self.catch_up(false).await?;
                        continue;
                    }
                    if frame.from == self.delivered + 1
                        && frame.from_token != Some(self.delivered_token)
                    {
                        // Read from another history than the node was sent up to here (or
                        // not known to be the same): the feed decides.
                        self.catch_up(false).await?;
                        continue;
                    }
                    self.write(&frame.bytes, frame.entries).await?;
                    self.delivered = frame.to;
                    self.delivered_token = frame.to_token;
                }
                _ = tick.tick() => {
                    if self.behind.load(Ordering::Acquire) {
                        self.catch_up(false).await?;
                    }
                    self.heartbeat().await?;
                }
            }
        }
    }
}

/// An in-memory feed: for tests, and for running the channel without PostgreSQL. Each
/// [`MemoryFeed::set_many`] (or `set`) call is one transaction with a fresh random history
/// token, so two feeds built by the same calls are two histories, as a database restored from
/// a backup and then written to is.
pub struct MemoryFeed {
    inner: Mutex<MemInner>,
    seq_tx: watch::Sender<u64>,
}

struct MemInner {
    seq: u64,
    /// The token of the newest change (0 before the first).
    token: u64,
    /// Retained changes with their tokens.
    log: std::collections::VecDeque<(Entry, u64)>,
    state: std::collections::BTreeMap<wire::LegKey, (u16, u64)>,
    /// Changes with seq <= floor may have been pruned.
    floor: u64,
    /// The token at `floor` (of the newest pruned change; 0 when none).
    floor_token: u64,
    retain: usize,
}

/// A fresh token for one `MemoryFeed` transaction: from the OS, else from std's randomly
/// keyed hasher (unique per call within a process), never 0.
fn memory_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut b = [0u8; 8];
    let token = match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish(),
    };
    token.max(1)
}

impl MemoryFeed {
    /// Keeps the last `retain` changes for replay.
    pub fn new(retain: usize) -> Self {
        let (seq_tx, _) = watch::channel(0);
        MemoryFeed {
            inner: Mutex::new(MemInner {
                seq: 0,
                token: 0,
                log: std::collections::VecDeque::new(),
                state: std::collections::BTreeMap::new(),
                floor: 0,
                floor_token: 0,
                retain: retain.max(1),
            }),
            seq_tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records new seat counts (one seq each, committed together under one fresh history
    /// token); returns the last seq.
    pub fn set_many(&self, changes: &[(wire::LegKey, u16)]) -> u64 {
        let token = memory_token();
        let seq = {
            let mut g = self.lock();
            for &(key, seats) in changes {
                g.seq += 1;
                let seq = g.seq;
                g.log.push_back((Entry { key, seats, seq }, token));
                g.state.insert(key, (seats, seq));
                g.token = token;
            }
            while g.log.len() > g.retain {
                if let Some((e, t)) = g.log.pop_front() {
                    g.floor = e.seq;
                    g.floor_token = t;
                }
            }
            g.seq
        };
        self.seq_tx.send_replace(seq);
        seq
    }

    pub fn set(&self, key: wire::LegKey, seats: u16) -> u64 {
        self.set_many(&[(key, seats)])
    }

    /// Consumes sequence numbers without a change (as a rolled back transaction does).
    pub fn skip(&self, n: u64) -> u64 {
        let seq = {
            let mut g = self.lock();
            g.seq += n;
            g.seq
        };
        self.seq_tx.send_replace(seq);
        seq
    }

    /// The newest seq and the token at it.
    pub fn head(&self) -> (u64, u64) {
        let g = self.lock();
        (g.seq, g.token)
    }

    /// The current seats of every tracked leg class.
    pub fn state(&self) -> std::collections::BTreeMap<wire::LegKey, u16> {
        self.lock()
            .state
            .iter()
            .map(|(k, &(s, _))| (*k, s))
            .collect()
    }
}

impl InventoryFeed for MemoryFeed {
    async fn changes_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<Changes>, FeedError> {
        let g = self.lock();
        if after_seq < g.floor {
            return Ok(None);
        }
        let start = g.log.partition_point(|(e, _)| e.seq <= after_seq);
        let after_token = match start.checked_sub(1).and_then(|i| g.log.get(i)) {
            Some(&(_, t)) => t,
            None => g.floor_token,
        };
        let mut entries = Vec::with_capacity(limit.min(g.log.len() - start));
        let mut last_token = None;
        for &(e, t) in g.log.iter().skip(start).take(limit) {
            entries.push(e);
            last_token = Some(t);
        }
        Ok(Some(Changes {
            last_seq: entries.last().map(|e| e.seq),
            rows_read: entries.len(),
            entries,
            after_token: Some(after_token),
            last_token,
        }))
    }

    async fn full_state(&self) -> Result<FullInventory, FeedError> {
        let g = self.lock();
        Ok(FullInventory {
            as_of: g.seq,
            as_of_token: g.token,
            entries: g
                .state
                .iter()
                .map(|(k, &(seats, seq))| Entry {
                    key: *k,
                    seats,
                    seq,
                })
                .collect(),
        })
    }

    fn current_seq(&self) -> u64 {
        self.lock().seq
    }

    fn watch_seq(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// A feed whose rows after any position are `after + 1 ..`, the first of them not a
    /// leg key (skipped: read, not returned), as the PostgreSQL feed does with such a row.
    struct SkippingFeed {
        seq: watch::Sender<u64>,
    }

    impl InventoryFeed for SkippingFeed {
        async fn changes_after(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Option<Changes>, FeedError> {
            let last = after + limit as u64;
            let key = wire::LegKey {
                carrier: *b"XX ",
                flight_number: 1,
                date: 0,
                origin: *b"RUN",
                booking_class: b'Y',
            };
            let entries = (after + 2..=last)
                .map(|seq| Entry { key, seats: 1, seq })
                .collect();
            Ok(Some(Changes {
                entries,
                after_token: Some(7),
                last_token: Some(7),
                last_seq: Some(last),
                rows_read: limit,
            }))
        }

        async fn full_state(&self) -> Result<FullInventory, FeedError> {
            Ok(FullInventory::default())
        }

        fn current_seq(&self) -> u64 {
            *self.seq.borrow()
        }

        fn watch_seq(&self) -> watch::Receiver<u64> {
            self.seq.subscribe()
        }
    }

    /// Regression: a read that skipped a row came back shorter than its limit, and was
    /// taken for "caught up": first to the watermark (the rows up to it were lost), then,
    /// with that fixed, as "nothing more now" (the rest waited for the next wake-up).
    #[tokio::test]
    async fn a_full_read_with_a_skipped_row_is_full_and_ends_at_its_last_row() {
        let feed = SkippingFeed {
            seq: watch::channel(100).0,
        };
        let batch = read_batch(&feed, 10, 4)
            .await
            .expect("read")
            .expect("retained");
        assert_eq!(batch.entries.len(), 3, "the skipped row is not an entry");
        assert_eq!(batch.to, 14, "up to the last row read, not the watermark");
        assert!(batch.full, "4 rows read of 4 asked: there may be more");
        assert_eq!(batch.to_token, Some(7));
    }
}
