//! The invalidation subscriber: keeps this node's live seat overlay equal to bookd's
//! inventory over QUIC (protocol in `format::wire`, publisher in `bookd::quic`).
//!
//! - Connects to bookd (`--bookd-quic ADDR`) with this node's certificate
//!   (`D/NAME.crt`, `D/NAME.key`), trusting only the cluster CA (`D/ca.crt`); bookd must
//!   present the certificate named `bookd`.
//! - Sends `Subscribe` with the last sequence number it applied (0 after a start: the overlay
//!   lives in memory, so a restarted node gets a full state) and the history token bookd
//!   gave with it (`Updates::to_token`, `FullState::as_of_token`): bookd replays only when
//!   its outbox is still the same history there, so a node that was away while bookd's
//!   database was restored from a backup gets a full state. Nothing is persisted.
//! - Keeps bookd's state keyed by leg (`LegKey`: carrier, flight number, local date, origin,
//!   booking class), independent of snapshot positions, and projects it into the overlay of
//!   the snapshot in service (`avail_key` through `carrier_id`, `airport_id`, `find_leg`).
//!   Entries the snapshot has no leg for are kept (a later snapshot may have it) and counted.
//!   A new snapshot is filled with the whole state before its swap ([`Core::fill`]), and the
//!   swap itself ([`Core::swap_in`]) adds what changed since under the state lock, so no
//!   change reaches the old snapshot alone and a new snapshot never resurrects seats bookd
//!   sold; an entry leaves the overlay only when bookd's full state no longer has it.
//! - `Updates` must follow what was applied (`from_seq <= last + 1`); a gap closes the
//!   connection and resubscribes at once (bookd replays the missing range). A `FullState`
//!   replaces the state atomically when its last chunk arrives.
//! - A connection that fails, or goes silent longer than `silence_timeout`, is retried with
//!   exponential backoff and jitter. A malformed, oversized or unknown-version frame is
//!   refused (counted, logged) and the connection closed.
//! - `SubscriberStatus` tells `/readyz` whether the node is in sync and `/metrics` its last
//!   applied seq, lag, reconnects and refused frames.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use format::wire::{self, Entry, FullState, LegKey, Message, Subscribe, Updates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::overlay::{KeyHasher, Overlay};

/// Application close codes (the same numbers as bookd's `quic::codes`).
pub mod codes {
    pub const SHUTDOWN: u32 = 0;
    pub const PROTOCOL: u32 = 1;
    pub const RESYNC: u32 = 4;
}

/// A snapshot in service with its overlay, as the subscriber writes to it.
pub trait LiveView: Send + Sync + 'static {
    /// Identifies this snapshot among all loaded (also one filled but never swapped in):
    /// overlay keys cached for one are used for no other.
    fn generation(&self) -> u64;
    /// The overlay key of a leg class in this snapshot, if the snapshot has that leg.
    fn resolve(&self, key: &LegKey) -> Option<u64>;
    fn overlay(&self) -> &Overlay;
}

/// Where the subscriber finds the snapshot in service.
pub trait OverlayTarget: Send + Sync + 'static {
    type View: LiveView;
    fn current(&self) -> Arc<Self::View>;
}

/// The overlay key of `key` in a snapshot: `None` when the snapshot has no such carrier,
/// airport or dated leg. `key.carrier` is space padded, as in the snapshot.
pub fn resolve_leg(snap: &format::Snapshot, key: &LegKey) -> Option<u64> {
    let network = snap.network.get();
    let carrier = network.carrier_id(&key.carrier)?;
    let origin = snap.places.get().airport_id(&key.origin)?;
    let (flight, leg, day) = network.find_leg(carrier, key.flight_number, origin, key.date)?;
    Some(format::model::avail_key(
        flight,
        leg,
        day,
        key.booking_class,
    ))
}

impl LiveView for crate::server::state::Loaded {
    // Not `Loaded::generation` (the swap count, shared by a snapshot whose reload was
    // abandoned after its fill and the next one loaded): unique per load.
    #[allow(clippy::misnamed_getters)]
    fn generation(&self) -> u64 {
        self.view_id
    }
    fn resolve(&self, key: &LegKey) -> Option<u64> {
        resolve_leg(&self.snap, key)
    }
    fn overlay(&self) -> &Overlay {
        &self.overlay
    }
}

impl OverlayTarget for crate::server::state::SnapshotCell {
    type View = crate::server::state::Loaded;
    fn current(&self) -> Arc<Self::View> {
        crate::server::state::SnapshotCell::current(self)
    }
}

/// Subscriber settings; `SubscriberConfig::new` gives the defaults.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// bookd's QUIC address (`host:port`), resolved at every connection attempt.
    pub bookd: String,
    pub cluster_dir: PathBuf,
    /// This node's name (its certificate is `D/NAME.crt`).
    pub name: String,
    /// The name bookd's certificate must carry.
    pub server_name: String,
    /// No frame for this long (bookd heartbeats every 500 ms by default): reconnect.
    pub silence_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Most leg classes held (a full state over this is refused).
    pub max_state_entries: usize,
    /// How often the snapshot in service is checked for a swap.
    pub refresh_interval: Duration,
}

impl SubscriberConfig {
    pub fn new(
        bookd: impl Into<String>,
        cluster_dir: impl Into<PathBuf>,
        name: impl Into<String>,
    ) -> Self {
        SubscriberConfig {
            bookd: bookd.into(),
            cluster_dir: cluster_dir.into(),
            name: name.into(),
            server_name: "bookd".to_string(),
            silence_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_state_entries: 20_000_000,
            refresh_interval: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error("--name {0:?}: must be 1 to 64 characters of a-z, 0-9 and -")]
    InvalidName(String),
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Counters and state for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct SubscriberStatus {
    pub connected: AtomicBool,
    /// The state has a base (a full state or a replay) on the current connection.
    pub synced: AtomicBool,
    pub last_applied_seq: AtomicU64,
    /// bookd's newest seq as last heard (heartbeats and updates).
    pub bookd_seq: AtomicU64,
    /// Unix ms of the last frame from bookd.
    pub last_frame_unix_ms: AtomicU64,
    pub reconnects: AtomicU64,
    pub frames_refused: AtomicU64,
    pub gaps: AtomicU64,
    pub full_states: AtomicU64,
    pub entries_applied: AtomicU64,
    pub state_entries: AtomicU64,
    /// State entries the snapshot in service has no leg for.
    pub unmapped_entries: AtomicU64,
    pub snapshots_published: AtomicU64,
    silence_ms: AtomicU64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SubscriberStatus {
    /// Connected, with a base state, and heard from bookd within the silence timeout.
    pub fn in_sync(&self) -> bool {
        let silence = self.silence_ms.load(Ordering::Relaxed).max(1);
        self.connected.load(Ordering::Relaxed)
            && self.synced.load(Ordering::Relaxed)
            && unix_ms().saturating_sub(self.last_frame_unix_ms.load(Ordering::Relaxed)) <= silence
    }

    /// bookd's newest seq minus the last one applied here.
    pub fn lag_seq(&self) -> u64 {
        self.bookd_seq
            .load(Ordering::Relaxed)
            .saturating_sub(self.last_applied_seq.load(Ordering::Relaxed))
    }

    /// Milliseconds since the last frame from bookd (0 when none yet).
    pub fn since_last_frame_ms(&self) -> u64 {
        let last = self.last_frame_unix_ms.load(Ordering::Relaxed);
        if last == 0 {
            0
        } else {
            unix_ms().saturating_sub(last)
        }
    }

    /// Prometheus text lines (`searchd_invalidation_*`).
    pub fn render_prometheus(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, u64); 14] = [
            (
                "searchd_invalidation_connected",
                "gauge",
                "1 when connected to bookd",
                u64::from(self.connected.load(Ordering::Relaxed)),
            ),
            (
                "searchd_invalidation_in_sync",
                "gauge",
                "1 when the overlay follows bookd",
                u64::from(self.in_sync()),
            ),
            (
                "searchd_invalidation_last_applied_seq",
                "gauge",
                "last outbox seq applied",
                g(&self.last_applied_seq),
            ),
            (
                "searchd_invalidation_bookd_seq",
                "gauge",
                "newest outbox seq heard from bookd",
                g(&self.bookd_seq),
            ),
            (
                "searchd_invalidation_lag_seq",
                "gauge",
                "bookd seq minus last applied seq",
                self.lag_seq(),
            ),
            (
                "searchd_invalidation_since_last_frame_ms",
                "gauge",
                "milliseconds since the last frame from bookd",
                self.since_last_frame_ms(),
            ),
            (
                "searchd_invalidation_reconnects_total",
                "counter",
                "reconnections to bookd",
                g(&self.reconnects),
            ),
            (
                "searchd_invalidation_frames_refused_total",
                "counter",
                "malformed, oversized or unexpected frames refused",
                g(&self.frames_refused),
            ),
            (
                "searchd_invalidation_gaps_total",
                "counter",
                "sequence gaps detected (each triggers a resync)",
                g(&self.gaps),
            ),
            (
                "searchd_invalidation_full_states_total",
                "counter",
                "full states applied",
                g(&self.full_states),
            ),
            (
                "searchd_invalidation_entries_applied_total",
                "counter",
                "seat entries applied",
                g(&self.entries_applied),
            ),
            (
                "searchd_invalidation_state_entries",
                "gauge",
                "leg classes held from bookd",
                g(&self.state_entries),
            ),
            (
                "searchd_invalidation_unmapped_entries",
                "gauge",
                "held leg classes the snapshot in service has no leg for",
                g(&self.unmapped_entries),
            ),
            (
                "searchd_invalidation_snapshots_published_total",
                "counter",
                "snapshot publications announced by bookd",
                g(&self.snapshots_published),
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

/// What a message asks of the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// A gap: resubscribe (bookd replays from the last applied seq).
    Resync,
}

/// A refused message (the connection is closed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Refused(pub String);

/// Leg class -> (seats, seq). Hashed with the overlay's multiply-xorshift hasher, not
/// SipHash: at 50,000 changes/s SipHash and the second lookup per change were a third of
/// the subscriber's CPU (BENCHMARKS.md §21), time taken from the searches on the same cores.
/// The keys come from bookd over mutually authenticated TLS, so flooding is not a concern.
type Entries = HashMap<LegKey, Held, BuildHasherDefault<KeyHasher>>;

/// One leg class of bookd's state.
#[derive(Debug, Clone, Copy)]
struct Held {
    seats: u16,
    seq: u64,
    /// Its overlay key in the snapshot of generation [`State::keys_of`], [`UNMAPPED`] when
    /// that snapshot has no such leg, [`NOT_RESOLVED`] until looked up. Finding a leg scans
    /// the flight's periods: at 50,000 changes/s that was a quarter of the stream's CPU
    /// (BENCHMARKS.md §28), though a change mostly repeats a leg class already held.
    key: u64,
}

const NOT_RESOLVED: u64 = u64::MAX;
const UNMAPPED: u64 = u64::MAX - 1;

impl Held {
    fn new(seats: u16, seq: u64) -> Held {
        Held {
            seats,
            seq,
            key: NOT_RESOLVED,
        }
    }
}

/// `key` resolved in `view` as [`Held::key`] holds it.
fn resolve_held<V: LiveView>(view: &V, key: &LegKey) -> u64 {
    match view.resolve(key) {
        Some(k) => {
            debug_assert!(k < UNMAPPED, "overlay keys stay below the sentinels");
            k
        }
        None => UNMAPPED,
    }
}

/// bookd's state as this node holds it, projected into the snapshot in service.
struct State {
    entries: Entries,
    last_applied: u64,
    /// The history token at `last_applied`, as bookd sent it.
    last_token: u64,
    snapshot_id: String,
    /// Generation of the view whose overlay holds the projection.
    projected: Option<u64>,
    /// Generation of the view the entries' cached overlay keys belong to.
    keys_of: Option<u64>,
    unmapped: u64,
    /// A snapshot filled ([`Core::fill`]) and not swapped in yet, with what changed since.
    filled: Option<Filled>,
}

/// What changed in the state since a snapshot waiting for its swap was filled: the swap
/// ([`Core::swap_in`]) applies it before that snapshot serves.
struct Filled {
    generation: u64,
    /// Leg classes changed since the fill (in the state's entries).
    changed: Vec<LegKey>,
    /// Too much changed (a full state, or more keys than worth keeping): project it whole.
    whole: bool,
}

impl Filled {
    /// Most changed keys kept before the swap projects the whole state instead.
    const MAX_CHANGED: usize = 1 << 20;

    fn note(&mut self, key: LegKey) {
        if self.whole {
            return;
        }
        if self.changed.len() >= Self::MAX_CHANGED {
            self.whole = true;
            self.changed = Vec::new();
        } else {
            self.changed.push(key);
        }
    }
}

/// A full state being received (per connection).
pub struct Pending {
    as_of: u64,
    as_of_token: u64,
    snapshot_id: String,
    total: u32,
    next: u32,
    entries: Vec<Entry>,
}

/// The message-applying core, independent of the network (unit-testable).
pub struct Core<T: OverlayTarget> {
    target: Arc<T>,
    state: Mutex<State>,
    status: Arc<SubscriberStatus>,
    max_state_entries: usize,
    published: watch::Sender<Option<String>>,
}

impl<T: OverlayTarget> Core<T> {
    pub fn new(target: Arc<T>, max_state_entries: usize) -> Self {
        let (published, _) = watch::channel(None);
        Core {
            target,
            state: Mutex::new(State {
                entries: Entries::default(),
                last_applied: 0,
                last_token: 0,
                snapshot_id: String::new(),
                projected: None,
                keys_of: None,
                unmapped: 0,
                filled: None,
            }),
            status: Arc::new(SubscriberStatus::default()),
            max_state_entries,
            published,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn status(&self) -> Arc<SubscriberStatus> {
        self.status.clone()
    }

    /// The subscription to send: last applied seq, its history token and snapshot id.
    pub fn subscribe(&self, node: &str) -> Subscribe {
        let st = self.lock();
        Subscribe {
            node: node.to_string(),
            last_applied_seq: st.last_applied,
            last_applied_token: st.last_token,
            snapshot_id: st.snapshot_id.clone(),
        }
    }

    /// bookd's state as held here: leg class -> (seats, seq).
    pub fn entries(&self) -> HashMap<LegKey, (u16, u64)> {
        self.lock()
            .entries
            .iter()
            .map(|(k, h)| (*k, (h.seats, h.seq)))
            .collect()
    }

    pub fn last_applied(&self) -> u64 {
        self.lock().last_applied
    }

    /// The history token at the last applied seq (0: none yet).
    pub fn last_applied_token(&self) -> u64 {
        self.lock().last_token
    }

    /// Projects the whole state into `view`'s overlay (one atomic replace).
    fn project_all(&self, st: &mut State, view: &T::View) {
        let mut map = HashMap::with_capacity(st.entries.len());
        let mut unmapped = 0u64;
        let generation = view.generation();
        // `fill` resolved every key for this view already when it was loaded.
        let reuse = st.keys_of == Some(generation);
        for (k, h) in st.entries.iter_mut() {
            if !reuse || h.key == NOT_RESOLVED {
                h.key = resolve_held(view, k);
            }
            if h.key == UNMAPPED {
                unmapped += 1;
            } else {
                map.insert(h.key, h.seats);
            }
        }
        st.keys_of = Some(generation);
        view.overlay().replace(map);
        // Its overlay now holds the whole state: nothing left for its swap to add.
        if st
            .filled
            .as_ref()
            .is_some_and(|f| f.generation == generation)
        {
            st.filled = None;
        }
        st.unmapped = unmapped;
        self.status
            .unmapped_entries
            .store(unmapped, Ordering::Relaxed);
        self.status
            .state_entries
            .store(st.entries.len() as u64, Ordering::Relaxed);
    }

    /// Fills `view`'s overlay with the whole state: call it on a freshly loaded snapshot
    /// before swapping it in (with [`Core::swap_in`]), so it never serves without bookd's
    /// figures. Done on the loading thread: the swap then only adds what changed since.
    pub fn fill(&self, view: &T::View) {
        let mut st = self.lock();
        self.project_all(&mut st, view);
        st.filled = Some(Filled {
            generation: view.generation(),
            changed: Vec::new(),
            whole: false,
        });
    }

    /// Swaps `view` in (`swap` puts it in service) with no change applied in between:
    /// under the state lock, the changes since its [`Core::fill`] (or, without one, the
    /// whole state) go into its overlay, then `swap` runs, and later changes are applied to
    /// it. A change applied to the old snapshot before the swap is never missing from the
    /// new one, not even until the next [`Core::refresh`] (which would resurrect seats
    /// bookd sold).
    pub fn swap_in(&self, view: &T::View, swap: impl FnOnce()) {
        let mut st = self.lock();
        let generation = view.generation();
        match st.filled.take() {
            Some(f) if f.generation == generation && !f.whole && st.keys_of == Some(generation) => {
                let mut pairs = Vec::with_capacity(f.changed.len());
                for k in &f.changed {
                    if let Some(h) = st.entries.get_mut(k) {
                        if h.key == NOT_RESOLVED {
                            h.key = resolve_held(view, k);
                        }
                        if h.key != UNMAPPED {
                            pairs.push((h.key, h.seats));
                        }
                    }
                }
                view.overlay().apply(&pairs);
            }
            _ => self.project_all(&mut st, view),
        }
        swap();
        st.projected = Some(generation);
    }

    /// Re-projects when another snapshot is in service; returns whether it did.
    pub fn refresh(&self) -> bool {
        let mut st = self.lock();
        // Read under the lock: a swap ([`Core::swap_in`]) cannot slip in between.
        let view = self.target.current();
        if st.projected == Some(view.generation()) {
            return false;
        }
        self.project_all(&mut st, &view);
        st.projected = Some(view.generation());
        true
    }

    /// Applies one message from bookd.
    pub fn handle(&self, msg: Message, pending: &mut Option<Pending>) -> Result<Step, Refused> {
        self.status
            .last_frame_unix_ms
            .store(unix_ms(), Ordering::Relaxed);
        if pending.is_some() && !matches!(msg, Message::FullState(_)) {
            return Err(Refused(format!(
                "{} in the middle of a full state",
                msg.kind()
            )));
        }
        match msg {
            Message::Subscribe(_) => Err(Refused("subscribe from bookd".into())),
            Message::Heartbeat { seq, .. } => {
                // bookd's head as of now, not a running maximum: after bookd came back from
                // a backup its head is lower than the one heard before.
                self.status.bookd_seq.store(seq, Ordering::Relaxed);
                self.status.synced.store(true, Ordering::Relaxed);
                Ok(Step::Continue)
            }
            Message::SnapshotPublished { snapshot_id } => {
                self.status
                    .snapshots_published
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(snapshot_id = %snapshot_id, "bookd published a snapshot");
                self.published.send_replace(Some(snapshot_id));
                Ok(Step::Continue)
            }
            Message::Updates(u) => self.apply_updates(u),
            Message::FullState(f) => self.full_state_chunk(f, pending),
        }
    }

    fn apply_updates(&self, u: Updates) -> Result<Step, Refused> {
        self.status.bookd_seq.fetch_max(u.to_seq, Ordering::Relaxed);
        let mut st = self.lock();
        // Read under the lock: a snapshot swapped in after this read would miss the batch.
        let view = self.target.current();
        if u.from_seq > st.last_applied.saturating_add(1) {
            self.status.gaps.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                last_applied = st.last_applied,
                from_seq = u.from_seq,
                "gap in the invalidation stream; resyncing"
            );
            return Ok(Step::Resync);
        }
        if u.to_seq <= st.last_applied {
            return Ok(Step::Continue);
        }
        let last = st.last_applied;
        let generation = view.generation();
        let in_place = st.projected == Some(generation);
        let cached = st.keys_of == Some(generation);
        let max_entries = self.max_state_entries;
        let mut applied = 0u64;
        let mut pairs = Vec::with_capacity(if in_place { u.entries.len() } else { 0 });
        let mut unmapped = 0u64;
        for e in u.entries.iter().filter(|e| e.seq > last) {
            // For a snapshot waiting for its swap (an entry older than the one held is
            // noted too: its swap then sets the value held, which is harmless).
            if let Some(f) = st.filled.as_mut() {
                f.note(e.key);
            }
            let held = st.entries.len();
            let h = match st.entries.entry(e.key) {
                MapEntry::Occupied(o) => {
                    if e.seq < o.get().seq {
                        continue;
                    }
                    let h = o.into_mut();
                    h.seats = e.seats;
                    h.seq = e.seq;
                    h
                }
                MapEntry::Vacant(v) => {
                    if held >= max_entries {
                        return Err(Refused(format!(
                            "state over the limit of {max_entries} entries"
                        )));
                    }
                    v.insert(Held::new(e.seats, e.seq))
                }
            };
            applied += 1;
            if !in_place {
                continue; // projected whole below
            }
            // A key cached for another generation (a snapshot being filled before its
            // swap) must not be used here, nor overwritten with this view's.
            let key = if !cached {
                resolve_held(&*view, &e.key)
            } else {
                if h.key == NOT_RESOLVED {
                    h.key = resolve_held(&*view, &e.key);
                }
                h.key
            };
            if key == UNMAPPED {
                unmapped += 1;
            } else {
                pairs.push((key, e.seats));
            }
        }
        st.last_applied = u.to_seq;
        st.last_token = u.to_token;
        self.status
            .last_applied_seq
            .store(u.to_seq, Ordering::Relaxed);
        self.status
            .entries_applied
            .fetch_add(applied, Ordering::Relaxed);
        if !in_place {
            self.project_all(&mut st, &view);
            st.projected = Some(generation);
        } else {
            if !pairs.is_empty() {
                view.overlay().apply(&pairs);
            }
            if unmapped > 0 {
                // Approximate between full projections (a key may be counted twice).
                st.unmapped = st
                    .unmapped
                    .saturating_add(unmapped)
                    .min(st.entries.len() as u64);
                self.status
                    .unmapped_entries
                    .store(st.unmapped, Ordering::Relaxed);
            }
            self.status
                .state_entries
                .store(st.entries.len() as u64, Ordering::Relaxed);
        }
        Ok(Step::Continue)
    }

    fn full_state_chunk(
        &self,
        f: FullState,
        pending: &mut Option<Pending>,
    ) -> Result<Step, Refused> {
        match pending {
            None => {
                if f.chunk != 0 {
                    return Err(Refused(format!("full state starts at chunk {}", f.chunk)));
                }
                *pending = Some(Pending {
                    as_of: f.as_of_seq,
                    as_of_token: f.as_of_token,
                    snapshot_id: f.snapshot_id.clone(),
                    total: f.total_chunks,
                    next: 0,
                    entries: Vec::new(),
                });
            }
            Some(p) => {
                if f.as_of_seq != p.as_of
                    || f.as_of_token != p.as_of_token
                    || f.total_chunks != p.total
                    || f.snapshot_id != p.snapshot_id
                {
                    return Err(Refused("full state chunks disagree".into()));
                }
            }
        }
        let Some(p) = pending.as_mut() else {
            return Err(Refused("no full state in progress".into()));
        };
        if f.chunk != p.next {
            return Err(Refused(format!(
                "full state chunk {} when {} was due",
                f.chunk, p.next
            )));
        }
        if p.entries.len() + f.entries.len() > self.max_state_entries {
            return Err(Refused(format!(
                "full state over the limit of {} entries",
                self.max_state_entries
            )));
        }
        p.entries.extend_from_slice(&f.entries);
        p.next += 1;
        if p.next < p.total {
            return Ok(Step::Continue);
        }
        let Some(done) = pending.take() else {
            return Err(Refused("no full state in progress".into()));
        };
        let mut map = Entries::with_capacity_and_hasher(done.entries.len(), Default::default());
        for e in &done.entries {
            match map.entry(e.key) {
                MapEntry::Occupied(mut o) => {
                    if e.seq >= o.get().seq {
                        o.insert(Held::new(e.seats, e.seq));
                    }
                }
                MapEntry::Vacant(v) => {
                    v.insert(Held::new(e.seats, e.seq));
                }
            }
        }
        let mut st = self.lock();
        // Read under the lock: a snapshot swapped in after this read would miss the state.
        let view = self.target.current();
        if let Some(f) = st.filled.as_mut() {
            f.whole = true;
            f.changed = Vec::new();
        }
        st.entries = map;
        st.keys_of = None;
        st.last_applied = done.as_of;
        st.last_token = done.as_of_token;
        st.snapshot_id = done.snapshot_id;
        self.project_all(&mut st, &view);
        st.projected = Some(view.generation());
        self.status
            .last_applied_seq
            .store(done.as_of, Ordering::Relaxed);
        // A full state is bookd's head at the time (possibly lower than heard before).
        self.status.bookd_seq.store(done.as_of, Ordering::Relaxed);
        self.status.full_states.fetch_add(1, Ordering::Relaxed);
        self.status
            .entries_applied
            .fetch_add(done.entries.len() as u64, Ordering::Relaxed);
        tracing::info!(
            as_of_seq = done.as_of,
            entries = st.entries.len(),
            unmapped = st.unmapped,
            "applied a full state"
        );
        Ok(Step::Continue)
    }
}

/// A running subscriber.
pub struct SubscriberHandle<T: OverlayTarget> {
    core: Arc<Core<T>>,
    paused: watch::Sender<bool>,
    kick: Arc<tokio::sync::Notify>,
}

impl<T: OverlayTarget> Clone for SubscriberHandle<T> {
    fn clone(&self) -> Self {
        SubscriberHandle {
            core: self.core.clone(),
            paused: self.paused.clone(),
            kick: self.kick.clone(),
        }
    }
}

impl<T: OverlayTarget> SubscriberHandle<T> {
    pub fn status(&self) -> Arc<SubscriberStatus> {
        self.core.status()
    }

    /// bookd's state as held here: leg class -> (seats, seq).
    pub fn entries(&self) -> HashMap<LegKey, (u16, u64)> {
        self.core.entries()
    }

    pub fn last_applied(&self) -> u64 {
        self.core.last_applied()
    }

    /// The history token at the last applied seq, sent with every (re)subscription.
    pub fn last_applied_token(&self) -> u64 {
        self.core.last_applied_token()
    }

    /// Fills a freshly loaded snapshot's overlay before it is swapped in.
    pub fn fill(&self, view: &T::View) {
        self.core.fill(view)
    }

    /// Swaps a filled snapshot in (`swap` puts it in service) with its overlay up to date
    /// and no change applied in between (see [`Core::swap_in`]).
    pub fn swap_in(&self, view: &T::View, swap: impl FnOnce()) {
        self.core.swap_in(view, swap)
    }

    /// Snapshot ids bookd announces (`SnapshotPublished`): reload on change.
    pub fn published_snapshots(&self) -> watch::Receiver<Option<String>> {
        self.core.published.subscribe()
    }

    /// Re-projects into the snapshot in service now (call right after a swap; the
    /// subscriber also checks every `refresh_interval`).
    pub fn refresh(&self) -> bool {
        self.core.refresh()
    }

    /// Stops reading from bookd (tests: a stalled node). The connection stays open.
    #[doc(hidden)]
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// Drops the current connection (tests: link loss); the subscriber reconnects. Never
    /// lost: when the session is busy applying a frame (or is between connections) the
    /// request is kept and drops the connection at its next wait (`notify_one` stores a
    /// permit, where `notify_waiters` only wakes a session waiting at that instant).
    #[doc(hidden)]
    pub fn drop_connection(&self) {
        self.kick.notify_one();
    }
}

fn validate_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn read_pem(path: &Path) -> Result<Vec<u8>, SubscriberError> {
    let file = |why: String| SubscriberError::File {
        path: path.to_path_buf(),
        why,
    };
    let md = std::fs::metadata(path).map_err(|e| file(format!("cannot read: {e}")))?;
    if md.len() > 64 * 1024 {
        return Err(file(format!(
            "{} bytes is too large for a PEM file",
            md.len()
        )));
    }
    std::fs::read(path).map_err(|e| file(format!("cannot read: {e}")))
}

/// The QUIC client configuration: this node's certificate, the cluster CA as the only root.
pub fn client_config(config: &SubscriberConfig) -> Result<quinn::ClientConfig, SubscriberError> {
    if !validate_name(&config.name) {
        return Err(SubscriberError::InvalidName(
            config.name.chars().take(80).collect(),
        ));
    }
    let dir = &config.cluster_dir;
    let ca_path = dir.join("ca.crt");
    let crt_path = dir.join(format!("{}.crt", config.name));
    let key_path = dir.join(format!("{}.key", config.name));
    let ca = CertificateDer::from_pem_slice(&read_pem(&ca_path)?).map_err(|e| {
        SubscriberError::File {
            path: ca_path.clone(),
            why: format!("no PEM certificate: {e}"),
        }
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read_pem(&crt_path)?)
        .collect::<Result<_, _>>()
        .map_err(|e| SubscriberError::File {
            path: crt_path.clone(),
            why: format!("unreadable PEM certificate: {e}"),
        })?;
    if chain.is_empty() {
        return Err(SubscriberError::File {
            path: crt_path,
            why: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&key_path)?).map_err(|e| {
        SubscriberError::File {
            path: key_path.clone(),
            why: format!("no PEM private key: {e}"),
        }
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| SubscriberError::File {
        path: ca_path,
        why: e.to_string(),
    })?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| SubscriberError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| SubscriberError::Tls(format!("{}: {e}", crt_path.display())))?;
    tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| SubscriberError::Tls(e.to_string()))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_secs(1)))
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(0u32.into());
    if let Ok(t) =
        quinn::IdleTimeout::try_from(config.silence_timeout.max(Duration::from_secs(2)) * 2)
    {
        transport.max_idle_timeout(Some(t));
    }
    cc.transport_config(Arc::new(transport));
    Ok(cc)
}

/// Starts the subscriber; it runs until `shutdown` turns true. Fails at once (naming the
/// file or parameter) when the certificates cannot be loaded.
pub fn spawn<T: OverlayTarget>(
    config: SubscriberConfig,
    target: Arc<T>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SubscriberHandle<T>, tokio::task::JoinHandle<()>), SubscriberError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client_config(&config)?;
    let core = Arc::new(Core::new(target, config.max_state_entries));
    core.status
        .silence_ms
        .store(config.silence_timeout.as_millis() as u64, Ordering::Relaxed);
    let (paused, _) = watch::channel(false);
    let handle = SubscriberHandle {
        core,
        paused,
        kick: Arc::new(tokio::sync::Notify::new()),
    };
    let h = handle.clone();
    let task = tokio::spawn(async move { run(config, client, h, shutdown).await });
    Ok((handle, task))
}

/// Why a session ended.
#[derive(Debug)]
enum Ended {
    Shutdown,
    /// A gap: resubscribe at once.
    Resync,
    /// Connection failed or lost; `healthy` when it had synced (resets the backoff).
    Lost {
        why: String,
        healthy: bool,
    },
}

fn jitter_seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

async fn run<T: OverlayTarget>(
    config: SubscriberConfig,
    client: quinn::ClientConfig,
    handle: SubscriberHandle<T>,
    mut shutdown: watch::Receiver<bool>,
) {
    let status = handle.status();
    let mut attempt: u32 = 0;
    let mut rng = jitter_seed() | 1;
    // Projects into swapped-in snapshots even while disconnected.
    let core = handle.core.clone();
    let refresh_every = config.refresh_interval.max(Duration::from_millis(5));
    let mut refresh_stop = shutdown.clone();
    let refresher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresh_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { core.refresh(); }
                _ = stopped(&mut refresh_stop) => return,
            }
        }
    });
    loop {
        if *shutdown.borrow() {
            break;
        }
        let ended = session(&config, &client, &handle, &mut shutdown).await;
        status.connected.store(false, Ordering::Relaxed);
        status.synced.store(false, Ordering::Relaxed);
        let delay = match ended {
            Ended::Shutdown => break,
            Ended::Resync => {
                attempt = 0;
                Duration::from_millis(5)
            }
            Ended::Lost { why, healthy } => {
                if healthy {
                    attempt = 0;
                }
                let base = config
                    .backoff_min
                    .saturating_mul(1u32 << attempt.min(16))
                    .min(config.backoff_max);
                attempt = attempt.saturating_add(1);
                // xorshift jitter: 50% to 100% of the delay.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let frac = 0.5 + (rng % 1000) as f64 / 2000.0;
                let d = base.mul_f64(frac);
                tracing::warn!(bookd = %config.bookd, error = %why, retry_in_ms = d.as_millis() as u64, "invalidation channel down; retrying");
                d
            }
        };
        status.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    refresher.abort();
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("--bookd-quic {addr}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("--bookd-quic {addr}: no address"))
}

async fn session<T: OverlayTarget>(
    config: &SubscriberConfig,
    client: &quinn::ClientConfig,
    handle: &SubscriberHandle<T>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let lost = |why: String| Ended::Lost {
        why,
        healthy: false,
    };
    let addr = match resolve(&config.bookd).await {
        Ok(a) => a,
        Err(e) => return lost(e),
    };
    let bind: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let mut endpoint = match quinn::Endpoint::client(bind) {
        Ok(e) => e,
        Err(e) => return lost(format!("cannot open a UDP socket: {e}")),
    };
    endpoint.set_default_client_config(client.clone());
    let ended = connected_session(config, &endpoint, addr, handle, shutdown).await;
    endpoint.close(codes::SHUTDOWN.into(), b"");
    // Bounded: never wait long for the peer to acknowledge the close.
    let _ = tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
    ended
}

async fn connected_session<T: OverlayTarget>(
    config: &SubscriberConfig,
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    handle: &SubscriberHandle<T>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let lost = |why: String| Ended::Lost {
        why,
        healthy: false,
    };
    let status = handle.status();
    let core = &handle.core;
    let connecting = match endpoint.connect(addr, &config.server_name) {
        Ok(c) => c,
        Err(e) => return lost(format!("connect to {addr}: {e}")),
    };
    let conn = match tokio::time::timeout(config.connect_timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return lost(format!("connect to {addr}: {e}")),
        Err(_) => return lost(format!("connect to {addr}: timed out")),
    };
    let (mut send, mut recv) =
        match tokio::time::timeout(config.connect_timeout, conn.open_bi()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return lost(format!("open stream: {e}")),
            Err(_) => return lost("open stream: timed out".into()),
        };
    let sub = core.subscribe(&config.name);
    let frame = match wire::encode_frame(&Message::Subscribe(sub.clone())) {
        Ok(f) => f,
        Err(e) => return lost(format!("cannot encode subscribe: {e}")),
    };
    if let Err(e) = send.write_all(&frame).await {
        return lost(format!("send subscribe: {e}"));
    }
    status.connected.store(true, Ordering::Relaxed);
    tracing::info!(bookd = %addr, node = %config.name, last_applied_seq = sub.last_applied_seq, last_applied_token = sub.last_applied_token, "subscribed to bookd");

    let mut pending: Option<Pending> = None;
    let mut buf = Vec::new();
    let mut paused = handle.paused.subscribe();
    let healthy = |s: &SubscriberStatus| s.synced.load(Ordering::Relaxed);
    loop {
        // A paused reader (tests) stops taking frames; bookd must cope.
        if *paused.borrow() {
            tokio::select! {
                _ = paused.wait_for(|p| !*p) => {}
                _ = stopped(shutdown) => {
                    conn.close(codes::SHUTDOWN.into(), b"node shutting down");
                    return Ended::Shutdown;
                }
            }
            continue;
        }
        let read = tokio::select! {
            r = tokio::time::timeout(config.silence_timeout, read_frame(&mut recv, &mut buf)) => r,
            _ = stopped(shutdown) => {
                conn.close(codes::SHUTDOWN.into(), b"node shutting down");
                return Ended::Shutdown;
            }
            _ = handle.kick.notified() => {
                conn.close(codes::SHUTDOWN.into(), b"dropped");
                return Ended::Lost { why: "connection dropped on request".into(), healthy: healthy(&status) };
            }
            _ = paused.changed() => continue,
        };
        let msg = match read {
            Err(_) => {
                conn.close(codes::SHUTDOWN.into(), b"silent");
                return Ended::Lost {
                    why: format!(
                        "no frame from bookd for {} ms",
                        config.silence_timeout.as_millis()
                    ),
                    healthy: healthy(&status),
                };
            }
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => {
                return Ended::Lost {
                    why: "bookd closed the stream".into(),
                    healthy: healthy(&status),
                }
            }
            Ok(Err(ReadError::Stream(e))) => {
                return Ended::Lost {
                    why: e,
                    healthy: healthy(&status),
                }
            }
            Ok(Err(ReadError::Wire(e))) => {
                status.frames_refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(bookd = %addr, error = %e, "refused a frame from bookd; closing the connection");
                conn.close(codes::PROTOCOL.into(), b"bad frame");
                return Ended::Lost {
                    why: format!("refused a frame: {e}"),
                    healthy: false,
                };
            }
        };
        match core.handle(msg, &mut pending) {
            Ok(Step::Continue) => {}
            Ok(Step::Resync) => {
                conn.close(codes::RESYNC.into(), b"gap");
                return Ended::Resync;
            }
            Err(Refused(why)) => {
                status.frames_refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(bookd = %addr, error = %why, "refused a message from bookd; closing the connection");
                conn.close(codes::PROTOCOL.into(), b"bad message");
                return Ended::Lost {
                    why: format!("refused a message: {why}"),
                    healthy: false,
                };
            }
        }
    }
}

enum ReadError {
    Stream(String),
    Wire(wire::WireError),
}

async fn read_frame(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
) -> Result<Option<Message>, ReadError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(ReadError::Wire(wire::WireError::Truncated { len: n }))
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(ReadError::Stream(e.to_string())),
    }
    let len = wire::frame_len(prefix).map_err(ReadError::Wire)?;
    buf.clear();
    buf.resize(len, 0);
    match recv.read_exact(buf).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(ReadError::Wire(wire::WireError::Truncated { len: n }))
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(ReadError::Stream(e.to_string())),
    }
    wire::decode_payload(buf).map(Some).map_err(ReadError::Wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct View {
        generation: u64,
        overlay: Overlay,
    }

    impl LiveView for View {
        fn generation(&self) -> u64 {
            self.generation
        }
        fn resolve(&self, key: &LegKey) -> Option<u64> {
            if key.carrier == *b"ZZ " {
                return None;
            }
            Some((u64::from(key.flight_number) << 16) | u64::from(key.booking_class))
        }
        fn overlay(&self) -> &Overlay {
            &self.overlay
        }
    }

    struct Target(Mutex<Arc<View>>);

    impl OverlayTarget for Target {
        type View = View;
        fn current(&self) -> Arc<View> {
            match self.0.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            }
        }
    }

    fn target(generation: u64) -> Arc<Target> {
        Arc::new(Target(Mutex::new(Arc::new(View {
            generation,
            overlay: Overlay::new(),
        }))))
    }

    fn key(carrier: &[u8; 3], n: u16, class: u8) -> LegKey {
        LegKey {
            carrier: *carrier,
            flight_number: n,
            date: 20_000,
            origin: *b"LHR",
            booking_class: class,
        }
    }

    fn e(k: LegKey, seats: u16, seq: u64) -> Entry {
        Entry { key: k, seats, seq }
    }

    /// A history token per seq, as a test history's (bookd's are random).
    fn token(seq: u64) -> u64 {
        seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    }

    fn updates(from: u64, to: u64, entries: Vec<Entry>) -> Message {
        Message::Updates(Updates {
            from_seq: from,
            to_seq: to,
            to_token: token(to),
            entries,
        })
    }

    #[test]
    fn updates_apply_in_order_idempotently_and_gaps_resync() {
        let t = target(1);
        let core = Core::new(t.clone(), 1000);
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        let b = key(b"BA ", 2, b'Y');
        assert_eq!(
            core.handle(updates(1, 3, vec![e(a, 5, 1), e(b, 7, 3)]), &mut p),
            Ok(Step::Continue)
        );
        // The same batch again changes nothing.
        assert_eq!(
            core.handle(updates(1, 3, vec![e(a, 5, 1), e(b, 7, 3)]), &mut p),
            Ok(Step::Continue)
        );
        // Overlapping batch: only entries after the last applied seq count.
        assert_eq!(
            core.handle(updates(2, 4, vec![e(a, 9, 2), e(a, 4, 4)]), &mut p),
            Ok(Step::Continue)
        );
        let view = t.current();
        assert_eq!(view.overlay.seats((1 << 16) | u64::from(b'Y')), Some(4));
        assert_eq!(view.overlay.seats((2 << 16) | u64::from(b'Y')), Some(7));
        assert_eq!(core.last_applied(), 4);
        // A gap.
        assert_eq!(core.handle(updates(6, 8, vec![]), &mut p), Ok(Step::Resync));
        assert_eq!(core.last_applied(), 4);
        assert_eq!(core.status().gaps.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn full_state_replaces_atomically_and_unmapped_are_kept() {
        let t = target(1);
        let core = Core::new(t.clone(), 1000);
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        let z = key(b"ZZ ", 1, b'Y');
        core.handle(updates(1, 1, vec![e(a, 5, 1)]), &mut p)
            .expect("applies");
        let chunk = |c, entries| {
            Message::FullState(FullState {
                as_of_seq: 10,
                as_of_token: token(10),
                snapshot_id: "s1".into(),
                chunk: c,
                total_chunks: 2,
                entries,
            })
        };
        let b = key(b"BA ", 2, b'Y');
        core.handle(chunk(0, vec![e(b, 3, 9)]), &mut p)
            .expect("chunk 0");
        // Not applied until the last chunk.
        assert_eq!(
            t.current().overlay.seats((1 << 16) | u64::from(b'Y')),
            Some(5)
        );
        // Anything but the next chunk is refused mid full state.
        let mut p2 = None;
        let core2 = Core::new(target(1), 1000);
        core2.handle(chunk(0, vec![]), &mut p2).expect("chunk 0");
        assert!(core2.handle(updates(11, 11, vec![]), &mut p2).is_err());
        core.handle(chunk(1, vec![e(z, 1, 8)]), &mut p)
            .expect("chunk 1");
        let view = t.current();
        assert_eq!(
            view.overlay.seats((1 << 16) | u64::from(b'Y')),
            None,
            "a is gone"
        );
        assert_eq!(view.overlay.seats((2 << 16) | u64::from(b'Y')), Some(3));
        assert_eq!(view.overlay.len(), 1);
        assert_eq!(core.entries().len(), 2, "the unmapped entry is kept");
        assert_eq!(core.status().unmapped_entries.load(Ordering::Relaxed), 1);
        let sub = core.subscribe("n1");
        assert_eq!((sub.last_applied_seq, sub.snapshot_id.as_str()), (10, "s1"));
        assert_eq!(sub.last_applied_token, token(10));
    }

    /// The node resubscribes with the history token bookd sent with its last applied seq:
    /// an `Updates`' `to_token`, a full state's `as_of_token`; a batch already applied does
    /// not change it, and chunks of one full state must agree on it.
    #[test]
    fn the_subscription_carries_the_token_of_the_last_applied_seq() {
        let core = Core::new(target(1), 1000);
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        let sub = core.subscribe("n1");
        assert_eq!((sub.last_applied_seq, sub.last_applied_token), (0, 0));
        core.handle(updates(1, 3, vec![e(a, 5, 2)]), &mut p)
            .expect("applies");
        assert_eq!(core.subscribe("n1").last_applied_token, token(3));
        // Already applied: the token stays the one at seq 3.
        let mut old = updates(1, 2, vec![]);
        if let Message::Updates(u) = &mut old {
            u.to_token = 77;
        }
        core.handle(old, &mut p).expect("ignored");
        let sub = core.subscribe("n1");
        assert_eq!(
            (sub.last_applied_seq, sub.last_applied_token),
            (3, token(3))
        );
        // A full state (bookd restored from a backup: another history, at a lower seq).
        let chunk = |c, as_of_token| {
            Message::FullState(FullState {
                as_of_seq: 2,
                as_of_token,
                snapshot_id: String::new(),
                chunk: c,
                total_chunks: 2,
                entries: vec![e(a, 9, 2)],
            })
        };
        core.handle(chunk(0, 0xabc), &mut p).expect("chunk 0");
        assert!(
            core.handle(chunk(1, 0xabd), &mut p).is_err(),
            "chunks of one full state disagree on its token"
        );
        let mut p = None;
        core.handle(chunk(0, 0xabc), &mut p).expect("chunk 0");
        core.handle(chunk(1, 0xabc), &mut p).expect("chunk 1");
        let sub = core.subscribe("n1");
        assert_eq!((sub.last_applied_seq, sub.last_applied_token), (2, 0xabc));
        assert_eq!(core.last_applied_token(), 0xabc);
    }

    #[test]
    fn a_new_snapshot_gets_the_whole_state() {
        let t = target(1);
        let core = Core::new(t.clone(), 1000);
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        core.handle(updates(1, 1, vec![e(a, 0, 1)]), &mut p)
            .expect("applies");
        let fresh = Arc::new(View {
            generation: 2,
            overlay: Overlay::new(),
        });
        core.fill(&fresh);
        assert_eq!(fresh.overlay.seats((1 << 16) | u64::from(b'Y')), Some(0));
        match t.0.lock() {
            Ok(mut g) => *g = fresh.clone(),
            Err(_) => panic!("lock"),
        }
        assert!(core.refresh());
        assert!(!core.refresh());
        let b = key(b"BA ", 2, b'Y');
        core.handle(updates(2, 2, vec![e(b, 2, 2)]), &mut p)
            .expect("applies");
        assert_eq!(fresh.overlay.len(), 2);
    }

    /// Overlay keys cached in the state belong to one snapshot: one filled before its swap
    /// must not lend its keys to the snapshot still in service, nor take that one's.
    #[test]
    fn cached_overlay_keys_follow_the_snapshot_in_service() {
        struct GView {
            generation: u64,
            overlay: Overlay,
        }
        impl LiveView for GView {
            fn generation(&self) -> u64 {
                self.generation
            }
            fn resolve(&self, key: &LegKey) -> Option<u64> {
                Some(
                    (self.generation << 40)
                        | (u64::from(key.flight_number) << 16)
                        | u64::from(key.booking_class),
                )
            }
            fn overlay(&self) -> &Overlay {
                &self.overlay
            }
        }
        struct GTarget(Mutex<Arc<GView>>);
        impl OverlayTarget for GTarget {
            type View = GView;
            fn current(&self) -> Arc<GView> {
                match self.0.lock() {
                    Ok(g) => g.clone(),
                    Err(p) => p.into_inner().clone(),
                }
            }
        }
        let view = |generation| {
            Arc::new(GView {
                generation,
                overlay: Overlay::new(),
            })
        };
        let k = |generation: u64| (generation << 40) | (1 << 16) | u64::from(b'Y');
        let old = view(1);
        let t = Arc::new(GTarget(Mutex::new(old.clone())));
        let core = Core::new(t.clone(), 1000);
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        core.handle(updates(1, 1, vec![e(a, 5, 1)]), &mut p)
            .expect("applies");
        assert_eq!(old.overlay.seats(k(1)), Some(5));

        // The next snapshot is filled before its swap; the old one still serves.
        let new = view(2);
        core.fill(&new);
        assert_eq!(new.overlay.seats(k(2)), Some(5));
        core.handle(updates(2, 2, vec![e(a, 4, 2)]), &mut p)
            .expect("applies");
        assert_eq!(old.overlay.seats(k(1)), Some(4));
        assert_eq!(old.overlay.seats(k(2)), None);

        match t.0.lock() {
            Ok(mut g) => *g = new.clone(),
            Err(_) => panic!("lock"),
        }
        core.handle(updates(3, 3, vec![e(a, 3, 3)]), &mut p)
            .expect("applies");
        assert_eq!(new.overlay.seats(k(2)), Some(3));
        assert_eq!(new.overlay.seats(k(1)), None);
        core.handle(updates(4, 4, vec![e(a, 2, 4)]), &mut p)
            .expect("applies");
        assert_eq!(new.overlay.seats(k(2)), Some(2));
    }

    /// Swaps `new` into `t` the way `SnapshotCell::reload` does once the snapshot is loaded
    /// and filled (`SwapHook::swap`).
    fn swap_in(core: &Core<Target>, t: &Target, new: &Arc<View>) {
        core.swap_in(new, || match t.0.lock() {
            Ok(mut g) => *g = new.clone(),
            Err(_) => panic!("lock"),
        });
    }

    const KA: u64 = (1 << 16) | b'Y' as u64;

    /// bookd sells the last seats after the new snapshot was filled but before it is
    /// swapped in: the first search on the new snapshot must not offer them again.
    #[test]
    fn a_change_applied_between_the_fill_and_the_swap_is_served_by_the_new_snapshot() {
        let t = target(1);
        let core = Core::new(t.clone(), 1000);
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        core.handle(updates(1, 1, vec![e(a, 5, 1)]), &mut p)
            .expect("applies");
        let new = Arc::new(View {
            generation: 2,
            overlay: Overlay::new(),
        });
        core.fill(&new);
        core.handle(updates(2, 2, vec![e(a, 0, 2)]), &mut p)
            .expect("applies");
        assert_eq!(
            t.current().overlay.seats(KA),
            Some(0),
            "sold on the old one"
        );
        swap_in(&core, &t, &new);
        assert_eq!(
            new.overlay.seats(KA),
            Some(0),
            "the new snapshot in service offers seats sold before its swap"
        );
    }

    /// The same with a full state (a resync) between the fill and the swap.
    #[test]
    fn a_full_state_applied_between_the_fill_and_the_swap_is_served_by_the_new_snapshot() {
        let t = target(1);
        let core = Core::new(t.clone(), 1000);
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        let b = key(b"BA ", 2, b'Y');
        let kb = (2 << 16) | u64::from(b'Y');
        core.handle(updates(1, 1, vec![e(a, 5, 1)]), &mut p)
            .expect("applies");
        let new = Arc::new(View {
            generation: 2,
            overlay: Overlay::new(),
        });
        core.fill(&new);
        let full = Message::FullState(FullState {
            as_of_seq: 7,
            as_of_token: token(7),
            snapshot_id: "s1".into(),
            chunk: 0,
            total_chunks: 1,
            entries: vec![e(a, 0, 7), e(b, 2, 7)],
        });
        core.handle(full, &mut p).expect("applies");
        swap_in(&core, &t, &new);
        assert_eq!(new.overlay.seats(KA), Some(0));
        assert_eq!(new.overlay.seats(kb), Some(2));
    }

    /// A target that runs `hook` once, after the subscriber has read which snapshot is in
    /// service and before it returns it (to interleave a swap there).
    struct HookTarget {
        cur: Mutex<Arc<View>>,
        hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl OverlayTarget for HookTarget {
        type View = View;
        fn current(&self) -> Arc<View> {
            let v = match self.cur.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            };
            let hook = match self.hook.lock() {
                Ok(mut g) => g.take(),
                Err(p) => p.into_inner().take(),
            };
            if let Some(h) = hook {
                h();
            }
            v
        }
    }

    /// A change that arrives while a snapshot is swapped in (the subscriber looked up the
    /// snapshot in service just before the swap) must reach the snapshot in service once
    /// the swap is done, not only the old one.
    #[test]
    fn a_change_that_races_a_swap_reaches_the_new_snapshot() {
        let old = Arc::new(View {
            generation: 1,
            overlay: Overlay::new(),
        });
        let t = Arc::new(HookTarget {
            cur: Mutex::new(old.clone()),
            hook: Mutex::new(None),
        });
        let core = Arc::new(Core::new(t.clone(), 1000));
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        core.handle(updates(1, 1, vec![e(a, 5, 1)]), &mut p)
            .expect("applies");
        let new = Arc::new(View {
            generation: 2,
            overlay: Overlay::new(),
        });
        let swapper: Arc<Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
        let (c2, t2, n2, s2) = (core.clone(), t.clone(), new.clone(), swapper.clone());
        let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            // The reload's steps (`SwapHook`), on another thread.
            let h = std::thread::spawn(move || {
                c2.fill(&n2);
                c2.swap_in(&n2, || match t2.cur.lock() {
                    Ok(mut g) => *g = n2.clone(),
                    Err(p) => *p.into_inner() = n2.clone(),
                });
                c2.refresh();
                let _ = done_tx.send(());
            });
            if let Ok(mut g) = s2.lock() {
                *g = Some(h);
            }
            // Let the swap finish if it can (it cannot while the subscriber holds its lock).
            let _ = done_rx.recv_timeout(Duration::from_millis(500));
        });
        match t.hook.lock() {
            Ok(mut g) => *g = Some(hook),
            Err(_) => panic!("lock"),
        }
        core.handle(updates(2, 2, vec![e(a, 0, 2)]), &mut p)
            .expect("applies");
        let h = swapper.lock().ok().and_then(|mut g| g.take());
        h.expect("the swap ran").join().expect("the swap finished");
        assert!(Arc::ptr_eq(&t.cur.lock().expect("lock"), &new), "swapped");
        assert_eq!(core.last_applied(), 2);
        assert_eq!(
            new.overlay.seats(KA),
            Some(0),
            "the snapshot in service offers seats sold before the swap completed"
        );
    }

    #[test]
    fn the_state_limit_is_enforced() {
        let core = Core::new(target(1), 2);
        let mut p = None;
        let es: Vec<Entry> = (1..=3)
            .map(|i| e(key(b"BA ", i as u16, b'Y'), 1, i))
            .collect();
        assert!(core.handle(updates(1, 3, es), &mut p).is_err());
    }

    /// What broke: bookd's newest seq was kept as a running maximum across connections, so
    /// after bookd came back from a backup (its outbox head lower than before) the node
    /// reported the old head minus its new last applied seq as lag until bookd passed it.
    #[test]
    fn lag_follows_bookd_after_its_database_was_restored_from_a_backup() {
        let core = Core::new(target(1), 1000);
        let mut p = None;
        let a = key(b"BA ", 1, b'Y');
        core.handle(updates(1, 1000, vec![e(a, 5, 1000)]), &mut p)
            .expect("applies");
        core.handle(
            Message::Heartbeat {
                seq: 1000,
                time_unix_ms: 1,
            },
            &mut p,
        )
        .expect("heartbeat");
        assert_eq!(core.status().lag_seq(), 0);
        // bookd restored to seq 500: the node resubscribes with 1000 and gets a full state.
        core.handle(
            Message::FullState(FullState {
                as_of_seq: 500,
                as_of_token: token(500),
                snapshot_id: String::new(),
                chunk: 0,
                total_chunks: 1,
                entries: vec![e(a, 7, 500)],
            }),
            &mut p,
        )
        .expect("full state");
        core.handle(
            Message::Heartbeat {
                seq: 500,
                time_unix_ms: 2,
            },
            &mut p,
        )
        .expect("heartbeat");
        assert_eq!(core.last_applied(), 500);
        assert_eq!(
            core.status().lag_seq(),
            0,
            "bookd's head is 500 and the node applied everything up to 500"
        );
    }

    #[test]
    fn names_are_checked_before_files() {
        let cfg = SubscriberConfig::new("127.0.0.1:1", "/nonexistent", "Bad_Name");
        assert!(matches!(
            client_config(&cfg),
            Err(SubscriberError::InvalidName(_))
        ));
        let cfg = SubscriberConfig::new("127.0.0.1:1", "/nonexistent", "n1");
        match client_config(&cfg) {
            Err(SubscriberError::File { path, .. }) => assert!(path.ends_with("ca.crt")),
            other => panic!("expected a missing file, got {:?}", other.err()),
        }
    }
}
