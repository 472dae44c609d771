//! bookd: holds, orders, payments and cancellations on PostgreSQL, never selling a seat
//! twice. See `bookd/openapi.json`.

// Contract errors (`ApiError`) are values sent to clients, built off the hot path.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod clock;
pub mod connection;
pub mod crypto;
pub mod db;
pub mod error;
pub mod external;
pub mod http;
pub mod ids;
pub mod keys;
pub mod metrics;
pub mod offers;
pub mod outbox_feed;
pub mod patroni;
pub mod pg;
pub mod sequencer;
pub mod service;
pub mod snapshot_watch;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::{Error, Result};

/// Where the database is: the embedded cluster under a state directory, or a URL.
pub enum Database {
    Embedded(pg::Embedded),
    External,
}

/// Opens the database of a command: `--database-url` when given, else the embedded
/// cluster of `state_dir` (`attach`: use a running bookd's cluster if there is one).
pub fn open_database(
    state_dir: &std::path::Path,
    url: Option<&str>,
    attach: bool,
) -> Result<(Database, tokio_postgres::Config)> {
    match url {
        Some(u) => Ok((Database::External, db::parse_url(u)?)),
        None => {
            let e = if attach {
                pg::Embedded::attach_or_start(state_dir)?
            } else {
                pg::Embedded::start(state_dir)?
            };
            let cfg = e.layout.pg_config();
            Ok((Database::Embedded(e), cfg))
        }
    }
}

pub struct ServerConfig {
    pub listen: SocketAddr,
    pub snapshot: PathBuf,
    pub state_dir: PathBuf,
    pub database_url: Option<String>,
    pub now_ms: Option<i64>,
    pub data_key_file: Option<PathBuf>,
    pub pool_size: usize,
    pub hold_ttl: Duration,
    pub sweep_interval: Duration,
    pub rate: http::RateLimit,
    pub payment: external::SimConfig,
    pub airline: external::SimConfig,
    pub payment_policy: external::RetryPolicy,
    pub airline_policy: external::RetryPolicy,
    pub breaker_threshold: u32,
    pub breaker_open_for: Duration,
    /// `--commit-timeout-ms`: the longest a request waits for a write transaction's
    /// statements, and for its COMMIT (whose outcome is then unknown and settled).
    pub commit_timeout: Duration,
    /// Accept `leg:` test offer ids instead of searchd engine ids (tests only).
    pub test_offer_ids: bool,
    /// `--quic-listen`: push invalidations to searchd nodes (with `quic_cluster_dir`).
    pub quic_listen: Option<SocketAddr>,
    /// `--cluster-dir`: the cluster CA and bookd's certificate (`bookd.crt`, `bookd.key`).
    pub cluster_dir: Option<PathBuf>,
    /// How often the outbox head is polled for changes made by another process.
    pub outbox_poll: Duration,
    pub outbox_retention: outbox_feed::Retention,
    /// `--patroni-api`: the Patroni REST endpoints of the hosts of `database_url`, in their
    /// order; connections then follow Patroni's leader ([`patroni`]).
    pub patroni_api: Option<Vec<patroni::Endpoint>>,
    /// `--max-connections`, `--idle-timeout-secs`, `--send-timeout-secs` and the fixed
    /// limits of the HTTP server.
    pub http_limits: http::Limits,
}

/// Runs the server until SIGINT/SIGTERM; stops the embedded cluster on the way out.
pub fn run_server(cfg: ServerConfig) -> Result<()> {
    let snapshot = Arc::new(format::Snapshot::open(&cfg.snapshot)?);
    // The engine's per-snapshot tables (built on first use otherwise): measured, the first
    // booking after a start paid ~95 ms for them, and every request queued behind it.
    searchd::engine::prepare(&snapshot);
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| Error::io("create", &cfg.state_dir, e))?;
    let key = crypto::DataKey::load_or_create(cfg.data_key_file.as_deref(), &cfg.state_dir)?;
    let (database, pg_cfg) = open_database(&cfg.state_dir, cfg.database_url.as_deref(), false)?;
    if let Some(endpoints) = &cfg.patroni_api {
        // The leader's index names a host: both lists must line up.
        let hosts = match &database {
            Database::External => patroni::node_configs(&pg_cfg)?.len(),
            Database::Embedded(_) => 0,
        };
        patroni::check_counts(endpoints.len(), hosts)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the runtime: {e}")))?;
    let result = rt.block_on(serve(cfg, snapshot, key, pg_cfg));
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(database); // stops the embedded cluster (after every connection closed)
    result
}

async fn serve(
    cfg: ServerConfig,
    snapshot: Arc<format::Snapshot>,
    key: crypto::DataKey,
    pg_cfg: tokio_postgres::Config,
) -> Result<()> {
    // With --patroni-api every pool follows Patroni's leader (the poller stops with serve).
    let following = cfg.patroni_api.clone().map(|endpoints| {
        let leader = patroni::Leader::new();
        let poller = patroni::spawn_poller(endpoints, leader.clone());
        (leader, AbortOnDrop(poller))
    });
    let make_pool = |size: usize| match &following {
        Some((leader, _)) => {
            db::pool_following(db::point_lookups(pg_cfg.clone()), size, leader.clone())
        }
        None => db::pool(db::point_lookups(pg_cfg.clone()), size),
    };
    let pool = make_pool(cfg.pool_size)?;
    if cfg.database_url.is_some() {
        check_database_url(&pool).await?;
    }
    let applied = db::migrate(&pool).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    let clock = match cfg.now_ms {
        Some(ms) => clock::Clock::starting_at(ms),
        None => clock::Clock::system(),
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let head = {
        let client = pool.get().await?;
        outbox_feed::read_head(&client).await?
    };
    let outbox_seq = outbox_feed::SeqSignal::new(head);
    // Numbers committed inventory changes into the outbox (bookings take no shared lock).
    let (seq_stop_tx, seq_stop_rx) = tokio::sync::watch::channel(false);
    // Its own connection: requests wait for it while holding theirs.
    // Keyed reads there too: on a small, churning `outbox_pending` (every row is deleted
    // once numbered) a sequential scan reads the dead rows as well.
    let seq_pool = make_pool(1)?;
    let (sequencer, sequencer_task) =
        sequencer::Sequencer::start(seq_pool, outbox_seq.clone(), cfg.outbox_poll, seq_stop_rx);
    // Offers and capacities follow the generation published at --snapshot.
    let live = snapshot_watch::LiveSnapshot::new(snapshot.clone());
    // The simulated gateway's and airline's durable writes, group-committed.
    let sim_ledger = external::SimLedger::start(pool.clone());
    let svc = Arc::new(service::Service {
        live_sagas: service::LiveSagas::default(),
        live_claims: service::LiveClaims::default(),
        pool: pool.clone(),
        clock,
        // Offers are searchd engine ids; the `leg:` adapter prices from an id's own text,
        // so it is only ever on when a test asks for it.
        resolver: if cfg.test_offer_ids {
            tracing::warn!("accepting test offer ids (--test-offer-ids): never in production");
            Arc::new(snapshot_watch::LiveLegResolver(live.clone()))
                as Arc<dyn offers::OfferResolver>
        } else {
            Arc::new(snapshot_watch::LiveEngineResolver(live.clone()))
        },
        capacity: Arc::new(snapshot_watch::LiveCapacity(live.clone())),
        key,
        gateway: Arc::new(external::SimGateway {
            pool: pool.clone(),
            config: cfg.payment,
            ledger: sim_ledger.clone(),
        }),
        airline: Arc::new(external::SimAirline {
            pool: pool.clone(),
            config: cfg.airline,
            ledger: sim_ledger,
        }),
        pay_breaker: external::Breaker::new(
            "payment_gateway",
            cfg.breaker_threshold,
            cfg.breaker_open_for,
        ),
        air_breaker: external::Breaker::new("airline", cfg.breaker_threshold, cfg.breaker_open_for),
        cfg: service::Config {
            hold_ttl: cfg.hold_ttl,
            sweep_interval: cfg.sweep_interval,
            payment_policy: cfg.payment_policy,
            airline_policy: cfg.airline_policy,
            commit_timeout: cfg.commit_timeout,
        },
        metrics,
        outbox_seq: outbox_seq.clone(),
        sequencer,
    });
    let warmed = svc.warm_pool(cfg.pool_size).await;
    tracing::info!(connections = warmed, "database pool opened");
    // Recovery before serving: every saga left in flight is finished or compensated.
    match svc.recover(true).await {
        Ok(n) if n > 0 => tracing::info!(orders = n, "recovered in-flight sagas"),
        Ok(_) => {}
        Err(e) => return Err(Error::Other(format!("recovery failed: {e}"))),
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    // The invalidation publisher (before serving: a bad certificate fails the start).
    let publisher = match (cfg.quic_listen, &cfg.cluster_dir) {
        (Some(listen), Some(dir)) => {
            let (feed, poller) =
                outbox_feed::PgFeed::start(pool.clone(), outbox_seq, cfg.outbox_poll, rx.clone());
            let mut pc = quic::PublisherConfig::new(listen, dir.clone());
            pc.snapshot_id = snapshot.manifest.snapshot_id.clone();
            let p = quic::Publisher::start(pc, feed)
                .await
                .map_err(|e| Error::Config(format!("--quic-listen {listen}: {e}")))?;
            if let Some(a) = p.local_addr() {
                tracing::info!(addr = %a, "quic listening");
            }
            Some((p, poller))
        }
        _ => None,
    };
    let snapshot_watcher = snapshot_watch::spawn(
        cfg.snapshot.clone(),
        live,
        publisher.as_ref().map(|(p, _)| p.announcer()),
        snapshot_watch::DEFAULT_INTERVAL,
        rx.clone(),
    );
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::Config(format!("--listen {}: {e}", cfg.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("--listen: {e}")))?;
    tracing::info!(
        addr = %addr,
        max_connections = cfg.http_limits.max_connections,
        "listening"
    );

    let bg_svc = svc.clone();
    let mut bg_rx = rx.clone();
    let retention = cfg.outbox_retention;
    let background = tokio::spawn(async move {
        let mut tick = tokio::time::interval(bg_svc.cfg.sweep_interval);
        let mut last_recovery = std::time::Instant::now();
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = bg_rx.changed() => break,
            }
            if let Err(e) = bg_svc.sweep_expired().await {
                tracing::warn!(error = %e, "hold sweeper");
            }
            if last_recovery.elapsed() >= Duration::from_secs(2) {
                last_recovery = std::time::Instant::now();
                if let Err(e) = bg_svc.recover(false).await {
                    tracing::warn!(error = %e, "background recovery");
                }
            }
            if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_prune = Some(std::time::Instant::now());
                match outbox_feed::prune(&bg_svc.pool, &retention).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "outbox pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox pruning"),
                }
            }
        }
    });
    let mut app = http::App::new(svc.clone(), cfg.rate);
    app.quic_stats = publisher.as_ref().map(|(p, _)| p.stats());
    let app = Arc::new(app);
    let server = tokio::spawn(http::serve(app, listener, cfg.http_limits.clone(), rx));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    let _ = server.await;
    let _ = background.await;
    let _ = snapshot_watcher.await;
    // Every request has ended: a last sequencer run moves what they committed.
    let _ = seq_stop_tx.send(true);
    let _ = sequencer_task.await;
    if let Some((p, poller)) = publisher {
        p.shutdown().await;
        let _ = poller.await;
    }
    pool.close();
    Ok(())
}

/// The first connection to `--database-url`: a failure names the parameter (and its cause,
/// e.g. a refused connection or the server's message), never the URL (it may hold a
/// password).
async fn check_database_url(pool: &deadpool_postgres::Pool) -> Result<()> {
    match pool.get().await {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::Other(format!(
            "--database-url: cannot connect: {}",
            error::with_causes(&e)
        ))),
    }
}

/// Aborts a background task when dropped (on every way out of `serve`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `bookd keys create|revoke`. With `patroni_api` (the endpoints of the hosts of `url`),
/// only the node Patroni calls the leader is written to ([`patroni::leader_config`]).
pub fn run_keys(
    state_dir: &std::path::Path,
    url: Option<&str>,
    patroni_api: Option<&[patroni::Endpoint]>,
    create: bool,
    name: &str,
) -> Result<Option<String>> {
    if patroni_api.is_some() && url.is_none() {
        return Err(Error::Config(
            "--patroni-api needs --database-url (the hosts it names)".into(),
        ));
    }
    let (database, cfg) = open_database(state_dir, url, true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the runtime: {e}")))?;
    let out = rt.block_on(async {
        let cfg = match patroni_api {
            Some(endpoints) => {
                let (node, cfg) = patroni::leader_config(endpoints, &cfg).await?;
                tracing::info!(node, endpoint = %endpoints[node], "patroni leader; writing there");
                cfg
            }
            None => cfg,
        };
        let pool = db::pool(cfg, 2)?;
        if url.is_some() {
            check_database_url(&pool).await?;
        }
        db::migrate(&pool).await?;
        let r = if create {
            keys::create(&pool, name).await.map(Some)
        } else if keys::revoke(&pool, name).await? {
            Ok(None)
        } else {
            Err(Error::Config(format!(
                "--name: no active key named {name:?}"
            )))
        };
        pool.close();
        r
    });
    drop(rt);
    drop(database);
    out
}
pub mod certs;
pub mod quic;
