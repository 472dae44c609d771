//! Snapshots written by earlier builds (committed under `fixtures/data/compat/`, made by its
//! `make.sh`) must open and answer exactly as a snapshot built now from the same feeds: a
//! change to what the indexer writes, or to how searchd reads it, that does not bump
//! `format::FORMAT_VERSION` shows up here instead of in a deployed node's answers.
//!
//! When the format version is bumped on purpose, the older fixtures stay: this test then
//! checks that they are refused with the version named (see `refused_versions`). Each
//! fixture is opened from a copy: opening must not need to write to the repository, and a
//! test must not change it.

mod common;

use std::path::{Path, PathBuf};

use common::copy_dir;
use format::Snapshot;
use searchd::engine::Clock;
use searchd::overlay::Overlay;
use serde_json::Value;

/// Stations of the Gna sample, and the metro its airports file has.
const PLACES: &[&str] = &[
    "CDG", "DZA", "HAH", "JNB", "MJN", "MRS", "MRU", "NOS", "RUN", "SEA", "SEZ", "TMM", "TNR",
    "XCR", "ZSE", "PAR",
];

/// A week of June 2005: every day of the week, and the two with availability in
/// `fixtures/data/small` (Thursday 16 and Friday 17).
const DATES: &[&str] = &[
    "2005-06-13",
    "2005-06-14",
    "2005-06-15",
    "2005-06-16",
    "2005-06-17",
    "2005-06-18",
    "2005-06-19",
];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data")
}

/// The clock the oracle uses for the Gna sample: before every advance-purchase limit.
fn clock() -> Clock {
    Clock {
        now_utc_min: i64::from(format::date::days_from_civil(2005, 5, 20)) * 1440,
    }
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The snapshot `indexer build` writes today from the feeds the fixtures were made from.
fn build_now(out: &Path) {
    let d = data();
    let cfg = indexer::build::BuildConfig {
        ssim: vec![d.join("gna_iata_sample.ssim")],
        airports: d.join("compat/airports.csv"),
        metros: Some(d.join("compat/metros.csv")),
        mct: Some(d.join("small/mct.csv")),
        fares: Some(d.join("small/fares.csv")),
        availability: Some(d.join("small/availability.csv")),
        out: out.to_path_buf(),
        ..Default::default()
    };
    indexer::build::build(&cfg, &indexer::build::NoProgress).expect("build the snapshot");
}

/// `meta` without what differs between two snapshots of the same content.
fn comparable(mut meta: Value) -> Value {
    if let Some(m) = meta.as_object_mut() {
        m.remove("snapshot_id");
    }
    meta
}

/// Every committed fixture of the current format version must answer as `now` does.
fn same_answers(old: &Snapshot, now: &Snapshot) {
    let overlay = Overlay::new();
    let mut itineraries = 0usize;
    let mut offers = Vec::new();
    for &date in DATES {
        for &from in PLACES {
            for &to in PLACES {
                if from == to {
                    continue;
                }
                for priced_only in ["true", "false"] {
                    let q = params(&[
                        ("origin", from),
                        ("destination", to),
                        ("date", date),
                        ("max_connections", "2"),
                        ("priced_only", priced_only),
                        ("limit", "1000"),
                    ]);
                    let a = searchd::engine::search(old, &overlay, clock(), &q);
                    let b = searchd::engine::search(now, &overlay, clock(), &q);
                    match (a, b) {
                        (Ok((da, ma)), Ok((db, mb))) => {
                            assert_eq!(
                                da, db,
                                "search {from}-{to} {date} priced_only={priced_only}"
                            );
                            assert_eq!(
                                comparable(ma),
                                comparable(mb),
                                "meta of {from}-{to} {date}"
                            );
                            let its = da["itineraries"].as_array().cloned().unwrap_or_default();
                            itineraries += its.len();
                            offers.extend(
                                its.iter()
                                    .filter_map(|it| it["id"].as_str().map(String::from)),
                            );
                        }
                        (Err(ea), Err(eb)) => assert_eq!(ea.code, eb.code, "{from}-{to} {date}"),
                        (a, b) => panic!("{from}-{to} {date}: {a:?} against {b:?}"),
                    }
                }
            }
        }
    }
    // Not vacuous: the Gna sample has directs, through flights and connections on these days.
    assert!(itineraries > 500, "only {itineraries} itineraries compared");

    // An offer issued by a node on the old snapshot re-prices the same on the new one.
    offers.sort();
    offers.dedup();
    eprintln!(
        "{itineraries} itineraries, {} distinct offers",
        offers.len()
    );
    for id in offers.iter().step_by(7) {
        let a = searchd::engine::offer(old, &overlay, clock(), id).map(|(d, _)| d);
        let b = searchd::engine::offer(now, &overlay, clock(), id).map(|(d, _)| d);
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "offer {id}"),
            (a, b) => panic!("offer {id}: {a:?} against {b:?}"),
        }
    }

    for (from, to) in [
        ("MRU", "CDG"),
        ("RUN", "PAR"),
        ("DZA", "CDG"),
        ("RUN", "MRU"),
    ] {
        let q = params(&[
            ("origin", from),
            ("destination", to),
            ("from", "2005-06-01"),
            ("to", "2005-07-31"),
        ]);
        let a = searchd::engine::calendar(old, &overlay, clock(), &q).map(|(d, _)| d);
        let b = searchd::engine::calendar(now, &overlay, clock(), &q).map(|(d, _)| d);
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "calendar {from}-{to}"),
            (a, b) => panic!("calendar {from}-{to}: {a:?} against {b:?}"),
        }
    }

    for q in [
        "CDG", "cd", "par", "Paris", "run", "Reunion", "maurit", "Maurtius", "zse",
    ] {
        let a = searchd::places::places(old, q, 10).expect("places on the old snapshot");
        let b = searchd::places::places(now, q, 10).expect("places on the new snapshot");
        assert_eq!(a, b, "places {q:?}");
    }
}

#[test]
fn snapshots_of_earlier_builds_answer_as_one_built_now() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let now_dir = dir.path().join("now");
    build_now(&now_dir);
    let now = Snapshot::open(&now_dir).expect("open the snapshot built now");

    let compat = data().join("compat");
    let mut current = 0;
    for e in std::fs::read_dir(&compat).expect("list fixtures/data/compat") {
        let e = e.expect("read a compat entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(version) = name
            .strip_prefix("snapshot-v")
            .and_then(|v| v.parse::<u32>().ok())
        else {
            continue;
        };
        let copy = dir.path().join(&name);
        copy_dir(&e.path(), &copy);
        if version == format::FORMAT_VERSION {
            let old = Snapshot::open(&copy)
                .unwrap_or_else(|err| panic!("{name} (written by an earlier build): {err}"));
            assert_eq!(old.manifest.dated_legs, now.manifest.dated_legs);
            assert_eq!(old.manifest.fares, now.manifest.fares);
            same_answers(&old, &now);
            current += 1;
        } else {
            refused_versions(&copy, version);
        }
    }
    assert!(
        current > 0,
        "no fixture of format version {} under {}: run fixtures/data/compat/make.sh",
        format::FORMAT_VERSION,
        compat.display()
    );
}

/// A fixture of another format version is refused, naming the version, never misread.
fn refused_versions(dir: &Path, version: u32) {
    match Snapshot::open(dir) {
        Ok(_) => panic!("{} (format version {version}) opened", dir.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("format version {version}")),
                "{}: {msg}",
                dir.display()
            );
        }
    }
}

/// The connection the fixtures' README hand-checks (XX109 MRU 18:25 -> RUN 19:05, then
/// XX975 RUN 20:15 -> CDG, 70 minutes against an MCT of 55), read from the committed v1
/// snapshot: the comparison above cannot pass on two equally wrong answers for it.
#[test]
fn the_committed_v1_snapshot_has_the_hand_checked_mru_cdg_connection() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let copy = dir.path().join("v1");
    copy_dir(&data().join("compat/snapshot-v1"), &copy);
    let old = Snapshot::open(&copy).expect("open the committed v1 snapshot");
    let overlay = Overlay::new();
    let q = params(&[
        ("origin", "MRU"),
        ("destination", "CDG"),
        ("date", "2005-06-16"),
        ("priced_only", "false"),
    ]);
    let (d, _) = searchd::engine::search(&old, &overlay, clock(), &q).expect("search MRU-CDG");
    let shapes: Vec<String> = d["itineraries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|it| {
            it["slices"][0]["segments"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    format!(
                        "{}{} {}-{} {}",
                        s["carrier"].as_str().unwrap_or(""),
                        s["flight_number"].as_str().unwrap_or(""),
                        s["origin"].as_str().unwrap_or(""),
                        s["destination"].as_str().unwrap_or(""),
                        s["departure_local"].as_str().unwrap_or(""),
                    )
                })
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect();
    assert!(
        shapes.contains(
            &"XX109 MRU-RUN 2005-06-16T18:25 + XX975 RUN-CDG 2005-06-16T20:15".to_string()
        ),
        "{shapes:#?}"
    );
}
