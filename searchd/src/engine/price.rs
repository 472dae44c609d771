//! Fare construction: the cheapest valid way to price a slice's segments for the whole party.
//!
//! A component (consecutive segments, one marketing carrier) is priced by one ADT fare of
//! that carrier and market; the first valid fare of each (cabin, booking class) group in
//! fare order is the cheapest of its group for every currency, since child and infant
//! companions depend only on (carrier, market, cabin, class, currency). A slice's price is
//! the minimum over its (at most 4) partitions into components, kept per currency: a
//! construction mixing currencies is invalid, and round trips need the same currency on
//! both slices.

use format::model::{AirportId, ArchivedFare, CarrierId};

use super::prep::{FlightAvail, LadderFare};
use super::{Ctx, DatedSeg};
use crate::api::currency_decimals;

/// Currencies kept per component / slice (the cheapest ones when a market files more).
pub const MAXCUR: usize = 3;
/// No fare (a child without a CHD fare pays the ADT fare; an infant without INF pays 0).
pub const NONE: u32 = u32::MAX;

/// The party's fares for one component, in one currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompFare {
    /// Global index into `Fares::fares` of the ADT fare.
    pub adt: u32,
    pub chd: u32,
    pub inf: u32,
    /// The whole party's amount, minor units.
    pub total: i64,
    pub cur: [u8; 3],
    /// Fewest seats left in the booking class over the component's legs.
    pub seats: u16,
}

/// The cheapest [`CompFare`] per currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompOpts {
    pub n: u8,
    pub o: [CompFare; MAXCUR],
}

/// Value in millionths of the currency unit, to compare amounts of different currencies.
#[inline]
pub fn micros(minor: i64, cur: &[u8; 3]) -> i128 {
    // Millionths per minor unit, by the currency's decimals (0..=6).
    const SCALE: [i64; 7] = [1_000_000, 100_000, 10_000, 1_000, 100, 10, 1];
    let d = currency_decimals(cur).min(6) as usize;
    i128::from(minor) * i128::from(SCALE[d])
}

impl CompOpts {
    pub fn opts(&self) -> &[CompFare] {
        &self.o[..self.n as usize]
    }

    pub fn get(&self, cur: &[u8; 3]) -> Option<&CompFare> {
        self.opts().iter().find(|o| &o.cur == cur)
    }

    fn offer(&mut self, f: CompFare) {
        let n = self.n as usize;
        if let Some(o) = self.o[..n].iter_mut().find(|o| o.cur == f.cur) {
            if f.total < o.total {
                *o = f;
            }
            return;
        }
        if n < MAXCUR {
            self.o[n] = f;
            self.n += 1;
            return;
        }
        // Full: replace the most expensive currency if this one is cheaper.
        let mut worst = 0;
        for i in 1..n {
            if micros(self.o[i].total, &self.o[i].cur)
                > micros(self.o[worst].total, &self.o[worst].cur)
            {
                worst = i;
            }
        }
        if micros(f.total, &f.cur) < micros(self.o[worst].total, &self.o[worst].cur) {
            self.o[worst] = f;
        }
    }
}

/// One fare component of a construction: segments `from..=to` (indexes within the slice,
/// or across the itinerary once slices are combined).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompRef {
    pub from: u8,
    pub to: u8,
    /// Global indexes into `Fares::fares` of the ADT, CHD and INF fares ([`NONE`] = none).
    pub adt: u32,
    pub chd: u32,
    pub inf: u32,
}

impl CompRef {
    fn new(from: u8, to: u8, f: &CompFare) -> CompRef {
        CompRef {
            from,
            to,
            adt: f.adt,
            chd: f.chd,
            inf: f.inf,
        }
    }
}

/// A priced construction of one slice, in one currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Construction {
    pub cur: [u8; 3],
    pub total: i64,
    pub n: u8,
    pub comps: [CompRef; 3],
    pub seats: u16,
}

impl Construction {
    pub fn micros(&self) -> i128 {
        micros(self.total, &self.cur)
    }
    pub fn comps(&self) -> &[CompRef] {
        &self.comps[..self.n as usize]
    }
}

/// The cheapest construction of a slice per currency, cheapest first (`opts[0]` is the
/// slice's price when it stands alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Priced {
    pub n: u8,
    pub opts: [Construction; MAXCUR],
}

impl Priced {
    pub fn opts(&self) -> &[Construction] {
        &self.opts[..self.n as usize]
    }
    pub fn best(&self) -> Option<&Construction> {
        self.opts().first()
    }
    pub fn get(&self, cur: &[u8; 3]) -> Option<&Construction> {
        self.opts().iter().find(|o| &o.cur == cur)
    }
}

/// Index of a fare market in `Fares::market_keys` (through the query's small cache: a
/// search asks for the same few markets again and again).
fn market_index(ctx: &Ctx<'_>, carrier: CarrierId, o: AirportId, d: AirportId) -> Option<usize> {
    let key = format::model::market_key(carrier, o, d);
    let slot = (key ^ (key >> 16) ^ (key >> 32)) as usize % super::MARKET_CACHE;
    if let Ok(cache) = ctx.market_cache.try_borrow() {
        let (k, i) = cache[slot];
        if k == key {
            return (i != u32::MAX).then_some(i as usize);
        }
    }
    let r = ctx.prep.market(key);
    debug_assert_eq!(
        r,
        ctx.fares
            .market_keys
            .binary_search_by(|k| k.to_native().cmp(&key))
            .ok()
    );
    if let Ok(mut cache) = ctx.market_cache.try_borrow_mut() {
        cache[slot] = (key, r.map_or(u32::MAX, |i| i as u32));
    }
    r
}

/// A fare market's place in `Fares::fares`: fares `s..e`, of which `s..s + adt` are ADT,
/// with `curs` distinct ADT currencies.
#[derive(Clone, Copy, Default)]
struct MarketRange {
    s: usize,
    e: usize,
    adt: usize,
    curs: usize,
}

/// The fares of a market (empty when the market has none).
fn market_range(ctx: &Ctx<'_>, carrier: CarrierId, o: AirportId, d: AirportId) -> MarketRange {
    match market_index(ctx, carrier, o, d) {
        Some(i) => market_bounds(ctx, i),
        None => MarketRange::default(),
    }
}

/// [`market_range`] of market index `i`.
fn market_bounds(ctx: &Ctx<'_>, i: usize) -> MarketRange {
    match ctx.prep.market_info.get(i) {
        Some(m) => MarketRange {
            s: m.start as usize,
            e: m.end as usize,
            adt: m.adt as usize,
            curs: usize::from(m.curs),
        },
        None => MarketRange::default(),
    }
}

/// Every booking class (no class can be ruled out).
pub(crate) const ANY_CLASS: u32 = u32::MAX;

/// Whether `class` may have seats on a flight with class mask `mask` (see
/// `Prepared::flight_classes`).
#[inline]
pub(crate) fn class_in(mask: u32, class: u8) -> bool {
    if class.is_ascii_uppercase() {
        (mask >> (class - b'A')) & 1 == 1
    } else {
        mask >> 31 == 1
    }
}

/// The classes that may have seats on `flight` on base-day index `day` (`None`: any day):
/// those with an availability row in the snapshot for the flight (none outside the days
/// it has rows for); every class when the live overlay may have entries for the dated flight
/// (they may open any), or, for `None`, has any entries.
#[inline]
pub(crate) fn flight_class_mask(ctx: &Ctx<'_>, flight: u32, day: Option<u16>) -> u32 {
    let live = match day {
        Some(d) => ctx.overlay.may_have(flight, d),
        None => !ctx.overlay.is_empty(),
    };
    if live {
        return ANY_CLASS;
    }
    let f = flight as usize;
    let (Some(&mask), Some(&(lo, hi))) =
        (ctx.prep.flight_classes.get(f), ctx.prep.flight_days.get(f))
    else {
        return ANY_CLASS;
    };
    match day {
        Some(d) if d < lo || d > hi => 0,
        _ => mask,
    }
}

/// A lower bound (millionths) on what the party pays for a component of `carrier` from `o`
/// to `d` priced with an ADT fare whose booking class is in `mask` (and whose cabin is the
/// query's, if given), first departure on local date `dl` (`None`: any date, ignoring
/// travel dates, days of week and advance purchase). `None` when no such fare exists, so
/// no such component can be priced at all. Adults pay the fare, children at least the
/// market's cheapest ADT or CHD amount (and at most the fare), infants at least 0.
pub(crate) fn masked_lb(
    ctx: &Ctx<'_>,
    carrier: CarrierId,
    o: AirportId,
    d: AirportId,
    dl: Option<i32>,
    mask: u32,
) -> Option<i128> {
    let i = market_index(ctx, carrier, o, d)?;
    masked_lb_at(ctx, i, dl, mask)
}

/// The fare market index of a component of `carrier` from `o` to `d`, if it has fares.
pub(crate) fn market_of(
    ctx: &Ctx<'_>,
    carrier: CarrierId,
    o: AirportId,
    d: AirportId,
) -> Option<usize> {
    market_index(ctx, carrier, o, d)
}

/// [`masked_lb`] of fare market index `i`.
pub(crate) fn masked_lb_at(ctx: &Ctx<'_>, i: usize, dl: Option<i32>, mask: u32) -> Option<i128> {
    let m = market_bounds(ctx, i);
    let ladder = ctx.prep.adt_ladder.get(m.s..m.s + m.adt)?;
    let chd_floor = *ctx.prep.market_lb.get(i)?;
    let f = ctx.filters;
    let wd = dl.map(format::date::weekday);
    let (adults, children) = (i128::from(f.adults), i128::from(f.children));
    let mut best: Option<i128> = None;
    for fare in ladder {
        if f.cabin.is_some_and(|c| c != fare.cabin) || !class_in(mask, fare.booking_class) {
            continue;
        }
        if let (Some(dl), Some(wd)) = (dl, wd) {
            if !ladder_date_ok(fare, dl, wd, ctx.today) {
                continue;
            }
        }
        let a = micros(fare.amount, &fare.currency);
        let v = adults * a + children * a.min(chd_floor);
        if best.is_none_or(|b| v < b) {
            best = Some(v);
        }
        if m.curs <= 1 {
            // One currency: fares come in amount order, the first admitted is the least.
            break;
        }
    }
    best
}

/// A lower bound (millionths) on what the party pays for `segs` as one component, ignoring
/// dates, seats and cabins; `None` when no fare can price it at all.
pub(crate) fn comp_lb(ctx: &Ctx<'_>, segs: &[DatedSeg]) -> Option<i128> {
    let (first, last) = (segs.first()?, segs.last()?);
    if segs.iter().any(|s| s.carrier != first.carrier) {
        return None;
    }
    let i = market_index(ctx, first.carrier, first.origin, last.dest)?;
    let m = *ctx.prep.market_lb.get(i)?;
    (m != i128::MAX).then(|| m * i128::from(ctx.filters.seated()))
}

/// Seats left in `class` on one dated leg: the live overlay first, else the snapshot; no
/// row = closed (0).
#[inline]
pub(crate) fn leg_seats(ctx: &Ctx<'_>, flight: u32, leg: u8, day: u16, class: u8) -> u16 {
    let key = format::model::avail_key(flight, leg, day, class);
    if let Some(s) = ctx.overlay.seats(key) {
        return s;
    }
    let fa = ctx.prep.flight_avail.get(flight as usize);
    if let Some(fa) = fa.filter(|fa| fa.dense_classes != 0) {
        // A dense flight's seats are read by position (see `FlightAvail::dense_classes`).
        return dense_seats(ctx, fa, flight, leg, day, class);
    }
    snapshot_seats(ctx, flight, key)
}

/// The snapshot's seats of a dense flight's `leg`, `day` and `class`: 0 for a class
/// outside its mask or a leg or day without rows (no row = closed). Debug builds check the
/// position against a search of the keys.
#[inline]
fn dense_seats(ctx: &Ctx<'_>, fa: &FlightAvail, flight: u32, leg: u8, day: u16, class: u8) -> u16 {
    let mask = fa.dense_classes;
    let v = if !class.is_ascii_uppercase() || (mask >> (class - b'A')) & 1 == 0 {
        0
    } else {
        let below = mask & ((1u32 << (class - b'A')) - 1);
        fa.dense_at(leg, day)
            .and_then(|at| ctx.avail.seats.get(at + below.count_ones() as usize))
            .map_or(0, |v| v.to_native())
    };
    debug_assert_eq!(
        v,
        snapshot_seats(
            ctx,
            flight,
            format::model::avail_key(flight, leg, day, class)
        ),
        "dense seats of flight {flight} leg {leg} day {day} class {class}"
    );
    v
}

/// The snapshot's seats of availability key `key` (of `flight`), by searching its keys.
fn snapshot_seats(ctx: &Ctx<'_>, flight: u32, key: u64) -> u16 {
    let keys = &ctx.avail.keys;
    let (s, e) = ctx.prep.avail_range(flight);
    let Some(range) = keys.get(s..e) else {
        return 0;
    };
    match interpolation_search(range.len(), |i| range[i].to_native(), key) {
        Some(i) => ctx
            .avail
            .seats
            .get(s + i)
            .map(|v| v.to_native())
            .unwrap_or(0),
        None => 0,
    }
}

/// Position of `key` in a sorted array of `n` unique keys. Availability keys are spread
/// nearly evenly over flight numbers, so a few interpolation probes land next to the key
/// (one or two cache misses instead of ~23 for a binary search); after 4 probes it falls
/// back to binary search, so skewed data costs O(log n) too.
pub(crate) fn interpolation_search(n: usize, at: impl Fn(usize) -> u64, key: u64) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let (mut lo, mut hi) = (0usize, n - 1);
    for _ in 0..4 {
        let (klo, khi) = (at(lo), at(hi));
        if key < klo || key > khi {
            return None;
        }
        if khi == klo {
            return (klo == key).then_some(lo);
        }
        let frac = (key - klo) as f64 / (khi - klo) as f64;
        let pos = lo + (frac * (hi - lo) as f64) as usize;
        let pos = pos.min(hi);
        let k = at(pos);
        if k == key {
            return Some(pos);
        }
        if k < key {
            lo = pos + 1;
        } else {
            if pos == 0 {
                return None;
            }
            hi = pos - 1;
        }
        if lo > hi {
            return None;
        }
    }
    // Binary search over [lo, hi].
    let (mut l, mut h) = (lo, hi + 1);
    while l < h {
        let m = l + (h - l) / 2;
        let k = at(m);
        if k == key {
            return Some(m);
        }
        if k < key {
            l = m + 1;
        } else {
            h = m;
        }
    }
    None
}

/// Fewest seats left in `class` over every leg of a dated segment.
pub(crate) fn seg_seats(ctx: &Ctx<'_>, s: &DatedSeg, class: u8) -> u16 {
    let mut m = u16::MAX;
    for leg in s.from_leg..=s.to_leg {
        m = m.min(leg_seats(ctx, s.flight, leg, s.day, class));
        if m == 0 {
            return 0;
        }
    }
    m
}

/// Seats per booking class `A`..`Z` of one dated segment, looked up once per query.
#[derive(Clone, Copy)]
pub(crate) struct SeatCache([u16; 26]);

impl Default for SeatCache {
    fn default() -> Self {
        SeatCache([u16::MAX; 26])
    }
}

impl SeatCache {
    pub fn get(&mut self, ctx: &Ctx<'_>, s: &DatedSeg, class: u8) -> u16 {
        if !class.is_ascii_uppercase() {
            return seg_seats(ctx, s, class);
        }
        let i = (class - b'A') as usize;
        if self.0[i] == u16::MAX {
            if ctx.overlay.may_have(s.flight, s.day) {
                self.0[i] = seg_seats(ctx, s, class).min(u16::MAX - 1);
            } else {
                match ctx.prep.flight_avail.get(s.flight as usize) {
                    // A dense flight: this class's seats are one read per leg (pricing
                    // asks for a class or two of most segments, not all of them).
                    Some(fa) if fa.dense_classes != 0 => {
                        self.0[i] = (s.from_leg..=s.to_leg)
                            .map(|leg| dense_seats(ctx, fa, s.flight, leg, s.day, class))
                            .fold(u16::MAX - 1, u16::min);
                    }
                    Some(fa) => self.fill_by_keys(ctx, s, fa),
                    // No availability rows: closed.
                    None => self.0 = [0; 26],
                }
            }
        }
        self.0[i]
    }

    /// Reads every class of every leg of `s` at once, for a flight whose availability is
    /// not dense: a leg's classes are adjacent in the availability keys, so this is one
    /// search per leg instead of one per class. Only for dated flights without live overlay
    /// entries (which take precedence per class).
    fn fill_by_keys(&mut self, ctx: &Ctx<'_>, s: &DatedSeg, fa: &FlightAvail) {
        let (start, end) = (fa.start as usize, fa.start as usize + fa.len as usize);
        let keys = ctx.avail.keys.get(start..end).unwrap_or(&[]);
        let seats = ctx.avail.seats.get(start..end).unwrap_or(&[]);
        let mut all = [u16::MAX - 1; 26];
        for leg in s.from_leg..=s.to_leg {
            let mut this = [0u16; 26];
            let first = format::model::avail_key(s.flight, leg, s.day, 0);
            let guess = avail_guess(fa, leg, s.day);
            let mut i = gallop(keys.len(), |j| keys[j].to_native(), first, guess);
            while let Some(k) = keys.get(i) {
                let k = k.to_native();
                if k >> 8 != first >> 8 {
                    break;
                }
                let class = (k & 0xff) as u8;
                if class.is_ascii_uppercase() {
                    this[(class - b'A') as usize] =
                        seats.get(i).map(|v| v.to_native()).unwrap_or(0);
                }
                i += 1;
            }
            for (a, t) in all.iter_mut().zip(this) {
                *a = (*a).min(t);
            }
        }
        self.0 = all;
    }
}

/// Where the keys of (`leg`, `day`) of a flight probably start, relative to its first key
/// (exact when every leg has rows for every day of its range with the same classes).
#[inline]
pub(crate) fn avail_guess(fa: &FlightAvail, leg: u8, day: u16) -> usize {
    if fa.len == 0 || fa.legs == 0 || fa.day_lo > fa.day_hi {
        return 0;
    }
    let days = u64::from(fa.day_hi - fa.day_lo) + 1;
    let d = u64::from(day.clamp(fa.day_lo, fa.day_hi) - fa.day_lo);
    let slot = u64::from(leg.min(fa.legs - 1)) * days + d;
    (u64::from(fa.len) * slot / (u64::from(fa.legs) * days)) as usize
}

/// Reads the availability line where segment `s`'s first leg probably is, so that a later
/// [`SeatCache`] fill finds it in cache: a loop of these over a list of candidates lets the
/// processor overlap the cache misses (a fill's own lookups depend on each other).
#[inline]
pub(crate) fn warm_seats(ctx: &Ctx<'_>, s: &DatedSeg) -> u64 {
    let Some(fa) = ctx.prep.flight_avail.get(s.flight as usize) else {
        return 0;
    };
    if fa.len == 0 {
        return 0;
    }
    if fa.dense_classes != 0 {
        // No row for the day: closed, nothing to read.
        return fa
            .dense_at(s.from_leg, s.day)
            .and_then(|at| ctx.avail.seats.get(at))
            .map_or(0, |v| u64::from(v.to_native()));
    }
    let g = (fa.start as usize + avail_guess(fa, s.from_leg, s.day))
        .min(ctx.avail.keys.len().saturating_sub(1));
    let k = ctx.avail.keys.get(g).map_or(0, |k| k.to_native());
    let v = ctx.avail.seats.get(g).map_or(0, |v| v.to_native());
    k ^ u64::from(v)
}

/// The first position whose key is `>= key` in a sorted array of `n` keys, starting from a
/// guessed position: gallops away from `guess` in doubling
/// steps, then binary-searches the last step, so a good guess costs one or two reads.
pub(crate) fn gallop(n: usize, at: impl Fn(usize) -> u64, key: u64, guess: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let g = guess.min(n - 1);
    // Invariant for the final search: keys before `lo` are < key, keys from `hi` on are >= key.
    let (mut lo, mut hi);
    if at(g) < key {
        lo = g + 1;
        let mut step = 1usize;
        hi = loop {
            let j = g.saturating_add(step);
            if j >= n {
                break n;
            }
            if at(j) >= key {
                break j;
            }
            lo = j + 1;
            step = step.saturating_mul(2);
        };
    } else {
        hi = g;
        let mut step = 1usize;
        lo = loop {
            if step > g {
                break 0;
            }
            let j = g - step;
            if at(j) < key {
                break j + 1;
            }
            hi = j;
            step = step.saturating_mul(2);
        };
    }
    while lo < hi {
        let m = lo + (hi - lo) / 2;
        if at(m) < key {
            lo = m + 1;
        } else {
            hi = m;
        }
    }
    lo
}

/// Prices one component with seats looked up directly.
pub(crate) fn comp_price(ctx: &Ctx<'_>, segs: &[DatedSeg]) -> CompOpts {
    comp_price_with(ctx, segs, &mut |i, class| match segs.get(i) {
        Some(s) => seg_seats(ctx, s, class),
        None => 0,
    })
}

/// Whether a fare's travel dates, days of week and advance purchase admit a component whose
/// first departure is on local date `dl`.
#[inline]
fn date_ok(f: &ArchivedFare, dl: i32, weekday: u32, today: i32) -> bool {
    f.first_day.to_native() <= dl
        && dl <= f.last_day.to_native()
        && (f.days_mask >> weekday) & 1 == 1
        && i64::from(dl) - i64::from(today) >= i64::from(f.advance_purchase_days.to_native())
}

/// [`date_ok`] of a packed ADT fare.
#[inline]
fn ladder_date_ok(f: &LadderFare, dl: i32, weekday: u32, today: i32) -> bool {
    f.first_day <= dl
        && dl <= f.last_day
        && (f.days_mask >> weekday) & 1 == 1
        && i64::from(dl) - i64::from(today) >= i64::from(f.advance_purchase_days)
}

/// The cheapest valid companion fare (CHD = 1, INF = 2) of a (cabin, class, currency).
#[allow(clippy::too_many_arguments)]
fn companion(
    all: &[ArchivedFare],
    base: usize,
    ptype: u8,
    cabin: u8,
    class: u8,
    cur: &[u8; 3],
    dl: i32,
    wd: u32,
    today: i32,
) -> Option<(u32, i64)> {
    let start = all
        .partition_point(|f| (f.passenger_type, f.cabin, f.booking_class) < (ptype, cabin, class));
    for (k, f) in all.iter().enumerate().skip(start) {
        if (f.passenger_type, f.cabin, f.booking_class) != (ptype, cabin, class) {
            break;
        }
        if &f.currency == cur && date_ok(f, dl, wd, today) {
            return Some(((base + k) as u32, f.amount_minor.to_native()));
        }
    }
    None
}

/// Prices one component: `segs` consecutive, all on one marketing carrier; `seats(i, c)`
/// gives the fewest seats in class `c` over the legs of `segs[i]`.
pub(crate) fn comp_price_with(
    ctx: &Ctx<'_>,
    segs: &[DatedSeg],
    seats_of: &mut impl FnMut(usize, u8) -> u16,
) -> CompOpts {
    let mut out = EMPTY;
    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
        return out;
    };
    let carrier = first.carrier;
    if segs.iter().any(|s| s.carrier != carrier) {
        return out;
    }
    let MarketRange {
        s,
        e,
        adt: k,
        curs: n_curs,
    } = market_range(ctx, carrier, first.origin, last.dest);
    let all = match ctx.fares.fares.get(s..e) {
        Some(a) if !a.is_empty() => a,
        _ => return out,
    };
    let f = ctx.filters;
    let dl = first.dep_local.div_euclid(1440) as i32;
    let wd = format::date::weekday(dl);
    let seated = f.seated();
    let adults = i64::from(f.adults);
    let children = i64::from(f.children);
    let infants = i64::from(f.infants);
    if children == 0 && infants == 0 {
        // Adults only: the party pays `adults` x the ADT amount, so in amount order the
        // first valid fare of each currency is that currency's cheapest; seats are looked up
        // only for fares that could still win.
        let order = ctx.prep.adt_by_amount.get(s..s + k).unwrap_or(&[]);
        let ladder = ctx.prep.adt_ladder.get(s..s + k).unwrap_or(&[]);
        let mut done: [[u8; 3]; MAXCUR + 1] = [[0; 3]; MAXCUR + 1];
        let mut n_done = 0usize;
        let mut class_seats = [u16::MAX; 26];
        for (&gi, fare) in order.iter().zip(ladder) {
            let cur = fare.currency;
            if done[..n_done].contains(&cur)
                || f.cabin.is_some_and(|c| c != fare.cabin)
                || !ladder_date_ok(fare, dl, wd, ctx.today)
            {
                continue;
            }
            let class = fare.booking_class;
            let left = if class.is_ascii_uppercase() {
                let slot = &mut class_seats[(class - b'A') as usize];
                if *slot == u16::MAX {
                    *slot = (0..segs.len())
                        .map(|i| seats_of(i, class))
                        .min()
                        .unwrap_or(0)
                        .min(u16::MAX - 1);
                }
                *slot
            } else {
                (0..segs.len())
                    .map(|i| seats_of(i, class))
                    .min()
                    .unwrap_or(0)
            };
            if left < seated {
                continue;
            }
            out.offer(CompFare {
                adt: gi,
                chd: NONE,
                inf: NONE,
                total: adults.saturating_mul(fare.amount),
                cur,
                seats: left,
            });
            if n_done < done.len() {
                done[n_done] = cur;
                n_done += 1;
            }
            if n_done >= n_curs {
                // Every currency of the market has its cheapest valid fare: the rest are
                // dearer fares of those currencies.
                break;
            }
        }
        return out;
    }
    let mut i = 0;
    while i < all.len() && all[i].passenger_type == 0 {
        let (cabin, class) = (all[i].cabin, all[i].booking_class);
        let mut j = i;
        while j < all.len()
            && all[j].passenger_type == 0
            && all[j].cabin == cabin
            && all[j].booking_class == class
        {
            j += 1;
        }
        if f.cabin.is_none_or(|c| c == cabin) {
            let mut seats: Option<u16> = None;
            let mut taken: [[u8; 3]; MAXCUR + 1] = [[0; 3]; MAXCUR + 1];
            let mut n_taken = 0usize;
            for (k, fare) in all[i..j].iter().enumerate() {
                if !date_ok(fare, dl, wd, ctx.today) {
                    continue;
                }
                let cur = fare.currency;
                if taken[..n_taken].contains(&cur) {
                    continue;
                }
                let left = *seats.get_or_insert_with(|| {
                    let mut m = u16::MAX;
                    for k in 0..segs.len() {
                        m = m.min(seats_of(k, class));
                        if m == 0 {
                            break;
                        }
                    }
                    m
                });
                if left < seated {
                    break;
                }
                let amt = fare.amount_minor.to_native();
                let (chd, chd_amt) = if children > 0 {
                    companion(all, s, 1, cabin, class, &cur, dl, wd, ctx.today)
                        .unwrap_or((NONE, amt))
                } else {
                    (NONE, 0)
                };
                let (inf, inf_amt) = if infants > 0 {
                    companion(all, s, 2, cabin, class, &cur, dl, wd, ctx.today).unwrap_or((NONE, 0))
                } else {
                    (NONE, 0)
                };
                let total = adults
                    .saturating_mul(amt)
                    .saturating_add(children.saturating_mul(chd_amt))
                    .saturating_add(infants.saturating_mul(inf_amt));
                out.offer(CompFare {
                    adt: (s + i + k) as u32,
                    chd,
                    inf,
                    total,
                    cur,
                    seats: left,
                });
                if n_taken < taken.len() {
                    taken[n_taken] = cur;
                    n_taken += 1;
                }
            }
        }
        i = j;
    }
    out
}

/// The cheapest value (millionths) of a one-component slice: `price_refs(1, ..)`'s best.
#[inline]
pub fn value1(a: &CompOpts) -> Option<i128> {
    a.opts().iter().map(|x| micros(x.total, &x.cur)).min()
}

/// The cheapest value (millionths) of a two-segment slice priced with `ab` for both
/// segments as one component, or `a` then `b`: what `price_refs(2, ..)`'s best would be,
/// without building the constructions (the minimum over currencies and partitions is the
/// same whichever currencies `price_refs` keeps).
#[inline]
pub fn value2(a: &CompOpts, ab: &CompOpts, b: &CompOpts) -> Option<i128> {
    let mut best = value1(ab);
    for x in a.opts() {
        if let Some(y) = b.get(&x.cur) {
            let v = micros(x.total.saturating_add(y.total), &x.cur);
            if best.is_none_or(|m| v < m) {
                best = Some(v);
            }
        }
    }
    best
}

/// The partitions of 1..=3 segments into consecutive components, fewest components first
/// (on equal totals the first found wins).
const PARTS: [&[&[(u8, u8)]]; 4] = [
    &[],
    &[&[(0, 0)]],
    &[&[(0, 1)], &[(0, 0), (1, 1)]],
    &[
        &[(0, 2)],
        &[(0, 0), (1, 2)],
        &[(0, 1), (2, 2)],
        &[(0, 0), (1, 1), (2, 2)],
    ],
];

/// The cheapest construction per currency of an `n`-segment slice, given the component
/// prices `comp[i][j]` (segments `i..=j`).
pub fn price_slice(n: usize, comp: &[[CompOpts; 3]; 3]) -> Priced {
    let refs = [
        [&comp[0][0], &comp[0][1], &comp[0][2]],
        [&comp[1][0], &comp[1][1], &comp[1][2]],
        [&comp[2][0], &comp[2][1], &comp[2][2]],
    ];
    price_refs(n, &refs)
}

/// No fare.
pub const EMPTY: CompOpts = CompOpts {
    n: 0,
    o: [CompFare {
        adt: 0,
        chd: 0,
        inf: 0,
        total: 0,
        cur: [0; 3],
        seats: 0,
    }; MAXCUR],
};

/// [`price_slice`] over references (no copies of the component table).
pub fn price_refs(n: usize, comp: &[[&CompOpts; 3]; 3]) -> Priced {
    let mut out = Priced::default();
    let Some(parts) = PARTS.get(n) else {
        return out;
    };
    for part in parts.iter() {
        let (i0, j0) = part[0];
        for first in comp[i0 as usize][j0 as usize].opts() {
            let cur = first.cur;
            let mut c = Construction {
                cur,
                total: first.total,
                n: 1,
                comps: [CompRef::default(); 3],
                seats: first.seats,
            };
            c.comps[0] = CompRef::new(i0, j0, first);
            let mut ok = true;
            for &(i, j) in part.iter().skip(1) {
                match comp[i as usize][j as usize].get(&cur) {
                    Some(f) => {
                        c.comps[c.n as usize] = CompRef::new(i, j, f);
                        c.n += 1;
                        c.total = c.total.saturating_add(f.total);
                        c.seats = c.seats.min(f.seats);
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                offer(&mut out, c);
            }
        }
    }
    // Cheapest first; equal values in different currencies by currency code, so that every
    // path to the same itinerary (search, calendar, offer) shows the same one.
    let n = out.n as usize;
    out.opts[..n].sort_by_key(|c| (c.micros(), c.cur));
    out
}

fn offer(p: &mut Priced, c: Construction) {
    let n = p.n as usize;
    if let Some(o) = p.opts[..n].iter_mut().find(|o| o.cur == c.cur) {
        if c.total < o.total {
            *o = c;
        }
        return;
    }
    if n < MAXCUR {
        p.opts[n] = c;
        p.n += 1;
        return;
    }
    let mut worst = 0;
    for i in 1..n {
        if p.opts[i].micros() > p.opts[worst].micros() {
            worst = i;
        }
    }
    if c.micros() < p.opts[worst].micros() {
        p.opts[worst] = c;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts(list: &[(&[u8; 3], i64)]) -> CompOpts {
        let mut o = CompOpts::default();
        for (i, (cur, total)) in list.iter().enumerate() {
            o.offer(CompFare {
                adt: i as u32,
                chd: NONE,
                inf: NONE,
                total: *total,
                cur: **cur,
                seats: 9,
            });
        }
        o
    }

    #[test]
    fn partitions_pick_the_cheapest_per_currency() {
        let mut comp = [[CompOpts::default(); 3]; 3];
        comp[0][0] = opts(&[(b"USD", 100), (b"EUR", 50)]);
        comp[1][1] = opts(&[(b"USD", 100)]);
        comp[2][2] = opts(&[(b"USD", 100), (b"EUR", 10)]);
        comp[0][1] = opts(&[(b"USD", 150)]);
        comp[1][2] = opts(&[(b"EUR", 70)]);
        comp[0][2] = opts(&[(b"USD", 320)]);
        let p = price_slice(3, &comp);
        // EUR: 50 + 70 = 120 (0 | 1-2); USD: 150 + 100 = 250 (0-1 | 2).
        assert_eq!(p.n, 2);
        assert_eq!((p.opts[0].cur, p.opts[0].total), (*b"EUR", 120));
        assert_eq!((p.opts[1].cur, p.opts[1].total), (*b"USD", 250));
        assert_eq!(p.opts[1].comps().len(), 2);
        assert_eq!((p.opts[1].comps()[0].from, p.opts[1].comps()[0].to), (0, 1));
        // No construction without a common currency.
        let mut comp = [[CompOpts::default(); 3]; 3];
        comp[0][0] = opts(&[(b"USD", 1)]);
        comp[1][1] = opts(&[(b"EUR", 1)]);
        assert_eq!(price_slice(2, &comp).n, 0);
    }

    #[test]
    fn interpolation_search_finds_every_key_and_no_other() {
        let sets: Vec<Vec<u64>> = vec![
            vec![],
            vec![5],
            (0..1000).map(|i| i * 7 + 3).collect(),
            (0..1000).map(|i| i * i * i).collect(),
            (0..200)
                .map(|i| if i < 100 { i } else { 1 << 40 | i })
                .collect(),
        ];
        for keys in sets {
            for (i, &k) in keys.iter().enumerate() {
                assert_eq!(interpolation_search(keys.len(), |j| keys[j], k), Some(i));
                if !keys.contains(&(k + 1)) {
                    assert_eq!(interpolation_search(keys.len(), |j| keys[j], k + 1), None);
                }
            }
            assert_eq!(
                interpolation_search(keys.len(), |j| keys[j], u64::MAX),
                None
            );
        }
    }

    #[test]
    fn gallop_is_a_lower_bound_from_any_guess() {
        let sets: Vec<Vec<u64>> = vec![
            vec![],
            vec![5],
            (0..300).map(|i| i / 3 * 7).collect(),
            (0..300).map(|i| i * i).collect(),
        ];
        for keys in sets {
            let n = keys.len();
            for key in [0u64, 1, 5, 6, 7, 8, 50, 1000, 89_401, u64::MAX] {
                let want = keys.partition_point(|&k| k < key);
                for guess in [0, 1, n / 2, n.saturating_sub(1), n, n + 10] {
                    assert_eq!(gallop(n, |j| keys[j], key, guess), want, "{key} {guess}");
                }
            }
        }
    }

    #[test]
    fn cheaper_fares_replace_dearer_ones_of_the_same_currency() {
        let o = opts(&[(b"USD", 100), (b"USD", 90), (b"USD", 95)]);
        assert_eq!(o.n, 1);
        assert_eq!(o.o[0].total, 90);
        assert_eq!(micros(1, b"JPY"), 1_000_000);
        assert_eq!(micros(1, b"USD"), 10_000);
    }
}
