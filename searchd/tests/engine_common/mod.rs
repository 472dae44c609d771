//! Builds small snapshots programmatically for the engine tests: the same structures the
//! indexer writes (segments of every boardable leg range, markets, day sets, sorted fares and
//! availability), written with `format::SnapshotWriter` and opened with `Snapshot::open`.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use format::model::{
    self, Airport, Availability, Fare, Fares, Flight, Leg, Mct, MctRule, Metro, Network, Places,
    SegmentRef, TextRef,
};
use format::{Manifest, Snapshot, SnapshotWriter};
use searchd::engine::Clock;
use searchd::overlay::Overlay;

pub fn day(y: i32, m: u32, d: u32) -> i32 {
    format::date::days_from_civil(y, m, d)
}

/// 2025-06-02, a Monday: the base date most tests fly on.
pub fn d0() -> i32 {
    day(2025, 6, 2)
}

/// A clock 30 days before `d0` at 12:00 UTC.
pub fn clock() -> Clock {
    Clock {
        now_utc_min: i64::from(d0() - 30) * 1440 + 720,
    }
}

#[derive(Clone, Debug)]
pub struct LegSpec {
    pub dep: String,
    pub arr: String,
    /// Minutes from 00:00 UTC of the base date.
    pub dep_utc: i32,
    pub arr_utc: i32,
    pub dep_off: i16,
    pub arr_off: i16,
    pub service: u8,
    pub aircraft: [u8; 3],
}

/// A leg at UTC times `dep`/`arr` ("HH:MM", or minutes via `leg_min`), zero offsets.
pub fn leg(dep: &str, arr: &str, dep_t: &str, arr_t: &str) -> LegSpec {
    leg_min(dep, arr, hm(dep_t), hm(arr_t))
}

pub fn leg_min(dep: &str, arr: &str, dep_utc: i32, arr_utc: i32) -> LegSpec {
    LegSpec {
        dep: dep.into(),
        arr: arr.into(),
        dep_utc,
        arr_utc,
        dep_off: 0,
        arr_off: 0,
        service: b'J',
        aircraft: *b"320",
    }
}

impl LegSpec {
    pub fn offsets(mut self, dep_off: i16, arr_off: i16) -> Self {
        self.dep_off = dep_off;
        self.arr_off = arr_off;
        self
    }
    pub fn service(mut self, s: u8) -> Self {
        self.service = s;
        self
    }
}

pub fn hm(t: &str) -> i32 {
    let (h, m) = t.split_once(':').unwrap();
    h.parse::<i32>().unwrap() * 60 + m.parse::<i32>().unwrap()
}

#[derive(Clone, Debug)]
pub struct FlightSpec {
    pub carrier: String,
    pub number: u16,
    pub suffix: u8,
    /// Base dates (days since epoch).
    pub dates: Vec<i32>,
    pub legs: Vec<LegSpec>,
}

pub fn flight(carrier: &str, number: u16, dates: &[i32], legs: Vec<LegSpec>) -> FlightSpec {
    FlightSpec {
        carrier: carrier.into(),
        number,
        suffix: 0,
        dates: dates.to_vec(),
        legs,
    }
}

#[derive(Clone, Debug)]
pub struct FareSpec {
    pub carrier: String,
    pub origin: String,
    pub dest: String,
    pub basis: String,
    pub class: u8,
    pub cabin: u8,
    pub ptype: u8,
    pub amount: i64,
    pub currency: [u8; 3],
    pub first_day: i32,
    pub last_day: i32,
    pub days_mask: u8,
    pub ap: u16,
}

/// An economy ADT fare in USD minor units, open dates, every day, no advance purchase.
pub fn fare(carrier: &str, o: &str, d: &str, class: u8, amount: i64) -> FareSpec {
    FareSpec {
        carrier: carrier.into(),
        origin: o.into(),
        dest: d.into(),
        basis: format!("{}{}", class as char, "OW"),
        class,
        cabin: 0,
        ptype: 0,
        amount,
        currency: *b"USD",
        first_day: i32::MIN,
        last_day: i32::MAX,
        days_mask: 0x7f,
        ap: 0,
    }
}

impl FareSpec {
    pub fn ptype(mut self, p: u8) -> Self {
        self.ptype = p;
        self.basis = format!("{}{}", self.basis, ["", "CH", "IN"][p as usize]);
        self
    }
    pub fn cabin(mut self, c: u8) -> Self {
        self.cabin = c;
        self
    }
    pub fn currency(mut self, c: &[u8; 3]) -> Self {
        self.currency = *c;
        self
    }
    pub fn dates(mut self, first: i32, last: i32) -> Self {
        self.first_day = first;
        self.last_day = last;
        self
    }
    pub fn days(mut self, mask: u8) -> Self {
        self.days_mask = mask;
        self
    }
    pub fn ap(mut self, d: u16) -> Self {
        self.ap = d;
        self
    }
    pub fn basis(mut self, b: &str) -> Self {
        self.basis = b.into();
        self
    }
}

#[derive(Clone, Debug)]
pub struct AvailSpec {
    pub carrier: String,
    pub number: u16,
    /// Local departure date at `origin`.
    pub date: i32,
    pub origin: String,
    pub class: u8,
    pub seats: u16,
}

pub fn seats(carrier: &str, number: u16, date: i32, origin: &str, class: u8, n: u16) -> AvailSpec {
    AvailSpec {
        carrier: carrier.into(),
        number,
        date,
        origin: origin.into(),
        class,
        seats: n,
    }
}

#[derive(Clone, Debug, Default)]
pub struct World {
    /// (iata, country)
    pub airports: Vec<(String, String)>,
    pub metros: Vec<(String, Vec<String>)>,
    pub flights: Vec<FlightSpec>,
    pub fares: Vec<FareSpec>,
    pub avail: Vec<AvailSpec>,
    /// (station or "*", type 0-4, minutes, arr carrier, dep carrier)
    pub mct: Vec<(String, u8, u16, String, String)>,
    pub mct_default: u16,
    /// When set, every leg of every flight gets this many seats in every class in
    /// `open_classes` (rows generated), in addition to `avail`.
    pub open_classes: Vec<u8>,
    pub open_seats: u16,
    /// Seats by (flight position in (carrier, number) order, leg index, base date, class).
    pub raw_avail: Vec<(usize, u8, i32, u8, u16)>,
}

impl World {
    pub fn new(airports: &[(&str, &str)]) -> World {
        World {
            airports: airports
                .iter()
                .map(|(a, c)| (a.to_string(), c.to_string()))
                .collect(),
            mct_default: 60,
            open_classes: vec![b'Y'],
            open_seats: 9,
            ..Default::default()
        }
    }
}

fn code3(s: &str) -> [u8; 3] {
    let b = s.as_bytes();
    let mut out = [b' '; 3];
    out[..b.len()].copy_from_slice(b);
    out
}

pub struct Built {
    pub snap: Snapshot,
    pub overlay: Overlay,
    _dir: tempfile::TempDir,
}

impl Built {
    pub fn airport(&self, code: &str) -> u16 {
        self.snap.places.get().airport_id(&code3(code)).unwrap()
    }
}

/// Compiles and opens the world as a snapshot in a temporary directory.
pub fn build(w: &World) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(w, &dir.path().join("snap"));
    Built {
        snap,
        overlay: Overlay::new(),
        _dir: dir,
    }
}

pub fn write(w: &World, out: &Path) -> Snapshot {
    // Places.
    let mut airports: Vec<(String, String)> = w.airports.clone();
    airports.sort();
    let aid = |c: &str| {
        airports
            .iter()
            .position(|a| a.0 == c)
            .unwrap_or_else(|| panic!("airport {c}")) as u16
    };
    let places = Places {
        airports: airports
            .iter()
            .map(|(iata, country)| Airport {
                iata: code3(iata),
                icao: String::new(),
                name: format!("{iata} Airport"),
                city: format!("{iata} City"),
                subd: String::new(),
                country: [country.as_bytes()[0], country.as_bytes()[1]],
                tz: "UTC".into(),
                lat: 0.0,
                lon: 0.0,
            })
            .collect(),
        metros: {
            let mut m: Vec<Metro> = w
                .metros
                .iter()
                .map(|(code, members)| {
                    let mut ids: Vec<u16> = members.iter().map(|c| aid(c)).collect();
                    ids.sort();
                    Metro {
                        code: code3(code),
                        airports: ids,
                    }
                })
                .collect();
            m.sort_by_key(|x| x.code);
            m
        },
    };
    let n_air = airports.len();

    // Network.
    let mut specs = w.flights.clone();
    specs.sort_by_key(|f| (code3(&f.carrier), f.number, f.suffix));
    let mut carriers: Vec<[u8; 3]> = specs.iter().map(|f| code3(&f.carrier)).collect();
    carriers.sort();
    carriers.dedup();
    let all_dates: Vec<i32> = specs.iter().flat_map(|f| f.dates.iter().copied()).collect();
    let first_day = all_dates.iter().min().copied().unwrap_or(d0()) - 2;
    let last_day = all_dates.iter().max().copied().unwrap_or(d0()) + 2;
    let n_days = (last_day - first_day + 1) as u32;
    let words = n_days.div_ceil(64) as usize;
    let mut day_sets = Vec::new();
    let mut flights = Vec::new();
    let mut legs: Vec<Leg> = Vec::new();
    let mut text = String::from("JCDYBMK");
    let mut segs: Vec<(u16, SegmentRef)> = Vec::new();
    for (fi, f) in specs.iter().enumerate() {
        let mut bits = vec![0u64; words];
        for &d in &f.dates {
            let i = (d - first_day) as usize;
            bits[i >> 6] |= 1 << (i & 63);
        }
        let set = (day_sets.len() / words) as u32;
        day_sets.extend_from_slice(&bits);
        let first_leg = legs.len() as u32;
        for (k, l) in f.legs.iter().enumerate() {
            legs.push(Leg {
                dep: aid(&l.dep),
                arr: aid(&l.arr),
                dep_utc_min: l.dep_utc,
                arr_utc_min: l.arr_utc,
                dep_offset_min: l.dep_off,
                arr_offset_min: l.arr_off,
                service_type: l.service,
                passenger: b"JSUQGBRCO".contains(&l.service),
                leg_seq: (k + 1) as u8,
                aircraft: l.aircraft,
                prbd: TextRef { start: 0, len: 7 },
                codeshares: TextRef { start: 0, len: 0 },
                operating_carrier: [b' '; 3],
            });
        }
        let pl = &legs[first_leg as usize..];
        for i in 0..pl.len() {
            if !pl[i].passenger {
                continue;
            }
            let local = pl[i].dep_utc_min + i32::from(pl[i].dep_offset_min);
            let shift = local.div_euclid(1440);
            let mut visited = vec![pl[i].dep];
            for (j, l) in pl.iter().enumerate().skip(i) {
                if !l.passenger || visited.contains(&l.arr) {
                    break;
                }
                visited.push(l.arr);
                segs.push((
                    pl[i].dep,
                    SegmentRef {
                        flight: fi as u32,
                        from_leg: i as u8,
                        to_leg: j as u8,
                        dest: l.arr,
                        dep_day_shift: shift as i8,
                        dep_local_min: local.rem_euclid(1440) as u16,
                    },
                ));
            }
        }
        flights.push(Flight {
            carrier: carriers.binary_search(&code3(&f.carrier)).unwrap() as u16,
            number: f.number,
            suffix: f.suffix,
            ivi: 1,
            first_leg,
            n_legs: f.legs.len() as u8,
            day_set: set,
        });
    }
    text.push_str("");
    let (seg_offsets, segments, market_offsets, markets) =
        format::model::segment_index(n_air, segs);
    let network = Network {
        first_day,
        n_days,
        words_per_set: words as u32,
        day_sets,
        carriers: carriers.clone(),
        flights: flights.clone(),
        legs: legs.clone(),
        text,
        seg_offsets,
        segments,
        market_offsets,
        markets,
    };

    // Fares.
    let mut ftext = String::new();
    let mut fares: Vec<Fare> = w
        .fares
        .iter()
        .filter_map(|f| {
            let c = carriers.binary_search(&code3(&f.carrier)).ok()? as u16;
            let start = ftext.len() as u32;
            ftext.push_str(&f.basis);
            Some(Fare {
                carrier: c,
                origin: aid(&f.origin),
                dest: aid(&f.dest),
                basis: TextRef {
                    start,
                    len: f.basis.len() as u32,
                },
                booking_class: f.class,
                cabin: f.cabin,
                passenger_type: f.ptype,
                amount_minor: f.amount,
                currency: f.currency,
                first_day: f.first_day,
                last_day: f.last_day,
                days_mask: f.days_mask,
                advance_purchase_days: f.ap,
                refundable: false,
                change_fee_minor: -1,
            })
        })
        .collect();
    fares.sort_by_key(|f| {
        (
            f.carrier,
            f.origin,
            f.dest,
            f.passenger_type,
            f.cabin,
            f.booking_class,
            f.amount_minor,
            f.first_day,
        )
    });
    let mut market_keys = Vec::new();
    let mut market_starts = Vec::new();
    for (i, f) in fares.iter().enumerate() {
        let k = model::market_key(f.carrier, f.origin, f.dest);
        if market_keys.last() != Some(&k) {
            market_keys.push(k);
            market_starts.push(i as u32);
        }
    }
    market_starts.push(fares.len() as u32);
    let n_fares = fares.len();
    let fares = Fares {
        fares,
        market_keys,
        market_starts,
        text: ftext,
    };

    // Availability.
    let mut av: std::collections::BTreeMap<u64, u16> = std::collections::BTreeMap::new();
    for (fi, f) in flights.iter().enumerate() {
        let spec = &specs[fi];
        for li in 0..f.n_legs {
            for &d in &spec.dates {
                for &c in &w.open_classes {
                    av.insert(
                        model::avail_key(fi as u32, li, (d - first_day) as u16, c),
                        w.open_seats,
                    );
                }
            }
        }
    }
    for a in &w.avail {
        let o = aid(&a.origin);
        let mut hit = None;
        for (fi, f) in flights.iter().enumerate() {
            if carriers[f.carrier as usize] != code3(&a.carrier) || f.number != a.number {
                continue;
            }
            for li in 0..f.n_legs {
                let l = &legs[(f.first_leg + u32::from(li)) as usize];
                if l.dep != o {
                    continue;
                }
                let shift = (l.dep_utc_min + i32::from(l.dep_offset_min)).div_euclid(1440);
                let base = a.date - shift;
                if specs[fi].dates.contains(&base) {
                    hit = Some((fi as u32, li, (base - first_day) as u16));
                }
            }
        }
        let (fi, li, d) = hit.unwrap_or_else(|| panic!("availability row {a:?} names no leg"));
        av.insert(model::avail_key(fi, li, d, a.class), a.seats);
    }
    for &(fi, li, base, class, n) in &w.raw_avail {
        av.insert(
            model::avail_key(fi as u32, li, (base - first_day) as u16, class),
            n,
        );
    }
    let availability = Availability {
        keys: av.keys().copied().collect(),
        seats: av.values().copied().collect(),
    };

    // MCT.
    let mct = Mct {
        rules: w
            .mct
            .iter()
            .map(|(st, t, m, ac, dc)| MctRule {
                station: if st == "*" { u16::MAX } else { aid(st) },
                conn_type: *t,
                minutes: *m,
                arrival_carrier: code3(ac),
                departure_carrier: code3(dc),
            })
            .collect(),
        default_minutes: w.mct_default,
    };

    let mut wr = SnapshotWriter::create(out).unwrap();
    wr.write_archive(format::snapshot::NETWORK, &network)
        .unwrap();
    wr.write_archive(format::snapshot::FARES, &fares).unwrap();
    wr.write_archive(format::snapshot::AVAILABILITY, &availability)
        .unwrap();
    wr.write_archive(format::snapshot::MCT, &mct).unwrap();
    wr.write_archive(format::snapshot::PLACES, &places).unwrap();
    std::fs::create_dir_all(wr.places_dir()).unwrap();
    format::places::build(&wr.places_dir(), &places, &vec![1; n_air]).unwrap();
    let manifest = Manifest {
        flight_patterns: flights.len() as u64,
        legs: legs.len() as u64,
        fares: n_fares as u64,
        availability_records: availability.keys.len() as u64,
        airports: n_air as u64,
        ..Default::default()
    };
    wr.finish(manifest).unwrap();
    Snapshot::open(out).unwrap()
}

/// Query pairs from literals.
pub fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `/v1/search` and returns (data, meta), panicking on an error.
pub fn search(b: &Built, p: &[(&str, &str)]) -> (serde_json::Value, serde_json::Value) {
    searchd::engine::search(&b.snap, &b.overlay, clock(), &params(p))
        .unwrap_or_else(|e| panic!("search {p:?} failed: {e}"))
}

/// The error of a search that must fail.
pub fn search_err(b: &Built, p: &[(&str, &str)]) -> searchd::api::ApiError {
    match searchd::engine::search(&b.snap, &b.overlay, clock(), &params(p)) {
        Ok(r) => panic!("search {p:?} succeeded: {r:?}"),
        Err(e) => e,
    }
}

/// Compact description of each itinerary: "XX1 AAA-BBB 08:00|XX2 ..." per slice joined by " / ".
pub fn describe(data: &serde_json::Value) -> Vec<String> {
    data["itineraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| {
            it["slices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    s["segments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|g| {
                            format!(
                                "{}{} {}-{}",
                                g["carrier"].as_str().unwrap(),
                                g["flight_number"].as_str().unwrap(),
                                g["origin"].as_str().unwrap(),
                                g["destination"].as_str().unwrap()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .collect()
}

pub fn prices(data: &serde_json::Value) -> Vec<String> {
    data["itineraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| match &it["price"] {
            serde_json::Value::Null => "null".to_string(),
            p => format!(
                "{} {}",
                p["amount"].as_str().unwrap(),
                p["currency"].as_str().unwrap()
            ),
        })
        .collect()
}

pub fn iso(d: i32) -> String {
    format::date::format_iso(d)
}
