//! `bookd keys create|revoke --patroni-api`: the key is written on the node Patroni calls
//! the leader, and only there.
//!
//! What broke: the key commands took no `--patroni-api`, so against a replicated cluster
//! libpq's multi-host `--database-url` picked the first node that accepted the connection,
//! which may be an old leader whose Patroni died: still read-write, but no standby follows
//! it once another is promoted, so (strict synchronous mode) its COMMIT waits for ever.
//!
//! A real PostgreSQL (started here) is one of two hosts of `--database-url`, the other a
//! socket directory with no server; the Patroni endpoints are stand-ins answering
//! `GET /primary` with a fixed status (the whole Patroni cluster is `replicated.rs`'s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A stand-in Patroni REST API answering every request with `status`; its endpoint.
async fn patroni(status: &'static str) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\n{{}}");
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn keys(action: &str, name: &str, url: &str, api: &str) -> std::process::Output {
    tokio::task::block_in_place(|| {
        Command::new(bin())
            .args(["keys", action, "--name", name, "--database-url", url])
            .args(["--patroni-api", api])
            .output()
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_written_on_the_patroni_leader_only() {
    if !pg_available() {
        return;
    }
    let tmp = cluster_tempdir();
    let pg = tokio::task::block_in_place(|| bookd::pg::Embedded::start(&tmp.path().join("state")))
        .expect("start the test's PostgreSQL");
    // Host 0 has no server; host 1 is the real one (one port for both).
    let nowhere = tmp.path().join("no-server-here");
    std::fs::create_dir(&nowhere).unwrap();
    let url = format!(
        "host={},{} port={} user={} dbname={}",
        nowhere.display(),
        pg.layout.socket_dir.display(),
        bookd::pg::SOCKET_PORT,
        bookd::pg::DB_USER,
        bookd::pg::DB_NAME
    );
    let leader = patroni("200 OK").await;
    let replica = patroni("503 Service Unavailable").await;

    // Patroni says host 1 leads: the key is written there.
    let out = keys("create", "ops", &url, &format!("{replica},{leader}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(key.lines().count(), 1, "only the key on stdout: {key:?}");
    assert!(key.trim().starts_with("bk_"), "{key:?}");
    let (db, conn) = pg
        .layout
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let active = |name: &'static str| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT count(*) FROM api_keys WHERE name = $1 AND revoked_at IS NULL",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(active("ops").await, 1);

    // Patroni says host 0 leads: only host 0 is tried (libpq alone would have gone on to
    // host 1), so the command fails and writes nothing.
    let out = keys("create", "elsewhere", &url, &format!("{leader},{replica}"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    assert_eq!(active("elsewhere").await, 0);

    // No leader, or two: nothing is written, and the error says why in one line.
    for api in [
        format!("{replica},{replica}"),
        format!("{leader},{leader}"),
        format!("{replica},http://127.0.0.1:9"),
    ] {
        let out = keys("create", "nobody", &url, &api);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{api}: {err}");
        let last = err.trim().lines().last().unwrap_or("");
        assert!(
            last.starts_with("bookd: error: ") && last.contains("no single Patroni leader"),
            "{api}: {err}"
        );
    }
    assert_eq!(active("nobody").await, 0);

    // One endpoint per host, in the same order.
    let out = keys("create", "short", &url, &leader);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 hosts"));

    // Revoke goes to the leader the same way.
    let out = keys("revoke", "ops", &url, &format!("{replica},{leader}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(active("ops").await, 0);

    // Usage errors: exit 2, one line naming the parameter.
    for (args, named) in [
        (
            &["keys", "create", "--name", "x", "--patroni-api", &leader][..],
            "--database-url",
        ),
        (
            &[
                "keys",
                "revoke",
                "--name",
                "x",
                "--database-url",
                &url,
                "--patroni-api",
                "https://127.0.0.1:1",
            ][..],
            "--patroni-api",
        ),
    ] {
        let out = Command::new(bin()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
