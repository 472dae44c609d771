//! The service clock (`--now`) and how its instants are written.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
