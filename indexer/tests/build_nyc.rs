#![allow(clippy::unwrap_used)]
//! The real New York year (../shared/fixtures) compiles with no error and keeps every
//! dated leg. Skips with a message when the shared fixtures are absent.

use std::path::Path;

#[test]
fn nyc_year_compiles_to_exactly_336_776_dated_legs() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
    let ssim = shared.join("nycflights13_2013.ssim");
    if !ssim.exists() {
        eprintln!("skipped: {} is absent", ssim.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = indexer::build::BuildConfig {
        ssim: vec![ssim],
        airports: shared.join("airports.csv"),
        metros: Some(shared.join("metro_areas.csv")),
        out: tmp.path().join("nyc"),
        ..Default::default()
    };
    let summary = indexer::build::build(&cfg, &indexer::build::NoProgress).unwrap();
    let m = &summary.manifest;
    assert_eq!(m.dated_legs, 336_776);
    assert_eq!(m.first_date.as_deref(), Some("2013-01-01"));
    assert_eq!(m.last_date.as_deref(), Some("2013-12-31"));
    assert_eq!(m.carriers, 16);
    assert!(m.skipped.is_empty(), "{:?}", m.skipped);
    let snap = format::Snapshot::open(&cfg.out).unwrap();
    assert_eq!(indexer::expand::snapshot_dated_legs(&snap).len(), 336_776);
    // UA207 runs two unrelated legs on the same date: both must be there.
    let net = snap.network.get();
    let places = snap.places.get();
    let ua = net.carrier_id(b"UA ").unwrap();
    let jfk = places.airport_id(b"JFK").unwrap();
    let ewr = places.airport_id(b"EWR").unwrap();
    // Monday 2013-08-19: UA207 JFK->LAX 06:30 and EWR->MCO 20:55, both leg 01.
    let day = format::date::parse_iso("2013-08-19").unwrap();
    let (f1, _, _) = net.find_leg(ua, 207, jfk, day).expect("UA207 from JFK");
    let (f2, _, _) = net.find_leg(ua, 207, ewr, day).expect("UA207 from EWR");
    assert_ne!(f1, f2);
    let lax = places.airport_id(b"LAX").unwrap();
    let mco = places.airport_id(b"MCO").unwrap();
    assert_eq!(
        net.flight_legs(&net.flights[f1 as usize])[0]
            .arr
            .to_native(),
        lax
    );
    assert_eq!(
        net.flight_legs(&net.flights[f2 as usize])[0]
            .arr
            .to_native(),
        mco
    );
}
