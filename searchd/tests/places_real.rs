//! Autocomplete over the real world's airports (`fixtures/data/airports.csv`, 7,884 rows,
//! and IATA's metro areas) with the Gna sample's schedule: which places come first.

use std::path::{Path, PathBuf};

use format::Snapshot;
use searchd::places::PlacesIndex;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data")
}

fn gna_snapshot(out: &Path) -> Snapshot {
    let d = data();
    let cfg = indexer::build::BuildConfig {
        ssim: vec![d.join("gna_iata_sample.ssim")],
        airports: d.join("airports.csv"),
        metros: Some(d.join("metro_areas.csv")),
        out: out.to_path_buf(),
        ..Default::default()
    };
    indexer::build::build(&cfg, &indexer::build::NoProgress).expect("build the Gna snapshot");
    Snapshot::open(out).expect("open the Gna snapshot")
}

fn codes(snap: &Snapshot, q: &str, limit: usize) -> Vec<String> {
    let index = PlacesIndex::open(snap).expect("open the places index");
    let found = index.find(q, limit).expect("search places");
    found
        .iter()
        .map(|p| format!("{}:{}", p.kind, p.iata))
        .collect()
}

#[test]
fn places_flown_to_outrank_idle_ones_and_ties_are_not_cut_at_random() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // CDG is served by the Gna schedule (arrivals and departures), so the Paris metro
    // (CDG + ORY) and CDG come first; then whole-word matches of "paris" (metro before
    // airport, then by code), and only then `Parish` (a prefix match).
    let paris = codes(&snap, "paris", 10);
    assert_eq!(&paris[..2], ["metro:PAR", "airport:CDG"], "{paris:?}");
    let parish = paris.iter().position(|c| c == "airport:OPL");
    let orly = paris.iter().position(|c| c == "airport:ORY");
    assert!(
        matches!((orly, parish), (Some(o), p) if p.is_none_or(|p| o < p)),
        "Orly (whole word) before St Landry Parish (prefix): {paris:?}"
    );
    // Regression: with every Chicago airport unserved (rank 0), the index's top-k by rank
    // kept an arbitrary 10 of the 11 matches, and the CHI metro could be the one left out.
    // Ties now fall to metro first, then code: the same answer every time.
    let chicago = codes(&snap, "chicago", 10);
    assert_eq!(chicago[0], "metro:CHI", "{chicago:?}");
    assert_eq!(chicago, codes(&snap, "chicago", 10));
    for limit in 1..=10 {
        assert_eq!(
            codes(&snap, "chicago", limit),
            chicago[..limit],
            "limit {limit}"
        );
    }
}

#[test]
fn accented_names_are_found_unaccented_and_accented() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // airports.csv: AES "Ålesund Airport", city "Ålesund".
    assert_eq!(codes(&snap, "alesund", 10), ["airport:AES"]);
    assert_eq!(codes(&snap, "Ålesund", 10), ["airport:AES"]);
    assert_eq!(codes(&snap, "ales", 10)[0], "airport:AES");
}

#[test]
fn a_metro_is_found_by_its_city_before_its_airports() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // No New York airport is in the Gna schedule: the metro leads, its airports follow.
    let ny = codes(&snap, "new york", 10);
    assert_eq!(ny[0], "metro:NYC", "{ny:?}");
    assert!(ny.contains(&"airport:JFK".to_string()) && ny.contains(&"airport:LGA".to_string()));
    // Exact code first, even for a metro code that is also an airport's.
    assert_eq!(&codes(&snap, "dfw", 10)[..2], ["metro:DFW", "airport:DFW"]);
}

#[test]
fn a_typo_is_forgiven_anywhere_but_in_the_first_letter() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // Swapped letters, a missing one, a wrong one: one edit each.
    for q in ["cihcago", "chcago", "chicaho"] {
        let found = codes(&snap, q, 10);
        assert!(found.contains(&"metro:CHI".to_string()), "{q}: {found:?}");
    }
    // The first letter is kept (as completion suggesters do by default).
    let found = codes(&snap, "xhicago", 10);
    assert!(!found.contains(&"metro:CHI".to_string()), "{found:?}");
    // A typo in one word of two.
    let found = codes(&snap, "new yrok", 10);
    assert!(found.contains(&"metro:NYC".to_string()), "{found:?}");
}

#[test]
fn a_short_word_is_a_prefix_not_a_whole_word() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // "la" is a whole word of "Agen-La Garenne" (AGF) and a few dozen other names; with
    // a whole-word tier for it, those (all unserved, so ordered by code) came first, before
    // every busier place whose words merely start with "la".
    let la = codes(&snap, "la", 10);
    assert_ne!(la[0], "airport:AGF", "{la:?}");
    // A served station's code prefix leads: "ru" -> RUN (the Gna hub).
    let ru = codes(&snap, "ru", 10);
    assert_eq!(ru[0], "airport:RUN", "{ru:?}");
}

#[test]
fn a_metro_is_found_by_the_city_its_airports_share_in_their_names() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // YTO: YTZ says Toronto, YYZ (Toronto Pearson) says Mississauga. The tie went to the
    // alphabetically first city, so the metro was "Mississauga" and `toronto` missed it.
    let toronto = codes(&snap, "toronto", 10);
    assert_eq!(toronto[0], "metro:YTO", "{toronto:?}");
    let index = PlacesIndex::open(&snap).expect("open the places index");
    let yto = index.find("yto", 1).expect("search places");
    assert_eq!(yto[0].city, "Toronto", "{yto:?}");
    // ROM: CIA says Roma, FCO says Rome; both spellings find the metro.
    assert!(codes(&snap, "rome", 10).contains(&"metro:ROM".to_string()));
    assert!(codes(&snap, "roma", 10).contains(&"metro:ROM".to_string()));
    // SPK: CTS says "Chitose / Tomakomai", OKD says Sapporo: `sapporo` finds the metro.
    let sapporo = codes(&snap, "sapporo", 10);
    assert_eq!(sapporo[0], "metro:SPK", "{sapporo:?}");
}

#[test]
fn a_metro_code_lists_the_metro_then_its_airports() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // As Duffel's place suggestions (a city with its airports) and Amadeus' city search:
    // `nyc` is New York and its airports, not the metro alone.
    let nyc = codes(&snap, "nyc", 10);
    assert_eq!(nyc[0], "metro:NYC", "{nyc:?}");
    for a in ["airport:EWR", "airport:JFK", "airport:LGA"] {
        assert!(nyc[1..4].contains(&a.to_string()), "{a}: {nyc:?}");
    }
    assert_eq!(codes(&snap, "nyc", 1), ["metro:NYC"]);
}

#[test]
fn a_name_with_an_apostrophe_is_found_typed_without_it() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // ORD: "Chicago O'Hare International Airport". People type `ohare`.
    for q in ["ohare", "chicago ohare", "Chicago O'Hare", "o'hare"] {
        let found = codes(&snap, q, 10);
        assert_eq!(
            found.first().map(String::as_str),
            Some("airport:ORD"),
            "{q}: {found:?}"
        );
    }
    // CXB: "Cox's Bazar".
    assert_eq!(
        codes(&snap, "coxs bazar", 10).first().map(String::as_str),
        Some("airport:CXB")
    );
}

#[test]
fn a_city_prefix_lists_the_citys_main_airports_before_obscure_ones() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let snap = gna_snapshot(&dir.path().join("snap"));
    // No London or Paris airport is in the Gna schedule (every rank is 0), and then code
    // order put Biggin Hill, Changchun, Dijon, ... before Heathrow, which was 19th.
    let lon = codes(&snap, "lon", 10);
    assert_eq!(lon[0], "metro:LON", "{lon:?}");
    for a in ["airport:LHR", "airport:LGW"] {
        assert!(lon.contains(&a.to_string()), "{a}: {lon:?}");
        let londrina = lon.iter().position(|c| c == "airport:LDB");
        let at = lon.iter().position(|c| c == a);
        assert!(
            londrina.is_none_or(|l| at < Some(l)),
            "{a} before Londrina: {lon:?}"
        );
    }
    let par = codes(&snap, "par", 10);
    assert!(par.contains(&"airport:ORY".to_string()), "{par:?}");
}
