//! Who may subscribe to the invalidation channel: at most `max_nodes` nodes, also when they
//! connect at once; each under the name its certificate was issued for; and no node posing
//! as bookd. And in which history a node resumes: bookd's, never one its database lost
//! (history tokens, `format::wire` version 2).

mod quic_common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bookd::certs;
use bookd::quic::{Changes, FeedError, FullInventory, InventoryFeed, MemoryFeed};
use format::wire::{self, Message, Subscribe};
use quic_common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn raw_endpoint(ca_dir: &Path, identity: Identity) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certs::load_ca(ca_dir).expect("ca"))
        .expect("root");
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.0, identity.1)
        .expect("client cert");
    tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep
}

/// Connects, subscribes as `claimed` and returns the first frame (or why there was none),
/// keeping the connection open for `hold`.
async fn subscribe_as(
    ep: &quinn::Endpoint,
    addr: SocketAddr,
    claimed: &str,
    hold: Duration,
) -> Result<Message, String> {
    let conn = ep
        .connect(addr, "bookd")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // A node may take a moment between its handshake and its subscription (as nodes whose
    // handshakes complete together do).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open: {e}"))?;
    let frame = wire::encode_frame(&Message::Subscribe(Subscribe {
        node: claimed.into(),
        last_applied_seq: 0,
        last_applied_token: 0,
        snapshot_id: String::new(),
    }))
    .expect("encodes");
    send.write_all(&frame)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let first = read_message(&mut recv);
    let r = match tokio::time::timeout(Duration::from_secs(10), first).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    };
    tokio::time::sleep(hold).await;
    r
}

/// What broke: the node limit was checked right after the handshake but the node was only
/// registered after its `Subscribe`, so nodes whose handshakes completed together all
/// passed the check (6 of 6 served with `max_nodes = 2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_limit_holds_for_nodes_connecting_at_once() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(100));
    feed.set(key(1), 3);
    let mut cfg = publisher_config(&dir, "127.0.0.1:0".parse().expect("addr"));
    cfg.max_nodes = 2;
    let publisher = bookd::quic::Publisher::start(cfg, feed.clone())
        .await
        .expect("publisher");
    let addr = publisher.local_addr().expect("addr");
    let mut tasks = Vec::new();
    for n in 1..=6 {
        let ep = raw_endpoint(
            &dir,
            certs::load_identity(&dir, &format!("n{n}")).expect("id"),
        );
        tasks.push(tokio::spawn(async move {
            let r = subscribe_as(&ep, addr, &format!("n{n}"), Duration::from_secs(2)).await;
            (r, ep)
        }));
    }
    // While they all hold their connections: how many does bookd serve?
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let connected = publisher.nodes_connected();
    let mut served = 0;
    for t in tasks {
        let (r, _ep) = t.await.expect("task");
        if let Ok(m) = r {
            eprintln!("served: {}", m.kind());
            served += 1;
        }
    }
    publisher.shutdown().await;
    assert!(
        connected <= 2 && served <= 2,
        "max_nodes = 2, yet {connected} nodes were connected at once and {served} were served"
    );
}

/// What broke: bookd never compared the name in `Subscribe` with the node's certificate, so
/// a node of the cluster could subscribe (and be logged) as any other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_subscribe_under_another_nodes_name() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(100));
    feed.set(key(1), 3);
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let ep = raw_endpoint(&dir, certs::load_identity(&dir, "n1").expect("n1"));
    // Control: its own name is served.
    assert!(subscribe_as(&ep, addr, "n1", Duration::ZERO).await.is_ok());
    let r = subscribe_as(&ep, addr, "n2", Duration::ZERO).await;
    assert!(r.is_err(), "n1 subscribed as n2 and was served: {r:?}");
    assert!(subscribe_as(&ep, addr, "42", Duration::ZERO).await.is_err());
    // A node named with digits only (not a DNS name webpki matches) is still served.
    certs::issue(&dir, "42").expect("issue 42");
    let ep42 = raw_endpoint(&dir, certs::load_identity(&dir, "42").expect("42"));
    let r42 = subscribe_as(&ep42, addr, "42", Duration::ZERO).await;
    let r42_as_n1 = subscribe_as(&ep42, addr, "n1", Duration::ZERO).await;
    publisher.shutdown().await;
    assert!(r42.is_ok(), "node 42 was refused: {r42:?}");
    assert!(r42_as_n1.is_err(), "42 subscribed as n1: {r42_as_n1:?}");
}

/// A node's certificate (which allows server authentication) cannot pose as bookd to
/// another node: the subscriber checks bookd's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_cannot_pose_as_bookd() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    // A fake bookd serving n3's certificate.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key_der) = certs::load_identity(&dir, "n3").expect("n3");
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .expect("cert");
    tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let sc = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic"),
    ));
    let ep = quinn::Endpoint::server(sc, "127.0.0.1:0".parse().expect("addr")).expect("ep");
    let addr = ep.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let acc = accepted.clone();
    let server = tokio::spawn(async move {
        while let Some(i) = ep.accept().await {
            if let Ok(c) = i.await {
                acc.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let hb = wire::encode_frame(&Message::Heartbeat {
                    seq: 1,
                    time_unix_ms: 1,
                })
                .expect("enc");
                if let Ok((mut s, _r)) = c.accept_bi().await {
                    let _ = s.write_all(&hb).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    });
    let node = start_node(&dir, addr, "n1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let in_sync = node.handle.status().in_sync();
    node.stop().await;
    server.abort();
    assert!(!in_sync, "the node trusts n3 posing as bookd");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// A subscription cut in the middle and the stream finished closes that connection with a
/// protocol error; a second stream on the same connection is never accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_frame_closes_the_connection_and_extra_streams_are_not_accepted() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(100));
    feed.set(key(1), 3);
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let ep = raw_endpoint(&dir, certs::load_identity(&dir, "n1").expect("n1"));
    let frame = wire::encode_frame(&Message::Subscribe(Subscribe {
        node: "n1".into(),
        last_applied_seq: 0,
        last_applied_token: 0,
        snapshot_id: String::new(),
    }))
    .expect("encodes");
    let conn = ep
        .connect(addr, "bookd")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, _recv) = conn.open_bi().await.expect("open");
    send.write_all(&frame[..frame.len() / 2])
        .await
        .expect("write");
    send.finish().expect("finish");
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("closed in time")
        .to_string();
    assert!(closed.ends_with("(code 1)"), "{closed}");

    let conn = ep
        .connect(addr, "bookd")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    send.write_all(&frame).await.expect("write");
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.expect("first frame");
    // bookd allows one bidirectional stream and no unidirectional one.
    let second = tokio::time::timeout(Duration::from_millis(500), conn.open_bi()).await;
    assert!(second.is_err(), "a second stream was opened");
    let uni = tokio::time::timeout(Duration::from_millis(500), conn.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream was opened");
    publisher.shutdown().await;
}

/// Seqs 1..=5 of a history: keys 1..=5 get 10 seats each (what a backup or a replica kept).
fn first_five_seqs(feed: &MemoryFeed) {
    for i in 1..=5 {
        feed.set(key(i), 10);
    }
}

/// Seqs 6..=10 of the history of [`first_five_seqs`]: key 1 sold down to 0 (what was lost).
fn sell_key_1_down_in_seqs_6_to_10(feed: &MemoryFeed) {
    for s in (0..5).rev() {
        feed.set(key(1), s * 2);
    }
}

/// bookd's database restored from a backup while a node was away, and more bookings made
/// on the restored database than were lost before the node comes back: the node resumes
/// from its last applied seq, a number that now names other changes.
///
/// What broke: nothing in `Subscribe` identified the outbox history a seq belongs to, so
/// bookd replayed 11..=12 and the node kept seqs 6..=10 of the lost history. Now the node
/// subscribes with the history token at seq 10, which the restored outbox has not (each
/// `MemoryFeed::set` is a transaction with a fresh token), and gets a full state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_away_while_bookd_was_restored_from_a_backup_converges() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    // The backup: seat counts up to seq 5; after it, seqs 6..=10 sell key(1) down to 0.
    let backup = first_five_seqs;
    let feed = Arc::new(MemoryFeed::new(1_000));
    backup(&feed);
    sell_key_1_down_in_seqs_6_to_10(&feed);
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let node = start_node(&dir, addr, "n1");
    wait_equal(&feed, &[&node], Duration::from_secs(30))
        .await
        .expect("synced");
    assert_eq!(node.handle.last_applied(), 10);
    // The node is away (bookd gone) while its database is restored from the backup and
    // bookings continue on it: seqs 6..=12 change other leg classes; key(1) keeps 10 seats.
    publisher.shutdown().await;
    drop(publisher);
    let restored = Arc::new(MemoryFeed::new(1_000));
    backup(&restored);
    for i in 6..=12 {
        restored.set(key(i), 1);
    }
    let again = restart_publisher(&dir, addr, restored.clone()).await;
    let r = wait_equal(&restored, &[&node], Duration::from_secs(10)).await;
    let token = node.handle.last_applied_token();
    let stats = again.stats();
    node.stop().await;
    again.shutdown().await;
    r.expect("the node follows the restored bookd");
    assert_eq!(
        token,
        restored.head().1,
        "the node holds the restored history's token"
    );
    assert_eq!(
        stats.history_mismatches.load(Relaxed),
        1,
        "one full state for the node's lost history"
    );
}

/// One running publisher whose outbox is replaced (`switch`), as a failover to a replica
/// that lost the newest commits replaces bookd's database under it.
struct Failover(std::sync::Mutex<Arc<MemoryFeed>>);

impl Failover {
    fn current(&self) -> Arc<MemoryFeed> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn switch(&self, to: Arc<MemoryFeed>) {
        match self.0.lock() {
            Ok(mut g) => *g = to,
            Err(p) => *p.into_inner() = to,
        }
    }
}

impl InventoryFeed for Failover {
    async fn changes_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<Changes>, FeedError> {
        self.current().changes_after(after_seq, limit).await
    }
    async fn full_state(&self) -> Result<FullInventory, FeedError> {
        self.current().full_state().await
    }
    fn current_seq(&self) -> u64 {
        self.current().current_seq()
    }
    fn watch_seq(&self) -> tokio::sync::watch::Receiver<u64> {
        // The first database's only: the fan-out also reads every heartbeat.
        self.current().watch_seq()
    }
}

/// A failover while bookd runs and the node stays connected: the new primary lost seqs
/// 6..=10 (its head is 8, below what the node applied), then takes bookings up to 12. The
/// fan-out reads another token under its position and marks the node behind; the node's
/// session finds its position in another history and sends a full state, then replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_node_follows_a_failover_that_lost_commits() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let replicated = first_five_seqs;
    let primary = Arc::new(MemoryFeed::new(1_000));
    replicated(&primary);
    sell_key_1_down_in_seqs_6_to_10(&primary);
    let feed = Arc::new(Failover(std::sync::Mutex::new(primary.clone())));
    let publisher = bookd::quic::Publisher::start(
        publisher_config(&dir, "127.0.0.1:0".parse().expect("addr")),
        feed.clone(),
    )
    .await
    .expect("publisher");
    let addr = publisher.local_addr().expect("addr");
    let node = start_node(&dir, addr, "n1");
    wait_equal(&primary, &[&node], Duration::from_secs(30))
        .await
        .expect("synced");
    assert_eq!(node.handle.last_applied(), 10);
    let reconnects = node.handle.status().reconnects.load(Relaxed);

    let replica = Arc::new(MemoryFeed::new(1_000));
    replicated(&replica);
    for i in 6..=8 {
        replica.set(key(i), 1);
    }
    feed.switch(replica.clone());
    let behind = wait_equal(&replica, &[&node], Duration::from_secs(10)).await;
    let at_8 = node.handle.last_applied();
    replica.set(key(9), 3);
    replica.set_many(&[(key(1), 7), (key(10), 4), (key(11), 5)]);
    let passed = wait_equal(&replica, &[&node], Duration::from_secs(10)).await;
    let (last, token) = (node.handle.last_applied(), node.handle.last_applied_token());
    let now_reconnects = node.handle.status().reconnects.load(Relaxed);
    let stats = publisher.stats();
    node.stop().await;
    publisher.shutdown().await;
    behind.expect("the node follows the new primary below its old position");
    assert_eq!(at_8, 8);
    passed.expect("the node follows the new primary past its old position");
    assert_eq!((last, token), replica.head());
    assert_eq!(now_reconnects, reconnects, "followed without reconnecting");
    assert!(stats.history_mismatches.load(Relaxed) >= 1);
}

/// Subscribes as n1 with `(last_applied_seq, last_applied_token)` and returns bookd's first
/// frame.
async fn first_answer(ep: &quinn::Endpoint, addr: SocketAddr, seq: u64, token: u64) -> Message {
    let conn = ep
        .connect(addr, "bookd")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    let frame = wire::encode_frame(&Message::Subscribe(Subscribe {
        node: "n1".into(),
        last_applied_seq: seq,
        last_applied_token: token,
        snapshot_id: String::new(),
    }))
    .expect("encodes");
    send.write_all(&frame).await.expect("write");
    let first = tokio::time::timeout(Duration::from_secs(10), read_message(&mut recv))
        .await
        .expect("an answer in time")
        .expect("a frame");
    conn.close(0u32.into(), b"done");
    first
}

/// bookd replays after a node's last applied seq only when the node's history token there
/// is the one bookd's outbox has; a node of another history at the same seq (or with no
/// token) gets a full state, with bookd's token at its head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_resumes_by_replay_only_in_bookds_history() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(100));
    feed.set_many(&[(key(1), 5), (key(2), 5)]);
    feed.set(key(3), 5);
    let (at3, token3) = feed.head();
    assert_eq!(at3, 3);
    feed.set_many(&[(key(4), 4), (key(1), 3)]);
    let (head, token5) = feed.head();
    assert_eq!(head, 5);
    assert_ne!(token3, token5, "two transactions, two tokens");
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let ep = raw_endpoint(&dir, certs::load_identity(&dir, "n1").expect("n1"));

    match first_answer(&ep, addr, 3, token3).await {
        Message::Updates(u) => {
            assert_eq!((u.from_seq, u.to_seq, u.to_token), (4, 5, token5));
            let got: Vec<(u64, u16)> = u.entries.iter().map(|e| (e.seq, e.seats)).collect();
            assert_eq!(got, [(4, 4), (5, 3)]);
        }
        other => panic!("a node of bookd's history gets a replay, got {other:?}"),
    }
    for (token, who) in [(token3 ^ 1, "another history"), (0, "no token")] {
        match first_answer(&ep, addr, 3, token).await {
            Message::FullState(f) => {
                assert_eq!((f.as_of_seq, f.as_of_token), (5, token5), "{who}");
                assert_eq!(f.entries.len(), 4, "{who}");
            }
            other => panic!("a node with {who} at seq 3 gets a full state, got {other:?}"),
        }
    }
    // Up to date in bookd's history: nothing to send but a heartbeat.
    let first = first_answer(&ep, addr, 5, token5).await;
    assert!(
        matches!(first, Message::Heartbeat { seq: 5, .. }),
        "an up-to-date node is sent {first:?}"
    );
    // Up to date in another history: a full state.
    let first = first_answer(&ep, addr, 5, token3).await;
    assert!(
        matches!(first, Message::FullState(ref f) if f.as_of_token == token5),
        "a node at bookd's head in another history is sent {first:?}"
    );
    let stats = publisher.stats();
    publisher.shutdown().await;
    assert_eq!(stats.history_mismatches.load(Relaxed), 3);
    assert_eq!(stats.full_states_sent.load(Relaxed), 3);
}
