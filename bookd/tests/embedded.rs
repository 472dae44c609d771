//! The embedded cluster: keys with and without a running bookd, restart reuse, a stale
//! postmaster.pid, adopting the cluster a killed bookd left running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_restart_stale_pid_and_adoption() {
    if !pg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Bookd::new(tmp.path(), &[]);
    let state = b.state.clone();
    // keys create while bookd runs (through its socket).
    let key = b.new_key("live");
    assert!(key.starts_with("bk_") && key.len() == 67);
    // Owned by the unprivileged cluster user when we are root.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(state.join("pgdata")).unwrap();
    if unsafe { libc::getuid() } == 0 {
        assert_ne!(md.uid(), 0, "the cluster does not run as root");
    }
    let r = b
        .call(
            "POST",
            "/v1/orders",
            Some(&key),
            None,
            Some(&order_body(&offer(5, "Y", 1), 1, "tok_ok")),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["data"]["id"].as_str().unwrap().to_string();

    // Graceful stop stops the cluster too.
    b.stop();
    assert!(bookd::pg::running_postmaster(&state.join("pgdata")).is_none());
    // keys create with no bookd running: starts the cluster temporarily.
    let key2 = b.new_key("offline");
    assert!(bookd::pg::running_postmaster(&state.join("pgdata")).is_none());
    // A duplicate active name is refused with a one-line error.
    let out = b.keys("create", "offline");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());

    // A stale postmaster.pid (a crash long ago) is cleaned.
    std::fs::write(state.join("pgdata/postmaster.pid"), "999999\n/nowhere\n").unwrap();
    b.start();
    let r = b
        .call("GET", &format!("/v1/orders/{id}"), Some(&key), None, None)
        .await;
    assert_eq!(r.status, 200, "data survived the restart");
    let r = b.call("GET", "/v1/orders", Some(&key2), None, None).await;
    assert_eq!(r.status, 200);

    // kill -9: the cluster keeps running; the next bookd adopts it.
    b.kill9();
    let pid = bookd::pg::running_postmaster(&state.join("pgdata")).expect("cluster still up");
    b.start();
    assert_eq!(
        bookd::pg::running_postmaster(&state.join("pgdata")),
        Some(pid)
    );
    let r = b
        .call("GET", &format!("/v1/orders/{id}"), Some(&key), None, None)
        .await;
    assert_eq!(r.status, 200);
    // A second bookd on the same state directory is refused.
    let out = std::process::Command::new(bin())
        .args(["--listen", "127.0.0.1:0", "--snapshot"])
        .arg(&b.snapshot)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another bookd"));
    b.stop();
    assert!(bookd::pg::running_postmaster(&state.join("pgdata")).is_none());
}

/// Regression: clap's errors took several lines, and a bookd started without `--listen`
/// exited 1 (a failure) instead of 2 (bad usage).
#[test]
fn usage_errors_exit_2_with_one_line_naming_the_parameter() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (args, named) in [
        (&["--bogus"][..], "--bogus"),
        (&[][..], "--listen"),
        (&["--listen", "127.0.0.1:0"][..], "--snapshot"),
        (&["--listen", "nope", "--snapshot", "x"][..], "--listen"),
        (&["keys", "create"][..], "--name"),
        (&["certs", "init"][..], "--cluster-dir"),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("bookd: error: "), "{args:?}: {err}");
    }
    let (code, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
}
