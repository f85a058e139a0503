//! Retention: old state-change events and old idempotency keys are removed
//! in small batches, so storage stays bounded without long locks. Old
//! notifications leave the center with an event (`db::timers`).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The parts of a user's log that age out: each row is one event of its
/// user's log (a notification row is its `notification` event).
#[derive(Debug, Clone, Copy)]
pub enum AgedLog {
    /// State-change events (`events`).
    Events,
}

impl AgedLog {
    fn table(self) -> &'static str {
        match self {
            Self::Events => "events",
        }
    }

    /// The statement of `purge_before` (`$1` cutoff, `$2` batch); public so
    /// the retention benchmark explains exactly what runs.
    pub fn purge_sql(self) -> String {
        // The table name comes from the enum above, never from input.
        let table = self.table();
        format!(
            "WITH gone AS (
                 DELETE FROM {table}
                 WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table} WHERE created_at < $1 LIMIT $2))
                 RETURNING user_id, seq
             ), horizon AS (
                 SELECT user_id, max(seq) AS seq, count(*) AS n FROM gone GROUP BY user_id
             ), moved AS (
                 UPDATE users u SET purged_seq = GREATEST(u.purged_seq, h.seq)
                 FROM horizon h WHERE u.user_id = h.user_id
             )
             SELECT COALESCE(sum(n), 0)::int8 FROM horizon"
        )
    }
}

/// The statement of `purge_idempotency_keys` (`$1` cutoff, `$2` batch).
pub const PURGE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2))";

/// Deletes up to `batch` rows of `log` created before `cutoff` and moves each
/// affected user's `purged_seq` past them, so a client resuming from before
/// the horizon gets `reset` instead of a silent gap.
pub async fn purge_before(
    conn: &mut PgConnection,
    log: AgedLog,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(log.purge_sql()))
        .bind(cutoff)
        .bind(batch)
        .fetch_one(conn)
        .await
        .map(|n: i64| n as u64)
}

/// Deletes up to `batch` idempotency keys created before `cutoff`.
pub async fn purge_idempotency_keys(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(PURGE_IDEMPOTENCY_KEYS)
        .bind(cutoff)
        .bind(batch)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
}
