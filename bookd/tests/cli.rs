//! The command line against the contract (CONTRACT.md section 1): exit code 2 on bad
//! usage, 1 on failure, one line on stderr naming the parameter or file at fault, and
//! nothing on stdout but what the command prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Runs bookd (in `cwd`) with `args`: (exit code, stdout, stderr without JSON log lines).
fn run_in(cwd: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin())
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

fn assert_one_line(args: &[&str], err: &str, named: &str) {
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    assert!(err.starts_with("bookd: error: "), "{args:?}: {err}");
    assert!(err.contains(named), "{args:?}: names {named}: {err}");
}

/// Regression: a malformed `--now`, an out-of-range `--sim-*-failure-rate`,
/// `--rate-limit` or `--rate-burst`, and a malformed `--database-url` exited 1 (a failure)
/// instead of 2 (bad usage); the bad `--database-url` also first wrote STATE/data.key.
/// The HTTP limits (`--max-connections`, `--idle-timeout-secs`, `--send-timeout-secs`) are
/// checked the same way.
#[test]
fn bad_serve_parameter_values_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = build_snapshot(tmp.path());
    let snap = snap.to_str().unwrap();
    let state = tmp.path().join("state");
    let state = state.to_str().unwrap();
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--snapshot",
        snap,
        "--state-dir",
        state,
    ];
    for (extra, named) in [
        (&["--now", "yesterday"][..], "--now"),
        (&["--now", "2030-01-01T00:00:00"][..], "--now"),
        (
            &["--sim-payment-failure-rate", "2"][..],
            "--sim-payment-failure-rate",
        ),
        (
            &["--sim-airline-failure-rate", "1.5"][..],
            "--sim-airline-failure-rate",
        ),
        (&["--rate-limit", "0"][..], "--rate-limit"),
        (&["--rate-burst", "0.5"][..], "--rate-burst"),
        (&["--database-url", "not a url"][..], "--database-url"),
        (&["--max-connections", "0"][..], "--max-connections"),
        (&["--max-connections", "70000"][..], "--max-connections"),
        (&["--max-connections", "-1"][..], "--max-connections"),
        (&["--idle-timeout-secs", "0"][..], "--idle-timeout-secs"),
        (&["--send-timeout-secs", "3601"][..], "--send-timeout-secs"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, out, err) = run_in(tmp.path(), &args);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(out.is_empty(), "{extra:?}: stdout {out:?}");
        assert_one_line(extra, &err, named);
        assert!(
            !Path::new(state).exists(),
            "{extra:?}: a usage error leaves no state behind"
        );
    }
}

/// Regression: `keys create --name ""` (or a name over 100 characters) exited 1, and only
/// after initialising and starting a PostgreSQL cluster in the state directory.
#[test]
fn keys_create_bad_name_exits_2_before_touching_the_state_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let long = "x".repeat(101);
    for name in ["", long.as_str(), "a\tb"] {
        for action in ["create", "revoke"] {
            let args = [
                "keys",
                action,
                "--name",
                name,
                "--state-dir",
                state.to_str().unwrap(),
            ];
            let (code, out, err) = run_in(tmp.path(), &args);
            assert_eq!(code, Some(2), "{action} {name:?}: {err}");
            assert!(out.is_empty(), "{action} {name:?}: stdout {out:?}");
            assert_one_line(&args, &err, "--name");
            assert!(!state.exists(), "{action} {name:?}: state dir created");
        }
    }
}

/// Regression: an unreachable `--database-url` failed with "connection pool: Error
/// occurred while creating a new object: error connecting to server", naming neither the
/// parameter nor the cause.
#[test]
fn unreachable_database_url_is_named_with_its_cause() {
    let tmp = tempfile::tempdir().unwrap();
    // A port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://u:secret@127.0.0.1:{port}/db");
    let args = ["keys", "create", "--name", "a", "--database-url", &url];
    let (code, out, err) = run_in(tmp.path(), &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty(), "stdout {out:?}");
    assert_one_line(&args, &err, "--database-url");
    assert!(err.to_lowercase().contains("refused"), "the cause: {err}");
    assert!(!err.contains("secret"), "no password in the message: {err}");
}

/// Regression: a PostgreSQL error on connecting (here a database that does not exist) was
/// reported as "... creating a new object: db error", without the server's message.
#[test]
fn database_errors_on_connect_carry_the_server_message() {
    if !pg_available() {
        return;
    }
    let tmp = cluster_tempdir();
    let state = tmp.path().join("state");
    let pg = bookd::pg::Embedded::start(&state).unwrap();
    let url = format!(
        "host={} port={} user=postgres dbname=no_such_db",
        pg.layout.socket_dir.display(),
        bookd::pg::SOCKET_PORT
    );
    let args = ["keys", "create", "--name", "a", "--database-url", &url];
    let (code, out, err) = run_in(tmp.path(), &args);
    drop(pg);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty(), "stdout {out:?}");
    assert_one_line(&args, &err, "--database-url");
    assert!(err.contains("no_such_db"), "the server's message: {err}");
}

/// Regression: a snapshot error was printed twice on its line ("snapshot: X: not found
/// ...: X: not found ...").
#[test]
fn snapshot_error_is_said_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-snapshot");
    let state = tmp.path().join("state");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--snapshot",
        missing.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let (code, _, err) = run_in(tmp.path(), &args);
    assert_eq!(code, Some(1), "{err}");
    assert_one_line(&args, &err, "no-snapshot");
    assert_eq!(
        err.matches("no-snapshot").count(),
        1,
        "the file is named once: {err}"
    );
}

/// Regression: `bookd keys` and `bookd certs` without their action printed only the group's
/// description ("bookd: error: API keys"), not what was missing.
#[test]
fn a_missing_subcommand_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, named) in [(&["keys"][..], "create"), (&["certs"][..], "init")] {
        let (code, out, err) = run_in(tmp.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: stdout {out:?}");
        assert_one_line(args, &err, named);
        assert!(err.contains("subcommand"), "{args:?}: {err}");
    }
}

/// Regression: two `certs init` at once on the same directory could both succeed, the
/// second silently replacing the CA the first had just made (and reported).
#[test]
fn concurrent_certs_init_makes_one_ca() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let dir = tmp.path().join(format!("cluster-{i}"));
        let spawn = || {
            Command::new(bin())
                .args(["certs", "init", "--cluster-dir"])
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let ok = [a, b]
            .into_iter()
            .map(|c| c.wait_with_output().unwrap().status.success())
            .filter(|&s| s)
            .count();
        assert_eq!(ok, 1, "round {i}: exactly one init succeeds");
        // The directory is usable: a node certificate is issued from it.
        let out = Command::new(bin())
            .args(["certs", "issue", "--name", "n1", "--cluster-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Regression: a bookd started while `bookd keys create` had the state directory's
/// cluster up for a moment exited 1 saying "another bookd is running on state directory".
#[test]
fn bookd_starts_while_a_keys_command_holds_the_state_dir() {
    if !pg_available() {
        return;
    }
    let tmp = cluster_tempdir();
    let state = tmp.path().join("state");
    // A fresh state directory: the command initialises the cluster (~1 s) under the lock.
    let keys = Command::new(bin())
        .args(["keys", "create", "--name", "early", "--state-dir"])
        .arg(&state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !state.join("bookd.lock").exists() {
        assert!(std::time::Instant::now() < deadline, "keys took no lock");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Panics if bookd exits during start-up.
    let b = Bookd::new(tmp.path(), &[]);
    let out = keys.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 67);
    // And a key made while this bookd runs still works.
    assert!(b.new_key("later").starts_with("bk_"));
}
