//! The `instances` table: which processes are running, for `/v1/admin/stats`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Instance {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Records that this instance is alive now.
pub async fn heartbeat(
    pool: &PgPool,
    id: &str,
    started_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO instances (id, started_at, last_seen_at) VALUES ($1, $2, now())
         ON CONFLICT (id) DO UPDATE SET last_seen_at = now()",
    )
    .bind(id)
    .bind(started_at)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Removes this instance's row (it is shutting down).
pub async fn forget(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM instances WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Removes the rows of instances not seen for `older_than_secs` (they died
/// without saying goodbye).
pub async fn forget_stale(pool: &PgPool, older_than_secs: i64) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM instances WHERE last_seen_at < now() - make_interval(secs => $1)")
        .bind(older_than_secs as f64)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
}

/// Instances seen in the last `within_secs` seconds, oldest first.
pub async fn seen_within(pool: &PgPool, within_secs: i64) -> Result<Vec<Instance>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, started_at, last_seen_at FROM instances
         WHERE last_seen_at > now() - make_interval(secs => $1)
         ORDER BY started_at, id",
    )
    .bind(within_secs as f64)
    .fetch_all(pool)
    .await
}
