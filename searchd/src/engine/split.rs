//! Running one large one-way search on two threads: this one and the process's split
//! helper thread.
//!
//! The search is cut into [`PARTS`] parts (connection points dealt round-robin, see
//! `paths::Part`); both threads take the next part from a shared counter until none is
//! left, so the helper helps for as long as it is actually running. Each thread keeps one
//! best-`limit` sink over the parts it runs, so its later parts are filtered by the
//! threshold its earlier ones set. The helper may be slow
//! to start (its core busy with another request); then this thread simply does more
//! parts, and it never waits for the helper to *start*: if it finds the job still
//! unclaimed when all parts are done, it retracts it. It waits only for a part the helper
//! is running, which is short.
//!
//! Why a helper of our own rather than rayon: a rayon scope waits for every spawned job
//! to run, so a late pool thread delays the answer even when nothing is left for it
//! (measured: SDQ-MIA p90 449 us against a p50 of 276 us), and a rayon thread goes to
//! sleep microseconds after its job, so the next search's job waits for a sleeping vCPU
//! to be woken. After a job the helper polls its flag briefly (without the `pause` hint:
//! under KVM a loop of `pause` makes the vCPU exit to the host, pause-loop exiting) and
//! then sleeps ([`POLLS`]). It used to stay awake for 300 us so that back-to-back searches
//! found it ready, but "nothing else is searching" does not mean the core is idle: the
//! invalidation stream's threads (the subscriber here, bookd's publisher and other nodes
//! elsewhere) then waited for the spinning core and preempted the next search instead.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use format::Snapshot;

use super::paths::Part;
use super::prep::Prepared;
use super::search::{one_way_parts, PartResult};
use super::Clock;
use crate::overlay::Overlay;
use crate::query::SearchQuery;

/// Parts a split search is cut into: more balance a late helper better, fewer cost less
/// (each part deals out the connection points again). When the helper
/// starts late, this thread ends up waiting for the part the helper took last, so the
/// part size bounds that wait: with 4 parts the mix's p99 went over 500 us in 11 of 13
/// runs on a noisy host, with 8 in 3 of 13 (BENCHMARKS.md section 17); 16 cost more than
/// they saved.
pub(crate) const PARTS: usize = 8;

/// Polls of the job flag after each job before the helper sleeps (a fraction of a
/// microsecond). It used to poll for 300 us: under a 50,000/s invalidation stream that gave
/// the 1-stop mix a 16-39 % higher p99 than sleeping at once (medians of 1 and 4 nodes),
/// while sleeping costs a large search run back to back only the helper's wake-up (SDQ-MIA
/// alone, p50 +13 %; BENCHMARKS.md §35).
const POLLS: usize = 256;

/// A job's states (see [`run`]).
const POSTED: u8 = 0;
const TAKEN: u8 = 1;
const RETRACTED: u8 = 2;
const DONE: u8 = 3;

/// Cores this process may run on (a split needs a second one).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// What both threads share: the query and the parts not yet taken.
struct Work<'a> {
    snap: &'a Snapshot,
    overlay: &'a Overlay,
    clock: Clock,
    q: &'a SearchQuery,
    prep: &'a Prepared,
    limit: u64,
    next: AtomicUsize,
    results: Mutex<Vec<PartResult>>,
}

/// The helper reaches `Work` through a shared reference.
const _: () = {
    const fn sync<T: Sync>() {}
    sync::<Work<'static>>();
};

impl Work<'_> {
    /// Runs parts until none is left.
    fn run(&self) {
        let claim = || {
            let k = self.next.fetch_add(1, Ordering::AcqRel);
            (k < PARTS).then_some(Part { k, n: PARTS })
        };
        let r = one_way_parts(
            self.snap,
            self.overlay,
            self.clock,
            self.q,
            self.prep,
            self.limit,
            claim,
        );
        if let Some(r) = r {
            match self.results.lock() {
                Ok(mut g) => g.push(r),
                Err(poisoned) => poisoned.into_inner().push(r),
            }
        }
    }
}

/// A job's state, shared with the helper (which may take the job after [`run`] has
/// returned: it then finds the job retracted and touches nothing else).
struct Job {
    state: AtomicU8,
    panicked: AtomicBool,
}

/// A posted job: its state and the address of its `Work`.
type Posted = (Arc<Job>, usize);

/// The process's split helper: one thread taking one job at a time from `slot`.
struct Helper {
    slot: Mutex<Option<Posted>>,
    /// Set while `slot` holds a job (read without the lock while awake).
    full: AtomicBool,
    wake: Condvar,
}

fn lock(m: &Mutex<Option<Posted>>) -> MutexGuard<'_, Option<Posted>> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The helper, started on first use (if its thread cannot be started, a posted job is
/// never taken: the searching thread runs every part and withdraws it).
fn helper() -> &'static Helper {
    static HELPER: OnceLock<&'static Helper> = OnceLock::new();
    HELPER.get_or_init(|| {
        let h: &'static Helper = Box::leak(Box::new(Helper {
            slot: Mutex::new(None),
            full: AtomicBool::new(false),
            wake: Condvar::new(),
        }));
        let started = std::thread::Builder::new()
            .name("search-split".into())
            .spawn(move || h.serve());
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the split helper; large searches use one thread");
        }
        h
    })
}

impl Helper {
    /// Offers a job (unless another search's job is waiting: then this one runs alone).
    fn post(&self, job: Arc<Job>, addr: usize) {
        let mut g = lock(&self.slot);
        if g.is_none() {
            *g = Some((job, addr));
            self.full.store(true, Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// Removes a retracted job from the slot if it is still there.
    fn withdraw(&self, job: &Job) {
        let mut g = lock(&self.slot);
        if g.as_ref()
            .is_some_and(|(j, _)| std::ptr::eq(Arc::as_ptr(j), job))
        {
            *g = None;
            self.full.store(false, Ordering::Release);
        }
    }

    fn take(&self) -> Option<Posted> {
        let mut g = lock(&self.slot);
        let p = g.take();
        self.full.store(false, Ordering::Release);
        p
    }

    /// The helper thread: polls for a next job briefly after each one, then sleeps until woken.
    fn serve(&self) {
        loop {
            let mut next = None;
            for _ in 0..POLLS {
                if self.full.load(Ordering::Acquire) {
                    next = self.take();
                    if next.is_some() {
                        break;
                    }
                }
            }
            let (job, addr) = match next {
                Some(p) => p,
                None => {
                    let mut g = lock(&self.slot);
                    loop {
                        if let Some(p) = g.take() {
                            self.full.store(false, Ordering::Release);
                            break p;
                        }
                        g = match self.wake.wait(g) {
                            Ok(g) => g,
                            Err(poisoned) => poisoned.into_inner(),
                        };
                    }
                }
            };
            if job
                .state
                .compare_exchange(POSTED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue; // Retracted: its `Work` may be gone; do not touch it.
            }
            // SAFETY: the job is TAKEN, so `run` (through `Settle`) does not return, and
            // its `Work` is not dropped, before this thread stores DONE below; `Work` is
            // Sync (checked above). The 'static lifetime is never relied on beyond that.
            let work = unsafe { &*(addr as *const Work<'static>) };
            if catch_unwind(AssertUnwindSafe(|| work.run())).is_err() {
                job.panicked.store(true, Ordering::Release);
            }
            job.state.store(DONE, Ordering::Release);
        }
    }
}

/// Makes sure the helper is not (and will never be) using `Work` before `Work` is
/// dropped, on every way out of [`run`] (including a panic on this thread).
struct Settle<'j>(&'j Job);

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        let job = self.0;
        if job
            .state
            .compare_exchange(POSTED, RETRACTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            helper().withdraw(job);
            return;
        }
        // Taken: the helper is running parts; each is short.
        while job.state.load(Ordering::Acquire) != DONE {
            std::thread::yield_now();
        }
    }
}

/// Runs the search's [`PARTS`] parts on this thread and, while it helps, the helper.
/// Returns each thread's result over the parts it ran (in no particular order); `None` if
/// a part was lost, which only a panic while storing a result could cause (the caller then
/// runs the search whole).
pub(crate) fn run(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    q: &SearchQuery,
    prep: &Prepared,
    limit: u64,
) -> Option<Vec<PartResult>> {
    let work = Work {
        snap,
        overlay,
        clock,
        q,
        prep,
        limit,
        next: AtomicUsize::new(0),
        results: Mutex::new(Vec::with_capacity(2)),
    };
    let job = Arc::new(Job {
        state: AtomicU8::new(POSTED),
        panicked: AtomicBool::new(false),
    });
    {
        // Declared after `work`, so dropped before it, even when this thread unwinds.
        let _settle = Settle(&job);
        helper().post(Arc::clone(&job), &work as *const Work<'_> as usize);
        work.run();
    }
    // Settled: the helper is done with `work` or never started on it.
    if job.panicked.load(Ordering::Acquire) {
        // As if this thread had panicked in that part (the caller answers 500).
        resume_unwind(Box::new("a part of a split search panicked"));
    }
    let results = work.results.into_inner().ok()?;
    (results.iter().map(|r| r.parts).sum::<usize>() == PARTS).then_some(results)
}
