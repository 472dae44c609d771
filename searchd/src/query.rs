//! Typed search and calendar queries, parsed from decoded query-string pairs.
//!
//! Every parameter is checked; an unknown parameter, a repeated one, or a bad value is a 400
//! naming it (`source.parameter`). See `searchd/SEMANTICS.md` for the decisions taken where
//! the contract is silent (ranges, inclusive bounds, unknown carriers, ...).

use format::model::{AirportId, ArchivedPlaces, CarrierId, CABINS};
use format::Snapshot;

use crate::api::ApiError;

/// Result order of `/v1/search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Price,
    Duration,
    Departure,
}

/// The largest `limit`.
pub const MAX_LIMIT: usize = 1000;
/// The widest calendar range, in days (`from` and `to` inclusive).
pub const MAX_CALENDAR_DAYS: i32 = 62;
/// The largest accepted `max_connection_minutes` / `min_connection_minutes`.
pub const MAX_CONNECTION_LIMIT: u32 = 2880;

/// Filters shared by search and calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct Filters {
    pub adults: u8,
    pub children: u8,
    pub infants: u8,
    /// Index into `format::model::CABINS`.
    pub cabin: Option<u8>,
    pub max_connections: u8,
    pub min_connection_minutes: Option<u32>,
    pub max_connection_minutes: u32,
    /// Allowed marketing carriers (sorted ids); `None` = any. Codes not in the network are
    /// dropped (so `carriers=ZZ` alone matches nothing).
    pub carriers: Option<Vec<CarrierId>>,
    /// Excluded carriers (sorted ids).
    pub exclude_carriers: Vec<CarrierId>,
    /// Local time of day, minutes; inclusive bounds on each slice's departure.
    pub depart_after: Option<u16>,
    pub depart_before: Option<u16>,
    /// Upper bound on the total, in millionths of the currency unit (inclusive).
    pub max_price_micros: Option<i128>,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            adults: 1,
            children: 0,
            infants: 0,
            cabin: None,
            max_connections: 1,
            min_connection_minutes: None,
            max_connection_minutes: 1440,
            carriers: None,
            exclude_carriers: Vec::new(),
            depart_after: None,
            depart_before: None,
            max_price_micros: None,
        }
    }
}

impl Filters {
    /// Seated passengers (adults and children; infants sit on a lap).
    pub fn seated(&self) -> u16 {
        u16::from(self.adults) + u16::from(self.children)
    }

    pub fn carrier_allowed(&self, c: CarrierId) -> bool {
        if let Some(list) = &self.carriers {
            if list.binary_search(&c).is_err() {
                return false;
            }
        }
        self.exclude_carriers.binary_search(&c).is_err()
    }

    pub fn time_allowed(&self, minute_of_day: u16) -> bool {
        self.depart_after.is_none_or(|a| minute_of_day >= a)
            && self.depart_before.is_none_or(|b| minute_of_day <= b)
    }
}

/// A parsed `/v1/search` query.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// Origin airports (a metro expands to its airports), sorted, unique.
    pub origin: Vec<AirportId>,
    pub destination: Vec<AirportId>,
    /// Departure date (days since 1970-01-01, local at the origin).
    pub date: i32,
    pub return_date: Option<i32>,
    pub filters: Filters,
    pub priced_only: bool,
    pub sort: SortBy,
    pub limit: usize,
}

/// A parsed `/v1/calendar` query (one-way; lowest price per departure date).
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarQuery {
    pub origin: Vec<AirportId>,
    pub destination: Vec<AirportId>,
    pub from: i32,
    pub to: i32,
    pub filters: Filters,
}

const SEARCH_PARAMS: &[&str] = &[
    "origin",
    "destination",
    "date",
    "return_date",
    "adults",
    "children",
    "infants",
    "cabin",
    "max_connections",
    "min_connection_minutes",
    "max_connection_minutes",
    "carriers",
    "exclude_carriers",
    "depart_after",
    "depart_before",
    "max_price",
    "priced_only",
    "sort",
    "limit",
];

const CALENDAR_PARAMS: &[&str] = &[
    "origin",
    "destination",
    "from",
    "to",
    "adults",
    "children",
    "infants",
    "cabin",
    "max_connections",
    "min_connection_minutes",
    "max_connection_minutes",
    "carriers",
    "exclude_carriers",
    "depart_after",
    "depart_before",
    "max_price",
];

/// Parameters looked up by name after checking names and repeats.
struct Params<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Params<'a> {
    fn new(pairs: &'a [(String, String)], allowed: &[&str]) -> Result<Self, ApiError> {
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_parameter(
                    k,
                    format!("unknown parameter `{}`", truncate(k)),
                ));
            }
            if pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(ApiError::bad_parameter(
                    k,
                    format!("`{k}` is given more than once"),
                ));
            }
        }
        Ok(Params { pairs })
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&'a str, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing_parameter(name)),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_uint(name: &str, v: &str, lo: u32, hi: u32) -> Result<u32, ApiError> {
    let bad = || {
        ApiError::bad_parameter(
            name,
            format!("`{name}` must be an integer from {lo} to {hi}"),
        )
    };
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u32 = v.parse().map_err(|_| bad())?;
    if n < lo || n > hi {
        return Err(bad());
    }
    Ok(n)
}

fn parse_date(name: &str, v: &str) -> Result<i32, ApiError> {
    format::date::parse_iso(v)
        .ok_or_else(|| ApiError::bad_parameter(name, format!("`{name}` must be a date YYYY-MM-DD")))
}

/// `HH:MM`, 00:00-23:59.
fn parse_hhmm(name: &str, v: &str) -> Result<u16, ApiError> {
    let b = v.as_bytes();
    let bad = || ApiError::bad_parameter(name, format!("`{name}` must be a time HH:MM"));
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return Err(bad());
    }
    let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let m = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A non-negative decimal (`123`, `123.4`, at most 6 decimals) in millionths.
pub fn parse_decimal_micros(v: &str) -> Option<i128> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if int.is_empty()
        || int.len() > 15
        || frac.len() > 6
        || (v.contains('.') && frac.is_empty())
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut n: i128 = int.parse().ok()?;
    n *= 1_000_000;
    let mut f: i128 = 0;
    for (i, c) in frac.bytes().enumerate() {
        f += i128::from(c - b'0') * 10i128.pow(5 - i as u32);
    }
    Some(n + f)
}

/// Resolves an airport or metro code (case-insensitive) to its airports.
pub fn resolve_place(
    places: &ArchivedPlaces,
    name: &str,
    v: &str,
) -> Result<Vec<AirportId>, ApiError> {
    let b = v.as_bytes();
    if b.len() != 3 || !b.iter().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_parameter(
            name,
            format!("`{name}` must be a 3-letter IATA airport or metro code"),
        ));
    }
    let code = [
        b[0].to_ascii_uppercase(),
        b[1].to_ascii_uppercase(),
        b[2].to_ascii_uppercase(),
    ];
    let mut out: Vec<AirportId> = Vec::new();
    if let Some(m) = places.metro(&code) {
        out.extend(m.airports.iter().map(|a| a.to_native()));
    }
    if let Some(a) = places.airport_id(&code) {
        out.push(a);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(ApiError::bad_parameter(
            name,
            format!(
                "unknown airport or metro code `{}`",
                String::from_utf8_lossy(&code)
            ),
        ));
    }
    Ok(out)
}

fn parse_carriers(snap: &Snapshot, name: &str, v: &str) -> Result<Vec<CarrierId>, ApiError> {
    let net = snap.network.get();
    let mut out = Vec::new();
    for part in v.split(',') {
        let code = part.trim().to_ascii_uppercase();
        let c = format::model::carrier_code(&code).ok_or_else(|| {
            ApiError::bad_parameter(
                name,
                format!("`{name}` must be a comma list of 2-3 character carrier codes"),
            )
        })?;
        if let Some(id) = net.carrier_id(&c) {
            out.push(id);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn parse_filters(snap: &Snapshot, p: &Params<'_>) -> Result<Filters, ApiError> {
    let mut f = Filters::default();
    if let Some(v) = p.get("adults") {
        f.adults = parse_uint("adults", v, 1, 9)? as u8;
    }
    if let Some(v) = p.get("children") {
        f.children = parse_uint("children", v, 0, 9)? as u8;
    }
    if let Some(v) = p.get("infants") {
        f.infants = parse_uint("infants", v, 0, 9)? as u8;
    }
    if f.infants > f.adults {
        return Err(ApiError::bad_parameter(
            "infants",
            "each infant travels on an adult's lap: `infants` must not exceed `adults`",
        ));
    }
    if f.seated() > 9 {
        return Err(ApiError::bad_parameter(
            "children",
            "at most 9 seated passengers (`adults` + `children`)",
        ));
    }
    if let Some(v) = p.get("cabin") {
        let i = CABINS.iter().position(|c| *c == v).ok_or_else(|| {
            ApiError::bad_parameter(
                "cabin",
                "`cabin` must be one of economy, premium_economy, business, first",
            )
        })?;
        f.cabin = Some(i as u8);
    }
    if let Some(v) = p.get("max_connections") {
        f.max_connections = parse_uint("max_connections", v, 0, 2)? as u8;
    }
    if let Some(v) = p.get("min_connection_minutes") {
        f.min_connection_minutes = Some(parse_uint(
            "min_connection_minutes",
            v,
            0,
            MAX_CONNECTION_LIMIT,
        )?);
    }
    if let Some(v) = p.get("max_connection_minutes") {
        f.max_connection_minutes =
            parse_uint("max_connection_minutes", v, 0, MAX_CONNECTION_LIMIT)?;
    }
    if let Some(min) = f.min_connection_minutes {
        if min > f.max_connection_minutes {
            return Err(ApiError::bad_parameter(
                "min_connection_minutes",
                "`min_connection_minutes` exceeds `max_connection_minutes`",
            ));
        }
    }
    if let Some(v) = p.get("carriers") {
        f.carriers = Some(parse_carriers(snap, "carriers", v)?);
    }
    if let Some(v) = p.get("exclude_carriers") {
        f.exclude_carriers = parse_carriers(snap, "exclude_carriers", v)?;
    }
    if let Some(v) = p.get("depart_after") {
        f.depart_after = Some(parse_hhmm("depart_after", v)?);
    }
    if let Some(v) = p.get("depart_before") {
        f.depart_before = Some(parse_hhmm("depart_before", v)?);
    }
    if let Some(v) = p.get("max_price") {
        f.max_price_micros = Some(parse_decimal_micros(v).ok_or_else(|| {
            ApiError::bad_parameter(
                "max_price",
                "`max_price` must be a non-negative decimal like 250 or 250.50",
            )
        })?);
    }
    Ok(f)
}

fn parse_places(
    snap: &Snapshot,
    p: &Params<'_>,
) -> Result<(Vec<AirportId>, Vec<AirportId>), ApiError> {
    let places = snap.places.get();
    let (o_text, d_text) = (p.required("origin")?, p.required("destination")?);
    let mut origin = resolve_place(places, "origin", o_text)?;
    let mut destination = resolve_place(places, "destination", d_text)?;
    let overlap = |a: &[AirportId], b: &[AirportId]| a.iter().any(|x| b.binary_search(x).is_ok());
    if overlap(&origin, &destination) {
        // A code that is both a city and one of its airports (HOU: Hobby, and the city of
        // Hobby and IAH) asked for from or to another of that city's airports (IAH-HOU)
        // means the airport: the city's other airports give way to the other end.
        if let Some(own) = dual_code_airport(places, d_text) {
            destination.retain(|a| *a == own || origin.binary_search(a).is_err());
        } else if let Some(own) = dual_code_airport(places, o_text) {
            origin.retain(|a| *a == own || destination.binary_search(a).is_err());
        }
    }
    if overlap(&origin, &destination) {
        return Err(ApiError::bad_parameter(
            "destination",
            "`destination` must differ from `origin` (no airport may be in both)",
        ));
    }
    debug_assert!(!origin.is_empty() && !destination.is_empty());
    Ok((origin, destination))
}

/// The airport of a code that is also a metro's (HOU, DFW, BKK ...), else `None`.
fn dual_code_airport(places: &ArchivedPlaces, text: &str) -> Option<AirportId> {
    let b: [u8; 3] = text.as_bytes().try_into().ok()?;
    let code = b.map(|c| c.to_ascii_uppercase());
    places.metro(&code)?;
    places.airport_id(&code)
}

/// Parses `/v1/search` parameters.
pub fn parse_search(snap: &Snapshot, params: &[(String, String)]) -> Result<SearchQuery, ApiError> {
    let p = Params::new(params, SEARCH_PARAMS)?;
    let (origin, destination) = parse_places(snap, &p)?;
    let date = parse_date("date", p.required("date")?)?;
    let return_date = match p.get("return_date") {
        Some(v) => {
            let r = parse_date("return_date", v)?;
            if r < date {
                return Err(ApiError::bad_parameter(
                    "return_date",
                    "`return_date` is before `date`",
                ));
            }
            Some(r)
        }
        None => None,
    };
    let filters = parse_filters(snap, &p)?;
    let priced_only = match p.get("priced_only") {
        None => true,
        Some("true") => true,
        Some("false") => false,
        Some(_) => {
            return Err(ApiError::bad_parameter(
                "priced_only",
                "`priced_only` must be true or false",
            ))
        }
    };
    let sort = match p.get("sort") {
        None | Some("price") => SortBy::Price,
        Some("duration") => SortBy::Duration,
        Some("departure") => SortBy::Departure,
        Some(_) => {
            return Err(ApiError::bad_parameter(
                "sort",
                "`sort` must be price, duration or departure",
            ))
        }
    };
    let limit = match p.get("limit") {
        Some(v) => parse_uint("limit", v, 1, MAX_LIMIT as u32)? as usize,
        None => 50,
    };
    Ok(SearchQuery {
        origin,
        destination,
        date,
        return_date,
        filters,
        priced_only,
        sort,
        limit,
    })
}

/// Parses `/v1/calendar` parameters.
pub fn parse_calendar(
    snap: &Snapshot,
    params: &[(String, String)],
) -> Result<CalendarQuery, ApiError> {
    let p = Params::new(params, CALENDAR_PARAMS)?;
    let (origin, destination) = parse_places(snap, &p)?;
    let from = parse_date("from", p.required("from")?)?;
    let to = parse_date("to", p.required("to")?)?;
    if to < from {
        return Err(ApiError::bad_parameter("to", "`to` is before `from`"));
    }
    if to - from + 1 > MAX_CALENDAR_DAYS {
        return Err(ApiError::bad_parameter(
            "to",
            format!("the range spans more than {MAX_CALENDAR_DAYS} days"),
        ));
    }
    let filters = parse_filters(snap, &p)?;
    Ok(CalendarQuery {
        origin,
        destination,
        from,
        to,
        filters,
    })
}

#[cfg(test)]
mod tests {
    use super::{CALENDAR_PARAMS, SEARCH_PARAMS};

    /// The query parameters `openapi.json` documents for `path`, in order.
    fn documented(path: &str) -> Vec<String> {
        let doc: serde_json::Value =
            serde_json::from_str(crate::server::http::OPENAPI_JSON).unwrap_or_default();
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn openapi_calendar_documents_no_parameter_the_calendar_refuses() {
        // `priced_only` was documented for /v1/calendar, which answers it 400 (unknown).
        assert_eq!(documented("/v1/calendar"), CALENDAR_PARAMS);
        assert_eq!(documented("/v1/search"), SEARCH_PARAMS);
    }
}
