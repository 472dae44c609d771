//! The bytes the server sends for searches and offers (written directly by
//! `engine::render::JsonOut`) equal `serde_json`'s serialisation of the same answer's `Value`
//! (`engine::search` / `engine::offer`), on a generated network with through flights,
//! connections, round trips, unpriced itineraries, several currencies and fare bases that
//! need escaping; and the real binary sends those bytes over HTTP.
#![allow(clippy::unwrap_used)]

mod common;
mod engine_common;

use engine_common::*;
use searchd::engine;

/// A small deterministic generator (no dependency, same network every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const AIRPORTS: [&str; 6] = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"];

fn world() -> World {
    let mut w = World::new(&[
        ("AAA", "US"),
        ("BBB", "US"),
        ("CCC", "US"),
        ("DDD", "FR"),
        ("EEE", "FR"),
        ("FFF", "JP"),
    ]);
    w.metros
        .push(("MMM".into(), vec!["AAA".into(), "BBB".into()]));
    w.mct_default = 45;
    w.open_classes = vec![b'Y', b'B'];
    let mut r = Lcg(7);
    let d = d0();
    let carriers = ["XX", "YY", "ZZZ"];
    for n in 0..60u16 {
        let carrier = carriers[usize::from(n) % 3];
        let n_legs = 1 + r.below(3) as usize;
        let mut at = AIRPORTS[r.below(6) as usize];
        let mut t = (r.below(24 * 4) * 15) as i32;
        let mut legs = Vec::new();
        for _ in 0..n_legs {
            let mut to = AIRPORTS[r.below(6) as usize];
            while to == at || legs.iter().any(|l: &LegSpec| l.dep == to) {
                to = AIRPORTS[r.below(6) as usize];
            }
            let dur = 45 + (r.below(40) * 10) as i32;
            // Offsets: local times on other days than UTC, both ways.
            let off = [0i16, 60, -300, 540, 330][r.below(5) as usize];
            let mut l = leg_min(at, to, t, t + dur).offsets(off, off);
            l.aircraft = [*b"320", *b"77W", *b"E9 ", *b"CR9"][r.below(4) as usize];
            legs.push(l);
            t += dur + 30 + (r.below(6) * 10) as i32;
            at = to;
        }
        let mut f = flight(carrier, 100 + n, &[d, d + 1, d + 3], legs);
        if n % 17 == 0 {
            f.suffix = b'A';
        }
        w.flights.push(f);
    }
    // Fares for most markets, some in other currencies (some mixes are unpriceable), with
    // bases that serde_json must escape.
    for (i, o) in AIRPORTS.iter().enumerate() {
        for (j, dst) in AIRPORTS.iter().enumerate() {
            if i == j || (i + j) % 5 == 0 {
                continue;
            }
            for c in carriers {
                let amount = 5_000 + ((i * 7 + j * 13) as i64 * 1_234) % 90_000;
                let mut f = fare(c, o, dst, b'Y', amount);
                if (i + j) % 4 == 1 {
                    f = f.currency(b"JPY");
                } else if (i + j) % 7 == 3 {
                    f = f.currency(b"KWD");
                }
                if j == 2 {
                    f = f.basis("Y\"Q\\1\tX");
                }
                w.fares.push(f);
                w.fares
                    .push(fare(c, o, dst, b'B', amount / 2).basis("BÉCO"));
                w.fares.push(fare(c, o, dst, b'Y', amount / 4).ptype(1));
                w.fares.push(fare(c, o, dst, b'Y', amount / 10).ptype(2));
            }
        }
    }
    w
}

fn queries() -> Vec<Vec<(String, String)>> {
    let d = iso(d0());
    let ret = iso(d0() + 3);
    let mut out = Vec::new();
    let mut ends: Vec<&str> = AIRPORTS.to_vec();
    ends.push("MMM");
    for o in &ends {
        for dst in &ends {
            if o == dst {
                continue;
            }
            let base = vec![("origin", *o), ("destination", *dst), ("date", d.as_str())];
            let variants: Vec<Vec<(&str, &str)>> = vec![
                vec![],
                vec![
                    ("max_connections", "2"),
                    ("priced_only", "false"),
                    ("limit", "1000"),
                    ("sort", "duration"),
                ],
                vec![("return_date", ret.as_str()), ("priced_only", "false")],
                vec![
                    ("adults", "2"),
                    ("children", "1"),
                    ("infants", "1"),
                    ("cabin", "economy"),
                    ("sort", "departure"),
                ],
            ];
            for v in variants {
                let mut p = base.clone();
                p.extend(v);
                out.push(params(&p));
            }
        }
    }
    out
}

fn value_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn search_and_offer_bytes_equal_the_serde_rendering() {
    let b = build(&world());
    let (mut itineraries, mut with_stops, mut unpriced, mut round_trips, mut escaped) =
        (0, 0, 0, 0, 0);
    let mut ids = Vec::new();
    for p in queries() {
        let raw = engine::search_raw(&b.snap, &b.overlay, clock(), &p);
        let val = engine::search(&b.snap, &b.overlay, clock(), &p);
        let (raw, val) = match (raw, val) {
            (Ok(r), Ok(v)) => (r, v),
            (Err(a), Err(e)) => {
                assert_eq!(a.code, e.code, "{p:?}");
                continue;
            }
            (r, v) => panic!("{p:?}: raw {r:?} vs value {v:?}"),
        };
        assert_eq!(raw.1, val.1, "meta of {p:?}");
        let want = value_bytes(&val.0);
        assert_eq!(
            String::from_utf8_lossy(&raw.0),
            String::from_utf8_lossy(&want),
            "{p:?}"
        );
        for it in val.0["itineraries"].as_array().unwrap() {
            itineraries += 1;
            let s = it.to_string();
            with_stops += usize::from(s.contains("\"stops\":[\""));
            unpriced += usize::from(it["price"].is_null());
            round_trips += usize::from(it["slices"].as_array().unwrap().len() == 2);
            escaped += usize::from(s.contains("\\\""));
            if ids.len() < 400 && itineraries % 3 == 0 {
                ids.push(it["id"].as_str().unwrap().to_string());
            }
        }
    }
    // The network exercises every branch of the writer.
    assert!(itineraries >= 500, "{itineraries} itineraries");
    assert!(
        with_stops > 0 && unpriced > 0 && round_trips > 0 && escaped > 0,
        "stops {with_stops}, unpriced {unpriced}, round trips {round_trips}, escaped {escaped}"
    );

    let mut priced_offers = 0;
    for id in &ids {
        let raw = engine::offer_raw(&b.snap, &b.overlay, clock(), id);
        let val = engine::offer(&b.snap, &b.overlay, clock(), id);
        match (raw, val) {
            (Ok(r), Ok(v)) => {
                assert_eq!(
                    String::from_utf8_lossy(&r.0),
                    String::from_utf8_lossy(&value_bytes(&v.0)),
                    "offer {id}"
                );
                assert_eq!(v.0["id"], id.as_str(), "re-priced at the same price");
                assert_eq!(v.0["price_changed"], false);
                priced_offers += 1;
            }
            (Err(a), Err(e)) => assert_eq!(a.code, e.code, "offer {id}"),
            (r, v) => panic!("offer {id}: raw {r:?} vs value {v:?}"),
        }
        // Any altered digit is refused, never rebuilt into another offer.
        let mut t = id.clone().into_bytes();
        let at = t.len() / 2;
        t[at] = if t[at] == b'0' { b'1' } else { b'0' };
        let t = String::from_utf8(t).unwrap();
        let e = engine::offer_raw(&b.snap, &b.overlay, clock(), &t).unwrap_err();
        assert_eq!(e.code, "invalid_offer_id", "{t}");
    }
    assert!(priced_offers >= 50, "{priced_offers} offers re-priced");
}

#[test]
fn the_server_sends_the_rendered_bytes() {
    sends_the_rendered_bytes(&[]);
}

/// Searches with connections tried on the request's thread within a small budget and, when
/// it runs out, run again on the blocking pool, answer exactly as when they are always run
/// on the pool (`0`) or always first tried with a budget too small for any (`1`).
#[test]
fn searches_answer_the_same_inline_or_handed_to_the_pool() {
    sends_the_rendered_bytes(&["--inline-search-steps", "0"]);
    sends_the_rendered_bytes(&["--inline-search-steps", "1"]);
}

fn sends_the_rendered_bytes(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let snap = write(&world(), &path);
    let overlay = searchd::overlay::Overlay::new();
    let now = format::date::format_utc_minutes(clock().now_utc_min);
    let mut args = vec!["--now", now.as_str()];
    args.extend_from_slice(extra);
    let server = common::Server::start(&path, &args);
    let mut client = common::Client::connect(server.addr).unwrap();
    let mut checked = 0;
    for p in queries().into_iter().step_by(5) {
        let Ok((data, meta)) = engine::search(&snap, &overlay, clock(), &p) else {
            continue;
        };
        let q: Vec<String> = p
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace('"', "%22")))
            .collect();
        let r = client.get(&format!("/v1/search?{}", q.join("&"))).unwrap();
        assert_eq!(r.status, 200, "{p:?}: {}", r.text());
        let mut want = b"{\"data\":".to_vec();
        want.extend_from_slice(&value_bytes(&data));
        want.extend_from_slice(b",\"meta\":");
        assert!(
            r.body.starts_with(&want),
            "{p:?}:\n{}\nwant prefix\n{}",
            r.text(),
            String::from_utf8_lossy(&want)
        );
        let v = r.json();
        assert_eq!(v["meta"]["count"], meta["count"]);
        assert_eq!(v["meta"]["total"], meta["total"]);
        if let Some(id) = data["itineraries"][0]["id"].as_str() {
            let (odata, _) = engine::offer(&snap, &overlay, clock(), id).unwrap();
            let r = client.get(&format!("/v1/offers/{id}")).unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            let mut want = b"{\"data\":".to_vec();
            want.extend_from_slice(&value_bytes(&odata));
            assert!(r.body.starts_with(&want), "offer {id}: {}", r.text());
        }
        checked += 1;
    }
    assert!(checked >= 20, "{checked} searches checked");
}

/// With `Accept-Encoding: gzip`, every answer of 1 KB or more comes gzip-encoded and
/// decodes to exactly the bytes sent to a client that did not ask (searches of every size,
/// the largest compressed on the blocking pool, offers, the OpenAPI document); smaller ones
/// and clients that refuse gzip get the identity encoding. Every answer that could be
/// encoded says `Vary: accept-encoding`, for caches.
#[test]
fn gzip_answers_decode_to_the_bytes_sent_unencoded() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    write(&world(), &path);
    let now = format::date::format_utc_minutes(clock().now_utc_min);
    let server = common::Server::start(&path, &["--now", now.as_str()]);
    let mut client = common::Client::connect(server.addr).unwrap();
    let rid = [("x-request-id", "gzip-check")];
    let gz = [
        ("x-request-id", "gzip-check"),
        ("Accept-Encoding", "br, gzip"),
    ];
    let (mut encoded, mut largest) = (0u64, 0usize);
    let mut targets: Vec<String> = queries()
        .into_iter()
        .step_by(3)
        .map(|p| {
            let q: Vec<String> = p
                .iter()
                .map(|(k, v)| format!("{k}={}", v.replace('"', "%22")))
                .collect();
            format!("/v1/search?{}", q.join("&"))
        })
        .collect();
    targets.push("/openapi.json".into());
    targets.push("/healthz".into());
    for target in &targets {
        let plain = client.send("GET", target, &rid).unwrap();
        let r = client.send("GET", target, &gz).unwrap();
        assert_eq!(r.status, plain.status, "{target}");
        assert_eq!(plain.header("content-encoding"), None, "{target}");
        if plain.body.len() < 1024 {
            assert_eq!(r.header("content-encoding"), None, "{target}");
            assert_eq!(r.body, plain.body, "{target}");
            continue;
        }
        assert_eq!(r.header("vary"), Some("accept-encoding"), "{target}");
        assert_eq!(plain.header("vary"), Some("accept-encoding"), "{target}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{target}");
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut decoded)
            .unwrap_or_else(|e| panic!("{target}: not gzip: {e}"));
        assert_eq!(decoded, plain.body, "{target}");
        assert!(r.body.len() < plain.body.len() / 3, "{target}");
        encoded += 1;
        largest = largest.max(plain.body.len());
        if let Some(id) = plain.json()["data"]["itineraries"][0]["id"].as_str() {
            let o = client
                .send("GET", &format!("/v1/offers/{id}"), &gz)
                .unwrap();
            assert_eq!(o.status, 200, "offer {id}");
            if o.header("content-encoding") == Some("gzip") {
                encoded += 1;
            }
        }
    }
    assert!(encoded >= 10, "{encoded} answers encoded");
    assert!(
        largest as u64 > 64 * 1024,
        "no answer large enough for the blocking pool: the largest was {largest} bytes"
    );
    // A client that refuses gzip, or names only other codings, gets identity.
    for ae in ["gzip;q=0", "br, deflate", "gzip;q=0, *"] {
        let r = client
            .send("GET", "/openapi.json", &[("Accept-Encoding", ae)])
            .unwrap();
        assert_eq!(r.header("content-encoding"), None, "{ae}");
        assert!(r.body.starts_with(b"{"), "{ae}");
    }
    let metrics = client.get("/metrics").unwrap().text();
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("searchd_http_responses_gzipped_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(counted, Some(encoded), "responses counted as gzipped");
}
