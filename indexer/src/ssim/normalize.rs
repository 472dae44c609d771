//! Pattern level: joining leg records into through flights with operating dates, and
//! expanding patterns into dated legs. The rules are in the module doc of `ssim`.

use std::collections::HashMap;

use rayon::slice::ParallelSliceMut;

use super::{LegRecord, SsimFile, TimeMode};

/// A through flight (one or more joined legs) and the dates it operates on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlightPattern {
    /// Airline designator, 2-3 characters.
    pub airline: String,
    pub flight_number: u16,
    /// Operational suffix letter, if any.
    pub suffix: Option<u8>,
    pub ivi: u16,
    pub legs: Vec<PatternLeg>,
    /// Sorted flight (base) dates on which this through flight operates.
    pub dates: Vec<i32>,
}

/// One leg of a [`FlightPattern`], with times relative to the flight's base date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternLeg {
    pub leg_seq: u8,
    pub service_type: u8,
    pub dep: [u8; 3],
    pub arr: [u8; 3],
    /// Minutes from 00:00 UTC of the base date.
    pub dep_utc_min: i32,
    pub arr_utc_min: i32,
    /// Local = UTC + offset.
    pub dep_utc_offset_min: i16,
    pub arr_utc_offset_min: i16,
    pub aircraft: String,
    pub prbd: String,
    /// DEI 010 marketing designators, `CC NNNN[S]`.
    pub codeshares: Vec<String>,
    /// DEI 050 operating airline.
    pub operating_carrier: Option<String>,
    /// 1-based line of the type-3 record.
    pub line: usize,
}

/// One leg on one date.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatedLeg {
    pub airline: String,
    pub flight_number: u16,
    pub suffix: Option<u8>,
    pub leg_seq: u8,
    pub dep: [u8; 3],
    pub arr: [u8; 3],
    /// Minutes since 1970-01-01T00:00Z.
    pub dep_utc: i64,
    pub arr_utc: i64,
    /// Local departure date at the origin (days since 1970-01-01).
    pub dep_local_date: i32,
    pub service_type: u8,
}

/// What [`patterns`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Type-3 records used (after dropping duplicates and conflicts).
    pub leg_records: usize,
    pub patterns: usize,
    /// Flights that exist only because a leg did not join the leg before it on the same
    /// date (station mismatch, or an explicit departure before the previous arrival).
    pub legs_not_joined: usize,
    /// Exact duplicate records dropped (from [`SsimFile::duplicates`]).
    pub duplicates: usize,
    /// Conflicting records dropped under `lenient` (from [`SsimFile::conflicts`]).
    pub conflicts: usize,
    /// Records skipped under `lenient` (from [`SsimFile::skipped`]).
    pub skipped: usize,
    /// Sum over patterns of legs x dates.
    pub dated_legs: u64,
}

#[derive(Clone, Copy)]
struct Times {
    dep: i32,
    arr: i32,
}

/// A leg's departure and arrival in minutes from 00:00 UTC of the base date, resolving
/// blank date variations (see the module doc). `prev_arr` is the arrival of the previous
/// leg of the through flight. `None` when an explicit variation makes the leg impossible
/// to follow `prev_arr`.
fn leg_times(leg: &LegRecord, mode: TimeMode, prev_arr: Option<i32>) -> Option<Times> {
    let (mut dep, mut arr) = leg.raw_times(mode);
    if let Some(prev) = prev_arr {
        if dep < prev {
            if leg.dep_date_variation.is_some() {
                return None;
            }
            dep += (prev - dep + 1439) / 1440 * 1440;
        }
    }
    if arr <= dep {
        // `parse` rejects an explicit arrival before its own departure, so an explicit one
        // only lands here after the departure was moved on to follow the previous leg.
        if leg.arr_date_variation.is_some() && prev_arr.is_some() {
            return None;
        }
        arr += ((dep - arr) / 1440 + 1) * 1440;
    }
    Some(Times { dep, arr })
}

/// A chain of legs: `recs[start..end]`, and whether it starts because its first leg did
/// not join the leg before it.
struct Chain {
    start: usize,
    end: usize,
    broken: bool,
}

/// Splits legs operating on one date (in leg-sequence order) into through flights.
fn split_chains(legs: &[LegRecord], recs: &[u32], mode: TimeMode, out: &mut Vec<Chain>) {
    out.clear();
    let mut start = 0;
    let mut prev: Option<([u8; 3], i32)> = None;
    for (i, &r) in recs.iter().enumerate() {
        let Some(leg) = legs.get(r as usize) else {
            continue;
        };
        let joined = match prev {
            Some((station, arr)) if station == leg.dep => leg_times(leg, mode, Some(arr)),
            _ => None,
        };
        let times = match joined {
            Some(t) => t,
            None => {
                if i > 0 {
                    out.push(Chain {
                        start,
                        end: i,
                        broken: !out.is_empty(),
                    });
                    start = i;
                }
                // Without a previous leg the times always resolve.
                leg_times(leg, mode, None).unwrap_or(Times { dep: 0, arr: 1 })
            }
        };
        prev = Some((leg.arr, times.arr));
    }
    if start < recs.len() {
        out.push(Chain {
            start,
            end: recs.len(),
            broken: !out.is_empty(),
        });
    }
}

fn build_pattern(file: &SsimFile, recs: &[u32], mode: TimeMode, dates: Vec<i32>) -> FlightPattern {
    let mut legs = Vec::with_capacity(recs.len());
    let mut prev_arr = None;
    let mut first: Option<&LegRecord> = None;
    for &r in recs {
        let Some(rec) = file.legs.get(r as usize) else {
            continue;
        };
        let t = leg_times(rec, mode, prev_arr)
            .or_else(|| leg_times(rec, mode, None))
            .unwrap_or(Times { dep: 0, arr: 1 });
        prev_arr = Some(t.arr);
        first.get_or_insert(rec);
        legs.push(PatternLeg {
            leg_seq: rec.leg_seq,
            service_type: rec.service_type,
            dep: rec.dep,
            arr: rec.arr,
            dep_utc_min: t.dep,
            arr_utc_min: t.arr,
            dep_utc_offset_min: rec.dep_utc_offset_min,
            arr_utc_offset_min: rec.arr_utc_offset_min,
            aircraft: rec.aircraft.clone(),
            prbd: rec.prbd.clone(),
            codeshares: rec.codeshares.clone(),
            operating_carrier: rec.operating_carrier.clone(),
            line: rec.line,
        });
    }
    FlightPattern {
        airline: first.map(|l| l.airline.clone()).unwrap_or_default(),
        flight_number: first.map_or(0, |l| l.flight_number),
        suffix: first.and_then(|l| l.suffix),
        ivi: first.map_or(0, |l| l.ivi),
        legs,
        dates,
    }
}

/// The through-flight grouping key: (carrier block, airline, flight number, suffix, IVI).
fn group_key(l: &LegRecord) -> (usize, &str, u16, Option<u8>, u16) {
    (l.carrier, &l.airline, l.flight_number, l.suffix, l.ivi)
}

/// Joins the legs of `file` into through flights (see the module doc for the rules).
pub fn patterns(file: &SsimFile) -> (Vec<FlightPattern>, Stats) {
    let legs = &file.legs;
    let mut order: Vec<u32> = (0..legs.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (x, y) = (&legs[a as usize], &legs[b as usize]);
        group_key(x)
            .cmp(&group_key(y))
            .then(x.leg_seq.cmp(&y.leg_seq))
            .then(x.period_from.cmp(&y.period_from))
            .then(x.line.cmp(&y.line))
    });

    let mut out = Vec::new();
    let mut stats = Stats {
        leg_records: legs.len(),
        duplicates: file.duplicates,
        conflicts: file.conflicts,
        skipped: file.skipped_total(),
        ..Stats::default()
    };
    // Scratch space reused across groups, so the per-date work does not allocate.
    let mut chains = Vec::new();
    let mut dated: Vec<(i32, u8, u32)> = Vec::new();
    let mut day_recs: Vec<u32> = Vec::new();
    let mut by_chain: HashMap<Box<[u32]>, usize> = HashMap::new();
    let mut local: Vec<(Box<[u32]>, Vec<i32>, bool)> = Vec::new();

    let mut start = 0;
    while start < order.len() {
        let key = group_key(&legs[order[start] as usize]);
        let mut end = start + 1;
        while end < order.len() && group_key(&legs[order[end] as usize]) == key {
            end += 1;
        }
        let group = &order[start..end];
        start = end;
        let first = &legs[group[0] as usize];
        let mode = file.time_mode(first);

        // Fast path: one record, or legs sharing one schedule (the usual through flight).
        let same_schedule = group.windows(2).all(|w| {
            let (a, b) = (&legs[w[0] as usize], &legs[w[1] as usize]);
            a.leg_seq < b.leg_seq
                && (a.period_from, a.period_to, a.days, a.frequency_rate)
                    == (b.period_from, b.period_to, b.days, b.frequency_rate)
        });
        if same_schedule {
            let dates: Vec<i32> = first.dates().collect();
            if dates.is_empty() {
                continue;
            }
            split_chains(legs, group, mode, &mut chains);
            for c in &chains {
                stats.legs_not_joined += usize::from(c.broken);
                out.push(build_pattern(
                    file,
                    &group[c.start..c.end],
                    mode,
                    dates.clone(),
                ));
            }
            continue;
        }

        // General path: walk the group's dates; legs operating on the same date are
        // split into chains, and dates with the same chain share a pattern.
        dated.clear();
        for &r in group {
            let leg = &legs[r as usize];
            dated.extend(leg.dates().map(|d| (d, leg.leg_seq, r)));
        }
        dated.sort_unstable();
        by_chain.clear();
        local.clear();
        let mut i = 0;
        while i < dated.len() {
            let date = dated[i].0;
            day_recs.clear();
            while i < dated.len() && dated[i].0 == date {
                day_recs.push(dated[i].2);
                i += 1;
            }
            split_chains(legs, &day_recs, mode, &mut chains);
            for c in &chains {
                let chain = &day_recs[c.start..c.end];
                let slot = match by_chain.get(chain) {
                    Some(&slot) => slot,
                    None => {
                        by_chain.insert(chain.into(), local.len());
                        local.push((chain.into(), Vec::new(), false));
                        local.len() - 1
                    }
                };
                if let Some(entry) = local.get_mut(slot) {
                    entry.1.push(date);
                    entry.2 |= c.broken;
                }
            }
        }
        for (chain, dates, broken) in local.drain(..) {
            stats.legs_not_joined += usize::from(broken);
            out.push(build_pattern(file, &chain, mode, dates));
        }
    }
    stats.patterns = out.len();
    stats.dated_legs = out
        .iter()
        .map(|p| p.legs.len() as u64 * p.dates.len() as u64)
        .sum();
    (out, stats)
}

/// Every leg of every pattern on every date, sorted by departure instant, then airline,
/// flight number, suffix, leg sequence, stations, arrival, local date and service type (a
/// total order over the fields, so the result is deterministic).
pub fn expand(patterns: &[FlightPattern]) -> Vec<DatedLeg> {
    // Big schedules (tens of millions of dated legs) make this the slow step, so the sort
    // runs on compact copies (integers only, the flight identity as a rank that sorts like
    // airline, number, suffix), and the legs with their strings are built afterwards in
    // one sequential pass.
    let mut ids: Vec<(&str, u16, Option<u8>)> = patterns
        .iter()
        .map(|p| (p.airline.as_str(), p.flight_number, p.suffix))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut airlines: Vec<&str> = ids.iter().map(|id| id.0).collect();
    airlines.dedup(); // `ids` is sorted, so equal airlines are adjacent
    let total: usize = patterns.iter().map(|p| p.legs.len() * p.dates.len()).sum();
    let mut compact: Vec<Compact> = Vec::with_capacity(total);
    for p in patterns {
        let id = (p.airline.as_str(), p.flight_number, p.suffix);
        let rank = ids.binary_search(&id).unwrap_or(0) as u32;
        let airline = airlines.binary_search(&id.0).unwrap_or(0) as u32;
        for &date in &p.dates {
            let base = i64::from(date) * 1440;
            for leg in &p.legs {
                let dep_utc = base + i64::from(leg.dep_utc_min);
                compact.push(Compact {
                    dep_utc,
                    rank,
                    leg_seq: leg.leg_seq,
                    dep: leg.dep,
                    arr: leg.arr,
                    arr_utc: base + i64::from(leg.arr_utc_min),
                    dep_local_date: (dep_utc + i64::from(leg.dep_utc_offset_min)).div_euclid(1440)
                        as i32,
                    service_type: leg.service_type,
                    flight_number: p.flight_number,
                    suffix: p.suffix,
                    airline,
                });
            }
        }
    }
    compact.par_sort_unstable();
    // Clones of a handful of hot strings: the pass stays sequential in memory.
    let names: Vec<String> = airlines.iter().map(|a| a.to_string()).collect();
    let mut out = Vec::with_capacity(compact.len());
    for c in &compact {
        let Some(name) = names.get(c.airline as usize) else {
            continue;
        };
        out.push(DatedLeg {
            airline: name.clone(),
            flight_number: c.flight_number,
            suffix: c.suffix,
            leg_seq: c.leg_seq,
            dep: c.dep,
            arr: c.arr,
            dep_utc: c.dep_utc,
            arr_utc: c.arr_utc,
            dep_local_date: c.dep_local_date,
            service_type: c.service_type,
        });
    }
    out
}

/// A dated leg without strings, ordered like the output (field order matters: the derived
/// `Ord` compares in declaration order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Compact {
    dep_utc: i64,
    rank: u32,
    leg_seq: u8,
    dep: [u8; 3],
    arr: [u8; 3],
    arr_utc: i64,
    dep_local_date: i32,
    service_type: u8,
    // Functions of `rank`, so they do not change the order.
    flight_number: u16,
    suffix: Option<u8>,
    airline: u32,
}
