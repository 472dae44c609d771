//! Criterion suites live in `benches/`; load tools in `src/bin/`. This library holds the
//! workload they share: a deterministic choice of hub airports, dates and queries on a
//! snapshot, so the criterion suite, `engine_latency` and the HTTP URLs measure the same
//! searches.

use format::Snapshot;

/// The service clock of every benchmark (also `searchd --now`): 2026-04-01T00:00:00Z.
pub const NOW: &str = "2026-04-01T00:00:00Z";

/// Minutes since the epoch of [`NOW`].
pub fn now_utc_min() -> i64 {
    i64::from(format::date::days_from_civil(2026, 4, 1)) * 1440
}

/// The deterministic workload on one snapshot.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Airports by number of departing segment patterns, largest first (ties: lower id),
    /// with that number: the "hubs" are the first twelve.
    pub hubs: Vec<(String, usize)>,
    /// The search date: the snapshot's first date + 7 days (inside the availability window).
    pub date: String,
    /// `date + 30`: the last day of a 31-day calendar.
    pub calendar_to: String,
    /// Hub pairs (ordered) with a nonstop market between them, for direct searches.
    pub direct_pairs: Vec<(String, String)>,
    /// Pairs of large hubs for priced 1-stop searches: each of the 4 largest hubs with
    /// the 3 hubs ranked right after it (12 pairs, as in `searchd/tests/engine_perf.rs`).
    pub one_stop_pairs: Vec<(String, String)>,
}

impl Workload {
    pub fn new(snap: &Snapshot) -> Workload {
        let net = snap.network.get();
        let places = snap.places.get();
        let n = places.airports.len();
        let mut by_size: Vec<(usize, u16)> = (0..n)
            .map(|a| (net.segments_from(a as u16).len(), a as u16))
            .collect();
        by_size.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let code = |a: u16| String::from_utf8_lossy(&places.airports[a as usize].iata).into_owned();
        let top: Vec<u16> = by_size.iter().take(12).map(|x| x.1).collect();
        let mut direct_pairs = Vec::new();
        for &a in &top {
            for &b in &top {
                if a != b && net.markets_from(a).iter().any(|m| m.dest.to_native() == b) {
                    direct_pairs.push((code(a), code(b)));
                }
            }
        }
        direct_pairs.truncate(8);
        let mut one_stop_pairs = Vec::new();
        for (i, &a) in top.iter().enumerate().take(4) {
            for &b in top.iter().skip(i + 1).take(3) {
                one_stop_pairs.push((code(a), code(b)));
            }
        }
        let first = snap
            .manifest
            .first_date
            .as_deref()
            .and_then(format::date::parse_iso)
            .unwrap_or_else(|| format::date::days_from_civil(2026, 4, 1));
        Workload {
            hubs: by_size
                .iter()
                .take(12)
                .map(|&(k, a)| (code(a), k))
                .collect(),
            date: format::date::format_iso(first + 7),
            calendar_to: format::date::format_iso(first + 7 + 30),
            direct_pairs,
            one_stop_pairs,
        }
    }

    /// `GET /v1/search` parameters of a direct search.
    pub fn direct(&self, o: &str, d: &str) -> Vec<(String, String)> {
        vec![
            ("origin".into(), o.into()),
            ("destination".into(), d.into()),
            ("date".into(), self.date.clone()),
            ("max_connections".into(), "0".into()),
        ]
    }

    /// `GET /v1/search` parameters of a priced search with up to 1 stop (the defaults:
    /// sort by price, priced only, limit 50).
    pub fn one_stop(&self, o: &str, d: &str) -> Vec<(String, String)> {
        vec![
            ("origin".into(), o.into()),
            ("destination".into(), d.into()),
            ("date".into(), self.date.clone()),
        ]
    }

    /// `GET /v1/calendar` parameters over 31 days.
    pub fn calendar(&self, o: &str, d: &str) -> Vec<(String, String)> {
        vec![
            ("origin".into(), o.into()),
            ("destination".into(), d.into()),
            ("from".into(), self.date.clone()),
            ("to".into(), self.calendar_to.clone()),
        ]
    }
}

/// The query string of decoded parameters (codes and dates need no escaping).
pub fn query_string(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `p`-quantile (0..=1) of sorted values (nearest rank, rounding down).
pub fn quantile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}
