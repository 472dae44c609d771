//! Snapshot hot swap under load: clients keep querying over keep-alive connections while new
//! snapshots are published (picked up by the watcher or `POST /admin/reload`), and a broken
//! one is refused while the old one keeps serving.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{request, Client, Server, SnapDir, ADMIN_TOKEN};

fn reload(server: &Server) -> common::Response {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    request(
        server.addr,
        "POST",
        "/admin/reload",
        &[("Authorization", &auth), ("Content-Length", "0")],
    )
}

fn metric(server: &Server, name: &str) -> Option<f64> {
    let text = server.get("/metrics").text();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn watcher_swaps_new_snapshots_and_refuses_broken_ones() {
    let snaps = SnapDir::new();
    let id0 = snaps.publish(0);
    let server = Server::start(&snaps.link(), &[]);
    assert_eq!(server.ready()["snapshot_id"], id0.as_str());

    let id1 = snaps.publish(1);
    assert_ne!(id0, id1);
    assert!(
        server.wait_for_snapshot(&id1, Duration::from_secs(10)),
        "the watcher did not load the new snapshot; log:\n{}",
        server.log_text()
    );
    assert_eq!(server.ready()["generation"], 2);
    assert_eq!(metric(&server, "searchd_snapshot_reloads_total"), Some(1.0));

    // A broken generation is refused; the old one keeps serving.
    snaps.publish_corrupt();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "searchd_snapshot_reload_failures_total") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the broken snapshot was not noticed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.ready()["snapshot_id"], id1.as_str());
    let r = server.get("/v1/places?q=jfk");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["meta"]["snapshot_id"], id1.as_str());
    // Not retried every tick.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        metric(&server, "searchd_snapshot_reload_failures_total"),
        Some(1.0)
    );
    assert!(server.log_text().contains("snapshot refused"));

    // A sound one after it is loaded.
    let id2 = snaps.publish(2);
    assert!(server.wait_for_snapshot(&id2, Duration::from_secs(10)));
    assert_eq!(server.ready()["generation"], 3);
}

/// Expected first answer per query.
const QUERIES: &[(&str, &str)] = &[
    ("/v1/places?q=jfk", "JFK"),
    ("/v1/places?q=kenedy", "JFK"),
    ("/v1/places?q=new+y&limit=3", "NYC"),
    ("/v1/places?q=LON", "LON"),
    ("/v1/places?q=heathrow", "LHR"),
];

#[test]
fn twenty_swaps_under_load_fail_no_request() {
    const CLIENTS: usize = 4;
    const SWAPS: u64 = 20;
    let started = Instant::now();
    let snaps = SnapDir::new();
    let mut ids = vec![snaps.publish(0)];
    let server = Server::start(&snaps.link(), &[]);
    let addr = server.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen_ids = Arc::new(Mutex::new(HashSet::<String>::new()));
    let search_status = Arc::new(Mutex::new(None::<u16>));
    let mut threads = Vec::new();
    for t in 0..CLIENTS {
        let (stop, ok, failures, seen_ids, search_status) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failures),
            Arc::clone(&seen_ids),
            Arc::clone(&search_status),
        );
        threads.push(std::thread::spawn(move || {
            let mut client = Client::connect(addr).expect("connect");
            let mut i = t;
            let mut reconnects = 0;
            while !stop.load(Ordering::Relaxed) {
                let (target, want) = QUERIES[i % QUERIES.len()];
                i += 1;
                // Every fourth request of one client also exercises the engine route.
                let check_search = i % 4 == 0;
                let target = if check_search {
                    "/v1/search?origin=JFK&destination=LHR&date=2026-03-01"
                } else {
                    target
                };
                let r = match client.get(target) {
                    Ok(r) => r,
                    Err(e) => {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("{target}: transport error {e}"));
                        reconnects += 1;
                        if reconnects > 3 {
                            break;
                        }
                        client = Client::connect(addr).expect("reconnect");
                        continue;
                    }
                };
                let v: serde_json::Value = match serde_json::from_slice(&r.body) {
                    Ok(v) => v,
                    Err(_) => {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("{target}: not JSON: {}", r.text()));
                        continue;
                    }
                };
                let good = if check_search {
                    // 501 until the engine is connected; then 200 with itineraries (or a
                    // well-formed error about this flightless test snapshot). Whatever it
                    // is, every snapshot must give the same answer.
                    let well_formed = (r.status == 200 && v["data"]["itineraries"].is_array())
                        || (r.status >= 400 && v["errors"][0]["code"].is_string());
                    let mut first = search_status.lock().expect("lock");
                    let same = *first.get_or_insert(r.status) == r.status;
                    well_formed && same && r.status != 500
                } else {
                    r.status == 200 && v["data"][0]["iata"] == want
                };
                if !good {
                    failures
                        .lock()
                        .expect("lock")
                        .push(format!("{target}: {} {v}", r.status));
                    continue;
                }
                if let Some(id) = v["meta"]["snapshot_id"].as_str() {
                    seen_ids.lock().expect("lock").insert(id.to_string());
                }
                ok.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    for v in 1..=SWAPS {
        let id = snaps.publish(v);
        if v % 2 == 0 {
            // Even: on demand.
            let r = reload(&server);
            assert_eq!(r.status, 200, "{}", r.text());
        }
        assert!(
            server.wait_for_snapshot(&id, Duration::from_secs(10)),
            "swap {v} not seen; log:\n{}",
            server.log_text()
        );
        ids.push(id);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the test takes too long"
        );
    }
    // Keep querying a little on the last one.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }

    let failures = failures.lock().expect("lock");
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        failures.iter().take(5).collect::<Vec<_>>()
    );
    let ok = ok.load(Ordering::Relaxed);
    assert!(ok >= 200, "only {ok} requests answered");
    let known: HashSet<String> = ids.iter().cloned().collect();
    let seen = seen_ids.lock().expect("lock");
    assert!(seen.is_subset(&known), "answers from an unknown snapshot");
    assert!(
        seen.len() >= 10,
        "answers came from only {} snapshots",
        seen.len()
    );
    assert_eq!(server.ready()["generation"], SWAPS + 1);
    assert_eq!(
        metric(&server, "searchd_snapshot_reloads_total"),
        Some(SWAPS as f64)
    );
    assert_eq!(
        metric(&server, "searchd_snapshot_reload_failures_total"),
        Some(0.0)
    );
    eprintln!(
        "{ok} requests over {} swaps in {:.1} s, {} snapshots answered, /v1/search status {:?}",
        SWAPS,
        started.elapsed().as_secs_f64(),
        seen.len(),
        search_status.lock().expect("lock")
    );
}

/// A reload abandoned after its snapshot was loaded (the admin request timed out, or its
/// HTTP/2 client reset the stream) goes on loading and filling that snapshot on its blocking
/// thread. Its generation must not be given to the next snapshot loaded: the invalidation
/// subscriber keys the overlay positions it caches by generation (`LiveView::generation`),
/// and would fill the next snapshot at the abandoned one's positions.
#[test]
fn an_abandoned_reload_does_not_lend_its_generation_to_the_next_snapshot() {
    use searchd::server::metrics::Metrics;
    use searchd::server::state::{self, Loaded, SnapshotCell, SwapHook};
    use searchd::subscriber::LiveView;

    struct Hook {
        seen: Mutex<Vec<(u64, String)>>,
        gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }
    impl SwapHook for Hook {
        fn before_swap(&self, new: &Loaded) {
            // The first load is slow: it is abandoned while it waits here.
            let gate = self.gate.lock().ok().and_then(|mut g| g.take());
            if let Some(g) = gate {
                let _ = g.recv();
            }
            if let Ok(mut s) = self.seen.lock() {
                s.push((LiveView::generation(new), new.id().to_string()));
            }
        }
        fn swap(&self, _new: &Loaded, swap: &mut dyn FnMut()) {
            swap();
        }
    }

    let snaps = SnapDir::new();
    snaps.publish(0);
    let first = state::load(&snaps.link(), 1).expect("load the first snapshot");
    let cell = Arc::new(SnapshotCell::new(
        snaps.link(),
        first,
        Arc::new(Metrics::new()),
    ));
    let (open, gate) = std::sync::mpsc::channel();
    let hook = Arc::new(Hook {
        seen: Mutex::new(Vec::new()),
        gate: Mutex::new(Some(gate)),
    });
    cell.set_swap_hook(Some(hook.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let id1 = snaps.publish(1);
    let abandoned = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), cell.reload("admin", true)).await
    });
    assert!(abandoned.is_err(), "the first reload was abandoned");
    open.send(()).expect("open the gate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.seen.lock().map(|s| s.len()).unwrap_or(0) < 1 {
        assert!(Instant::now() < deadline, "the abandoned load never filled");
        std::thread::sleep(Duration::from_millis(10));
    }

    let id2 = snaps.publish(2);
    let out = rt
        .block_on(cell.reload("admin", true))
        .expect("the next snapshot is swapped in");
    assert_eq!(out.snapshot_id, id2);
    let seen = hook.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].1, id1);
    assert_ne!(
        seen[0].0, seen[1].0,
        "two different snapshots were filled under one generation: {seen:?}"
    );
}

/// A client of `POST /admin/reload` that gives up (its own timeout, a dropped connection)
/// while the new snapshot is still being opened must not leave that snapshot unserved: the
/// reload goes on, or the watcher retries it. Here the new generation's manifest is a FIFO,
/// so its load waits for this test to write it (standing in for a large snapshot that takes
/// seconds to checksum).
#[test]
fn abandoned_admin_reload_still_swaps_the_new_snapshot_in() {
    use std::io::Write as _;
    let snaps = SnapDir::new();
    let id0 = snaps.publish(0);
    let server = Server::start(&snaps.link(), &[]);
    assert_eq!(server.ready()["snapshot_id"], id0.as_str());

    // A sound generation whose MANIFEST is a named pipe, published by swapping the link.
    let other = SnapDir::new();
    let id1 = other.publish(1);
    assert_ne!(id0, id1);
    let source = std::fs::canonicalize(other.link()).expect("resolve");
    let name = ".snap.gen-slow";
    let gen = snaps.dir.path().join(name);
    common::copy_dir(&source, &gen);
    let manifest_path = gen.join("MANIFEST");
    let manifest = std::fs::read(&manifest_path).expect("read MANIFEST");
    std::fs::remove_file(&manifest_path).expect("remove MANIFEST");
    let st = std::process::Command::new("mkfifo")
        .arg(&manifest_path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo failed");
    let tmp = snaps.dir.path().join(".snap.link-slow");
    std::os::unix::fs::symlink(name, &tmp).expect("create link");
    std::fs::rename(&tmp, snaps.link()).expect("rename link");

    // The admin client asks for the reload, then hangs up before the answer.
    {
        let mut c = std::net::TcpStream::connect(server.addr).expect("connect");
        let req = format!(
            "POST /admin/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\n\r\n"
        );
        c.write_all(req.as_bytes()).expect("send");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));

    // The load now reads the manifest; later readers find a regular file.
    let fifo = manifest_path.clone();
    let bytes = manifest.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open the FIFO");
        f.write_all(&bytes).expect("write the FIFO");
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !writer.is_finished() {
        assert!(Instant::now() < deadline, "nobody read the new manifest");
        std::thread::sleep(Duration::from_millis(10));
    }
    writer.join().expect("writer");
    let regular = gen.join("MANIFEST.tmp");
    std::fs::write(&regular, &manifest).expect("write MANIFEST");
    std::fs::rename(&regular, &manifest_path).expect("replace the FIFO");

    assert!(
        server.wait_for_snapshot(&id1, Duration::from_secs(10)),
        "the sound snapshot published at the path was never served after its admin client \
         hung up; serving {}; log:\n{}",
        server.ready()["snapshot_id"],
        server.log_text()
    );
}
