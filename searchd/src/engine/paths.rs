//! Slice enumeration: every direct, 1-stop and 2-stop way from an origin set to a destination
//! set leaving on one local date, with exact connection rules, each priced.
//!
//! Dated segments come from the network's segment index (`segments_between`, sorted by local
//! departure time of day): a segment ref with day shift `k` departs on local date `D` when its
//! flight operates on base date `D - k`. Connection windows are UTC intervals; they are turned
//! into local-time intervals with the airport's own range of departure offsets (so the
//! binary searches are exact) and every candidate is checked again in UTC.

use format::model::{AirportId, ArchivedSegmentRef};

use super::prep::{MctQuery, IRREGULAR};
use super::price::{
    comp_lb, comp_price_with, flight_class_mask, market_of, masked_lb, masked_lb_at, price_refs,
    value1, value2, warm_seats, CompOpts, Priced, SeatCache, EMPTY,
};
use super::{Ctx, DatedSeg, Slice};

/// A dated segment with its (lazily computed) price as a component of its own.
#[derive(Clone, Copy)]
pub(crate) struct Cand {
    pub seg: DatedSeg,
    price: Option<CompOpts>,
    seats: SeatCache,
    lb: Option<Option<i128>>,
    /// Cheapest-only mode: lower bounds of this segment as a component of its own, and of
    /// a through component on its carrier to the slice's destination (see [`masked_lb`]).
    own: Option<Option<i128>>,
    through: Option<Option<i128>>,
}

impl Cand {
    fn new(seg: DatedSeg) -> Self {
        Cand {
            seg,
            price: None,
            seats: SeatCache::default(),
            lb: None,
            own: None,
            through: None,
        }
    }

    /// [`masked_lb`] of this segment alone, on its own date and classes.
    fn own_lb(&mut self, ctx: &Ctx<'_>) -> Option<i128> {
        if self.own.is_none() {
            let s = &self.seg;
            self.own = Some(masked_lb(
                ctx,
                s.carrier,
                s.origin,
                s.dest,
                Some(s.dep_local.div_euclid(1440) as i32),
                flight_class_mask(ctx, s.flight, Some(s.day)),
            ));
        }
        self.own.flatten()
    }

    /// [`masked_lb`] of a component starting with this segment and ending at `to` (on its
    /// carrier, date and classes: a later segment of the component only restricts more).
    fn through_lb(&mut self, ctx: &Ctx<'_>, to: AirportId) -> Option<i128> {
        if self.through.is_none() {
            let s = &self.seg;
            self.through = Some(masked_lb(
                ctx,
                s.carrier,
                s.origin,
                to,
                Some(s.dep_local.div_euclid(1440) as i32),
                flight_class_mask(ctx, s.flight, Some(s.day)),
            ));
        }
        self.through.flatten()
    }

    /// Lower bound of this segment as a component of its own (see [`comp_lb`]).
    fn lb(&mut self, ctx: &Ctx<'_>) -> Option<i128> {
        match self.lb {
            Some(v) => v,
            None => {
                let v = comp_lb(ctx, std::slice::from_ref(&self.seg));
                self.lb = Some(v);
                v
            }
        }
    }

    /// This segment's price as a component of its own, computed once per candidate.
    fn single(&mut self, ctx: &Ctx<'_>) -> &CompOpts {
        if self.price.is_none() {
            let Cand { seg, seats, .. } = self;
            let seg = *seg;
            let p = comp_price_with(ctx, std::slice::from_ref(&seg), &mut |_, c| {
                seats.get(ctx, &seg, c)
            });
            self.price = Some(p);
        }
        self.price.as_ref().unwrap_or(&EMPTY)
    }
}

/// Where enumerated slices go: a sink sees every slice that satisfies the query's
/// itinerary rules with its cheapest price, and asks for the full price (the
/// constructions) only for the slices it keeps.
pub(crate) trait Sink {
    /// `value`: the slice's cheapest price in millionths (`None`: no valid construction);
    /// `price` builds the constructions (`value` is `price().best()`'s).
    fn offer(
        &mut self,
        ctx: &Ctx<'_>,
        slice: &Slice,
        value: Option<i128>,
        price: impl FnOnce() -> Priced,
    );

    /// For a slice whose cheapest price is known to lie in `lo..=hi` (millionths; `hi` is
    /// a price it can be sold at): when what [`Sink::offer`] would do with it (count it,
    /// keep it) is the same for every value in that range and it would not be kept, counts
    /// it as `offer` would and returns `true`, so the exact price need not be computed.
    /// Otherwise does nothing and returns `false`.
    fn settled(&mut self, _ctx: &Ctx<'_>, _slice: &Slice, lo: i128, hi: i128) -> bool {
        debug_assert!(lo <= hi);
        false
    }
}

/// Keeps every slice (in cheapest-only mode: those within the cap, lowering it).
impl Sink for Vec<SliceCand> {
    #[inline]
    fn offer(
        &mut self,
        ctx: &Ctx<'_>,
        slice: &Slice,
        value: Option<i128>,
        price: impl FnOnce() -> Priced,
    ) {
        if keep(ctx, value, slice.dep_utc()) {
            self.push(SliceCand {
                slice: *slice,
                price: price(),
            });
        }
    }
}

/// Prices a component made of several candidates, through their seat caches.
fn multi(ctx: &Ctx<'_>, cands: &mut [&mut Cand]) -> CompOpts {
    let mut segs = [DatedSeg::default(); 3];
    let n = cands.len().min(3);
    for (i, c) in cands.iter().take(n).enumerate() {
        segs[i] = c.seg;
    }
    if segs[..n].iter().any(|s| s.carrier != segs[0].carrier) {
        return EMPTY;
    }
    comp_price_with(ctx, &segs[..n], &mut |i, class| match cands.get_mut(i) {
        Some(c) => {
            let seg = c.seg;
            c.seats.get(ctx, &seg, class)
        }
        None => 0,
    })
}

/// Which share of a slice enumeration to do: connection points (the first one of a 2-stop
/// slice) are dealt round-robin to `n` parts, and part 0 also does the direct segments, so
/// the parts enumerate disjoint sets of slices whose union is the whole, each taking the
/// same elementary steps it would take in a whole enumeration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub k: usize,
    pub n: usize,
}

impl Part {
    pub const WHOLE: Part = Part { k: 0, n: 1 };

    /// Whether the `i`-th connection point (in enumeration order) is this part's.
    #[inline]
    fn has(self, i: usize) -> bool {
        debug_assert!(self.k < self.n);
        i % self.n == self.k
    }
}

/// A priced slice candidate.
#[derive(Clone, Copy, Debug)]
pub struct SliceCand {
    pub slice: Slice,
    pub price: Priced,
}

/// Builds the dated segment of legs `from..=to` of `flight` on base date `base`.
pub(crate) fn dated(ctx: &Ctx<'_>, flight: u32, from: u8, to: u8, base: i32) -> Option<DatedSeg> {
    let net = ctx.net;
    let fl = net.flights.get(flight as usize)?;
    let legs = net.flight_legs(fl);
    let l0 = legs.get(from as usize)?;
    let l1 = legs.get(to as usize)?;
    if from > to {
        return None;
    }
    let day = i64::from(base) - i64::from(net.first_day.to_native());
    if !(0..=i64::from(u16::MAX)).contains(&day) {
        return None;
    }
    let b = i64::from(base) * 1440;
    let dep_utc = b + i64::from(l0.dep_utc_min.to_native());
    let arr_utc = b + i64::from(l1.arr_utc_min.to_native());
    Some(DatedSeg {
        flight,
        from_leg: from,
        to_leg: to,
        day: day as u16,
        carrier: fl.carrier.to_native(),
        origin: l0.dep.to_native(),
        dest: l1.arr.to_native(),
        dep_utc,
        arr_utc,
        dep_local: dep_utc + i64::from(l0.dep_offset_min.to_native()),
        arr_local: arr_utc + i64::from(l1.arr_offset_min.to_native()),
    })
}

/// Appends the dated segments from `a` to `b` whose local departure is in
/// `[local_lo, local_hi]` and UTC departure in `[utc_lo, utc_hi]`, on allowed carriers,
/// with no stop among the query's end airports. Reads the refs' [`SegInfo`]s (one market,
/// sorted by local time of day), not the refs, flights and legs: the same dated segments
/// as [`dated`] builds.
#[allow(clippy::too_many_arguments)]
fn departures(
    ctx: &Ctx<'_>,
    a: AirportId,
    b: AirportId,
    local_lo: i64,
    local_hi: i64,
    utc_lo: i64,
    utc_hi: i64,
    out: &mut Vec<DatedSeg>,
) {
    let net = ctx.net;
    let (seg_lo, seg_hi) = net.segment_range_between(a, b);
    let Some(segs) = ctx.prep.seg_info.get(seg_lo..seg_hi) else {
        return;
    };
    if segs.is_empty() || local_lo > local_hi {
        return;
    }
    let first_day = i64::from(net.first_day.to_native());
    let d0 = local_lo.div_euclid(1440);
    let d1 = local_hi.div_euclid(1440);
    for d in d0..=d1 {
        let lo = (local_lo - d * 1440).max(0);
        let hi = (local_hi - d * 1440).min(1439);
        if lo > hi {
            continue;
        }
        let start = segs.partition_point(|s| i64::from(s.dep_local_min) < lo);
        for s in &segs[start..] {
            if i64::from(s.dep_local_min) > hi {
                break;
            }
            if !ctx.step(1) {
                return;
            }
            let base = d - i64::from(s.dep_day_shift);
            let day = base - first_day;
            // `day_hi <= u16::MAX`: within the span, `day` fits a dated segment's.
            if day < i64::from(s.day_lo) || day > i64::from(s.day_hi) {
                continue;
            }
            let operates = if s.weekdays & IRREGULAR == 0 {
                (s.weekdays >> format::date::weekday(base as i32)) & 1 == 1
            } else {
                net.operates(s.day_set, day)
            };
            debug_assert_eq!(operates, net.operates(s.day_set, day));
            if !operates || !ctx.filters.carrier_allowed(s.carrier) {
                continue;
            }
            let b0 = base * 1440;
            let dep_utc = b0 + i64::from(s.dep_utc_min);
            if dep_utc < utc_lo || dep_utc > utc_hi {
                continue;
            }
            let arr_utc = b0 + i64::from(s.arr_utc_min);
            let seg = DatedSeg {
                flight: s.flight,
                from_leg: s.from_leg,
                to_leg: s.to_leg,
                day: day as u16,
                carrier: s.carrier,
                origin: a,
                dest: b,
                dep_utc,
                arr_utc,
                dep_local: dep_utc + i64::from(s.dep_offset_min),
                arr_local: arr_utc + i64::from(s.arr_offset_min),
            };
            debug_assert_eq!(
                Some(seg),
                dated(ctx, s.flight, s.from_leg, s.to_leg, base as i32)
            );
            if !stops_ok(ctx, &seg) {
                continue;
            }
            out.push(seg);
        }
    }
}

/// No intermediate stop of a segment is one of the query's origin or destination airports.
fn stops_ok(ctx: &Ctx<'_>, s: &DatedSeg) -> bool {
    if s.to_leg == s.from_leg {
        return true;
    }
    let legs = ctx.seg_legs(s);
    let n = legs.len();
    legs.iter()
        .take(n.saturating_sub(1))
        .all(|l| !ctx.is_end(l.arr.to_native()))
}

/// Whether segment `s` visits airport `x` (origin, stops or destination).
fn visits(ctx: &Ctx<'_>, s: &DatedSeg, x: AirportId) -> bool {
    s.dest == x || ctx.seg_legs(s).iter().any(|l| l.dep.to_native() == x)
}

/// `next` visits no airport already visited by `prev` (other than its boarding airport).
fn no_revisit(ctx: &Ctx<'_>, prev: &[DatedSeg], next: &DatedSeg) -> bool {
    ctx.seg_legs(next)
        .iter()
        .all(|l| prev.iter().all(|p| !visits(ctx, p, l.arr.to_native())))
}

/// The minimum connection time between `a` arriving and `b` departing at `a.dest`.
pub(crate) fn min_connection(ctx: &Ctx<'_>, a: &DatedSeg, b: &DatedSeg) -> i64 {
    if let Some(m) = ctx.filters.min_connection_minutes {
        return i64::from(m);
    }
    let (Some(la), Some(lb)) = (ctx.seg_legs(a).last(), ctx.seg_legs(b).first()) else {
        return i64::from(ctx.mct_default);
    };
    let country = |x: AirportId| ctx.places.airports.get(x as usize).map(|p| p.country);
    let arr_dom = country(la.dep.to_native()) == country(la.arr.to_native());
    let dep_dom = country(lb.dep.to_native()) == country(lb.arr.to_native());
    let conn_type = match (arr_dom, dep_dom) {
        (true, true) => format::model::CONN_DD,
        (true, false) => format::model::CONN_DI,
        (false, true) => format::model::CONN_ID,
        (false, false) => format::model::CONN_II,
    };
    let code = |c: u16| {
        ctx.net
            .carriers
            .get(c as usize)
            .copied()
            .unwrap_or([b' '; 3])
    };
    let q = MctQuery {
        station: a.dest,
        conn_type,
        arr_carrier: code(a.carrier),
        dep_carrier: code(b.carrier),
    };
    i64::from(ctx.prep.mct(ctx.mct_rules, ctx.mct_default, &q))
}

/// The connection rules between consecutive segments (times, MCT, not the same dated flight).
pub(crate) fn connects(ctx: &Ctx<'_>, a: &DatedSeg, b: &DatedSeg) -> bool {
    if a.dest != b.origin || (a.flight == b.flight && a.day == b.day) {
        return false;
    }
    let gap = b.dep_utc - a.arr_utc;
    if gap > i64::from(ctx.filters.max_connection_minutes) {
        return false;
    }
    if ctx.filters.min_connection_minutes.is_none() && gap >= i64::from(ctx.prep.ceil(a.dest)) {
        // No rule at this station asks for more: the lookup cannot refuse it.
        return true;
    }
    gap >= min_connection(ctx, a, b)
}

/// [`no_revisit`] for a connection `f` then `g` of a slice from `f.origin` to `g.dest`
/// (both query ends, `f.dest` is not): two nonstop segments cannot revisit anything.
#[inline]
fn no_revisit2(ctx: &Ctx<'_>, f: &DatedSeg, g: &DatedSeg) -> bool {
    (f.from_leg == f.to_leg && g.from_leg == g.to_leg) || no_revisit(ctx, &[*f], g)
}

fn lower_bound(ctx: &Ctx<'_>, via: AirportId) -> i64 {
    match ctx.filters.min_connection_minutes {
        Some(m) => i64::from(m),
        None => i64::from(ctx.prep.floor(via)),
    }
}

/// Departures from `via` to `to` that can follow an arrival in `[arr_lo, arr_hi]` (UTC),
/// sorted by UTC departure.
fn onward(
    ctx: &Ctx<'_>,
    via: AirportId,
    to: AirportId,
    arr_lo: i64,
    arr_hi: i64,
    segs: &mut Vec<DatedSeg>,
    out: &mut Vec<Cand>,
) {
    out.clear();
    segs.clear();
    let lo = arr_lo + lower_bound(ctx, via);
    let hi = arr_hi + i64::from(ctx.filters.max_connection_minutes);
    let (olo, ohi) = ctx.prep.off_range(via);
    departures(ctx, via, to, lo + olo, hi + ohi, lo, hi, segs);
    // Sort the small segments, then wrap them (candidates are large).
    segs.sort_unstable_by_key(|s| s.dep_utc);
    warm(ctx, segs);
    out.extend(segs.iter().map(|&s| Cand::new(s)));
}

/// Most listed segments get priced: touch their availability first, in one tight loop
/// whose independent cache misses overlap (see [`warm_seats`]). Not in cheapest-only mode,
/// which prices few of them.
fn warm(ctx: &Ctx<'_>, segs: &[DatedSeg]) {
    if ctx.cap.get().is_some() {
        return;
    }
    let mut x = 0u64;
    for s in segs {
        x ^= warm_seats(ctx, s);
    }
    std::hint::black_box(x);
}

/// The departures from `a` to `b` on local times `[llo, lhi]`, as candidates.
fn leaving(
    ctx: &Ctx<'_>,
    a: AirportId,
    b: AirportId,
    llo: i64,
    lhi: i64,
    segs: &mut Vec<DatedSeg>,
    out: &mut Vec<Cand>,
) {
    out.clear();
    segs.clear();
    departures(ctx, a, b, llo, lhi, i64::MIN, i64::MAX, segs);
    warm(ctx, segs);
    out.extend(segs.iter().map(|&s| Cand::new(s)));
}

fn window(ctx: &Ctx<'_>, list: &[Cand], arr: i64, via: AirportId) -> (usize, usize) {
    let lo = arr + lower_bound(ctx, via);
    let hi = arr + i64::from(ctx.filters.max_connection_minutes);
    let s = list.partition_point(|c| c.seg.dep_utc < lo);
    let e = list.partition_point(|c| c.seg.dep_utc <= hi);
    (s, e.max(s))
}

fn add(a: Option<i128>, b: Option<i128>) -> Option<i128> {
    Some(a? + b?)
}

fn min_lb(a: Option<i128>, b: Option<i128>) -> Option<i128> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// In cheapest-only mode: whether a candidate with this lower bound may still be kept
/// (ties are kept: they may win on departure or id).
fn may_beat(ctx: &Ctx<'_>, lb: impl FnOnce() -> Option<i128>) -> bool {
    match ctx.cap.get() {
        None => true,
        Some(cap) => lb().is_some_and(|v| v <= cap),
    }
}

/// In cheapest-only mode: keeps only priced candidates within the cap - and on a tie with
/// it, only those departing no later than the slice that set it (the day's answer is the
/// least by (price, departure, id)) - and lowers the cap.
fn keep(ctx: &Ctx<'_>, value: Option<i128>, dep: i64) -> bool {
    let Some(cap) = ctx.cap.get() else {
        return true;
    };
    match value {
        Some(v) if (v, dep) <= (cap, ctx.cap_dep.get()) => {
            ctx.cap.set(Some(v));
            ctx.cap_dep.set(dep);
            true
        }
        _ => false,
    }
}

/// In cheapest-only mode: whether nothing with price lower bound `lb` (`None`: cannot be
/// priced) departing at `dep` can be kept (see [`keep`]).
fn over(ctx: &Ctx<'_>, lb: Option<i128>, dep: i64) -> bool {
    match (lb, ctx.cap.get()) {
        (None, _) => true,
        (Some(v), Some(cap)) => (v, dep) > (cap, ctx.cap_dep.get()),
        (Some(_), None) => false,
    }
}

/// Reusable buffers of one enumeration.
#[derive(Default)]
pub(crate) struct Buffers {
    first: Vec<Cand>,
    second: Vec<Cand>,
    third: Vec<Cand>,
    segs: Vec<DatedSeg>,
    /// Cheapest-only mode: per (origin, destination) airport pair, its connection points
    /// ordered by a date-independent lower bound (see [`via_bounds`]). Valid for one set of
    /// filters: a calendar uses fresh buffers.
    vias: Vec<(AirportId, AirportId, Vec<ViaBound>)>,
}

/// A connection point `v` of `a -> v -> b` and lower bounds (millionths) on every 1-stop
/// slice through it (`all`) and on its second segment priced on its own (`second`).
#[derive(Clone, Debug)]
pub(crate) struct ViaBound {
    all: i128,
    via: AirportId,
    second: Option<i128>,
    /// Per carrier from the origin to this point: the union of its flights' class masks
    /// and fare markets of the first segment alone and (when the carrier also flies on to
    /// the destination) of a through component with the masks of both sides, to bound a
    /// given day's slices with that day's fare rules before listing any departure.
    first: Vec<FirstCarrier>,
    /// The last local departure date (days since `Network::first_day`) on which a segment
    /// from the origin to this point may have seats: later, nothing through it is priced.
    last: i64,
}

/// See [`ViaBound::first`]: (class mask, own market, through market and mask).
type FirstCarrier = (u32, Option<usize>, Option<(usize, u32)>);

/// Per carrier of the segments of `list`, the union of their flights' class masks; returns
/// the last local departure date (days since `Network::first_day`) on which one of them may
/// have seats.
fn carrier_masks(ctx: &Ctx<'_>, list: &[ArchivedSegmentRef], out: &mut Vec<(u16, u32)>) -> i64 {
    out.clear();
    let mut last = i64::MIN;
    for r in list {
        if !ctx.step(1) {
            return i64::MAX;
        }
        let flight = r.flight.to_native();
        let Some(fl) = ctx.net.flights.get(flight as usize) else {
            continue;
        };
        if !ctx.overlay.is_empty() {
            last = i64::MAX;
        } else if let Some(&(lo, hi)) = ctx.prep.flight_days.get(flight as usize) {
            if lo <= hi {
                last = last.max(i64::from(hi) + i64::from(r.dep_day_shift));
            }
        } else {
            last = i64::MAX;
        }
        let c = fl.carrier.to_native();
        let m = flight_class_mask(ctx, flight, None);
        match out.iter_mut().find(|x| x.0 == c) {
            Some(x) => x.1 |= m,
            None => out.push((c, m)),
        }
    }
    last
}

/// Date-independent lower bounds of every connection point from `a` to `b`, cheapest
/// first; points through which nothing can be priced are left out (cheapest-only mode
/// keeps priced slices only). Each bound ignores travel dates, days of week, advance
/// purchase and seat counts, but not the booking classes the flights have rows for.
fn via_bounds(ctx: &Ctx<'_>, a: AirportId, b: AirportId) -> Vec<ViaBound> {
    let mut out = Vec::new();
    let (mut m1, mut m2) = (Vec::new(), Vec::new());
    for v in vias(ctx, a, ctx.prep.into(b)) {
        if ctx.is_end(v) {
            continue;
        }
        let last = carrier_masks(ctx, ctx.net.segments_between(a, v), &mut m1);
        carrier_masks(ctx, ctx.net.segments_between(v, b), &mut m2);
        let own1 = m1
            .iter()
            .filter_map(|&(c, m)| masked_lb(ctx, c, a, v, None, m))
            .min();
        let own2 = m2
            .iter()
            .filter_map(|&(c, m)| masked_lb(ctx, c, v, b, None, m))
            .min();
        let through = m1
            .iter()
            .filter_map(|&(c, m)| {
                let m2 = m2.iter().find(|x| x.0 == c)?.1;
                masked_lb(ctx, c, a, b, None, m & m2)
            })
            .min();
        if let Some(all) = min_lb(add(own1, own2), through) {
            let first = m1
                .iter()
                .map(|&(c, m)| {
                    let through = m2
                        .iter()
                        .find(|x| x.0 == c)
                        .and_then(|x| market_of(ctx, c, a, b).map(|i| (i, m & x.1)));
                    (m, market_of(ctx, c, a, v), through)
                })
                .collect();
            out.push(ViaBound {
                all,
                via: v,
                second: own2,
                last,
                first,
            });
        }
    }
    out.sort_by_key(|x| (x.all, x.via));
    out
}

/// 1-stop slices in cheapest-only mode: connection points in order of their bound, until
/// the bound exceeds the cap (the best price so far); within one, segments and pairs are
/// skipped when their bound exceeds the cap, so only the few that may win are priced
/// (which needs seat lookups). Bounds are exact lower bounds, and ties are priced.
fn one_stop_cheapest(
    ctx: &Ctx<'_>,
    a: AirportId,
    b: AirportId,
    llo: i64,
    lhi: i64,
    bufs: &mut Buffers,
    out: &mut impl Sink,
) {
    let Buffers {
        first,
        second,
        segs,
        vias: cache,
        ..
    } = bufs;
    if !cache.iter().any(|x| x.0 == a && x.1 == b) {
        let list = via_bounds(ctx, a, b);
        cache.push((a, b, list));
    }
    let Some((_, _, list)) = cache.iter().find(|x| x.0 == a && x.1 == b) else {
        return;
    };
    let first_day = i64::from(ctx.net.first_day.to_native());
    for vb in list {
        if over(ctx, Some(vb.all), i64::MIN) {
            break; // every later point's bound is at least this one's
        }
        if llo.div_euclid(1440) - first_day > vb.last {
            continue;
        }
        // This day's fare rules (dates, days of week, advance purchase) for first segments
        // departing on it, before listing them.
        let dl = llo.div_euclid(1440) as i32;
        let day_lb = vb
            .first
            .iter()
            .filter_map(|&(m, own, through)| {
                let own = own.and_then(|i| masked_lb_at(ctx, i, Some(dl), m));
                let through = through.and_then(|(i, mm)| masked_lb_at(ctx, i, Some(dl), mm));
                min_lb(add(own, vb.second), through)
            })
            .min();
        if over(ctx, day_lb, i64::MIN) {
            continue;
        }
        let v = vb.via;
        leaving(ctx, a, v, llo, lhi, segs, first);
        if first.is_empty() {
            continue;
        }
        // Through fares are looked up only when the split bound alone rules a segment out.
        let any = first.iter_mut().any(|fc| {
            let dep = fc.seg.dep_utc;
            !over(ctx, add(fc.own_lb(ctx), vb.second), dep)
                || !over(ctx, fc.through_lb(ctx, b), dep)
        });
        if !any {
            continue;
        }
        let (alo, ahi) = arr_range(first);
        onward(ctx, v, b, alo, ahi, segs, second);
        if second.is_empty() {
            continue;
        }
        for fc in first.iter_mut() {
            let f = fc.seg;
            let f_own = fc.own_lb(ctx);
            if over(ctx, add(f_own, vb.second), f.dep_utc)
                && over(ctx, fc.through_lb(ctx, b), f.dep_utc)
            {
                continue;
            }
            let (s, e) = window(ctx, second, f.arr_utc, v);
            for gc in second[s..e].iter_mut() {
                if !ctx.step(1) {
                    return;
                }
                let g = gc.seg;
                if !connects(ctx, &f, &g) || !no_revisit2(ctx, &f, &g) {
                    continue;
                }
                let same = f.carrier == g.carrier;
                let joint = if same { fc.through_lb(ctx, b) } else { None };
                if over(ctx, min_lb(add(f_own, gc.own_lb(ctx)), joint), f.dep_utc) {
                    continue;
                }
                // A joint component costs at least `joint`: when that is over the cap it
                // cannot make the price, and the slice is kept only within the cap.
                let ab = if same && !over(ctx, joint, f.dep_utc) {
                    multi(ctx, &mut [&mut *fc, &mut *gc])
                } else {
                    EMPTY
                };
                offer_pair(ctx, out, fc, gc, &ab);
            }
        }
        if ctx.exhausted() {
            return;
        }
    }
}

/// Appends every slice from `origins` to `dests` departing on local date `date` that the
/// query's filters admit (carriers, departure time of day, connections), priced.
pub(crate) fn slices(
    ctx: &Ctx<'_>,
    origins: &[AirportId],
    dests: &[AirportId],
    date: i32,
    part: Part,
    bufs: &mut Buffers,
    out: &mut impl Sink,
) {
    assert!(part.k < part.n, "part {part:?} out of range");
    // Cheapest-only mode lowers one cap as it goes: it is never split.
    assert!(part == Part::WHOLE || ctx.cap.get().is_none());
    let f = ctx.filters;
    let tod_lo = i64::from(f.depart_after.unwrap_or(0));
    let tod_hi = i64::from(f.depart_before.unwrap_or(1439));
    if tod_lo > tod_hi {
        return;
    }
    let day0 = i64::from(date) * 1440;
    let (llo, lhi) = (day0 + tod_lo, day0 + tod_hi);
    for &a in origins {
        for &b in dests {
            if a == b {
                continue;
            }
            if part.k == 0 {
                // Direct.
                leaving(ctx, a, b, llo, lhi, &mut bufs.segs, &mut bufs.first);
                for c in bufs.first.iter_mut() {
                    let seg = c.seg;
                    let a = c.single(ctx);
                    let e = &EMPTY;
                    out.offer(ctx, &Slice::one(seg), value1(a), || {
                        price_refs(1, &[[a, e, e], [e, e, e], [e, e, e]])
                    });
                }
            }
            if f.max_connections >= 1 {
                if ctx.cap.get().is_some() {
                    one_stop_cheapest(ctx, a, b, llo, lhi, bufs, out);
                } else {
                    one_stop(ctx, a, b, llo, lhi, part, bufs, out);
                }
            }
            if f.max_connections >= 2 {
                two_stop(ctx, a, b, llo, lhi, part, bufs, out);
            }
            if ctx.exhausted() {
                return;
            }
        }
    }
}

/// How many connection points 1-stop slices from `origins` to `dests` may use: a cheap
/// measure of a search's size, taken before running it.
pub(crate) fn connection_points(
    ctx: &Ctx<'_>,
    origins: &[AirportId],
    dests: &[AirportId],
) -> usize {
    let mut n = 0;
    for &a in origins {
        for &b in dests {
            if a != b {
                n += vias(ctx, a, ctx.prep.into(b)).count();
            }
        }
    }
    n
}

/// Sorted intersection of the destinations of `from`'s markets with `into`.
fn vias<'a>(
    ctx: &'a Ctx<'_>,
    from: AirportId,
    into: &'a [AirportId],
) -> impl Iterator<Item = AirportId> + 'a {
    let markets = ctx.net.markets_from(from);
    let mut j = 0usize;
    markets.iter().filter_map(move |m| {
        let v = m.dest.to_native();
        while j < into.len() && into[j] < v {
            j += 1;
        }
        (j < into.len() && into[j] == v).then_some(v)
    })
}

fn arr_range(list: &[Cand]) -> (i64, i64) {
    let lo = list.iter().map(|c| c.seg.arr_utc).min().unwrap_or(0);
    let hi = list.iter().map(|c| c.seg.arr_utc).max().unwrap_or(0);
    (lo, hi)
}

/// Offers the 1-stop slice `fc` then `gc`, whose joint component options are `ab` (empty
/// unless both are on one carrier).
#[inline]
fn offer_pair(ctx: &Ctx<'_>, out: &mut impl Sink, fc: &mut Cand, gc: &mut Cand, ab: &CompOpts) {
    let slice = Slice::two(fc.seg, gc.seg);
    let a = fc.single(ctx);
    let b = gc.single(ctx);
    let e = &EMPTY;
    out.offer(ctx, &slice, value2(a, ab, b), || {
        price_refs(2, &[[a, ab, e], [e, b, e], [e, e, e]])
    });
}

#[allow(clippy::too_many_arguments)]
fn one_stop(
    ctx: &Ctx<'_>,
    a: AirportId,
    b: AirportId,
    llo: i64,
    lhi: i64,
    part: Part,
    bufs: &mut Buffers,
    out: &mut impl Sink,
) {
    let Buffers {
        first,
        second,
        segs,
        ..
    } = bufs;
    for (i, v) in vias(ctx, a, ctx.prep.into(b)).enumerate() {
        if !part.has(i) || ctx.is_end(v) {
            continue;
        }
        leaving(ctx, a, v, llo, lhi, segs, first);
        if first.is_empty() {
            continue;
        }
        let (alo, ahi) = arr_range(first);
        onward(ctx, v, b, alo, ahi, segs, second);
        if second.is_empty() {
            continue;
        }
        // Price every listed segment on its own in one tight loop before pairing: the
        // independent segments' memory reads overlap here, where inside the pair loop each
        // one waits behind the pair's other work (measured: SDQ-MIA p50 -5..8%). A segment
        // in no pair is priced needlessly (bounded by the lists). Memoised, so the pair
        // loop reads the same values: answers are unchanged.
        for c in first.iter_mut().chain(second.iter_mut()) {
            c.single(ctx);
        }
        for fc in first.iter_mut() {
            let f = fc.seg;
            let (s, e) = window(ctx, second, f.arr_utc, v);
            for gc in second[s..e].iter_mut() {
                if !ctx.step(1) {
                    return;
                }
                let g = gc.seg;
                if !connects(ctx, &f, &g) || !no_revisit2(ctx, &f, &g) {
                    continue;
                }
                let ab = if f.carrier == g.carrier {
                    // A joint component costs at least `joint` (`None`: no fare can price
                    // it). When the separate components already price the slice and the
                    // sink's decision cannot depend on where the exact price falls, the
                    // joint component need not be priced.
                    let joint = fc.through_lb(ctx, b);
                    let split = value2(fc.single(ctx), &EMPTY, gc.single(ctx));
                    if let Some(hi) = split {
                        let lo = joint.map_or(hi, |j| j.min(hi));
                        if out.settled(ctx, &Slice::two(f, g), lo, hi) {
                            continue;
                        }
                    }
                    if joint.is_some() {
                        multi(ctx, &mut [&mut *fc, &mut *gc])
                    } else {
                        EMPTY
                    }
                } else {
                    EMPTY
                };
                offer_pair(ctx, out, fc, gc, &ab);
            }
        }
        if ctx.exhausted() {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn two_stop(
    ctx: &Ctx<'_>,
    a: AirportId,
    b: AirportId,
    llo: i64,
    lhi: i64,
    part: Part,
    bufs: &mut Buffers,
    out: &mut impl Sink,
) {
    let Buffers {
        first,
        second,
        third,
        segs,
        ..
    } = bufs;
    let into_b = ctx.prep.into(b);
    for (i, m) in ctx.net.markets_from(a).iter().enumerate() {
        let v1 = m.dest.to_native();
        if !part.has(i) || ctx.is_end(v1) {
            continue;
        }
        leaving(ctx, a, v1, llo, lhi, segs, first);
        if first.is_empty() {
            continue;
        }
        let (alo, ahi) = arr_range(first);
        for v2 in vias(ctx, v1, into_b) {
            if ctx.is_end(v2) {
                continue;
            }
            onward(ctx, v1, v2, alo, ahi, segs, second);
            if second.is_empty() {
                continue;
            }
            let (blo, bhi) = arr_range(second);
            onward(ctx, v2, b, blo, bhi, segs, third);
            if third.is_empty() {
                continue;
            }
            for fc in first.iter_mut() {
                let f = fc.seg;
                let (s, e) = window(ctx, second, f.arr_utc, v1);
                for gc in second[s..e].iter_mut() {
                    if !ctx.step(1) {
                        return;
                    }
                    let g = gc.seg;
                    if !connects(ctx, &f, &g) || !no_revisit(ctx, &[f], &g) {
                        continue;
                    }
                    let (s3, e3) = window(ctx, third, g.arr_utc, v2);
                    for hc in third[s3..e3].iter_mut() {
                        if !ctx.step(1) {
                            return;
                        }
                        let h = hc.seg;
                        if !connects(ctx, &g, &h) || !no_revisit(ctx, &[f, g], &h) {
                            continue;
                        }
                        if !may_beat(ctx, || {
                            let (x, y, z) = (fc.lb(ctx), gc.lb(ctx), hc.lb(ctx));
                            let xy = (f.carrier == g.carrier)
                                .then(|| comp_lb(ctx, &[f, g]))
                                .flatten();
                            let yz = (g.carrier == h.carrier)
                                .then(|| comp_lb(ctx, &[g, h]))
                                .flatten();
                            let xyz = (f.carrier == g.carrier && g.carrier == h.carrier)
                                .then(|| comp_lb(ctx, &[f, g, h]))
                                .flatten();
                            let m = min_lb(add(add(x, y), z), add(xy, z));
                            min_lb(min_lb(m, add(x, yz)), xyz)
                        }) {
                            continue;
                        }
                        let (mut ab, mut bc, mut abc) = (EMPTY, EMPTY, EMPTY);
                        if f.carrier == g.carrier {
                            ab = multi(ctx, &mut [&mut *fc, &mut *gc]);
                            if g.carrier == h.carrier {
                                abc = multi(ctx, &mut [&mut *fc, &mut *gc, &mut *hc]);
                            }
                        }
                        if g.carrier == h.carrier {
                            bc = multi(ctx, &mut [&mut *gc, &mut *hc]);
                        }
                        let a = fc.single(ctx);
                        let b = gc.single(ctx);
                        let c = hc.single(ctx);
                        let e = &EMPTY;
                        let price = price_refs(3, &[[a, &ab, &abc], [e, b, &bc], [e, e, c]]);
                        let value = price.best().map(|p| p.micros());
                        out.offer(ctx, &Slice::three(f, g, h), value, || price);
                    }
                }
            }
            if ctx.exhausted() {
                return;
            }
        }
    }
}
