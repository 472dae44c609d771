//! The served snapshot and its hot swap.
//!
//! The snapshot in service is an `Arc<Loaded>` behind a lock held only to clone or replace
//! the `Arc`: a request clones it once and uses that snapshot for its whole life, so
//! requests in flight during a swap finish on the old one, whose files stay mapped until the
//! last of them drops it. New snapshots are opened and validated on a blocking thread before
//! the swap; a broken one is refused and the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use format::Snapshot;
use tokio::sync::{watch, Mutex};

use super::metrics::Metrics;
use crate::overlay::Overlay;
use crate::places::PlacesIndex;

/// A snapshot in service with what is derived from it once.
pub struct Loaded {
    pub snap: Snapshot,
    pub places: PlacesIndex,
    /// Live seat counts over this snapshot (their keys are this snapshot's positions, so a
    /// new snapshot gets its own, filled from bookd's state before it is swapped in).
    pub overlay: Overlay,
    /// 1 for the snapshot loaded at start, +1 per swap.
    pub generation: u64,
    /// Unique per [`load`] in this process, also for a snapshot never swapped in (a reload
    /// abandoned after its load: the next one gets the same `generation`). The invalidation
    /// subscriber keys the overlay positions it caches by it.
    pub(crate) view_id: u64,
    pub loaded_at_unix: i64,
}

/// The next [`Loaded::view_id`].
static NEXT_VIEW_ID: AtomicU64 = AtomicU64::new(1);

impl Loaded {
    pub fn id(&self) -> &str {
        &self.snap.manifest.snapshot_id
    }
}

/// Why a new snapshot was not swapped in.
#[derive(Debug, Clone)]
pub enum ReloadError {
    /// The new snapshot is missing, damaged or inconsistent (409).
    Rejected(String),
    /// It could not be read for another reason (500).
    Failed(String),
}

impl ReloadError {
    pub fn message(&self) -> &str {
        match self {
            ReloadError::Rejected(m) | ReloadError::Failed(m) => m,
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// False when the path still names the generation being served.
    pub changed: bool,
    pub snapshot_id: String,
    pub generation: u64,
    pub dir: PathBuf,
}

struct ReloadState {
    /// The generation directory last tried (loaded or refused), so the watcher does not
    /// retry a broken one every tick.
    last_tried: PathBuf,
}

/// Called around every swap (bookd's invalidation subscriber): `before_swap` runs on the
/// loading thread with the new snapshot not yet in service, `swap` does the swap itself.
pub trait SwapHook: Send + Sync + 'static {
    /// Fills the new snapshot's overlay with the live seat counts, so it never serves the
    /// snapshot's own (stale) figures.
    fn before_swap(&self, new: &Loaded);
    /// Puts `new` in service by calling `swap` once, with the changes that arrived since
    /// `before_swap` added first and none applied to the old snapshot alone in between
    /// (or a search on the new one would find seats bookd sold meanwhile).
    fn swap(&self, new: &Loaded, swap: &mut dyn FnMut());
}

impl SwapHook for crate::subscriber::SubscriberHandle<SnapshotCell> {
    fn before_swap(&self, new: &Loaded) {
        self.fill(new);
    }
    fn swap(&self, new: &Loaded, swap: &mut dyn FnMut()) {
        self.swap_in(new, swap);
    }
}

/// The served snapshot, swappable.
pub struct SnapshotCell {
    path: PathBuf,
    /// Shared with the swap's blocking thread.
    current: Arc<RwLock<Arc<Loaded>>>,
    reload: Mutex<ReloadState>,
    metrics: Arc<Metrics>,
    hook: RwLock<Option<Arc<dyn SwapHook>>>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Opens and validates the snapshot at `dir` (blocking: reads and checksums every file).
/// Error messages name the file at fault.
pub fn load(dir: &Path, generation: u64) -> Result<Loaded, ReloadError> {
    if let Err(e) = std::fs::metadata(dir) {
        let msg = format!("{}: {e}", dir.display());
        return Err(if e.kind() == std::io::ErrorKind::NotFound {
            ReloadError::Rejected(msg)
        } else {
            ReloadError::Failed(msg)
        });
    }
    let snap = Snapshot::open(dir).map_err(|e| match e {
        format::Error::Io { .. } => ReloadError::Failed(e.to_string()),
        other => ReloadError::Rejected(other.to_string()),
    })?;
    let places = PlacesIndex::open(&snap).map_err(ReloadError::Rejected)?;
    // Built here, on the loading thread, so the first query on a new snapshot does not pay.
    crate::engine::prepare(&snap);
    Ok(Loaded {
        snap,
        places,
        overlay: Overlay::new(),
        generation,
        view_id: NEXT_VIEW_ID.fetch_add(1, Ordering::Relaxed),
        loaded_at_unix: unix_now(),
    })
}

impl SnapshotCell {
    /// Wraps the snapshot loaded at start (`path` is where new ones are looked for).
    pub fn new(path: PathBuf, first: Loaded, metrics: Arc<Metrics>) -> SnapshotCell {
        let last_tried = first.snap.dir.clone();
        SnapshotCell {
            path,
            current: Arc::new(RwLock::new(Arc::new(first))),
            reload: Mutex::new(ReloadState { last_tried }),
            metrics,
            hook: RwLock::new(None),
        }
    }

    /// Sets (or, with `None`, clears) what runs around every swap. Clearing it at shutdown
    /// breaks the reference cycle cell -> subscriber -> cell.
    pub fn set_swap_hook(&self, hook: Option<Arc<dyn SwapHook>>) {
        let mut g = match self.hook.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = hook;
    }

    fn swap_hook(&self) -> Option<Arc<dyn SwapHook>> {
        match self.hook.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The snapshot to use for one request.
    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts `new` in service; returns the old one, to be dropped (and unmapped when its
    /// last request finishes) outside every lock.
    fn replace(current: &RwLock<Arc<Loaded>>, new: Arc<Loaded>) -> Arc<Loaded> {
        let mut g = match current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *g, new)
    }

    /// Resolves the snapshot path to its generation directory (blocking).
    fn resolve(path: &Path) -> Result<PathBuf, ReloadError> {
        std::fs::canonicalize(path).map_err(|e| {
            let msg = format!(
                "failed to resolve the snapshot path {}: {e}",
                path.display()
            );
            if e.kind() == std::io::ErrorKind::NotFound {
                ReloadError::Rejected(msg)
            } else {
                ReloadError::Failed(msg)
            }
        })
    }

    /// Loads the snapshot the path names now and swaps it in, unless it is the one being
    /// served. `force` retries a generation the watcher already refused.
    pub async fn reload(
        &self,
        trigger: &'static str,
        force: bool,
    ) -> Result<ReloadOutcome, ReloadError> {
        let mut state = self.reload.lock().await;
        let path = self.path.clone();
        let resolved = tokio::task::spawn_blocking(move || Self::resolve(&path))
            .await
            .map_err(|e| {
                ReloadError::Failed(format!("failed to resolve the snapshot path: {e}"))
            })?;
        let dir = match resolved {
            Ok(d) => d,
            Err(e) => {
                self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(trigger, error = e.message(), "snapshot reload failed");
                return Err(e);
            }
        };
        let cur = self.current();
        if dir == cur.snap.dir || (!force && dir == state.last_tried) {
            return Ok(ReloadOutcome {
                changed: false,
                snapshot_id: cur.id().to_string(),
                generation: cur.generation,
                dir: cur.snap.dir.clone(),
            });
        }
        state.last_tried = dir.clone();
        let generation = cur.generation + 1;
        drop(cur);
        let started = std::time::Instant::now();
        let d = dir.clone();
        let hook = self.swap_hook();
        let loaded = tokio::task::spawn_blocking(move || -> Result<Loaded, ReloadError> {
            let new = load(&d, generation)?;
            // bookd's live seat counts go in before the snapshot serves a request.
            if let Some(h) = &hook {
                h.before_swap(&new);
            }
            Ok(new)
        })
        .await
        .map_err(|e| ReloadError::Failed(format!("snapshot loader stopped: {e}")))
        .and_then(|r| r);
        match loaded {
            Ok(new) => {
                let outcome = ReloadOutcome {
                    changed: true,
                    snapshot_id: new.id().to_string(),
                    generation,
                    dir: dir.clone(),
                };
                let new = Arc::new(new);
                match self.swap_hook() {
                    Some(h) => {
                        // On a blocking thread: the hook may wait for the subscriber, which
                        // can be applying a full state. It runs to the end even if this
                        // reload is abandoned meanwhile.
                        let current = Arc::clone(&self.current);
                        let n = Arc::clone(&new);
                        let swapped = tokio::task::spawn_blocking(move || {
                            let mut old = None;
                            h.swap(&n, &mut || {
                                old = Some(Self::replace(&current, Arc::clone(&n)));
                            });
                            old.is_some()
                        })
                        .await;
                        if !matches!(swapped, Ok(true)) && !Arc::ptr_eq(&self.current(), &new) {
                            tracing::error!("the swap hook failed; swapping without it");
                            drop(Self::replace(&self.current, new));
                        }
                    }
                    None => drop(Self::replace(&self.current, new)),
                }
                self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    trigger,
                    snapshot_id = %outcome.snapshot_id,
                    generation,
                    dir = %dir.display(),
                    load_ms = started.elapsed().as_millis() as u64,
                    "snapshot swapped in"
                );
                Ok(outcome)
            }
            Err(e) => {
                self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    trigger,
                    dir = %dir.display(),
                    error = e.message(),
                    "snapshot refused; the previous one keeps serving"
                );
                Err(e)
            }
        }
    }

    /// Polls the snapshot path every `interval` until `stop` turns true, loading each new
    /// generation published there.
    pub async fn watch(
        self: Arc<Self>,
        interval: std::time::Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resolve_failed = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let path = self.path.clone();
            let dir = match tokio::task::spawn_blocking(move || Self::resolve(&path)).await {
                Ok(Ok(d)) => {
                    resolve_failed = false;
                    d
                }
                Ok(Err(e)) => {
                    // Log once per outage, not every tick.
                    if !resolve_failed {
                        tracing::warn!(
                            error = e.message(),
                            "snapshot path unreadable; still serving the loaded snapshot"
                        );
                        resolve_failed = true;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            let known = {
                let st = self.reload.lock().await;
                dir == st.last_tried
            };
            if known || dir == self.current().snap.dir {
                continue;
            }
            // Errors are logged and counted by `reload`.
            let _ = self.reload("watch", false).await;
        }
    }
}
