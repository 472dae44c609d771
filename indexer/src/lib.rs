//! The indexer library: feed readers and the snapshot compiler.
//!
//! `ssim` reads IATA SSIM Chapter 7 schedules into flight patterns, `feeds` reads the CSV
//! feeds (airports, metros, MCT, fares, availability), `build` compiles them into a
//! `format::Snapshot`.

pub mod build;
pub mod error;
pub mod expand;
pub mod feeds;
pub mod ssim;

pub use error::{Error, Result};
