//! No input makes a feed reader panic: random bytes, random byte flips of the real files and
//! the small fixtures, random truncations. Deterministic (a fixed-seed xorshift).

use indexer::feeds::{read_airports, read_availability, read_fares, read_mct, read_metros};
use std::path::PathBuf;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs every reader strictly and leniently; only panics matter. Returns how many calls
/// succeeded so the work is not optimised away.
fn all_readers(bytes: &[u8]) -> usize {
    let mut ok = 0;
    for lenient in [false, true] {
        ok += usize::from(read_airports("f", bytes, lenient).is_ok());
        ok += usize::from(read_metros("f", bytes, lenient).is_ok());
        ok += usize::from(read_mct("f", bytes, lenient).is_ok());
        ok += usize::from(read_fares("f", bytes, lenient).is_ok());
        ok += usize::from(read_availability("f", bytes, lenient).is_ok());
    }
    ok
}

/// Bytes that matter to a CSV parser and to the field parsers.
const INTERESTING: &[u8] = b",\"\n\r.-+e0123456789 *ABCXYZ\xff\xc3\xef\xbb\xbf";

fn mutate(rng: &mut Rng, base: &[u8], flips: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..flips {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len());
        b[i] = match rng.below(3) {
            0 => rng.next() as u8,
            1 => INTERESTING[rng.below(INTERESTING.len())],
            _ => b[i] ^ (1 << rng.below(8)),
        };
    }
    if rng.below(4) == 0 {
        let n = rng.below(b.len() + 1);
        b.truncate(n);
    }
    b
}

#[test]
fn feeds_fuzz_random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let headers = [
        "iata,icao,name,city,subd,country,tz,lat,lon\n",
        "metro,iata\n",
        "station,connection_type,minutes,arrival_carrier,departure_carrier\n",
        "carrier,origin,destination,fare_basis,booking_class,cabin,passenger_type,amount,currency,first_travel_date,last_travel_date,days_of_week,advance_purchase_days,refundable,change_fee\n",
        "carrier,flight_number,date,origin,booking_class,seats\n",
    ];
    for round in 0..3000 {
        let len = rng.below(300);
        let mut b: Vec<u8> = if round % 2 == 0 {
            Vec::new()
        } else {
            headers[rng.below(headers.len())].as_bytes().to_vec()
        };
        for _ in 0..len {
            b.push(if rng.below(2) == 0 {
                rng.next() as u8
            } else {
                INTERESTING[rng.below(INTERESTING.len())]
            });
        }
        all_readers(&b);
    }
}

#[test]
fn feeds_fuzz_flipped_real_files_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let airports = data("airports.csv");
    // A slice of the big file keeps the test fast; a few rounds use the whole file.
    let head: Vec<u8> = airports[..40_000].to_vec();
    for round in 0..60 {
        let base = if round % 20 == 0 { &airports } else { &head };
        let flips = 1 + rng.below(40);
        let b = mutate(&mut rng, base, flips);
        read_airports("airports.csv", &b, false).ok();
        let lenient = read_airports("airports.csv", &b, true);
        if let Ok(p) = lenient {
            assert!(p.skipped.first_errors.len() <= 10);
        }
    }
    for name in [
        "metro_areas.csv",
        "small/mct.csv",
        "small/fares.csv",
        "small/availability.csv",
    ] {
        let base = data(name);
        for _ in 0..400 {
            let flips = 1 + rng.below(12);
            all_readers(&mutate(&mut rng, &base, flips));
        }
    }
}

#[test]
fn feeds_fuzz_limits_never_panic() {
    // Huge field counts and field sizes, deep quoting, an unterminated quote.
    let many = format!("metro,iata\n{}\n", ",".repeat(100_000));
    assert!(read_metros("m", many.as_bytes(), false).is_err());
    let lenient = read_metros("m", many.as_bytes(), true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lenient.skipped.rows, 1);
    let big = format!("metro,iata\nNYC,{}\n", "J".repeat(1 << 20));
    assert!(read_metros("m", big.as_bytes(), false).is_err());
    let quoted = format!("metro,iata\n\"{}\n", "\"\"".repeat(10_000));
    all_readers(quoted.as_bytes());
    all_readers(b"metro,iata\n\"NYC,JFK\n");
    all_readers(b"\xef\xbb\xbf");
    all_readers(b"\n\n\n");
    all_readers(b"\r");
    all_readers(b"\"");
}
