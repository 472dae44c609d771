//! Prometheus metrics, kept by hand: request counts and latency histograms by route and
//! status, connections, snapshot reloads. Rendered in the text exposition format 0.0.4.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum_us: u64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
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

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), Series>>,
    pub connections_active: AtomicI64,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub requests_in_flight: AtomicI64,
    pub request_timeouts: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Records one answered request.
    pub fn observe(&self, route: &'static str, status: u16, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let secs = latency.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        let mut map = match self.requests.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let s = map.entry((route, status)).or_default();
        s.count += 1;
        s.sum_us = s.sum_us.saturating_add(us);
        s.buckets[slot] += 1;
    }

    /// Number of requests recorded for a route and status (for tests and logs).
    pub fn count(&self, route: &'static str, status: u16) -> u64 {
        let map = match self.requests.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(&(route, status)).map(|s| s.count).unwrap_or(0)
    }

    /// The whole exposition.
    pub fn render(&self, snap: Option<&SnapshotGauges<'_>>, uptime: Duration) -> String {
        let series: Vec<((&'static str, u16), Series)> = {
            let map = match self.requests.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.iter().map(|(k, v)| (*k, v.clone())).collect()
        };
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
}
