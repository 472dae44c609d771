//! The real airports and metro feeds shipped in `fixtures/data` parse strictly.

use indexer::feeds::{read_airports, read_metros};
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn feeds_real_airports_parse_strictly() {
    let p = read_airports("airports.csv", &data("airports.csv"), false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.rows.len(), 7884);
    assert_eq!(p.skipped.rows, 0);
    // Sorted by iata, hence unique and in order.
    assert!(p.rows.windows(2).all(|w| w[0].iata < w[1].iata));
    let find = |code: &[u8; 3]| {
        p.rows
            .iter()
            .find(|r| &r.iata == code)
            .unwrap_or_else(|| panic!("no {code:?}"))
    };
    let run = find(b"RUN");
    assert_eq!((&run.country, run.tz.as_str()), (b"RE", "Indian/Reunion"));
    assert!((-21.0..-20.0).contains(&run.lat) && (55.0..56.0).contains(&run.lon));
    // A quoted city with a comma, and non-ASCII text.
    assert_eq!(find(b"AAP").city, "Samarinda, Borneo Island");
    assert_eq!(find(b"AES").name, "Ålesund Airport");
    assert_eq!(find(b"AAA").city, "");
    // Every station of the Gna sample is there.
    for code in [
        b"RUN", b"MRU", b"CDG", b"DZA", b"ZSE", b"HAH", b"MJN", b"NOS", b"TNR", b"JNB", b"MRS",
        b"SEZ", b"TMM", b"SEA", b"XCR",
    ] {
        find(code);
    }
}

#[test]
fn feeds_real_metros_parse_strictly() {
    let p = read_metros("metro_areas.csv", &data("metro_areas.csv"), false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.rows.len(), 90);
    assert_eq!(p.skipped.rows, 0);
    let mut nyc: Vec<[u8; 3]> = p
        .rows
        .iter()
        .filter(|r| &r.metro == b"NYC")
        .map(|r| r.iata)
        .collect();
    nyc.sort();
    assert_eq!(nyc, [*b"EWR", *b"JFK", *b"LGA"]);
    let metros: std::collections::BTreeSet<_> = p.rows.iter().map(|r| r.metro).collect();
    assert_eq!(metros.len(), 41);
    // Every member airport is a real airport.
    let airports = read_airports("airports.csv", &data("airports.csv"), false)
        .unwrap_or_else(|e| panic!("{e}"));
    let codes: std::collections::HashSet<_> = airports.rows.iter().map(|r| r.iata).collect();
    assert!(p.rows.iter().all(|r| codes.contains(&r.iata)));
}

#[test]
fn feeds_real_airports_lenient_counts_damage() {
    // Break three rows of the real file: a bad latitude, a lowercase code, a duplicate.
    // (Lines 21, 31, 40 have no quoted fields.)
    let text = String::from_utf8(data("airports.csv")).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[20] = {
        let mut f: Vec<&str> = lines[20].split(',').collect();
        let n = f.len();
        f[n - 2] = "91";
        f.join(",")
    };
    lines[30] = lines[30].to_lowercase();
    lines[40] = lines[39].clone();
    let bytes = lines.join("\n").into_bytes();
    let err = read_airports("airports.csv", &bytes, false)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref()
            .map(|e| e.starts_with("airports.csv:21: field `lat`")),
        Some(true),
        "{err:?}"
    );
    let p = read_airports("airports.csv", &bytes, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.rows.len(), 7884 - 3);
    assert_eq!(p.skipped.rows, 3);
    assert!(p.skipped.first_errors[1].starts_with("airports.csv:31: field `iata`"));
    assert!(p.skipped.first_errors[2].contains("duplicate"));
}
