//! `indexer`: compiles airline feeds into a snapshot, inspects and verifies snapshots.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indexer::build::{build, BuildConfig, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Parser, Debug)]
#[command(
    name = "indexer",
    version,
    about = "Compiles airline feeds into a memory-mapped snapshot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile feeds into a snapshot directory, published atomically at --out.
    Build {
        /// IATA SSIM Chapter 7 schedule (repeatable).
        #[arg(long, required = true)]
        ssim: Vec<PathBuf>,
        /// Airports CSV (iata,icao,name,city,subd,country,tz,lat,lon).
        #[arg(long)]
        airports: PathBuf,
        /// Metro areas CSV (metro,iata).
        #[arg(long)]
        metros: Option<PathBuf>,
        /// Minimum connection times CSV.
        #[arg(long)]
        mct: Option<PathBuf>,
        /// Fares CSV.
        #[arg(long)]
        fares: Option<PathBuf>,
        /// Seat availability CSV.
        #[arg(long)]
        availability: Option<PathBuf>,
        /// Skip and count bad feed rows instead of failing on the first one.
        #[arg(long)]
        lenient: bool,
        /// Snapshot path (a link to the newest generation).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a snapshot's manifest and counts.
    Inspect {
        dir: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check every checksum and structure of a snapshot.
    Verify { dir: PathBuf },
}

/// Stage names on a spinner when stderr is a terminal, plain lines otherwise.
struct Bar {
    bar: ProgressBar,
    plain: bool,
}

impl Progress for Bar {
    fn stage(&self, name: &str) {
        if self.plain {
            eprintln!("indexer: {name}");
        } else {
            self.bar.set_message(name.to_string());
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build {
            ssim,
            airports,
            metros,
            mct,
            fares,
            availability,
            lenient,
            out,
        } => {
            let cfg = BuildConfig {
                ssim,
                airports,
                metros,
                mct,
                fares,
                availability,
                lenient,
                out,
            };
            let target = ProgressDrawTarget::stderr();
            let plain = target.is_hidden();
            let bar = ProgressBar::with_draw_target(None, target);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            let progress = Bar { bar, plain };
            let summary = build(&cfg, &progress)
                .with_context(|| format!("failed to build the snapshot {}", cfg.out.display()))?;
            progress.bar.finish_and_clear();
            let m = &summary.manifest;
            println!("snapshot {} ({})", cfg.out.display(), summary.dir.display());
            println!("  dated legs        {}", m.dated_legs);
            println!(
                "  flights           {} designators, {} dated, {} patterns",
                m.flights, m.dated_flights, m.flight_patterns
            );
            println!(
                "  dates             {} .. {}",
                m.first_date.as_deref().unwrap_or("-"),
                m.last_date.as_deref().unwrap_or("-")
            );
            println!("  airports          {} ({} metros)", m.airports, m.metros);
            println!("  carriers          {}", m.carriers);
            println!("  fares             {}", m.fares);
            println!("  availability      {}", m.availability_records);
            println!("  mct rules         {}", m.mct_rules);
            let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
            println!("  size              {bytes} bytes");
            if summary.legs_not_joined > 0 {
                println!(
                    "  legs not joined   {} (kept as separate flights)",
                    summary.legs_not_joined
                );
            }
            for (reason, n) in &m.skipped {
                println!("  skipped           {n} {reason}");
            }
            println!("  took              {} ms", summary.elapsed_ms);
            Ok(())
        }
        Command::Inspect { dir, json } => {
            let snap = format::Snapshot::open(&dir)
                .with_context(|| format!("failed to open the snapshot {}", dir.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&snap.manifest)?);
            } else {
                let m = &snap.manifest;
                println!("snapshot {} ({})", dir.display(), snap.dir.display());
                println!(
                    "format version {}, created {}, id {}",
                    m.format_version, m.created_at, m.snapshot_id
                );
                println!("dated legs {}, flights {}, airports {}, carriers {}, fares {}, availability {}",
                    m.dated_legs, m.flights, m.airports, m.carriers, m.fares, m.availability_records);
                for s in &m.sources {
                    println!(
                        "source {} {} {} ({} bytes)",
                        s.kind, s.file, s.sha256, s.bytes
                    );
                }
            }
            Ok(())
        }
        Command::Verify { dir } => {
            let started = std::time::Instant::now();
            let snap = format::Snapshot::open(&dir)
                .with_context(|| format!("snapshot {} is broken", dir.display()))?;
            let open_ms = started.elapsed().as_secs_f64() * 1e3;
            let bytes: u64 = snap.manifest.files.iter().map(|f| f.bytes).sum();
            println!(
                "ok: {} ({} files, {} bytes checked in {open_ms:.0} ms; resident memory after open {} KiB)",
                dir.display(),
                snap.manifest.files.len() + 1,
                bytes,
                resident_kib().map_or_else(|| "?".to_string(), |k| k.to_string())
            );
            Ok(())
        }
    }
}

/// VmRSS of this process, from /proc (Linux).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// clap's message on one line: its first paragraph (what is wrong), without usage and tip.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
    line.trim_start_matches("error: ").to_string()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("indexer: error: {} (see indexer --help)", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("indexer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
