//! The footer every snapshot file ends with, and the checks made on it.
//!
//! Layout (little endian), 40 bytes after the payload:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | payload length |
//! | 8 | xxh3-64 of the payload |
//! | 8 | file kind, ASCII, NUL padded (`network`, `fares`, ...) |
//! | 4 | format version |
//! | 4 | reserved, must be 0 |
//! | 8 | magic `FLTSNAP\x01` |
//!
//! The magic is last so that a truncated file fails on the magic first; every field is
//! checked, so any single flipped byte in the footer is refused as well as any in the payload.

use std::path::Path;

use crate::{Error, Result, FORMAT_VERSION};

pub const MAGIC: [u8; 8] = *b"FLTSNAP\x01";
pub const FOOTER_LEN: usize = 40;

/// The payload of a file whose footer was checked.
pub struct Checked<'a> {
    pub payload: &'a [u8],
    pub checksum: u64,
}

pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn kind_bytes(kind: &str) -> [u8; 8] {
    debug_assert!(kind.len() <= 8 && kind.is_ascii());
    let mut out = [0u8; 8];
    for (slot, b) in out.iter_mut().zip(kind.bytes()) {
        *slot = b;
    }
    out
}

/// The footer for `payload` of `kind`.
pub fn footer(kind: &str, payload: &[u8]) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    f[8..16].copy_from_slice(&checksum(payload).to_le_bytes());
    f[16..24].copy_from_slice(&kind_bytes(kind));
    f[24..28].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    f[32..40].copy_from_slice(&MAGIC);
    f
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Checks the footer of a whole file's bytes and the payload's checksum.
pub fn check<'a>(path: &Path, kind: &str, file: &'a [u8]) -> Result<Checked<'a>> {
    if file.len() < FOOTER_LEN {
        return Err(Error::corrupt(
            path,
            format!(
                "truncated: {} bytes, shorter than the {FOOTER_LEN}-byte footer",
                file.len()
            ),
        ));
    }
    let (payload, f) = file.split_at(file.len() - FOOTER_LEN);
    if f[32..40] != MAGIC {
        return Err(Error::corrupt(
            path,
            "bad magic (not a snapshot file, or truncated)",
        ));
    }
    let version = le_u32(&f[24..28]);
    if version != FORMAT_VERSION {
        return Err(Error::corrupt(
            path,
            format!("format version {version}, this build reads version {FORMAT_VERSION}"),
        ));
    }
    if le_u32(&f[28..32]) != 0 {
        return Err(Error::corrupt(path, "reserved footer field is not zero"));
    }
    if f[16..24] != kind_bytes(kind) {
        let found = String::from_utf8_lossy(&f[16..24])
            .trim_end_matches('\0')
            .to_string();
        return Err(Error::corrupt(
            path,
            format!("file kind is {found:?}, expected {kind:?}"),
        ));
    }
    let len = le_u64(&f[0..8]);
    if len != payload.len() as u64 {
        return Err(Error::corrupt(
            path,
            format!(
                "length mismatch: footer says {len} payload bytes, file has {} (truncated or appended)",
                payload.len()
            ),
        ));
    }
    let stored = le_u64(&f[8..16]);
    let actual = checksum(payload);
    if stored != actual {
        return Err(Error::corrupt(
            path,
            format!("checksum mismatch: stored {stored:016x}, computed {actual:016x}"),
        ));
    }
    Ok(Checked {
        payload,
        checksum: actual,
    })
}

/// A streaming xxh3-64, for checksums of data written in parts.
pub fn checksum_streaming() -> xxhash_rust::xxh3::Xxh3 {
    xxhash_rust::xxh3::Xxh3::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_byte_flip_and_truncation_is_refused() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let mut file = payload.clone();
        file.extend_from_slice(&footer("network", &payload));
        let p = Path::new("x");
        assert!(check(p, "network", &file).is_ok());
        assert!(check(p, "fares", &file).is_err());
        for i in 0..file.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = file.clone();
                bad[i] ^= bit;
                assert!(check(p, "network", &bad).is_err(), "flip at {i} accepted");
            }
        }
        for len in 0..file.len() {
            assert!(
                check(p, "network", &file[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
    }
}
