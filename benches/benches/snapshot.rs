//! Opening a snapshot with full validation (footers, checksums, rkyv structure,
//! cross-references). Reads `BENCH_SNAPSHOT` (a snapshot path); skips when it is unset or
//! absent. Build the global one with the commands in BENCHMARKS.md.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};

fn snapshot_path() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("BENCH_SNAPSHOT")?);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: BENCH_SNAPSHOT={} does not exist", p.display());
        None
    }
}

fn open(c: &mut Criterion) {
    let Some(path) = snapshot_path() else {
        eprintln!("skipped: set BENCH_SNAPSHOT to a snapshot directory");
        return;
    };
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20);
    g.bench_function("open_validated", |b| {
        b.iter(|| match format::Snapshot::open(&path) {
            Ok(s) => std::hint::black_box(s.manifest.dated_legs),
            Err(e) => panic!("opening {}: {e}", path.display()),
        })
    });
    g.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
