#![allow(clippy::unwrap_used)]
//! `parse` (strict and lenient), `patterns` and `expand` never panic, whatever the bytes:
//! random bytes, truncated files, and random byte flips of real and generated files.

use std::panic::{catch_unwind, AssertUnwindSafe};

use indexer::ssim::testgen::{random_ssim, SplitMix64};
use indexer::ssim::{expand, parse, patterns};

/// Bytes that move a parser into interesting states.
const INTERESTING: &[u8] = b"0123456789 AXZLU+-\n\r\x00\xff3452";

fn run_all(case: &str, bytes: &[u8]) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for lenient in [false, true] {
            if let Ok(file) = parse("fuzz.ssim", bytes, lenient) {
                let (pats, stats) = patterns(&file);
                let dated = expand(&pats);
                assert_eq!(dated.len() as u64, stats.dated_legs);
            }
        }
    }));
    if outcome.is_err() {
        panic!(
            "{case} panicked; input: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn gna() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/data/gna_iata_sample.ssim"
    ))
    .expect("the Gna sample ships in the repository")
}

fn flip(rng: &mut SplitMix64, bytes: &mut [u8]) {
    let flips = rng.range(1, 12);
    for _ in 0..flips {
        let at = rng.below(bytes.len() as u64) as usize;
        bytes[at] = if rng.chance(70) {
            *rng.pick(INTERESTING)
        } else {
            rng.below(256) as u8
        };
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = SplitMix64::new(1);
    for i in 0..400 {
        let len = match rng.below(3) {
            0 => rng.below(50) as usize,
            1 => 200 * rng.range(1, 6) as usize,
            _ => rng.below(3000) as usize,
        };
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.chance(50) {
                    *rng.pick(INTERESTING)
                } else {
                    rng.below(256) as u8
                }
            })
            .collect();
        // Make some inputs look like records so the field decoders get reached.
        if rng.chance(50) {
            for (k, b) in bytes.iter_mut().enumerate() {
                if k % 200 == 0 {
                    *b = *rng.pick(b"12345");
                }
            }
        }
        run_all(&format!("random bytes #{i}"), &bytes);
    }
}

#[test]
fn truncated_files_never_panic() {
    let gna = gna();
    let mut rng = SplitMix64::new(2);
    for i in 0..150 {
        let cut = rng.below(gna.len() as u64 + 1) as usize;
        run_all(&format!("Gna cut at {cut} (#{i})"), &gna[..cut]);
        let generated = random_ssim(i);
        let cut = rng.below(generated.len() as u64 + 1) as usize;
        run_all(
            &format!("generated {i} cut at {cut}"),
            &generated.as_bytes()[..cut],
        );
    }
}

#[test]
fn byte_flips_never_panic() {
    let gna = gna();
    let mut rng = SplitMix64::new(3);
    let mut rejected = 0;
    for i in 0..300 {
        let mut bytes = gna.clone();
        flip(&mut rng, &mut bytes);
        run_all(&format!("Gna flip #{i}"), &bytes);
        rejected += usize::from(parse("gna", &bytes, false).is_err());
        let mut bytes = random_ssim(1000 + i).into_bytes();
        flip(&mut rng, &mut bytes);
        run_all(&format!("generated flip #{i}"), &bytes);
    }
    // The flips do reach the validation (most flipped files are rejected strictly).
    assert!(rejected > 100, "{rejected}");
}
