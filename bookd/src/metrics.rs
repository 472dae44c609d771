//! Prometheus text metrics (counters and a latency histogram, no dependencies).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const BUCKETS_MS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 10],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe_ms(&self, ms: f64) {
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add((ms * 1000.0) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                b / 1000.0,
                self.buckets[i].load(Relaxed)
            );
        }
        let c = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {c}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Relaxed) as f64 / 1_000_000.0
        );
        let _ = writeln!(out, "{name}_count {c}");
    }
}

#[derive(Default)]
pub struct Metrics {
    pub requests: [AtomicU64; 6],
    pub holds_created: AtomicU64,
    pub holds_expired: AtomicU64,
    pub holds_released: AtomicU64,
    pub orders_confirmed: AtomicU64,
    pub orders_failed: AtomicU64,
    pub orders_cancelled: AtomicU64,
    pub seats_unavailable: AtomicU64,
    pub sagas_recovered: AtomicU64,
    /// Cancellations' `Idempotency-Key` claims left in progress by a request that is gone,
    /// dropped by recovery so that a retry runs again.
    pub claims_recovered: AtomicU64,
    pub idempotent_replays: AtomicU64,
    pub rate_limited: AtomicU64,
    /// COMMITs given up after `--commit-timeout-ms` (outcome unknown, then settled).
    pub commits_timed_out: AtomicU64,
    /// Statements of write transactions given up after `--commit-timeout-ms` (rolled back).
    pub statements_timed_out: AtomicU64,
    pub hold_latency: Histogram,
    pub order_latency: Histogram,
    /// HTTP connections being served now.
    pub connections_active: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// Connections closed at once because `--max-connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed because their answer took no byte for `--send-timeout-secs`.
    pub connections_send_timed_out: AtomicU64,
    /// Connections closed because a request head was not complete in time.
    pub connections_head_timed_out: AtomicU64,
    /// Request heads hyper refused itself (and answered, with an empty body), by status:
    /// see [`HEAD_REFUSAL_STATUSES`].
    pub heads_refused: [AtomicU64; 3],
}

/// The statuses hyper answers a request head it cannot take with: a malformed head, a URI
/// over its limit, a head over `max_buf_size` or `max_headers`.
pub const HEAD_REFUSAL_STATUSES: [u16; 3] = [400, 414, 431];

impl Metrics {
    pub fn count_status(&self, status: u16) {
        let i = (status / 100).clamp(1, 5) as usize;
        self.requests[i].fetch_add(1, Relaxed);
    }

    /// A request head hyper refused with `status`: counted as an answered request too.
    pub fn count_refused_head(&self, status: u16) {
        self.count_status(status);
        let i = HEAD_REFUSAL_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(0);
        self.heads_refused[i].fetch_add(1, Relaxed);
    }

    pub fn render(&self, breakers: &[(&str, u8)]) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP bookd_http_requests_total HTTP responses by status class\n# TYPE bookd_http_requests_total counter"
        );
        for (i, class) in ["", "1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .enumerate()
            .skip(1)
        {
            let _ = writeln!(
                o,
                "bookd_http_requests_total{{class=\"{class}\"}} {}",
                self.requests[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP bookd_http_request_heads_refused_total Request heads refused before routing (answered with an empty body), by status\n# TYPE bookd_http_request_heads_refused_total counter"
        );
        for (status, n) in HEAD_REFUSAL_STATUSES.iter().zip(&self.heads_refused) {
            let _ = writeln!(
                o,
                "bookd_http_request_heads_refused_total{{status=\"{status}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP bookd_http_connections_active HTTP connections open now\n# TYPE bookd_http_connections_active gauge\nbookd_http_connections_active {}",
            self.connections_active.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP bookd_http_connections_timed_out_total HTTP connections closed by a limit: an answer that took no byte for --send-timeout-secs, a request head not complete in time\n# TYPE bookd_http_connections_timed_out_total counter"
        );
        for (reason, n) in [
            ("send", &self.connections_send_timed_out),
            ("head", &self.connections_head_timed_out),
        ] {
            let _ = writeln!(
                o,
                "bookd_http_connections_timed_out_total{{reason=\"{reason}\"}} {}",
                n.load(Relaxed)
            );
        }
        let counters: [(&str, &AtomicU64, &str); 15] = [
            (
                "bookd_http_connections_accepted_total",
                &self.connections_accepted,
                "HTTP connections accepted and served",
            ),
            (
                "bookd_http_connections_refused_total",
                &self.connections_refused,
                "HTTP connections closed at once because --max-connections were open",
            ),
            (
                "bookd_holds_created_total",
                &self.holds_created,
                "Holds created",
            ),
            (
                "bookd_holds_expired_total",
                &self.holds_expired,
                "Holds released by the sweeper",
            ),
            (
                "bookd_holds_released_total",
                &self.holds_released,
                "Holds released by their client before they expired",
            ),
            (
                "bookd_orders_confirmed_total",
                &self.orders_confirmed,
                "Orders confirmed",
            ),
            (
                "bookd_orders_failed_total",
                &self.orders_failed,
                "Orders failed and compensated",
            ),
            (
                "bookd_orders_cancelled_total",
                &self.orders_cancelled,
                "Orders cancelled",
            ),
            (
                "bookd_seats_unavailable_total",
                &self.seats_unavailable,
                "Requests refused for lack of seats",
            ),
            (
                "bookd_sagas_recovered_total",
                &self.sagas_recovered,
                "Sagas resumed or compensated by recovery",
            ),
            (
                "bookd_idempotency_claims_recovered_total",
                &self.claims_recovered,
                "Cancellations' Idempotency-Key claims left in progress by a request that is gone, dropped by recovery",
            ),
            (
                "bookd_idempotent_replays_total",
                &self.idempotent_replays,
                "Stored responses replayed",
            ),
            (
                "bookd_rate_limited_total",
                &self.rate_limited,
                "Requests refused by the rate limit",
            ),
            (
                "bookd_commits_timed_out_total",
                &self.commits_timed_out,
                "COMMITs not answered within --commit-timeout-ms (outcome unknown until settled)",
            ),
            (
                "bookd_write_statements_timed_out_total",
                &self.statements_timed_out,
                "Write transactions' statements not answered within --commit-timeout-ms (rolled back)",
            ),
        ];
        for (name, v, help) in counters {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        self.hold_latency
            .render(&mut o, "bookd_hold_seconds", "POST /v1/holds latency");
        self.order_latency
            .render(&mut o, "bookd_order_seconds", "POST /v1/orders latency");
        let _ = writeln!(
            o,
            "# HELP bookd_circuit_state Circuit breaker state (0 closed, 1 open, 2 half-open)\n# TYPE bookd_circuit_state gauge"
        );
        for (name, s) in breakers {
            let _ = writeln!(o, "bookd_circuit_state{{dependency=\"{name}\"}} {s}");
        }
        o
    }
}
