//! Encryption at rest of passenger personal data (ChaCha20-Poly1305, 256-bit key).
//!
//! Blob layout: version byte `1`, 12-byte random nonce, ciphertext with tag. The row's id is
//! the associated data, so a ciphertext copied to another row does not decrypt.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::error::{Error, Result};
use crate::ids::{hex, random_bytes, unhex};

#[derive(Clone)]
pub struct DataKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> DataKey {
        DataKey {
            cipher: ChaCha20Poly1305::new(Key::from_slice(bytes)),
        }
    }

    /// Reads a key file: 64 hex characters (optionally followed by a newline) or 32 raw bytes.
    pub fn load(path: &Path) -> Result<DataKey> {
        let raw = fs::read(path).map_err(|e| Error::io("read data key", path, e))?;
        let bytes: Vec<u8> = if raw.len() == 32 {
            raw
        } else {
            let text = std::str::from_utf8(&raw)
                .map_err(|_| Error::Crypto(format!("{}: not hex text", path.display())))?;
            unhex(text).ok_or_else(|| {
                Error::Crypto(format!("{}: expected 64 hex characters", path.display()))
            })?
        };
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::Crypto(format!("{}: a data key has 32 bytes", path.display())))?;
        Ok(DataKey::from_bytes(&arr))
    }

    /// `--data-key-file` when given, else `STATE/data.key`, generated (mode 0600) if missing.
    pub fn load_or_create(key_file: Option<&Path>, state_dir: &Path) -> Result<DataKey> {
        if let Some(p) = key_file {
            return DataKey::load(p);
        }
        let path = state_dir.join("data.key");
        if path.exists() {
            return DataKey::load(&path);
        }
        fs::create_dir_all(state_dir).map_err(|e| Error::io("create", state_dir, e))?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::Crypto(format!("no randomness: {e}")))?;
        let tmp = state_dir.join(".data.key.tmp");
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("create data key", &tmp, e))?;
        f.write_all(format!("{}\n", hex(&key)).as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io("write data key", &tmp, e))?;
        // Never replace a key another process created meanwhile: link, don't rename.
        match fs::hard_link(&tmp, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("publish data key", &path, e)),
        }
        let _ = fs::remove_file(&tmp);
        DataKey::load(&path)
    }

    pub fn encrypt(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce = random_bytes::<12>();
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn decrypt(&self, aad: &str, blob: &[u8]) -> Result<Vec<u8>> {
        if blob.len() < 13 || blob[0] != 1 {
            return Err(Error::Crypto("unknown ciphertext format".into()));
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(&blob[1..13]),
                Payload {
                    msg: &blob[13..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::Crypto("cannot decrypt (wrong data key?)".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let k = DataKey::from_bytes(&[7u8; 32]);
        let blob = k.encrypt("ord_1", b"Ada Lovelace").expect("encrypt");
        assert!(!blob.windows(3).any(|w| w == b"Ada"));
        assert_eq!(k.decrypt("ord_1", &blob).expect("decrypt"), b"Ada Lovelace");
        assert!(k.decrypt("ord_2", &blob).is_err());
    }
}
