//! Shared by the QUIC invalidation tests: a cluster directory with real certificates, an
//! in-memory feed, a publisher on 127.0.0.1 and searchd subscribers writing to test overlays.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bookd::certs;
use bookd::quic::{MemoryFeed, Publisher, PublisherConfig};
use format::wire::LegKey;
use searchd::overlay::Overlay;
use searchd::subscriber::{self, LiveView, OverlayTarget, SubscriberConfig, SubscriberHandle};
use tokio::sync::watch;

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A snapshot stand-in: every test key resolves to a distinct overlay key, except carrier
/// `ZZ ` (a leg the snapshot does not have).
pub struct TestView {
    pub generation: u64,
    pub overlay: Overlay,
}

pub fn overlay_key(k: &LegKey) -> Option<u64> {
    if k.carrier == *b"ZZ " {
        return None;
    }
    let day = u64::try_from(k.date - 20_000).ok()?;
    Some((day << 32) | (u64::from(k.flight_number) << 8) | u64::from(k.booking_class))
}

impl LiveView for TestView {
    fn generation(&self) -> u64 {
        self.generation
    }
    fn resolve(&self, key: &LegKey) -> Option<u64> {
        overlay_key(key)
    }
    fn overlay(&self) -> &Overlay {
        &self.overlay
    }
}

pub struct TestTarget(pub Mutex<Arc<TestView>>);

impl OverlayTarget for TestTarget {
    type View = TestView;
    fn current(&self) -> Arc<TestView> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

pub fn key(i: u32) -> LegKey {
    LegKey {
        carrier: *b"BA ",
        flight_number: (i % 1000) as u16,
        date: 20_000 + (i / 26_000) as i32,
        origin: *b"LHR",
        booking_class: b'A' + ((i / 1000) % 26) as u8,
    }
}

pub fn unmapped_key(i: u32) -> LegKey {
    LegKey {
        carrier: *b"ZZ ",
        ..key(i)
    }
}

/// A cluster directory with the CA, bookd's certificate and nodes n1..n6.
pub fn cluster(root: &Path) -> PathBuf {
    let dir = root.join("cluster");
    certs::init(&dir).expect("certs init");
    for n in 1..=6 {
        certs::issue(&dir, &format!("n{n}")).expect("certs issue");
    }
    dir
}

pub fn publisher_config(dir: &Path, listen: SocketAddr) -> PublisherConfig {
    let mut c = PublisherConfig::new(listen, dir.to_path_buf());
    c.heartbeat = Duration::from_millis(100);
    c.write_timeout = Duration::from_secs(3);
    c.handshake_timeout = Duration::from_secs(3);
    c
}

pub async fn start_publisher(dir: &Path, feed: Arc<MemoryFeed>) -> Publisher {
    Publisher::start(
        publisher_config(dir, "127.0.0.1:0".parse().expect("addr")),
        feed,
    )
    .await
    .expect("publisher starts")
}

/// Starts a publisher again on `addr`, the address of one just shut down (the UDP port is
/// free again at once, but a few bounded retries are allowed).
pub async fn restart_publisher<F: bookd::quic::InventoryFeed>(
    dir: &Path,
    addr: SocketAddr,
    feed: Arc<F>,
) -> Publisher {
    let cfg = publisher_config(dir, addr);
    for _ in 0..20 {
        match Publisher::start(cfg.clone(), feed.clone()).await {
            Ok(p) => return p,
            Err(e) => {
                eprintln!("rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("the publisher did not restart on {addr}");
}

pub struct Node {
    pub name: String,
    pub target: Arc<TestTarget>,
    pub handle: SubscriberHandle<TestTarget>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Node {
    pub fn overlay(&self) -> Arc<TestView> {
        self.target.current()
    }

    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

pub fn node_config(dir: &Path, bookd: SocketAddr, name: &str) -> SubscriberConfig {
    let mut c = SubscriberConfig::new(bookd.to_string(), dir, name);
    c.silence_timeout = Duration::from_millis(1500);
    c.connect_timeout = Duration::from_secs(2);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(300);
    c.refresh_interval = Duration::from_millis(20);
    c
}

pub fn start_node(dir: &Path, bookd: SocketAddr, name: &str) -> Node {
    let target = Arc::new(TestTarget(Mutex::new(Arc::new(TestView {
        generation: 1,
        overlay: Overlay::new(),
    }))));
    let (stop, rx) = watch::channel(false);
    let (handle, task) = subscriber::spawn(node_config(dir, bookd, name), target.clone(), rx)
        .expect("subscriber starts");
    Node {
        name: name.to_string(),
        target,
        handle,
        stop,
        task,
    }
}

/// Compares a node with the feed entry by entry: its held state, and its overlay through the
/// test snapshot. `None` when equal, else the first difference.
pub fn difference(feed: &BTreeMap<LegKey, u16>, node: &Node) -> Option<String> {
    let held = node.handle.entries();
    if held.len() != feed.len() {
        return Some(format!(
            "{}: holds {} entries, bookd has {}",
            node.name,
            held.len(),
            feed.len()
        ));
    }
    let view = node.overlay();
    let mut mapped = 0usize;
    for (k, &seats) in feed {
        match held.get(k) {
            Some(&(s, _)) if s == seats => {}
            other => {
                return Some(format!(
                    "{}: {k:?} holds {other:?}, bookd has {seats}",
                    node.name
                ))
            }
        }
        if let Some(ok) = overlay_key(k) {
            mapped += 1;
            let got = view.overlay.seats(ok);
            if got != Some(seats) {
                return Some(format!(
                    "{}: overlay {k:?} = {got:?}, bookd has {seats}",
                    node.name
                ));
            }
        }
    }
    if view.overlay.len() != mapped {
        return Some(format!(
            "{}: overlay has {} entries, bookd {} mapped",
            node.name,
            view.overlay.len(),
            mapped
        ));
    }
    None
}

/// Waits (bounded) until every node equals the feed and is in sync.
pub async fn wait_equal(
    feed: &MemoryFeed,
    nodes: &[&Node],
    within: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        let state = feed.state();
        let mut diff = None;
        for n in nodes {
            if let Some(d) = difference(&state, n) {
                diff = Some(d);
                break;
            }
            if !n.handle.status().in_sync() {
                diff = Some(format!("{}: not in sync", n.name));
                break;
            }
        }
        match diff {
            None => return Ok(started.elapsed()),
            Some(d) if Instant::now() >= deadline => return Err(d),
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A deterministic generator for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `n` changes over `keys` distinct leg classes.
    pub fn changes(&mut self, n: usize, keys: u32) -> Vec<(LegKey, u16)> {
        (0..n)
            .map(|_| {
                let i = (self.next() % u64::from(keys)) as u32;
                let k = if i.is_multiple_of(97) {
                    unmapped_key(i)
                } else {
                    key(i)
                };
                (k, (self.next() % 10) as u16)
            })
            .collect()
    }
}

/// Reads one whole frame from bookd (length prefix, then payload) and decodes it.
pub async fn read_message(recv: &mut quinn::RecvStream) -> Result<format::wire::Message, String> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let len = format::wire::frame_len(prefix).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    format::wire::decode_payload(&buf).map_err(|e| e.to_string())
}
