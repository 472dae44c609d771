//! Slice enumeration: every direct, 1-stop and 2-stop way from an origin set to a destination
//! set leaving on one local date, with exact connection rules, each priced.
//!
//! Dated segments come from the network's segment index (`segments_between`, sorted by local
//! departure time of day): a segment ref with day shift `k` departs on local date `D` when its
//! flight operates on base date `D - k`. Connection windows are UTC intervals; they are turned
//! into local-time intervals with the airport's own range of departure offsets (so the
//! binary searches are exact) and every candidate is checked again in UTC.

use format::model::{AirportId, ArchivedSegmentRef};

use super::prep::MctQuery;
use super::price::{
    comp_lb, comp_lb_market, comp_price_with, micros, price_refs, CompOpts, Priced, SeatCache,
    EMPTY,
};
use super::{Ctx, DatedSeg, Slice};

/// A dated segment with its (lazily computed) price as a component of its own.
#[derive(Clone, Copy)]
pub(crate) struct Cand {
    pub seg: DatedSeg,
    price: Option<CompOpts>,
    seats: SeatCache,
    lb: Option<Option<i128>>,
}

impl Cand {
    fn new(seg: DatedSeg) -> Self {
        Cand {
            seg,
            price: None,
            seats: SeatCache::default(),
            lb: None,
        }
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

    fn single(&mut self, ctx: &Ctx<'_>) -> CompOpts {
        match self.price {
            Some(p) => p,
            None => {
                let Cand { seg, seats, .. } = self;
                let seg = *seg;
                let p = comp_price_with(ctx, std::slice::from_ref(&seg), &mut |_, c| {
                    seats.get(ctx, &seg, c)
                });
                self.price = Some(p);
                p
            }
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
        return CompOpts::default();
    }
    comp_price_with(ctx, &segs[..n], &mut |i, class| match cands.get_mut(i) {
        Some(c) => {
            let seg = c.seg;
            c.seats.get(ctx, &seg, class)
        }
        None => 0,
    })
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

/// Appends the dated segments of `segs` (one market, sorted by local time of day) whose
/// local departure is in `[local_lo, local_hi]` and UTC departure in `[utc_lo, utc_hi]`,
/// on allowed carriers, with no stop among the query's end airports.
fn departures(
    ctx: &Ctx<'_>,
    segs: &[ArchivedSegmentRef],
    local_lo: i64,
    local_hi: i64,
    utc_lo: i64,
    utc_hi: i64,
    out: &mut Vec<Cand>,
) {
    if segs.is_empty() || local_lo > local_hi {
        return;
    }
    let net = ctx.net;
    let first_day = i64::from(net.first_day.to_native());
    let d0 = local_lo.div_euclid(1440);
    let d1 = local_hi.div_euclid(1440);
    for d in d0..=d1 {
        let lo = (local_lo - d * 1440).max(0);
        let hi = (local_hi - d * 1440).min(1439);
        if lo > hi {
            continue;
        }
        let start = segs.partition_point(|s| i64::from(s.dep_local_min.to_native()) < lo);
        for s in &segs[start..] {
            if i64::from(s.dep_local_min.to_native()) > hi {
                break;
            }
            if !ctx.step(1) {
                return;
            }
            let flight = s.flight.to_native();
            let Some(fl) = net.flights.get(flight as usize) else {
                continue;
            };
            if !ctx.filters.carrier_allowed(fl.carrier.to_native()) {
                continue;
            }
            let base = d - i64::from(s.dep_day_shift);
            if !net.operates(fl.day_set.to_native(), base - first_day) {
                continue;
            }
            let Some(seg) = dated(ctx, flight, s.from_leg, s.to_leg, base as i32) else {
                continue;
            };
            if seg.dep_utc < utc_lo || seg.dep_utc > utc_hi {
                continue;
            }
            if !stops_ok(ctx, &seg) {
                continue;
            }
            out.push(Cand::new(seg));
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
    gap <= i64::from(ctx.filters.max_connection_minutes) && gap >= min_connection(ctx, a, b)
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
    out: &mut Vec<Cand>,
) {
    out.clear();
    let lo = arr_lo + lower_bound(ctx, via);
    let hi = arr_hi + i64::from(ctx.filters.max_connection_minutes);
    let (olo, ohi) = ctx.prep.off_range(via);
    departures(
        ctx,
        ctx.net.segments_between(via, to),
        lo + olo,
        hi + ohi,
        lo,
        hi,
        out,
    );
    out.sort_unstable_by_key(|c| c.seg.dep_utc);
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

/// In cheapest-only mode: keeps only priced candidates within the cap, and lowers the cap.
fn keep(ctx: &Ctx<'_>, p: &Priced) -> bool {
    let Some(cap) = ctx.cap.get() else {
        return true;
    };
    match p.best() {
        Some(b) if b.micros() <= cap => {
            ctx.cap.set(Some(b.micros()));
            true
        }
        _ => false,
    }
}

/// Reusable buffers of one enumeration.
#[derive(Default)]
pub(crate) struct Buffers {
    first: Vec<Cand>,
    second: Vec<Cand>,
    third: Vec<Cand>,
}

/// Appends every slice from `origins` to `dests` departing on local date `date` that the
/// query's filters admit (carriers, departure time of day, connections), priced.
pub(crate) fn slices(
    ctx: &Ctx<'_>,
    origins: &[AirportId],
    dests: &[AirportId],
    date: i32,
    bufs: &mut Buffers,
    out: &mut Vec<SliceCand>,
) {
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
            // Direct.
            bufs.first.clear();
            departures(
                ctx,
                ctx.net.segments_between(a, b),
                llo,
                lhi,
                i64::MIN,
                i64::MAX,
                &mut bufs.first,
            );
            for c in bufs.first.iter_mut() {
                let a = c.single(ctx);
                let e = &EMPTY;
                let price = price_refs(1, &[[&a, e, e], [e, e, e], [e, e, e]]);
                if keep(ctx, &price) {
                    out.push(SliceCand {
                        slice: Slice::one(c.seg),
                        price,
                    });
                }
            }
            if f.max_connections >= 1 {
                one_stop(ctx, a, b, llo, lhi, bufs, out);
            }
            if f.max_connections >= 2 {
                two_stop(ctx, a, b, llo, lhi, bufs, out);
            }
            if ctx.exhausted() {
                return;
            }
        }
    }
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

/// A lower bound over every connection from `first` to `second` (cheapest-only mode).
fn via_lb(ctx: &Ctx<'_>, first: &mut [Cand], second: &mut [Cand]) -> Option<i128> {
    let min_f = first.iter_mut().filter_map(|c| c.lb(ctx)).min();
    let min_g = second.iter_mut().filter_map(|c| c.lb(ctx)).min();
    let mut lb = add(min_f, min_g);
    let mut seen: [u16; 8] = [u16::MAX; 8];
    for f in first.iter() {
        let c = f.seg.carrier;
        if seen.contains(&c) {
            continue;
        }
        if let Some(slot) = seen.iter_mut().find(|x| **x == u16::MAX) {
            *slot = c;
        }
        if let Some(g) = second.iter().find(|g| g.seg.carrier == c) {
            lb = min_lb(lb, comp_lb(ctx, &[f.seg, g.seg]));
        }
    }
    lb
}

fn one_stop(
    ctx: &Ctx<'_>,
    a: AirportId,
    b: AirportId,
    llo: i64,
    lhi: i64,
    bufs: &mut Buffers,
    out: &mut Vec<SliceCand>,
) {
    let Buffers { first, second, .. } = bufs;
    for v in vias(ctx, a, ctx.prep.into(b)) {
        if ctx.is_end(v) {
            continue;
        }
        first.clear();
        departures(
            ctx,
            ctx.net.segments_between(a, v),
            llo,
            lhi,
            i64::MIN,
            i64::MAX,
            first,
        );
        if first.is_empty() {
            continue;
        }
        if ctx.cap.get().is_some() {
            // Nothing from `first` can beat the cap when its cheapest first leg alone, or
            // the cheapest through fare from `a` to `b` of its carriers, cannot.
            let own = first.iter_mut().filter_map(|c| c.lb(ctx)).min();
            let through = first
                .iter()
                .filter_map(|c| comp_lb_market(ctx, c.seg.carrier, a, b))
                .min();
            if !may_beat(ctx, || min_lb(own, through)) {
                continue;
            }
        }
        let (alo, ahi) = arr_range(first);
        onward(ctx, v, b, alo, ahi, second);
        if second.is_empty() {
            continue;
        }
        if ctx.cap.get().is_some() && !may_beat(ctx, || via_lb(ctx, first, second)) {
            continue;
        }
        for fc in first.iter_mut() {
            let f = fc.seg;
            let (s, e) = window(ctx, second, f.arr_utc, v);
            for gc in second[s..e].iter_mut() {
                if !ctx.step(1) {
                    return;
                }
                let g = gc.seg;
                if !connects(ctx, &f, &g) || !no_revisit(ctx, &[f], &g) {
                    continue;
                }
                if !may_beat(ctx, || {
                    let pair = (f.carrier == g.carrier)
                        .then(|| comp_lb(ctx, &[f, g]))
                        .flatten();
                    // The singles' own cheapest prices bound any split construction.
                    let cheapest =
                        |o: CompOpts| o.opts().iter().map(|x| micros(x.total, &x.cur)).min();
                    let split = add(cheapest(fc.single(ctx)), cheapest(gc.single(ctx)));
                    min_lb(split, pair)
                }) {
                    continue;
                }
                let a = fc.single(ctx);
                let b = gc.single(ctx);
                let ab = if f.carrier == g.carrier {
                    multi(ctx, &mut [fc, gc])
                } else {
                    EMPTY
                };
                let e = &EMPTY;
                let price = price_refs(2, &[[&a, &ab, e], [e, &b, e], [e, e, e]]);
                if keep(ctx, &price) {
                    out.push(SliceCand {
                        slice: Slice::two(f, g),
                        price,
                    });
                }
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
    bufs: &mut Buffers,
    out: &mut Vec<SliceCand>,
) {
    let Buffers {
        first,
        second,
        third,
    } = bufs;
    let into_b = ctx.prep.into(b);
    for m in ctx.net.markets_from(a) {
        let v1 = m.dest.to_native();
        if ctx.is_end(v1) {
            continue;
        }
        first.clear();
        departures(
            ctx,
            ctx.net.segments_between(a, v1),
            llo,
            lhi,
            i64::MIN,
            i64::MAX,
            first,
        );
        if first.is_empty() {
            continue;
        }
        let (alo, ahi) = arr_range(first);
        for v2 in vias(ctx, v1, into_b) {
            if ctx.is_end(v2) {
                continue;
            }
            onward(ctx, v1, v2, alo, ahi, second);
            if second.is_empty() {
                continue;
            }
            let (blo, bhi) = arr_range(second);
            onward(ctx, v2, b, blo, bhi, third);
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
                        let a = fc.single(ctx);
                        let b = gc.single(ctx);
                        let c = hc.single(ctx);
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
                        let e = &EMPTY;
                        let price = price_refs(3, &[[&a, &ab, &abc], [e, &b, &bc], [e, e, &c]]);
                        if keep(ctx, &price) {
                            out.push(SliceCand {
                                slice: Slice::three(f, g, h),
                                price,
                            });
                        }
                    }
                }
            }
            if ctx.exhausted() {
                return;
            }
        }
    }
}
