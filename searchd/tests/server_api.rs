//! The real `searchd` binary over HTTP: probes, metrics, places, envelopes, limits,
//! request ids, admin auth, usage errors and shutdown.

mod common;

use std::time::Duration;

use common::{request, Client, Server, SnapDir, ADMIN_TOKEN};

fn start() -> (SnapDir, Server) {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let server = Server::start(&snaps.link(), &[]);
    (snaps, server)
}

fn assert_error(r: &common::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let errors = v["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["code"], code, "{v}");
    assert!(errors[0]["title"].is_string());
    assert!(errors[0]["detail"].is_string());
    assert!(v["meta"]["request_id"].is_string());
    assert_eq!(
        v["meta"]["request_id"].as_str(),
        r.header("x-request-id"),
        "body and header carry the same request id"
    );
    errors[0].clone()
}

#[test]
fn probes_metrics_and_openapi() {
    let (_snaps, server) = start();
    let r = server.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["data"]["status"], "ok");

    let ready = server.ready();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["generation"], 1);
    assert_eq!(ready["snapshot_id"].as_str().map(str::len), Some(16));

    // A few requests so that the histograms have series.
    server.get("/v1/places?q=jfk");
    server.get("/nowhere");
    let m = server.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = m.text();
    for needle in [
        "# TYPE searchd_http_requests_total counter",
        "searchd_http_requests_total{route=\"places\",status=\"200\"} 1",
        "searchd_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "# TYPE searchd_http_request_duration_seconds histogram",
        "searchd_http_request_duration_seconds_bucket{route=\"places\",status=\"200\",le=\"+Inf\"} 1",
        "searchd_http_request_duration_seconds_count{route=\"places\",status=\"200\"} 1",
        "searchd_snapshot_generation 1",
        "searchd_overlay_entries 0",
        "searchd_snapshot_reloads_total 0",
        "searchd_snapshot_reload_failures_total 0",
        "searchd_connections_active ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let id = ready["snapshot_id"].as_str().unwrap_or_default();
    assert!(text.contains(&format!("searchd_snapshot_info{{snapshot_id=\"{id}\"")));
    // Every sample line is `name{labels} value` or `name value` with a numeric value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }

    let o = server.get("/openapi.json");
    assert_eq!(o.status, 200);
    let doc = o.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["paths"]["/v1/places"].is_object());
}

#[test]
fn places_answers() {
    let (_snaps, server) = start();
    let r = server.get("/v1/places?q=JFK");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["data"][0]["iata"], "JFK");
    assert_eq!(v["data"][0]["type"], "airport");
    assert_eq!(v["data"][0]["country"], "US");
    assert_eq!(v["meta"]["count"], 1);
    assert!(v["meta"]["request_id"].is_string());

    let v = server.get("/v1/places?q=kenedy").json();
    assert_eq!(v["data"][0]["iata"], "JFK");
    // The New York metro (all its airports) ranks above JFK alone.
    let v = server.get("/v1/places?q=new+y&limit=2").json();
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["data"][0]["iata"], "NYC");
    assert_eq!(v["data"][1]["iata"], "JFK");
    let v = server.get("/v1/places?q=lon").json();
    assert_eq!(v["data"][0]["type"], "metro");
    assert_eq!(v["data"][0]["iata"], "LON");
    // Percent-encoded UTF-8 is fine (and matches nothing here).
    let v = server.get("/v1/places?q=z%C3%BCrich").json();
    assert_eq!(v["data"], serde_json::json!([]));

    let e = assert_error(&server.get("/v1/places"), 400, "missing_parameter");
    assert_eq!(e["source"]["parameter"], "q");
    let e = assert_error(
        &server.get("/v1/places?q=jfk&limit=0"),
        400,
        "invalid_parameter",
    );
    assert_eq!(e["source"]["parameter"], "limit");
    let e = assert_error(
        &server.get("/v1/places?q=jfk&limit=51"),
        400,
        "invalid_parameter",
    );
    assert_eq!(e["source"]["parameter"], "limit");
    let long = "a".repeat(65);
    let e = assert_error(
        &server.get(&format!("/v1/places?q={long}")),
        400,
        "invalid_parameter",
    );
    assert_eq!(e["source"]["parameter"], "q");
    // Undecodable query strings name the parameter.
    let e = assert_error(&server.get("/v1/places?q=%zz"), 400, "invalid_parameter");
    assert_eq!(e["source"]["parameter"], "q");
    let e = assert_error(&server.get("/v1/places?q=%ff"), 400, "invalid_parameter");
    assert_eq!(e["source"]["parameter"], "q");
    assert!(e["detail"].as_str().is_some_and(|d| d.contains("UTF-8")));
}

#[test]
fn routing_errors_and_limits() {
    let (_snaps, server) = start();
    assert_error(&server.get("/nowhere"), 404, "not_found");
    assert_error(&server.get("/v1/places/"), 404, "not_found");
    let r = request(
        server.addr,
        "POST",
        "/v1/places?q=jfk",
        &[("Content-Length", "0")],
    );
    assert_error(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = server.get("/admin/reload");
    assert_error(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));

    // 8 KiB request target.
    let long = format!("/v1/places?q=jfk&x={}", "a".repeat(9000));
    assert_error(&server.get(&long), 414, "uri_too_long");
    // Huge headers are refused by the HTTP layer.
    let big = "b".repeat(70 * 1024);
    let mut c = Client::connect(server.addr).expect("connect");
    let r = c.send("GET", "/healthz", &[("X-Big", &big)]);
    // Closed without an answer is acceptable too.
    if let Ok(r) = r {
        assert_eq!(r.status, 431);
    }

    // A body on a GET is ignored (not read); the answer is the same.
    let mut c = Client::connect(server.addr).expect("connect");
    let r = c
        .send_raw(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            false,
        )
        .expect("get with a body");
    assert_eq!(r.status, 200);
    // A large announced body on a GET is not waited for either.
    let mut c = Client::connect(server.addr).expect("connect");
    let r = c
        .send_raw(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc",
            false,
        )
        .expect("get with a large body");
    assert_eq!(r.status, 200);

    // HEAD has the headers but no body.
    let mut c = Client::connect(server.addr).expect("connect");
    let r = c.send("HEAD", "/healthz", &[]).expect("head");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    // Same connection still usable (keep-alive).
    let r = c.get("/healthz").expect("after head");
    assert_eq!(r.status, 200);

    // The engine routes answer with an envelope (501 until the engine is connected).
    for target in ["/v1/search?origin=JFK", "/v1/calendar", "/v1/offers/abc"] {
        let r = server.get(target);
        let v = r.json();
        assert!(
            v.get("data").is_some() || v.get("errors").is_some(),
            "{target}: {v}"
        );
        assert!(v["meta"]["request_id"].is_string(), "{target}: {v}");
    }
    let e = assert_error(&server.get("/v1/offers/%zz"), 400, "invalid_parameter");
    assert_eq!(e["source"]["parameter"], "id");
}

#[test]
fn request_ids_are_echoed_or_generated() {
    let (_snaps, server) = start();
    let r = request(
        server.addr,
        "GET",
        "/healthz",
        &[("X-Request-Id", "abc-DEF_123")],
    );
    assert_eq!(r.header("x-request-id"), Some("abc-DEF_123"));
    assert_eq!(r.json()["meta"]["request_id"], "abc-DEF_123");
    // Not sane: replaced by a generated one.
    let r = request(
        server.addr,
        "GET",
        "/healthz",
        &[("X-Request-Id", "no spaces allowed")],
    );
    let id = r.header("x-request-id").expect("generated id").to_string();
    assert_ne!(id, "no spaces allowed");
    assert_eq!(id.len(), 16);
    let long = "x".repeat(65);
    let r = request(server.addr, "GET", "/healthz", &[("X-Request-Id", &long)]);
    assert_ne!(r.header("x-request-id"), Some(long.as_str()));
    let a = server.get("/healthz");
    let b = server.get("/healthz");
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));

    // The access log has one JSON line per request with the id, without surprises.
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("abc-DEF_123"))
        .expect("access log line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(v["message"], "request");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/healthz");
    assert_eq!(v["status"], 200);
    assert!(v["latency_us"].is_u64());
}

#[test]
fn admin_reload_needs_the_token() {
    let (snaps, server) = start();
    let r = request(
        server.addr,
        "POST",
        "/admin/reload",
        &[("Content-Length", "0")],
    );
    assert_error(&r, 401, "unauthorized");
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer")));
    let r = request(
        server.addr,
        "POST",
        "/admin/reload",
        &[("Authorization", "Bearer wrong"), ("Content-Length", "0")],
    );
    assert_error(&r, 403, "forbidden");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = request(
        server.addr,
        "POST",
        "/admin/reload",
        &[("Authorization", &auth), ("Content-Length", "0")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["changed"], false);

    let id2 = snaps.publish(7);
    let r = request(
        server.addr,
        "POST",
        "/admin/reload",
        &[("Authorization", &auth), ("Content-Length", "0")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    // The watcher may have swapped it in first; either way it is served now.
    assert_eq!(v["data"]["snapshot_id"], id2.as_str());
    assert_eq!(server.ready()["snapshot_id"], id2.as_str());

    snaps.publish_corrupt();
    let r = request(
        server.addr,
        "POST",
        "/admin/reload",
        &[("Authorization", &auth), ("Content-Length", "0")],
    );
    let e = assert_error(&r, 409, "snapshot_rejected");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("places.rkyv")),
        "{e}"
    );
    assert_eq!(server.ready()["snapshot_id"], id2.as_str());
    assert_eq!(server.get("/v1/places?q=jfk").status, 200);
}

#[test]
fn admin_is_disabled_without_a_token() {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let mut cmd_server = {
        // No --admin-token: build the command by hand.
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_searchd"))
            .arg("--snapshot")
            .arg(snaps.link())
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("SEARCHD_ADMIN_TOKEN")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start searchd");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.expect("log line");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "listening" {
                addr = v["addr"].as_str().and_then(|a| a.parse().ok());
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        (child, addr.expect("listening address"))
    };
    let r = request(
        cmd_server.1,
        "POST",
        "/admin/reload",
        &[
            ("Authorization", "Bearer anything"),
            ("Content-Length", "0"),
        ],
    );
    assert_error(&r, 403, "forbidden");
    let _ = cmd_server.0.kill();
    let _ = cmd_server.0.wait();
}

#[test]
fn connection_limit_closes_extra_connections() {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let server = Server::start(&snaps.link(), &["--max-connections", "2"]);
    // readyz polling used connections that closed; give the server a moment to see it.
    std::thread::sleep(Duration::from_millis(100));
    let mut a = Client::connect(server.addr).expect("connect a");
    let mut b = Client::connect(server.addr).expect("connect b");
    assert_eq!(a.get("/healthz").expect("a").status, 200);
    assert_eq!(b.get("/healthz").expect("b").status, 200);
    let mut c = Client::connect(server.addr).expect("tcp connect succeeds");
    assert!(c.get("/healthz").is_err(), "a third connection is closed");
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    let mut d = Client::connect(server.addr).expect("connect d");
    assert_eq!(d.get("/healthz").expect("d after a closed").status, 200);
    let m = b.get("/metrics").expect("metrics").text();
    assert!(m.contains("searchd_connections_refused_total 1"), "{m}");
}

/// Regression: every refused connection wrote its own warning, so a flood of connections
/// over `--max-connections` flooded the log as well.
#[test]
fn refused_connections_are_logged_at_most_once_a_second() {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let server = Server::start(&snaps.link(), &["--max-connections", "1"]);
    std::thread::sleep(Duration::from_millis(100));
    let mut held = Client::connect(server.addr).expect("connect");
    assert_eq!(held.get("/healthz").expect("held").status, 200);
    const REFUSED: u64 = 50;
    for _ in 0..REFUSED {
        let mut c = Client::connect(server.addr).expect("tcp connect succeeds");
        assert!(c.get("/healthz").is_err(), "over the limit");
    }
    let m = held.get("/metrics").expect("metrics").text();
    assert!(
        m.contains(&format!("searchd_connections_refused_total {REFUSED}")),
        "{m}"
    );
    let warnings: Vec<serde_json::Value> = server
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("connection limit reached"))
        })
        .collect();
    assert!(
        !warnings.is_empty() && warnings.len() <= 3,
        "{} warnings for {REFUSED} refusals within a second or two",
        warnings.len()
    );
    assert_eq!(
        warnings[0]["refused"], 1,
        "the first refusal is logged at once"
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let (_snaps, mut server) = start();
    // An idle keep-alive connection must not hold the shutdown.
    let mut idle = Client::connect(server.addr).expect("connect");
    assert_eq!(idle.get("/healthz").expect("healthz").status, 200);
    let st = server.terminate();
    assert_eq!(st.code(), Some(0), "log:\n{}", server.log_text());
    assert!(server.log_text().contains("shutting down"));
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "no longer accepting"
    );
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    let bin = env!("CARGO_BIN_EXE_searchd");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .env_remove("SEARCHD_ADMIN_TOKEN")
            .output()
            .expect("run searchd");
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        if args == ["--help"] {
            text = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        (out.status.code(), text)
    };
    let (code, out) = run(&["--help"]);
    assert_eq!(code, Some(0));
    let (code, err) = run(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--snapshot"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (code, err) = run(&["--snapshot", "/nonexistent", "--listen", "nope"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--listen"), "{err}");
    let (code, err) = run(&[
        "--snapshot",
        "/x",
        "--listen",
        "127.0.0.1:0",
        "--now",
        "soon",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--now"), "{err}");
    let (code, err) = run(&[
        "--snapshot",
        "/x",
        "--listen",
        "127.0.0.1:0",
        "--cluster-dir",
        "/tmp",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--bookd-quic"), "{err}");
    let (code, err) = run(&[
        "--snapshot",
        "/x",
        "--listen",
        "127.0.0.1:0",
        "--inline-search-steps",
        "100001",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--inline-search-steps"), "{err}");
    let (code, err) = run(&["--snapshot", "/nonexistent/snap", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{err}");
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    assert!(last.contains("/nonexistent/snap"), "{err}");
    assert!(out.contains("--bookd-quic"));
}

#[test]
fn bookd_quic_needs_readable_certificates_and_a_certificate_name() {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let snap = snaps.link();
    let snap = snap.to_str().expect("utf8 path");
    let cluster = snaps.dir.path().join("cluster");
    std::fs::create_dir(&cluster).expect("cluster dir");
    let cluster = cluster.to_str().expect("utf8 path");
    let run = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_searchd"))
            .args(["--snapshot", snap, "--listen", "127.0.0.1:0"])
            .args(["--bookd-quic", "127.0.0.1:9", "--cluster-dir", cluster])
            .arg(format!("--name={name}"))
            .output()
            .expect("run searchd");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let last = err.trim().lines().last().unwrap_or_default().to_string();
        (out.status.code(), last, err)
    };
    // Node names follow `bookd certs issue` (DNS names): a usage error.
    for bad in ["Node_1", "-n1", "n1-"] {
        let (code, last, err) = run(bad);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(last.contains("--name"), "{bad}: {err}");
    }
    // No cluster CA: a failure naming the file.
    let (code, last, err) = run("n1");
    assert_eq!(code, Some(1), "{err}");
    assert!(last.contains("ca.crt"), "{err}");
}

#[test]
fn now_sets_the_service_clock() {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let server = Server::start(&snaps.link(), &["--now", "2013-01-01T08:00:00Z"]);
    let clock = server.ready()["clock_utc"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(clock.starts_with("2013-01-01T08:0"), "{clock}");
}

/// A snapshot the server cannot write to (production mounts it read-only): start as an
/// unprivileged user over a root-owned snapshot. Skipped when not root or without `setpriv`.
#[test]
fn serves_a_read_only_snapshot() {
    use std::os::unix::fs::PermissionsExt;
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let has_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_root || !has_setpriv {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let snaps = SnapDir::new();
    snaps.publish(0);
    std::fs::set_permissions(snaps.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    // tantivy writes some index files (e.g. `.managed.json`) mode 0600; a deployment where
    // another user runs the indexer must make them readable (reported to the format owner).
    let gen = std::fs::canonicalize(snaps.link()).expect("resolve");
    for dir in [gen.clone(), gen.join("places")] {
        for entry in std::fs::read_dir(&dir).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
            }
        }
    }
    // The binary must be reachable by `nobody` too (copying it instead races with other
    // tests' forks: "text file busy").
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_searchd"));
    let reachable = bin.ancestors().skip(1).all(|d| {
        std::fs::metadata(d)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    });
    if !reachable {
        eprintln!("skipped: the test binary is not reachable by other users");
        return;
    }
    // setpriv execs in place: the child is searchd itself, running as nobody.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin)
        .arg("--snapshot")
        .arg(snaps.link())
        .args(["--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start searchd as nobody");
    let mut child = out;
    let stderr = child.stderr.take().expect("stderr");
    use std::io::BufRead;
    let mut addr = None;
    let mut log = Vec::new();
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        log.push(line);
        if v["message"] == "listening" {
            addr = v["addr"].as_str().and_then(|a| a.parse().ok());
            break;
        }
    }
    let Some(addr) = addr else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "searchd did not start on a read-only snapshot:\n{}",
            log.join("\n")
        );
    };
    let r = request(addr, "GET", "/v1/places?q=jfk", &[]);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    std::thread::spawn(move || for _ in lines {});
    let status = child.wait().expect("wait for searchd");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status.code(), Some(0));
    // Nothing was written into the snapshot.
    let lock = gen.join("places").join(".tantivy-meta.lock");
    assert!(
        !lock.exists()
            || std::fs::metadata(&lock)
                .map(|m| m.len() == 0)
                .unwrap_or(true)
    );
}

/// Regression (found by the black-box audit): a GET with a body of two or more chunks was
/// answered, then its keep-alive connection closed with the next request unanswered (the
/// body was never read). Bodies up to 64 KiB are read and dropped; a larger one is answered
/// all the same (`routing_errors_and_limits`), and ends the connection.
#[test]
fn a_request_body_is_read_and_ignored_and_keep_alive_goes_on() {
    let (_snaps, server) = start();
    let mut c = common::Client::connect(server.addr).expect("connect");
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = c.send_raw(req, false).expect("first request");
    assert_eq!(r.status, 200);
    let r = c
        .get("/healthz")
        .expect("second request on the same connection");
    assert_eq!(r.status, 200);
    let big = "x".repeat(70_000);
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    let r = c.send_raw(req.as_bytes(), false).expect("big body");
    assert_eq!(r.status, 200);
}

/// A client that sends requests but never reads the answers must not hold its connection
/// (and the slot it takes under `--max-connections`) for ever: once its answers stall for
/// `--send-timeout`, the connection is closed and others are served again.
#[test]
fn client_that_never_reads_its_answers_loses_its_connection_slot() {
    use std::io::Write as _;
    let snaps = SnapDir::new();
    snaps.publish(0);
    let server = Server::start(
        &snaps.link(),
        &["--max-connections", "1", "--send-timeout", "2"],
    );
    // Wait for the readiness probe's connection to be closed.
    std::thread::sleep(Duration::from_millis(200));
    let mut hog = std::net::TcpStream::connect(server.addr).expect("connect");
    // Hundreds of pipelined requests for a ~50 KB document: tens of MB of answers, far more
    // than the socket buffers hold, and none of it is read.
    let one = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    hog.write_all(one.repeat(600).as_bytes()).expect("send");
    let stalled = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let last = match common::try_request(server.addr, "GET", "/healthz", &[]) {
            Ok(r) if r.status == 200 => break,
            Ok(r) => format!("status {}", r.status),
            Err(e) => e.to_string(),
        };
        assert!(
            stalled.elapsed() < Duration::from_secs(15),
            "a client that never reads kept the only connection slot for 15 s \
             (--send-timeout 2); last attempt: {last}"
        );
    }
    assert!(
        stalled.elapsed() >= Duration::from_millis(1500),
        "the stalled connection was closed before --send-timeout"
    );
    drop(hog);
}
