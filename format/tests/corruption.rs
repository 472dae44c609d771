//! Every single-byte change and every truncation of any file of a small snapshot is refused
//! by `Snapshot::open` (which `indexer verify` runs), with the broken file named.

use std::fs;
use std::path::{Path, PathBuf};

use format::model::{
    Airport, Availability, Fares, Flight, Leg, Market, Mct, MctRule, Metro, Network, Places,
    SegmentRef, TextRef,
};
use format::snapshot::{AVAILABILITY, FARES, MCT, NETWORK, PLACES};
use format::{Manifest, Snapshot, SnapshotWriter};

fn airport(code: &str, country: &str, tz: &str) -> Airport {
    let mut iata = [0u8; 3];
    iata.copy_from_slice(code.as_bytes());
    let mut c = [0u8; 2];
    c.copy_from_slice(country.as_bytes());
    Airport {
        iata,
        icao: String::new(),
        name: format!("{code} Airport"),
        city: format!("{code} City"),
        subd: String::new(),
        country: c,
        tz: tz.into(),
        lat: 1.0,
        lon: 2.0,
    }
}

/// A two-airport network with one daily flight over 10 days.
fn write_small(out: &Path) -> PathBuf {
    let places = Places {
        airports: vec![
            airport("AAA", "US", "America/New_York"),
            airport("BBB", "US", "America/Chicago"),
        ],
        metros: vec![Metro {
            code: *b"XXX",
            airports: vec![0, 1],
        }],
    };
    let network = Network {
        first_day: 20_000,
        n_days: 10,
        words_per_set: 1,
        day_sets: vec![0x3ff],
        carriers: vec![*b"ZZ "],
        flights: vec![Flight {
            carrier: 0,
            number: 12,
            suffix: 0,
            ivi: 1,
            first_leg: 0,
            n_legs: 1,
            day_set: 0,
        }],
        legs: vec![Leg {
            dep: 0,
            arr: 1,
            dep_utc_min: 600,
            arr_utc_min: 720,
            dep_offset_min: -300,
            arr_offset_min: -360,
            service_type: b'J',
            passenger: true,
            leg_seq: 1,
            aircraft: *b"320",
            prbd: TextRef { start: 0, len: 2 },
            codeshares: TextRef::default(),
            operating_carrier: *b"   ",
        }],
        text: "YM".into(),
        seg_offsets: vec![0, 1, 1],
        segments: vec![SegmentRef {
            flight: 0,
            from_leg: 0,
            to_leg: 0,
            dest: 1,
            dep_day_shift: 0,
            dep_local_min: 300,
        }],
        market_offsets: vec![0, 1, 1],
        markets: vec![Market {
            dest: 1,
            start: 0,
            end: 1,
        }],
    };
    let mct = Mct {
        rules: vec![MctRule {
            station: 1,
            conn_type: 0,
            minutes: 45,
            arrival_carrier: *b"   ",
            departure_carrier: *b"   ",
        }],
        default_minutes: 60,
    };
    let mut w = SnapshotWriter::create(out).expect("create writer");
    w.write_archive(NETWORK, &network).expect("network");
    w.write_archive(
        FARES,
        &Fares {
            market_starts: vec![0],
            ..Fares::default()
        },
    )
    .expect("fares");
    w.write_archive(AVAILABILITY, &Availability::default())
        .expect("availability");
    w.write_archive(MCT, &mct).expect("mct");
    w.write_archive(PLACES, &places).expect("places");
    fs::create_dir(w.places_dir()).expect("places dir");
    format::places::build(&w.places_dir(), &places, &[5, 3]).expect("places index");
    let manifest = Manifest {
        flight_patterns: 1,
        legs: 1,
        dated_legs: 10,
        airports: 2,
        ..Manifest::default()
    };
    w.finish(manifest).expect("publish")
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("list") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else if !p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".lock"))
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn a_sound_snapshot_opens_and_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("snap");
    write_small(&out);
    let snap = Snapshot::open(&out).expect("open");
    assert_eq!(snap.network.get().flights.len(), 1);
    assert_eq!(snap.places.get().airport_id(b"BBB"), Some(1));
    assert_eq!(snap.network.get().segments_between(0, 1).len(), 1);
    assert!(snap.network.get().operates(0, 9));
    assert!(!snap.network.get().operates(0, 10));
    format::snapshot::verify(&out).expect("verify");
}

#[test]
fn every_byte_flip_in_every_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("snap");
    let gen = write_small(&out);
    let files = all_files(&gen);
    assert!(
        files.len() >= 7,
        "expected archives, manifest and index files: {files:?}"
    );
    let mut flips = 0;
    for file in &files {
        let original = fs::read(file).expect("read");
        for i in 0..original.len() {
            let mut bad = original.clone();
            bad[i] ^= 0x5a;
            fs::write(file, &bad).expect("write");
            let err = match Snapshot::open(&out) {
                Ok(_) => panic!("flip at byte {i} of {} was accepted", file.display()),
                Err(e) => e.to_string(),
            };
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert!(
                err.contains(&name),
                "error for {name} does not name it: {err}"
            );
            flips += 1;
        }
        fs::write(file, &original).expect("restore");
    }
    assert!(flips > 1000);
    Snapshot::open(&out).expect("restored snapshot opens again");
}

#[test]
fn every_truncation_and_a_missing_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("snap");
    let gen = write_small(&out);
    for file in all_files(&gen) {
        let original = fs::read(&file).expect("read");
        for len in 0..original.len() {
            fs::write(&file, &original[..len]).expect("truncate");
            assert!(
                Snapshot::open(&out).is_err(),
                "truncation of {} to {len} accepted",
                file.display()
            );
        }
        fs::remove_file(&file).expect("remove");
        let err = Snapshot::open(&out)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        // Without its manifest a directory is not a snapshot; any other file is one the
        // manifest lists.
        let want = if file.ends_with(format::snapshot::MANIFEST_FILE) {
            "not a snapshot directory"
        } else {
            "missing (listed in the manifest)"
        };
        assert!(
            err.contains(want),
            "removing {} gave: {err}",
            file.display()
        );
        fs::write(&file, &original).expect("restore");
    }
    Snapshot::open(&out).expect("restored snapshot opens again");
}

#[test]
fn a_file_of_another_format_version_is_refused_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("snap");
    let gen = write_small(&out);
    let path = gen.join(NETWORK.0);
    let mut bytes = fs::read(&path).expect("read");
    let n = bytes.len();
    // The version field sits 16 bytes before the end of the footer.
    bytes[n - 16..n - 12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&path, &bytes).expect("write");
    let err = format::container::check(&path, NETWORK.1, &bytes)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("format version 2") && err.contains("network.rkyv"),
        "{err}"
    );
    assert!(Snapshot::open(&out).is_err());
}

#[test]
fn publishing_twice_swaps_the_link_and_keeps_one_previous_generation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("snap");
    let g1 = write_small(&out);
    let g2 = write_small(&out);
    let g3 = write_small(&out);
    assert_eq!(
        fs::canonicalize(&out).expect("resolve"),
        fs::canonicalize(&g3).expect("resolve")
    );
    assert!(!g1.exists(), "the oldest generation is collected");
    assert!(
        g2.exists(),
        "the previous generation is kept for readers still mapping it"
    );
    // A non-empty foreign directory is never replaced.
    let foreign = tmp.path().join("foreign");
    fs::create_dir(&foreign).expect("mkdir");
    fs::write(foreign.join("keep.txt"), b"mine").expect("write");
    let w = SnapshotWriter::create(&foreign).expect("writer");
    assert!(w.finish(Manifest::default()).is_err());
    assert_eq!(fs::read(foreign.join("keep.txt")).expect("read"), b"mine");
}

/// Rewrites the manifest's entry for `file` (size and checksum) to match its bytes, as a
/// writer that made the damaged file would have: only tantivy's own checks are left.
fn relist(gen: &Path, file: &Path) {
    let mpath = gen.join(format::snapshot::MANIFEST_FILE);
    let bytes = fs::read(&mpath).expect("read manifest");
    let payload = &bytes[..bytes.len() - format::container::FOOTER_LEN];
    let mut m: Manifest = serde_json::from_slice(payload).expect("manifest json");
    let name = file
        .strip_prefix(gen)
        .expect("inside the generation")
        .to_string_lossy()
        .into_owned();
    let content = fs::read(file).expect("read file");
    let entry = m.files.iter_mut().find(|f| f.name == name).expect("listed");
    entry.bytes = content.len() as u64;
    entry.xxh3 = format!("{:016x}", format::container::checksum(&content));
    let mut out = serde_json::to_vec_pretty(&m).expect("json");
    let footer = format::container::footer("manifest", &out);
    out.extend_from_slice(&footer);
    fs::write(&mpath, out).expect("write manifest");
}

/// Regression (fuzzing): a places segment file shorter than tantivy's footer, or with a
/// flipped byte, listed with its real size and checksum, opened as a sound snapshot; the
/// first searcher on it then panicked (`attempt to subtract with overflow` in tantivy).
#[test]
fn a_damaged_places_index_is_refused_even_when_the_manifest_matches_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("snap");
    let gen = write_small(&out);
    let segment_files: Vec<PathBuf> = all_files(&gen.join("places"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".json"))
        .collect();
    assert!(!segment_files.is_empty());
    for file in &segment_files {
        let original = fs::read(file).expect("read");
        let mut flipped = original.clone();
        flipped[0] ^= 0x5a;
        for bad in [b"O\x0b%%\0\0".to_vec(), flipped] {
            fs::write(file, &bad).expect("write");
            relist(&gen, file);
            match Snapshot::open(&out) {
                Ok(_) => panic!("damaged {} was accepted", file.display()),
                Err(e) => assert!(
                    e.to_string().contains("places"),
                    "the error does not name the places index: {e}"
                ),
            }
        }
        fs::write(file, &original).expect("restore");
        relist(&gen, file);
        Snapshot::open(&out).expect("restored snapshot opens again");
    }
}

/// Regression (fuzzing): a places segment file replaced by another file of the index (each
/// sound on its own, with tantivy's checksum), listed with its new size and checksum,
/// opened as a sound snapshot; a places query on it then panicked in tantivy.
#[test]
fn a_places_file_swapped_for_another_is_refused_even_when_the_manifest_matches_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("snap");
    let gen = write_small(&out);
    let files: Vec<PathBuf> = all_files(&gen.join("places"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".json"))
        .collect();
    let ext = |suffix: &str| {
        files
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .expect("segment file")
    };
    let (from, to) = (ext(".fieldnorm"), ext(".idx"));
    let original = fs::read(to).expect("read");
    fs::copy(from, to).expect("swap");
    relist(&gen, to);
    match Snapshot::open(&out) {
        Ok(_) => panic!(
            "{} swapped for {} was accepted",
            to.display(),
            from.display()
        ),
        Err(e) => assert!(e.to_string().contains("places"), "{e}"),
    }
    fs::write(to, &original).expect("restore");
    relist(&gen, to);
    Snapshot::open(&out).expect("restored snapshot opens again");
}

/// Every places segment file swapped for every other one: refused, or (when tantivy reads
/// the other file's bytes as valid) opened; never a panic out of `Snapshot::open`.
#[test]
fn every_places_file_swap_opens_or_is_refused_without_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("snap");
    let gen = write_small(&out);
    let files = all_files(&gen.join("places"));
    for to in &files {
        let original = fs::read(to).expect("read");
        for from in files.iter().filter(|f| *f != to) {
            fs::copy(from, to).expect("swap");
            relist(&gen, to);
            if let Err(e) = Snapshot::open(&out) {
                assert!(e.to_string().contains("places"), "{e}");
            }
        }
        fs::write(to, &original).expect("restore");
        relist(&gen, to);
    }
    Snapshot::open(&out).expect("restored snapshot opens again");
}
