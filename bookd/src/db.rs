//! Connection pool and versioned migrations.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::error::{Error, Result};
use crate::patroni;

/// `(version, name, sql)`, applied in order, each in one transaction.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "outbox_head",
        include_str!("../migrations/0002_outbox_head.sql"),
    ),
    (
        3,
        "order_indexes",
        include_str!("../migrations/0003_order_indexes.sql"),
    ),
    (
        4,
        "outbox_pending",
        include_str!("../migrations/0004_outbox_pending.sql"),
    ),
    (
        5,
        "hold_survives_failed_payment",
        include_str!("../migrations/0005_hold_survives_failed_payment.sql"),
    ),
    (
        6,
        "outbox_history_token",
        include_str!("../migrations/0006_outbox_history_token.sql"),
    ),
];

pub fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool> {
    let mgr = Manager::from_config(config, NoTls, manager_config());
    build(mgr, size, Duration::from_secs(10))
}

/// A pool whose connections go to Patroni's leader only (`--patroni-api`, see
/// [`crate::patroni`]): one host of `config` each, the one `leader` names, and closed when
/// the leader changes. Creating a connection waits for a leader for at most 5 s (the
/// create timeout), so that while there is none a request gets its 503 in seconds.
pub fn pool_following(
    config: tokio_postgres::Config,
    size: usize,
    leader: Arc<patroni::Leader>,
) -> Result<Pool> {
    let nodes = patroni::node_configs(&config)?;
    let connect = patroni::LeaderConnect::new(nodes, leader);
    let mgr = Manager::from_connect(config, connect, manager_config());
    build(mgr, size, Duration::from_secs(5))
}

fn manager_config() -> ManagerConfig {
    // `Fast`: a pooled connection is reused unless it is closed (no query per checkout);
    // a connection to an old leader is closed by its task, so it is not reused either.
    ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    }
}

fn build(mgr: Manager, size: usize, create_timeout: Duration) -> Result<Pool> {
    Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(create_timeout))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Pool(e.to_string()))
}

/// The request pool's sessions plan with `enable_seqscan=off`. Every statement on a
/// request's path reads rows by key (the inventory rows of an offer's legs, an order, an
/// idempotency key), but the cached generic plan of a statement joining `unnest($legs)`
/// (estimated 10-100 rows) to a young, small `inventory` table is a hash join over a
/// sequential scan of the whole table, kept after the table grows: a 32-client order run
/// read 13 M inventory tuples in 45,066 sequential scans for 30,000 statements that touch
/// 1-2 rows each (~10 % of PostgreSQL's CPU). Statements without an index path still run
/// (the setting only prices sequential scans out when another path exists). Appended to
/// any `options` the operator gave in `--database-url`.
pub fn point_lookups(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c enable_seqscan=off"),
        _ => "-c enable_seqscan=off".to_string(),
    };
    config.options(&options);
    config
}

/// Parses `--database-url`: a libpq URL (`postgresql://u@h1:5432,h2:5432/db?...`) or a
/// key=value string; several hosts are allowed (libpq tries them in order).
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    let mut c: tokio_postgres::Config = url
        .parse()
        .map_err(|e| Error::Config(format!("--database-url: {e}")))?;
    if c.get_application_name().is_none() {
        c.application_name("bookd");
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(5));
    }
    Ok(c)
}

/// Applies every migration not yet recorded in `schema_migrations`, under an advisory
/// lock so that concurrent starters do not race.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock(7357001)", &[])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version    integer PRIMARY KEY,
                     name       text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            let tx = client.transaction().await?;
            let done = tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await?;
            if done.is_none() {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await?;
                applied.push(*version);
            }
            tx.commit().await?;
        }
        Ok::<_, Error>(applied)
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock(7357001)", &[])
        .await;
    result
}
