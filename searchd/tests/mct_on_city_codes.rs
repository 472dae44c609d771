//! MCT rules filed on a city (metro) code, compiled by the real indexer from the Gna sample.

use std::path::{Path, PathBuf};

use format::Snapshot;
use searchd::engine::Clock;
use searchd::overlay::Overlay;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data")
}

/// The RUN-ZSE itineraries of Monday 2005-05-23 with a snapshot built with `mct` as the MCT
/// feed and the metro `QMU` = MRU added to the metros feed.
fn run_zse(mct: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let d = data();
    let mut metros = std::fs::read_to_string(d.join("metro_areas.csv")).expect("read metros");
    metros.push_str("QMU,MRU\n");
    let metros_path = dir.path().join("metros.csv");
    std::fs::write(&metros_path, metros).expect("write metros");
    let mct_path = dir.path().join("mct.csv");
    std::fs::write(
        &mct_path,
        format!("station,connection_type,minutes,arrival_carrier,departure_carrier\n{mct}"),
    )
    .expect("write mct");
    let out = dir.path().join("snap");
    let cfg = indexer::build::BuildConfig {
        ssim: vec![d.join("gna_iata_sample.ssim")],
        airports: d.join("airports.csv"),
        metros: Some(metros_path),
        mct: Some(mct_path),
        out: out.clone(),
        ..Default::default()
    };
    indexer::build::build(&cfg, &indexer::build::NoProgress).expect("build the snapshot");
    let snap = Snapshot::open(&out).expect("open the snapshot");
    let params: Vec<(String, String)> = [
        ("origin", "RUN"),
        ("destination", "ZSE"),
        ("date", "2005-05-23"),
        ("priced_only", "false"),
        ("sort", "departure"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let clock = Clock {
        now_utc_min: i64::from(format::date::days_from_civil(2005, 5, 1)) * 1440,
    };
    let (data, _) =
        searchd::engine::search(&snap, &Overlay::new(), clock, &params).expect("search");
    data["itineraries"]
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
                        "{}{}",
                        s["carrier"].as_str().unwrap_or(""),
                        s["flight_number"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Regression: the contract accepts a metro code wherever an airport code is, but an MCT
/// row on a metro code was refused as an unknown station (a failed build; with `--lenient`
/// a silently dropped rule). XX102 lands at MRU at 08:40 and XX115 leaves at 16:30 (470
/// minutes): a 480-minute rule on the metro of MRU forbids that connection, as the same rule
/// on MRU does.
#[test]
fn an_mct_rule_on_a_metro_code_applies_at_each_member() {
    let early = "XX102|XX115".to_string();
    // No rule: the 60-minute default allows the connection.
    let all = run_zse("");
    assert_eq!(all, ["XX102|XX115", "XX974Z", "XX108|XX115"]);
    assert!(!run_zse("MRU,*,480,,\n").contains(&early));
    // The same rule on the metro: refused as an unknown station before.
    let on_metro = run_zse("QMU,*,480,,\n");
    assert_eq!(on_metro, ["XX974Z", "XX108|XX115"]);
    assert_eq!(run_zse("QMU,*,460,,\n"), all);
}
