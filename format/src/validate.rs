//! Cross-reference checks run once when a snapshot is opened, so that readers can index
//! tables with positions read from the archives without bounds surprises.

use std::path::Path;

use crate::model::{ArchivedTextRef, CABINS, PASSENGER_TYPES};
use crate::snapshot::{Snapshot, AVAILABILITY, FARES, MCT, NETWORK, PLACES};
use crate::{Error, Result};

fn fail(dir: &Path, file: &str, problem: String) -> Error {
    Error::corrupt(dir.join(file), problem)
}

fn text_ok(text: &str, r: &ArchivedTextRef) -> bool {
    let s = r.start.to_native() as usize;
    let e = s.saturating_add(r.len.to_native() as usize);
    text.get(s..e).is_some()
}

fn offsets_ok(offsets: &[rkyv::rend::u32_le], n_groups: usize, total: usize) -> bool {
    offsets.len() == n_groups + 1
        && offsets.first().map(|v| v.to_native()) == Some(0)
        && offsets.last().map(|v| v.to_native() as usize) == Some(total)
        && offsets
            .windows(2)
            .all(|w| w[0].to_native() <= w[1].to_native())
}

pub(crate) fn snapshot(s: &Snapshot) -> Result<()> {
    let dir = &s.dir;
    let places = s.places.get();
    let n_airports = places.airports.len();
    if n_airports > usize::from(u16::MAX) {
        return Err(fail(
            dir,
            PLACES.0,
            format!("{n_airports} airports exceed the u16 id space"),
        ));
    }
    if !places.airports.windows(2).all(|w| w[0].iata < w[1].iata) {
        return Err(fail(
            dir,
            PLACES.0,
            "airports are not sorted and unique".into(),
        ));
    }
    for m in places.metros.iter() {
        if m.airports
            .iter()
            .any(|a| a.to_native() as usize >= n_airports)
        {
            return Err(fail(
                dir,
                PLACES.0,
                "a metro names an unknown airport".into(),
            ));
        }
    }

    let net = s.network.get();
    let n_flights = net.flights.len();
    let n_legs = net.legs.len();
    let words = net.words_per_set.to_native() as usize;
    if (words as u64) * 64 < u64::from(net.n_days.to_native())
        || (words > 0 && !net.day_sets.len().is_multiple_of(words))
    {
        return Err(fail(
            dir,
            NETWORK.0,
            "day sets do not match the date range".into(),
        ));
    }
    let n_sets = net.day_sets.len().checked_div(words).unwrap_or(0);
    for (i, f) in net.flights.iter().enumerate() {
        let first = f.first_leg.to_native() as usize;
        if f.n_legs == 0
            || first + f.n_legs as usize > n_legs
            || f.day_set.to_native() as usize >= n_sets
            || f.carrier.to_native() as usize >= net.carriers.len()
        {
            return Err(fail(
                dir,
                NETWORK.0,
                format!("flight {i} has out-of-range references"),
            ));
        }
    }
    for (i, l) in net.legs.iter().enumerate() {
        if l.dep.to_native() as usize >= n_airports
            || l.arr.to_native() as usize >= n_airports
            || !text_ok(&net.text, &l.prbd)
            || !text_ok(&net.text, &l.codeshares)
        {
            return Err(fail(
                dir,
                NETWORK.0,
                format!("leg {i} has out-of-range references"),
            ));
        }
    }
    if !offsets_ok(&net.seg_offsets, n_airports, net.segments.len())
        || !offsets_ok(&net.market_offsets, n_airports, net.markets.len())
    {
        return Err(fail(
            dir,
            NETWORK.0,
            "segment or market offsets are inconsistent".into(),
        ));
    }
    for seg in net.segments.iter() {
        let f = seg.flight.to_native() as usize;
        let ok = net.flights.get(f).is_some_and(|fl| {
            seg.from_leg <= seg.to_leg && (seg.to_leg as usize) < fl.n_legs as usize
        }) && (seg.dest.to_native() as usize) < n_airports;
        if !ok {
            return Err(fail(
                dir,
                NETWORK.0,
                format!("segment of flight {f} is out of range"),
            ));
        }
    }
    for m in net.markets.iter() {
        if m.start.to_native() > m.end.to_native()
            || m.end.to_native() as usize > net.segments.len()
            || m.dest.to_native() as usize >= n_airports
        {
            return Err(fail(dir, NETWORK.0, "a market is out of range".into()));
        }
    }
    if s.manifest.flight_patterns != n_flights as u64 || s.manifest.legs != n_legs as u64 {
        return Err(fail(
            dir,
            NETWORK.0,
            "counts differ from the manifest".into(),
        ));
    }

    let fares = s.fares.get();
    let n_carriers = net.carriers.len();
    for (i, f) in fares.fares.iter().enumerate() {
        if f.carrier.to_native() as usize >= n_carriers
            || f.origin.to_native() as usize >= n_airports
            || f.dest.to_native() as usize >= n_airports
            || f.cabin as usize >= CABINS.len()
            || f.passenger_type as usize >= PASSENGER_TYPES.len()
            || !text_ok(&fares.text, &f.basis)
        {
            return Err(fail(
                dir,
                FARES.0,
                format!("fare {i} has out-of-range references"),
            ));
        }
    }
    if !offsets_ok(
        &fares.market_starts,
        fares.market_keys.len(),
        fares.fares.len(),
    ) {
        return Err(fail(dir, FARES.0, "market index is inconsistent".into()));
    }
    if s.manifest.fares != fares.fares.len() as u64 {
        return Err(fail(dir, FARES.0, "count differs from the manifest".into()));
    }

    let avail = s.availability.get();
    if avail.keys.len() != avail.seats.len()
        || !avail
            .keys
            .windows(2)
            .all(|w| w[0].to_native() < w[1].to_native())
    {
        return Err(fail(
            dir,
            AVAILABILITY.0,
            "keys are not sorted, unique and paired".into(),
        ));
    }
    if s.manifest.availability_records != avail.keys.len() as u64 {
        return Err(fail(
            dir,
            AVAILABILITY.0,
            "count differs from the manifest".into(),
        ));
    }

    let mct = s.mct.get();
    for r in mct.rules.iter() {
        let st = r.station.to_native();
        if (st != u16::MAX && st as usize >= n_airports) || r.conn_type > 4 {
            return Err(fail(dir, MCT.0, "a rule is out of range".into()));
        }
    }
    Ok(())
}
