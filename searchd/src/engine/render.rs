//! JSON shapes of the contract (section 4): itineraries, slices, segments, fares.

use format::date::{format_local_minutes, format_utc_minutes};
use format::model::{carrier_str, AirportId, CABINS};
use serde_json::{Map, Value};

use super::search::Itinerary;
use super::{offer_id, Ctx, DatedSeg, Slice};
use crate::api::Money;

pub(crate) fn iata(ctx: &Ctx<'_>, a: AirportId) -> String {
    ctx.places
        .airports
        .get(a as usize)
        .map(|p| String::from_utf8_lossy(&p.iata).into_owned())
        .unwrap_or_default()
}

fn flight_number(number: u16, suffix: u8) -> String {
    if suffix.is_ascii_alphabetic() {
        format!("{number}{}", suffix as char)
    } else {
        number.to_string()
    }
}

/// An object from owned values (no copies, unlike `json!` with interpolated values).
pub(crate) fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

fn s(v: String) -> Value {
    Value::String(v)
}

fn segment(ctx: &Ctx<'_>, s: &DatedSeg) -> Value {
    let net = ctx.net;
    let fl = net.flights.get(s.flight as usize);
    let legs = ctx.seg_legs(s);
    let stops: Vec<String> = legs
        .iter()
        .take(legs.len().saturating_sub(1))
        .map(|l| iata(ctx, l.arr.to_native()))
        .collect();
    let aircraft = legs
        .first()
        .map(|l| String::from_utf8_lossy(&l.aircraft).trim().to_string())
        .unwrap_or_default();
    let carrier = net
        .carriers
        .get(s.carrier as usize)
        .map(|c| carrier_str(c).to_string())
        .unwrap_or_default();
    let number = fl
        .map(|f| flight_number(f.number.to_native(), f.suffix))
        .unwrap_or_default();
    obj([
        ("carrier", self::s(carrier)),
        ("flight_number", self::s(number)),
        ("origin", self::s(iata(ctx, s.origin))),
        ("destination", self::s(iata(ctx, s.dest))),
        (
            "departure_local",
            self::s(format_local_minutes(s.dep_local)),
        ),
        ("arrival_local", self::s(format_local_minutes(s.arr_local))),
        ("departure_utc", self::s(format_utc_minutes(s.dep_utc))),
        ("arrival_utc", self::s(format_utc_minutes(s.arr_utc))),
        (
            "stops",
            Value::Array(stops.into_iter().map(Value::String).collect()),
        ),
        ("aircraft", self::s(aircraft)),
    ])
}

fn slice(ctx: &Ctx<'_>, sl: &Slice) -> Value {
    let segs = sl.segs();
    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
        return Value::Object(Map::new());
    };
    obj([
        ("origin", Value::String(iata(ctx, first.origin))),
        ("destination", Value::String(iata(ctx, last.dest))),
        (
            "departure_local",
            Value::String(format_local_minutes(first.dep_local)),
        ),
        (
            "arrival_local",
            Value::String(format_local_minutes(last.arr_local)),
        ),
        ("duration_minutes", Value::from(sl.duration())),
        (
            "segments",
            Value::Array(segs.iter().map(|g| segment(ctx, g)).collect()),
        ),
    ])
}

/// The contract's itinerary object (with its offer id).
pub(crate) fn itinerary(ctx: &Ctx<'_>, it: &Itinerary) -> Value {
    let slices: Vec<Value> = it.slices().iter().map(|s| slice(ctx, s)).collect();
    let (price, fares, seats) = match &it.price {
        Some(p) => {
            let fares: Vec<Value> = p
                .comps()
                .iter()
                .map(|c| {
                    let f = ctx.fares.fares.get(c.adt as usize);
                    obj([
                        (
                            "fare_basis",
                            Value::String(
                                f.map(|f| ctx.fares.text(&f.basis).to_string())
                                    .unwrap_or_default(),
                            ),
                        ),
                        (
                            "booking_class",
                            Value::String(
                                f.map(|f| (f.booking_class as char).to_string())
                                    .unwrap_or_default(),
                            ),
                        ),
                        (
                            "cabin",
                            Value::from(
                                f.and_then(|f| CABINS.get(f.cabin as usize))
                                    .copied()
                                    .unwrap_or(""),
                            ),
                        ),
                        (
                            "segments",
                            Value::Array((c.from..=c.to).map(Value::from).collect()),
                        ),
                    ])
                })
                .collect();
            (money(p.total, &p.cur), fares, Value::from(p.seats))
        }
        None => (Value::Null, Vec::new(), Value::Null),
    };
    obj([
        ("id", Value::String(offer_id::encode(ctx, it))),
        ("slices", Value::Array(slices)),
        ("price", price),
        ("fares", Value::Array(fares)),
        ("seats_available", seats),
    ])
}

/// The offer id of an itinerary found with the context's party and cabin.
pub(crate) fn offer_id_of(ctx: &Ctx<'_>, it: &Itinerary) -> String {
    offer_id::encode(ctx, it)
}

/// Money as the contract writes it.
pub(crate) fn money(minor: i64, cur: &[u8; 3]) -> Value {
    let m = Money::from_minor(minor, cur);
    obj([
        ("amount", Value::String(m.amount)),
        ("currency", Value::String(m.currency)),
    ])
}
