//! Small helpers: random ids, hashing, the service clock, failpoints.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// `n` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        // The OS generator never fails on Linux; fall back to time-derived bytes rather
        // than panic (ids only need to be unique, keys are generated with `fill` checked).
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let h = Sha256::digest(t.to_le_bytes());
        for (i, x) in b.iter_mut().enumerate() {
            *x = h[i % 32];
        }
    }
    b
}

const B32: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A random id like `ord_5k2...` (20 base-32 characters, 100 bits).
pub fn new_id(prefix: &str) -> String {
    let bytes = random_bytes::<20>();
    let mut s = String::with_capacity(prefix.len() + 21);
    s.push_str(prefix);
    s.push('_');
    for b in bytes {
        s.push(B32[(b & 31) as usize] as char);
    }
    s
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A uniform random number in `[0, 1)`.
pub fn random_unit() -> f64 {
    let b = random_bytes::<8>();
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The service clock: real time, or real time shifted so that start-up is `--now`.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

struct ClockInner {
    base_ms: i64,
    started: Instant,
}

impl Clock {
    pub fn system() -> Clock {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock::starting_at(ms)
    }

    pub fn starting_at(epoch_ms: i64) -> Clock {
        Clock {
            inner: Arc::new(ClockInner {
                base_ms: epoch_ms,
                started: Instant::now(),
            }),
        }
    }

    /// Parses an RFC 3339 instant for `--now`.
    pub fn parse_rfc3339(s: &str) -> Option<i64> {
        let ts: jiff::Timestamp = s.parse().ok()?;
        Some(ts.as_millisecond())
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.inner.base_ms + self.inner.started.elapsed().as_millis() as i64
    }
}

/// RFC 3339 with `Z`, seconds precision.
pub fn rfc3339_ms(ms: i64) -> String {
    format::date::format_utc_seconds(ms.div_euclid(1000))
}

/// Test-only crash injection: when the environment variable `BOOKD_FAILPOINT` names this
/// step, the process aborts here (as a crash or `kill -9` would), so tests can check that
/// recovery on restart finishes or compensates the saga.
pub fn failpoint(step: &str) {
    if let Ok(v) = std::env::var("BOOKD_FAILPOINT") {
        if v == step {
            eprintln!("{{\"level\":\"ERROR\",\"message\":\"failpoint {step}: aborting\"}}");
            std::process::abort();
        }
    }
}
