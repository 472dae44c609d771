//! `GET /v1/calendar`: the lowest one-way price per departure date (at most 62 dates), with
//! the search filters. Each day's cheapest itinerary is the first of a `sort=price`,
//! `priced_only=true` search for that day; the derived indexes, buffers and work budget are
//! shared across the days (one [`super::WORK_LIMIT`] for the whole calendar).

use format::Snapshot;
use serde_json::{json, Value};

use super::offer_id::slice_key;
use super::paths::{self, Buffers};
use super::search::{ItinPrice, Itinerary};
use super::{prep, render, too_broad, Clock, Ctx, Slice};
use crate::api::{ApiError, Money};
use crate::overlay::Overlay;
use crate::query::CalendarQuery;

/// The cheapest itinerary of each day, typed: `(date, itinerary)`.
pub fn run_calendar(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    q: &CalendarQuery,
) -> Result<Vec<(i32, Option<Itinerary>)>, ApiError> {
    let prep = prep::get(snap);
    let ctx = Ctx::new(
        snap,
        overlay,
        clock,
        &q.filters,
        &prep,
        &[&q.origin, &q.destination],
    );
    let mut bufs = Buffers::default();
    let mut cands = Vec::new();
    let mut out = Vec::new();
    for day in q.from..=q.to {
        cands.clear();
        // Cheapest-only: exact lower bounds skip what cannot beat the day's best so far.
        ctx.cap
            .set(Some(q.filters.max_price_micros.unwrap_or(i128::MAX)));
        paths::slices(&ctx, &q.origin, &q.destination, day, &mut bufs, &mut cands);
        if ctx.exhausted() {
            return Err(too_broad());
        }
        let mut best: Option<(i128, &paths::SliceCand)> = None;
        for c in &cands {
            let Some(p) = c.price.best() else { continue };
            let v = p.micros();
            if q.filters.max_price_micros.is_some_and(|m| v > m) {
                continue;
            }
            let better = match best {
                None => true,
                Some((bv, b)) => (v, c.slice.dep_utc())
                    .cmp(&(bv, b.slice.dep_utc()))
                    .then_with(|| {
                        slice_key(&ctx, c.slice.segs()).cmp(&slice_key(&ctx, b.slice.segs()))
                    })
                    .is_lt(),
            };
            if better {
                best = Some((v, c));
            }
        }
        out.push((
            day,
            best.map(|(_, c)| Itinerary {
                slices: [c.slice, Slice::default()],
                n_slices: 1,
                price: c.price.best().map(ItinPrice::from_parts_pub),
            }),
        ));
    }
    Ok(out)
}

/// `GET /v1/calendar`: `data.days[]` {date, lowest_price, itinerary_id}; `meta.count` days.
pub fn calendar(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
) -> Result<(Value, Value), ApiError> {
    let q = crate::query::parse_calendar(snap, params)?;
    let days = run_calendar(snap, overlay, clock, &q)?;
    let prep = prep::get(snap);
    let ctx = Ctx::new(
        snap,
        overlay,
        clock,
        &q.filters,
        &prep,
        &[&q.origin, &q.destination],
    );
    let items: Vec<Value> = days
        .iter()
        .map(|(d, it)| {
            let price = it
                .as_ref()
                .and_then(|i| i.price.as_ref())
                .and_then(|p| serde_json::to_value(Money::from_minor(p.total, &p.cur)).ok())
                .unwrap_or(Value::Null);
            let id = it
                .as_ref()
                .map(|i| Value::String(render::offer_id_of(&ctx, i)))
                .unwrap_or(Value::Null);
            json!({
                "date": format::date::format_iso(*d),
                "lowest_price": price,
                "itinerary_id": id,
            })
        })
        .collect();
    let count = items.len();
    Ok((
        render::obj([("days", Value::Array(items))]),
        json!({ "count": count }),
    ))
}
