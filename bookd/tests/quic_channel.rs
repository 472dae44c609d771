//! The invalidation channel end to end over real QUIC on 127.0.0.1 with real certificates:
//! in-memory feed -> bookd publisher -> searchd subscribers -> overlays, checked entry by
//! entry against the feed. Every wait is bounded.

mod quic_common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bookd::quic::{MemoryFeed, Publisher};
use quic_common::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_follow_the_feed_entry_by_entry() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(1_000_000));
    let mut rng = Rng(1);
    feed.set_many(&rng.changes(500, 5_000));
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let nodes: Vec<Node> = (1..=3)
        .map(|i| start_node(&dir, addr, &format!("n{i}")))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_equal(&feed, &refs, WAIT).await.expect("initial state");
    // A burst of bookings: single changes and batches, with seq holes (rolled back work).
    for round in 0..200 {
        if round % 3 == 0 {
            feed.set_many(&rng.changes(50, 5_000));
        } else {
            let (k, s) = rng.changes(1, 5_000)[0];
            feed.set(k, s);
        }
        if round % 50 == 0 {
            feed.skip(3);
            tokio::task::yield_now().await;
        }
    }
    let took = wait_equal(&feed, &refs, WAIT)
        .await
        .expect("after the burst");
    eprintln!("3 nodes equal the feed {took:?} after the burst");
    // Applying is idempotent and the seats of one class follow each change.
    let k = key(4242);
    for seats in [3u16, 2, 1, 0] {
        feed.set(k, seats);
    }
    wait_equal(&feed, &refs, WAIT).await.expect("sold out");
    for n in &nodes {
        let view = n.overlay();
        assert_eq!(
            view.overlay.seats(overlay_key(&k).expect("mapped")),
            Some(0)
        );
        let st = n.handle.status();
        assert!(st.in_sync(), "{} in sync", n.name);
        assert_eq!(st.lag_seq(), 0, "{} lag", n.name);
        assert_eq!(st.frames_refused.load(Ordering::Relaxed), 0);
        assert!(
            st.unmapped_entries.load(Ordering::Relaxed) > 0,
            "ZZ legs are counted"
        );
        assert!(st
            .render_prometheus()
            .contains("searchd_invalidation_lag_seq 0"));
    }
    assert_eq!(publisher.nodes_connected(), 3);
    assert!(publisher
        .stats()
        .render_prometheus()
        .contains("bookd_quic_nodes_connected 3"));
    for n in nodes {
        n.stop().await;
    }
    publisher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_drops_and_bookd_restart_mid_burst_lose_nothing() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(1_000_000));
    let mut rng = Rng(2);
    feed.set_many(&rng.changes(300, 3_000));
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let nodes: Vec<Node> = (1..=3)
        .map(|i| start_node(&dir, addr, &format!("n{i}")))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_equal(&feed, &refs, WAIT).await.expect("initial state");

    // Link drops mid-burst: each node loses its connection at a different point.
    for round in 0..300u32 {
        feed.set_many(&rng.changes(5, 3_000));
        if round % 60 == 7 {
            nodes[(round / 60) as usize % 3].handle.drop_connection();
        }
        if round % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    wait_equal(&feed, &refs, WAIT)
        .await
        .expect("after link drops");
    let reconnects: u64 = nodes
        .iter()
        .map(|n| n.handle.status().reconnects.load(Ordering::Relaxed))
        .sum();
    assert!(reconnects >= 3, "every node reconnected ({reconnects})");

    // bookd restarts mid-burst: the endpoint goes away while bookings continue, then a new
    // publisher binds the same address.
    for _ in 0..50 {
        feed.set_many(&rng.changes(5, 3_000));
    }
    publisher.shutdown().await;
    drop(publisher);
    for _ in 0..100 {
        feed.set_many(&rng.changes(5, 3_000));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = restart_publisher(&dir, addr, feed.clone()).await;
    for _ in 0..100 {
        feed.set_many(&rng.changes(5, 3_000));
    }
    let took = wait_equal(&feed, &refs, WAIT)
        .await
        .expect("after bookd restart");
    eprintln!("nodes equal the feed {took:?} after bookd's restart");
    // They caught up by replay, not by a full state (the outbox still had everything).
    for n in &nodes {
        assert_eq!(
            n.handle.status().full_states.load(Ordering::Relaxed),
            1,
            "{}",
            n.name
        );
    }
    assert!(restarted.stats().replays.load(Ordering::Relaxed) >= 3);

    // A searchd restart mid-burst: its state is gone, so it gets a full state.
    let mut nodes = nodes;
    let old = nodes.remove(1);
    for _ in 0..50 {
        feed.set_many(&rng.changes(5, 3_000));
    }
    old.stop().await;
    for _ in 0..50 {
        feed.set_many(&rng.changes(5, 3_000));
    }
    nodes.push(start_node(&dir, addr, "n2"));
    for _ in 0..50 {
        feed.set_many(&rng.changes(5, 3_000));
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_equal(&feed, &refs, WAIT)
        .await
        .expect("after a searchd restart");
    for n in nodes {
        n.stop().await;
    }
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_gets_a_full_state_and_a_node_behind_the_window_too() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    // The outbox keeps only 200 changes.
    let feed = Arc::new(MemoryFeed::new(200));
    let mut rng = Rng(3);
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let early = start_node(&dir, addr, "n1");
    for _ in 0..100 {
        feed.set_many(&rng.changes(20, 4_000));
    }
    let late = start_node(&dir, addr, "n2");
    wait_equal(&feed, &[&early, &late], WAIT)
        .await
        .expect("late node");
    assert!(late.handle.status().full_states.load(Ordering::Relaxed) >= 1);
    // The early node falls out of the window while paused, then catches up by full state.
    early.handle.set_paused(true);
    // Let it drain nothing more, then sell far past the retained window.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = early.handle.status().full_states.load(Ordering::Relaxed);
    early.handle.drop_connection();
    for _ in 0..100 {
        feed.set_many(&rng.changes(20, 4_000));
    }
    early.handle.set_paused(false);
    wait_equal(&feed, &[&early, &late], WAIT)
        .await
        .expect("node behind the window");
    assert!(early.handle.status().full_states.load(Ordering::Relaxed) > before);
    early.stop().await;
    late.stop().await;
    publisher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_slows_neither_bookings_nor_other_nodes_and_is_resynced() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(10_000_000));
    let mut cfg = publisher_config(&dir, "127.0.0.1:0".parse().expect("addr"));
    cfg.queue_frames = 4;
    cfg.max_batch = 2_000;
    cfg.write_timeout = Duration::from_secs(2);
    let publisher = Publisher::start(cfg, feed.clone())
        .await
        .expect("publisher");
    let addr = publisher.local_addr().expect("addr");
    let nodes: Vec<Node> = (1..=3)
        .map(|i| start_node(&dir, addr, &format!("n{i}")))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_equal(&feed, &refs, WAIT).await.expect("initial state");

    nodes[2].handle.set_paused(true);
    let mut rng = Rng(4);
    // Enough bytes to fill the stalled node's QUIC windows and its queue (~10 MB).
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..250 {
        let t = Instant::now();
        feed.set_many(&rng.changes(2_000, 400_000));
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let burst = started.elapsed();
    // The two others follow while the third is stalled.
    let took = wait_equal(&feed, &refs[..2], WAIT)
        .await
        .expect("healthy nodes follow");
    assert!(!nodes[2].handle.status().in_sync() || difference(&feed.state(), &nodes[2]).is_some());
    eprintln!("burst of 500k changes took {burst:?} (slowest commit {slowest:?}); healthy nodes equal {took:?} after");
    assert!(
        slowest < Duration::from_millis(500),
        "a commit waited for a node: {slowest:?}"
    );
    let stats = publisher.stats();
    let overflowed = stats.queue_overflows.load(Ordering::Relaxed);
    let slow = stats.slow_disconnects.load(Ordering::Relaxed);
    eprintln!("queue overflows {overflowed}, slow disconnects {slow}");
    assert!(overflowed + slow > 0, "the stalled node fell behind");
    nodes[2].handle.set_paused(false);
    wait_equal(&feed, &refs, WAIT)
        .await
        .expect("the stalled node is resynced");
    for n in nodes {
        n.stop().await;
    }
    publisher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_publication_reaches_nodes_and_a_new_snapshot_keeps_sold_seats() {
    init_logs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cluster(tmp.path());
    let feed = Arc::new(MemoryFeed::new(1_000));
    let publisher = start_publisher(&dir, feed.clone()).await;
    let addr = publisher.local_addr().expect("addr");
    let node = start_node(&dir, addr, "n1");
    let sold = key(7);
    feed.set(sold, 0);
    wait_equal(&feed, &[&node], WAIT).await.expect("sold");
    let mut published = node.handle.published_snapshots();
    publisher.publish_snapshot("snap-2");
    tokio::time::timeout(WAIT, published.wait_for(|s| s.as_deref() == Some("snap-2")))
        .await
        .expect("announced in time")
        .expect("announced");
    // The node loads the new snapshot (a fresh, empty overlay); the subscriber fills it.
    let fresh = Arc::new(TestView {
        generation: 2,
        overlay: searchd::overlay::Overlay::new(),
    });
    node.handle.fill(&fresh);
    assert_eq!(
        fresh.overlay.seats(overlay_key(&sold).expect("mapped")),
        Some(0)
    );
    match node.target.0.lock() {
        Ok(mut g) => *g = fresh.clone(),
        Err(_) => panic!("target lock poisoned"),
    }
    feed.set(key(8), 4);
    wait_equal(&feed, &[&node], WAIT)
        .await
        .expect("after the swap");
    assert_eq!(node.handle.entries().len(), 2);
    node.stop().await;
    publisher.shutdown().await;
}
