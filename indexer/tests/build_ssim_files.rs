#![allow(clippy::unwrap_used)]
//! Several `--ssim` files in one build: the duplicate and conflict rules of one file
//! (module doc of `indexer::ssim`) hold across files too, so a flight given in two files is
//! still one dated leg per date (contract section 3: itineraries are distinct by their
//! sequence of dated legs).

use std::path::{Path, PathBuf};

use indexer::build::{build, BuildConfig, NoProgress};
use indexer::Error;

/// A 200-column record of blanks with `(column, text)` written in.
fn rec(fields: &[(usize, &str)]) -> String {
    let mut b = vec![b' '; 200];
    for (col, text) in fields {
        for (i, c) in text.bytes().enumerate() {
            b[col - 1 + i] = c;
        }
    }
    String::from_utf8(b).unwrap()
}

/// XX 100 CDG 10:00 -> LHR `sta`, daily over `period` (30 days in June 2026 by default).
fn schedule(dir: &Path, name: &str, period: &str, sta: &str) -> PathBuf {
    let lines = [
        rec(&[
            (1, "1"),
            (2, "AIRLINE STANDARD SCHEDULE DATA SET"),
            (195, "000001"),
        ]),
        rec(&[
            (1, "2"),
            (2, "L"),
            (3, "XX"),
            (15, "01JAN2631DEC26"),
            (195, "000002"),
        ]),
        rec(&[
            (1, "3"),
            (3, "XX"),
            (6, " 100"),
            (10, "01"),
            (12, "01"),
            (14, "J"),
            (15, period),
            (29, "1234567"),
            (37, "CDG10001000+0200"),
            (55, &format!("LHR{sta}{sta}+0100")),
            (195, "000003"),
        ]),
        rec(&[(1, "5"), (3, "XX"), (188, "000003E"), (195, "000004")]),
    ];
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn airports(dir: &Path) -> PathBuf {
    let path = dir.join("airports.csv");
    std::fs::write(
        &path,
        "iata,icao,name,city,subd,country,tz,lat,lon\n\
         CDG,LFPG,Charles de Gaulle,Paris,,FR,Europe/Paris,49.0,2.5\n\
         LHR,EGLL,Heathrow,London,,GB,Europe/London,51.5,-0.5\n",
    )
    .unwrap();
    path
}

fn config(dir: &Path, ssim: Vec<PathBuf>, lenient: bool) -> BuildConfig {
    BuildConfig {
        ssim,
        airports: airports(dir),
        lenient,
        out: dir.join("snap"),
        ..Default::default()
    }
}

#[test]
fn the_same_record_in_two_schedule_files_is_one_dated_leg() {
    let tmp = tempfile::tempdir().unwrap();
    let a = schedule(tmp.path(), "a.ssim", "01JUN2630JUN26", "1100");
    let b = schedule(tmp.path(), "b.ssim", "01JUN2630JUN26", "1100");
    let m = build(&config(tmp.path(), vec![a, b], false), &NoProgress)
        .unwrap()
        .manifest;
    assert_eq!((m.dated_legs, m.dated_flights), (30, 30));
    assert_eq!(m.skipped.get("ssim_duplicate_records"), Some(&1));
    let snap = format::Snapshot::open(&tmp.path().join("snap")).unwrap();
    assert_eq!(indexer::expand::snapshot_dated_legs(&snap).len(), 30);
}

#[test]
fn conflicting_records_in_two_schedule_files_fail_strictly_and_keep_the_first_leniently() {
    let tmp = tempfile::tempdir().unwrap();
    let a = schedule(tmp.path(), "a.ssim", "01JUN2630JUN26", "1100");
    // Same key, another arrival time, on common dates (15-30 June).
    let b = schedule(tmp.path(), "b.ssim", "15JUN2631JUL26", "1130");
    match build(
        &config(tmp.path(), vec![a.clone(), b.clone()], false),
        &NoProgress,
    ) {
        Err(Error::Feed {
            file,
            line,
            field,
            message,
        }) => {
            assert_eq!(
                (file.as_str(), line, field.as_str()),
                ("b.ssim", 3, "leg key")
            );
            assert!(message.contains("a.ssim"), "{message}");
        }
        other => panic!("expected a feed error, got {other:?}"),
    }
    let m = build(&config(tmp.path(), vec![a, b], true), &NoProgress)
        .unwrap()
        .manifest;
    assert_eq!(m.dated_legs, 30);
    assert_eq!(m.skipped.get("ssim_conflicting_records"), Some(&1));
}

#[test]
fn the_same_flight_in_two_files_on_disjoint_dates_is_kept_from_both() {
    let tmp = tempfile::tempdir().unwrap();
    let a = schedule(tmp.path(), "a.ssim", "01JUN2630JUN26", "1100");
    let b = schedule(tmp.path(), "b.ssim", "01JUL2631JUL26", "1130");
    let m = build(&config(tmp.path(), vec![a, b], false), &NoProgress)
        .unwrap()
        .manifest;
    assert_eq!(m.dated_legs, 61);
    assert!(m.skipped.is_empty(), "{:?}", m.skipped);
}
