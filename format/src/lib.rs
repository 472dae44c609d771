//! The snapshot format shared by `indexer` (writer), `searchd` and `bookd` (readers).
//!
//! A snapshot is a directory of checksummed files published atomically:
//! rkyv archives (`network`, `fares`, `availability`, `mct`, `places`) that readers
//! memory-map and access with zero copies after one validation at open, a tantivy index of
//! places, and a manifest. See `ARCHITECTURE.md` at the repository root.

pub mod container;
pub mod date;
pub mod error;
pub mod manifest;
pub mod model;
pub mod places;
pub mod snapshot;
mod validate;
pub mod wire;

pub use error::{Error, Result};
pub use manifest::Manifest;
pub use snapshot::{Snapshot, SnapshotWriter};

/// Version of every file this crate writes. Bumped on any incompatible change; readers
/// refuse other versions rather than guess.
pub const FORMAT_VERSION: u32 = 1;
