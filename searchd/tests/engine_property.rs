//! Property test: on random small networks, the engine's itineraries and prices equal a naive
//! brute-force enumeration written independently here (all dated segments, all paths, all
//! partitions into fare components and all fare choices), under the same rules.
#![allow(clippy::unwrap_used)]

mod engine_common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use engine_common::*;

/// xorshift64* with a fixed seed per case.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

const CODES: [&str; 8] = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"];
const CARRIERS: [&str; 3] = ["XX", "YY", "ZZ"];
const CLASSES: [u8; 3] = [b'Y', b'M', b'K'];

struct Case {
    world: World,
    n_air: usize,
    country: Vec<&'static str>,
    /// (flight index in sorted order, leg, base date, class) -> seats
    seats: BTreeMap<(usize, usize, i32, u8), u16>,
}

fn gen_world(rng: &mut Rng) -> Case {
    let n_air = rng.range(5, 8) as usize;
    let country: Vec<&'static str> = (0..n_air).map(|_| *rng.pick(&["US", "FR"])).collect();
    let offsets: Vec<i16> = (0..n_air)
        .map(|_| *rng.pick(&[-600i16, -300, 0, 60, 330, 780]))
        .collect();
    let airports: Vec<(&str, &str)> = (0..n_air).map(|i| (CODES[i], country[i])).collect();
    let mut w = World::new(&airports);
    w.open_classes = vec![];
    let d = d0();
    let n_flights = rng.range(20, 60) as usize;
    let mut flights = Vec::new();
    for f in 0..n_flights {
        let carrier = *rng.pick(&CARRIERS);
        let n_legs = match rng.range(0, 9) {
            0..=6 => 1,
            7..=8 => 2,
            _ => 3,
        };
        let mut at = rng.range(0, n_air as i64 - 1) as usize;
        let mut t = rng.range(-300, 1700) as i32;
        let mut legs = Vec::new();
        for _ in 0..n_legs {
            let mut next = rng.range(0, n_air as i64 - 1) as usize;
            while next == at {
                next = rng.range(0, n_air as i64 - 1) as usize;
            }
            let dur = rng.range(30, 400) as i32;
            let dst = |rng: &mut Rng, o: i16| if rng.chance(0.1) { o + 60 } else { o };
            let dep_off = dst(rng, offsets[at]);
            let arr_off = dst(rng, offsets[next]);
            let mut l = leg_min(CODES[at], CODES[next], t, t + dur).offsets(dep_off, arr_off);
            if rng.chance(0.05) {
                l = l.service(b'F');
            }
            legs.push(l);
            t += dur + rng.range(20, 120) as i32;
            at = next;
        }
        let mut dates: Vec<i32> = (-1..=2)
            .filter(|_| rng.chance(0.6))
            .map(|k| d + k)
            .collect();
        if dates.is_empty() {
            dates.push(d);
        }
        flights.push(flight(carrier, (f + 1) as u16, &dates, legs));
    }
    flights.sort_by_key(|f| (f.carrier.clone(), f.number));
    let mut seats = BTreeMap::new();
    for (fi, f) in flights.iter().enumerate() {
        for li in 0..f.legs.len() {
            for &base in &f.dates {
                for &c in &CLASSES {
                    if rng.chance(0.8) {
                        seats.insert((fi, li, base, c), rng.range(0, 5) as u16);
                    }
                }
            }
        }
    }
    // Fares on markets that are flown (legs and whole flights), so most itineraries have
    // several competing constructions.
    let mut flown: Vec<(String, String, String)> = Vec::new();
    for f in &flights {
        for l in &f.legs {
            flown.push((f.carrier.clone(), l.dep.clone(), l.arr.clone()));
        }
        if let (Some(a), Some(b)) = (f.legs.first(), f.legs.last()) {
            if a.dep != b.arr {
                flown.push((f.carrier.clone(), a.dep.clone(), b.arr.clone()));
            }
        }
    }
    for (carrier, o, de) in &flown {
        for _ in 0..rng.range(0, 3) {
            let mut f = fare(carrier, o, de, *rng.pick(&CLASSES), rng.range(1, 300) * 100);
            if rng.chance(0.2) {
                f = f.ptype(rng.range(1, 2) as u8);
            }
            if rng.chance(0.1) {
                f = f.currency(b"EUR");
            }
            if rng.chance(0.2) {
                f = f.cabin(2);
            }
            f = f.ap(*rng.pick(&[0u16, 0, 0, 31]));
            w.fares.push(f);
        }
    }
    w.flights = flights;
    let n_fares = rng.range(150, 300);
    for _ in 0..n_fares {
        let carrier = *rng.pick(&CARRIERS);
        let o = rng.range(0, n_air as i64 - 1) as usize;
        let mut de = rng.range(0, n_air as i64 - 1) as usize;
        while de == o {
            de = rng.range(0, n_air as i64 - 1) as usize;
        }
        let class = *rng.pick(&CLASSES);
        let mut f = fare(carrier, CODES[o], CODES[de], class, rng.range(1, 500) * 100);
        f = f.cabin(*rng.pick(&[0u8, 0, 2]));
        let p = rng.range(0, 9);
        if p >= 6 {
            f = f.ptype(if p >= 8 { 2 } else { 1 });
        }
        if rng.chance(0.15) {
            f = f.currency(b"EUR");
        }
        if rng.chance(0.2) {
            let a = d + rng.range(-3, 2) as i32;
            f = f.dates(a, a + rng.range(0, 3) as i32);
        }
        if rng.chance(0.3) {
            f = f.days(rng.range(1, 127) as u8);
        }
        f = f.ap(*rng.pick(&[0u16, 0, 0, 10, 29, 31]));
        w.fares.push(f);
    }
    for _ in 0..rng.range(0, 6) {
        let st = if rng.chance(0.3) {
            "*".to_string()
        } else {
            CODES[rng.range(0, n_air as i64 - 1) as usize].to_string()
        };
        let c = |rng: &mut Rng| {
            if rng.chance(0.6) {
                String::new()
            } else {
                rng.pick(&CARRIERS).to_string()
            }
        };
        let a = c(rng);
        let b = c(rng);
        w.mct
            .push((st, rng.range(0, 4) as u8, rng.range(0, 180) as u16, a, b));
    }
    w.mct_default = *rng.pick(&[30u16, 60, 90]);
    Case {
        world: w,
        n_air,
        country,
        seats,
    }
}

/// A dated segment, brute-force style.
#[derive(Clone, Debug)]
struct BSeg {
    fi: usize,
    from: usize,
    to: usize,
    base: i32,
    carrier: String,
    /// Airports in order: origin, stops..., destination (indexes into CODES).
    airports: Vec<usize>,
    dep_utc: i64,
    arr_utc: i64,
    dep_local_date: i32,
}

/// A path with its brute-force price per currency.
type PricedPath = (Vec<BSeg>, BTreeMap<[u8; 3], i64>);

fn idx(code: &str) -> usize {
    CODES.iter().position(|c| *c == code).unwrap()
}

fn all_segments(c: &Case) -> Vec<BSeg> {
    let mut out = Vec::new();
    for (fi, f) in c.world.flights.iter().enumerate() {
        for &base in &f.dates {
            for i in 0..f.legs.len() {
                for j in i..f.legs.len() {
                    let legs = &f.legs[i..=j];
                    if legs.iter().any(|l| !b"JSUQGBRCO".contains(&l.service)) {
                        continue;
                    }
                    let mut airports = vec![idx(&legs[0].dep)];
                    airports.extend(legs.iter().map(|l| idx(&l.arr)));
                    let distinct: BTreeSet<usize> = airports.iter().copied().collect();
                    if distinct.len() != airports.len() {
                        continue;
                    }
                    let dep_utc = i64::from(base) * 1440 + i64::from(legs[0].dep_utc);
                    let dep_local = dep_utc + i64::from(legs[0].dep_off);
                    out.push(BSeg {
                        fi,
                        from: i,
                        to: j,
                        base,
                        carrier: f.carrier.clone(),
                        airports,
                        dep_utc,
                        arr_utc: i64::from(base) * 1440 + i64::from(legs[legs.len() - 1].arr_utc),
                        dep_local_date: dep_local.div_euclid(1440) as i32,
                    });
                }
            }
        }
    }
    out
}

struct Q {
    o: usize,
    d: usize,
    date: i32,
    adults: u8,
    children: u8,
    infants: u8,
    cabin: Option<u8>,
    max_conn: usize,
    min_conn: Option<i64>,
    max_conn_min: i64,
}

fn mct(c: &Case, a: &BSeg, b: &BSeg) -> i64 {
    let st = *a.airports.last().unwrap();
    let n = a.airports.len();
    let arr_dom = c.country[a.airports[n - 2]] == c.country[a.airports[n - 1]];
    let dep_dom = c.country[b.airports[0]] == c.country[b.airports[1]];
    let t = match (arr_dom, dep_dom) {
        (true, true) => 1,
        (true, false) => 2,
        (false, true) => 3,
        (false, false) => 4,
    };
    let mut best: Option<((u8, u8, u8, u16), u16)> = None;
    for (s, ty, m, ac, dc) in c.world.mct.iter() {
        let named = s != "*";
        if named && idx(s) != st {
            continue;
        }
        if *ty != 0 && *ty != t {
            continue;
        }
        if !ac.is_empty() && *ac != a.carrier {
            continue;
        }
        if !dc.is_empty() && *dc != b.carrier {
            continue;
        }
        let key = (
            named as u8,
            (!ac.is_empty()) as u8 + (!dc.is_empty()) as u8,
            (*ty != 0) as u8,
            *m,
        );
        if best.is_none_or(|(k, _)| key > k) {
            best = Some((key, *m));
        }
    }
    i64::from(best.map(|b| b.1).unwrap_or(c.world.mct_default))
}

fn paths(c: &Case, segs: &[BSeg], q: &Q) -> Vec<Vec<BSeg>> {
    let mut out = Vec::new();
    let mut stack: Vec<Vec<BSeg>> = segs
        .iter()
        .filter(|s| s.airports[0] == q.o && s.dep_local_date == q.date)
        .map(|s| vec![s.clone()])
        .collect();
    while let Some(p) = stack.pop() {
        let last = p.last().unwrap();
        if *last.airports.last().unwrap() == q.d {
            out.push(p);
            continue;
        }
        if p.len() > q.max_conn {
            continue;
        }
        let visited: Vec<usize> = p.iter().flat_map(|s| s.airports.iter().copied()).collect();
        for n in segs {
            if n.airports[0] != *last.airports.last().unwrap() {
                continue;
            }
            if n.fi == last.fi && n.base == last.base {
                continue;
            }
            let gap = n.dep_utc - last.arr_utc;
            let min = q.min_conn.unwrap_or_else(|| mct(c, last, n));
            if gap < min || gap > q.max_conn_min {
                continue;
            }
            if n.airports[1..].iter().any(|a| visited.contains(a)) {
                continue;
            }
            let mut np = p.clone();
            np.push(n.clone());
            stack.push(np);
        }
    }
    out
}

fn fare_ok(f: &FareSpec, date: i32, today: i32, cabin: Option<u8>) -> bool {
    let wd = format::date::weekday(date);
    f.first_day <= date
        && date <= f.last_day
        && (f.days_mask >> wd) & 1 == 1
        && i64::from(date - today) >= i64::from(f.ap)
        && cabin.is_none_or(|c| c == f.cabin)
}

/// Every valid party total of one component, as (currency, amount).
fn component_options(c: &Case, comp: &[BSeg], q: &Q) -> Vec<([u8; 3], i64)> {
    let carrier = &comp[0].carrier;
    if comp.iter().any(|s| &s.carrier != carrier) {
        return vec![];
    }
    let o = CODES[comp[0].airports[0]];
    let d = CODES[*comp.last().unwrap().airports.last().unwrap()];
    let date = comp[0].dep_local_date;
    let today = clock().today();
    let seated = u16::from(q.adults) + u16::from(q.children);
    let mut out = Vec::new();
    let fares: Vec<&FareSpec> = c
        .world
        .fares
        .iter()
        .filter(|f| {
            &f.carrier == carrier
                && f.origin == o
                && f.dest == d
                && fare_ok(f, date, today, q.cabin)
        })
        .collect();
    for f in fares.iter().filter(|f| f.ptype == 0) {
        let seats_ok = comp.iter().all(|s| {
            (s.from..=s.to).all(|li| {
                c.seats
                    .get(&(s.fi, li, s.base, f.class))
                    .copied()
                    .unwrap_or(0)
                    >= seated
            })
        });
        if !seats_ok {
            continue;
        }
        let companion = |p: u8| {
            fares
                .iter()
                .filter(|g| {
                    g.ptype == p
                        && g.class == f.class
                        && g.cabin == f.cabin
                        && g.currency == f.currency
                })
                .map(|g| g.amount)
                .min()
        };
        let chd = companion(1).unwrap_or(f.amount);
        let inf = companion(2).unwrap_or(0);
        out.push((
            f.currency,
            i64::from(q.adults) * f.amount
                + i64::from(q.children) * chd
                + i64::from(q.infants) * inf,
        ));
    }
    out
}

/// Cheapest total per currency over every partition and every fare choice.
fn brute_price(c: &Case, p: &[BSeg], q: &Q) -> BTreeMap<[u8; 3], i64> {
    let n = p.len();
    let mut best: BTreeMap<[u8; 3], i64> = BTreeMap::new();
    // Each bit i set = a component boundary after segment i.
    for mask in 0..(1u32 << (n - 1)) {
        let mut comps: Vec<&[BSeg]> = Vec::new();
        let mut start = 0;
        for i in 0..n {
            if i == n - 1 || mask & (1 << i) != 0 {
                comps.push(&p[start..=i]);
                start = i + 1;
            }
        }
        let options: Vec<Vec<([u8; 3], i64)>> =
            comps.iter().map(|cp| component_options(c, cp, q)).collect();
        // Cartesian product over fare choices.
        let mut acc: Vec<([u8; 3], i64)> = vec![(*b"   ", 0)];
        for opts in &options {
            let mut next = Vec::new();
            for (cur, sum) in &acc {
                for (c2, a) in opts {
                    if cur == b"   " || cur == c2 {
                        next.push((*c2, sum + a));
                    }
                }
            }
            acc = next;
        }
        for (cur, total) in acc {
            let e = best.entry(cur).or_insert(i64::MAX);
            *e = (*e).min(total);
        }
    }
    best
}

fn seg_name(s: &BSeg) -> String {
    format!(
        "{}{} {}-{} {}",
        s.carrier,
        s.fi_number_placeholder(),
        CODES[s.airports[0]],
        CODES[*s.airports.last().unwrap()],
        format::date::format_utc_minutes(s.dep_utc)
    )
}

trait Num {
    fn fi_number_placeholder(&self) -> String;
}
thread_local! {
    static NUMBERS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}
impl Num for BSeg {
    fn fi_number_placeholder(&self) -> String {
        NUMBERS.with(|n| n.borrow()[self.fi].to_string())
    }
}

fn engine_names(data: &serde_json::Value) -> Vec<(String, String)> {
    data["itineraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| {
            let name = it["slices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|sl| {
                    sl["segments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|g| {
                            format!(
                                "{}{} {}-{} {}",
                                g["carrier"].as_str().unwrap(),
                                g["flight_number"].as_str().unwrap(),
                                g["origin"].as_str().unwrap(),
                                g["destination"].as_str().unwrap(),
                                g["departure_utc"].as_str().unwrap()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect::<Vec<_>>()
                .join(" / ");
            let price = match &it["price"] {
                serde_json::Value::Null => "null".to_string(),
                p => p["amount"].as_str().unwrap().to_string(),
            };
            (name, price)
        })
        .collect()
}

/// One itinerary of a response: (id, price in minor units or `None`, outbound UTC departure).
fn engine_rows(data: &serde_json::Value) -> Vec<(String, Option<i64>, String)> {
    data["itineraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| {
            let price = it["price"]["amount"]
                .as_str()
                .map(|a| a.replace('.', "").parse::<i64>().unwrap());
            let dep = it["slices"][0]["segments"][0]["departure_utc"]
                .as_str()
                .unwrap()
                .to_string();
            (it["id"].as_str().unwrap().to_string(), price, dep)
        })
        .collect()
}

/// Each itinerary's id and `slices[0].duration_minutes`.
fn durations(data: &serde_json::Value) -> HashMap<String, i64> {
    data["itineraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| {
            let d = it["slices"][0]["duration_minutes"].as_i64().unwrap();
            (it["id"].as_str().unwrap().to_string(), d)
        })
        .collect()
}

/// Ordered results with small limits (the top-k path of one-way searches, whose buffer is
/// compacted every `2 * limit` slices, and which skips pricing joint fares that cannot
/// change what it keeps) against the full list - itself checked against the brute force -
/// ordered by the documented keys: sort=price by (price, departure, id) with unpriced last,
/// sort=departure by (departure, id), sort=duration by (duration, departure, id);
/// `max_price` and `priced_only` filter `meta.total` and the results alike.
fn check_small_limits(
    b: &Built,
    base: &[(&str, &str)],
    all: &[(String, Option<i64>, String)],
    duration: &HashMap<String, i64>,
    seed: u64,
) {
    let prices: Vec<i64> = all.iter().filter_map(|r| r.1).collect();
    let mut caps: Vec<Option<i64>> = vec![None];
    if !prices.is_empty() {
        let mut sorted = prices.clone();
        sorted.sort();
        // A cap equal to a price (inclusive bound, ties) and one between prices.
        caps.push(Some(sorted[sorted.len() / 2]));
        caps.push(Some(sorted[0] + 1));
    }
    for sort in ["price", "departure", "duration"] {
        for priced_only in ["true", "false"] {
            for cap in &caps {
                let mut want: Vec<&(String, Option<i64>, String)> = all
                    .iter()
                    .filter(|r| match cap {
                        Some(m) => r.1.is_some_and(|v| v <= *m),
                        None => priced_only == "false" || r.1.is_some(),
                    })
                    .collect();
                match sort {
                    "price" => want.sort_by(|x, y| {
                        (x.1.is_none(), x.1, &x.2, &x.0).cmp(&(y.1.is_none(), y.1, &y.2, &y.0))
                    }),
                    "duration" => want.sort_by(|x, y| {
                        (duration[&x.0], &x.2, &x.0).cmp(&(duration[&y.0], &y.2, &y.0))
                    }),
                    _ => want.sort_by(|x, y| (&x.2, &x.0).cmp(&(&y.2, &y.0))),
                }
                let cap_s = cap.map(|m| format!("{}.{:02}", m / 100, m % 100));
                for limit in ["1", "2", "3", "7"] {
                    let mut p: Vec<(&str, &str)> = base
                        .iter()
                        .filter(|(k, _)| !["sort", "limit", "priced_only", "max_price"].contains(k))
                        .copied()
                        .collect();
                    p.push(("sort", sort));
                    p.push(("priced_only", priced_only));
                    p.push(("limit", limit));
                    if let Some(c) = &cap_s {
                        p.push(("max_price", c));
                    }
                    let (data, meta) = search(b, &p);
                    let got: Vec<String> = engine_rows(&data).into_iter().map(|r| r.0).collect();
                    let n: usize = limit.parse().unwrap();
                    let expect: Vec<String> = want.iter().take(n).map(|r| r.0.clone()).collect();
                    assert_eq!(got, expect, "seed {seed} small limit {p:?}");
                    assert_eq!(
                        meta["total"].as_u64(),
                        Some(want.len() as u64),
                        "seed {seed} total {p:?}"
                    );
                }
            }
        }
    }
}

fn amount(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

fn best_of(m: &BTreeMap<[u8; 3], i64>) -> Option<i64> {
    m.values().copied().min()
}

/// A search split in two parallel parts answers exactly as a whole run (same itineraries
/// in the same order, same total).
fn same_split_or_whole(b: &Built, p: &[(&str, &str)], seed: u64) {
    use searchd::engine::{parse_search, run_search_with, Split};
    let q = parse_search(&b.snap, &params(p)).unwrap();
    let whole = run_search_with(&b.snap, &b.overlay, clock(), &q, Split::Never);
    let split = run_search_with(&b.snap, &b.overlay, clock(), &q, Split::Always);
    assert_eq!(
        whole.itineraries, split.itineraries,
        "seed {seed} split {p:?}"
    );
    assert_eq!(whole.total, split.total, "seed {seed} split total {p:?}");
    assert_eq!(whole.too_broad, split.too_broad, "seed {seed} split {p:?}");
}

#[test]
fn engine_equals_brute_force_on_random_networks() {
    let cases: u64 = std::env::var("ENGINE_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut checked_itins = 0usize;
    let mut priced = 0usize;
    for seed in 1..=cases {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x1234_5678_9ABC_DEF1));
        let mut c = gen_world(&mut rng);
        // Availability rows from the generated map (by flight position after sorting).
        let d = d0();
        for ((fi, li, base, class), s) in &c.seats {
            c.world.raw_avail.push((*fi, *li as u8, *base, *class, *s));
        }
        NUMBERS.with(|n| *n.borrow_mut() = c.world.flights.iter().map(|f| f.number).collect());
        let b = build(&c.world);
        let segs = all_segments(&c);
        for _ in 0..6 {
            let o = rng.range(0, c.n_air as i64 - 1) as usize;
            let mut de = rng.range(0, c.n_air as i64 - 1) as usize;
            while de == o {
                de = rng.range(0, c.n_air as i64 - 1) as usize;
            }
            let adults = rng.range(1, 3) as u8;
            let q = Q {
                o,
                d: de,
                date: d + rng.range(-1, 2) as i32,
                adults,
                children: rng.range(0, 2) as u8,
                infants: rng.range(0, i64::from(adults)) as u8,
                cabin: if rng.chance(0.3) {
                    Some(*rng.pick(&[0u8, 2]))
                } else {
                    None
                },
                max_conn: rng.range(0, 2) as usize,
                min_conn: if rng.chance(0.2) {
                    Some(rng.range(0, 60))
                } else {
                    None
                },
                max_conn_min: if rng.chance(0.3) {
                    rng.range(60, 1440)
                } else {
                    1440
                },
            };
            let date = iso(q.date);
            let (a_s, c_s, i_s) = (
                q.adults.to_string(),
                q.children.to_string(),
                q.infants.to_string(),
            );
            let mc = q.max_conn.to_string();
            let maxc = q.max_conn_min.to_string();
            let minc = q.min_conn.map(|m| m.to_string());
            let mut p: Vec<(&str, &str)> = vec![
                ("origin", CODES[o]),
                ("destination", CODES[de]),
                ("date", &date),
                ("adults", &a_s),
                ("children", &c_s),
                ("infants", &i_s),
                ("max_connections", &mc),
                ("max_connection_minutes", &maxc),
                ("priced_only", "false"),
                ("sort", "departure"),
                ("limit", "1000"),
            ];
            if let Some(m) = &minc {
                p.push(("min_connection_minutes", m));
            }
            if let Some(cab) = q.cabin {
                p.push(("cabin", format::model::CABINS[cab as usize]));
            }
            let (data, meta) = search(&b, &p);
            same_split_or_whole(&b, &p, seed);
            let mut got = engine_names(&data);
            got.sort();
            let mut want: Vec<(String, String)> = paths(&c, &segs, &q)
                .iter()
                .map(|path| {
                    let name = path.iter().map(seg_name).collect::<Vec<_>>().join("|");
                    let price = best_of(&brute_price(&c, path, &q))
                        .map(amount)
                        .unwrap_or("null".into());
                    (name, price)
                })
                .collect();
            want.sort();
            assert_eq!(got, want, "seed {seed} query {p:?}");
            assert_eq!(
                meta["total"].as_u64(),
                Some(want.len() as u64),
                "seed {seed}"
            );
            checked_itins += want.len();
            priced += want.iter().filter(|w| w.1 != "null").count();
            check_small_limits(&b, &p, &engine_rows(&data), &durations(&data), seed);

            // Price order with a small limit: the first prices of the full sorted list.
            let mut p2 = p.clone();
            p2.retain(|(k, _)| !["sort", "limit", "priced_only"].contains(k));
            p2.push(("limit", "3"));
            let (data2, meta2) = search(&b, &p2);
            same_split_or_whole(&b, &p2, seed);
            let mut priced_prices: Vec<i64> = want
                .iter()
                .filter(|w| w.1 != "null")
                .map(|w| (w.1.replace('.', "")).parse::<i64>().unwrap())
                .collect();
            priced_prices.sort();
            let top: Vec<String> = priced_prices.iter().take(3).map(|&m| amount(m)).collect();
            let got2: Vec<String> = engine_names(&data2).into_iter().map(|x| x.1).collect();
            assert_eq!(got2, top, "seed {seed} price order");
            assert_eq!(meta2["total"].as_u64(), Some(priced_prices.len() as u64));
            // Every returned id re-prices to the same amount.
            for it in data2["itineraries"].as_array().unwrap() {
                let (o, _) = searchd::engine::offer(
                    &b.snap,
                    &b.overlay,
                    clock(),
                    it["id"].as_str().unwrap(),
                )
                .unwrap();
                assert_eq!(o["price"], it["price"], "seed {seed} offer");
                assert_eq!(o["price_changed"], false);
            }

            // Calendar: the lowest price per day equals the brute-force minimum of that day.
            let (from, to) = (iso(q.date - 1), iso(q.date + 1));
            let mut pc: Vec<(&str, &str)> = p2
                .iter()
                .filter(|(k, _)| !["date", "limit"].contains(k))
                .copied()
                .collect();
            pc.push(("from", &from));
            pc.push(("to", &to));
            let (cal, _) =
                searchd::engine::calendar(&b.snap, &b.overlay, clock(), &params(&pc)).unwrap();
            for (k, day) in cal["days"].as_array().unwrap().iter().enumerate() {
                let qd = Q {
                    date: q.date - 1 + k as i32,
                    ..q
                };
                let best = paths(&c, &segs, &qd)
                    .iter()
                    .filter_map(|path| best_of(&brute_price(&c, path, &qd)))
                    .min();
                let got = day["lowest_price"]["amount"].as_str().map(str::to_string);
                assert_eq!(got, best.map(amount), "seed {seed} calendar day {k}");
                // The day's itinerary is the first of that day's sort=price search (the
                // calendar prunes by price bounds and departure ties; the search does not).
                let day_s = iso(qd.date);
                let mut ps: Vec<(&str, &str)> = p2
                    .iter()
                    .filter(|(k, _)| !["date", "limit"].contains(k))
                    .copied()
                    .collect();
                ps.push(("date", &day_s));
                ps.push(("limit", "1"));
                let (first, _) = search(&b, &ps);
                assert_eq!(
                    day["itinerary_id"].as_str(),
                    first["itineraries"][0]["id"].as_str(),
                    "seed {seed} calendar day {k} itinerary"
                );
                if let Some(id) = day["itinerary_id"].as_str() {
                    let (o, _) = searchd::engine::offer(&b.snap, &b.overlay, clock(), id).unwrap();
                    assert_eq!(o["price"]["amount"].as_str(), got.as_deref());
                }
            }

            // Round trip: totals and the cheapest pairs against per-currency brute prices.
            let ret = q.date + rng.range(0, 2) as i32;
            let ret_s = iso(ret);
            let mut p3 = p2.clone();
            p3.push(("return_date", &ret_s));
            let (data3, meta3) = search(&b, &p3);
            let q_in = Q {
                o: q.d,
                d: q.o,
                date: ret,
                ..q
            };
            let outs: Vec<PricedPath> = paths(&c, &segs, &q)
                .into_iter()
                .map(|p| {
                    let pr = brute_price(&c, &p, &q);
                    (p, pr)
                })
                .collect();
            let ins: Vec<PricedPath> = paths(&c, &segs, &q_in)
                .into_iter()
                .map(|p| {
                    let pr = brute_price(&c, &p, &q_in);
                    (p, pr)
                })
                .collect();
            let mut pair_prices = Vec::new();
            for (po, a) in &outs {
                for (pi, bb) in &ins {
                    // The return leaves at least a connection's minimum after landing.
                    let (last, first) = (po.last().unwrap(), &pi[0]);
                    let min = q.min_conn.unwrap_or_else(|| mct(&c, last, first));
                    if first.dep_utc - last.arr_utc < min {
                        continue;
                    }
                    let best = a
                        .iter()
                        .filter_map(|(cur, x)| bb.get(cur).map(|y| x + y))
                        .min();
                    if let Some(v) = best {
                        pair_prices.push(v);
                    }
                }
            }
            pair_prices.sort();
            assert_eq!(
                meta3["total"].as_u64(),
                Some(pair_prices.len() as u64),
                "seed {seed} rt total"
            );
            let got3: Vec<String> = engine_names(&data3).into_iter().map(|x| x.1).collect();
            let top3: Vec<String> = pair_prices.iter().take(3).map(|&m| amount(m)).collect();
            assert_eq!(got3, top3, "seed {seed} rt order");
            let q = Q { ..q_in };
            let _ = q;
        }
    }
    eprintln!("checked {checked_itins} itineraries ({priced} priced)");
    assert!(
        checked_itins > 100,
        "the generator should produce itineraries"
    );
    assert!(
        priced > 10,
        "the generator should produce priced itineraries"
    );
}

#[test]
fn never_panics_on_odd_parameters() {
    let mut rng = Rng(42);
    let c = gen_world(&mut rng);
    let b = build(&c.world);
    let names = [
        "origin",
        "destination",
        "date",
        "return_date",
        "adults",
        "children",
        "infants",
        "cabin",
        "max_connections",
        "min_connection_minutes",
        "max_connection_minutes",
        "carriers",
        "exclude_carriers",
        "depart_after",
        "depart_before",
        "max_price",
        "priced_only",
        "sort",
        "limit",
        "from",
        "to",
        "",
    ];
    let values = [
        "",
        "AAA",
        "bbb",
        "CCC",
        "2025-06-02",
        "2025-06-03",
        "9999-12-31",
        "0000-01-01",
        "-1",
        "0",
        "1",
        "2",
        "9",
        "10",
        "99999999999999999999",
        "XX,YY",
        ",",
        "23:59",
        "00:00",
        "99:99",
        "1.5",
        "0.000001",
        "1e9",
        "true",
        "false",
        "price",
        "duration",
        "departure",
        "economy",
        "\u{1F600}",
        "A\0B",
    ];
    for _ in 0..3000 {
        let n = rng.range(0, 6);
        let mut p = Vec::new();
        for _ in 0..n {
            p.push((rng.pick(&names).to_string(), rng.pick(&values).to_string()));
        }
        let _ = searchd::engine::search(&b.snap, &b.overlay, clock(), &p);
        let _ = searchd::engine::calendar(&b.snap, &b.overlay, clock(), &p);
        let id: String = (0..rng.range(0, 220))
            .map(|_| *rng.pick(&['0', 'a', 'f', '9', 'g', 'Z']))
            .collect();
        let _ = searchd::engine::offer(&b.snap, &b.overlay, clock(), &id);
    }
}
