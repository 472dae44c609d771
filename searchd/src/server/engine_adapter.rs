//! The seam between the HTTP layer and the search engine (`crate::engine`): each call gets
//! the request's snapshot, its overlay, the service clock and the decoded query parameters,
//! and returns the contract's `data`, already serialised to JSON bytes (no `Value` tree), and
//! the `meta` fields other than `request_id` (which the server adds).

use format::Snapshot;
use serde_json::Value;

use crate::api::ApiError;
use crate::overlay::Overlay;

pub type EngineResult = Result<(Vec<u8>, Value), ApiError>;

/// `GET /v1/search`; `split`: whether a large search may use a second thread.
pub fn search(
    snap: &Snapshot,
    overlay: &Overlay,
    now_utc_min: i64,
    params: &[(String, String)],
    split: crate::engine::Split,
) -> EngineResult {
    crate::engine::search_raw_split(
        snap,
        overlay,
        crate::engine::Clock { now_utc_min },
        params,
        split,
    )
}

/// `GET /v1/search` within at most `max_work` engine steps: `Ok(None)` when it needs more
/// (run [`search`] for it).
pub fn search_within(
    snap: &Snapshot,
    overlay: &Overlay,
    now_utc_min: i64,
    params: &[(String, String)],
    max_work: u64,
) -> Result<Option<(Vec<u8>, Value)>, ApiError> {
    crate::engine::search_raw_within(
        snap,
        overlay,
        crate::engine::Clock { now_utc_min },
        params,
        max_work,
    )
}

/// `GET /v1/offers/{id}`.
pub fn offer(snap: &Snapshot, overlay: &Overlay, now_utc_min: i64, id: &str) -> EngineResult {
    crate::engine::offer_raw(snap, overlay, crate::engine::Clock { now_utc_min }, id)
}

/// `GET /v1/calendar`.
pub fn calendar(
    snap: &Snapshot,
    overlay: &Overlay,
    now_utc_min: i64,
    params: &[(String, String)],
) -> EngineResult {
    crate::engine::calendar_raw(snap, overlay, crate::engine::Clock { now_utc_min }, params)
}
