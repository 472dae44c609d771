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
use crate::api::ApiError;
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
        ctx.cap_dep.set(i64::MAX);
        paths::slices(
            &ctx,
            &q.origin,
            &q.destination,
            day,
            paths::Part::WHOLE,
            &mut bufs,
            &mut cands,
        );
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

/// One day of `data.days`, keys in alphabetical order (as a serialised `Value`).
#[derive(serde::Serialize)]
struct DayJson<'c> {
    date: render::Stamp,
    itinerary_id: Option<String>,
    lowest_price: Option<render::MoneyJson<'c>>,
}

struct Days<'c, 'a> {
    ctx: &'c Ctx<'a>,
    days: &'c [(i32, Option<Itinerary>)],
}

impl serde::Serialize for Days<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.days.iter().map(|(d, it)| {
            DayJson {
                date: render::iso_date(*d),
                itinerary_id: it.as_ref().map(|i| render::offer_id_of(self.ctx, i)),
                lowest_price: it
                    .as_ref()
                    .and_then(|i| i.price.as_ref())
                    .map(|p| render::money_json(p.total, &p.cur)),
            }
        }))
    }
}

#[derive(serde::Serialize)]
struct CalendarData<'c, 'a> {
    days: Days<'c, 'a>,
}

fn calendar_with<T>(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
    out: impl FnOnce(&CalendarData<'_, '_>, usize) -> T,
) -> Result<(T, Value), ApiError> {
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
    let count = days.len();
    let data = CalendarData {
        days: Days {
            ctx: &ctx,
            days: &days,
        },
    };
    Ok((out(&data, count), json!({ "count": count })))
}

/// `GET /v1/calendar`: `data.days[]` {date, lowest_price, itinerary_id}; `meta.count` days.
pub fn calendar(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
) -> Result<(Value, Value), ApiError> {
    calendar_with(snap, overlay, clock, params, |d, _| {
        serde_json::to_value(d).unwrap_or(Value::Null)
    })
}

/// [`calendar`] with `data` already serialised to JSON bytes.
pub fn calendar_raw(
    snap: &Snapshot,
    overlay: &Overlay,
    clock: Clock,
    params: &[(String, String)],
) -> Result<(Vec<u8>, Value), ApiError> {
    calendar_with(snap, overlay, clock, params, |d, n| {
        super::search::to_json_bytes(d, 16 + 160 * n)
    })
}
