#![allow(clippy::unwrap_used)]
//! Property test: for random SSIM files (`indexer::ssim::testgen`), the reader's
//! `expand(patterns(parse(..)))` equals a naive expansion written here from the raw text:
//! every record walked date by date, instants computed directly, with its own date
//! arithmetic. Only the documented rules are shared, not code.

use std::collections::{BTreeMap, HashSet};

use indexer::ssim::testgen::random_ssim;
use indexer::ssim::{expand, parse, patterns};

/// (airline, number, suffix, leg, dep, arr, dep_utc, arr_utc, dep_local_date, service)
/// (block, airline, number, suffix, IVI)
type GroupKey = (usize, String, u16, Option<u8>, u16);

type Row = (
    String,
    u16,
    Option<u8>,
    u8,
    String,
    String,
    i64,
    i64,
    i64,
    u8,
);

// ---- a deliberately simple date implementation ----------------------------------------

fn leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_len(y: i64, m: usize) -> i64 {
    [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][m]
}

/// Days since 1970-01-01 by counting years and months.
fn naive_date(s: &str) -> i64 {
    let months = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let day: i64 = s[0..2].parse().unwrap();
    let month = months.iter().position(|m| *m == &s[2..5]).unwrap();
    let yy: i64 = s[5..7].parse().unwrap();
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    let mut n = 0;
    for y in 1970..year {
        n += if leap(y) { 366 } else { 365 };
    }
    for m in 0..month {
        n += month_len(year, m);
    }
    n + day - 1
}

/// Monday = 0: 1970-01-05 was a Monday.
fn naive_weekday(d: i64) -> i64 {
    (d - 4).rem_euclid(7)
}

fn minutes(s: &str) -> i64 {
    s[0..2].parse::<i64>().unwrap() * 60 + s[2..4].parse::<i64>().unwrap()
}

fn signed_minutes(s: &str) -> i64 {
    let m = minutes(&s[1..5]);
    if s.starts_with('-') {
        -m
    } else {
        m
    }
}

fn date_variation(c: char) -> Option<i64> {
    match c {
        ' ' => None,
        'A' => Some(-1),
        c => Some(i64::from(c.to_digit(10).unwrap())),
    }
}

struct Raw {
    block: usize,
    local: bool,
    airline: String,
    number: u16,
    suffix: Option<u8>,
    ivi: u16,
    leg: u8,
    service: u8,
    from: i64,
    to: i64,
    days: Vec<bool>,
    fortnightly: bool,
    dep: String,
    std: i64,
    dep_var: i64,
    arr: String,
    sta: i64,
    arr_var: i64,
    dv_dep: Option<i64>,
    dv_arr: Option<i64>,
}

impl Raw {
    fn operates(&self, d: i64) -> bool {
        if d < self.from || d > self.to || !self.days[naive_weekday(d) as usize] {
            return false;
        }
        if self.fortnightly {
            let monday = |x: i64| x - naive_weekday(x);
            return ((monday(d) - monday(self.from)) / 7) % 2 == 0;
        }
        true
    }
}

fn naive_expand(text: &str) -> Vec<Row> {
    let lines: Vec<&str> = if text.contains('\n') {
        text.split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        (0..text.len() / 200)
            .map(|i| &text[i * 200..i * 200 + 200])
            .collect()
    };
    let mut raws = Vec::new();
    let mut seen = HashSet::new();
    let (mut block, mut local, mut validity_to) = (0, false, None);
    for l in lines {
        let col = |a: usize, b: usize| &l[a - 1..b];
        let ch = |a: usize| l.as_bytes()[a - 1];
        match ch(1) {
            b'2' => {
                block += 1;
                local = ch(2) == b'L';
                validity_to = Some(naive_date(col(22, 28)));
            }
            b'3' => {
                if !seen.insert(l[..194].to_string()) {
                    continue; // exact duplicate
                }
                let from = naive_date(col(15, 21));
                let to = if col(22, 28) == "00XXX00" {
                    match validity_to {
                        Some(v) if v >= from => v,
                        _ => from + 364,
                    }
                } else {
                    naive_date(col(22, 28))
                };
                let overflow = match ch(128) {
                    b' ' => 0,
                    c => u16::from(c - b'0'),
                };
                raws.push(Raw {
                    block,
                    local,
                    airline: col(3, 5).trim().to_string(),
                    number: col(6, 9).trim().parse().unwrap(),
                    suffix: (ch(2) != b' ').then_some(ch(2)),
                    ivi: overflow * 100 + col(10, 11).parse::<u16>().unwrap(),
                    leg: col(12, 13).parse().unwrap(),
                    service: ch(14),
                    from,
                    to,
                    days: col(29, 35).chars().map(|c| c != ' ').collect(),
                    fortnightly: ch(36) == b'2',
                    dep: col(37, 39).to_string(),
                    std: minutes(col(40, 43)),
                    dep_var: signed_minutes(col(48, 52)),
                    arr: col(55, 57).to_string(),
                    sta: minutes(col(62, 65)),
                    arr_var: signed_minutes(col(66, 70)),
                    dv_dep: date_variation(char::from(ch(193))),
                    dv_arr: date_variation(char::from(ch(194))),
                });
            }
            _ => {}
        }
    }

    let mut groups: BTreeMap<GroupKey, Vec<&Raw>> = BTreeMap::new();
    for r in &raws {
        groups
            .entry((r.block, r.airline.clone(), r.number, r.suffix, r.ivi))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for recs in groups.values() {
        let first = recs.iter().map(|r| r.from).min().unwrap();
        let last = recs.iter().map(|r| r.to).max().unwrap();
        for d in first..=last {
            let mut today: Vec<&&Raw> = recs.iter().filter(|r| r.operates(d)).collect();
            today.sort_by_key(|r| r.leg);
            let mut prev: Option<(&str, i64)> = None;
            for r in today {
                let shift = |var: i64| if r.local { var } else { 0 };
                let dep0 = r.dv_dep.unwrap_or(0) * 1440 + r.std - shift(r.dep_var);
                let arr0 = r.dv_arr.unwrap_or(0) * 1440 + r.sta - shift(r.arr_var);
                // Try to continue the through flight.
                let mut joined = None;
                if let Some((station, prev_arr)) = prev {
                    if station == r.dep {
                        let mut dep = dep0;
                        let mut ok = true;
                        while dep < prev_arr {
                            if r.dv_dep.is_some() {
                                ok = false;
                                break;
                            }
                            dep += 1440;
                        }
                        let mut arr = arr0;
                        while ok && arr <= dep {
                            if r.dv_arr.is_some() {
                                ok = false;
                                break;
                            }
                            arr += 1440;
                        }
                        if ok {
                            joined = Some((dep, arr));
                        }
                    }
                }
                let (dep, arr) = joined.unwrap_or_else(|| {
                    let mut arr = arr0;
                    while arr <= dep0 {
                        arr += 1440;
                    }
                    (dep0, arr)
                });
                prev = Some((&r.arr, arr));
                let dep_utc = d * 1440 + dep;
                out.push((
                    r.airline.clone(),
                    r.number,
                    r.suffix,
                    r.leg,
                    r.dep.clone(),
                    r.arr.clone(),
                    dep_utc,
                    d * 1440 + arr,
                    (dep_utc + r.dep_var).div_euclid(1440),
                    r.service,
                ));
            }
        }
    }
    out.sort();
    out
}

fn reader_expand(name: &str, text: &str, lenient: bool) -> (Vec<Row>, u64) {
    let file = parse(name, text.as_bytes(), lenient).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(file.skipped_total(), 0, "{name}");
    assert_eq!(file.conflicts, 0, "{name}");
    let (pats, stats) = patterns(&file);
    for p in &pats {
        assert!(
            p.dates.windows(2).all(|w| w[0] < w[1]),
            "{name}: dates sorted"
        );
    }
    let dated = expand(&pats);
    assert!(
        dated
            .windows(2)
            .all(|w| (w[0].dep_utc, &w[0].airline) <= (w[1].dep_utc, &w[1].airline)),
        "{name}: expand sorted"
    );
    let mut rows: Vec<Row> = dated
        .iter()
        .map(|l| {
            (
                l.airline.clone(),
                l.flight_number,
                l.suffix,
                l.leg_seq,
                String::from_utf8_lossy(&l.dep).into_owned(),
                String::from_utf8_lossy(&l.arr).into_owned(),
                l.dep_utc,
                l.arr_utc,
                i64::from(l.dep_local_date),
                l.service_type,
            )
        })
        .collect();
    rows.sort();
    (rows, stats.dated_legs)
}

#[test]
fn random_files_expand_like_the_naive_expansion() {
    let mut total = 0;
    for seed in 0..300u64 {
        let text = random_ssim(seed);
        let name = format!("seed {seed}");
        let expected = naive_expand(&text);
        let (got, dated_legs) = reader_expand(&name, &text, false);
        if got != expected {
            let first = got
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(expected.len()));
            panic!(
                "{name}: {} dated legs vs naive {}; first difference at {first}:\n  reader {:?}\n  naive  {:?}\n--- file ---\n{text}",
                got.len(),
                expected.len(),
                got.get(first),
                expected.get(first)
            );
        }
        assert_eq!(dated_legs, got.len() as u64, "{name}");
        // Lenient mode reads a valid file the same way.
        assert_eq!(reader_expand(&name, &text, true).0, got, "{name}");
        total += got.len();
    }
    assert!(
        total > 100_000,
        "the generator should produce real volume: {total}"
    );
}

#[test]
fn generator_is_deterministic_and_covers_the_features() {
    assert_eq!(random_ssim(7), random_ssim(7));
    let mut seen = HashSet::new();
    let (mut multi, mut not_joined, mut dups, mut open) = (0, 0, 0, 0);
    for seed in 0..300u64 {
        let text = random_ssim(seed);
        let file = parse("gen", text.as_bytes(), false).unwrap();
        let (pats, stats) = patterns(&file);
        multi += pats.iter().filter(|p| p.legs.len() > 1).count();
        not_joined += stats.legs_not_joined;
        dups += file.duplicates;
        open += file.legs.iter().filter(|l| l.open_ended).count();
        for l in &file.legs {
            seen.insert(format!("freq{}", l.frequency_rate));
            seen.insert(format!("mode{:?}", file.carriers[l.carrier].time_mode));
            seen.insert(format!("dv{:?}", l.dep_date_variation.is_some()));
            if l.arr_date_variation == Some(-1) || l.dep_date_variation == Some(-1) {
                seen.insert("dvA".to_string());
            }
            if l.suffix.is_some() {
                seen.insert("suffix".to_string());
            }
            if l.ivi > 99 {
                seen.insert("ivi>99".to_string());
            }
            if !l.codeshares.is_empty() {
                seen.insert("dei010".to_string());
            }
        }
        if text.contains("\r\n") {
            seen.insert("crlf".to_string());
        } else if !text.contains('\n') {
            seen.insert("bare".to_string());
        }
    }
    for feature in [
        "freq1",
        "freq2",
        "modeUtc",
        "modeLocal",
        "dvtrue",
        "dvfalse",
        "dvA",
        "suffix",
        "ivi>99",
        "dei010",
        "crlf",
        "bare",
    ] {
        assert!(seen.contains(feature), "{feature} never generated");
    }
    assert!(
        multi > 100 && not_joined > 10 && dups > 5 && open > 20,
        "{multi} {not_joined} {dups} {open}"
    );
}

/// Writes an airports feed naming every station of `text`, in a fixed zone (the snapshot
/// takes instants from SSIM variations, never from the zone).
fn airports_for(text: &str) -> String {
    let mut codes = std::collections::BTreeSet::new();
    for leg in parse("stations", text.as_bytes(), false).unwrap().legs {
        codes.insert(String::from_utf8_lossy(&leg.dep).into_owned());
        codes.insert(String::from_utf8_lossy(&leg.arr).into_owned());
    }
    let mut out = String::from("iata,icao,name,city,subd,country,tz,lat,lon\n");
    for c in codes {
        out.push_str(&format!("{c},,{c} Airport,{c} City,,ZZ,Etc/UTC,0,0\n"));
    }
    out
}

#[test]
fn snapshot_dated_legs_equal_the_naive_expansion() {
    let tmp = tempfile::tempdir().unwrap();
    let mut total = 0;
    let mut refused = 0;
    for seed in 0..120u64 {
        let text = random_ssim(seed);
        let ssim = tmp.path().join(format!("s{seed}.ssim"));
        let airports = tmp.path().join(format!("a{seed}.csv"));
        std::fs::write(&ssim, &text).unwrap();
        std::fs::write(&airports, airports_for(&text)).unwrap();
        let cfg = indexer::build::BuildConfig {
            ssim: vec![ssim],
            airports,
            out: tmp.path().join(format!("snap{seed}")),
            ..Default::default()
        };
        let summary = match indexer::build::build(&cfg, &indexer::build::NoProgress) {
            Ok(s) => s,
            // The generator draws periods over decades; a snapshot refuses to span more
            // than MAX_DAYS. Those seeds test the refusal instead.
            Err(e) if e.to_string().contains("more than the limit") => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("seed {seed}: {e}"),
        };
        let snap = format::Snapshot::open(&cfg.out).unwrap();
        let mut got: Vec<Row> = indexer::expand::snapshot_dated_legs(&snap)
            .iter()
            .map(|l| {
                (
                    l.airline.clone(),
                    l.flight_number,
                    l.suffix,
                    l.leg_seq,
                    String::from_utf8_lossy(&l.dep).into_owned(),
                    String::from_utf8_lossy(&l.arr).into_owned(),
                    l.dep_utc,
                    l.arr_utc,
                    i64::from(l.dep_local_date),
                    l.service_type,
                )
            })
            .collect();
        got.sort();
        let expected = naive_expand(&text);
        assert_eq!(
            got.len(),
            expected.len(),
            "seed {seed}: dated legs in snapshot vs naive"
        );
        assert!(
            got == expected,
            "seed {seed}: snapshot dated legs differ from the naive expansion"
        );
        assert_eq!(
            summary.manifest.dated_legs,
            expected.len() as u64,
            "seed {seed}: manifest count"
        );
        total += got.len();
    }
    assert!(
        refused < 60,
        "most seeds must fit a snapshot: {refused} of 120 refused"
    );
    assert!(
        total > 10_000,
        "too little volume to mean anything: {total}"
    );
    eprintln!(
        "{} seeds compared, {total} dated legs; {refused} refused as too long",
        120 - refused
    );
}
