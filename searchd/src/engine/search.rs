//! Assembling results: filtering, counting, ordering and the top `limit` of one-way and
//! round-trip searches; offers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};

use format::Snapshot;
use serde_json::{json, Value};

use super::offer_id::{self, slice_key, OfferRef};
use super::paths::{self, Buffers, SliceCand};
use super::price::{micros, CompOpts, CompRef, Construction, Priced};
use super::split;
use super::{prep, render, too_broad, Clock, Ctx, Slice};
use crate::api::ApiError;
use crate::overlay::Overlay;
use crate::query::{Filters, SearchQuery, SortBy};

/// The price of a whole itinerary: one currency, fare components over all its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItinPrice {
    pub cur: [u8; 3],
    pub total: i64,
    pub n: u8,
    /// Components; `from`/`to` index the itinerary's segments across slices.
    pub comps: [CompRef; 6],
    pub seats: u16,
}

impl ItinPrice {
    pub fn comps(&self) -> &[CompRef] {
        &self.comps[..self.n as usize]
    }
    pub fn micros(&self) -> i128 {
        micros(self.total, &self.cur)
    }

    /// The price of a one-way itinerary with this construction.
    pub fn from_parts_pub(c: &Construction) -> ItinPrice {
        Self::from_parts(&[(c, 0)])
    }

    fn from_parts(parts: &[(&Construction, u8)]) -> ItinPrice {
        let mut p = ItinPrice {
            cur: parts.first().map(|c| c.0.cur).unwrap_or([0; 3]),
            seats: u16::MAX,
            ..Default::default()
        };
        for (c, offset) in parts {
            p.total = p.total.saturating_add(c.total);
            p.seats = p.seats.min(c.seats);
            for comp in c.comps() {
                if (p.n as usize) < p.comps.len() {
                    p.comps[p.n as usize] = CompRef {
                        from: comp.from + offset,
                        to: comp.to + offset,
                        ..*comp
                    };
                    p.n += 1;
                }
            }
        }
        p
    }
}

/// A typed itinerary: one or two slices and its price (if it has a valid construction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Itinerary {
    pub slices: [Slice; 2],
    pub n_slices: u8,
    pub price: Option<ItinPrice>,
}

impl Itinerary {
    pub fn slices(&self) -> &[Slice] {
        &self.slices[..self.n_slices as usize]
    }
    pub fn duration(&self) -> i64 {
        self.slices().iter().map(|s| s.duration()).sum()
    }
}

/// The typed answer of a search.
#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    pub itineraries: Vec<Itinerary>,
    /// Itineraries that matched (all of them, not only the returned ones).
    pub total: u64,
    /// The work budget ran out: the answer is incomplete and must not be served.
    pub too_broad: bool,
    /// Elementary steps taken (see [`super::WORK_LIMIT`]).
    pub work: u64,
}

fn passes_price(f: &Filters, priced_only: bool, p: Option<i128>) -> bool {
    match (p, f.max_price_micros) {
        (None, Some(_)) => false,
        (None, None) => !priced_only,
        (Some(v), Some(m)) => v <= m,
        (Some(_), None) => true,
    }
}

/// Per-thread buffers reused across queries (no allocation storms, no page faults from
/// large vectors being mapped and unmapped on every query).
#[derive(Default)]
struct Scratch {
    bufs: Buffers,
    outs: Vec<SliceCand>,
    ins: Vec<SliceCand>,
    top: Vec<(TopKey, Kept)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn take_scratch() -> Scratch {
    SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

fn put_scratch(mut s: Scratch) {
    // Keep at most ~8 MB of candidates per thread.
    let max = (8 << 20) / std::mem::size_of::<SliceCand>().max(1);
    for v in [&mut s.outs, &mut s.ins] {
        v.clear();
        if v.capacity() > max {
            *v = Vec::new();
        }
    }
    s.top.clear();
    if s.top.capacity() > max {
        s.top = Vec::new();
    }
    SCRATCH.with(|c| *c.borrow_mut() = s);
}

/// Searches running in this process right now (see [`split_worth_it`]).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Counts one running search for as long as it lives.
struct Running;

impl Running {
    /// Enters and returns how many searches run, this one included.
    fn enter() -> (Running, usize) {
        let n = RUNNING.fetch_add(1, Ordering::Relaxed) + 1;
        (Running, n)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A one-way search with fewer connection points than this runs on one thread: splitting
/// it costs more (handing parts over, merging) than it saves. SDQ-MIA, the slowest pair of
/// the benchmark workload (~500 us on one thread), has 207; pairs around 50 take ~60 us.
const SPLIT_MIN_POINTS: usize = 96;

/// Whether a one-way search is split in parts run on two threads: only when it is
/// large and nothing else is searching, so an idle core is there to take some parts.
/// Under load every core is busy with other requests, and a split would only add overhead.
fn split_worth_it(ctx: &Ctx<'_>, q: &SearchQuery, running: usize) -> bool {
    running <= 1
        && splittable(q)
        && split::cores() >= 2
        && paths::connection_points(ctx, &q.origin, &q.destination) >= SPLIT_MIN_POINTS
}

/// Only one-way searches with connections are split (round trips and nonstop searches are
/// not).
fn splittable(q: &SearchQuery) -> bool {
    q.return_date.is_none() && q.filters.max_connections >= 1
}

/// Whether [`run_search_with`] splits a search in two parallel parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// When it is large and the process is otherwise idle (what [`run_search`] does).
    Auto,
    /// Never: one thread.
    Never,
    /// Whenever it can be split (one-way with connections), however small: for tests that
    /// check a split answers exactly as a whole run, and for benchmarks.
    Always,
}

/// What one thread of a split one-way search found, over the parts it ran.
pub(crate) struct PartResult {
    /// How many parts this thread claimed (it ran them all unless the budget ran out).
    pub parts: usize,
    total: u64,
    items: Vec<(TopKey, Kept)>,
    work: u64,
    exhausted: bool,
}

/// Runs parts of a one-way search on this thread, claiming each from `claim` until it
/// gives none, and keeps the best `limit` over all of them: one sink for every part this
/// thread runs, so a later part is filtered by the threshold the earlier ones set (with a
/// sink per part, each part kept and priced its own best `limit`). `None` when it claimed
/// no part. Once the budget is spent, the remaining claimed parts are counted, not run:
/// the merged answer is too broad.
pub(crate) fn one_way_parts(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    q: &SearchQuery,
    prep: &prep::Prepared,
    limit: u64,
    claim: impl Fn() -> Option<paths::Part>,
) -> Option<PartResult> {
    let mut part = claim()?;
    let mut ctx = Ctx::new(
        snap,
        overlay,
        clock,
        &q.filters,
        prep,
        &[&q.origin, &q.destination],
    );
    ctx.limit = limit;
    let mut sc = take_scratch();
    let mut sink = TopK::new(q, &mut sc.top);
    let mut parts = 0;
    loop {
        parts += 1;
        if !ctx.exhausted() {
            paths::slices(
                &ctx,
                &q.origin,
                &q.destination,
                q.date,
                part,
                &mut sc.bufs,
                &mut sink,
            );
        }
        match claim() {
            Some(p) => part = p,
            None => break,
        }
    }
    sink.compact(&ctx);
    let (total, items) = (sink.total, sink.items.clone());
    put_scratch(sc);
    Some(PartResult {
        parts,
        total,
        items,
        work: ctx.work_done(),
        exhausted: ctx.exhausted(),
    })
}

/// Runs a parsed search. Never panics; `too_broad` set when the work budget ran out.
///
/// A large one-way search on an otherwise idle process is split in parts run by two
/// threads (see [`split_worth_it`] and `split`); the answer is the same either way: the
/// parts enumerate disjoint shares, their best `limit` are merged under the same total
/// order, their counts add up, and the query is too broad exactly when the parts' steps add
/// up to more than the budget (each part counts the steps a whole run would count for its
/// share).
pub fn run_search(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    q: &SearchQuery,
) -> SearchResult {
    run_search_with(snap, overlay, clock, q, Split::Auto)
}

/// [`run_search`] with the choice of splitting made by the caller.
pub fn run_search_with(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    q: &SearchQuery,
    split: Split,
) -> SearchResult {
    run_search_limited(snap, overlay, clock, q, split, super::work_limit(), false)
}

/// [`run_search_with`] within at most `limit` steps (at most the process's budget).
/// `small_only`: answer too broad at once, without starting, a search with connections
/// and at least [`SPLIT_MIN_POINTS`] connection points (one that will very likely need
/// more than a small budget: running it up to the budget would be work thrown away).
fn run_search_limited(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    q: &SearchQuery,
    split: Split,
    limit: u64,
    small_only: bool,
) -> SearchResult {
    let (_running, running) = Running::enter();
    let prep = prep::get(snap);
    let mut ctx = Ctx::new(
        snap,
        overlay,
        clock,
        &q.filters,
        &prep,
        &[&q.origin, &q.destination],
    );
    ctx.limit = limit.min(ctx.limit);
    let limit = ctx.limit;
    if small_only
        && q.filters.max_connections >= 1
        && paths::connection_points(&ctx, &q.origin, &q.destination) >= SPLIT_MIN_POINTS
    {
        return SearchResult {
            too_broad: true,
            ..SearchResult::default()
        };
    }
    let parallel = match split {
        Split::Auto => split_worth_it(&ctx, q, running),
        Split::Never => false,
        Split::Always => splittable(q),
    };
    if parallel {
        if let Some(parts) = split::run(snap, overlay, clock, q, &prep, limit) {
            return merge_parts(&ctx, q, parts);
        }
    }
    run_whole(&ctx, q)
}

/// Merges the parts of a split one-way search into its answer.
fn merge_parts(ctx: &Ctx<'_>, q: &SearchQuery, parts: Vec<PartResult>) -> SearchResult {
    debug_assert_eq!(parts.iter().map(|p| p.parts).sum::<usize>(), split::PARTS);
    let work: u64 = parts.iter().map(|p| p.work).sum();
    if parts.iter().any(|p| p.exhausted) || work > ctx.work_limit() {
        return SearchResult {
            too_broad: true,
            work,
            ..SearchResult::default()
        };
    }
    let mut items: Vec<(TopKey, Kept)> = Vec::new();
    let mut sink = TopK::new(q, &mut items);
    for p in parts {
        sink.total += p.total;
        sink.items.extend(p.items);
    }
    let mut res = sink.finish(ctx);
    res.work = work;
    res
}

/// Runs a whole parsed search on this thread.
fn run_whole(ctx: &Ctx<'_>, q: &SearchQuery) -> SearchResult {
    let mut sc = take_scratch();
    let Scratch {
        bufs,
        outs,
        ins,
        top,
    } = &mut sc;
    let whole = paths::Part::WHOLE;
    let mut res = match q.return_date {
        None => {
            // One way: count and keep only the best `limit` while enumerating.
            let mut sink = TopK::new(q, top);
            paths::slices(
                ctx,
                &q.origin,
                &q.destination,
                q.date,
                whole,
                bufs,
                &mut sink,
            );
            sink.finish(ctx)
        }
        Some(r) => {
            paths::slices(ctx, &q.origin, &q.destination, q.date, whole, bufs, outs);
            if !ctx.exhausted() {
                paths::slices(ctx, &q.destination, &q.origin, r, whole, bufs, ins);
            }
            round_trip(ctx, q, outs, ins)
        }
    };
    put_scratch(sc);
    if ctx.exhausted() {
        res.itineraries.clear();
        res.too_broad = true;
    }
    res.work = ctx.work_done();
    res
}

/// The order of one-way results before the id: (unpriced last, sort value, departure).
type TopKey = (bool, i128, i64);

/// A slice the one-way sink keeps, with its cheapest construction.
#[derive(Clone, Copy)]
pub(crate) struct Kept {
    slice: Slice,
    best: Option<Construction>,
}

/// The one-way sink: counts every slice that passes the price filters (`meta.total`) and
/// keeps the best `limit` under the query's order. Kept slices live in a buffer of up to
/// `2 * limit`; once it holds `limit`, the worst key among them is a threshold, and when it
/// fills, the best `limit` are selected and the worst kept key becomes the threshold: a
/// later slice with a strictly larger key can never be among the best `limit` (those
/// already number `limit`), so it is counted but neither priced in full nor stored. Slices
/// with an equal key are kept (the id decides). Exact, and O(1) amortised per slice.
struct TopK<'s> {
    sort: SortBy,
    priced_only: bool,
    limit: usize,
    total: u64,
    threshold: Option<TopKey>,
    items: &'s mut Vec<(TopKey, Kept)>,
}

fn top_cmp(ctx: &Ctx<'_>, a: &(TopKey, Kept), b: &(TopKey, Kept)) -> std::cmp::Ordering {
    a.0.cmp(&b.0)
        .then_with(|| slice_key(ctx, a.1.slice.segs()).cmp(&slice_key(ctx, b.1.slice.segs())))
}

impl<'s> TopK<'s> {
    fn new(q: &SearchQuery, items: &'s mut Vec<(TopKey, Kept)>) -> Self {
        items.clear();
        TopK {
            sort: q.sort,
            priced_only: q.priced_only,
            limit: q.limit.max(1),
            total: 0,
            threshold: None,
            items,
        }
    }

    /// The positions of the items in result order (the items are large: sorting positions
    /// moves 4 bytes per step instead of a whole slice and its price).
    fn order(&self) -> Vec<u32> {
        debug_assert!(self.items.len() <= u32::MAX as usize);
        (0..self.items.len() as u32).collect()
    }

    /// Keeps the best `limit` items and sets the threshold.
    fn compact(&mut self, ctx: &Ctx<'_>) {
        if self.items.len() <= self.limit {
            return;
        }
        let mut order = self.order();
        let items = &*self.items;
        order.select_nth_unstable_by(self.limit - 1, |&a, &b| {
            top_cmp(ctx, &items[a as usize], &items[b as usize])
        });
        let mut keep = vec![false; items.len()];
        for &i in &order[..self.limit] {
            keep[i as usize] = true;
        }
        let mut i = 0;
        self.items.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        debug_assert_eq!(self.items.len(), self.limit);
        self.threshold = self.items.iter().map(|x| x.0).max();
    }

    fn finish(mut self, ctx: &Ctx<'_>) -> SearchResult {
        self.compact(ctx);
        let mut order = self.order();
        let items = &*self.items;
        order.sort_by(|&a, &b| top_cmp(ctx, &items[a as usize], &items[b as usize]));
        let itineraries = order
            .iter()
            .map(|&i| {
                let c = &items[i as usize].1;
                Itinerary {
                    slices: [c.slice, Slice::default()],
                    n_slices: 1,
                    price: c.best.as_ref().map(|p| ItinPrice::from_parts(&[(p, 0)])),
                }
            })
            .collect();
        SearchResult {
            itineraries,
            total: self.total,
            too_broad: false,
            work: 0,
        }
    }
}

impl paths::Sink for TopK<'_> {
    #[inline]
    fn offer(
        &mut self,
        ctx: &Ctx<'_>,
        slice: &Slice,
        value: Option<i128>,
        price: impl FnOnce() -> Priced,
    ) {
        if !passes_price(ctx.filters, self.priced_only, value) {
            return;
        }
        self.total += 1;
        let (unpriced, primary) = match self.sort {
            SortBy::Price => match value {
                Some(v) => (false, v),
                None => (true, 0),
            },
            SortBy::Duration => (false, i128::from(slice.duration())),
            SortBy::Departure => (false, 0),
        };
        let key = (unpriced, primary, slice.dep_utc());
        if self.threshold.is_some_and(|t| key > t) {
            return;
        }
        // A one-way answer shows the cheapest construction only: keep just that.
        let best = price().best().copied();
        debug_assert_eq!(best.map(|p| p.micros()), value);
        self.items.push((
            key,
            Kept {
                slice: *slice,
                best,
            },
        ));
        if self.items.len() == self.limit && self.threshold.is_none() {
            // The first `limit` items: nothing after the worst of them can be kept.
            self.threshold = self.items.iter().map(|x| x.0).max();
        } else if self.items.len() >= 2 * self.limit {
            self.compact(ctx);
        }
    }

    fn settled(&mut self, ctx: &Ctx<'_>, slice: &Slice, lo: i128, hi: i128) -> bool {
        debug_assert!(lo <= hi);
        let passes = passes_price(ctx.filters, self.priced_only, Some(lo));
        if passes != passes_price(ctx.filters, self.priced_only, Some(hi)) {
            return false;
        }
        if passes {
            // The least key the slice can have: kept only if it is within the threshold.
            let primary = match self.sort {
                SortBy::Price => lo,
                SortBy::Duration => i128::from(slice.duration()),
                SortBy::Departure => 0,
            };
            if self
                .threshold
                .is_none_or(|t| (false, primary, slice.dep_utc()) <= t)
            {
                return false;
            }
            self.total += 1;
        }
        true
    }
}

/// The best common-currency price of a pair: (outbound, inbound) constructions.
fn pair_price<'p>(o: &'p Priced, i: &'p Priced) -> Option<(&'p Construction, &'p Construction)> {
    let mut best: Option<(&Construction, &Construction, i128)> = None;
    for a in o.opts() {
        if let Some(b) = i.get(&a.cur) {
            let v = a.micros() + b.micros();
            // Equal totals: the first currency code (as for one slice).
            if best.is_none_or(|x| (v, a.cur) < (x.2, x.0.cur)) {
                best = Some((a, b, v));
            }
        }
    }
    best.map(|(a, b, _)| (a, b))
}

fn pair_micros(o: &Priced, i: &Priced) -> Option<i128> {
    pair_price(o, i).map(|(a, b)| a.micros() + b.micros())
}

fn make_pair(o: &SliceCand, i: &SliceCand) -> Itinerary {
    Itinerary {
        slices: [o.slice, i.slice],
        n_slices: 2,
        price: pair_price(&o.price, &i.price)
            .map(|(a, b)| ItinPrice::from_parts(&[(a, 0), (b, o.slice.n)])),
    }
}

fn round_trip(
    ctx: &Ctx<'_>,
    q: &SearchQuery,
    outs: &mut Vec<SliceCand>,
    ins: &mut Vec<SliceCand>,
) -> SearchResult {
    let f = ctx.filters;
    if q.priced_only || f.max_price_micros.is_some() {
        // A slice without a price cannot be part of a priced pair.
        outs.retain(|c| c.price.n > 0);
        ins.retain(|c| c.price.n > 0);
    }
    // Order outbound by (departure, id) and inbound by id: ranks give cheap tie-breaks.
    outs.sort_by_cached_key(|c| (c.slice.dep_utc(), slice_key(ctx, c.slice.segs())));
    ins.sort_by_cached_key(|c| slice_key(ctx, c.slice.segs()));
    let passes = |o: &SliceCand, i: &SliceCand| {
        turnaround_ok(ctx, &o.slice, &i.slice)
            && passes_price(f, q.priced_only, pair_micros(&o.price, &i.price))
    };
    let total = count_pairs(ctx, q, outs, ins);
    let mut picked: Vec<(usize, usize)> = Vec::new();
    let limit = q.limit;
    match q.sort {
        SortBy::Departure => {
            'outer: for (oi, o) in outs.iter().enumerate() {
                for (ii, i) in ins.iter().enumerate() {
                    if !ctx.step(1) {
                        break 'outer;
                    }
                    if passes(o, i) {
                        picked.push((oi, ii));
                        if picked.len() >= limit {
                            break 'outer;
                        }
                    }
                }
            }
        }
        SortBy::Duration => {
            let mut order: Vec<usize> = (0..ins.len()).collect();
            order.sort_by_key(|&i| (ins[i].slice.duration(), i));
            let keys: Vec<i128> = order
                .iter()
                .map(|&i| i128::from(ins[i].slice.duration()))
                .collect();
            let streams: Vec<(usize, i128, &[usize], &[i128])> = (0..outs.len())
                .map(|o| {
                    (
                        o,
                        i128::from(outs[o].slice.duration()),
                        &order[..],
                        &keys[..],
                    )
                })
                .collect();
            merge(ctx, &streams, limit, &mut picked, |o, i| {
                passes(&outs[o], &ins[i])
            });
        }
        SortBy::Price => {
            // One stream per (outbound, currency) over the inbound slices of that currency,
            // sorted by (price, id).
            let mut curs: Vec<[u8; 3]> = ins
                .iter()
                .flat_map(|c| c.price.opts().iter().map(|p| p.cur))
                .collect();
            curs.sort_unstable();
            curs.dedup();
            let mut by_cur: Vec<(Vec<usize>, Vec<i128>)> = Vec::with_capacity(curs.len());
            for cur in &curs {
                let mut idx: Vec<(i128, usize)> = ins
                    .iter()
                    .enumerate()
                    .filter_map(|(n, c)| c.price.get(cur).map(|p| (p.micros(), n)))
                    .collect();
                idx.sort_unstable();
                by_cur.push((
                    idx.iter().map(|x| x.1).collect(),
                    idx.iter().map(|x| x.0).collect(),
                ));
            }
            let mut streams: Vec<(usize, i128, &[usize], &[i128])> = Vec::new();
            let mut stream_cur: Vec<[u8; 3]> = Vec::new();
            for (oi, o) in outs.iter().enumerate() {
                for p in o.price.opts() {
                    if let Ok(ci) = curs.binary_search(&p.cur) {
                        streams.push((oi, p.micros(), &by_cur[ci].0[..], &by_cur[ci].1[..]));
                        stream_cur.push(p.cur);
                    }
                }
            }
            // A pair is emitted by the stream of its best currency only.
            merge_priced(ctx, &streams, &stream_cur, limit, &mut picked, |o, i| {
                if !turnaround_ok(ctx, &outs[o].slice, &ins[i].slice) {
                    return (None, None);
                }
                let best = pair_price(&outs[o].price, &ins[i].price);
                (
                    best.map(|(a, _)| a.cur),
                    best.map(|(a, b)| a.micros() + b.micros()),
                )
            });
            if picked.len() < limit && !q.priced_only && f.max_price_micros.is_none() {
                'outer2: for (oi, o) in outs.iter().enumerate() {
                    for (ii, i) in ins.iter().enumerate() {
                        if !ctx.step(1) {
                            break 'outer2;
                        }
                        if pair_price(&o.price, &i.price).is_none()
                            && turnaround_ok(ctx, &o.slice, &i.slice)
                        {
                            picked.push((oi, ii));
                            if picked.len() >= limit {
                                break 'outer2;
                            }
                        }
                    }
                }
            }
        }
    }
    let itineraries = picked
        .iter()
        .map(|&(o, i)| make_pair(&outs[o], &ins[i]))
        .collect();
    SearchResult {
        itineraries,
        total,
        too_broad: false,
        work: 0,
    }
}

/// Whether the inbound slice `i` leaves after the outbound `o` has landed, by at least the
/// minimum connection time between them (the query's `min_connection_minutes`, else the
/// MCT table at the arrival airport): nobody flies back before arriving, and turning round
/// takes at least as long as a connection.
fn turnaround_ok(ctx: &Ctx<'_>, o: &Slice, i: &Slice) -> bool {
    match (o.segs().last(), i.segs().first()) {
        (Some(a), Some(b)) => b.dep_utc - a.arr_utc >= paths::min_connection(ctx, a, b),
        _ => false,
    }
}

/// Whether every outbound x inbound pair passes [`turnaround_ok`] (the usual case, a return
/// on a later day): checked against the latest MCT any rule can ask at each arrival airport.
fn every_turnaround_ok(ctx: &Ctx<'_>, outs: &[SliceCand], ins: &[SliceCand]) -> bool {
    let Some(first_return) = ins.iter().map(|c| c.slice.dep_utc()).min() else {
        return true;
    };
    outs.iter().all(|c| {
        let Some(a) = c.slice.segs().last() else {
            return false;
        };
        let most = match ctx.filters.min_connection_minutes {
            Some(m) => i64::from(m),
            None => i64::from(ctx.prep.ceil(a.dest)),
        };
        a.arr_utc + most <= first_return
    })
}

/// Counts the pairs that pass without enumerating them when every return leaves late
/// enough and every slice has at most one currency (the usual case): per currency, a
/// binary search per outbound slice.
fn count_pairs(ctx: &Ctx<'_>, q: &SearchQuery, outs: &[SliceCand], ins: &[SliceCand]) -> u64 {
    let f = ctx.filters;
    let turnarounds_ok = every_turnaround_ok(ctx, outs, ins);
    if !turnarounds_ok {
        let mut total = 0u64;
        for o in outs {
            if !ctx.step(ins.len() as u64) {
                return total;
            }
            for i in ins {
                if turnaround_ok(ctx, &o.slice, &i.slice)
                    && passes_price(f, q.priced_only, pair_micros(&o.price, &i.price))
                {
                    total += 1;
                }
            }
        }
        return total;
    }
    if !q.priced_only && f.max_price_micros.is_none() {
        return outs.len() as u64 * ins.len() as u64;
    }
    let simple = outs.iter().chain(ins.iter()).all(|c| c.price.n <= 1);
    if simple {
        let mut by: Vec<([u8; 3], i128)> = ins
            .iter()
            .filter_map(|c| c.price.best().map(|p| (p.cur, p.micros())))
            .collect();
        by.sort_unstable();
        let mut total = 0u64;
        for o in outs {
            let Some(p) = o.price.best() else { continue };
            let s = by.partition_point(|x| x.0 < p.cur);
            let e = match f.max_price_micros {
                Some(m) => {
                    by.partition_point(|x| x.0 < p.cur || (x.0 == p.cur && p.micros() + x.1 <= m))
                }
                None => by.partition_point(|x| x.0 <= p.cur),
            };
            total += e.saturating_sub(s) as u64;
        }
        return total;
    }
    let mut total = 0u64;
    for o in outs {
        if !ctx.step(ins.len() as u64) {
            return total;
        }
        for i in ins {
            if passes_price(f, q.priced_only, pair_micros(&o.price, &i.price)) {
                total += 1;
            }
        }
    }
    total
}

type Stream<'a> = (usize, i128, &'a [usize], &'a [i128]);

/// K-way merge of streams (outbound `o`, its key, inbound indexes sorted by key) in the
/// order (key sum, outbound position, inbound id rank), keeping pairs `ok` accepts.
fn merge(
    ctx: &Ctx<'_>,
    streams: &[Stream<'_>],
    limit: usize,
    picked: &mut Vec<(usize, usize)>,
    ok: impl Fn(usize, usize) -> bool,
) {
    let mut heap: BinaryHeap<Reverse<(i128, usize, usize, usize)>> = BinaryHeap::new();
    for (si, s) in streams.iter().enumerate() {
        if let (Some(&i), Some(&k)) = (s.2.first(), s.3.first()) {
            heap.push(Reverse((s.1 + k, s.0, i, si)));
        }
    }
    let mut pos = vec![0usize; streams.len()];
    while let Some(Reverse((_, o, i, si))) = heap.pop() {
        if !ctx.step(1) {
            return;
        }
        if ok(o, i) {
            picked.push((o, i));
            if picked.len() >= limit {
                return;
            }
        }
        pos[si] += 1;
        let s = &streams[si];
        if let (Some(&ni), Some(&k)) = (s.2.get(pos[si]), s.3.get(pos[si])) {
            heap.push(Reverse((s.1 + k, s.0, ni, si)));
        }
    }
}

/// Like [`merge`] for price streams: a pair is kept only from the stream of its best
/// currency, and a stream ends once it passes `max_price`.
fn merge_priced(
    ctx: &Ctx<'_>,
    streams: &[Stream<'_>],
    stream_cur: &[[u8; 3]],
    limit: usize,
    picked: &mut Vec<(usize, usize)>,
    best: impl Fn(usize, usize) -> (Option<[u8; 3]>, Option<i128>),
) {
    let max = ctx.filters.max_price_micros;
    let mut heap: BinaryHeap<Reverse<(i128, usize, usize, usize)>> = BinaryHeap::new();
    for (si, s) in streams.iter().enumerate() {
        if let (Some(&i), Some(&k)) = (s.2.first(), s.3.first()) {
            heap.push(Reverse((s.1 + k, s.0, i, si)));
        }
    }
    let mut pos = vec![0usize; streams.len()];
    while let Some(Reverse((v, o, i, si))) = heap.pop() {
        if !ctx.step(1) {
            return;
        }
        if max.is_some_and(|m| v > m) {
            continue; // this stream only gets dearer
        }
        let (cur, _) = best(o, i);
        if cur == Some(stream_cur[si]) {
            picked.push((o, i));
            if picked.len() >= limit {
                return;
            }
        }
        pos[si] += 1;
        let s = &streams[si];
        if let (Some(&ni), Some(&k)) = (s.2.get(pos[si]), s.3.get(pos[si])) {
            heap.push(Reverse((s.1 + k, s.0, ni, si)));
        }
    }
}

/// `data` of a search response, written without a `Value` tree.
#[derive(serde::Serialize)]
struct SearchData<'c, 'a> {
    itineraries: render::Itineraries<'c, 'a>,
}

/// Parses, searches and hands the typed `data` to `out`; `meta` is `{count, total}`.
fn search_with<T>(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
    split: Split,
    out: impl FnOnce(&SearchData<'_, '_>, usize) -> T,
) -> Result<(T, Value), ApiError> {
    let q = crate::query::parse_search(snap, params)?;
    let res = run_search_with(snap, overlay, clock, &q, split);
    if res.too_broad {
        return Err(too_broad());
    }
    Ok(render_search(snap, overlay, clock, &q, &res, out))
}

fn render_search<T>(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    q: &SearchQuery,
    res: &SearchResult,
    out: impl FnOnce(&SearchData<'_, '_>, usize) -> T,
) -> (T, Value) {
    let prep = prep::get(snap);
    let ctx = Ctx::new(
        snap,
        overlay,
        clock,
        &q.filters,
        &prep,
        &[&q.origin, &q.destination],
    );
    let count = res.itineraries.len();
    let data = SearchData {
        itineraries: render::Itineraries {
            ctx: &ctx,
            items: &res.itineraries,
        },
    };
    (
        out(&data, count),
        json!({ "count": count, "total": res.total }),
    )
}

/// [`search_raw`] on this thread within at most `max_work` steps: `Ok(None)` when those
/// were not enough but the process's budget may be (run it again with [`search_raw`]). For
/// a server that answers small searches where the request arrived and hands the rest to
/// threads that may block for longer; the wasted attempt costs at most `max_work` steps,
/// and nothing for a search with many connection points, which is not attempted (also
/// `Ok(None)`).
pub fn search_raw_within(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
    max_work: u64,
) -> Result<Option<(Vec<u8>, Value)>, ApiError> {
    let q = crate::query::parse_search(snap, params)?;
    let full = super::work_limit();
    let res = run_search_limited(
        snap,
        overlay,
        clock,
        &q,
        Split::Never,
        max_work.min(full),
        max_work < full,
    );
    if res.too_broad {
        return if max_work < full {
            Ok(None)
        } else {
            Err(too_broad())
        };
    }
    Ok(Some(render_search(
        snap,
        overlay,
        clock,
        &q,
        &res,
        |d, _| d.itineraries.search_data_bytes(),
    )))
}

/// JSON bytes of a `Serialize` view (the views cannot fail to serialise).
pub(crate) fn to_json_bytes<T: serde::Serialize>(v: &T, capacity: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut buf, v) {
        Ok(()) => buf,
        Err(_) => b"null".to_vec(),
    }
}

/// `GET /v1/search`: `(data, meta)` with `data.itineraries` and `meta.count`/`meta.total`.
pub fn search(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
) -> Result<(Value, Value), ApiError> {
    search_with(snap, overlay, clock, params, Split::Auto, |d, _| {
        serde_json::to_value(d).unwrap_or(Value::Null)
    })
}

/// [`search`] with `data` already serialised to JSON bytes (the same content, keys in the
/// same order as a serialised `Value`): what the server sends, without a `Value` tree.
pub fn search_raw(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
) -> Result<(Vec<u8>, Value), ApiError> {
    search_raw_split(snap, overlay, clock, params, Split::Auto)
}

/// [`search_raw`] with the choice of splitting made by the caller (see [`Split`]).
pub fn search_raw_split(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
    split: Split,
) -> Result<(Vec<u8>, Value), ApiError> {
    search_with(snap, overlay, clock, params, split, |d, _| {
        d.itineraries.search_data_bytes()
    })
}

/// An offer re-priced now.
#[derive(Debug, Clone)]
pub struct PricedOffer {
    pub itinerary: Itinerary,
    /// The id of the offer at its current price (equal to the given id when unchanged).
    pub id: String,
    pub price_changed: bool,
}

fn offer_filters(r: &OfferRef) -> Filters {
    Filters {
        adults: r.adults,
        children: r.children,
        infants: r.infants,
        cabin: r.cabin,
        ..Filters::default()
    }
}

/// Resolves an offer's flights in `snap` (410 when any no longer operates, or when its
/// segments no longer follow each other in time) and prices it against the live state.
pub fn price_offer(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    r: &OfferRef,
) -> Result<PricedOffer, ApiError> {
    let filters = offer_filters(r);
    let prep = prep::get(snap);
    let ctx = Ctx::new(snap, overlay, clock, &filters, &prep, &[]);
    let mut it = Itinerary {
        slices: [Slice::default(); 2],
        n_slices: 0,
        price: None,
    };
    let mut parts: Vec<Priced> = Vec::new();
    for keys in r.slices.iter().take(2) {
        let mut sl = Slice::default();
        for k in keys.iter().take(3) {
            let s = offer_id::resolve(&ctx, k)?;
            if sl.n > 0 {
                let prev = sl.segs[sl.n as usize - 1];
                if prev.dest != s.origin || s.dep_utc < prev.arr_utc {
                    return Err(ApiError::offer_expired(
                        "the offer's connection no longer exists after a schedule change",
                    ));
                }
            }
            sl.segs[sl.n as usize] = s;
            sl.n += 1;
        }
        let n = sl.n as usize;
        let mut comp = [[CompOpts::default(); 3]; 3];
        for (i, row) in comp.iter_mut().enumerate().take(n) {
            for (j, cell) in row.iter_mut().enumerate().take(n).skip(i) {
                *cell = super::price::comp_price(&ctx, &sl.segs[i..=j]);
            }
        }
        parts.push(super::price::price_slice(n, &comp));
        it.slices[it.n_slices as usize] = sl;
        it.n_slices += 1;
    }
    if let ([out, back], true) = (&it.slices, it.n_slices == 2) {
        // As for a connection, only the order is checked: the offer does not carry the
        // query's connection limits.
        if back.dep_utc() < out.arr_utc() {
            return Err(ApiError::offer_expired(
                "the offer's return no longer leaves after its outbound flight lands",
            ));
        }
    }
    it.price = match parts.as_slice() {
        [a] => a.best().map(|p| ItinPrice::from_parts(&[(p, 0)])),
        [a, b] => {
            pair_price(a, b).map(|(x, y)| ItinPrice::from_parts(&[(x, 0), (y, it.slices[0].n)]))
        }
        _ => None,
    };
    let now = it.price.map(|p| (p.cur, p.total));
    let id = offer_id::encode(&ctx, &it);
    Ok(PricedOffer {
        itinerary: it,
        id,
        price_changed: now != r.quoted,
    })
}

/// `GET /v1/offers/{id}`: the itinerary re-priced now, with `price_changed`.
pub fn offer(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    id: &str,
) -> Result<(Value, Value), ApiError> {
    offer_with(snap, overlay, clock, id, |v| {
        serde_json::to_value(v).unwrap_or(Value::Null)
    })
}

/// [`offer`] with `data` already serialised to JSON bytes.
pub fn offer_raw(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    id: &str,
) -> Result<(Vec<u8>, Value), ApiError> {
    offer_with(snap, overlay, clock, id, |v| v.to_json_bytes())
}

fn offer_with<T>(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    id: &str,
    out: impl FnOnce(&render::ItineraryJson<'_, '_>) -> T,
) -> Result<(T, Value), ApiError> {
    let r = offer_id::decode_offer(snap, id)?;
    let p = price_offer(snap, overlay, clock, &r)?;
    let filters = offer_filters(&r);
    let prep = prep::get(snap);
    let ctx = Ctx::new(snap, overlay, clock, &filters, &prep, &[]);
    let data = render::itinerary_json(&ctx, &p.itinerary, Some(p.price_changed));
    Ok((out(&data), json!({})))
}
