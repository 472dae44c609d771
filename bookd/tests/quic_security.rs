//! Security and robustness of the invalidation channel: only certificates of the cluster CA
//! get in; malformed, oversized and unknown-version frames close that connection (with an
//! error log), never the publisher.

mod quic_common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bookd::certs;
use bookd::quic::MemoryFeed;
use format::wire::{self, Message, Subscribe};
use quic_common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const WAIT: Duration = Duration::from_secs(30);

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn raw_endpoint(ca_dir: &Path, identity: Option<Identity>) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certs::load_ca(ca_dir).expect("ca"))
        .expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep
}

#[derive(Debug)]
enum Outcome {
    Accepted(Message),
    Refused(String),
}

fn subscribe_frame(name: &str) -> Vec<u8> {
    wire::encode_frame(&Message::Subscribe(Subscribe {
        node: name.into(),
        last_applied_seq: 0,
        last_applied_token: 0,
        snapshot_id: String::new(),
    }))
    .expect("encodes")
}

/// Connects, subscribes and waits (bounded) for the first frame.
async fn probe(ep: &quinn::Endpoint, addr: SocketAddr) -> Outcome {
    let attempt = async {
        let conn = ep
            .connect(addr, "bookd")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open: {e}"))?;
        send.write_all(&subscribe_frame("n1"))
            .await
            .map_err(|e| format!("write: {e}"))?;
        read_message(&mut recv).await
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(m)) => Outcome::Accepted(m),
        Ok(Err(e)) => Outcome::Refused(e),
        Err(_) => Outcome::Refused("timed out".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_certificates_of_the_cluster_ca_get_in() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let other = tmp.path().join("other");
    certs::init(&other).expect("other CA");
    certs::issue(&other, "n1").expect("other node");
    let feed = Arc::new(MemoryFeed::new(100));
    feed.set(key(1), 3);
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");

    // Control: a node of this cluster gets its full state.
    let good = raw_endpoint(&dir, Some(certs::load_identity(&dir, "n1").expect("n1")));
    match probe(&good, addr).await {
        Outcome::Accepted(Message::FullState(f)) => assert_eq!(f.entries.len(), 1),
        other => panic!("a valid node was not served: {other:?}"),
    }

    let foreign = raw_endpoint(
        &dir,
        Some(certs::load_identity(&other, "n1").expect("other n1")),
    );
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["n1".to_string()]).expect("self-signed");
    let self_signed = raw_endpoint(
        &dir,
        Some((
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der())),
        )),
    );
    let anonymous = raw_endpoint(&dir, None);
    for (what, ep) in [
        ("another CA", &foreign),
        ("self-signed", &self_signed),
        ("no certificate", &anonymous),
    ] {
        match probe(ep, addr).await {
            Outcome::Refused(why) => eprintln!("{what}: refused ({why})"),
            Outcome::Accepted(m) => panic!("{what}: served {}", m.kind()),
        }
    }
    // The client can see the connection drop before bookd's task counts the refusal, so
    // wait (bounded) for the count instead of reading it once.
    let stats = publisher.stats();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while stats.handshakes_refused.load(Ordering::Relaxed) < 3
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        stats.handshakes_refused.load(Ordering::Relaxed) >= 3,
        "bookd counted {} refused handshakes, expected 3",
        stats.handshakes_refused.load(Ordering::Relaxed)
    );

    // The other way round: a node refuses a bookd whose certificate is from another CA.
    let foreign_bookd = start_publisher(&other, feed.clone()).await;
    let node = start_node(&dir, foreign_bookd.local_addr().expect("addr"), "n2");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!node.handle.status().in_sync());
    assert!(node.handle.entries().is_empty());
    assert_eq!(foreign_bookd.nodes_connected(), 0);
    node.stop().await;
    foreign_bookd.shutdown().await;

    // Missing certificate files are reported by name at start.
    let cfg = node_config(&dir, addr, "n9");
    match searchd::subscriber::client_config(&cfg) {
        Err(err) => assert!(err.to_string().contains("n9.crt"), "{err}"),
        Ok(_) => panic!("n9 has no certificate"),
    }
    publisher.shutdown().await;
}

/// Sends `bytes` on a fresh authenticated stream and returns how the connection ended.
async fn send_raw(ep: &quinn::Endpoint, addr: SocketAddr, parts: &[Vec<u8>]) -> String {
    let attempt = async {
        let conn = ep
            .connect(addr, "bookd")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        for p in parts {
            send.write_all(p).await.map_err(|e| e.to_string())?;
        }
        // Drain until the server closes the connection (bounded by the outer timeout).
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv.read(&mut buf).await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => break,
            }
        }
        Ok::<String, String>(conn.closed().await.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(s)) | Ok(Err(s)) => s,
        Err(_) => "still open after 10 s".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_that_connection_only() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(1_000));
    feed.set(key(1), 3);
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let healthy = start_node(&dir, addr, "n2");
    wait_equal(&feed, &[&healthy], WAIT)
        .await
        .expect("healthy node");

    let ep = raw_endpoint(&dir, Some(certs::load_identity(&dir, "n1").expect("n1")));
    let mut rng = Rng(9);
    let garbage: Vec<u8> = (0..40).map(|_| rng.next() as u8).collect();
    let mut malformed = (garbage.len() as u32).to_le_bytes().to_vec();
    malformed.extend_from_slice(&garbage);
    malformed[4..6].copy_from_slice(&wire::PROTOCOL_VERSION.to_le_bytes());
    let oversized = ((wire::MAX_FRAME_BYTES + 1) as u32).to_le_bytes().to_vec();
    let mut wrong_version = subscribe_frame("n1");
    wrong_version[4..6].copy_from_slice(&99u16.to_le_bytes());
    let empty = 0u32.to_le_bytes().to_vec();
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("malformed first frame", vec![malformed.clone()]),
        ("oversized first frame", vec![oversized.clone()]),
        ("unknown version", vec![wrong_version]),
        ("empty frame", vec![empty]),
        (
            "malformed after subscribe",
            vec![subscribe_frame("n1"), malformed],
        ),
        (
            "oversized after subscribe",
            vec![subscribe_frame("n1"), oversized],
        ),
        (
            "heartbeat from a node",
            vec![
                subscribe_frame("n1"),
                wire::encode_frame(&Message::Heartbeat {
                    seq: 1,
                    time_unix_ms: 1,
                })
                .expect("encodes"),
            ],
        ),
    ];
    let before = publisher.stats().protocol_errors.load(Ordering::Relaxed);
    for (what, parts) in &cases {
        let ended = send_raw(&ep, addr, parts).await;
        eprintln!("{what}: {ended}");
        assert!(
            ended.contains("closed by peer") && ended.ends_with("(code 1)"),
            "{what}: {ended}"
        );
    }
    let after = publisher.stats().protocol_errors.load(Ordering::Relaxed);
    assert_eq!(after - before, cases.len() as u64);
    // The publisher and the healthy node are unaffected.
    feed.set(key(2), 0);
    wait_equal(&feed, &[&healthy], WAIT)
        .await
        .expect("still served");
    assert_eq!(
        healthy.handle.status().reconnects.load(Ordering::Relaxed),
        0
    );
    healthy.stop().await;
    publisher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_limit_is_enforced() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(100));
    let mut cfg = publisher_config(&dir, "127.0.0.1:0".parse().expect("addr"));
    cfg.max_nodes = 2;
    let publisher = bookd::quic::Publisher::start(cfg, feed.clone())
        .await
        .expect("publisher");
    let addr = publisher.local_addr().expect("addr");
    let a = start_node(&dir, addr, "n1");
    let b = start_node(&dir, addr, "n2");
    wait_equal(&feed, &[&a, &b], WAIT).await.expect("two nodes");
    let ep = raw_endpoint(&dir, Some(certs::load_identity(&dir, "n3").expect("n3")));
    match probe(&ep, addr).await {
        Outcome::Refused(why) => eprintln!("third node refused: {why}"),
        Outcome::Accepted(m) => panic!("a third node was served: {}", m.kind()),
    }
    assert!(
        publisher
            .stats()
            .nodes_refused_limit
            .load(Ordering::Relaxed)
            >= 1
    );
    a.stop().await;
    b.stop().await;
    publisher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_bad_frames_from_bookd_and_reconnects() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    // A fake bookd with the real certificate that answers every subscription with garbage:
    // first an unknown version, then an oversized length, then a malformed payload.
    let cfg = publisher_config(&dir, "127.0.0.1:0".parse().expect("addr"));
    let sc = bookd::quic::server_config(&cfg).expect("server config");
    let ep = quinn::Endpoint::server(sc, cfg.listen).expect("fake bookd");
    let addr = ep.local_addr().expect("addr");
    let mut bad_version = wire::encode_frame(&Message::Heartbeat {
        seq: 1,
        time_unix_ms: 1,
    })
    .expect("encodes");
    bad_version[4..6].copy_from_slice(&7u16.to_le_bytes());
    let answers = vec![
        bad_version,
        ((wire::MAX_FRAME_BYTES + 1) as u32).to_le_bytes().to_vec(),
        vec![3, 0, 0, 0, 1, 0, 250],
    ];
    let server = tokio::spawn(async move {
        for answer in answers {
            let Some(incoming) = ep.accept().await else {
                return;
            };
            let Ok(conn) = incoming.await else { continue };
            let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                continue;
            };
            let mut prefix = [0u8; 4];
            if recv.read_exact(&mut prefix).await.is_err() {
                continue;
            }
            let _ = send.write_all(&answer).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        }
    });
    let node = start_node(&dir, addr, "n1");
    let status = node.handle.status();
    let deadline = tokio::time::Instant::now() + WAIT;
    while status.frames_refused.load(Ordering::Relaxed) < 3
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status.frames_refused.load(Ordering::Relaxed), 3);
    assert!(status.reconnects.load(Ordering::Relaxed) >= 2);
    assert!(!status.in_sync());
    assert!(node.handle.entries().is_empty());
    node.stop().await;
    server.abort();
}
