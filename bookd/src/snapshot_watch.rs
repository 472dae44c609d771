//! bookd's snapshot in service and the watcher that follows `--snapshot`.
//!
//! bookd reads the snapshot for two things: offers (the engine resolver prices an offer id
//! against it) and seat capacities (a leg class's first booking creates its inventory row
//! with the snapshot's seats). Both go through [`LiveSnapshot`], so a new generation serves
//! the next request.
//!
//! The watcher resolves the snapshot path every `interval` (the indexer publishes a new
//! generation directory and renames a link over the path, see `format::snapshot`). A new
//! generation is opened with every check `Snapshot::open` makes, on a blocking thread; a
//! broken one is logged, remembered (not retried until the path names another one) and
//! never announced, and bookd keeps the one it has. A sound one is swapped in first and then
//! announced to every searchd node (`SnapshotPublished`, then a full state): by the time a
//! node serves the new snapshot, bookd books its legs.
//!
//! Seats: inventory rows are bookd's, not the snapshot's. A new snapshot never changes an
//! existing row (its `capacity`, `sold` and `held` stay), so it cannot bring back seats
//! bookd sold; searchd nodes keep bookd's figures through their reload (they fill the new
//! snapshot's overlay from bookd's state before it serves). A leg class without a row takes
//! its capacity from the snapshot in service when it is first booked: a leg or class new in
//! the snapshot gets the new snapshot's seats.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use format::Snapshot;
use tokio::sync::watch;

use crate::api::ApiError;
use crate::offers::{
    CapacitySource, EngineOfferResolver, LegOfferResolver, LegRef, OfferResolver, ResolvedOffer,
    SnapshotCapacity,
};
use crate::quic::Announcer;

/// How often the snapshot path is resolved (a `canonicalize`, no file read).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);

/// The snapshot bookd serves from, swappable. A request takes the `Arc` once.
pub struct LiveSnapshot {
    current: RwLock<Arc<Snapshot>>,
}

impl LiveSnapshot {
    pub fn new(first: Arc<Snapshot>) -> Arc<LiveSnapshot> {
        Arc::new(LiveSnapshot {
            current: RwLock::new(first),
        })
    }

    pub fn current(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Swaps `new` in; the old snapshot is unmapped when its last user drops it.
    pub fn swap(&self, new: Arc<Snapshot>) {
        let old = {
            let mut g = match self.current.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            std::mem::replace(&mut *g, new)
        };
        drop(old);
    }
}

/// [`SnapshotCapacity`] over the snapshot in service.
pub struct LiveCapacity(pub Arc<LiveSnapshot>);

impl CapacitySource for LiveCapacity {
    fn capacity(&self, leg: &LegRef) -> u32 {
        SnapshotCapacity {
            snapshot: self.0.current(),
        }
        .capacity(leg)
    }

    fn departs_ms(&self, leg: &LegRef) -> Option<i64> {
        SnapshotCapacity {
            snapshot: self.0.current(),
        }
        .departs_ms(leg)
    }
}

/// [`EngineOfferResolver`] over the snapshot in service.
pub struct LiveEngineResolver(pub Arc<LiveSnapshot>);

impl LiveEngineResolver {
    fn current(&self) -> EngineOfferResolver {
        EngineOfferResolver {
            snapshot: self.0.current(),
            overlay: searchd::overlay::Overlay::new(),
        }
    }
}

impl OfferResolver for LiveEngineResolver {
    fn resolve(&self, offer_id: &str, now_ms: i64) -> Result<ResolvedOffer, ApiError> {
        self.current().resolve(offer_id, now_ms)
    }

    fn resolve_live(
        &self,
        offer_id: &str,
        now_ms: i64,
        live: &[(format::wire::LegKey, u16)],
    ) -> Result<ResolvedOffer, ApiError> {
        self.current().resolve_live(offer_id, now_ms, live)
    }
}

/// [`LegOfferResolver`] (test offer ids) over the snapshot in service.
pub struct LiveLegResolver(pub Arc<LiveSnapshot>);

impl OfferResolver for LiveLegResolver {
    fn resolve(&self, offer_id: &str, now_ms: i64) -> Result<ResolvedOffer, ApiError> {
        LegOfferResolver {
            snapshot: self.0.current(),
        }
        .resolve(offer_id, now_ms)
    }
}

/// What one look at the snapshot path found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// The path names the generation in service (or one already refused).
    Unchanged,
    /// A new generation was opened, swapped in and (with a publisher) announced.
    Swapped { snapshot_id: String, dir: PathBuf },
    /// A new generation failed its checks: not served, not announced.
    Refused { dir: PathBuf, error: String },
    /// The path cannot be resolved now.
    Unreadable(String),
}

/// Follows the snapshot path: see the module documentation.
pub struct Watcher {
    path: PathBuf,
    live: Arc<LiveSnapshot>,
    announcer: Option<Announcer>,
    /// The generation last refused (not retried while the path still names it).
    refused: Option<PathBuf>,
}

impl Watcher {
    pub fn new(path: PathBuf, live: Arc<LiveSnapshot>, announcer: Option<Announcer>) -> Watcher {
        Watcher {
            path,
            live,
            announcer,
            refused: None,
        }
    }

    /// Looks at the path once (blocking work on blocking threads).
    pub async fn check(&mut self) -> Checked {
        let path = self.path.clone();
        let dir = match tokio::task::spawn_blocking(move || resolve(&path)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Checked::Unreadable(e),
            Err(e) => return Checked::Unreadable(format!("resolver task failed: {e}")),
        };
        if dir == self.live.current().dir || self.refused.as_ref() == Some(&dir) {
            return Checked::Unchanged;
        }
        let d = dir.clone();
        // The engine's per-snapshot tables are built here, off the request path (the first
        // booking on a new generation would otherwise pay ~95 ms for them).
        let load = move || {
            let snap = Snapshot::open(&d)?;
            searchd::engine::prepare(&snap);
            Ok::<_, format::Error>(snap)
        };
        let opened = match tokio::task::spawn_blocking(load).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("snapshot loader failed: {e}")),
        };
        let snap = match opened {
            Ok(s) => s,
            Err(error) => {
                self.refused = Some(dir.clone());
                return Checked::Refused { dir, error };
            }
        };
        // `open` resolves the link again: if another generation was published in between,
        // the one actually opened (and checked) is the one served and announced.
        let dir = snap.dir.clone();
        let snapshot_id = snap.manifest.snapshot_id.clone();
        self.refused = None;
        // bookd first: a node that reloads on the announcement may send bookings for the
        // new snapshot's legs right away.
        self.live.swap(Arc::new(snap));
        if let Some(a) = &self.announcer {
            a.publish_snapshot(&snapshot_id);
        }
        Checked::Swapped { snapshot_id, dir }
    }
}

fn resolve(path: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(path).map_err(|e| format!("cannot resolve {}: {e}", path.display()))
}

/// Runs a [`Watcher`] every `interval` until `shutdown` turns true.
pub fn spawn(
    path: PathBuf,
    live: Arc<LiveSnapshot>,
    announcer: Option<Announcer>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let mut w = Watcher::new(path, live, announcer);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unreadable = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = shutdown.wait_for(|s| *s) => { let _ = r; return; }
            }
            match w.check().await {
                Checked::Unchanged => unreadable = false,
                Checked::Swapped { snapshot_id, dir } => {
                    unreadable = false;
                    tracing::info!(
                        snapshot_id = %snapshot_id,
                        dir = %dir.display(),
                        announced = w.announcer.is_some(),
                        "snapshot swapped in"
                    );
                }
                Checked::Refused { dir, error } => {
                    unreadable = false;
                    tracing::error!(
                        dir = %dir.display(),
                        error = %error,
                        "snapshot refused; keeping the one in service, nothing announced"
                    );
                }
                Checked::Unreadable(e) => {
                    // Once per outage, not every tick.
                    if !unreadable {
                        tracing::warn!(error = %e, "snapshot path unreadable; keeping the one in service");
                        unreadable = true;
                    }
                }
            }
        }
    })
}
