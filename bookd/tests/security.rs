//! Authentication, isolation between keys, hostile input, body limits, rate limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_isolation_and_hostile_input() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(
        tmp.path(),
        &["--rate-limit", "100000", "--rate-burst", "100000"],
    );
    let key = b.new_key("a");
    let other = b.new_key("b");
    let body = order_body(&offer(40, "Y", 1), 1, "tok_ok");

    // Missing, malformed, wrong keys: 401.
    let r = b.call("POST", "/v1/orders", None, None, Some(&body)).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = b
        .call("GET", "/v1/orders", Some("bk_wrong"), None, None)
        .await;
    assert_eq!(r.status, 401);
    let r = http(
        b.addr,
        "GET",
        "/v1/orders",
        &[("authorization".into(), "Basic abc".into())],
        None,
    )
    .await;
    assert_eq!(r.status, 401);

    // Regression: a body sent as something other than JSON was taken as JSON (a form
    // posted by mistake made a hold); the auth scheme's case was significant.
    let r = http(
        b.addr,
        "POST",
        "/v1/holds",
        &[
            ("authorization".into(), format!("Bearer {key}")),
            ("content-type".into(), "text/plain".into()),
        ],
        Some(hold_body(&offer(40, "Y", 1), 1).to_string().into_bytes()),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (415, "unsupported_media_type"),
        "{:?}",
        r.body
    );
    assert_eq!(r.param(), "Content-Type");
    let r = http(
        b.addr,
        "GET",
        "/v1/orders",
        &[("authorization".into(), format!("bearer {key}"))],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = http(
        b.addr,
        "POST",
        "/v1/holds",
        &[
            ("authorization".into(), format!("Bearer {key}")),
            (
                "content-type".into(),
                "Application/JSON; charset=utf-8".into(),
            ),
        ],
        Some(hold_body(&offer(40, "Y", 1), 1).to_string().into_bytes()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let r = b
        .call("POST", "/v1/orders", Some(&key), None, Some(&body))
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["data"]["id"].as_str().unwrap().to_string();
    // Another key's order does not exist for you.
    let r = b
        .call("GET", &format!("/v1/orders/{id}"), Some(&other), None, None)
        .await;
    assert_eq!(r.status, 404);
    let r = b
        .call(
            "POST",
            &format!("/v1/orders/{id}/cancel"),
            Some(&other),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = b.call("GET", "/v1/orders", Some(&other), None, None).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 0);

    // SQL metacharacters in every field: refused or harmless, never a 5xx.
    let evil = "x'); DROP TABLE orders; --";
    let mut cases = Vec::new();
    let mut v = body.clone();
    v["offer_id"] = json!(evil);
    cases.push(("/v1/orders", v));
    for field in ["given_name", "family_name", "born_on", "type"] {
        let mut v = body.clone();
        v["passengers"][0][field] = json!(evil);
        cases.push(("/v1/orders", v));
    }
    let mut v = body.clone();
    v["contact"]["email"] = json!(format!("{evil}@example.com"));
    cases.push(("/v1/orders", v));
    let mut v = body.clone();
    v["payment"]["token"] = json!(evil);
    cases.push(("/v1/orders", v));
    let mut v = body.clone();
    v["expected_total"] = json!({"amount": evil, "currency": "EUR"});
    cases.push(("/v1/orders", v));
    cases.push((
        "/v1/orders",
        json!({"hold_id": evil, "payment": {"type": "card", "token": "tok_ok"}}),
    ));
    cases.push((
        "/v1/holds",
        json!({"offer_id": evil, "passengers": [adult(0)], "contact": {"email": "a@example.com"}}),
    ));
    // Oversized fields.
    let mut v = body.clone();
    v["passengers"][0]["given_name"] = json!("A".repeat(20_000));
    cases.push(("/v1/orders", v));
    let mut v = body.clone();
    v["offer_id"] = json!("leg:".repeat(5000));
    cases.push(("/v1/orders", v));
    for (path, v) in &cases {
        let r = b.call("POST", path, Some(&key), None, Some(v)).await;
        assert_eq!(r.status, 400, "{path} {v}: {:?}", r.body);
        assert!(!r.param().is_empty(), "the field is named: {:?}", r.body);
    }
    let r = b
        .call(
            "GET",
            &format!("/v1/orders/{}", urlenc(evil)),
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = b
        .call(
            "GET",
            &format!("/v1/orders?after={}", urlenc(evil)),
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!((r.status, r.param()), (400, "after"));
    let r = b
        .call(
            "POST",
            "/v1/holds",
            Some(&key),
            Some(evil),
            Some(&hold_body(&offer(40, "Y", 1), 1)),
        )
        .await;
    assert_eq!(r.status, 201, "an Idempotency-Key is an opaque string");
    // Oversized body: 413.
    let big = vec![b' '; 70 * 1024];
    let r = b
        .call_raw("POST", "/v1/holds", Some(&key), None, Some(big))
        .await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
    let r = b
        .call_raw(
            "POST",
            "/v1/holds",
            Some(&key),
            None,
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!((r.status, r.param()), (400, "body"));
    // The tables are intact.
    let db = b.db().await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    // Revoked keys: 403 (after the 1 s key cache).
    let out = b.keys("revoke", "b");
    assert!(out.status.success());
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = b.call("GET", "/v1/orders", Some(&other), None, None).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    // Only hashes are stored.
    let rows = db
        .query("SELECT key_hash FROM api_keys", &[])
        .await
        .unwrap();
    for row in rows {
        let h: Vec<u8> = row.get(0);
        assert_eq!(h.len(), 32);
    }
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_per_key() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = Bookd::new(tmp.path(), &["--rate-limit", "1", "--rate-burst", "5"]);
    let key = b.new_key("a");
    let other = b.new_key("b");
    for i in 0..5 {
        let r = b.call("GET", "/v1/orders", Some(&key), None, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers.get("ratelimit-limit").unwrap(), "5");
        assert_eq!(
            r.headers
                .get("ratelimit-remaining")
                .unwrap()
                .to_str()
                .unwrap(),
            (4 - i).to_string()
        );
    }
    let r = b.call("GET", "/v1/orders", Some(&key), None, None).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"));
    // Regression: Retry-After said when the bucket would be full again (5 s at 1/s with a
    // burst of 5), not when the next request is allowed (1 s).
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    assert_eq!(r.headers.get("ratelimit-remaining").unwrap(), "0");
    // Per key: the other key is not limited.
    let r = b.call("GET", "/v1/orders", Some(&other), None, None).await;
    assert_eq!(r.status, 200);
}
