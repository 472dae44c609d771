//! Prometheus metrics, kept by hand: request counts and latency histograms by route and
//! status, connections, snapshot reloads. Rendered in the text exposition format 0.0.4.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The same bounds in microseconds (what `observe` compares with).
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Every `route` label the server uses (`http::Route::label`); others go to the overflow map.
const ROUTES: [&str; 11] = [
    "search",
    "offer",
    "calendar",
    "places",
    "healthz",
    "readyz",
    "metrics",
    "openapi",
    "admin_reload",
    "unmatched",
    "unparsed",
];
/// Distinct statuses counted lock-free per route; more go to the overflow map.
const STATUS_SLOTS: usize = 12;

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum_us: u64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
}

/// One (route, status) series updated with relaxed atomics: a request costs a few
/// uncontended increments instead of a mutex and a map lookup.
#[derive(Default)]
struct AtomicSeries {
    /// 0 while the slot is free; set once (compare-and-swap) to the status it counts.
    status: AtomicU16,
    count: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

impl AtomicSeries {
    fn add(&self, us: u64, slot: usize) {
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Series {
        let mut s = Series {
            count: 0,
            sum_us: self.sum_us.load(Ordering::Relaxed),
            buckets: [0; BUCKETS.len() + 1],
        };
        for (b, a) in s.buckets.iter_mut().zip(&self.buckets) {
            *b = a.load(Ordering::Relaxed);
        }
        // The count is the buckets' sum, so a scrape racing a request stays consistent.
        s.count = s.buckets.iter().sum();
        s
    }
}

/// What the snapshot gauges show (read from the served snapshot at render time).
pub struct SnapshotGauges<'a> {
    pub generation: u64,
    pub snapshot_id: &'a str,
    pub created_at: &'a str,
    pub loaded_at_unix: i64,
    pub overlay_entries: usize,
    pub places: u64,
}

pub struct Metrics {
    /// `[route][slot]`, see [`ROUTES`] and [`STATUS_SLOTS`].
    table: Box<[[AtomicSeries; STATUS_SLOTS]; ROUTES.len()]>,
    /// Series that do not fit the table (unknown route label, or more statuses than slots).
    overflow: Mutex<BTreeMap<(&'static str, u16), Series>>,
    pub connections_active: AtomicI64,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub requests_in_flight: AtomicI64,
    pub request_timeouts: AtomicU64,
    /// Responses sent gzip-encoded (the client's `Accept-Encoding` admitted it).
    pub responses_gzipped: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            table: Box::default(),
            overflow: Mutex::new(BTreeMap::new()),
            connections_active: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            requests_in_flight: AtomicI64::new(0),
            request_timeouts: AtomicU64::new(0),
            responses_gzipped: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        }
    }

    fn overflow(&self) -> std::sync::MutexGuard<'_, BTreeMap<(&'static str, u16), Series>> {
        match self.overflow.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The lock-free series of a route and status, claiming a free slot if needed.
    fn series(&self, route: &str, status: u16) -> Option<&AtomicSeries> {
        let r = ROUTES.iter().position(|&x| x == route)?;
        if status == 0 {
            return None;
        }
        for slot in &self.table[r] {
            match slot
                .status
                .compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(slot),
                Err(s) if s == status => return Some(slot),
                Err(_) => {}
            }
        }
        None
    }

    /// Records one answered request.
    pub fn observe(&self, route: &'static str, status: u16, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let slot = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS.len());
        if let Some(s) = self.series(route, status) {
            s.add(us, slot);
            return;
        }
        let mut map = self.overflow();
        let s = map.entry((route, status)).or_default();
        s.count += 1;
        s.sum_us = s.sum_us.saturating_add(us);
        s.buckets[slot] += 1;
    }

    /// Every series, ordered by route label then status.
    fn all_series(&self) -> Vec<((&'static str, u16), Series)> {
        let mut all: Vec<((&'static str, u16), Series)> = self
            .overflow()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (route, slots) in ROUTES.iter().zip(self.table.iter()) {
            for slot in slots {
                let status = slot.status.load(Ordering::Acquire);
                if status == 0 {
                    break;
                }
                let s = slot.snapshot();
                if s.count > 0 {
                    all.push(((*route, status), s));
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Number of requests recorded for a route and status (for tests and logs).
    pub fn count(&self, route: &'static str, status: u16) -> u64 {
        self.all_series()
            .iter()
            .filter(|(k, _)| *k == (route, status))
            .map(|(_, s)| s.count)
            .sum()
    }

    /// The whole exposition.
    pub fn render(&self, snap: Option<&SnapshotGauges<'_>>, uptime: Duration) -> String {
        let series = self.all_series();
        let mut out = String::with_capacity(4096 + series.len() * 1200);
        header(
            &mut out,
            "searchd_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for ((route, status), s) in &series {
            let _ = writeln!(
                out,
                "searchd_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        header(
            &mut out,
            "searchd_http_request_duration_seconds",
            "histogram",
            "Time from a request's headers to its answer, by route and status.",
        );
        for ((route, status), s) in &series {
            let mut cumulative = 0u64;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i];
                let _ = writeln!(
                    out,
                    "searchd_http_request_duration_seconds_bucket{{route=\"{route}\",status=\"{status}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "searchd_http_request_duration_seconds_bucket{{route=\"{route}\",status=\"{status}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "searchd_http_request_duration_seconds_sum{{route=\"{route}\",status=\"{status}\"}} {}",
                s.sum_us as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "searchd_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        let gauge = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let load_i = |a: &AtomicI64| a.load(Ordering::Relaxed).to_string();
        gauge(
            &mut out,
            "searchd_http_requests_in_flight",
            "gauge",
            "Requests being answered now.",
            load_i(&self.requests_in_flight),
        );
        gauge(
            &mut out,
            "searchd_http_request_timeouts_total",
            "counter",
            "Requests answered 503 because they ran out of time.",
            load(&self.request_timeouts),
        );
        gauge(
            &mut out,
            "searchd_http_responses_gzipped_total",
            "counter",
            "Responses sent gzip-encoded because the client's Accept-Encoding admitted it.",
            load(&self.responses_gzipped),
        );
        gauge(
            &mut out,
            "searchd_connections_active",
            "gauge",
            "Client connections open now.",
            load_i(&self.connections_active),
        );
        gauge(
            &mut out,
            "searchd_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            load(&self.connections_accepted),
        );
        gauge(
            &mut out,
            "searchd_connections_refused_total",
            "counter",
            "Client connections closed at once because the connection limit was reached.",
            load(&self.connections_refused),
        );
        gauge(
            &mut out,
            "searchd_snapshot_reloads_total",
            "counter",
            "New snapshots validated and swapped in.",
            load(&self.reloads),
        );
        gauge(
            &mut out,
            "searchd_snapshot_reload_failures_total",
            "counter",
            "New snapshots refused (broken or unreadable); the previous one kept serving.",
            load(&self.reload_failures),
        );
        if let Some(g) = snap {
            gauge(
                &mut out,
                "searchd_snapshot_generation",
                "gauge",
                "Snapshots loaded by this process so far (1 = the one loaded at start).",
                g.generation.to_string(),
            );
            header(
                &mut out,
                "searchd_snapshot_info",
                "gauge",
                "The served snapshot (always 1; its id and creation time are labels).",
            );
            let _ = writeln!(
                out,
                "searchd_snapshot_info{{snapshot_id=\"{}\",created_at=\"{}\"}} 1",
                escape(g.snapshot_id),
                escape(g.created_at)
            );
            gauge(
                &mut out,
                "searchd_snapshot_loaded_timestamp_seconds",
                "gauge",
                "When the served snapshot was swapped in, Unix seconds.",
                g.loaded_at_unix.to_string(),
            );
            gauge(
                &mut out,
                "searchd_overlay_entries",
                "gauge",
                "Live seat counts held over the served snapshot.",
                g.overlay_entries.to_string(),
            );
            gauge(
                &mut out,
                "searchd_places_documents",
                "gauge",
                "Airports and metros in the served places index.",
                g.places.to_string(),
            );
        }
        gauge(
            &mut out,
            "searchd_uptime_seconds",
            "gauge",
            "Seconds since the process started serving.",
            format!("{:.3}", uptime.as_secs_f64()),
        );
        header(
            &mut out,
            "searchd_build_info",
            "gauge",
            "Version of this build (always 1).",
        );
        let _ = writeln!(
            out,
            "searchd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, new line).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_ends_with_count() {
        let m = Metrics::new();
        m.observe("places", 200, Duration::from_micros(300));
        m.observe("places", 200, Duration::from_millis(3));
        m.observe("places", 400, Duration::from_secs(30));
        let text = m.render(None, Duration::from_secs(1));
        assert!(text.contains("searchd_http_requests_total{route=\"places\",status=\"200\"} 2"));
        assert!(text.contains(
            "searchd_http_request_duration_seconds_bucket{route=\"places\",status=\"200\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "searchd_http_request_duration_seconds_bucket{route=\"places\",status=\"200\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "searchd_http_request_duration_seconds_bucket{route=\"places\",status=\"400\",le=\"10\"} 0"
        ));
        assert!(text.contains(
            "searchd_http_request_duration_seconds_bucket{route=\"places\",status=\"400\",le=\"+Inf\"} 1"
        ));
        assert_eq!(m.count("places", 200), 2);
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn statuses_beyond_the_slots_and_unknown_routes_are_still_counted() {
        let m = Metrics::new();
        let statuses: Vec<u16> = (0..(STATUS_SLOTS as u16 + 5)).map(|i| 400 + i).collect();
        for &st in &statuses {
            for _ in 0..st - 399 {
                m.observe("search", st, Duration::from_micros(u64::from(st)));
            }
        }
        m.observe("not-a-route", 200, Duration::from_millis(1));
        for &st in &statuses {
            assert_eq!(m.count("search", st), u64::from(st - 399), "status {st}");
        }
        assert_eq!(m.count("not-a-route", 200), 1);
        let text = m.render(None, Duration::from_secs(1));
        // Series come out ordered by route, then status, whichever store holds them.
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("searchd_http_requests_total{"))
            .collect();
        assert_eq!(lines.len(), statuses.len() + 1);
        assert!(lines[0].contains("route=\"not-a-route\""));
        let mut sorted = lines[1..].to_vec();
        sorted.sort();
        assert_eq!(sorted, lines[1..].to_vec());
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let m = std::sync::Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = std::sync::Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let st = if (i + t) % 3 == 0 { 200 } else { 404 };
                        m.observe("search", st, Duration::from_micros(i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join()
                .unwrap_or_else(|_| panic!("observer thread panicked"));
        }
        assert_eq!(m.count("search", 200) + m.count("search", 404), 40_000);
    }
}
