//! Builds small, valid snapshots for tests: a handful of airports and two metros, an empty
//! network, fares, availability and MCT table. Shared by the unit tests of `places` (through
//! a `#[path]` include) and the integration tests, so it only uses the `format` crate.

use std::path::{Path, PathBuf};

use format::model::{Airport, Availability, Fares, Mct, Metro, Network, Places};
use format::snapshot::{AVAILABILITY, FARES, MCT, NETWORK, PLACES};
use format::{Manifest, SnapshotWriter};

/// (iata, name, city, country, rank)
const AIRPORTS: &[(&str, &str, &str, &str, u64)] = &[
    ("BOS", "Logan International", "Boston", "US", 100),
    ("EWR", "Newark Liberty International", "Newark", "US", 250),
    ("JFK", "John F Kennedy International", "New York", "US", 300),
    ("LGA", "LaGuardia", "New York", "US", 200),
    ("LGW", "Gatwick", "London", "GB", 150),
    ("LHR", "Heathrow", "London", "GB", 400),
    (
        "SFO",
        "San Francisco International",
        "San Francisco",
        "US",
        220,
    ),
    ("YYZ", "Toronto Pearson International", "Toronto", "CA", 90),
];

/// The places of the test snapshot; `variant` shifts the ranks so that every variant has
/// different file contents (and so a different snapshot id).
pub fn test_places(variant: u64) -> (Places, Vec<u64>) {
    let airports: Vec<Airport> = AIRPORTS
        .iter()
        .map(|&(iata, name, city, country, _)| Airport {
            iata: code3(iata),
            icao: String::new(),
            name: name.to_string(),
            city: city.to_string(),
            subd: String::new(),
            country: [country.as_bytes()[0], country.as_bytes()[1]],
            tz: "UTC".to_string(),
            lat: 0.0,
            lon: 0.0,
        })
        .collect();
    let id = |code: &str| -> u16 {
        AIRPORTS
            .iter()
            .position(|a| a.0 == code)
            .map(|p| p as u16)
            .unwrap_or(0)
    };
    let metros = vec![
        Metro {
            code: code3("LON"),
            airports: vec![id("LGW"), id("LHR")],
        },
        Metro {
            code: code3("NYC"),
            airports: vec![id("EWR"), id("JFK"), id("LGA")],
        },
    ];
    let rank = AIRPORTS.iter().map(|a| a.4 + variant).collect();
    (Places { airports, metros }, rank)
}

fn code3(s: &str) -> [u8; 3] {
    let b = s.as_bytes();
    [b[0], b[1], b[2]]
}

/// Writes and publishes a test snapshot at `out` (a link to a new generation directory).
/// Returns the generation directory.
pub fn build_test_snapshot(out: &Path, variant: u64) -> PathBuf {
    let (places, rank) = test_places(variant);
    let n = places.airports.len();
    let mut w = SnapshotWriter::create(out).expect("create a snapshot writer");
    std::fs::create_dir_all(w.places_dir()).expect("create the places directory");
    format::places::build(&w.places_dir(), &places, &rank).expect("build the places index");
    let network = Network {
        seg_offsets: vec![0; n + 1],
        market_offsets: vec![0; n + 1],
        ..Network::default()
    };
    w.write_archive(NETWORK, &network).expect("write network");
    let fares = Fares {
        market_starts: vec![0],
        ..Fares::default()
    };
    w.write_archive(FARES, &fares).expect("write fares");
    w.write_archive(AVAILABILITY, &Availability::default())
        .expect("write availability");
    w.write_archive(
        MCT,
        &Mct {
            rules: Vec::new(),
            default_minutes: 60,
        },
    )
    .expect("write mct");
    w.write_archive(PLACES, &places).expect("write places");
    let manifest = Manifest {
        airports: n as u64,
        metros: places.metros.len() as u64,
        ..Manifest::default()
    };
    w.finish(manifest).expect("publish the snapshot")
}
