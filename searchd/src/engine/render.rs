//! JSON shapes of the contract (section 4): itineraries, slices, segments, fares.
//!
//! The shapes are `Serialize` views borrowing the snapshot (strings as `&str`, dates, times,
//! flight numbers and amounts formatted into small stack buffers), so a response is written
//! straight to bytes without a `serde_json::Value` tree. Object keys are emitted in
//! alphabetical order, the order a `Value` object (a `BTreeMap`) serialises in, so the bytes
//! are the same as rendering through `Value` and serialising it.

use std::borrow::Cow;

use format::date::civil_from_days;
use format::model::{carrier_str, AirportId, CABINS};
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Map;
#[cfg(test)]
use serde_json::Value;

use super::search::Itinerary;
use super::{offer_id, Ctx, DatedSeg, Slice};
use crate::api::currency_decimals;

/// The IATA code of an airport, borrowed from the snapshot ("" when out of range).
fn iata_str<'a>(ctx: &Ctx<'a>, a: AirportId) -> Cow<'a, str> {
    ctx.places
        .airports
        .get(a as usize)
        .map(|p| String::from_utf8_lossy(&p.iata))
        .unwrap_or(Cow::Borrowed(""))
}

/// A short ASCII string formatted into a stack buffer.
#[derive(Clone, Copy)]
pub(crate) struct Buf<const N: usize> {
    b: [u8; N],
    len: u8,
}

impl<const N: usize> Buf<N> {
    fn new() -> Self {
        Buf { b: [0; N], len: 0 }
    }
    fn push(&mut self, c: u8) {
        self.b[self.len as usize] = c;
        self.len += 1;
    }
    /// `v` in decimal, left-padded with zeros to `width` digits.
    fn num(&mut self, mut v: u64, width: usize) {
        let mut tmp = [b'0'; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let start = i.min(tmp.len().saturating_sub(width));
        for &c in &tmp[start..] {
            self.push(c);
        }
    }
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.b[..self.len as usize]).unwrap_or("")
    }
}

impl<const N: usize> Serialize for Buf<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `YYYY-MM-DD` (as `format::date::format_iso`), else the owned fallback for years outside
/// 0..=9999.
pub(crate) enum Stamp {
    Buf(Buf<24>),
    Owned(String),
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Stamp::Buf(b) => b.serialize(s),
            Stamp::Owned(o) => s.serialize_str(o),
        }
    }
}

fn date_into(days: i32) -> Option<Buf<24>> {
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut b = Buf::new();
    b.num(y as u64, 4);
    b.push(b'-');
    b.num(u64::from(m), 2);
    b.push(b'-');
    b.num(u64::from(d), 2);
    Some(b)
}

/// `format::date::format_iso` without allocating.
pub(crate) fn iso_date(days: i32) -> Stamp {
    match date_into(days) {
        Some(b) => Stamp::Buf(b),
        None => Stamp::Owned(format::date::format_iso(days)),
    }
}

/// `format_local_minutes` (`utc == false`) or `format_utc_minutes` without allocating.
fn minutes(minutes: i64, utc: bool) -> Stamp {
    let days = minutes.div_euclid(1440);
    let mod_min = minutes.rem_euclid(1440) as u64;
    match i32::try_from(days).ok().and_then(date_into) {
        Some(mut b) => {
            b.push(b'T');
            b.num(mod_min / 60, 2);
            b.push(b':');
            b.num(mod_min % 60, 2);
            if utc {
                b.extend(b":00Z");
            }
            Stamp::Buf(b)
        }
        None if utc => Stamp::Owned(format::date::format_utc_minutes(minutes)),
        None => Stamp::Owned(format::date::format_local_minutes(minutes)),
    }
}

impl<const N: usize> Buf<N> {
    fn extend(&mut self, s: &[u8]) {
        for &c in s {
            self.push(c);
        }
    }
}

fn flight_number(number: u16, suffix: u8) -> Buf<8> {
    let mut b = Buf::new();
    b.num(u64::from(number), 1);
    if suffix.is_ascii_alphabetic() {
        b.push(suffix);
    }
    b
}

/// A money amount as `crate::api::Money` writes it, without allocating.
pub(crate) fn amount(minor: i64, cur: &[u8; 3]) -> Buf<32> {
    let d = currency_decimals(cur);
    let mut b = Buf::new();
    if d == 0 {
        if minor < 0 {
            b.push(b'-');
        }
        b.num(minor.unsigned_abs(), 1);
        return b;
    }
    let scale = 10u64.pow(d);
    let abs = minor.unsigned_abs();
    if minor < 0 {
        b.push(b'-');
    }
    b.num(abs / scale, 1);
    b.push(b'.');
    b.num(abs % scale, d as usize);
    b
}

/// The contract's money object.
#[derive(Serialize)]
pub(crate) struct MoneyJson<'a> {
    amount: Buf<32>,
    currency: Cow<'a, str>,
}

pub(crate) fn money_json(minor: i64, cur: &[u8; 3]) -> MoneyJson<'_> {
    MoneyJson {
        amount: amount(minor, cur),
        currency: String::from_utf8_lossy(cur),
    }
}

/// The intermediate stops of a segment (every leg's arrival but the last).
struct Stops<'c, 'a> {
    ctx: &'c Ctx<'a>,
    legs: &'a [format::model::ArchivedLeg],
}

impl Serialize for Stops<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.legs.len().saturating_sub(1);
        let mut seq = s.serialize_seq(Some(n))?;
        for l in &self.legs[..n] {
            seq.serialize_element(&iata_str(self.ctx, l.arr.to_native()))?;
        }
        seq.end()
    }
}

/// Keys in alphabetical order (see the module doc).
#[derive(Serialize)]
struct SegmentJson<'c, 'a> {
    aircraft: Cow<'a, str>,
    arrival_local: Stamp,
    arrival_utc: Stamp,
    carrier: &'a str,
    departure_local: Stamp,
    departure_utc: Stamp,
    destination: Cow<'a, str>,
    flight_number: Option<Buf<8>>,
    origin: Cow<'a, str>,
    stops: Stops<'c, 'a>,
}

fn segment<'c, 'a>(ctx: &'c Ctx<'a>, s: &DatedSeg) -> SegmentJson<'c, 'a> {
    let net = ctx.net;
    let fl = net.flights.get(s.flight as usize);
    let legs = ctx.seg_legs(s);
    let aircraft = match legs.first().map(|l| String::from_utf8_lossy(&l.aircraft)) {
        Some(Cow::Borrowed(a)) => Cow::Borrowed(a.trim()),
        Some(Cow::Owned(a)) => Cow::Owned(a.trim().to_string()),
        None => Cow::Borrowed(""),
    };
    SegmentJson {
        aircraft,
        arrival_local: minutes(s.arr_local, false),
        arrival_utc: minutes(s.arr_utc, true),
        carrier: net
            .carriers
            .get(s.carrier as usize)
            .map(carrier_str)
            .unwrap_or(""),
        departure_local: minutes(s.dep_local, false),
        departure_utc: minutes(s.dep_utc, true),
        destination: iata_str(ctx, s.dest),
        flight_number: fl.map(|f| flight_number(f.number.to_native(), f.suffix)),
        origin: iata_str(ctx, s.origin),
        stops: Stops { ctx, legs },
    }
}

struct Segments<'c, 'a> {
    ctx: &'c Ctx<'a>,
    segs: &'c [DatedSeg],
}

impl Serialize for Segments<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.segs.iter().map(|g| segment(self.ctx, g)))
    }
}

#[derive(Serialize)]
struct SliceJson<'c, 'a> {
    arrival_local: Stamp,
    departure_local: Stamp,
    destination: Cow<'a, str>,
    duration_minutes: i64,
    origin: Cow<'a, str>,
    segments: Segments<'c, 'a>,
}

/// A slice; an empty object for a slice without segments.
struct SliceView<'c, 'a> {
    ctx: &'c Ctx<'a>,
    sl: &'c Slice,
}

impl Serialize for SliceView<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (ctx, sl) = (self.ctx, self.sl);
        let segs = sl.segs();
        let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
            return Map::new().serialize(s);
        };
        SliceJson {
            arrival_local: minutes(last.arr_local, false),
            departure_local: minutes(first.dep_local, false),
            destination: iata_str(ctx, last.dest),
            duration_minutes: sl.duration(),
            origin: iata_str(ctx, first.origin),
            segments: Segments { ctx, segs },
        }
        .serialize(s)
    }
}

struct Slices<'c, 'a> {
    ctx: &'c Ctx<'a>,
    it: &'c Itinerary,
}

impl Serialize for Slices<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.it
                .slices()
                .iter()
                .map(|sl| SliceView { ctx: self.ctx, sl }),
        )
    }
}

/// A fare's booking class: one character, or "" without a fare.
struct BookingClass(Option<u8>);

impl Serialize for BookingClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(c) => s.serialize_char(c as char),
            None => s.serialize_str(""),
        }
    }
}

struct FareSegments(u8, u8);

impl Serialize for FareSegments {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0..=self.1)
    }
}

#[derive(Serialize)]
struct FareJson<'a> {
    booking_class: BookingClass,
    cabin: &'a str,
    fare_basis: &'a str,
    segments: FareSegments,
}

struct Fares<'c, 'a> {
    ctx: &'c Ctx<'a>,
    it: &'c Itinerary,
}

impl Serialize for Fares<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ctx = self.ctx;
        let comps = self.it.price.as_ref().map(|p| p.comps()).unwrap_or(&[]);
        s.collect_seq(comps.iter().map(|c| {
            let f = ctx.fares.fares.get(c.adt as usize);
            FareJson {
                booking_class: BookingClass(f.map(|f| f.booking_class)),
                cabin: f
                    .and_then(|f| CABINS.get(f.cabin as usize))
                    .copied()
                    .unwrap_or(""),
                fare_basis: f.map(|f| ctx.fares.text(&f.basis)).unwrap_or(""),
                segments: FareSegments(c.from, c.to),
            }
        }))
    }
}

/// The contract's itinerary object (with its offer id), keys in alphabetical order.
#[derive(Serialize)]
pub(crate) struct ItineraryJson<'c, 'a> {
    fares: Fares<'c, 'a>,
    id: String,
    price: Option<MoneyJson<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price_changed: Option<bool>,
    seats_available: Option<u16>,
    slices: Slices<'c, 'a>,
}

/// The contract's itinerary object (with its offer id), as a `Serialize` view.
pub(crate) fn itinerary_json<'c, 'a>(
    ctx: &'c Ctx<'a>,
    it: &'c Itinerary,
    price_changed: Option<bool>,
) -> ItineraryJson<'c, 'a> {
    ItineraryJson {
        fares: Fares { ctx, it },
        id: offer_id::encode(ctx, it),
        price: it.price.as_ref().map(|p| money_json(p.total, &p.cur)),
        price_changed,
        seats_available: it.price.as_ref().map(|p| p.seats),
        slices: Slices { ctx, it },
    }
}

/// A list of itineraries, serialised one by one.
pub(crate) struct Itineraries<'c, 'a> {
    pub ctx: &'c Ctx<'a>,
    pub items: &'c [Itinerary],
}

impl Serialize for Itineraries<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for it in self.items {
            seq.serialize_element(&itinerary_json(self.ctx, it, None))?;
        }
        seq.end()
    }
}

/// The offer id of an itinerary found with the context's party and cabin.
pub(crate) fn offer_id_of(ctx: &Ctx<'_>, it: &Itinerary) -> String {
    offer_id::encode(ctx, it)
}

/// JSON written straight to bytes, as `serde_json`'s compact serialiser writes the views
/// above (the same bytes: keys in the same order, strings escaped the same way), but without
/// going through `Serializer`: strings the renderer makes itself (dates, times, amounts,
/// offer ids) are known to need no escaping, and snapshot strings are checked once instead
/// of escaped byte by byte. This is what the server sends; the views remain for `Value`s.
pub(crate) struct JsonOut<'o> {
    pub(crate) buf: &'o mut Vec<u8>,
    /// Dates formatted so far (days, `YYYY-MM-DD`), by `days % 8`: a response's times fall
    /// on a few consecutive dates, local and UTC.
    days: [(i32, [u8; 10]); 8],
    /// Segments written so far (see [`seg_key`]) and where their JSON is in `buf`, by
    /// hash: the itineraries of one answer share many segments (a hub's few departures
    /// appear in most of them), and copying a segment's bytes is cheaper than formatting
    /// its four times again.
    segs: [(u64, u32, u32); SEG_SLOTS],
}

/// Slots of [`JsonOut::segs`].
const SEG_SLOT_BITS: u32 = 6;
const SEG_SLOTS: usize = 1 << SEG_SLOT_BITS;

/// What identifies a dated segment's JSON: its flight, legs and base day (the rest is
/// derived from them).
fn seg_key(s: &DatedSeg) -> u64 {
    u64::from(s.flight) << 32
        | u64::from(s.from_leg) << 24
        | u64::from(s.to_leg) << 16
        | u64::from(s.day)
}

/// `"00"` to `"99"`.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// ASCII bytes without the leading and trailing bytes `str::trim` removes (ASCII
/// `White_Space`: tab, line feed, vertical tab, form feed, carriage return, space).
fn trim_ws(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b'\t'..=b'\r' | b' ');
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Whether serde_json writes `s` between quotes unchanged.
fn plain(s: &[u8]) -> bool {
    s.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\')
}

impl<'o> JsonOut<'o> {
    pub(crate) fn new(buf: &'o mut Vec<u8>) -> Self {
        // No date maps to slot 0 with `i32::MIN` days (`i32::MIN % 8 == 0` is not a real
        // entry: `ymd` checks the whole key).
        JsonOut {
            buf,
            days: [(i32::MIN, [0; 10]); 8],
            segs: [(0, 0, 0); SEG_SLOTS],
        }
    }

    fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A string, escaped as serde_json escapes it.
    fn str(&mut self, s: &str) {
        if plain(s.as_bytes()) {
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        } else if serde_json::to_writer(&mut *self.buf, s).is_err() {
            // Writing into a `Vec` cannot fail; keep the document valid regardless.
            self.buf.extend_from_slice(b"\"\"");
        }
    }

    /// Bytes that `String::from_utf8_lossy` would turn into a string (codes from the
    /// snapshot: IATA, currency).
    fn lossy(&mut self, b: &[u8]) {
        if b.is_ascii() {
            // ASCII is UTF-8: no validation call for three-letter codes.
            self.ascii(b);
        } else {
            self.str(&String::from_utf8_lossy(b));
        }
    }

    /// ASCII bytes as a string (escaped if needed).
    fn ascii(&mut self, b: &[u8]) {
        debug_assert!(b.is_ascii());
        if plain(b) {
            self.buf.push(b'"');
            self.buf.extend_from_slice(b);
            self.buf.push(b'"');
        } else {
            self.str(std::str::from_utf8(b).unwrap_or(""));
        }
    }

    fn u64(&mut self, mut v: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&tmp[i..]);
    }

    fn i64(&mut self, v: i64) {
        if v < 0 {
            self.buf.push(b'-');
        }
        self.u64(v.unsigned_abs());
    }

    /// `YYYY-MM-DD` of `days` (no quotes), or `None` for years outside 0..=9999.
    fn ymd(&mut self, days: i32) -> Option<[u8; 10]> {
        let slot = (days & 7) as usize;
        let (d, b) = self.days[slot];
        if d == days && days != i32::MIN {
            return Some(b);
        }
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            return None;
        }
        let y = y as usize;
        let mut b = [b'-'; 10];
        b[0..2].copy_from_slice(&PAIRS[(y / 100) * 2..(y / 100) * 2 + 2]);
        b[2..4].copy_from_slice(&PAIRS[(y % 100) * 2..(y % 100) * 2 + 2]);
        let (m, d) = (m as usize % 100, d as usize % 100);
        b[5..7].copy_from_slice(&PAIRS[m * 2..m * 2 + 2]);
        b[8..10].copy_from_slice(&PAIRS[d * 2..d * 2 + 2]);
        self.days[slot] = (days, b);
        Some(b)
    }

    /// What [`minutes`] serialises to.
    fn minutes(&mut self, minutes: i64, utc: bool) {
        let days = minutes.div_euclid(1440);
        let mod_min = minutes.rem_euclid(1440) as usize;
        match i32::try_from(days).ok().and_then(|d| self.ymd(d)) {
            Some(ymd) => {
                // `"YYYY-MM-DDTHH:MM"` or `"YYYY-MM-DDTHH:MM:00Z"`, copied once.
                let mut t = *b"\"YYYY-MM-DDTHH:MM:00Z\"";
                t[1..11].copy_from_slice(&ymd);
                let (h, m) = (mod_min / 60 * 2, mod_min % 60 * 2);
                t[12..14].copy_from_slice(&PAIRS[h..h + 2]);
                t[15..17].copy_from_slice(&PAIRS[m..m + 2]);
                if utc {
                    self.buf.extend_from_slice(&t);
                } else {
                    t[17] = b'"';
                    self.buf.extend_from_slice(&t[..18]);
                }
            }
            None if utc => self.str(&format::date::format_utc_minutes(minutes)),
            None => self.str(&format::date::format_local_minutes(minutes)),
        }
    }

    /// A value formatted into a [`Buf`] (ASCII digits, signs and letters: no escaping).
    fn buf<const N: usize>(&mut self, b: &Buf<N>) {
        self.str(b.as_str());
    }

    /// What [`MoneyJson`] serialises to.
    pub(crate) fn money(&mut self, minor: i64, cur: &[u8; 3]) {
        self.raw(b"{\"amount\":");
        self.buf(&amount(minor, cur));
        self.raw(b",\"currency\":");
        self.lossy(cur);
        self.buf.push(b'}');
    }

    fn iata(&mut self, ctx: &Ctx<'_>, a: AirportId) {
        match ctx.places.airports.get(a as usize) {
            Some(p) => self.lossy(&p.iata),
            None => self.raw(b"\"\""),
        }
    }

    /// What [`SegmentJson`] serialises to (copied from earlier in the document when the
    /// same segment was written before).
    fn segment(&mut self, ctx: &Ctx<'_>, s: &DatedSeg) {
        let key = seg_key(s);
        let slot = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SEG_SLOT_BITS)) as usize;
        let (k, start, end) = self.segs[slot];
        // An empty slot has `start == end`; a segment's JSON is never empty.
        if k == key && start < end && (end as usize) <= self.buf.len() {
            self.buf.extend_from_within(start as usize..end as usize);
            return;
        }
        let start = self.buf.len();
        self.segment_fresh(ctx, s);
        if let (Ok(a), Ok(b)) = (u32::try_from(start), u32::try_from(self.buf.len())) {
            self.segs[slot] = (key, a, b);
        }
    }

    fn segment_fresh(&mut self, ctx: &Ctx<'_>, s: &DatedSeg) {
        let net = ctx.net;
        let fl = net.flights.get(s.flight as usize);
        let legs = ctx.seg_legs(s);
        self.raw(b"{\"aircraft\":");
        match legs.first() {
            Some(l) if l.aircraft.is_ascii() => self.ascii(trim_ws(&l.aircraft)),
            Some(l) => self.str(String::from_utf8_lossy(&l.aircraft).trim()),
            None => self.raw(b"\"\""),
        }
        self.raw(b",\"arrival_local\":");
        self.minutes(s.arr_local, false);
        self.raw(b",\"arrival_utc\":");
        self.minutes(s.arr_utc, true);
        self.raw(b",\"carrier\":");
        self.str(
            net.carriers
                .get(s.carrier as usize)
                .map(carrier_str)
                .unwrap_or(""),
        );
        self.raw(b",\"departure_local\":");
        self.minutes(s.dep_local, false);
        self.raw(b",\"departure_utc\":");
        self.minutes(s.dep_utc, true);
        self.raw(b",\"destination\":");
        self.iata(ctx, s.dest);
        self.raw(b",\"flight_number\":");
        match fl {
            Some(f) => self.buf(&flight_number(f.number.to_native(), f.suffix)),
            None => self.raw(b"null"),
        }
        self.raw(b",\"origin\":");
        self.iata(ctx, s.origin);
        self.raw(b",\"stops\":[");
        let n = legs.len().saturating_sub(1);
        for (i, l) in legs[..n].iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.iata(ctx, l.arr.to_native());
        }
        self.raw(b"]}");
    }

    /// What [`SliceView`] serialises to.
    fn slice(&mut self, ctx: &Ctx<'_>, sl: &Slice) {
        let segs = sl.segs();
        let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
            self.raw(b"{}");
            return;
        };
        self.raw(b"{\"arrival_local\":");
        self.minutes(last.arr_local, false);
        self.raw(b",\"departure_local\":");
        self.minutes(first.dep_local, false);
        self.raw(b",\"destination\":");
        self.iata(ctx, last.dest);
        self.raw(b",\"duration_minutes\":");
        self.i64(sl.duration());
        self.raw(b",\"origin\":");
        self.iata(ctx, first.origin);
        self.raw(b",\"segments\":[");
        for (i, g) in segs.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.segment(ctx, g);
        }
        self.raw(b"]}");
    }

    /// What [`ItineraryJson`] serialises to.
    pub(crate) fn itinerary(&mut self, ctx: &Ctx<'_>, it: &Itinerary, price_changed: Option<bool>) {
        // One growth check per itinerary instead of a reallocation in the middle of one
        // (a 3-segment round trip is about 2.5 KB).
        self.buf.reserve(3072);
        self.raw(b"{\"fares\":[");
        let comps = it.price.as_ref().map(|p| p.comps()).unwrap_or(&[]);
        for (i, c) in comps.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            let f = ctx.fares.fares.get(c.adt as usize);
            self.raw(b"{\"booking_class\":");
            match f.map(|f| f.booking_class) {
                Some(c) => {
                    let mut tmp = [0u8; 4];
                    self.str((c as char).encode_utf8(&mut tmp));
                }
                None => self.raw(b"\"\""),
            }
            self.raw(b",\"cabin\":");
            self.str(
                f.and_then(|f| CABINS.get(f.cabin as usize))
                    .copied()
                    .unwrap_or(""),
            );
            self.raw(b",\"fare_basis\":");
            self.str(f.map(|f| ctx.fares.text(&f.basis)).unwrap_or(""));
            self.raw(b",\"segments\":[");
            for (k, n) in (c.from..=c.to).enumerate() {
                if k > 0 {
                    self.buf.push(b',');
                }
                self.u64(u64::from(n));
            }
            self.raw(b"]}");
        }
        self.raw(b"],\"id\":\"");
        offer_id::encode_into(ctx, it, self.buf);
        self.raw(b"\",\"price\":");
        match &it.price {
            Some(p) => self.money(p.total, &p.cur),
            None => self.raw(b"null"),
        }
        if let Some(changed) = price_changed {
            self.raw(if changed {
                b",\"price_changed\":true"
            } else {
                b",\"price_changed\":false"
            });
        }
        self.raw(b",\"seats_available\":");
        match &it.price {
            Some(p) => self.u64(u64::from(p.seats)),
            None => self.raw(b"null"),
        }
        self.raw(b",\"slices\":[");
        for (i, sl) in it.slices().iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.slice(ctx, sl);
        }
        self.raw(b"]}");
    }
}

impl ItineraryJson<'_, '_> {
    /// The JSON bytes of this view (what `serde_json::to_vec` gives, faster).
    pub(crate) fn to_json_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(1536);
        JsonOut::new(&mut buf).itinerary(self.fares.ctx, self.fares.it, self.price_changed);
        buf
    }
}

impl Itineraries<'_, '_> {
    /// `{"itineraries":[...]}`: the `data` of a search response as JSON bytes (what
    /// `serde_json::to_vec` of the search's `data` view gives, faster).
    pub(crate) fn search_data_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(32 + 1280 * self.items.len());
        let mut out = JsonOut::new(&mut buf);
        out.raw(b"{\"itineraries\":[");
        for (i, it) in self.items.iter().enumerate() {
            if i > 0 {
                out.buf.push(b',');
            }
            out.itinerary(self.ctx, it, None);
        }
        out.raw(b"]}");
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Money;

    fn v<T: Serialize>(t: T) -> Value {
        serde_json::to_value(t).unwrap_or(Value::Null)
    }

    #[test]
    fn buffers_match_the_allocating_formatters() {
        for m in [
            -1_000_000i64,
            -1,
            0,
            59,
            1439,
            1440,
            29_000_000,
            29_586_245,
            i64::from(i32::MAX) * 1440 / 4000,
        ] {
            assert_eq!(
                v(minutes(m, false)),
                Value::String(format::date::format_local_minutes(m)),
                "{m}"
            );
            assert_eq!(
                v(minutes(m, true)),
                Value::String(format::date::format_utc_minutes(m)),
                "{m}"
            );
        }
        for d in [-800_000, -1, 0, 20_000, 2_932_896, 2_932_897] {
            assert_eq!(v(iso_date(d)), Value::String(format::date::format_iso(d)));
        }
        for (n, s, want) in [(0, 0, "0"), (12, b'A', "12A"), (65535, b' ', "65535")] {
            assert_eq!(flight_number(n, s).as_str(), want);
        }
        for minor in [0i64, 1, -1, 5, 99, 100, 12_345, -12_345, i64::MAX, i64::MIN] {
            for cur in [b"EUR", b"JPY", b"KWD"] {
                let m = Money::from_minor(minor, cur);
                let got = money_json(minor, cur);
                assert_eq!(got.amount.as_str(), m.amount, "{minor} {cur:?}");
                assert_eq!(v(&got), v(&m));
            }
        }
    }

    #[test]
    fn the_byte_writer_matches_serde_for_times_and_codes() {
        let mut buf = Vec::new();
        let mut out = JsonOut::new(&mut buf);
        // Days hitting the same cache slot alternately, out-of-range years, negatives.
        let mut ms: Vec<i64> = vec![
            -1_000_000,
            -1,
            0,
            59,
            1439,
            1440,
            i64::MIN / 2,
            i64::MAX / 2,
        ];
        for d in [
            20_000i64, 20_008, 20_000, 20_016, 20_001, 2_932_896, 2_932_897, -719_468,
        ] {
            for m in [0, 1, 61, 719, 1439] {
                ms.push(d * 1440 + m);
            }
        }
        for m in ms {
            for utc in [false, true] {
                out.buf.clear();
                out.minutes(m, utc);
                let want = serde_json::to_vec(&minutes(m, utc)).unwrap_or_default();
                assert_eq!(
                    String::from_utf8_lossy(out.buf),
                    String::from_utf8_lossy(&want),
                    "{m} utc {utc}"
                );
            }
        }
        for code in [
            &b"AB "[..],
            b" A\x0b",
            b"\t\n",
            b"   ",
            b"",
            b"A\"B",
            b"x\\",
            b"\x01ZZ",
        ] {
            let s = std::str::from_utf8(code).unwrap_or("");
            assert_eq!(trim_ws(code), s.trim().as_bytes(), "{code:?}");
            out.buf.clear();
            out.lossy(code);
            let want = serde_json::to_vec(&String::from_utf8_lossy(code)).unwrap_or_default();
            assert_eq!(out.buf.as_slice(), want.as_slice(), "{code:?}");
        }
        out.buf.clear();
        out.lossy(&[b'A', 0xff, b'B']);
        assert_eq!(out.buf.as_slice(), "\"A\u{fffd}B\"".as_bytes());
    }
}
