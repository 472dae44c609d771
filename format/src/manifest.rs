//! The snapshot manifest: counts, sources and the checksums of every file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A feed the snapshot was compiled from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `ssim`, `airports`, `metros`, `mct`, `fares` or `availability`.
    pub kind: String,
    /// The file name as given (its last path component).
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A file of the snapshot directory, relative to it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// xxh3-64 of the whole file, hex.
    pub xxh3: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub format_version: u32,
    pub created_at: String,
    /// Hex digest of all file checksums: two snapshots with the same id have the same files.
    pub snapshot_id: String,
    /// Legs times the dates they operate on (every service type).
    pub dated_legs: u64,
    /// Distinct flight designators (carrier, number, suffix).
    pub flights: u64,
    /// Through flights times their dates.
    pub dated_flights: u64,
    /// Flight patterns stored (one per through flight and set of operating dates).
    pub flight_patterns: u64,
    pub legs: u64,
    pub airports: u64,
    pub metros: u64,
    pub carriers: u64,
    pub fares: u64,
    pub availability_records: u64,
    pub mct_rules: u64,
    /// First and last local departure date of any dated leg, `YYYY-MM-DD`.
    pub first_date: Option<String>,
    pub last_date: Option<String>,
    pub sources: Vec<Source>,
    /// Feed rows skipped under `--lenient` (or dropped as documented), by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Every file of the snapshot except the manifest itself.
    pub files: Vec<FileEntry>,
}
