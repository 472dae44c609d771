//! The search engine: itineraries, prices, offers and the fare calendar over a mapped
//! snapshot plus the live seat overlay.
//!
//! Entry points (each returns the contract's `data` object and the `meta` fields other than
//! `request_id`): [`search`] (`GET /v1/search`), [`offer`] (`GET /v1/offers/{id}`),
//! [`calendar`] (`GET /v1/calendar`). The typed core, for benchmarks and tests:
//! [`parse_search`] + [`run_search`]; for bookd: [`decode_offer`] + [`price_offer`].
//!
//! # Semantics (contract section 3, and the decisions where it is silent)
//!
//! The same text is in `searchd/SEMANTICS.md`.
//!
//! - **Dates.** A leg is on local date D at its origin. A segment ref with day shift `k`
//!   departs on D when its flight operates on base date `D - k`. UTC instants are
//!   `base * 1440 + Leg.dep_utc_min`; local = UTC + the leg's offset.
//! - **Segments and connections.** Direct = one segment per slice (a through flight may be
//!   boarded at any stop and left at any later stop). Up to `max_connections` connections
//!   (0-2, default 1); a connection's time (next departure UTC - previous arrival UTC) must be
//!   at least the MCT (or `min_connection_minutes`, which replaces the table) and at most
//!   `max_connection_minutes` (default 1440; both 0-2880). Two consecutive segments of the
//!   same dated flight never connect (that journey is the through segment). No airport is
//!   visited twice in a slice, through stops included; and no connection point or through stop
//!   is one of the query's origin or destination airports (a trip to a metro ends at the first
//!   of its airports it reaches).
//! - **MCT.** Station, type DD/DI/ID/II (domestic = both airports of the arriving segment's
//!   last leg / departing segment's first leg in the same country), carriers (the flights'
//!   marketing carriers). Most specific wins: named station over `*`, then more carriers given,
//!   then exact type over `*`; on a full tie the larger minutes wins (a minimum is never undercut by row order). No matching row:
//!   the table's default (60).
//! - **Places.** `origin`/`destination` take airport or metro codes (case-insensitive); a
//!   code that is both a metro and an airport means the metro's airports plus that airport.
//!   Origin and destination sets must not overlap.
//! - **Price.** The contract's cheapest valid construction, per slice (components never span
//!   two slices): each component is one marketing carrier and one ADT fare of that carrier for
//!   the component's end points; travel dates and days of week checked against the local date
//!   of the component's first departure; advance purchase: that date minus the clock's UTC date
//!   is at least `advance_purchase_days`; cabin = the query's cabin if given; the booking class
//!   has at least adults + children seats on every leg of the component (live overlay first, else the
//!   snapshot; no row = closed). Children pay the cheapest valid CHD fare of the same carrier,
//!   market, cabin, class and currency, else the ADT fare; infants the INF fare, else 0.
//!   A construction mixing currencies is invalid (a round trip is priced only in a currency
//!   both slices have). Amounts of different currencies are compared by value without
//!   conversion (sorting, `max_price`). Equal totals: the construction with fewer
//!   components, then the first fare in fare order (cabin, class, amount, first travel date),
//!   is shown; equal values in different currencies, the first currency code. At most 3
//!   currencies are kept per slice (the cheapest).
//! - **Filters.** `carriers`/`exclude_carriers` apply to every segment (unknown but well-formed
//!   codes simply match nothing); `depart_after`/`depart_before` are inclusive bounds on the
//!   local departure time of each slice; `max_price` (inclusive) compares with the total, in
//!   the itinerary's currency, and excludes unpriced itineraries; `priced_only=false` adds
//!   itineraries with `price: null` (ordered after priced ones when sorting by price).
//! - **Order.** `price` (total value), `duration` (sum of slice durations), `departure`
//!   (outbound UTC departure instant); ties: the outbound departure, then the itinerary id
//!   (byte order of the offer id, which encodes the slices' segments in order).
//! - **Round trips.** Every outbound x inbound pair is a candidate; `meta.total` counts the
//!   matching pairs without materializing them, and the best `limit` pairs come from a k-way
//!   merge. The inbound leaves the destination set on `return_date` from any of its airports.
//! - **Limits.** `limit` <= 1000; each query may do at most [`WORK_LIMIT`] elementary steps
//!   (segments visited, connections tried, pairs examined); a query that needs more is refused
//!   with 422 `query_too_broad` instead of returning a partial answer.
//! - **JSON.** `flight_number` is the number as a string plus the operational suffix letter if
//!   any (`"1234"`, `"12A"`); `stops` are the intermediate airports of a through segment;
//!   `aircraft` is the first leg's type; `fares[].segments` are 0-based indexes of the
//!   itinerary's segments counted across slices; `seats_available` is the fewest seats over
//!   every leg in the chosen classes (null when unpriced).
//! - **Offer ids** (see [`offer_id`]): self-contained, hex, checksummed; re-pricing is
//!   authoritative, so an id needs no secret: a forged id can only name flights that exist and
//!   get today's price for them.

use std::cell::{Cell, RefCell};

use format::model::{
    AirportId, ArchivedAvailability, ArchivedFares, ArchivedLeg, ArchivedMctRule, ArchivedNetwork,
    ArchivedPlaces, CarrierId,
};
use format::Snapshot;
use serde_json::Value;

use crate::api::ApiError;
use crate::overlay::Overlay;
use crate::query::Filters;

pub mod calendar;
pub mod offer_id;
pub mod paths;
pub mod prep;
pub mod price;
pub mod render;
pub mod search;
mod split;

pub use crate::query::{parse_calendar, parse_search, CalendarQuery, SearchQuery, SortBy};
pub use calendar::{calendar, calendar_raw};
pub use offer_id::{decode_offer, OfferRef, SegKey};
pub use prep::prepare;
pub use search::{
    offer, offer_raw, price_offer, run_search, run_search_with, search, search_raw,
    search_raw_split, search_raw_within, ItinPrice, Itinerary, PricedOffer, SearchResult, Split,
};

/// The most elementary steps one query may take.
pub const WORK_LIMIT: u64 = 4_000_000;

/// A lower budget for tests and operators (0 = [`WORK_LIMIT`]); process-wide.
pub static WORK_LIMIT_OVERRIDE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn work_limit() -> u64 {
    match WORK_LIMIT_OVERRIDE.load(std::sync::atomic::Ordering::Relaxed) {
        0 => WORK_LIMIT,
        n => n,
    }
}

/// The service's clock: minutes since 1970-01-01T00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now_utc_min: i64,
}

impl Clock {
    /// The clock's UTC date (days since epoch), the date advance purchase counts from.
    pub fn today(&self) -> i32 {
        self.now_utc_min.div_euclid(1440) as i32
    }
}

/// One boarding on one flight on one date: legs `from_leg..=to_leg` of `flight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DatedSeg {
    pub flight: u32,
    pub from_leg: u8,
    pub to_leg: u8,
    /// Base date index (base date - `Network::first_day`).
    pub day: u16,
    pub carrier: CarrierId,
    pub origin: AirportId,
    pub dest: AirportId,
    /// Minutes since epoch, UTC and local wall clock.
    pub dep_utc: i64,
    pub arr_utc: i64,
    pub dep_local: i64,
    pub arr_local: i64,
}

/// The segments of one slice (1 to 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slice {
    pub segs: [DatedSeg; 3],
    pub n: u8,
}

impl Slice {
    pub fn one(a: DatedSeg) -> Self {
        Slice {
            segs: [a, DatedSeg::default(), DatedSeg::default()],
            n: 1,
        }
    }
    pub fn two(a: DatedSeg, b: DatedSeg) -> Self {
        Slice {
            segs: [a, b, DatedSeg::default()],
            n: 2,
        }
    }
    pub fn three(a: DatedSeg, b: DatedSeg, c: DatedSeg) -> Self {
        Slice {
            segs: [a, b, c],
            n: 3,
        }
    }
    pub fn segs(&self) -> &[DatedSeg] {
        &self.segs[..self.n as usize]
    }
    pub fn dep_utc(&self) -> i64 {
        self.segs[0].dep_utc
    }
    pub fn arr_utc(&self) -> i64 {
        self.segs().last().map(|s| s.arr_utc).unwrap_or(0)
    }
    pub fn duration(&self) -> i64 {
        self.arr_utc() - self.dep_utc()
    }
}

/// Everything one query reads, plus its work counter.
pub(crate) struct Ctx<'a> {
    pub net: &'a ArchivedNetwork,
    pub fares: &'a ArchivedFares,
    pub avail: &'a ArchivedAvailability,
    pub places: &'a ArchivedPlaces,
    pub mct_rules: &'a [ArchivedMctRule],
    pub mct_default: u16,
    pub prep: &'a prep::Prepared,
    pub overlay: &'a Overlay,
    pub today: i32,
    pub filters: &'a Filters,
    /// The query's origin and destination airports, sorted.
    pub ends: Vec<AirportId>,
    /// Recently used fare markets: (market key, start, end).
    pub market_cache: RefCell<[(u64, u32); MARKET_CACHE]>,
    /// Cheapest-only mode (the calendar): candidates whose lower bound exceeds this value
    /// (millionths) are skipped, and only priced candidates within it are kept.
    pub cap: Cell<Option<i128>>,
    /// Cheapest-only mode: the outbound UTC departure of the slice that set `cap` (a slice
    /// priced exactly `cap` that departs later cannot win the tie), `i64::MAX` before one.
    pub cap_dep: Cell<i64>,
    work: Cell<u64>,
    limit: u64,
    exhausted: Cell<bool>,
}

/// Slots of the per-query fare market cache.
pub(crate) const MARKET_CACHE: usize = 16;

impl<'a> Ctx<'a> {
    pub fn new(
        snap: &'a Snapshot,
        overlay: &'a Overlay,
        clock: Clock,
        filters: &'a Filters,
        prep: &'a prep::Prepared,
        ends: &[&[AirportId]],
    ) -> Self {
        let mct = snap.mct.get();
        let mut e: Vec<AirportId> = ends.iter().flat_map(|s| s.iter().copied()).collect();
        e.sort_unstable();
        e.dedup();
        Ctx {
            net: snap.network.get(),
            fares: snap.fares.get(),
            avail: snap.availability.get(),
            places: snap.places.get(),
            mct_rules: &mct.rules,
            mct_default: mct.default_minutes.to_native(),
            prep,
            overlay,
            today: clock.today(),
            filters,
            ends: e,
            market_cache: RefCell::new([(u64::MAX, 0); MARKET_CACHE]),
            cap: Cell::new(None),
            cap_dep: Cell::new(i64::MAX),
            work: Cell::new(0),
            limit: work_limit(),
            exhausted: Cell::new(false),
        }
    }

    /// Counts `n` steps of work; false once the query's budget is spent.
    #[inline]
    pub fn step(&self, n: u64) -> bool {
        let w = self.work.get() + n;
        self.work.set(w);
        if w > self.limit {
            self.exhausted.set(true);
            return false;
        }
        true
    }

    pub fn exhausted(&self) -> bool {
        self.exhausted.get()
    }

    /// Steps counted so far.
    pub fn work_done(&self) -> u64 {
        self.work.get()
    }

    /// The most steps this query may take.
    pub fn work_limit(&self) -> u64 {
        self.limit
    }

    #[inline]
    pub fn is_end(&self, a: AirportId) -> bool {
        self.ends.binary_search(&a).is_ok()
    }

    /// The legs a dated segment flies.
    pub fn seg_legs(&self, s: &DatedSeg) -> &'a [ArchivedLeg] {
        let Some(fl) = self.net.flights.get(s.flight as usize) else {
            return &[];
        };
        let legs = self.net.flight_legs(fl);
        legs.get(s.from_leg as usize..=s.to_leg as usize)
            .unwrap_or(&[])
    }
}

/// A 422 for a query whose work exceeded the budget.
pub fn too_broad() -> ApiError {
    ApiError::new(
        422,
        "query_too_broad",
        "Query too broad",
        "the search needs more work than one query may do; narrow it (fewer connections, \
         a carrier filter, a shorter max_connection_minutes or a departure time window)",
    )
}

/// The `(data, meta)` pair every entry point returns.
pub type Response = (Value, Value);

#[cfg(test)]
mod tests {
    use crate::query::parse_decimal_micros;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal_micros("250"), Some(250_000_000));
        assert_eq!(parse_decimal_micros("250.5"), Some(250_500_000));
        assert_eq!(parse_decimal_micros("0.000001"), Some(1));
        for bad in ["", ".5", "5.", "-1", "1e3", "1.0000001", "1,5", " 1"] {
            assert_eq!(parse_decimal_micros(bad), None, "{bad}");
        }
    }
}
