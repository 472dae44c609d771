#![allow(clippy::unwrap_used)]
//! The `indexer` binary's contract: commands, exit codes, JSON fields, named errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data")
}

fn indexer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_indexer"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn build_gna(out: &Path, extra: &[&str]) -> Output {
    let d = data();
    let mut args: Vec<String> = vec![
        "build".into(),
        "--ssim".into(),
        d.join("gna_iata_sample.ssim").display().to_string(),
        "--airports".into(),
        d.join("airports.csv").display().to_string(),
        "--metros".into(),
        d.join("metro_areas.csv").display().to_string(),
        "--mct".into(),
        d.join("small/mct.csv").display().to_string(),
        "--fares".into(),
        d.join("small/fares.csv").display().to_string(),
        "--availability".into(),
        d.join("small/availability.csv").display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    indexer(&refs)
}

#[test]
fn build_inspect_verify_on_the_gna_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("snap");
    let o = build_gna(&out, &[]);
    assert!(o.status.success(), "build failed: {}", text(&o.stderr));
    assert!(text(&o.stdout).contains("dated legs"));

    let o = indexer(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "format_version",
        "created_at",
        "dated_legs",
        "flights",
        "airports",
        "carriers",
        "fares",
        "availability_records",
        "first_date",
        "last_date",
        "sources",
    ] {
        assert!(v.get(key).is_some(), "inspect lacks {key}: {v}");
    }
    // 514 leg records; every dated leg of the Gna sample as counted by the SSIM reader.
    assert_eq!(v["dated_legs"], 3070);
    assert_eq!(
        v["flights"], 91,
        "designators: 87 numbers plus suffixed A, B and Z flights"
    );
    assert_eq!(v["first_date"], "2005-05-22");
    assert_eq!(v["last_date"], "2005-10-30");
    assert_eq!(v["fares"], 37);
    assert_eq!(v["availability_records"], 37);
    let sources = v["sources"].as_array().unwrap();
    assert!(sources
        .iter()
        .any(|s| s["file"] == "gna_iata_sample.ssim"
            && s["sha256"].as_str().map(str::len) == Some(64)));

    let o = indexer(&["verify", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn verify_names_the_broken_file_and_exits_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("snap");
    assert!(build_gna(&out, &[]).status.success());
    let target = std::fs::canonicalize(&out).unwrap().join("fares.rkyv");
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&target, bytes).unwrap();
    let o = indexer(&["verify", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("fares.rkyv") && err.contains("checksum"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
}

/// Regression: clap's usage errors took several lines.
#[test]
fn bad_usage_exits_2_with_one_line_and_help_exits_0() {
    for (args, named) in [
        (&["build", "--out", "x"][..], "--ssim"),
        (&["frobnicate"][..], "frobnicate"),
        (&["inspect"][..], "DIR"),
    ] {
        let o = indexer(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
    assert_eq!(indexer(&["--help"]).status.code(), Some(0));
}

/// Regression: a missing snapshot directory was reported as "missing (listed in the
/// manifest)", and a missing feed file named its OS error twice.
#[test]
fn a_missing_directory_or_file_is_named_once_and_plainly() {
    let o = indexer(&["inspect", "/nonexistent-snapshot", "--json"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("/nonexistent-snapshot") && err.contains("no such snapshot directory"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let o = indexer(&["verify", tmp.path().to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("not a snapshot directory"), "{err}");
    let o = indexer(&[
        "build",
        "--ssim",
        "/nonexistent.ssim",
        "--airports",
        "/nonexistent.csv",
        "--out",
        tmp.path().join("snap").to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("/nonexistent.csv"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn a_bad_feed_row_names_file_line_and_field_and_lenient_counts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fares = tmp.path().join("fares.csv");
    let mut body = std::fs::read_to_string(data().join("small/fares.csv")).unwrap();
    body.push_str("XX,RUN,CDG,YBAD,Y,economy,ADT,12.345,EUR,,,1234567,0,false,\n");
    let bad_line = body.lines().count();
    std::fs::write(&fares, body).unwrap();
    let d = data();
    let run = |lenient: bool, out: &Path| {
        let mut args = vec![
            "build".to_string(),
            "--ssim".into(),
            d.join("gna_iata_sample.ssim").display().to_string(),
            "--airports".into(),
            d.join("airports.csv").display().to_string(),
            "--fares".into(),
            fares.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        if lenient {
            args.push("--lenient".into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        indexer(&refs)
    };
    let strict_out = tmp.path().join("strict");
    let o = run(false, &strict_out);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("fares.csv:{bad_line}")) && err.contains("amount"),
        "{err}"
    );
    assert!(!strict_out.exists(), "a failed build publishes nothing");

    let o = run(true, &tmp.path().join("lenient"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("skipped           1 fares_rows"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_failed_rebuild_leaves_the_published_snapshot_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("snap");
    assert!(build_gna(&out, &[]).status.success());
    let before = std::fs::canonicalize(&out).unwrap();
    let o = indexer(&[
        "build",
        "--ssim",
        "/nonexistent.ssim",
        "--airports",
        data().join("airports.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("/nonexistent.ssim"));
    assert_eq!(std::fs::canonicalize(&out).unwrap(), before);
    assert!(indexer(&["verify", out.to_str().unwrap()]).status.success());
}
