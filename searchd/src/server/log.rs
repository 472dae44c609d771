//! The log sink: one JSON line per event on stderr, with access-log lines batched.
//!
//! Writing every access line with its own `write(2)` to stderr cost 15-20 % of the direct
//! search throughput (BENCHMARKS.md §2). Access lines (target `searchd::access`) are appended
//! to a shared, bounded buffer instead and written in batches: by a flusher thread every
//! [`FLUSH_EVERY`], by the writer itself when the buffer passes [`MAX_BUFFERED`] (so a slow
//! stderr slows requests down instead of growing memory or dropping lines), before any other
//! event (so lines keep their order), and by [`LogSink::flush`] on shutdown. Lines are never
//! dropped; only a crash (not a graceful exit) can lose the last [`FLUSH_EVERY`] of them.
//! Every other event is written through at once: startup, errors and warnings must not wait.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;

/// The access log's target (as given to `tracing::info!(target: ...)`).
pub const ACCESS_TARGET: &str = "searchd::access";
/// Longest an access line waits in the buffer while the process runs.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Buffer size at which a writer flushes by itself (bounds memory).
pub const MAX_BUFFERED: usize = 256 * 1024;

/// Where the batched lines end up.
type Sink = Box<dyn Write + Send>;

/// The output side, locked only by whoever writes a batch out (never by a request that
/// just appends a line, so a slow stderr does not stall requests until the buffer is full).
struct Output {
    sink: Sink,
    /// The batch being written; swapped with the buffer (no allocation per batch).
    spare: Vec<u8>,
}

struct Shared {
    buf: Mutex<Vec<u8>>,
    out: Mutex<Output>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves whole lines behind at worst.
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    /// Writes out the buffered lines, then `last` (an event that is not batched), in order:
    /// batches are taken and written under the output lock.
    fn flush_with(&self, last: &[u8]) -> io::Result<()> {
        let mut out = lock(&self.out);
        let out = &mut *out;
        {
            let mut buf = lock(&self.buf);
            buf.extend_from_slice(last);
            std::mem::swap(&mut *buf, &mut out.spare);
        }
        if out.spare.is_empty() {
            return Ok(());
        }
        let r = out.sink.write_all(&out.spare);
        // Dropped even on error: retrying a broken stderr would only grow the buffer.
        out.spare.clear();
        r?;
        out.sink.flush()
    }

    /// Appends one batched line; writes the batch out when it reaches [`MAX_BUFFERED`].
    fn append(&self, line: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        let full = {
            let mut buf = lock(&self.buf);
            line(&mut buf);
            buf.len() >= MAX_BUFFERED
        };
        if full {
            self.flush_with(&[])
        } else {
            Ok(())
        }
    }
}

/// The shared sink; cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Shared>,
}

impl LogSink {
    /// A sink writing to `out` (stderr in the server, a buffer in tests).
    pub fn new(out: Box<dyn Write + Send>) -> LogSink {
        LogSink {
            inner: Arc::new(Shared {
                buf: Mutex::new(Vec::with_capacity(64 * 1024)),
                out: Mutex::new(Output {
                    sink: out,
                    spare: Vec::with_capacity(64 * 1024),
                }),
            }),
        }
    }

    /// Writes out every buffered line (the flusher's tick and the shutdown path).
    pub fn flush(&self) -> io::Result<()> {
        self.inner.flush_with(&[])
    }

    /// Starts the thread that flushes every [`FLUSH_EVERY`]; it holds only a weak
    /// reference, so it ends once every sink clone is gone.
    pub fn spawn_flusher(&self) -> io::Result<()> {
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("searchd-log".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(inner) = weak.upgrade() else { return };
                let _ = inner.flush_with(&[]);
            })
            .map(|_| ())
    }
}

/// The sink access lines are written to directly (set once by the binary).
static ACCESS_SINK: OnceLock<LogSink> = OnceLock::new();

/// Makes `sink` the destination of [`access`] lines; the first call wins.
pub fn install_access_sink(sink: &LogSink) {
    let _ = ACCESS_SINK.set(sink.clone());
}

/// One access-log line's fields.
pub struct Access<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency_us: u64,
}

/// Logs one answered request. With an installed sink the line is formatted here, straight
/// into the batch buffer, with the fields, order and format of the `tracing` JSON
/// formatter's line (`{"timestamp":..,"level":"INFO","message":"request",..fields..,
/// "target":"searchd::access"}`), at a fraction of its cost (it builds a map per event); it
/// still obeys `SEARCHD_LOG`. Without one (the library used elsewhere), it goes through
/// `tracing`.
pub fn access(a: &Access<'_>) {
    let Some(sink) = ACCESS_SINK.get() else {
        tracing::info!(
            target: "searchd::access",
            request_id = %a.request_id,
            method = %a.method,
            path = %a.path,
            route = a.route,
            status = a.status,
            latency_us = a.latency_us,
            "request"
        );
        return;
    };
    if !tracing::enabled!(target: "searchd::access", tracing::Level::INFO) {
        return;
    }
    let at = SystemTime::now();
    let _ = sink.inner.append(|buf| access_line(buf, at, a));
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

fn digits(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(tmp.len().saturating_sub(width));
    out.extend_from_slice(&tmp[start..]);
}

/// The access line at time `at` (RFC 3339 UTC with microseconds, as `tracing-subscriber`).
fn access_line(out: &mut Vec<u8>, at: SystemTime, a: &Access<'_>) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = format::date::civil_from_days(i32::try_from(secs / 86_400).unwrap_or(0));
    let sod = secs % 86_400;
    out.extend_from_slice(b"{\"timestamp\":\"");
    digits(out, u64::try_from(y).unwrap_or(0), 4);
    out.push(b'-');
    digits(out, u64::from(m), 2);
    out.push(b'-');
    digits(out, u64::from(d), 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, sod / 60 % 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, u64::from(since.subsec_micros()), 6);
    out.extend_from_slice(b"Z\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":");
    json_str(out, a.request_id);
    out.extend_from_slice(b",\"method\":");
    json_str(out, a.method);
    out.extend_from_slice(b",\"path\":");
    json_str(out, a.path);
    out.extend_from_slice(b",\"route\":");
    json_str(out, a.route);
    out.extend_from_slice(b",\"status\":");
    digits(out, u64::from(a.status), 1);
    out.extend_from_slice(b",\"latency_us\":");
    digits(out, a.latency_us, 1);
    out.extend_from_slice(b",\"target\":\"searchd::access\"}\n");
}

/// The writer of one event: the fmt layer formats the whole line first and hands it over
/// in one `write` call.
pub struct EventWriter<'a> {
    sink: &'a LogSink,
    batched: bool,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.batched {
            self.sink.inner.append(|buf| buf.extend_from_slice(data))?;
        } else {
            // What was batched before this event goes out first.
            self.sink.inner.flush_with(data)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Batched lines are flushed by the flusher, the size bound or shutdown.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> EventWriter<'a> {
        EventWriter {
            sink: self,
            batched: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventWriter<'a> {
        EventWriter {
            sink: self,
            batched: meta.target() == ACCESS_TARGET && *meta.level() >= tracing::Level::INFO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` into shared memory, counting write calls.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut g = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
            g.0.extend_from_slice(b);
            g.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn text(s: &Shared) -> (String, usize) {
        let g = s.0.lock().unwrap_or_else(|p| p.into_inner());
        (String::from_utf8_lossy(&g.0).into_owned(), g.1)
    }

    #[test]
    fn access_lines_are_batched_in_order_and_flushed_before_other_events() {
        let out = Shared::default();
        let sink = LogSink::new(Box::new(out.clone()));
        let mut a = EventWriter {
            sink: &sink,
            batched: true,
        };
        for i in 0..100 {
            a.write_all(format!("access {i}\n").as_bytes())
                .unwrap_or_else(|e| panic!("write: {e}"));
        }
        assert_eq!(text(&out), (String::new(), 0), "nothing written yet");
        let mut other = EventWriter {
            sink: &sink,
            batched: false,
        };
        other
            .write_all(b"error\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let (t, writes) = text(&out);
        let want: String = (0..100)
            .map(|i| format!("access {i}\n"))
            .chain(["error\n".to_string()])
            .collect();
        assert_eq!(t, want);
        assert_eq!(writes, 1, "one write for the whole batch");
        a.write_all(b"last\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        sink.flush().unwrap_or_else(|e| panic!("flush: {e}"));
        assert!(text(&out).0.ends_with("error\nlast\n"));
    }

    #[test]
    fn a_full_buffer_is_written_by_the_writer_itself() {
        let out = Shared::default();
        let sink = LogSink::new(Box::new(out.clone()));
        let mut a = EventWriter {
            sink: &sink,
            batched: true,
        };
        let line = [b'x'; 1023];
        let mut n = 0;
        while text(&out).1 == 0 {
            a.write_all(&line).unwrap_or_else(|e| panic!("write: {e}"));
            n += 1;
            assert!(n * line.len() <= MAX_BUFFERED + line.len(), "never flushed");
        }
        assert!(lock(&sink.inner.buf).is_empty());
    }

    #[test]
    fn the_flusher_writes_without_other_events() {
        let out = Shared::default();
        let sink = LogSink::new(Box::new(out.clone()));
        sink.spawn_flusher()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let mut a = EventWriter {
            sink: &sink,
            batched: true,
        };
        a.write_all(b"one\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while text(&out).0 != "one\n" {
            assert!(std::time::Instant::now() < deadline, "not flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn hand_written_access_lines_equal_the_tracing_formatter_s() {
        use tracing_subscriber::fmt::time::FormatTime;
        let out = Shared::default();
        let sink = LogSink::new(Box::new(out.clone()));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(sink.clone())
            .finish();
        let a = Access {
            request_id: "abc-123",
            method: "GET",
            path: "/v1/search?q=\"x\"\\y&z=é\u{1}",
            route: "search",
            status: 200,
            latency_us: 1234,
        };
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "searchd::access",
                request_id = %a.request_id,
                method = %a.method,
                path = %a.path,
                route = a.route,
                status = a.status,
                latency_us = a.latency_us,
                "request"
            );
        });
        sink.flush().unwrap_or_else(|e| panic!("flush: {e}"));
        let want = text(&out).0;
        // The timestamps differ: compare everything after them, and their format.
        let at = SystemTime::now();
        let mut mine = Vec::new();
        access_line(&mut mine, at, &a);
        let mine = String::from_utf8(mine).unwrap_or_default();
        let cut = |l: &str| l.split_once("\",\"level\"").map(|(_, r)| r.to_string());
        assert_eq!(cut(&mine), cut(&want), "\n{mine}{want}");
        let mut ts = String::new();
        let mut w = tracing_subscriber::fmt::format::Writer::new(&mut ts);
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut w)
            .unwrap_or_else(|e| panic!("time: {e}"));
        let my_ts = mine
            .strip_prefix("{\"timestamp\":\"")
            .and_then(|r| r.split_once('"'))
            .map(|x| x.0)
            .unwrap_or_default();
        let shape = |t: &str| -> String {
            t.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect()
        };
        assert_eq!(shape(my_ts), shape(&ts), "{my_ts} vs {ts}");
        // The time itself: a fixed instant renders as tracing-subscriber renders it.
        let mut fixed = Vec::new();
        access_line(
            &mut fixed,
            UNIX_EPOCH + Duration::from_micros(1_764_080_126_064_433),
            &a,
        );
        assert!(fixed.starts_with(b"{\"timestamp\":\"2025-11-25T14:15:26.064433Z\","));
        assert!(mine.ends_with("\n") && mine.starts_with("{\"timestamp\":\"20"));
        let v: serde_json::Value = serde_json::from_str(&mine).unwrap_or_default();
        assert_eq!(v["path"], a.path);
    }
}
