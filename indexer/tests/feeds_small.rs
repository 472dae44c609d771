//! The small hand-written feeds in `fixtures/data/small/` parse strictly and agree with the
//! Gna SSIM sample they accompany (markets flown, dated legs, MCT outcomes the README states).

use indexer::feeds::{
    days_from_civil, mct_minutes, read_availability, read_fares, read_mct, Cabin, PassengerType,
};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A type-3 record of the Gna sample, reduced to what the checks need.
struct Leg {
    flight: u16,
    ivi: String,
    leg: u8,
    first: i32,
    last: i32,
    days: String,
    origin: [u8; 3],
    destination: [u8; 3],
}

fn ssim_date(s: &str) -> i32 {
    let months = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let day: u32 = s[0..2].parse().unwrap_or(0);
    let month = months
        .iter()
        .position(|m| *m == &s[2..5])
        .map_or(0, |i| i as u32 + 1);
    let year: i32 = s[5..7].parse().unwrap_or(0);
    days_from_civil(2000 + year, month, day)
}

fn gna_legs() -> Vec<Leg> {
    let text = String::from_utf8(data("gna_iata_sample.ssim")).unwrap_or_default();
    let code = |s: &str| -> [u8; 3] { s.as_bytes().try_into().unwrap_or([0; 3]) };
    text.lines()
        .filter(|l| l.starts_with('3') && l.len() >= 200)
        .map(|l| Leg {
            flight: l[5..9].trim().parse().unwrap_or(0),
            ivi: l[9..11].to_string(),
            leg: l[11..13].parse().unwrap_or(0),
            first: ssim_date(&l[14..21]),
            last: ssim_date(&l[21..28]),
            days: l[28..35].to_string(),
            origin: code(&l[36..39]),
            destination: code(&l[54..57]),
        })
        .collect()
}

/// 1 = Monday ... 7 = Sunday (1970-01-01 was a Thursday).
fn weekday(days: i32) -> u8 {
    ((days + 3).rem_euclid(7) + 1) as u8
}

#[test]
fn feeds_small_fares_are_valid_and_flown() {
    let p =
        read_fares("fares.csv", &data("small/fares.csv"), false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.rows.len(), 37);
    let legs = gna_legs();
    // Markets flown by one flight (one leg or a through flight: any leg i to a later leg j
    // of the same flight and variation).
    let mut flown: HashSet<([u8; 3], [u8; 3])> = HashSet::new();
    for a in &legs {
        for b in &legs {
            if a.flight == b.flight && a.ivi == b.ivi && a.first == b.first && a.leg <= b.leg {
                flown.insert((a.origin, b.destination));
            }
        }
    }
    assert!(
        flown.contains(&(*b"DZA", *b"CDG")),
        "XX975 DZA-RUN-CDG is a through flight"
    );
    let connection_markets = [(*b"MRU", *b"CDG")];
    for f in &p.rows {
        assert_eq!(f.carrier, "XX");
        assert_eq!(&f.amount.currency, b"EUR");
        let market = (f.origin, f.destination);
        assert!(
            flown.contains(&market) || connection_markets.contains(&market),
            "{f:?}"
        );
    }
    for m in connection_markets {
        assert!(!flown.contains(&m));
    }
    let cabins: BTreeSet<Cabin> = p.rows.iter().map(|f| f.cabin).collect();
    assert_eq!(cabins.len(), 4);
    let ptcs: BTreeSet<PassengerType> = p.rows.iter().map(|f| f.passenger_type).collect();
    assert_eq!(ptcs.len(), 3);
    assert!(p.rows.iter().any(|f| f.first_travel_date.is_some()));
    assert!(p.rows.iter().any(|f| f.days_of_week != 0x7f));
    assert!(p.rows.iter().any(|f| f.advance_purchase_days > 0));
    assert!(p.rows.iter().any(|f| f.change_fee.is_none()));
    // 2-5 booking classes per market.
    let markets: BTreeSet<_> = p.rows.iter().map(|f| (f.origin, f.destination)).collect();
    for m in markets {
        let classes: BTreeSet<u8> = p
            .rows
            .iter()
            .filter(|f| (f.origin, f.destination) == m)
            .map(|f| f.booking_class)
            .collect();
        assert!((2..=5).contains(&classes.len()), "{m:?}");
    }
}

#[test]
fn feeds_small_availability_is_on_real_dated_legs() {
    let p = read_availability("availability.csv", &data("small/availability.csv"), false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.rows.len(), 37);
    let legs = gna_legs();
    for a in &p.rows {
        assert_eq!(a.carrier(), "XX");
        let day = weekday(a.date);
        let operates = legs.iter().any(|l| {
            l.flight == a.flight_number
                && l.origin == a.origin
                && l.first <= a.date
                && a.date <= l.last
                && l.days.as_bytes()[usize::from(day) - 1] == b'0' + day
        });
        assert!(
            operates,
            "no XX{} from {:?} on day {}",
            a.flight_number, a.origin, a.date
        );
    }
    assert!(p.rows.iter().any(|a| a.seats == 0));
}

#[test]
fn feeds_small_mct_outcomes_match_the_readme() {
    let p = read_mct("mct.csv", &data("small/mct.csv"), false).unwrap_or_else(|e| panic!("{e}"));
    let r = &p.rows;
    let ii = (true, true);
    assert_eq!(mct_minutes(r, *b"RUN", ii, "XX", "XX"), 55);
    assert_eq!(mct_minutes(r, *b"RUN", ii, "YY", "XX"), 50);
    assert_eq!(mct_minutes(r, *b"RUN", ii, "YY", "ZZ"), 40);
    assert_eq!(mct_minutes(r, *b"RUN", (false, false), "YY", "ZZ"), 45);
    assert_eq!(mct_minutes(r, *b"CDG", (true, false), "XX", "AF"), 100);
    assert_eq!(mct_minutes(r, *b"CDG", ii, "XX", "XX"), 120);
    assert_eq!(mct_minutes(r, *b"CDG", (false, false), "XX", "XX"), 90);
    assert_eq!(mct_minutes(r, *b"MRU", ii, "XX", "XX"), 90);
    assert_eq!(mct_minutes(r, *b"MRU", (false, true), "XX", "XX"), 60);
}
