//! Service-wide numbers for `/v1/admin/stats`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Totals {
    pub known_users: i64,
    pub notifications_stored: i64,
    pub events_stored: i64,
    pub oldest_event_at: Option<DateTime<Utc>>,
    pub max_purged_seq: i64,
}

/// Exact counts: fine at the sizes an admin looks at; each is one index or
/// table scan.
pub async fn totals(pool: &PgPool) -> Result<Totals, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM users) AS known_users,
                (SELECT count(*) FROM notifications) AS notifications_stored,
                (SELECT count(*) FROM events) AS events_stored,
                (SELECT min(created_at) FROM events) AS oldest_event_at,
                (SELECT COALESCE(max(purged_seq), 0) FROM users)::int8 AS max_purged_seq",
    )
    .fetch_one(pool)
    .await
}
