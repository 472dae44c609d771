//! The archived types of a snapshot. Indexes into tables are `u16`/`u32` positions; every
//! index stored in an archive is checked against its table's length when the snapshot is
//! opened (`validate_*`), so readers may index without bounds surprises.

use rkyv::{Archive, Deserialize, Serialize};

/// Position of an airport in `Places::airports` (sorted by IATA code).
pub type AirportId = u16;
/// Position of a carrier in `Network::carriers` (sorted by code).
pub type CarrierId = u16;

/// A span of `Network::text` or `Fares::text`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextRef {
    pub start: u32,
    pub len: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Airport {
    pub iata: [u8; 3],
    pub icao: String,
    pub name: String,
    pub city: String,
    pub subd: String,
    pub country: [u8; 2],
    /// IANA time zone name.
    pub tz: String,
    pub lat: f32,
    pub lon: f32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Metro {
    pub code: [u8; 3],
    /// Member airports, sorted.
    pub airports: Vec<AirportId>,
}

/// Airports and metro areas (the `places.rkyv` archive).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Places {
    /// Sorted by `iata`, unique.
    pub airports: Vec<Airport>,
    /// Sorted by `code`, unique.
    pub metros: Vec<Metro>,
}

/// One through flight pattern: a carrier's flight that operates the same legs at the same
/// times on a set of dates (its "base" dates, the dates of its period of operation).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flight {
    pub carrier: CarrierId,
    pub number: u16,
    /// Operational suffix, 0 when none.
    pub suffix: u8,
    pub ivi: u16,
    /// Legs are `legs[first_leg .. first_leg + n_legs]`, in sequence.
    pub first_leg: u32,
    pub n_legs: u8,
    /// Index of the operating-day bit set in `Network::day_sets`.
    pub day_set: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub dep: AirportId,
    pub arr: AirportId,
    /// Minutes from 00:00 UTC of the flight's base date.
    pub dep_utc_min: i32,
    pub arr_utc_min: i32,
    /// Local time = UTC + offset.
    pub dep_offset_min: i16,
    pub arr_offset_min: i16,
    /// SSIM service type letter.
    pub service_type: u8,
    /// Whether the service type carries passengers (J S U Q G B R C O).
    pub passenger: bool,
    pub leg_seq: u8,
    /// Aircraft type, space padded (e.g. `738`).
    pub aircraft: [u8; 3],
    /// Passenger reservations booking designator, e.g. `JCDYBM`.
    pub prbd: TextRef,
    /// DEI 010 marketing designators, space separated.
    pub codeshares: TextRef,
    /// DEI 050 operating carrier, spaces when the same as the flight's carrier.
    pub operating_carrier: [u8; 3],
}

/// A segment a passenger can board: legs `from_leg..=to_leg` of `flight`, leaving its
/// origin for `dest`. Only all-passenger leg ranges are listed.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef {
    pub flight: u32,
    pub from_leg: u8,
    pub to_leg: u8,
    pub dest: AirportId,
    /// Local departure date at the origin minus the flight's base date.
    pub dep_day_shift: i8,
    /// Local departure time of day at the origin, minutes.
    pub dep_local_min: u16,
}

/// A destination reachable from an origin, and its segments `segments[start..end]`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Market {
    pub dest: AirportId,
    pub start: u32,
    pub end: u32,
}

/// The flight network (the `network.rkyv` archive).
///
/// Operating days are bit sets over base dates `first_day .. first_day + n_days`, shared
/// between flights with the same days (as in MOTIS/nigiri), so the schedule costs bytes per
/// pattern, not per dated leg.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Network {
    pub first_day: i32,
    pub n_days: u32,
    pub words_per_set: u32,
    /// `words_per_set` words per set; bit `i` of a set = operates on base date `first_day + i`.
    pub day_sets: Vec<u64>,
    /// Carrier codes, 2 or 3 characters, space padded; sorted.
    pub carriers: Vec<[u8; 3]>,
    /// Sorted by (carrier, number, suffix, ivi).
    pub flights: Vec<Flight>,
    pub legs: Vec<Leg>,
    pub text: String,
    /// `segments[seg_offsets[a] .. seg_offsets[a+1]]` leave airport `a`, sorted by
    /// (dest, dep_local_min). Length = airports + 1.
    pub seg_offsets: Vec<u32>,
    pub segments: Vec<SegmentRef>,
    /// `markets[market_offsets[a] .. market_offsets[a+1]]` are the destinations from `a`,
    /// sorted by dest. Length = airports + 1.
    pub market_offsets: Vec<u32>,
    pub markets: Vec<Market>,
}

/// Minor-unit digits of a currency (ISO 4217; 2 unless listed). Fare amounts are stored
/// in these units, so the reader that parses them and every writer that prints them must use
/// this one table.
pub fn currency_decimals(currency: &[u8; 3]) -> u32 {
    match currency {
        b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG" | b"RWF"
        | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
        b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
        b"CLF" | b"UYW" => 4,
        _ => 2,
    }
}

/// Cabins, in fare order.
pub const CABINS: [&str; 4] = ["economy", "premium_economy", "business", "first"];
/// Passenger types.
pub const PASSENGER_TYPES: [&str; 3] = ["ADT", "CHD", "INF"];

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fare {
    pub carrier: CarrierId,
    pub origin: AirportId,
    pub dest: AirportId,
    pub basis: TextRef,
    pub booking_class: u8,
    /// Index into `CABINS`.
    pub cabin: u8,
    /// Index into `PASSENGER_TYPES`.
    pub passenger_type: u8,
    /// Amount in the currency's minor units.
    pub amount_minor: i64,
    pub currency: [u8; 3],
    /// Travel dates covered, inclusive; `i32::MIN`/`i32::MAX` when open.
    pub first_day: i32,
    pub last_day: i32,
    /// Bit 0 = Monday.
    pub days_mask: u8,
    pub advance_purchase_days: u16,
    pub refundable: bool,
    /// Change fee in minor units, -1 when none is given.
    pub change_fee_minor: i64,
}

/// Fares (the `fares.rkyv` archive), grouped by market.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Fares {
    /// Sorted by (carrier, origin, dest, passenger_type, cabin, booking_class, amount).
    pub fares: Vec<Fare>,
    /// Sorted unique `market_key(carrier, origin, dest)`.
    pub market_keys: Vec<u64>,
    /// `fares[market_starts[i] .. market_starts[i+1]]` belong to `market_keys[i]`.
    pub market_starts: Vec<u32>,
    pub text: String,
}

pub fn market_key(carrier: CarrierId, origin: AirportId, dest: AirportId) -> u64 {
    (u64::from(carrier) << 32) | (u64::from(origin) << 16) | u64::from(dest)
}

/// Seats left per (flight, leg, base date, booking class) (the `availability.rkyv` archive).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Availability {
    /// Sorted unique `avail_key(..)`.
    pub keys: Vec<u64>,
    pub seats: Vec<u16>,
}

/// `day_index` is the flight's base date minus `Network::first_day`.
pub fn avail_key(flight: u32, leg: u8, day_index: u16, booking_class: u8) -> u64 {
    (u64::from(flight) << 32)
        | (u64::from(leg) << 24)
        | (u64::from(day_index) << 8)
        | u64::from(booking_class)
}

/// Connection types of the MCT table.
pub const CONN_ANY: u8 = 0;
pub const CONN_DD: u8 = 1;
pub const CONN_DI: u8 = 2;
pub const CONN_ID: u8 = 3;
pub const CONN_II: u8 = 4;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MctRule {
    /// `u16::MAX` for every station.
    pub station: u16,
    pub conn_type: u8,
    pub minutes: u16,
    /// Space padded code, all spaces = any carrier.
    pub arrival_carrier: [u8; 3],
    pub departure_carrier: [u8; 3],
}

/// Minimum connection times (the `mct.rkyv` archive).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Mct {
    /// In feed order.
    pub rules: Vec<MctRule>,
    pub default_minutes: u16,
}

/// A carrier code as the 3-byte padded form used in archives.
pub fn carrier_code(code: &str) -> Option<[u8; 3]> {
    let b = code.as_bytes();
    if !(2..=3).contains(&b.len()) || !b.iter().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut out = [b' '; 3];
    out[..b.len()].copy_from_slice(b);
    Some(out)
}

/// The code of a padded carrier, without padding.
pub fn carrier_str(code: &[u8; 3]) -> &str {
    let end = if code[2] == b' ' { 2 } else { 3 };
    std::str::from_utf8(&code[..end]).unwrap_or("??")
}

impl ArchivedNetwork {
    pub fn text(&self, r: &ArchivedTextRef) -> &str {
        let start = r.start.to_native() as usize;
        let end = start + r.len.to_native() as usize;
        self.text.get(start..end).unwrap_or("")
    }

    /// Whether day set `set` has base date index `day` (out of range = false).
    #[inline]
    pub fn operates(&self, set: u32, day: i64) -> bool {
        if day < 0 || day >= i64::from(self.n_days.to_native()) {
            return false;
        }
        let words = self.words_per_set.to_native() as usize;
        let w = set as usize * words + (day as usize >> 6);
        match self.day_sets.get(w) {
            Some(word) => (word.to_native() >> (day as u64 & 63)) & 1 == 1,
            None => false,
        }
    }

    pub fn flight_legs(&self, flight: &ArchivedFlight) -> &[ArchivedLeg] {
        let s = flight.first_leg.to_native() as usize;
        let e = s + flight.n_legs as usize;
        self.legs.get(s..e).unwrap_or(&[])
    }

    /// Segments leaving airport `a`.
    pub fn segments_from(&self, a: AirportId) -> &[ArchivedSegmentRef] {
        let a = a as usize;
        match (self.seg_offsets.get(a), self.seg_offsets.get(a + 1)) {
            (Some(s), Some(e)) => self
                .segments
                .get(s.to_native() as usize..e.to_native() as usize)
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    pub fn markets_from(&self, a: AirportId) -> &[ArchivedMarket] {
        let a = a as usize;
        match (self.market_offsets.get(a), self.market_offsets.get(a + 1)) {
            (Some(s), Some(e)) => self
                .markets
                .get(s.to_native() as usize..e.to_native() as usize)
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Segments from `a` to `b`, sorted by local departure time.
    pub fn segments_between(&self, a: AirportId, b: AirportId) -> &[ArchivedSegmentRef] {
        let (s, e) = self.segment_range_between(a, b);
        self.segments.get(s..e).unwrap_or(&[])
    }

    /// Where [`ArchivedNetwork::segments_between`]`(a, b)` lies in `segments`, to read
    /// arrays that run parallel to it (an empty range when there is no such market).
    pub fn segment_range_between(&self, a: AirportId, b: AirportId) -> (usize, usize) {
        let markets = self.markets_from(a);
        match markets.binary_search_by_key(&b, |m| m.dest.to_native()) {
            Ok(i) => {
                let m = &markets[i];
                let (s, e) = (m.start.to_native() as usize, m.end.to_native() as usize);
                if s <= e && e <= self.segments.len() {
                    (s, e)
                } else {
                    (0, 0)
                }
            }
            Err(_) => (0, 0),
        }
    }

    /// The first and last base-day index on which day set `set` operates (`None`: never).
    pub fn day_set_span(&self, set: u32) -> Option<(u32, u32)> {
        let w = self.day_set_words(set)?;
        bit_span(w.len(), |i| w[i].to_native())
    }

    /// When day set `set` is a weekly pattern over its span (it operates on exactly the
    /// days of its span whose weekday is in the returned mask, bit 0 = Monday), that mask;
    /// `None` when it is not (a period with exceptions) or is empty.
    pub fn day_set_weekdays(&self, set: u32) -> Option<u8> {
        let w = self.day_set_words(set)?;
        let first_day = self.first_day.to_native();
        weekly_pattern(
            w.len(),
            |i| w[i].to_native(),
            crate::date::weekday(first_day),
        )
    }

    fn day_set_words(&self, set: u32) -> Option<&[rkyv::rend::u64_le]> {
        let words = self.words_per_set.to_native() as usize;
        let s = (set as usize).checked_mul(words)?;
        self.day_sets.get(s..s.checked_add(words)?)
    }

    pub fn carrier_id(&self, code: &[u8; 3]) -> Option<CarrierId> {
        self.carriers
            .binary_search(code)
            .ok()
            .map(|i| i as CarrierId)
    }

    /// Flights of one carrier and flight number (all suffixes and variations): `flights`
    /// is sorted by (carrier, number, ...), so this is a binary search.
    pub fn flights_of(&self, carrier: CarrierId, number: u16) -> std::ops::Range<usize> {
        let key = (carrier, number);
        let lo = self
            .flights
            .partition_point(|f| (f.carrier.to_native(), f.number.to_native()) < key);
        let hi = self
            .flights
            .partition_point(|f| (f.carrier.to_native(), f.number.to_native()) <= key);
        lo..hi
    }

    /// The dated leg of `carrier` `number` departing `origin` on local date `date`:
    /// (flight index, leg index, base-day index). The first match in flight order wins.
    pub fn find_leg(
        &self,
        carrier: CarrierId,
        number: u16,
        origin: AirportId,
        date: i32,
    ) -> Option<(u32, u8, u16)> {
        let first_day = self.first_day.to_native();
        for fi in self.flights_of(carrier, number) {
            let f = &self.flights[fi];
            for (li, leg) in self.flight_legs(f).iter().enumerate() {
                if leg.dep.to_native() != origin {
                    continue;
                }
                let local = leg.dep_utc_min.to_native() + i32::from(leg.dep_offset_min.to_native());
                let day =
                    i64::from(date) - i64::from(local.div_euclid(1440)) - i64::from(first_day);
                if self.operates(f.day_set.to_native(), day) {
                    return Some((fi as u32, li as u8, day as u16));
                }
            }
        }
        None
    }

    /// Number of base dates a day set operates.
    pub fn set_count(&self, set: u32) -> u64 {
        let words = self.words_per_set.to_native() as usize;
        let s = set as usize * words;
        self.day_sets
            .get(s..s + words)
            .map(|w| {
                w.iter()
                    .map(|x| u64::from(x.to_native().count_ones()))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// The lowest and highest set bit of the bit set in words `word(0..n)` (bit `i` is bit
/// `i % 64` of word `i / 64`), `None` when no bit is set.
pub fn bit_span(n: usize, word: impl Fn(usize) -> u64) -> Option<(u32, u32)> {
    let first = (0..n).find(|&i| word(i) != 0)?;
    let last = (0..n).rev().find(|&i| word(i) != 0)?;
    let lo = first * 64 + word(first).trailing_zeros() as usize;
    let hi = last * 64 + 63 - word(last).leading_zeros() as usize;
    debug_assert!(lo <= hi);
    Some((u32::try_from(lo).ok()?, u32::try_from(hi).ok()?))
}

/// For the bit set in words `word(0..n)` over consecutive days (bit `i` = day `i`, day 0
/// on weekday `weekday0`, 0 = Monday): the mask of weekdays it operates on (bit 0 =
/// Monday) when it operates on exactly the days between its first and last set bit whose
/// weekday is in that mask; `None` when it does not, or has no bit set.
pub fn weekly_pattern(n: usize, word: impl Fn(usize) -> u64, weekday0: u32) -> Option<u8> {
    let (lo, hi) = bit_span(n, &word)?;
    let (lo, hi) = (lo as usize, hi as usize);
    let wd = |day: usize| ((weekday0 as usize + day) % 7) as u32;
    let mask = (lo..=hi.min(lo + 6))
        .filter(|&d| (word(d / 64) >> (d % 64)) & 1 == 1)
        .fold(0u8, |m, d| m | 1 << wd(d));
    // `by_residue[r]`: the bits `j` of a word with `j % 7 == r`.
    let mut by_residue = [0u64; 7];
    for j in 0..64 {
        by_residue[j % 7] |= 1 << j;
    }
    for i in lo / 64..=hi / 64 {
        let mut expected = 0u64;
        for k in 0..7u32 {
            if mask >> k & 1 == 1 {
                // Day `64 i + j` is on weekday k when j = k - weekday0 - 64 i (mod 7).
                let r = (i64::from(k) - i64::from(weekday0) - 64 * i as i64).rem_euclid(7);
                expected |= by_residue[r as usize];
            }
        }
        let from = (i * 64).max(lo) - i * 64;
        let to = (i * 64 + 63).min(hi) - i * 64;
        let span = (u64::MAX >> (63 - to)) & (u64::MAX << from);
        if expected & span != word(i) {
            return None;
        }
    }
    Some(mask)
}

impl ArchivedPlaces {
    pub fn airport_id(&self, iata: &[u8; 3]) -> Option<AirportId> {
        self.airports
            .binary_search_by(|a| a.iata.cmp(iata))
            .ok()
            .map(|i| i as AirportId)
    }

    pub fn metro(&self, code: &[u8; 3]) -> Option<&ArchivedMetro> {
        self.metros
            .binary_search_by(|m| m.code.cmp(code))
            .ok()
            .and_then(|i| self.metros.get(i))
    }
}

impl ArchivedFares {
    /// Fares of one market, sorted by (passenger_type, cabin, booking_class, amount).
    pub fn market(
        &self,
        carrier: CarrierId,
        origin: AirportId,
        dest: AirportId,
    ) -> &[ArchivedFare] {
        let key = market_key(carrier, origin, dest);
        match self
            .market_keys
            .binary_search_by(|k| k.to_native().cmp(&key))
        {
            Ok(i) => {
                let s = self.market_starts.get(i).map(|v| v.to_native() as usize);
                let e = self
                    .market_starts
                    .get(i + 1)
                    .map(|v| v.to_native() as usize);
                match (s, e) {
                    (Some(s), Some(e)) => self.fares.get(s..e).unwrap_or(&[]),
                    _ => &[],
                }
            }
            Err(_) => &[],
        }
    }

    pub fn text(&self, r: &ArchivedTextRef) -> &str {
        let start = r.start.to_native() as usize;
        let end = start + r.len.to_native() as usize;
        self.text.get(start..end).unwrap_or("")
    }
}

impl ArchivedAvailability {
    /// Seats left, `None` when the class has no row (closed).
    pub fn seats(&self, flight: u32, leg: u8, day_index: u16, class: u8) -> Option<u16> {
        let key = avail_key(flight, leg, day_index, class);
        self.keys
            .binary_search_by(|k| k.to_native().cmp(&key))
            .ok()
            .and_then(|i| self.seats.get(i))
            .map(|s| s.to_native())
    }
}

/// The per-origin segment and market indexes of a `Network`, built from (origin, segment)
/// pairs in any order. Returns (seg_offsets, segments, market_offsets, markets).
pub fn segment_index(
    n_airports: usize,
    mut segs: Vec<(AirportId, SegmentRef)>,
) -> (Vec<u32>, Vec<SegmentRef>, Vec<u32>, Vec<Market>) {
    segs.sort_unstable_by_key(|(origin, s)| {
        (*origin, s.dest, s.dep_local_min, s.flight, s.from_leg)
    });
    let mut seg_offsets = vec![0u32; n_airports + 1];
    let mut market_offsets = vec![0u32; n_airports + 1];
    let mut segments = Vec::with_capacity(segs.len());
    let mut markets: Vec<Market> = Vec::new();
    let mut i = 0;
    for a in 0..n_airports {
        seg_offsets[a] = segments.len() as u32;
        market_offsets[a] = markets.len() as u32;
        while i < segs.len() && segs[i].0 as usize == a {
            let dest = segs[i].1.dest;
            let start = segments.len() as u32;
            while i < segs.len() && segs[i].0 as usize == a && segs[i].1.dest == dest {
                segments.push(segs[i].1);
                i += 1;
            }
            markets.push(Market {
                dest,
                start,
                end: segments.len() as u32,
            });
        }
    }
    seg_offsets[n_airports] = segments.len() as u32;
    market_offsets[n_airports] = markets.len() as u32;
    debug_assert_eq!(
        segments.len(),
        i,
        "segments from unknown origins were dropped"
    );
    (seg_offsets, segments, market_offsets, markets)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{bit_span, weekly_pattern};

    /// The bit set of the days in `lo..=hi` whose weekday (day 0 on `wd0`) is in `mask`.
    fn pattern(words: usize, lo: usize, hi: usize, mask: u8, wd0: usize) -> Vec<u64> {
        let mut w = vec![0u64; words];
        for d in lo..=hi {
            if mask >> ((wd0 + d) % 7) & 1 == 1 {
                w[d / 64] |= 1 << (d % 64);
            }
        }
        w
    }

    #[test]
    fn weekly_pattern_recognises_periods_with_days_of_operation() {
        for wd0 in 0..7 {
            for &(lo, hi) in &[(0, 0), (0, 363), (5, 70), (63, 64), (100, 127), (130, 200)] {
                for &mask in &[0b111_1111u8, 0b001_0101, 0b100_0000, 0b000_0001, 0b011_0110] {
                    let w = pattern(6, lo, hi, mask, wd0);
                    let got = weekly_pattern(w.len(), |i| w[i], wd0 as u32);
                    if w.iter().all(|&x| x == 0) {
                        assert_eq!(got, None);
                        continue;
                    }
                    // A short span shows only the weekdays it contains.
                    let seen = (lo..=hi.min(lo + 6))
                        .filter(|d| mask >> ((wd0 + d) % 7) & 1 == 1)
                        .fold(0u8, |m, d| m | 1 << ((wd0 + d) % 7));
                    assert_eq!(
                        got,
                        Some(seen),
                        "wd0 {wd0} span {lo}..={hi} mask {mask:07b}"
                    );
                }
            }
        }
    }

    #[test]
    fn weekly_pattern_refuses_a_period_with_an_exception() {
        let mut w = pattern(6, 10, 300, 0b001_0101, 2);
        // Drop one operating day in the middle (a cancelled date).
        let d = (150..160).find(|d| w[d / 64] >> (d % 64) & 1 == 1).unwrap();
        w[d / 64] &= !(1 << (d % 64));
        assert_eq!(weekly_pattern(w.len(), |i| w[i], 2), None);
        // Add a day of another weekday (an extra date).
        let mut w = pattern(6, 10, 300, 0b001_0101, 2);
        let d = (150..160).find(|d| w[d / 64] >> (d % 64) & 1 == 0).unwrap();
        w[d / 64] |= 1 << (d % 64);
        assert_eq!(weekly_pattern(w.len(), |i| w[i], 2), None);
    }

    #[test]
    fn bit_span_finds_the_lowest_and_highest_set_bit_across_words() {
        assert_eq!(bit_span(0, |_| 0), None);
        assert_eq!(bit_span(3, |_| 0), None);
        assert_eq!(bit_span(1, |_| 1), Some((0, 0)));
        assert_eq!(bit_span(1, |_| 1 << 63), Some((63, 63)));
        let w = [0u64, 0b1010_0000, 0, 1 << 2, 0];
        assert_eq!(bit_span(w.len(), |i| w[i]), Some((64 + 5, 3 * 64 + 2)));
        let w = [u64::MAX, u64::MAX];
        assert_eq!(bit_span(w.len(), |i| w[i]), Some((0, 127)));
    }
}
