//! Offer ids: self-contained, stable across snapshot reloads, checksummed.
//!
//! Layout (bytes, then lowercase hex; at most 105 bytes = 210 characters):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version (1) |
//! | 3 | adults, children, infants |
//! | 1 | cabin index (`CABINS`), 255 = any |
//! | 1 | number of slices (1-2) |
//! | per slice: 1 | number of segments (1-3) |
//! | per segment: 13 | carrier (3, space padded), flight number (2, BE), suffix (1, 0 = none), origin IATA (3), local departure date (2, BE, days since 1970-01-01), first and last leg sequence numbers (1 + 1) |
//! | 3 + 8 | quoted price: currency (zeros = unpriced) and amount in minor units (i64 BE) |
//! | 8 | xxh3-64 of everything before (BE) |
//!
//! Nothing refers to positions inside a snapshot, so an id survives reloads as long as its
//! flights operate. The checksum catches typing and truncation errors; it is not a secret
//! and needs none: offers are always re-priced against the live state (a forged id can only
//! name real flights and gets today's price). Because the encoding is big-endian and hex
//! preserves byte order, comparing ids as strings compares their slices' segments in order.

use format::model::{AirportId, CABINS};
use format::Snapshot;

use super::paths::dated;
use super::{Ctx, DatedSeg, Itinerary};
use crate::api::ApiError;

pub const VERSION: u8 = 1;
const SEG_BYTES: usize = 13;
const MAX_ID_CHARS: usize = 256;

/// One segment of an offer, by stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegKey {
    pub carrier: [u8; 3],
    pub number: u16,
    pub suffix: u8,
    pub origin: [u8; 3],
    /// Local departure date at the origin, days since 1970-01-01.
    pub date: i32,
    pub from_seq: u8,
    pub to_seq: u8,
}

impl SegKey {
    pub fn bytes(&self) -> [u8; SEG_BYTES] {
        let mut b = [0u8; SEG_BYTES];
        b[0..3].copy_from_slice(&self.carrier);
        b[3..5].copy_from_slice(&self.number.to_be_bytes());
        b[5] = self.suffix;
        b[6..9].copy_from_slice(&self.origin);
        let d = self.date.clamp(0, i32::from(u16::MAX)) as u16;
        b[9..11].copy_from_slice(&d.to_be_bytes());
        b[11] = self.from_seq;
        b[12] = self.to_seq;
        b
    }

    fn parse(b: &[u8]) -> Option<SegKey> {
        let carrier = [b[0], b[1], b[2]];
        let code_ok = carrier[..2].iter().all(|c| c.is_ascii_alphanumeric())
            && (carrier[2].is_ascii_alphanumeric() || carrier[2] == b' ');
        let origin = [b[6], b[7], b[8]];
        if !code_ok || !origin.iter().all(|c| c.is_ascii_alphanumeric()) || b[11] > b[12] {
            return None;
        }
        Some(SegKey {
            carrier,
            number: u16::from_be_bytes([b[3], b[4]]),
            suffix: b[5],
            origin,
            date: i32::from(u16::from_be_bytes([b[9], b[10]])),
            from_seq: b[11],
            to_seq: b[12],
        })
    }
}

/// A decoded offer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRef {
    pub adults: u8,
    pub children: u8,
    pub infants: u8,
    pub cabin: Option<u8>,
    pub slices: Vec<Vec<SegKey>>,
    /// The price quoted when the id was made (currency, minor units), if it was priced.
    pub quoted: Option<([u8; 3], i64)>,
}

/// The stable key of a dated segment.
pub(crate) fn seg_key(ctx: &Ctx<'_>, s: &DatedSeg) -> SegKey {
    let net = ctx.net;
    let fl = net.flights.get(s.flight as usize);
    let legs = ctx.seg_legs(s);
    SegKey {
        carrier: net
            .carriers
            .get(s.carrier as usize)
            .copied()
            .unwrap_or([b' '; 3]),
        number: fl.map(|f| f.number.to_native()).unwrap_or(0),
        suffix: fl.map(|f| f.suffix).unwrap_or(0),
        origin: ctx
            .places
            .airports
            .get(s.origin as usize)
            .map(|a| a.iata)
            .unwrap_or([b'?'; 3]),
        date: s.dep_local.div_euclid(1440) as i32,
        from_seq: legs.first().map(|l| l.leg_seq).unwrap_or(0),
        to_seq: legs.last().map(|l| l.leg_seq).unwrap_or(0),
    }
}

/// The order-defining bytes of a slice (its segment count, then its segments).
pub(crate) fn slice_key(ctx: &Ctx<'_>, segs: &[DatedSeg]) -> [u8; 1 + 3 * SEG_BYTES] {
    let mut out = [0u8; 1 + 3 * SEG_BYTES];
    out[0] = segs.len() as u8;
    for (i, s) in segs.iter().take(3).enumerate() {
        out[1 + i * SEG_BYTES..1 + (i + 1) * SEG_BYTES].copy_from_slice(&seg_key(ctx, s).bytes());
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";
/// Both hex digits of every byte: one two-byte store per byte when encoding.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};
/// Most bytes of an id: header 6, 2 slices of (1 + 3 segments), price 11, checksum 8.
const MAX_ID_BYTES: usize = 6 + 2 * (1 + 3 * SEG_BYTES) + 11 + 8;
const _: () = assert!(2 * MAX_ID_BYTES <= MAX_ID_CHARS);

/// The id's bytes (before hex), on the stack: one is made per rendered itinerary.
struct IdBytes {
    b: [u8; MAX_ID_BYTES],
    len: usize,
}

impl IdBytes {
    fn push(&mut self, v: &[u8]) {
        // The layout bounds every part (at most 2 slices of at most 3 segments).
        self.b[self.len..self.len + v.len()].copy_from_slice(v);
        self.len += v.len();
    }
}

fn id_bytes(ctx: &Ctx<'_>, it: &Itinerary) -> IdBytes {
    let f = ctx.filters;
    let mut b = IdBytes {
        b: [0u8; MAX_ID_BYTES],
        len: 0,
    };
    let slices = it.slices();
    let slices = &slices[..slices.len().min(2)];
    b.push(&[
        VERSION,
        f.adults,
        f.children,
        f.infants,
        f.cabin.unwrap_or(255),
        slices.len() as u8,
    ]);
    for sl in slices {
        let segs = sl.segs();
        let segs = &segs[..segs.len().min(3)];
        b.push(&[segs.len() as u8]);
        for s in segs {
            b.push(&seg_key(ctx, s).bytes());
        }
    }
    match &it.price {
        Some(p) => {
            b.push(&p.cur);
            b.push(&p.total.to_be_bytes());
        }
        None => b.push(&[0u8; 11]),
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&b.b[..b.len]);
    b.push(&sum.to_be_bytes());
    b
}

/// Appends the id of an itinerary (found with the context's party and cabin) as lowercase
/// hex to `out`: what [`encode`] returns, without allocating.
pub(crate) fn encode_into(ctx: &Ctx<'_>, it: &Itinerary, out: &mut Vec<u8>) {
    let b = id_bytes(ctx, it);
    let mut hex = [0u8; 2 * MAX_ID_BYTES];
    for (pair, &x) in hex.chunks_exact_mut(2).zip(&b.b[..b.len]) {
        pair.copy_from_slice(&HEX_PAIRS[x as usize]);
    }
    out.extend_from_slice(&hex[..2 * b.len]);
}

/// Encodes an itinerary (with the party and cabin of the query that found it).
pub(crate) fn encode(ctx: &Ctx<'_>, it: &Itinerary) -> String {
    let mut out = Vec::with_capacity(2 * MAX_ID_BYTES);
    encode_into(ctx, it, &mut out);
    // Only ASCII hex digits were written.
    String::from_utf8(out).unwrap_or_default()
}

/// 400 naming the path parameter `id` (bookd names it `offer_id`, its body field).
fn invalid(detail: &str) -> ApiError {
    let mut e = ApiError::new(400, "invalid_offer_id", "Invalid offer id", detail);
    e.parameter = Some("id".to_string());
    e
}

/// Decodes and validates an offer id (no snapshot lookups). Never panics.
pub fn decode_id(id: &str) -> Result<OfferRef, ApiError> {
    let t = id.as_bytes();
    if t.is_empty() || t.len() > MAX_ID_CHARS || !t.len().is_multiple_of(2) {
        return Err(invalid("the offer id has the wrong length"));
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut b = Vec::with_capacity(t.len() / 2);
    for pair in t.chunks_exact(2) {
        match (nib(pair[0]), nib(pair[1])) {
            (Some(h), Some(l)) => b.push(h << 4 | l),
            _ => return Err(invalid("the offer id is not lowercase hex")),
        }
    }
    if b.len() < 6 + 1 + SEG_BYTES + 11 + 8 {
        return Err(invalid("the offer id is too short"));
    }
    let (body, sum) = b.split_at(b.len() - 8);
    let mut sb = [0u8; 8];
    sb.copy_from_slice(sum);
    if xxhash_rust::xxh3::xxh3_64(body) != u64::from_be_bytes(sb) {
        return Err(invalid(
            "the offer id's checksum does not match (mistyped or altered)",
        ));
    }
    if body[0] != VERSION {
        return Err(invalid("unknown offer id version"));
    }
    let (adults, children, infants, cabin) = (body[1], body[2], body[3], body[4]);
    if !(1..=9).contains(&adults)
        || children > 9
        || infants > adults
        || u16::from(adults) + u16::from(children) > 9
        || (cabin != 255 && usize::from(cabin) >= CABINS.len())
    {
        return Err(invalid("the offer id's party or cabin is invalid"));
    }
    let n_slices = body[5];
    if !(1..=2).contains(&n_slices) {
        return Err(invalid("the offer id's slice count is invalid"));
    }
    let mut pos = 6;
    let mut slices = Vec::new();
    for _ in 0..n_slices {
        let n = *body
            .get(pos)
            .ok_or_else(|| invalid("the offer id is truncated"))? as usize;
        pos += 1;
        if !(1..=3).contains(&n) {
            return Err(invalid("the offer id's segment count is invalid"));
        }
        let mut segs = Vec::with_capacity(n);
        for _ in 0..n {
            let chunk = body
                .get(pos..pos + SEG_BYTES)
                .ok_or_else(|| invalid("the offer id is truncated"))?;
            segs.push(
                SegKey::parse(chunk)
                    .ok_or_else(|| invalid("the offer id names an invalid segment"))?,
            );
            pos += SEG_BYTES;
        }
        slices.push(segs);
    }
    let tail = body.get(pos..).unwrap_or(&[]);
    if tail.len() != 11 {
        return Err(invalid("the offer id has trailing or missing bytes"));
    }
    let cur = [tail[0], tail[1], tail[2]];
    let mut amt = [0u8; 8];
    amt.copy_from_slice(&tail[3..11]);
    let amount = i64::from_be_bytes(amt);
    let quoted = if cur == [0; 3] {
        if amount != 0 {
            return Err(invalid("the offer id's price is invalid"));
        }
        None
    } else if cur.iter().all(|c| c.is_ascii_uppercase()) && amount >= 0 {
        Some((cur, amount))
    } else {
        return Err(invalid("the offer id's price is invalid"));
    };
    Ok(OfferRef {
        adults,
        children,
        infants,
        cabin: (cabin != 255).then_some(cabin),
        slices,
        quoted,
    })
}

/// Decodes an offer id; the snapshot is not consulted (flights are resolved when pricing).
pub fn decode_offer(_snap: &Snapshot, id: &str) -> Result<OfferRef, ApiError> {
    decode_id(id)
}

/// Finds the dated segment a key names in this snapshot; 410 when it no longer operates.
pub(crate) fn resolve(ctx: &Ctx<'_>, k: &SegKey) -> Result<DatedSeg, ApiError> {
    let gone = || {
        ApiError::offer_expired(format!(
            "flight {}{} from {} on {} no longer operates",
            format::model::carrier_str(&k.carrier),
            k.number,
            String::from_utf8_lossy(&k.origin),
            format::date::format_iso(k.date)
        ))
    };
    let net = ctx.net;
    let carrier = net.carrier_id(&k.carrier).ok_or_else(gone)?;
    let origin: AirportId = ctx.places.airport_id(&k.origin).ok_or_else(gone)?;
    let key = (carrier, k.number, k.suffix);
    let flights = &net.flights[..];
    let start =
        flights.partition_point(|f| (f.carrier.to_native(), f.number.to_native(), f.suffix) < key);
    let first_day = i64::from(net.first_day.to_native());
    for (off, fl) in flights[start..].iter().enumerate() {
        if (fl.carrier.to_native(), fl.number.to_native(), fl.suffix) != key {
            break;
        }
        let legs = net.flight_legs(fl);
        let Some(i) = legs
            .iter()
            .position(|l| l.leg_seq == k.from_seq && l.dep.to_native() == origin)
        else {
            continue;
        };
        let Some(j) = legs.iter().position(|l| l.leg_seq == k.to_seq) else {
            continue;
        };
        if j < i || !legs[i..=j].iter().all(|l| l.passenger) {
            continue;
        }
        let local = i64::from(legs[i].dep_utc_min.to_native())
            + i64::from(legs[i].dep_offset_min.to_native());
        let base = i64::from(k.date) - local.div_euclid(1440);
        if !net.operates(fl.day_set.to_native(), base - first_day) {
            continue;
        }
        if let Some(s) = dated(ctx, (start + off) as u32, i as u8, j as u8, base as i32) {
            return Ok(s);
        }
    }
    Err(gone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn encode_raw(body: &[u8]) -> String {
        let mut b = body.to_vec();
        b.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(body).to_be_bytes());
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn sample() -> Vec<u8> {
        let k = SegKey {
            carrier: *b"XX ",
            number: 1234,
            suffix: 0,
            origin: *b"AAA",
            date: 20000,
            from_seq: 1,
            to_seq: 2,
        };
        let mut b = vec![VERSION, 2, 1, 1, 255, 1, 1];
        b.extend_from_slice(&k.bytes());
        b.extend_from_slice(b"USD");
        b.extend_from_slice(&12345i64.to_be_bytes());
        b
    }

    #[test]
    fn decodes_what_it_encodes() {
        let r = decode_id(&encode_raw(&sample())).unwrap();
        assert_eq!((r.adults, r.children, r.infants, r.cabin), (2, 1, 1, None));
        assert_eq!(r.slices[0][0].number, 1234);
        assert_eq!(r.slices[0][0].date, 20000);
        assert_eq!(r.quoted, Some((*b"USD", 12345)));
    }

    #[test]
    fn refuses_invalid_fields_even_with_a_valid_checksum() {
        let base = sample();
        let cases: Vec<(usize, u8)> = vec![
            (0, 2),    // version
            (1, 0),    // no adult
            (3, 3),    // more infants than adults
            (4, 7),    // cabin
            (5, 3),    // slices
            (6, 0),    // segments
            (6, 4),    // segments
            (7, b'#'), // carrier
            (18, 3),   // from_seq > to_seq
        ];
        for (i, v) in cases {
            let mut b = base.clone();
            b[i] = v;
            let e = decode_id(&encode_raw(&b)).unwrap_err();
            assert_eq!(e.code, "invalid_offer_id", "byte {i}");
        }
        let mut b = base.clone();
        b.push(0);
        assert!(decode_id(&encode_raw(&b)).is_err());
        b.truncate(base.len() - 1);
        assert!(decode_id(&encode_raw(&b)).is_err());
        // Every truncation of the body is refused without a panic.
        for n in 0..base.len() {
            assert!(decode_id(&encode_raw(&base[..n])).is_err());
        }
    }
}
