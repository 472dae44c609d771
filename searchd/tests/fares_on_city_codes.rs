//! Fares filed on a city (metro) code, compiled by the real indexer from the Gna sample.

use std::path::{Path, PathBuf};

use format::Snapshot;
use searchd::engine::Clock;
use searchd::overlay::Overlay;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data")
}

/// Regression (found by an independent oracle on real metros: a fare filed NYC-HOU did not
/// price EWR-IAH): a fare on a code that is both a metro and an airport applied at that
/// airport only. Here the metro file adds `DZA` = DZA + HAH (as IATA's HOU = HOU + IAH).
#[test]
fn a_fare_on_a_code_that_is_both_metro_and_airport_applies_to_every_member() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let d = data();
    let mut metros = std::fs::read_to_string(d.join("metro_areas.csv")).expect("read metros");
    metros.push_str("DZA,DZA\nDZA,HAH\n");
    let metros_path = dir.path().join("metros.csv");
    std::fs::write(&metros_path, metros).expect("write metros");
    let fares = dir.path().join("fares.csv");
    std::fs::write(
        &fares,
        "carrier,origin,destination,fare_basis,booking_class,cabin,passenger_type,amount,currency,first_travel_date,last_travel_date,days_of_week,advance_purchase_days,refundable,change_fee\n\
         XX,RUN,DZA,YCITY,Y,economy,ADT,300.00,EUR,,,1234567,0,true,\n",
    )
    .expect("write fares");
    // XX201 on Monday 2005-05-23: RUN-DZA (leg 1) and DZA-HAH (leg 2), one through flight.
    let availability = dir.path().join("availability.csv");
    std::fs::write(
        &availability,
        "carrier,flight_number,date,origin,booking_class,seats\n\
         XX,201,2005-05-23,RUN,Y,9\n\
         XX,201,2005-05-23,DZA,Y,9\n",
    )
    .expect("write availability");
    let out = dir.path().join("snap");
    let cfg = indexer::build::BuildConfig {
        ssim: vec![d.join("gna_iata_sample.ssim")],
        airports: d.join("airports.csv"),
        metros: Some(metros_path),
        fares: Some(fares),
        availability: Some(availability),
        out: out.clone(),
        ..Default::default()
    };
    indexer::build::build(&cfg, &indexer::build::NoProgress).expect("build the snapshot");
    let snap = Snapshot::open(&out).expect("open the snapshot");
    let overlay = Overlay::new();
    let clock = Clock {
        now_utc_min: i64::from(format::date::days_from_civil(2005, 5, 1)) * 1440,
    };
    let price_to = |dest: &str| {
        let params: Vec<(String, String)> = [
            ("origin", "RUN"),
            ("destination", dest),
            ("date", "2005-05-23"),
            ("max_connections", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (data, meta) =
            searchd::engine::search(&snap, &overlay, clock, &params).expect("search");
        let its = data["itineraries"].as_array().cloned().unwrap_or_default();
        let flights: Vec<String> = its
            .iter()
            .map(|it| {
                let seg = &it["slices"][0]["segments"][0];
                format!(
                    "{}{} {}-{} {}",
                    seg["carrier"].as_str().unwrap_or(""),
                    seg["flight_number"].as_str().unwrap_or(""),
                    seg["origin"].as_str().unwrap_or(""),
                    seg["destination"].as_str().unwrap_or(""),
                    it["price"]["amount"].as_str().unwrap_or("null"),
                )
            })
            .collect();
        (flights, meta["total"].as_u64())
    };
    // The fare prices RUN-DZA (the airport) and the through segment RUN-HAH (the metro's
    // other member), both on XX201.
    let (to_dza, _) = price_to("DZA");
    assert!(
        to_dza.contains(&"XX201 RUN-DZA 300.00".to_string()),
        "{to_dza:?}"
    );
    let (to_hah, total) = price_to("HAH");
    assert_eq!(to_hah, ["XX201 RUN-HAH 300.00"], "{to_hah:?}");
    assert_eq!(total, Some(1));
}
