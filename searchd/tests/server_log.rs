//! The access log is batched (`server::log`): no line is lost or reordered by a graceful
//! shutdown right after a burst of requests, each line keeps its request id, and while the
//! server runs a line shows up without any later event to push it out.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Server, SnapDir};

fn start() -> (SnapDir, Server) {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let server = Server::start(&snaps.link(), &[]);
    (snaps, server)
}

/// The access lines of the log, parsed, whose request id starts with `prefix`.
fn access_lines(server: &Server, prefix: &str) -> Vec<serde_json::Value> {
    server
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["target"] == "searchd::access"
                && v["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(prefix))
        })
        .collect()
}

#[test]
fn sigterm_right_after_a_burst_loses_no_access_line() {
    let snaps = SnapDir::new();
    snaps.publish(0);
    // No info line of the shutdown itself (which would push the batch out first): only the
    // exit path's flush can save the last lines.
    let mut server = Server::start_logging(
        &snaps.link(),
        &[],
        "warn,searchd::access=info,searchd::server[{addr}]=info,searchd::server=warn",
    );
    const N: usize = 2_000;
    let mut c = Client::connect(server.addr).expect("connect");
    for i in 0..N {
        let id = format!("burst-{i:05}");
        let r = c
            .send("GET", "/healthz", &[("X-Request-Id", &id)])
            .expect("healthz");
        assert_eq!(r.status, 200);
    }
    drop(c);
    let st = server.terminate();
    assert_eq!(st.code(), Some(0), "log:\n{}", server.log_text());
    // The process is gone; its stderr is read to the end by the harness's thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = access_lines(&server, "burst-");
    while lines.len() < N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        lines = access_lines(&server, "burst-");
    }
    assert_eq!(lines.len(), N, "every request has its line");
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["request_id"], format!("burst-{i:05}"), "in order");
        assert_eq!(v["path"], "/healthz");
        assert_eq!(v["status"], 200);
        assert_eq!(v["message"], "request");
        assert_eq!(v["level"], "INFO");
        assert!(v["latency_us"].is_u64());
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    assert!(
        !server.log_text().contains("drained; exiting"),
        "info lines filtered"
    );
}

#[test]
fn a_lone_access_line_is_written_without_another_event() {
    let (_snaps, server) = start();
    let mut c = Client::connect(server.addr).expect("connect");
    let r = c
        .send("GET", "/healthz", &[("X-Request-Id", "lone-1")])
        .expect("healthz");
    assert_eq!(r.status, 200);
    // Flushed by the flusher within its period (20 ms), not at exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while access_lines(&server, "lone-").is_empty() {
        assert!(Instant::now() < deadline, "the line never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Regression: a request head hyper refuses by itself (a garbage request line, too many
/// headers) was answered by hyper but left no access line, no metric and no word of why.
#[test]
fn request_heads_refused_by_the_parser_are_logged_and_counted() {
    let (_snaps, server) = start();
    let mut c = Client::connect(server.addr).expect("connect");
    let r = c
        .send_raw(b"GARBAGE\r\n\r\n", false)
        .expect("an answer to a garbage request line");
    assert_eq!(r.status, 400);
    let mut c = Client::connect(server.addr).expect("connect");
    let headers: Vec<(String, String)> =
        (0..150).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = c
        .send("GET", "/healthz", &headers)
        .expect("an answer to 150 headers");
    assert_eq!(r.status, 431);

    let metrics = server.get("/metrics").text();
    for status in ["400", "431"] {
        let line =
            format!("searchd_http_requests_total{{route=\"unparsed\",status=\"{status}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<serde_json::Value> = server
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
        let access: Vec<_> = lines
            .iter()
            .filter(|v| v["target"] == "searchd::access" && v["route"] == "unparsed")
            .collect();
        let why: Vec<_> = lines
            .iter()
            .filter(|v| v["message"] == "request head refused")
            .collect();
        if access.len() == 2 && why.len() == 2 {
            let statuses: Vec<_> = access.iter().map(|v| v["status"].clone()).collect();
            assert!(statuses.contains(&400.into()) && statuses.contains(&431.into()));
            assert!(
                why.iter()
                    .any(|v| v["error"].as_str().is_some_and(|e| e.contains("too large"))),
                "the 431's reason is logged: {why:?}"
            );
            for v in &access {
                assert_eq!(v["path"], "-");
                assert!(why.iter().any(|w| w["request_id"] == v["request_id"]));
            }
            break;
        }
        assert!(Instant::now() < deadline, "log:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}
