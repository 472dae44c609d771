//! Per-snapshot indexes the engine derives once (on the first query against a snapshot, or
//! by [`prepare`]) and caches by snapshot id: MCT rules grouped by station, each airport's
//! range of departure UTC offsets (for exact local-time windows), and the reverse market
//! index (which airports have a segment into an airport).

use std::sync::{Arc, RwLock};

use format::model::{AirportId, ArchivedMctRule, ArchivedNetwork, CarrierId, CONN_ANY};
use format::Snapshot;

pub(crate) struct Prepared {
    key: (std::path::PathBuf, String),
    /// `mct_idx[mct_off[a]..mct_off[a+1]]`: rules naming station `a`, in feed order.
    mct_off: Vec<u32>,
    mct_idx: Vec<u32>,
    /// Rules for every station (`*`), in feed order.
    mct_wild: Vec<u32>,
    /// Per airport: the smallest MCT any rule (or the default) can give there.
    pub mct_floor: Vec<u16>,
    /// Per airport: the largest MCT any rule (or the default) can give there; a connection
    /// at least this long needs no rule lookup.
    pub mct_ceil: Vec<u16>,
    /// Parallel to `Network::segments`: what a departure scan reads of each ref, its
    /// flight and legs (see [`SegInfo`]).
    pub seg_info: Vec<SegInfo>,
    /// Per airport: min and max UTC offset of the legs departing it.
    pub off_lo: Vec<i16>,
    pub off_hi: Vec<i16>,
    /// `into[into_off[b]..into_off[b+1]]`: origins of markets into `b`, sorted.
    into_off: Vec<u32>,
    into: Vec<AirportId>,
    /// `avail_start[f]..avail_start[f+1]`: the availability keys of flight `f`.
    avail_start: Vec<u32>,
    /// Per flight: bit `c - 'A'` is set when the snapshot has an availability row for
    /// booking class `c` on some leg and day of the flight, bit 31 when it has one for a
    /// class outside `A..=Z`. A class without any row is closed on every dated leg of the
    /// flight (as long as the live overlay is empty), which makes fare lower bounds tight.
    pub flight_classes: Vec<u32>,
    /// Per flight: the first and last base-day index with any availability row (empty
    /// range `(1, 0)` when none): on other days every class is closed.
    pub flight_days: Vec<(u16, u16)>,
    /// Per flight, packed for the seat lookup (one cache line read instead of three).
    pub flight_avail: Vec<FlightAvail>,

    /// Per fare market `[s, e)` whose ADT fares are `s..s+k`: `adt_by_amount[s..s+k]` are
    /// those fares' global indexes ordered by (amount, index).
    pub adt_by_amount: Vec<u32>,
    /// `adt_ladder[i]` holds what pricing reads of fare `adt_by_amount[i]`, packed and in
    /// the same order: walking a market's fares cheapest first reads consecutive memory
    /// instead of one scattered fare record per step.
    pub adt_ladder: Vec<LadderFare>,
    /// Per fare market (index of `Fares::market_keys`): the smallest ADT or CHD amount, in
    /// millionths (`i128::MAX` when the market has no ADT fare and so prices nothing).
    pub market_lb: Vec<i128>,
    /// Per fare market (index of `Fares::market_keys`): where its fares are, packed so that
    /// pricing a component reads one record.
    pub market_info: Vec<MarketInfo>,
    /// Fare market lookup by key: an open-addressing table of (market key, index of
    /// `Fares::market_keys`), a power of two at least twice the markets, empty slots
    /// `(u64::MAX, _)`. One or two probes of one cache line instead of a binary search over
    /// all markets (~17 dependent reads): every dated segment's pricing starts with it.
    pub market_table: Vec<(u64, u32)>,
}

impl Prepared {
    /// The index of fare market `key` in `Fares::market_keys`, if it has fares.
    #[inline]
    pub fn market(&self, key: u64) -> Option<usize> {
        let n = self.market_table.len();
        if n == 0 {
            return None;
        }
        let mut i = market_slot(key, n);
        // The table is at most half full: a probe sequence ends at an empty slot.
        for _ in 0..n {
            let (k, v) = *self.market_table.get(i)?;
            if k == key {
                return Some(v as usize);
            }
            if k == u64::MAX {
                return None;
            }
            i = (i + 1) & (n - 1);
        }
        None
    }
}

/// The first slot of `key` in a table of `n` (a power of two) slots.
#[inline]
fn market_slot(key: u64, n: usize) -> usize {
    debug_assert!(n.is_power_of_two());
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (n - 1)
}

/// The table of [`Prepared::market_table`] over `keys` (unique: one per market).
fn market_table(keys: impl ExactSizeIterator<Item = u64>) -> Vec<(u64, u32)> {
    let n = (keys.len().max(1) * 2).next_power_of_two();
    let mut t = vec![(u64::MAX, 0u32); n];
    for (idx, key) in keys.enumerate() {
        // Keys are below 2^48 (`format::model::market_key`): never the empty mark.
        assert_ne!(key, u64::MAX);
        let mut i = market_slot(key, n);
        while t[i].0 != u64::MAX && t[i].0 != key {
            i = (i + 1) & (n - 1);
        }
        t[i] = (key, idx as u32);
    }
    t
}

/// Where a flight's availability keys are, and their shape: keys are sorted by (leg, base
/// day, class), so the keys of (leg, day) are near `start + len * (leg * days + day -
/// day_lo) / (legs * days)` with `days = day_hi - day_lo + 1`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FlightAvail {
    pub start: u32,
    pub len: u32,
    /// When the flight's rows have the dense shape, their booking classes `A`-`Z` as a bit
    /// mask (bit 0 = `A`); 0 when the shape is irregular (the keys are searched). Dense:
    /// every leg `0..legs` has rows on exactly the days of `day_lo..=day_hi` that
    /// [`FlightAvail::week`] selects, each day for exactly these classes. The seats of a
    /// (leg, day) with rows are then `n` = the mask's bit count consecutive values, in
    /// class order, at a position computed from the leg and the day, read without touching
    /// the keys ([`FlightAvail::dense_at`]).
    pub dense_classes: u32,
    pub day_lo: u16,
    pub day_hi: u16,
    /// Dense shape: how many days of `day_lo..=day_hi` have rows.
    pub dense_days: u16,
    /// 1 + the highest leg index with a row.
    pub legs: u8,
    /// Dense shape: the days with rows, weekly: bit `j` set when days `day_lo + j + 7 k`
    /// have rows (`0x7f`: every day; a flight operating on some weekdays has rows on
    /// those only).
    pub week: u8,
}

impl FlightAvail {
    /// Where the seats of (`leg`, `day`) start in a dense flight (see
    /// [`FlightAvail::dense_classes`]); `None` when the flight is not dense or has no row
    /// for that leg and day (closed).
    #[inline]
    pub fn dense_at(&self, leg: u8, day: u16) -> Option<usize> {
        if self.dense_classes == 0 || leg >= self.legs || day < self.day_lo || day > self.day_hi {
            return None;
        }
        let d = usize::from(day - self.day_lo);
        let (weeks, r) = (d / 7, d % 7);
        if (self.week >> r) & 1 == 0 {
            return None;
        }
        // Days with rows before `day`: whole weeks, then the days of this week before it.
        let rank = weeks * self.week.count_ones() as usize
            + (self.week & ((1u8 << r) - 1)).count_ones() as usize;
        let n = self.dense_classes.count_ones() as usize;
        let slot = usize::from(leg) * usize::from(self.dense_days) + rank;
        debug_assert!(rank < usize::from(self.dense_days));
        Some(self.start as usize + slot * n)
    }
}

/// Whether flight `f`'s keys (all `n_keys` of them, in order, read by `key`) have the
/// dense shape of [`FlightAvail::dense_classes`] for class mask `mask` over `legs` legs and
/// days `day_lo..=day_hi`: if so, its [`FlightAvail::week`] and
/// [`FlightAvail::dense_days`].
fn dense_shape(
    f: usize,
    n_keys: usize,
    key: impl Fn(usize) -> u64,
    mask: u32,
    (legs, day_lo, day_hi): (u8, u16, u16),
) -> Option<(u8, u16)> {
    if mask == 0 || mask >> 26 != 0 || legs == 0 || day_lo > day_hi || n_keys == 0 {
        return None;
    }
    // The weekly pattern is that of leg 0's first week (its keys come first).
    let mut week = 0u8;
    for i in 0..n_keys {
        let k = key(i);
        let (leg, day) = ((k >> 24) & 0xff, ((k >> 8) & 0xffff) as u16);
        if leg != 0 || day < day_lo || day - day_lo >= 7 {
            break;
        }
        week |= 1 << (day - day_lo);
    }
    if week == 0 {
        return None;
    }
    let on = |day: u16| (week >> ((day - day_lo) % 7)) & 1 == 1;
    let days = (day_lo..=day_hi).filter(|&d| on(d)).count();
    let n = mask.count_ones() as usize;
    if n_keys != usize::from(legs) * days * n {
        return None;
    }
    let mut i = 0usize;
    for leg in 0..legs {
        for day in (day_lo..=day_hi).filter(|&d| on(d)) {
            // The keys of (leg, day) are this base plus the class, classes ascending.
            let base = format::model::avail_key(f as u32, leg, day, 0);
            let mut bits = mask;
            while bits != 0 {
                let c = u64::from(bits.trailing_zeros()) + u64::from(b'A');
                if key(i) != base | c {
                    return None;
                }
                bits &= bits - 1;
                i += 1;
            }
        }
    }
    Some((week, u16::try_from(days).ok()?))
}

/// A fare market's fares: `Fares::fares[start..end]`, of which the first `adt` are ADT,
/// whose currencies number `curs` (saturating at 255; pricing a component stops once it has
/// found a valid fare in each). Checked at build: `start <= start + adt <= end <= len`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MarketInfo {
    pub start: u32,
    pub end: u32,
    pub adt: u32,
    pub curs: u8,
}

/// The fields of an ADT fare that pricing reads (see `Prepared::adt_ladder`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LadderFare {
    pub amount: i64,
    pub first_day: i32,
    pub last_day: i32,
    pub advance_purchase_days: u16,
    pub days_mask: u8,
    pub cabin: u8,
    pub booking_class: u8,
    pub currency: [u8; 3],
}

static CACHE: RwLock<Vec<Arc<Prepared>>> = RwLock::new(Vec::new());

fn key_of(snap: &Snapshot) -> (std::path::PathBuf, String) {
    (snap.dir.clone(), snap.manifest.snapshot_id.clone())
}

/// Builds (or finds) the engine's derived indexes for `snap`. The server may call this right
/// after loading a snapshot so the first query does not pay for it.
pub fn prepare(snap: &Snapshot) {
    let _ = get(snap);
}

pub(crate) fn get(snap: &Snapshot) -> Arc<Prepared> {
    {
        let cache = match CACHE.read() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        for p in cache.iter() {
            // Byte comparison of the path (a `Path` comparison parses components).
            if p.key.1 == snap.manifest.snapshot_id && p.key.0.as_os_str() == snap.dir.as_os_str() {
                return p.clone();
            }
        }
    }
    let built = Arc::new(build(snap));
    let mut cache = match CACHE.write() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    if let Some(p) = cache.iter().find(|p| p.key == built.key) {
        return p.clone();
    }
    cache.insert(0, built.clone());
    // A reload keeps the previous snapshot alive for in-flight requests; keep two (plus a
    // few for tests that open several snapshots).
    cache.truncate(4);
    built
}

fn build(snap: &Snapshot) -> Prepared {
    let net = snap.network.get();
    let places = snap.places.get();
    let mct = snap.mct.get();
    let n = places.airports.len();

    // MCT by station.
    let mut counts = vec![0u32; n + 1];
    let mut wild = Vec::new();
    for (i, r) in mct.rules.iter().enumerate() {
        let st = r.station.to_native();
        if st == u16::MAX {
            wild.push(i as u32);
        } else if (st as usize) < n {
            counts[st as usize + 1] += 1;
        }
    }
    for i in 0..n {
        counts[i + 1] += counts[i];
    }
    let mut fill = counts.clone();
    let mut idx = vec![0u32; counts[n] as usize];
    for (i, r) in mct.rules.iter().enumerate() {
        let st = r.station.to_native();
        if st != u16::MAX && (st as usize) < n {
            idx[fill[st as usize] as usize] = i as u32;
            fill[st as usize] += 1;
        }
    }
    let default = mct.default_minutes.to_native();
    let wild_min = wild
        .iter()
        .filter_map(|&i| mct.rules.get(i as usize))
        .map(|r| r.minutes.to_native())
        .min()
        .unwrap_or(u16::MAX);
    let wild_max = wild
        .iter()
        .filter_map(|&i| mct.rules.get(i as usize))
        .map(|r| r.minutes.to_native())
        .max()
        .unwrap_or(0);
    let mut mct_floor = vec![default.min(wild_min); n];
    let mut mct_ceil = vec![default.max(wild_max); n];
    for a in 0..n {
        for &i in &idx[counts[a] as usize..counts[a + 1] as usize] {
            if let Some(r) = mct.rules.get(i as usize) {
                mct_floor[a] = mct_floor[a].min(r.minutes.to_native());
                mct_ceil[a] = mct_ceil[a].max(r.minutes.to_native());
            }
        }
    }

    // Offsets of departures per airport.
    let mut off_lo = vec![i16::MAX; n];
    let mut off_hi = vec![i16::MIN; n];
    for l in net.legs.iter() {
        let a = l.dep.to_native() as usize;
        if a < n {
            let o = l.dep_offset_min.to_native();
            off_lo[a] = off_lo[a].min(o);
            off_hi[a] = off_hi[a].max(o);
        }
    }
    for a in 0..n {
        if off_lo[a] > off_hi[a] {
            off_lo[a] = 0;
            off_hi[a] = 0;
        }
    }

    // Reverse markets.
    let mut pairs: Vec<(AirportId, AirportId)> = Vec::new();
    for a in 0..n {
        for m in net.markets_from(a as AirportId) {
            if m.start.to_native() < m.end.to_native() {
                pairs.push((m.dest.to_native(), a as AirportId));
            }
        }
    }
    pairs.sort_unstable();
    let mut into_off = vec![0u32; n + 1];
    for &(b, _) in &pairs {
        if (b as usize) < n {
            into_off[b as usize + 1] += 1;
        }
    }
    for i in 0..n {
        into_off[i + 1] += into_off[i];
    }
    let into = pairs.iter().map(|p| p.1).collect();

    let seg_info = seg_info(net);

    // Availability keys per flight (keys are sorted by flight first).
    let keys = &snap.availability.get().keys;
    let n_flights = net.flights.len();
    let mut avail_start = vec![0u32; n_flights + 1];
    let mut flight_classes = vec![0u32; n_flights];
    let mut flight_days = vec![(1u16, 0u16); n_flights];
    let mut flight_legs = vec![0u8; n_flights];
    let mut i = 0usize;
    for (f, slot) in avail_start.iter_mut().enumerate() {
        while i < keys.len() && ((keys[i].to_native() >> 32) as usize) < f {
            i += 1;
        }
        *slot = i as u32;
    }
    for k in keys.iter() {
        let k = k.to_native();
        let class = (k & 0xff) as u8;
        let bit = if class.is_ascii_uppercase() {
            1u32 << (class - b'A')
        } else {
            1u32 << 31
        };
        if let Some(m) = flight_classes.get_mut((k >> 32) as usize) {
            *m |= bit;
        }
        let day = ((k >> 8) & 0xffff) as u16;
        let leg = ((k >> 24) & 0xff) as u8;
        if let Some(l) = flight_legs.get_mut((k >> 32) as usize) {
            *l = (*l).max(leg.saturating_add(1));
        }
        if let Some(r) = flight_days.get_mut((k >> 32) as usize) {
            *r = if r.0 > r.1 {
                (day, day)
            } else {
                (r.0.min(day), r.1.max(day))
            };
        }
    }

    let flight_avail = (0..n_flights)
        .map(|f| {
            let (start, end) = (avail_start[f], avail_start[f + 1]);
            let (day_lo, day_hi) = flight_days[f];
            let mask = flight_classes[f];
            let dense = keys.get(start as usize..end as usize).and_then(|k| {
                dense_shape(
                    f,
                    k.len(),
                    |i| k[i].to_native(),
                    mask,
                    (flight_legs[f], day_lo, day_hi),
                )
            });
            let (week, dense_days) = dense.unwrap_or((0, 0));
            FlightAvail {
                start,
                len: end.saturating_sub(start),
                dense_classes: if dense.is_some() { mask } else { 0 },
                day_lo,
                day_hi,
                dense_days,
                legs: flight_legs[f],
                week,
            }
        })
        .collect();

    // ADT fares of each market by amount.
    let fares = snap.fares.get();
    let mut adt_by_amount: Vec<u32> = (0..fares.fares.len() as u32).collect();
    let starts = &fares.market_starts;
    let mut market_lb = Vec::with_capacity(starts.len());
    let mut market_info = Vec::with_capacity(starts.len());
    for w in starts.windows(2) {
        let (s, e) = (w[0].to_native() as usize, w[1].to_native() as usize);
        let m = fares.fares.get(s..e).unwrap_or(&[]);
        let mut curs: Vec<[u8; 3]> = m
            .iter()
            .take_while(|f| f.passenger_type == 0)
            .map(|f| f.currency)
            .collect();
        curs.sort_unstable();
        curs.dedup();
        market_info.push(if m.is_empty() {
            MarketInfo::default()
        } else {
            MarketInfo {
                start: s as u32,
                end: e as u32,
                adt: m.iter().take_while(|f| f.passenger_type == 0).count() as u32,
                curs: curs.len().min(255) as u8,
            }
        });
        let has_adt = m.first().is_some_and(|f| f.passenger_type == 0);
        let lb = m
            .iter()
            .filter(|f| f.passenger_type <= 1)
            .map(|f| crate::engine::price::micros(f.amount_minor.to_native(), &f.currency))
            .min()
            .filter(|_| has_adt)
            .unwrap_or(i128::MAX);
        market_lb.push(lb);
    }
    for w in starts.windows(2) {
        let (s, e) = (w[0].to_native() as usize, w[1].to_native() as usize);
        let Some(m) = fares.fares.get(s..e) else {
            continue;
        };
        let k = m.iter().take_while(|f| f.passenger_type == 0).count();
        if let Some(slot) = adt_by_amount.get_mut(s..s + k) {
            slot.sort_by_key(|&i| {
                (
                    fares
                        .fares
                        .get(i as usize)
                        .map(|f| f.amount_minor.to_native()),
                    i,
                )
            });
        }
    }
    let adt_ladder = adt_by_amount
        .iter()
        .map(|&i| match fares.fares.get(i as usize) {
            Some(f) => LadderFare {
                amount: f.amount_minor.to_native(),
                first_day: f.first_day.to_native(),
                last_day: f.last_day.to_native(),
                advance_purchase_days: f.advance_purchase_days.to_native(),
                days_mask: f.days_mask,
                cabin: f.cabin,
                booking_class: f.booking_class,
                currency: f.currency,
            },
            None => LadderFare::default(),
        })
        .collect();

    Prepared {
        key: key_of(snap),
        mct_off: counts,
        mct_idx: idx,
        mct_wild: wild,
        mct_floor,
        mct_ceil,
        seg_info,
        off_lo,
        off_hi,
        into_off,
        into,
        avail_start,
        flight_classes,
        flight_days,
        flight_avail,
        adt_by_amount,
        adt_ladder,
        market_lb,
        market_info,
        market_table: market_table(fares.market_keys.iter().map(|k| k.to_native())),
    }
}

/// A segment ref with what a departure scan needs of its flight and legs, so that the
/// scan reads one sequential array instead of the ref, its flight, its legs and its day
/// set (three or four scattered cache lines per ref, most of them for refs it rejects).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SegInfo {
    pub flight: u32,
    /// Index of the flight's day set in `Network::day_sets`.
    pub day_set: u32,
    /// UTC departure of the first leg and arrival of the last, minutes from 00:00 UTC of
    /// the flight's base date.
    pub dep_utc_min: i32,
    pub arr_utc_min: i32,
    /// Local departure time of day at the origin (the refs' sort key within a market).
    pub dep_local_min: u16,
    /// The first and last base-day index on which the flight operates (`(1, 0)`: never).
    /// Schedules file one flight per period, so most refs of a market at a time of day are
    /// for other periods than the searched date: rejected here without the day set.
    pub day_lo: u16,
    pub day_hi: u16,
    pub carrier: CarrierId,
    pub dep_offset_min: i16,
    pub arr_offset_min: i16,
    pub from_leg: u8,
    pub to_leg: u8,
    /// Local departure date at the origin minus the flight's base date.
    pub dep_day_shift: i8,
    /// When the day set is a weekly pattern over its span (the usual SSIM period with days
    /// of operation), its weekdays (bit 0 = Monday): the flight operates on a base day of
    /// its span exactly when that day's weekday is in it, with no read of the day set.
    /// [`IRREGULAR`] when it is not.
    pub weekdays: u8,
}

/// [`SegInfo::weekdays`] of a day set that is not a weekly pattern: read the day set.
pub(crate) const IRREGULAR: u8 = 0x80;

/// [`SegInfo`] of every segment ref. A ref that does not fit its market (its legs do not
/// run from the market's origin to its destination, or are missing) never operates: the
/// snapshot's validation refuses such a network, and a scan must not trust it either.
fn seg_info(net: &ArchivedNetwork) -> Vec<SegInfo> {
    let never = SegInfo {
        day_lo: 1,
        day_hi: 0,
        ..SegInfo::default()
    };
    let mut out = vec![never; net.segments.len()];
    // Per day set: its span and weekdays (see `SegInfo`), computed once.
    let mut sets: Vec<Option<Option<(u32, u32, u8)>>> = Vec::new();
    // A dated segment's day index is at most `u16::MAX` (see `paths::dated`).
    let clamp = |d: u32| d.min(u32::from(u16::MAX)) as u16;
    let n_airports = net.market_offsets.len().saturating_sub(1);
    for a in 0..n_airports {
        let a = a as AirportId;
        for m in net.markets_from(a) {
            let b = m.dest.to_native();
            let (s, e) = (m.start.to_native() as usize, m.end.to_native() as usize);
            let (Some(refs), Some(slots)) = (net.segments.get(s..e), out.get_mut(s..e)) else {
                continue;
            };
            for (r, slot) in refs.iter().zip(slots) {
                let Some(fl) = net.flights.get(r.flight.to_native() as usize) else {
                    continue;
                };
                let legs = net.flight_legs(fl);
                let (Some(l0), Some(l1)) = (
                    legs.get(usize::from(r.from_leg)),
                    legs.get(usize::from(r.to_leg)),
                ) else {
                    continue;
                };
                if r.from_leg > r.to_leg || l0.dep.to_native() != a || l1.arr.to_native() != b {
                    continue;
                }
                let set = fl.day_set.to_native() as usize;
                if sets.len() <= set {
                    sets.resize(set + 1, None);
                }
                let info = *sets[set].get_or_insert_with(|| {
                    let (lo, hi) = net.day_set_span(set as u32)?;
                    let weekdays = net.day_set_weekdays(set as u32).unwrap_or(IRREGULAR);
                    Some((lo, hi, weekdays))
                });
                let Some((lo, hi, weekdays)) = info else {
                    continue;
                };
                *slot = SegInfo {
                    flight: r.flight.to_native(),
                    day_set: fl.day_set.to_native(),
                    dep_utc_min: l0.dep_utc_min.to_native(),
                    arr_utc_min: l1.arr_utc_min.to_native(),
                    dep_local_min: r.dep_local_min.to_native(),
                    day_lo: clamp(lo),
                    day_hi: clamp(hi),
                    carrier: fl.carrier.to_native(),
                    dep_offset_min: l0.dep_offset_min.to_native(),
                    arr_offset_min: l1.arr_offset_min.to_native(),
                    from_leg: r.from_leg,
                    to_leg: r.to_leg,
                    dep_day_shift: r.dep_day_shift,
                    weekdays,
                };
            }
        }
    }
    out
}

/// The inputs of an MCT lookup.
pub(crate) struct MctQuery {
    pub station: AirportId,
    pub conn_type: u8,
    pub arr_carrier: [u8; 3],
    pub dep_carrier: [u8; 3],
}

impl Prepared {
    /// Airports with a market into `b`, sorted.
    pub fn into(&self, b: AirportId) -> &[AirportId] {
        let b = b as usize;
        match (self.into_off.get(b), self.into_off.get(b + 1)) {
            (Some(&s), Some(&e)) => self.into.get(s as usize..e as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The range of availability keys of `flight`.
    pub fn avail_range(&self, flight: u32) -> (usize, usize) {
        let f = flight as usize;
        match (self.avail_start.get(f), self.avail_start.get(f + 1)) {
            (Some(&s), Some(&e)) => (s as usize, e as usize),
            _ => (0, 0),
        }
    }

    pub fn off_range(&self, a: AirportId) -> (i64, i64) {
        (
            i64::from(self.off_lo.get(a as usize).copied().unwrap_or(-720)),
            i64::from(self.off_hi.get(a as usize).copied().unwrap_or(840)),
        )
    }

    pub fn floor(&self, a: AirportId) -> u16 {
        self.mct_floor.get(a as usize).copied().unwrap_or(0)
    }

    pub fn ceil(&self, a: AirportId) -> u16 {
        self.mct_ceil.get(a as usize).copied().unwrap_or(u16::MAX)
    }

    /// The minimum connection time of the most specific matching rule: a named station
    /// beats `*`; then more carriers given beats fewer; then an exact type beats `*`; on a
    /// full tie the larger minutes wins. No rule: the table's default.
    pub fn mct(&self, rules: &[ArchivedMctRule], default: u16, q: &MctQuery) -> u16 {
        let st = q.station as usize;
        let named = match (self.mct_off.get(st), self.mct_off.get(st + 1)) {
            (Some(&s), Some(&e)) => self.mct_idx.get(s as usize..e as usize).unwrap_or(&[]),
            _ => &[],
        };
        if let Some(m) = best(rules, named, q) {
            return m;
        }
        best(rules, &self.mct_wild, q).unwrap_or(default)
    }
}

fn best(rules: &[ArchivedMctRule], idx: &[u32], q: &MctQuery) -> Option<u16> {
    let mut best: Option<((u8, u8), u16)> = None;
    for &i in idx {
        let Some(r) = rules.get(i as usize) else {
            continue;
        };
        if r.conn_type != CONN_ANY && r.conn_type != q.conn_type {
            continue;
        }
        let blank = [b' '; 3];
        let mut carriers = 0u8;
        if r.arrival_carrier != blank {
            if r.arrival_carrier != q.arr_carrier {
                continue;
            }
            carriers += 1;
        }
        if r.departure_carrier != blank {
            if r.departure_carrier != q.dep_carrier {
                continue;
            }
            carriers += 1;
        }
        let spec = (carriers, u8::from(r.conn_type != CONN_ANY));
        let minutes = r.minutes.to_native();
        // A full tie keeps the larger minutes: a minimum is never undercut by row order.
        if best.is_none_or(|(b, bm)| spec > b || (spec == b && minutes > bm)) {
            best = Some((spec, minutes));
        }
    }
    best.map(|b| b.1)
}

#[cfg(test)]
mod tests {
    use super::{dense_shape, FlightAvail};
    use format::model::avail_key;

    /// Keys of flight `f` with rows on `legs` legs, the days of `lo..=hi` that `has_day`
    /// selects, and the classes of `mask`, in key order.
    fn keys(
        f: u32,
        legs: u8,
        lo: u16,
        hi: u16,
        has_day: impl Fn(u16) -> bool,
        mask: u32,
    ) -> Vec<u64> {
        let mut out = Vec::new();
        for leg in 0..legs {
            for day in (lo..=hi).filter(|&d| has_day(d)) {
                for c in 0..26u8 {
                    if (mask >> c) & 1 == 1 {
                        out.push(avail_key(f, leg, day, b'A' + c));
                    }
                }
            }
        }
        out
    }

    fn avail(k: &[u64], f: u32, legs: u8, lo: u16, hi: u16, mask: u32) -> Option<FlightAvail> {
        let (week, dense_days) = dense_shape(f as usize, k.len(), |i| k[i], mask, (legs, lo, hi))?;
        Some(FlightAvail {
            start: 0,
            len: k.len() as u32,
            dense_classes: mask,
            day_lo: lo,
            day_hi: hi,
            dense_days,
            legs,
            week,
        })
    }

    #[test]
    fn dense_positions_of_a_weekly_flight_are_its_keys_positions() {
        // Rows on 3 days a week (days 10, 12, 15 of each week from day 10), 2 legs.
        let (f, legs, lo, hi) = (7u32, 2u8, 10u16, 40u16);
        let mask = (1 << 0) | (1 << 12) | (1 << 24); // A, M, Y
        let has_day = |d: u16| [0, 2, 5].contains(&((d - lo) % 7));
        let k = keys(f, legs, lo, hi, has_day, mask);
        let fa = avail(&k, f, legs, lo, hi, mask).expect("weekly shape is dense");
        assert_eq!(fa.week, 0b10_0101);
        for leg in 0..legs {
            for day in lo..=hi {
                let at = fa.dense_at(leg, day);
                if !has_day(day) {
                    assert_eq!(at, None, "leg {leg} day {day} has no row");
                    continue;
                }
                let at = at.expect("a day with rows has a position");
                for (rank, c) in [b'A', b'M', b'Y'].into_iter().enumerate() {
                    assert_eq!(
                        k[at + rank],
                        avail_key(f, leg, day, c),
                        "leg {leg} day {day}"
                    );
                }
            }
            assert_eq!(fa.dense_at(leg, lo - 1), None);
            assert_eq!(fa.dense_at(leg, hi + 1), None);
        }
        assert_eq!(fa.dense_at(legs, lo), None);
    }

    #[test]
    fn a_weekly_flight_missing_one_row_is_not_dense() {
        let (f, legs, lo, hi) = (3u32, 1u8, 0u16, 27u16);
        let mask = 0b11;
        let has_day = |d: u16| d % 7 == 1 || d % 7 == 4;
        let mut k = keys(f, legs, lo, hi, has_day, mask);
        assert!(avail(&k, f, legs, lo, hi, mask).is_some());
        k.remove(5);
        assert!(avail(&k, f, legs, lo, hi, mask).is_none());
        // A day outside the pattern added: not dense either.
        let mut k = keys(f, legs, lo, hi, has_day, mask);
        let extra = [avail_key(f, 0, 9, b'A'), avail_key(f, 0, 9, b'B')];
        let at = k.partition_point(|&x| x < extra[0]);
        k.splice(at..at, extra);
        assert!(avail(&k, f, legs, lo, hi, mask).is_none());
    }
}
