//! Scheduled publishes: stored when accepted, delivered once when due.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// What `GET /v1/schedules/{id}` answers (with `notifications` once
/// delivered).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Schedule {
    pub id: Uuid,
    pub deliver_at: DateTime<Utc>,
    pub status: String,
    #[serde(skip)]
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Json<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Json<serde_json::Value>>,
}

const COLUMNS: &str = "id, deliver_at, status, created_by, result -> 'notifications' AS notifications, \
     result -> 'skipped' AS skipped";

/// Stores a schedule; `None` if one with this id exists already (a retry
/// with the same Idempotency-Key), which `same` then tells apart.
pub async fn create(
    pool: &PgPool,
    id: Uuid,
    created_by: &str,
    deliver_at: DateTime<Utc>,
    request: &serde_json::Value,
) -> Result<Option<Schedule>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO schedules (id, created_by, deliver_at, request) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(created_by)
    .bind(deliver_at)
    .bind(Json(request))
    .fetch_optional(pool)
    .await
}

/// Whether schedule `id` was made by `created_by` for `deliver_at` with
/// this request.
pub async fn same(
    pool: &PgPool,
    id: Uuid,
    created_by: &str,
    deliver_at: DateTime<Utc>,
    request: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM schedules WHERE id = $1 AND created_by = $2
                        AND deliver_at = $3 AND request = $4)",
    )
    .bind(id)
    .bind(created_by)
    .bind(deliver_at)
    .bind(Json(request))
    .fetch_one(pool)
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Schedule>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Cancels a schedule that is still scheduled. If its delivery holds the
/// row, this waits for it and then finds it delivered.
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE schedules SET status = 'canceled', finished_at = now()
         WHERE id = $1 AND status = 'scheduled'",
    )
    .bind(id)
    .execute(pool)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// A due schedule: its id, who made it and its publish as accepted.
#[derive(Debug, sqlx::FromRow)]
pub struct Due {
    pub id: Uuid,
    pub created_by: String,
    pub request: Json<serde_json::Value>,
}

/// Schedules due by `now`, oldest first (not locked: delivery claims them).
pub async fn due(pool: &PgPool, now: DateTime<Utc>, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, created_by, request FROM schedules
         WHERE status = 'scheduled' AND deliver_at <= $1
         ORDER BY deliver_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Claims schedules for delivery in the caller's transaction: those still
/// scheduled and not held by anyone else (a cancel in progress, another
/// instance delivering). Returns the claimed ids.
pub async fn claim(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM schedules WHERE id = ANY($1) AND status = 'scheduled'
         ORDER BY id FOR UPDATE SKIP LOCKED",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Marks claimed schedules delivered with their answers.
pub async fn delivered(
    conn: &mut PgConnection,
    ids: &[Uuid],
    results: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE schedules s SET status = 'delivered', finished_at = now(), result = r.result::jsonb
         FROM unnest($1::uuid[], $2::text[]) AS r(id, result) WHERE s.id = r.id",
    )
    .bind(ids)
    .bind(results)
    .execute(conn)
    .await
    .map(|_| ())
}

/// How many are scheduled, and how late the oldest due one is (seconds).
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*),
                coalesce(extract(epoch FROM now() - min(deliver_at) FILTER (WHERE deliver_at <= now())), 0)::float8
         FROM schedules WHERE status = 'scheduled'",
    )
    .fetch_one(pool)
    .await
}
