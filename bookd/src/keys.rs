//! API keys: `bk_` + 64 hex characters; only the sha256 of the key is stored.

use deadpool_postgres::Pool;

use crate::error::{Error, Result};
use crate::ids::{hex, sha256};

pub fn generate() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::Other(format!("no randomness: {e}")))?;
    Ok(format!("bk_{}", hex(&b)))
}

pub fn hash(key: &str) -> [u8; 32] {
    sha256(key.as_bytes())
}

/// A key's name: 1-100 characters, no control characters (`--name`).
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(|c| c.is_control()) {
        return Err(Error::Config(
            "--name: 1-100 characters, no control characters".into(),
        ));
    }
    Ok(())
}

/// Creates a key named `name` and returns it (the only time it exists in clear).
pub async fn create(pool: &Pool, name: &str) -> Result<String> {
    check_name(name)?;
    let key = generate()?;
    let h = hash(&key);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "INSERT INTO api_keys (name, key_hash) VALUES ($1, $2)
             ON CONFLICT DO NOTHING RETURNING id",
            &[&name, &h.as_slice()],
        )
        .await?;
    let Some(row) = row else {
        return Err(Error::Config(format!(
            "--name: an active key named {name:?} exists (revoke it first)"
        )));
    };
    let id: i64 = row.get(0);
    tx.execute(
        "INSERT INTO audit (actor, action, subject) VALUES ('cli', 'api_key.create', $1)",
        &[&format!("key:{id}:{name}")],
    )
    .await?;
    tx.commit().await?;
    Ok(key)
}

/// Revokes the active key named `name`; returns whether one was revoked.
pub async fn revoke(pool: &Pool, name: &str) -> Result<bool> {
    check_name(name)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
             RETURNING id",
            &[&name],
        )
        .await?;
    for r in &rows {
        let id: i64 = r.get(0);
        tx.execute(
            "INSERT INTO audit (actor, action, subject) VALUES ('cli', 'api_key.revoke', $1)",
            &[&format!("key:{id}:{name}")],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(!rows.is_empty())
}
