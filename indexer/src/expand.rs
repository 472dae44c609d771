//! Lists every dated leg stored in a snapshot: the inverse of the compiler, used by tests
//! to check that nothing was lost or shifted on the way into the archives.

use format::model::carrier_str;
use format::Snapshot;

use crate::ssim::DatedLeg;

/// Every dated leg of the snapshot (all service types), in no particular order.
pub fn snapshot_dated_legs(snap: &Snapshot) -> Vec<DatedLeg> {
    let net = snap.network.get();
    let places = snap.places.get();
    let first_day = net.first_day.to_native();
    let code = |id: u16| {
        places
            .airports
            .get(id as usize)
            .map_or([b'?'; 3], |a| a.iata)
    };
    let mut out = Vec::new();
    for f in net.flights.iter() {
        let carrier = net
            .carriers
            .get(f.carrier.to_native() as usize)
            .map(|c| carrier_str(c).to_string())
            .unwrap_or_default();
        let legs = net.flight_legs(f);
        for day in 0..i64::from(net.n_days.to_native()) {
            if !net.operates(f.day_set.to_native(), day) {
                continue;
            }
            let base = i64::from(first_day) + day;
            for l in legs {
                let dep_utc = base * 1440 + i64::from(l.dep_utc_min.to_native());
                let local = dep_utc + i64::from(l.dep_offset_min.to_native());
                out.push(DatedLeg {
                    airline: carrier.clone(),
                    flight_number: f.number.to_native(),
                    suffix: (f.suffix != 0).then_some(f.suffix),
                    leg_seq: l.leg_seq,
                    dep: code(l.dep.to_native()),
                    arr: code(l.arr.to_native()),
                    dep_utc,
                    arr_utc: base * 1440 + i64::from(l.arr_utc_min.to_native()),
                    dep_local_date: local.div_euclid(1440) as i32,
                    service_type: l.service_type,
                });
            }
        }
    }
    out
}
