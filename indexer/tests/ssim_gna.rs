#![allow(clippy::unwrap_used)]
//! The Gna.Iata sample (a real 2005 schedule, airline anonymised as XX): it must parse
//! strictly, and its known quirks must come out as documented in `indexer::ssim`.

use std::collections::{HashMap, HashSet};

use indexer::ssim::date::{days_from_civil, weekday};
use indexer::ssim::{expand, parse, patterns, FlightPattern, SsimFile};

fn gna() -> SsimFile {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/data/gna_iata_sample.ssim"
    );
    let bytes = std::fs::read(path).expect("the Gna sample ships in the repository");
    parse("gna_iata_sample.ssim", &bytes, false).expect("the Gna sample parses strictly")
}

fn find(pats: &[FlightPattern], number: u16, suffix: Option<u8>, ivi: u16) -> Vec<&FlightPattern> {
    pats.iter()
        .filter(|p| {
            p.airline == "XX" && p.flight_number == number && p.suffix == suffix && p.ivi == ivi
        })
        .collect()
}

#[test]
fn gna_parses_strictly_with_all_514_leg_records() {
    let f = gna();
    assert_eq!(f.leg_records_read, 514);
    assert_eq!(f.legs.len(), 514);
    assert_eq!((f.duplicates, f.conflicts, f.skipped_total()), (0, 0, 0));
    assert_eq!(f.carriers.len(), 2);
    let numbers: HashSet<u16> = f.legs.iter().map(|l| l.flight_number).collect();
    assert_eq!(numbers.len(), 87);
    // Every dated leg of every record ends up in exactly one pattern (no record dropped,
    // none duplicated), so the dated-leg count is the records' date count.
    let (pats, stats) = patterns(&f);
    let record_dates: u64 = f.legs.iter().map(|l| l.dates().count() as u64).sum();
    assert_eq!(stats.dated_legs, record_dates);
    assert_eq!(expand(&pats).len() as u64, record_dates);
}

#[test]
fn gna_overnight_legs_with_blank_date_variation_arrive_the_next_day() {
    let f = gna();
    // 74 records whose arrival, read with date variation 0, is not after the departure.
    let overnight: HashSet<usize> = f
        .legs
        .iter()
        .filter(|l| {
            let dep = i32::from(l.std_min) - i32::from(l.dep_utc_offset_min);
            let arr = i32::from(l.sta_min) - i32::from(l.arr_utc_offset_min);
            arr <= dep
        })
        .map(|l| l.line)
        .collect();
    assert_eq!(overnight.len(), 74);
    assert!(f.legs.iter().all(|l| l.arr_date_variation.is_none()));
    let (pats, _) = patterns(&f);
    for p in &pats {
        for leg in &p.legs {
            assert!(leg.arr_utc_min > leg.dep_utc_min, "line {}", leg.line);
            assert!(
                leg.arr_utc_min - leg.dep_utc_min < 24 * 60,
                "line {}",
                leg.line
            );
        }
    }
    // CDG 19:45 (+0200) -> RUN 08:40 (+0400): 17:45Z -> 04:40Z the next day.
    let p = find(&pats, 974, None, 1)
        .into_iter()
        .find(|p| p.legs[0].dep == *b"CDG")
        .expect("XX974 IVI 01 from CDG");
    assert_eq!(p.dates[0], days_from_civil(2005, 5, 22));
    let leg = &p.legs[0];
    assert_eq!(
        (leg.dep_utc_min, leg.arr_utc_min),
        (17 * 60 + 45, 1440 + 4 * 60 + 40)
    );
    let dated = expand(std::slice::from_ref(p));
    let first = &dated[0];
    let arr_local_date = (first.arr_utc + 240).div_euclid(1440) as i32;
    assert_eq!(first.dep_local_date, days_from_civil(2005, 5, 22));
    assert_eq!(arr_local_date, days_from_civil(2005, 5, 23));
}

#[test]
fn gna_xx3777_sea_run_takes_19h40() {
    let (pats, _) = patterns(&gna());
    let p = find(&pats, 3777, None, 1);
    assert_eq!(p.len(), 1);
    let leg = &p[0].legs[0];
    assert_eq!((leg.dep, leg.arr), (*b"SEA", *b"RUN"));
    // SEA 09:00 -0700 = 16:00Z; RUN 15:40 +0400 = 11:40Z the next day.
    assert_eq!(
        (leg.dep_utc_offset_min, leg.arr_utc_offset_min),
        (-420, 240)
    );
    assert_eq!(leg.dep_utc_min, 16 * 60);
    assert_eq!(leg.arr_utc_min, 1440 + 11 * 60 + 40);
    assert_eq!(leg.arr_utc_min - leg.dep_utc_min, 19 * 60 + 40);
    assert_eq!(p[0].dates, vec![days_from_civil(2005, 5, 22)]);
}

#[test]
fn gna_xx974_legs_that_do_not_join_are_separate_flights_and_counted() {
    let f = gna();
    let (pats, stats) = patterns(&f);
    // Exactly the 22 two-leg XX974 variations (RUN->DZA then CDG->RUN) fail to join.
    assert_eq!(stats.legs_not_joined, 22);
    let mut ivis_with_two_legs: HashMap<(usize, u16), usize> = HashMap::new();
    for l in f
        .legs
        .iter()
        .filter(|l| l.flight_number == 974 && l.suffix.is_none())
    {
        *ivis_with_two_legs.entry((l.carrier, l.ivi)).or_default() += 1;
    }
    assert_eq!(ivis_with_two_legs.values().filter(|&&n| n == 2).count(), 22);
    let ivi8 = find(&pats, 974, None, 8);
    assert_eq!(ivi8.len(), 2);
    let mut routes: Vec<([u8; 3], [u8; 3], u8)> = ivi8
        .iter()
        .map(|p| {
            assert_eq!(p.legs.len(), 1);
            (p.legs[0].dep, p.legs[0].arr, p.legs[0].leg_seq)
        })
        .collect();
    routes.sort();
    assert_eq!(routes, vec![(*b"CDG", *b"RUN", 2), (*b"RUN", *b"DZA", 1)]);
    assert_eq!(ivi8[0].dates, ivi8[1].dates);
    // XX974 IVI 01 leg 01 in both carrier blocks: two patterns on disjoint dates.
    let ivi1: Vec<_> = find(&pats, 974, None, 1);
    assert_eq!(ivi1.len(), 2);
    assert_eq!(ivi1[1].dates, vec![days_from_civil(2005, 10, 30)]);
    assert_eq!(ivi1[1].legs[0].dep, *b"RUN");
}

#[test]
fn gna_suffixed_flights_stay_separate() {
    let (pats, _) = patterns(&gna());
    let a = find(&pats, 777, Some(b'A'), 1);
    let b = find(&pats, 777, Some(b'B'), 1);
    let plain = find(&pats, 777, None, 1);
    assert_eq!((a.len(), b.len(), plain.len()), (1, 1, 1));
    assert_eq!((a[0].legs[0].dep, a[0].legs[0].arr), (*b"RUN", *b"DZA"));
    assert_eq!((b[0].legs[0].dep, b[0].legs[0].arr), (*b"DZA", *b"RUN"));
    assert_eq!(a[0].dates, vec![days_from_civil(2005, 5, 27)]);
    assert_eq!(plain[0].dates, vec![days_from_civil(2005, 5, 31)]);
    for (number, dep, arr) in [(974, *b"RUN", *b"ZSE"), (975, *b"ZSE", *b"RUN")] {
        let z = find(&pats, number, Some(b'Z'), 1);
        assert!(!z.is_empty());
        assert!(z
            .iter()
            .all(|p| (p.legs[0].dep, p.legs[0].arr) == (dep, arr)));
        let plain = find(&pats, number, None, 1);
        assert!(plain
            .iter()
            .all(|p| p.legs[0].dep != dep || p.legs[0].arr != arr));
    }
}

#[test]
fn gna_xx975_on_29oct05_arrives_after_the_dst_change() {
    let f = gna();
    let (pats, _) = patterns(&f);
    let dated = expand(&pats);
    let on = |date: i32| {
        dated
            .iter()
            .find(|l| {
                l.flight_number == 975
                    && l.suffix.is_none()
                    && l.dep == *b"RUN"
                    && l.dep_local_date == date
            })
            .expect("XX975 RUN->CDG")
            .clone()
    };
    let oct29 = days_from_civil(2005, 10, 29);
    let leg = on(oct29);
    // RUN 20:15 +0400 = 16:15Z; CDG 04:30 +0100 = 03:30Z on 30 Oct.
    assert_eq!(leg.dep_utc, i64::from(oct29) * 1440 + 16 * 60 + 15);
    assert_eq!(leg.arr_utc, i64::from(oct29 + 1) * 1440 + 3 * 60 + 30);
    let p = find(&pats, 975, None, 17);
    assert_eq!(p[0].legs[1].arr_utc_offset_min, 60);
    // The day before, CDG is still on +0200: 05:30 local is the same 03:30Z.
    let before = on(oct29 - 1);
    assert_eq!(before.arr_utc - before.dep_utc, leg.arr_utc - leg.dep_utc);
    let p = find(&pats, 975, None, 5);
    assert_eq!(p[0].legs[1].arr_utc_offset_min, 120);
}

#[test]
fn gna_multi_leg_flights_carry_the_first_legs_date_on_every_leg() {
    let f = gna();
    let by_line: HashMap<usize, &indexer::ssim::LegRecord> =
        f.legs.iter().map(|l| (l.line, l)).collect();
    let (pats, _) = patterns(&f);
    let multi: Vec<&FlightPattern> = pats.iter().filter(|p| p.legs.len() > 1).collect();
    assert_eq!(multi.len(), 42);
    for p in multi {
        let first = by_line[&p.legs[0].line];
        for leg in &p.legs[1..] {
            let rec = by_line[&leg.line];
            // Same period and days on every leg: the records give the flight's date.
            assert_eq!(
                (rec.period_from, rec.period_to, rec.days),
                (first.period_from, first.period_to, first.days),
                "line {}",
                leg.line
            );
            // And in this sample no later leg departs on a later local date, so the file
            // cannot tell "first leg's date" from "each leg's own date"; both agree.
            let local = leg.dep_utc_min + i32::from(leg.dep_utc_offset_min);
            assert!((0..1440).contains(&local), "line {}", leg.line);
        }
        // Base dates fall on the record's days of operation (mode L: local at origin).
        for &d in &p.dates {
            assert!(first.days & (1 << weekday(d)) != 0);
        }
    }
}
