//! Offers and seat capacities.
//!
//! bookd does not price itineraries itself: an [`OfferResolver`] turns an offer id (made by
//! searchd's engine) into the legs, booking classes, passenger counts and the price now.
//! Capacities come from the snapshot's availability ([`SnapshotCapacity`]).

use std::sync::Arc;

use format::model::{carrier_code, carrier_str, ArchivedLeg};
use format::wire::LegKey;
use format::Snapshot;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;

/// One dated leg in one booking class: the inventory key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
pub struct LegRef {
    pub carrier: String,
    pub flight_number: u16,
    /// Local departure date at `origin`, `YYYY-MM-DD`.
    pub date: String,
    pub origin: String,
    pub destination: String,
    pub booking_class: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaxCounts {
    pub adults: u8,
    pub children: u8,
    pub infants: u8,
}

impl PaxCounts {
    /// Seated passengers (infants sit on a lap).
    pub fn seats(&self) -> u32 {
        u32::from(self.adults) + u32::from(self.children)
    }
    pub fn total(&self) -> u32 {
        self.seats() + u32::from(self.infants)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone)]
pub struct ResolvedOffer {
    pub offer_id: String,
    pub legs: Vec<LegRef>,
    pub passengers: PaxCounts,
    /// The price the offer was quoted at (encoded in the id).
    pub quoted: Price,
    /// The price now (differs from `quoted`: 409 `price_changed`).
    pub current: Price,
    pub refundable: bool,
    /// First departure, epoch milliseconds UTC.
    pub departs_ms: i64,
}

impl ResolvedOffer {
    pub fn seats(&self) -> u32 {
        self.passengers.seats()
    }
}

/// Resolves offer ids. Errors are contract errors: 410 `offer_expired` when the flights
/// are gone or departed, 400 `invalid_parameter` (parameter `offer_id`) for an id that
/// is not an offer id.
pub trait OfferResolver: Send + Sync {
    fn resolve(&self, offer_id: &str, now_ms: i64) -> Result<ResolvedOffer, ApiError>;

    /// [`resolve`](Self::resolve) priced against `live`: bookd's seats remaining in the
    /// leg classes it has inventory rows for (the others keep the snapshot's figures), so
    /// that a sold-out class gives way to the next one as it does in searchd. Resolvers
    /// that do not price with seat counts ignore it.
    fn resolve_live(
        &self,
        offer_id: &str,
        now_ms: i64,
        live: &[(LegKey, u16)],
    ) -> Result<ResolvedOffer, ApiError> {
        let _ = live;
        self.resolve(offer_id, now_ms)
    }
}

/// Seats on sale in a leg's booking class before any booking.
pub trait CapacitySource: Send + Sync {
    fn capacity(&self, leg: &LegRef) -> u32;

    /// When `leg` departs (epoch milliseconds UTC) by the snapshot in service; `None` when
    /// the snapshot does not have it.
    fn departs_ms(&self, leg: &LegRef) -> Option<i64> {
        let _ = leg;
        None
    }
}

/// A leg of the snapshot found by its inventory key.
pub struct FoundLeg<'a> {
    pub flight: u32,
    pub leg_index: u8,
    pub day_index: u16,
    pub leg: &'a ArchivedLeg,
    /// Departure, minutes since the epoch (UTC).
    pub dep_utc_min: i64,
}

/// Finds the leg of `carrier` `number` departing `origin` on local date `date`.
pub fn find_leg<'a>(
    snap: &'a Snapshot,
    carrier: &str,
    number: u16,
    date: &str,
    origin: &str,
) -> Option<FoundLeg<'a>> {
    let net = snap.network.get();
    let places = snap.places.get();
    let cid = net.carrier_id(&carrier_code(carrier)?)?;
    let o: [u8; 3] = origin.as_bytes().try_into().ok()?;
    let origin_id = places.airport_id(&o)?;
    let local_day = i64::from(format::date::parse_iso(date)?);
    let first_day = i64::from(net.first_day.to_native());
    let flights = net.flights.as_slice();
    let start =
        flights.partition_point(|f| (f.carrier.to_native(), f.number.to_native()) < (cid, number));
    for (fi, f) in flights.iter().enumerate().skip(start) {
        if (f.carrier.to_native(), f.number.to_native()) != (cid, number) {
            break;
        }
        for (li, leg) in net.flight_legs(f).iter().enumerate() {
            if leg.dep.to_native() != origin_id {
                continue;
            }
            let local_min =
                i64::from(leg.dep_utc_min.to_native()) + i64::from(leg.dep_offset_min.to_native());
            let shift = local_min.div_euclid(1440);
            let base_day = local_day - shift;
            let day_index = base_day - first_day;
            if !net.operates(f.day_set.to_native(), day_index) {
                continue;
            }
            return Some(FoundLeg {
                flight: fi as u32,
                leg_index: li as u8,
                day_index: u16::try_from(day_index).ok()?,
                leg,
                dep_utc_min: base_day * 1440 + i64::from(leg.dep_utc_min.to_native()),
            });
        }
    }
    None
}

pub fn airport_code(snap: &Snapshot, id: u16) -> String {
    snap.places
        .get()
        .airports
        .get(id as usize)
        .map(|a| String::from_utf8_lossy(&a.iata).into_owned())
        .unwrap_or_default()
}

/// Capacities from the snapshot's availability: a class without a row has 0 seats.
pub struct SnapshotCapacity {
    pub snapshot: Arc<Snapshot>,
}

impl CapacitySource for SnapshotCapacity {
    fn capacity(&self, leg: &LegRef) -> u32 {
        let Some(found) = find_leg(
            &self.snapshot,
            &leg.carrier,
            leg.flight_number,
            &leg.date,
            &leg.origin,
        ) else {
            return 0;
        };
        let &[class] = leg.booking_class.as_bytes() else {
            return 0;
        };
        self.snapshot
            .availability
            .get()
            .seats(found.flight, found.leg_index, found.day_index, class)
            .map(u32::from)
            .unwrap_or(0)
    }

    fn departs_ms(&self, leg: &LegRef) -> Option<i64> {
        find_leg(
            &self.snapshot,
            &leg.carrier,
            leg.flight_number,
            &leg.date,
            &leg.origin,
        )
        .map(|found| found.dep_utc_min * 60_000)
    }
}

/// TEST ADAPTER, not searchd's offer ids: resolves ids of the form
/// `leg:CARRIER:NUMBER:DATE:ORIGIN:CLASS:PRICE[:ADULTS[:CHILDREN[:INFANTS]]]`
/// (PRICE = minor units and currency, e.g. `12000EUR`, the quoted price for the whole
/// party) against the snapshot: the leg must exist (else 410 `offer_expired`), the current
/// price is the snapshot's cheapest ADT fare of that carrier, market and class per seated
/// passenger (the quoted price when there is none). Used by bookd's tests and until the
/// searchd engine's resolver is wired in.
pub struct LegOfferResolver {
    pub snapshot: Arc<Snapshot>,
}

impl LegOfferResolver {
    fn parse(id: &str) -> Option<(String, u16, String, String, String, Price, PaxCounts)> {
        let parts: Vec<&str> = id.split(':').collect();
        if parts.len() < 7 || parts.len() > 10 || parts[0] != "leg" {
            return None;
        }
        let carrier = parts[1];
        carrier_code(carrier)?;
        let number: u16 = parts[2].parse().ok()?;
        format::date::parse_iso(parts[3])?;
        let origin = parts[4];
        if origin.len() != 3 || !origin.bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let class = parts[5];
        if class.len() != 1 || !class.bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let p = parts[6];
        if p.len() < 4 {
            return None;
        }
        let (amount, currency) = p.split_at(p.len() - 3);
        if !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let amount_minor: i64 = amount.parse().ok()?;
        let count = |i: usize, d: u8| -> Option<u8> {
            match parts.get(i) {
                Some(s) => s.parse().ok().filter(|v: &u8| *v <= 9),
                None => Some(d),
            }
        };
        let pax = PaxCounts {
            adults: count(7, 1)?,
            children: count(8, 0)?,
            infants: count(9, 0)?,
        };
        if pax.adults == 0 || pax.infants > pax.adults {
            return None;
        }
        Some((
            carrier.to_string(),
            number,
            parts[3].to_string(),
            origin.to_string(),
            class.to_string(),
            Price {
                amount_minor,
                currency: currency.to_string(),
            },
            pax,
        ))
    }
}

impl OfferResolver for LegOfferResolver {
    fn resolve(&self, offer_id: &str, now_ms: i64) -> Result<ResolvedOffer, ApiError> {
        let (carrier, number, date, origin, class, quoted, pax) = Self::parse(offer_id)
            .ok_or_else(|| ApiError::bad("offer_id", "not a valid offer id"))?;
        let found =
            find_leg(&self.snapshot, &carrier, number, &date, &origin).ok_or_else(|| {
                ApiError::offer_expired("the offer's flights are no longer scheduled")
            })?;
        let departs_ms = found.dep_utc_min * 60_000;
        if departs_ms <= now_ms {
            return Err(ApiError::offer_expired("the offer's flight has departed"));
        }
        let dest_id = found.leg.arr.to_native();
        let destination = airport_code(&self.snapshot, dest_id);
        let net = self.snapshot.network.get();
        let fares = self.snapshot.fares.get();
        let mut current = quoted.clone();
        let mut refundable = true;
        if let (Some(cid), Some(flight)) = (
            net.carrier_id(&carrier_code(&carrier).unwrap_or([b' '; 3])),
            net.flights.get(found.flight as usize),
        ) {
            let cheapest = fares
                .market(cid, found.leg.dep.to_native(), dest_id)
                .iter()
                .filter(|f| f.passenger_type == 0 && f.booking_class == class.as_bytes()[0])
                .min_by_key(|f| f.amount_minor.to_native());
            let _ = flight;
            if let Some(f) = cheapest {
                current = Price {
                    amount_minor: f.amount_minor.to_native() * i64::from(pax.seats()),
                    currency: String::from_utf8_lossy(&f.currency).into_owned(),
                };
                refundable = f.refundable;
            }
        }
        Ok(ResolvedOffer {
            offer_id: offer_id.to_string(),
            legs: vec![LegRef {
                carrier,
                flight_number: number,
                date,
                origin,
                destination,
                booking_class: class,
            }],
            passengers: pax,
            quoted,
            current,
            refundable,
            departs_ms,
        })
    }
}

/// Resolves offer ids made by searchd's engine: decodes the id, finds its dated segments
/// in the snapshot and prices them now with the same engine (so bookd and searchd agree on
/// what an offer costs). bookd's own inventory decides whether seats remain: `resolve`
/// prices against the snapshot's classes, `resolve_live` against bookd's seat counts.
pub struct EngineOfferResolver {
    pub snapshot: Arc<Snapshot>,
    /// Always empty: bookd's authoritative seat counts are in PostgreSQL, and
    /// `resolve_live` brings those of one offer's legs.
    pub overlay: searchd::overlay::Overlay,
}

fn from_search_error(e: searchd::api::ApiError) -> ApiError {
    let mut out = ApiError::new(e.status, e.code, e.title, e.detail);
    if let Some(p) = e.parameter {
        // The engine names the id itself; in a booking body it is the `offer_id` field.
        out = out.with_parameter(if p == "id" { "offer_id".to_string() } else { p });
    }
    out
}

impl OfferResolver for EngineOfferResolver {
    fn resolve(&self, offer_id: &str, now_ms: i64) -> Result<ResolvedOffer, ApiError> {
        self.resolve_with(offer_id, now_ms, &self.overlay)
    }

    fn resolve_live(
        &self,
        offer_id: &str,
        now_ms: i64,
        live: &[(LegKey, u16)],
    ) -> Result<ResolvedOffer, ApiError> {
        let overlay = searchd::overlay::Overlay::new();
        let snap = &*self.snapshot;
        let updates: Vec<(u64, u16)> = live
            .iter()
            .filter_map(|(k, seats)| searchd::subscriber::resolve_leg(snap, k).map(|a| (a, *seats)))
            .collect();
        overlay.apply(&updates);
        self.resolve_with(offer_id, now_ms, &overlay)
    }
}

impl EngineOfferResolver {
    fn resolve_with(
        &self,
        offer_id: &str,
        now_ms: i64,
        overlay: &searchd::overlay::Overlay,
    ) -> Result<ResolvedOffer, ApiError> {
        use searchd::engine::{decode_offer, price_offer, Clock};
        let snap = &*self.snapshot;
        let r = decode_offer(snap, offer_id)
            .map_err(from_search_error)
            .map_err(|e| e.with_parameter("offer_id"))?;
        let clock = Clock {
            now_utc_min: now_ms.div_euclid(60_000),
        };
        let priced = price_offer(snap, overlay, clock, &r).map_err(from_search_error)?;
        // Departed flights are gone for booking (searchd still re-prices them: its offers
        // are read-only).
        let departs_ms = priced
            .itinerary
            .slices()
            .iter()
            .flat_map(|s| s.segs[..s.n as usize].iter())
            .map(|seg| seg.dep_utc * 60_000)
            .min()
            .unwrap_or(i64::MAX);
        if departs_ms <= now_ms {
            return Err(ApiError::offer_expired(
                "the offer's first flight has departed",
            ));
        }
        let it = &priced.itinerary;
        let Some(price) = it.price.as_ref() else {
            return Err(ApiError::seats_unavailable(
                "no fare with enough seats remains for this offer",
            ));
        };
        let net = snap.network.get();
        let places = snap.places.get();
        let fares = snap.fares.get();
        let code = |a: u16| {
            places
                .airports
                .get(a as usize)
                .map(|x| String::from_utf8_lossy(&x.iata).into_owned())
                .unwrap_or_default()
        };
        let first_day = i64::from(net.first_day.to_native());
        let mut legs = Vec::new();
        let mut refundable = true;
        let mut departs_ms = i64::MAX;
        let mut g = 0u8; // segment index across slices, as fare components count them
        for slice in it.slices() {
            for seg in &slice.segs[..slice.n as usize] {
                departs_ms = departs_ms.min(seg.dep_utc * 60_000);
                let comp = price
                    .comps()
                    .iter()
                    .find(|c| c.from <= g && g <= c.to)
                    .ok_or_else(|| ApiError::internal("an offer segment has no fare component"))?;
                let fare = fares
                    .fares
                    .get(comp.adt as usize)
                    .ok_or_else(|| ApiError::internal("an offer fare is out of range"))?;
                refundable &= fare.refundable;
                let class = (fare.booking_class as char).to_string();
                let flight = net
                    .flights
                    .get(seg.flight as usize)
                    .ok_or_else(|| ApiError::internal("an offer flight is out of range"))?;
                let carrier = net
                    .carriers
                    .get(flight.carrier.to_native() as usize)
                    .map(|c| carrier_str(c).to_string())
                    .unwrap_or_default();
                let flight_legs = net.flight_legs(flight);
                let base = first_day + i64::from(seg.day);
                for leg in flight_legs
                    .iter()
                    .take(seg.to_leg as usize + 1)
                    .skip(seg.from_leg as usize)
                {
                    let local = base * 1440
                        + i64::from(leg.dep_utc_min.to_native())
                        + i64::from(leg.dep_offset_min.to_native());
                    legs.push(LegRef {
                        carrier: carrier.clone(),
                        flight_number: flight.number.to_native(),
                        date: format::date::format_iso(local.div_euclid(1440) as i32),
                        origin: code(leg.dep.to_native()),
                        destination: code(leg.arr.to_native()),
                        booking_class: class.clone(),
                    });
                }
                g += 1;
            }
        }
        let current = Price {
            amount_minor: price.total,
            currency: String::from_utf8_lossy(&price.cur).into_owned(),
        };
        let quoted = r
            .quoted
            .map(|(cur, minor)| Price {
                amount_minor: minor,
                currency: String::from_utf8_lossy(&cur).into_owned(),
            })
            .unwrap_or_else(|| current.clone());
        Ok(ResolvedOffer {
            offer_id: offer_id.to_string(),
            legs,
            passengers: PaxCounts {
                adults: r.adults,
                children: r.children,
                infants: r.infants,
            },
            quoted,
            current,
            refundable,
            departs_ms,
        })
    }
}
