//! Compiles parsed feeds into a snapshot (`format::SnapshotWriter`).
//!
//! Cross-feed rules decided here (each a row error, or a counted skip under `--lenient`):
//! - a schedule station, fare origin/destination, MCT station or metro member that is not in
//!   the airports feed;
//! - an availability row whose leg does not exist (no leg of that carrier and flight number
//!   departs that origin on that local date);
//! - fares of a carrier that flies nothing in the schedule are dropped and counted
//!   (`fares_carrier_not_scheduled`): they can never price an itinerary.
//!
//! A fare whose origin or destination is a metro code applies to each member airport; so does
//! an MCT rule whose station is a metro code (a code that is also an airport's names that
//! airport there: MCT rules are per airport). A metro rule and a rule on one of its airports
//! are equally specific (both name a station): the usual tie-break applies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use format::manifest::Source;
use format::model::{
    self, Airport, Availability, Fare, Fares, Flight, Leg, Mct, MctRule, Metro, Network, Places,
    SegmentRef, TextRef,
};
use format::snapshot::{AVAILABILITY, FARES, MCT, NETWORK, PLACES};
use format::{Manifest, SnapshotWriter};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::feeds;
use crate::ssim;
use crate::{Error, Result};

/// Passenger service types (contract section 3).
pub const PASSENGER_SERVICE_TYPES: &[u8] = b"JSUQGBRCO";

/// A snapshot spans at most this many base dates (day indexes must fit 16 bits).
pub const MAX_DAYS: i32 = 4000;

/// What to build; checked once from the command line.
#[derive(Debug, Clone, Default)]
pub struct BuildConfig {
    pub ssim: Vec<PathBuf>,
    pub airports: PathBuf,
    pub metros: Option<PathBuf>,
    pub mct: Option<PathBuf>,
    pub fares: Option<PathBuf>,
    pub availability: Option<PathBuf>,
    pub lenient: bool,
    pub out: PathBuf,
}

/// Reports build stages (a progress bar in the CLI, nothing in tests).
pub trait Progress: Sync {
    fn stage(&self, name: &str);
}

pub struct NoProgress;
impl Progress for NoProgress {
    fn stage(&self, _name: &str) {}
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    pub dir: PathBuf,
    /// SSIM legs that did not join the previous leg of their flight (kept as own flights).
    pub legs_not_joined: u64,
    pub manifest: Manifest,
    pub elapsed_ms: u128,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

struct Loaded {
    name: String,
    bytes: Vec<u8>,
    source: Source,
}

fn load(kind: &str, path: &Path) -> Result<Loaded> {
    let bytes = feeds::read_file(path)?;
    let sha = Sha256::digest(&bytes);
    let sha256 = sha.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(Loaded {
        name: file_name(path),
        source: Source {
            kind: kind.to_string(),
            file: file_name(path),
            sha256,
            bytes: bytes.len() as u64,
        },
        bytes,
    })
}

/// Skip counts and the strict/lenient decision for cross-feed errors.
struct Skips {
    lenient: bool,
    counts: BTreeMap<String, u64>,
}

impl Skips {
    /// In strict mode returns the error; in lenient mode counts it under `reason`.
    fn row(&mut self, reason: &str, err: Error) -> Result<()> {
        if self.lenient {
            *self.counts.entry(reason.to_string()).or_default() += 1;
            Ok(())
        } else {
            Err(err)
        }
    }

    fn add(&mut self, reason: &str, n: u64) {
        if n > 0 {
            *self.counts.entry(reason.to_string()).or_default() += n;
        }
    }
}

/// Interns strings into one text pool.
#[derive(Default)]
struct TextPool {
    text: String,
    seen: HashMap<String, TextRef>,
}

impl TextPool {
    fn add(&mut self, s: &str) -> TextRef {
        if s.is_empty() {
            return TextRef::default();
        }
        if let Some(r) = self.seen.get(s) {
            return *r;
        }
        let r = TextRef {
            start: self.text.len() as u32,
            len: s.len() as u32,
        };
        self.text.push_str(s);
        self.seen.insert(s.to_string(), r);
        r
    }
}

fn code3(s: &str) -> [u8; 3] {
    model::carrier_code(s).unwrap_or([b' '; 3])
}

fn station(code: &[u8; 3]) -> String {
    String::from_utf8_lossy(code).into_owned()
}

/// Compiles the feeds of `cfg` and publishes the snapshot at `cfg.out`.
pub fn build(cfg: &BuildConfig, progress: &dyn Progress) -> Result<BuildSummary> {
    let started = Instant::now();
    let mut skips = Skips {
        lenient: cfg.lenient,
        counts: BTreeMap::new(),
    };
    let mut sources = Vec::new();

    // Places.
    progress.stage("reading airports");
    let airports_file = load("airports", &cfg.airports)?;
    let parsed = feeds::read_airports(&airports_file.name, &airports_file.bytes, cfg.lenient)?;
    skips.add("airports_rows", parsed.skipped.rows as u64);
    let mut airport_rows = parsed.rows;
    airport_rows.sort_by_key(|a| a.iata);
    if airport_rows.len() > usize::from(u16::MAX - 1) {
        return Err(Error::FeedFile {
            file: airports_file.name.clone(),
            message: format!("{} airports exceed the limit of 65534", airport_rows.len()),
        });
    }
    let airports: Vec<Airport> = airport_rows
        .into_iter()
        .map(|r| Airport {
            iata: r.iata,
            icao: r.icao,
            name: r.name,
            city: r.city,
            subd: r.subd,
            country: r.country,
            tz: r.tz,
            lat: r.lat as f32,
            lon: r.lon as f32,
        })
        .collect();
    sources.push(airports_file.source);
    let airport_ids: HashMap<[u8; 3], u16> = airports
        .iter()
        .enumerate()
        .map(|(i, a)| (a.iata, i as u16))
        .collect();

    let mut metros: Vec<Metro> = Vec::new();
    if let Some(path) = &cfg.metros {
        progress.stage("reading metros");
        let f = load("metros", path)?;
        let parsed = feeds::read_metros(&f.name, &f.bytes, cfg.lenient)?;
        skips.add("metros_rows", parsed.skipped.rows as u64);
        let mut groups: BTreeMap<[u8; 3], BTreeSet<u16>> = BTreeMap::new();
        for (row, line) in parsed.rows.iter().zip(&parsed.lines) {
            match airport_ids.get(&row.iata) {
                Some(&id) => {
                    groups.entry(row.metro).or_default().insert(id);
                }
                None => skips.row(
                    "metros_unknown_airport",
                    Error::feed(
                        &f.name,
                        *line,
                        "iata",
                        format!("airport {} is not in the airports feed", station(&row.iata)),
                    ),
                )?,
            }
        }
        metros = groups
            .into_iter()
            .map(|(code, ids)| Metro {
                code,
                airports: ids.into_iter().collect(),
            })
            .collect();
        sources.push(f.source);
    }

    // Schedules.
    let mut legs_not_joined = 0u64;
    let mut patterns: Vec<ssim::FlightPattern> = Vec::new();
    let mut schedules = Vec::with_capacity(cfg.ssim.len());
    let mut schedule_sources = Vec::with_capacity(cfg.ssim.len());
    for path in &cfg.ssim {
        progress.stage(&format!("reading schedule {}", file_name(path)));
        let f = load("ssim", path)?;
        schedules.push(ssim::parse(&f.name, &f.bytes, cfg.lenient)?);
        schedule_sources.push(f.source);
    }
    // A flight given in several files is one leg per date (the duplicate rule across files).
    ssim::drop_duplicates_across_files(&mut schedules, cfg.lenient)?;
    // Consumed, so that each file's records are freed once its patterns are made (they are
    // not needed while the network is compiled).
    for (parsed, source) in schedules.into_iter().zip(schedule_sources) {
        let parsed = &parsed;
        let (mut p, stats) = ssim::patterns(parsed);
        for (field, n) in &parsed.skipped {
            skips.add(&format!("ssim_bad_{field}"), *n as u64);
        }
        skips.add("ssim_duplicate_records", parsed.duplicates as u64);
        skips.add("ssim_conflicting_records", parsed.conflicts as u64);
        // Not a skip: such legs are kept as separate flights; reported so it is visible.
        legs_not_joined += stats.legs_not_joined as u64;
        // Stations must be known airports.
        let mut kept = Vec::with_capacity(p.len());
        for pat in p.drain(..) {
            let unknown = pat.legs.iter().find_map(|l| {
                [(&l.dep, "departure station"), (&l.arr, "arrival station")]
                    .into_iter()
                    .find(|(c, _)| !airport_ids.contains_key(*c))
                    .map(|(c, field)| (l.line, field, station(c)))
            });
            match unknown {
                None => kept.push(pat),
                Some((line, field, code)) => skips.row(
                    "ssim_unknown_station",
                    Error::feed(
                        &parsed.file_name,
                        line,
                        field,
                        format!("station {code} is not in the airports feed"),
                    ),
                )?,
            }
        }
        patterns.extend(kept);
        sources.push(source);
    }

    progress.stage("compiling the flight network");
    let network = compile_network(patterns, &airport_ids, airports.len())?;
    let net = &network.network;

    // Fares.
    let mut fares = Fares {
        market_starts: vec![0],
        ..Fares::default()
    };
    if let Some(path) = &cfg.fares {
        progress.stage("reading fares");
        let f = load("fares", path)?;
        let parsed = feeds::read_fares(&f.name, &f.bytes, cfg.lenient)?;
        skips.add("fares_rows", parsed.skipped.rows as u64);
        fares = compile_fares(&f.name, &parsed, net, &airport_ids, &metros, &mut skips)?;
        sources.push(f.source);
    }

    // Availability.
    let mut availability = Availability::default();
    if let Some(path) = &cfg.availability {
        progress.stage("reading availability");
        let f = load("availability", path)?;
        let parsed = feeds::read_availability(&f.name, &f.bytes, cfg.lenient)?;
        skips.add("availability_rows", parsed.skipped.rows as u64);
        progress.stage("compiling availability");
        availability = compile_availability(&f.name, &parsed, net, &airport_ids, &mut skips)?;
        sources.push(f.source);
    }

    // MCT.
    let mut mct = Mct {
        rules: Vec::new(),
        default_minutes: 60,
    };
    if let Some(path) = &cfg.mct {
        progress.stage("reading minimum connection times");
        let f = load("mct", path)?;
        let parsed = feeds::read_mct(&f.name, &f.bytes, cfg.lenient)?;
        skips.add("mct_rows", parsed.skipped.rows as u64);
        for (row, line) in parsed.rows.iter().zip(&parsed.lines) {
            // A metro code is accepted wherever an airport code is (CONTRACT section 2): a
            // rule on a metro is a rule on each of its airports. A code that is also an
            // airport (DFW) names that airport, as MCT rules are per airport.
            let stations: Vec<u16> = match row.station {
                None => vec![u16::MAX],
                Some(code) => match airport_ids.get(&code) {
                    Some(&id) => vec![id],
                    None => match metros.iter().find(|m| m.code == code) {
                        Some(m) => m.airports.clone(),
                        None => {
                            skips.row(
                                "mct_unknown_station",
                                Error::feed(
                                    &f.name,
                                    *line,
                                    "station",
                                    format!(
                                        "station {} is not an airport or metro of the airports feeds",
                                        station(&code)
                                    ),
                                ),
                            )?;
                            continue;
                        }
                    },
                },
            };
            for station in stations {
                mct.rules.push(MctRule {
                    station,
                    conn_type: row.connection_type as u8,
                    minutes: row.minutes,
                    arrival_carrier: row
                        .arrival_carrier
                        .as_deref()
                        .map(code3)
                        .unwrap_or([b' '; 3]),
                    departure_carrier: row
                        .departure_carrier
                        .as_deref()
                        .map(code3)
                        .unwrap_or([b' '; 3]),
                });
            }
        }
        sources.push(f.source);
    }

    progress.stage("writing the snapshot");
    let places = Places { airports, metros };
    let mut writer = SnapshotWriter::create(&cfg.out)?;
    writer.write_archive(NETWORK, net)?;
    writer.write_archive(FARES, &fares)?;
    writer.write_archive(AVAILABILITY, &availability)?;
    writer.write_archive(MCT, &mct)?;
    writer.write_archive(PLACES, &places)?;
    progress.stage("indexing places");
    let places_dir = writer.places_dir();
    std::fs::create_dir(&places_dir).map_err(|e| Error::io("create directory", &places_dir, e))?;
    format::places::build(&places_dir, &places, &network.traffic_per_airport)?;

    let manifest = Manifest {
        dated_legs: network.dated_legs,
        flights: network.designators,
        dated_flights: network.dated_flights,
        flight_patterns: net.flights.len() as u64,
        legs: net.legs.len() as u64,
        airports: places.airports.len() as u64,
        metros: places.metros.len() as u64,
        carriers: net.carriers.len() as u64,
        fares: fares.fares.len() as u64,
        availability_records: availability.keys.len() as u64,
        mct_rules: mct.rules.len() as u64,
        first_date: network.first_date.map(format::date::format_iso),
        last_date: network.last_date.map(format::date::format_iso),
        sources,
        skipped: skips.counts,
        ..Manifest::default()
    };
    progress.stage("publishing");
    let dir = writer.finish(manifest.clone())?;
    let manifest = format::snapshot::read_manifest(&dir)?;
    Ok(BuildSummary {
        dir,
        legs_not_joined,
        manifest,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

struct CompiledNetwork {
    network: Network,
    dated_legs: u64,
    dated_flights: u64,
    designators: u64,
    first_date: Option<i32>,
    last_date: Option<i32>,
    /// Dated passenger legs departing from or arriving at each airport (orders autocomplete).
    traffic_per_airport: Vec<u64>,
}

fn floor_div(a: i32, b: i32) -> i32 {
    a.div_euclid(b)
}

fn compile_network(
    mut patterns: Vec<ssim::FlightPattern>,
    airport_ids: &HashMap<[u8; 3], u16>,
    n_airports: usize,
) -> Result<CompiledNetwork> {
    patterns.retain(|p| !p.dates.is_empty() && !p.legs.is_empty());
    patterns.sort_by(|a, b| {
        (
            a.airline.as_str(),
            a.flight_number,
            a.suffix,
            a.ivi,
            a.dates.first(),
        )
            .cmp(&(
                b.airline.as_str(),
                b.flight_number,
                b.suffix,
                b.ivi,
                b.dates.first(),
            ))
    });
    let first_day = patterns
        .iter()
        .filter_map(|p| p.dates.first())
        .min()
        .copied()
        .unwrap_or(0);
    let last_day = patterns
        .iter()
        .filter_map(|p| p.dates.last())
        .max()
        .copied()
        .unwrap_or(0);
    let n_days = if patterns.is_empty() {
        0
    } else {
        last_day - first_day + 1
    };
    if n_days > MAX_DAYS {
        return Err(Error::FeedFile {
            file: "schedule".into(),
            message: format!(
                "the schedule spans {n_days} days ({} to {}), more than the limit of {MAX_DAYS}",
                format::date::format_iso(first_day),
                format::date::format_iso(last_day)
            ),
        });
    }
    let words = (n_days as usize).div_ceil(64).max(1);

    let carriers: Vec<[u8; 3]> = patterns
        .iter()
        .map(|p| code3(&p.airline))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let carrier_ids: HashMap<[u8; 3], u16> = carriers
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u16))
        .collect();

    let mut text = TextPool::default();
    let mut set_ids: HashMap<Vec<u64>, u32> = HashMap::new();
    let mut day_sets: Vec<u64> = Vec::new();
    let mut flights = Vec::with_capacity(patterns.len());
    let mut legs = Vec::new();
    let mut dated_legs = 0u64;
    let mut dated_flights = 0u64;
    let mut designators = BTreeSet::new();
    let mut first_date: Option<i32> = None;
    let mut last_date: Option<i32> = None;
    let mut segs: Vec<(u16, SegmentRef)> = Vec::new();
    let mut traffic = vec![0u64; n_airports];
    let mut bits = vec![0u64; words];

    for (fi, p) in patterns.iter().enumerate() {
        bits.iter_mut().for_each(|w| *w = 0);
        for &d in &p.dates {
            let i = (d - first_day) as usize;
            bits[i >> 6] |= 1 << (i & 63);
        }
        let set = match set_ids.get(&bits) {
            Some(&s) => s,
            None => {
                let s = (day_sets.len() / words) as u32;
                day_sets.extend_from_slice(&bits);
                set_ids.insert(bits.clone(), s);
                s
            }
        };
        let n = p.dates.len() as u64;
        dated_flights += n;
        dated_legs += n * p.legs.len() as u64;
        let carrier = code3(&p.airline);
        designators.insert((carrier, p.flight_number, p.suffix));
        let first_leg = legs.len() as u32;
        let (d0, d1) = (p.dates[0], p.dates[p.dates.len() - 1]);
        for l in &p.legs {
            let local = l.dep_utc_min + i32::from(l.dep_utc_offset_min);
            let shift = floor_div(local, 1440);
            first_date = Some(first_date.map_or(d0 + shift, |f| f.min(d0 + shift)));
            last_date = Some(last_date.map_or(d1 + shift, |f| f.max(d1 + shift)));
            let passenger = PASSENGER_SERVICE_TYPES.contains(&l.service_type);
            legs.push(Leg {
                dep: airport_ids.get(&l.dep).copied().unwrap_or(0),
                arr: airport_ids.get(&l.arr).copied().unwrap_or(0),
                dep_utc_min: l.dep_utc_min,
                arr_utc_min: l.arr_utc_min,
                dep_offset_min: l.dep_utc_offset_min,
                arr_offset_min: l.arr_utc_offset_min,
                service_type: l.service_type,
                passenger,
                leg_seq: l.leg_seq,
                aircraft: code3_padded(&l.aircraft),
                prbd: text.add(&l.prbd),
                codeshares: text.add(&l.codeshares.join(" ")),
                operating_carrier: l
                    .operating_carrier
                    .as_deref()
                    .map(code3)
                    .unwrap_or([b' '; 3]),
            });
        }
        let pl = &legs[first_leg as usize..];
        // Both ends of every passenger leg: an airport that is only flown to (every
        // destination of a feed of one city's departures) is as much a place to search for.
        for leg in pl.iter().filter(|l| l.passenger) {
            traffic[leg.dep as usize] += n;
            traffic[leg.arr as usize] += n;
        }
        // Every boardable leg range of the through flight is a segment.
        for i in 0..pl.len() {
            if !pl[i].passenger {
                continue;
            }
            let local = pl[i].dep_utc_min + i32::from(pl[i].dep_offset_min);
            let shift = floor_div(local, 1440);
            let mut visited = vec![pl[i].dep];
            for (j, leg) in pl.iter().enumerate().skip(i) {
                if !leg.passenger || visited.contains(&leg.arr) {
                    break;
                }
                visited.push(leg.arr);
                if !(-128..=127).contains(&shift) {
                    break;
                }
                segs.push((
                    pl[i].dep,
                    SegmentRef {
                        flight: fi as u32,
                        from_leg: i as u8,
                        to_leg: j as u8,
                        dest: leg.arr,
                        dep_day_shift: shift as i8,
                        dep_local_min: local.rem_euclid(1440) as u16,
                    },
                ));
            }
        }
        flights.push(Flight {
            carrier: carrier_ids.get(&carrier).copied().unwrap_or(0),
            number: p.flight_number,
            suffix: p.suffix.unwrap_or(0),
            ivi: p.ivi,
            first_leg,
            n_legs: p.legs.len() as u8,
            day_set: set,
        });
    }

    let (seg_offsets, segments, market_offsets, markets) = model::segment_index(n_airports, segs);

    Ok(CompiledNetwork {
        network: Network {
            first_day,
            n_days: n_days as u32,
            words_per_set: words as u32,
            day_sets,
            carriers,
            flights,
            legs,
            text: text.text,
            seg_offsets,
            segments,
            market_offsets,
            markets,
        },
        dated_legs,
        dated_flights,
        designators: designators.len() as u64,
        first_date,
        last_date,
        traffic_per_airport: traffic,
    })
}

fn code3_padded(s: &str) -> [u8; 3] {
    let mut out = [b' '; 3];
    for (o, b) in out.iter_mut().zip(s.bytes()) {
        *o = b;
    }
    out
}

fn compile_fares(
    file: &str,
    parsed: &feeds::Parsed<feeds::FareRow>,
    net: &Network,
    airport_ids: &HashMap<[u8; 3], u16>,
    metros: &[Metro],
    skips: &mut Skips,
) -> Result<Fares> {
    let carrier_ids: HashMap<[u8; 3], u16> = net
        .carriers
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u16))
        .collect();
    // A fare filed on a city code applies at each of its airports. A code that is both a
    // metro and an airport (HOU: HOU + IAH) is the city: its airports plus that one, as a
    // search for it means.
    let resolve = |code: &[u8; 3]| -> Option<Vec<u16>> {
        let airport = airport_ids.get(code).copied();
        let metro = metros.iter().find(|m| &m.code == code);
        if airport.is_none() && metro.is_none() {
            return None;
        }
        let mut ids: Vec<u16> = metro.map(|m| m.airports.clone()).unwrap_or_default();
        ids.extend(airport);
        ids.sort_unstable();
        ids.dedup();
        Some(ids)
    };
    let mut text = TextPool::default();
    let mut out: Vec<Fare> = Vec::with_capacity(parsed.rows.len());
    let mut not_scheduled = 0u64;
    for (row, &line) in parsed.rows.iter().zip(&parsed.lines) {
        let Some(&carrier) = carrier_ids.get(&code3(&row.carrier)) else {
            not_scheduled += 1;
            continue;
        };
        let (Some(origins), Some(dests)) = (resolve(&row.origin), resolve(&row.destination)) else {
            let (field, code) = if resolve(&row.origin).is_none() {
                ("origin", row.origin)
            } else {
                ("destination", row.destination)
            };
            skips.row(
                "fares_unknown_place",
                Error::feed(
                    file,
                    line,
                    field,
                    format!(
                        "{} is not an airport or metro of the airports feeds",
                        station(&code)
                    ),
                ),
            )?;
            continue;
        };
        let basis = text.add(&row.fare_basis);
        for &o in &origins {
            for &d in &dests {
                if o == d {
                    continue;
                }
                out.push(Fare {
                    carrier,
                    origin: o,
                    dest: d,
                    basis,
                    booking_class: row.booking_class,
                    cabin: row.cabin as u8,
                    passenger_type: row.passenger_type as u8,
                    amount_minor: row.amount.minor,
                    currency: row.amount.currency,
                    first_day: row.first_travel_date.unwrap_or(i32::MIN),
                    last_day: row.last_travel_date.unwrap_or(i32::MAX),
                    days_mask: row.days_of_week,
                    advance_purchase_days: row.advance_purchase_days,
                    refundable: row.refundable,
                    change_fee_minor: row.change_fee.map_or(-1, |m| m.minor),
                });
            }
        }
    }
    skips.add("fares_carrier_not_scheduled", not_scheduled);
    out.par_sort_unstable_by_key(|f| {
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
    for (i, f) in out.iter().enumerate() {
        let k = model::market_key(f.carrier, f.origin, f.dest);
        if market_keys.last() != Some(&k) {
            market_keys.push(k);
            market_starts.push(i as u32);
        }
    }
    market_starts.push(out.len() as u32);
    Ok(Fares {
        fares: out,
        market_keys,
        market_starts,
        text: text.text,
    })
}

/// (carrier, flight number, origin airport).
type LegLookupKey = ([u8; 3], u16, u16);
/// (line, field, message) of an availability row that names no leg.
type RowProblem = (usize, &'static str, String);

fn compile_availability(
    file: &str,
    parsed: &feeds::Parsed<feeds::AvailRow>,
    net: &Network,
    airport_ids: &HashMap<[u8; 3], u16>,
    skips: &mut Skips,
) -> Result<Availability> {
    // (carrier, flight number, origin) -> (flight, leg, local departure day shift).
    let mut by_leg: HashMap<LegLookupKey, Vec<(u32, u8, i32)>> = HashMap::new();
    for (fi, f) in net.flights.iter().enumerate() {
        let s = f.first_leg as usize;
        let carrier = net.carriers[f.carrier as usize];
        for (li, l) in net.legs[s..s + f.n_legs as usize].iter().enumerate() {
            let shift = floor_div(l.dep_utc_min + i32::from(l.dep_offset_min), 1440);
            by_leg
                .entry((carrier, f.number, l.dep))
                .or_default()
                .push((fi as u32, li as u8, shift));
        }
    }
    let words = net.words_per_set as usize;
    let operates = |set: u32, day: i32| -> bool {
        if day < 0 || day >= net.n_days as i32 {
            return false;
        }
        let w = set as usize * words + (day as usize >> 6);
        net.day_sets
            .get(w)
            .is_some_and(|x| (x >> (day & 63)) & 1 == 1)
    };
    let resolved: Vec<std::result::Result<(u64, u16), RowProblem>> = parsed
        .rows
        .par_iter()
        .zip(parsed.lines.par_iter())
        .map(|(row, &line)| {
            let origin = airport_ids.get(&row.origin).ok_or_else(|| {
                (
                    line,
                    "origin",
                    format!("{} is not in the airports feed", station(&row.origin)),
                )
            })?;
            let candidates = by_leg.get(&(row.carrier, row.flight_number, *origin));
            let hit = candidates.and_then(|c| {
                c.iter().find_map(|&(fi, li, shift)| {
                    let day = row.date - shift - net.first_day;
                    let set = net.flights[fi as usize].day_set;
                    operates(set, day).then_some((fi, li, day))
                })
            });
            match hit {
                Some((fi, li, day)) => Ok((
                    model::avail_key(fi, li, day as u16, row.booking_class),
                    row.seats,
                )),
                None => Err((
                    line,
                    "date",
                    format!(
                        "no leg of {}{} departs {} on {}",
                        row.carrier(),
                        row.flight_number,
                        station(&row.origin),
                        format::date::format_iso(row.date)
                    ),
                )),
            }
        })
        .collect();
    let mut pairs = Vec::with_capacity(resolved.len());
    for r in resolved {
        match r {
            Ok(p) => pairs.push(p),
            Err((line, field, msg)) => skips.row(
                "availability_unknown_leg",
                Error::feed(file, line, field, msg),
            )?,
        }
    }
    pairs.par_sort_by_key(|p| p.0);
    let before = pairs.len();
    pairs.dedup_by_key(|p| p.0);
    // Two rows naming the same leg (e.g. the same flight under two suffixes' keys) keep the first.
    skips.add("availability_duplicate_leg", (before - pairs.len()) as u64);
    let (keys, seats) = pairs.into_iter().unzip();
    Ok(Availability { keys, seats })
}
