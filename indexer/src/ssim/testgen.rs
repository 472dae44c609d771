//! Random but valid SSIM files for property tests (not part of the stable API).
//!
//! `random_ssim(seed)` is deterministic per seed and always parses in strict mode. It
//! exercises: time modes U and L, one or two carrier blocks, periods (some open-ended,
//! some ending before or after the carrier's validity end), day masks, weekly and
//! fortnightly frequency, UTC variations that differ per station and between the two
//! records of a flight split at a DST-like change, blank and explicit date variations
//! (including `A`), through flights of 2-3 legs (sometimes with legs operating on fewer
//! days, sometimes with legs that do not join), IVIs above 99, operational suffixes,
//! exact duplicate records, DEI 010 segment records, filler records, and LF, CRLF or no
//! line ends.

use std::collections::HashSet;

use super::date::{days_from_civil, format_ddmmmyy};

/// The splitmix64 generator: tiny, fast, and good enough to drive tests.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the tiny modulo bias does not matter for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Stations with a standard UTC offset and a DST shift, in minutes.
const STATIONS: [(&str, i32, i32); 10] = [
    ("AAA", 0, 60),
    ("BBB", 60, 60),
    ("CCC", -300, 60),
    ("DDD", 240, 0),
    ("EEE", 330, 0),
    ("FFF", -600, 0),
    ("GGG", 600, 60),
    ("HHH", -180, 0),
    ("III", 120, 60),
    ("JJJ", 780, 0),
];

const AIRLINES: [&str; 4] = ["XX", "YY", "Z9", "ABC"];

const AIRCRAFT: [&str; 4] = ["320", "738", "77W", "   "];

/// A 200-byte record being filled, columns 1-based as in the manual.
struct Line([u8; 200]);

impl Line {
    fn new(kind: u8) -> Self {
        let mut l = Line([b' '; 200]);
        l.0[0] = kind;
        l
    }

    fn put(&mut self, col: usize, s: &str) {
        for (i, b) in s.bytes().enumerate() {
            if let Some(slot) = self.0.get_mut(col - 1 + i) {
                *slot = b;
            }
        }
    }

    fn finish(mut self, serial: &mut u32) -> String {
        *serial += 1;
        self.put(195, &format!("{:06}", *serial % 1_000_000));
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

fn hhmm(min: i32) -> String {
    format!("{:02}{:02}", min / 60, min % 60)
}

fn variation(off: i32) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    format!("{sign}{}", hhmm(off.abs()))
}

fn days_text(mask: u8) -> String {
    (0..7)
        .map(|i| {
            if mask & (1 << i) != 0 {
                char::from(b'1' + i)
            } else {
                ' '
            }
        })
        .collect()
}

/// One leg of a generated flight: stations and the UTC offsets used for each record.
struct GenLeg {
    dep: usize,
    arr: usize,
    days: u8,
    service: u8,
    aircraft: &'static str,
}

/// A random SSIM file (see the module doc). Deterministic per seed.
pub fn random_ssim(seed: u64) -> String {
    let mut rng = SplitMix64::new(seed);
    let mut serial = 0u32;
    let mut lines: Vec<String> = Vec::new();
    let mut used: HashSet<(&str, u16)> = HashSet::new();

    let mut header = Line::new(b'1');
    header.put(2, "AIRLINE STANDARD SCHEDULE DATA SET");
    lines.push(header.finish(&mut serial));
    push_filler(&mut rng, &mut lines);

    let blocks = rng.range(1, 2);
    for _ in 0..blocks {
        let mode_local = rng.chance(50);
        let airline = *rng.pick(&AIRLINES);
        let validity_from = days_from_civil(2000, 1, 1) + rng.range(0, 24_500) as i32;
        let validity_to = validity_from + rng.range(0, 400) as i32;
        let mut carrier = Line::new(b'2');
        carrier.put(2, if mode_local { "L" } else { "U" });
        carrier.put(3, airline);
        carrier.put(15, &format_ddmmmyy(validity_from));
        carrier.put(22, &format_ddmmmyy(validity_to));
        carrier.put(29, &format_ddmmmyy(validity_from));
        carrier.put(72, "P");
        lines.push(carrier.finish(&mut serial));

        let flights = rng.range(1, 8);
        for _ in 0..flights {
            let mut number = rng.range(1, 9999) as u16;
            while !used.insert((airline, number)) {
                number = rng.range(1, 9999) as u16;
            }
            let ivi = rng.range(1, 999) as u16;
            let suffix = if rng.chance(15) {
                Some(b'A' + rng.below(26) as u8)
            } else {
                None
            };
            flight(
                &mut rng,
                &mut lines,
                &mut serial,
                mode_local,
                airline,
                number,
                ivi,
                suffix,
                validity_from,
            );
            // A flight with the same number and IVI but a suffix is a different flight.
            if suffix.is_none() && rng.chance(10) {
                let s = Some(b'A' + rng.below(26) as u8);
                flight(
                    &mut rng,
                    &mut lines,
                    &mut serial,
                    mode_local,
                    airline,
                    number,
                    ivi,
                    s,
                    validity_from,
                );
            }
            push_filler(&mut rng, &mut lines);
        }
        let mut trailer = Line::new(b'5');
        trailer.put(3, airline);
        trailer.put(188, &format!("{:06}", serial % 1_000_000));
        trailer.put(194, "E");
        lines.push(trailer.finish(&mut serial));
        push_filler(&mut rng, &mut lines);
    }

    let end = match rng.below(10) {
        0 => "",
        1 | 2 => "\r\n",
        _ => "\n",
    };
    let mut text = lines.join(end);
    if !end.is_empty() && rng.chance(80) {
        text.push_str(end);
    }
    text
}

fn push_filler(rng: &mut SplitMix64, lines: &mut Vec<String>) {
    for _ in 0..rng.below(3) {
        lines.push("0".repeat(200));
    }
}

#[allow(clippy::too_many_arguments)]
fn flight(
    rng: &mut SplitMix64,
    lines: &mut Vec<String>,
    serial: &mut u32,
    mode_local: bool,
    airline: &str,
    number: u16,
    ivi: u16,
    suffix: Option<u8>,
    validity_from: i32,
) {
    let n_legs = match rng.below(10) {
        0..=4 => 1,
        5..=7 => 2,
        _ => 3,
    };
    // A route of distinct stations; sometimes a leg starts elsewhere (does not join).
    let mut route: Vec<usize> = Vec::new();
    while route.len() < n_legs + 1 {
        let s = rng.below(STATIONS.len() as u64) as usize;
        if !route.contains(&s) {
            route.push(s);
        }
    }
    let first_days = rng.range(1, 127) as u8;
    let mut legs = Vec::new();
    for k in 0..n_legs {
        let mut dep = route[k];
        if k > 0 && rng.chance(12) {
            if let Some(other) = (0..STATIONS.len()).find(|s| !route.contains(s)) {
                dep = other;
            }
        }
        let days = if k > 0 && rng.chance(15) {
            match first_days & rng.range(1, 127) as u8 {
                0 => first_days,
                d => d,
            }
        } else {
            first_days
        };
        let aircraft = *rng.pick(&AIRCRAFT);
        legs.push(GenLeg {
            dep,
            arr: route[k + 1],
            days,
            service: *rng.pick(b"JCGFPK"),
            aircraft,
        });
    }

    // Schedule, possibly split in two records at a DST-like change.
    let start = validity_from + rng.range(-60, 60) as i32;
    let start = start.clamp(days_from_civil(2000, 1, 1), days_from_civil(2068, 1, 1));
    let end = start + rng.range(0, 150) as i32;
    let fortnightly = rng.chance(20);
    let split = if end > start && rng.chance(30) {
        Some(start + rng.range(1, i64::from(end - start)) as i32)
    } else {
        None
    };
    let open = rng.chance(15);
    let segments: Vec<(i32, Option<i32>, bool)> = match split {
        Some(cut) => vec![
            (start, Some(cut - 1), false),
            (cut, (!open).then_some(end), true),
        ],
        None => vec![(start, (!open).then_some(end), false)],
    };
    let t0 = rng.range(0, 1439) as i32;
    let durations: Vec<i32> = (0..n_legs).map(|_| rng.range(30, 1200) as i32).collect();
    let grounds: Vec<i32> = (0..n_legs)
        .map(|_| {
            if rng.chance(5) {
                0 // departs the minute the previous leg arrives
            } else {
                rng.range(15, 400) as i32
            }
        })
        .collect();
    let explicit: Vec<bool> = (0..n_legs).map(|_| rng.chance(50)).collect();
    let duplicate = rng.chance(5);

    for (from, to, dst) in segments {
        let offset = |s: usize| {
            let (_, std, shift) = STATIONS[s];
            if dst {
                std + shift
            } else {
                std
            }
        };
        let mut seg_lines = Vec::new();
        // UTC minutes from the base date; in mode L the base date is local at the origin.
        let mut dep_utc = if mode_local {
            t0 - offset(legs[0].dep)
        } else {
            t0
        };
        for (k, leg) in legs.iter().enumerate() {
            let arr_utc = dep_utc + durations[k];
            let encode = |utc: i32, off: i32| {
                let v = if mode_local { utc + off } else { utc };
                (v.div_euclid(1440), v.rem_euclid(1440))
            };
            let (dv_dep, mut std) = encode(dep_utc, offset(leg.dep));
            let (dv_arr, mut sta) = encode(arr_utc, offset(leg.arr));
            // Sometimes times that no real schedule has, with blank date variations, so
            // the resolution rules meet their edge cases: a later leg departing shortly
            // before the previous arrival, a zero-length leg, an arrival at the departure
            // minute.
            // An explicit departure a day early: before the previous leg's arrival.
            let dv_dep = if k > 0 && dv_dep >= 0 && rng.chance(8) {
                dv_dep - 1
            } else {
                dv_dep
            };
            let mut jitter = false;
            if rng.chance(10) {
                jitter = true;
                std = (std + rng.range(-90, 90) as i32).rem_euclid(1440);
                sta = (sta + rng.range(-90, 90) as i32).rem_euclid(1440);
                if rng.chance(30) {
                    let shift = if mode_local {
                        offset(leg.arr) - offset(leg.dep)
                    } else {
                        0
                    };
                    sta = (std + shift).rem_euclid(1440);
                }
            }
            let dv = |v: i32| match v {
                -1 => "A".to_string(),
                0..=9 => v.to_string(),
                _ => " ".to_string(),
            };
            let mut l = Line::new(b'3');
            if let Some(s) = suffix {
                l.put(2, &char::from(s).to_string());
            }
            l.put(3, airline);
            let num = if rng.chance(50) {
                format!("{number:>4}")
            } else {
                format!("{number:04}")
            };
            l.put(6, &num);
            l.put(10, &format!("{:02}", ivi % 100));
            l.put(12, &format!("{:02}", k + 1));
            l.put(14, &char::from(leg.service).to_string());
            l.put(15, &format_ddmmmyy(from));
            l.put(
                22,
                &to.map_or_else(|| "00XXX00".to_string(), format_ddmmmyy),
            );
            l.put(29, &days_text(leg.days));
            if fortnightly {
                l.put(36, "2");
            } else if rng.chance(10) {
                l.put(36, "1");
            }
            l.put(37, STATIONS[leg.dep].0);
            l.put(40, &hhmm(std));
            l.put(44, &hhmm(std));
            l.put(48, &variation(offset(leg.dep)));
            l.put(55, STATIONS[leg.arr].0);
            l.put(58, &hhmm(sta));
            l.put(62, &hhmm(sta));
            l.put(66, &variation(offset(leg.arr)));
            l.put(73, leg.aircraft);
            l.put(76, "JY");
            if ivi >= 100 {
                l.put(128, &(ivi / 100).to_string());
            }
            if explicit[k] && !jitter {
                if k > 0 && dv_dep >= 1 && rng.chance(20) {
                    // Blank departure (moved on a day to follow the previous leg) with an
                    // explicit arrival a day early: valid alone, but it cannot follow.
                    l.put(194, &dv(dv_arr - 1));
                } else {
                    l.put(193, &dv(dv_dep));
                    l.put(194, &dv(dv_arr));
                }
            }
            seg_lines.push(l);
            if rng.chance(10) {
                let mut s = Line::new(b'4');
                s.0[1..14].copy_from_slice(&seg_lines[seg_lines.len() - 1].0[1..14]);
                if ivi >= 100 {
                    s.put(28, &(ivi / 100).to_string());
                }
                s.put(29, "AB");
                s.put(31, "010");
                s.put(34, STATIONS[leg.dep].0);
                s.put(37, STATIONS[leg.arr].0);
                s.put(
                    40,
                    &format!("AF {:04}/KL{}", rng.range(1, 9999), rng.range(1, 99)),
                );
                seg_lines.push(s);
            }
            dep_utc = arr_utc + grounds[k];
        }
        let copies = if duplicate { 2 } else { 1 };
        for _ in 0..copies {
            for l in &seg_lines {
                lines.push(Line(l.0).finish(serial));
            }
        }
    }
}
