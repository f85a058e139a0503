//! Webhook endpoints and their outbox. The outbox is filled by triggers
//! (migrations/0007_webhooks.sql) in the statement that writes each event;
//! these functions manage endpoints and let the delivery worker claim,
//! finish and retry rows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::event::{Counts, EventKind, Notification};

/// The channel the outbox triggers NOTIFY when they queue rows.
pub const CHANNEL: &str = "herald_webhooks";

/// An endpoint as `GET /v1/admin/webhooks` lists it (never its secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub enabled: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Outbox rows still to be delivered.
    pub pending: i64,
    /// Since when deliveries fail without a success in between.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// What the delivery worker needs of an enabled endpoint. (No `Debug`: it
/// holds the secret.)
#[derive(Clone, sqlx::FromRow)]
pub struct Target {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
}

pub async fn create(
    conn: &mut PgConnection,
    id: Uuid,
    url: &str,
    events: &[String],
    secret: &str,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO webhooks (id, url, events, secret) VALUES ($1, $2, $3, $4)
         RETURNING created_at",
    )
    .bind(id)
    .bind(url)
    .bind(events)
    .bind(secret)
    .fetch_one(conn)
    .await
}

/// How long a change of endpoints waits for the event tables' writers when
/// it must create or drop the outbox triggers; past it the change fails
/// (retry) rather than keep publishes waiting behind it.
pub async fn limit_lock_wait(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(conn)
        .await
        .map(|_| ())
}

/// Creates the outbox triggers if an endpoint is enabled, drops them if
/// none is (see migrations/0007_webhooks.sql). In the transaction that
/// changed the endpoints, after the change.
pub async fn sync_triggers(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT herald_webhooks_sync()")
        .execute(conn)
        .await
        .map(|_| ())
}

/// Whether the outbox triggers exist now.
pub async fn triggers_armed(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) = 2 FROM pg_trigger
         WHERE tgname IN ('herald_webhooks_notifications', 'herald_webhooks_events')",
    )
    .fetch_one(pool)
    .await
}

/// Every endpoint, oldest first, with its pending count.
pub async fn list(pool: &PgPool) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(
        "SELECT w.id, w.url, w.events, w.created_at, w.disabled_at IS NULL AS enabled,
                w.disabled_at, w.disabled_reason,
                (SELECT count(*) FROM webhook_outbox o WHERE o.webhook_id = w.id) AS pending,
                w.failing_since, w.last_error, w.last_error_at
         FROM webhooks w
         ORDER BY w.created_at, w.id",
    )
    .fetch_all(pool)
    .await
}

/// Deletes an endpoint and its outbox rows; whether it existed.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1)
}

/// The enabled endpoints.
pub async fn targets(pool: &PgPool) -> Result<Vec<Target>, sqlx::Error> {
    sqlx::query_as("SELECT id, url, secret FROM webhooks WHERE disabled_at IS NULL ORDER BY id")
        .fetch_all(pool)
        .await
}

/// A claimed outbox row: one event for one endpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub user_id: String,
    pub seq: i64,
    pub kind: String,
    /// The snapshot: the event's data, or the notification row as JSON.
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

impl Delivery {
    /// The event's data exactly as live connections receive it. A
    /// notification's snapshot is its row, turned into data by the same
    /// serializer as the live `notification` event.
    pub fn event_data(&self) -> Result<String, serde_json::Error> {
        if self.kind != EventKind::Notification.as_str() {
            return Ok(self.payload.clone());
        }
        #[derive(serde::Deserialize)]
        struct RowCounts {
            counts_unread: i64,
            counts_unseen: i64,
        }
        let notification: Notification = serde_json::from_str(&self.payload)?;
        let counts: RowCounts = serde_json::from_str(&self.payload)?;
        let counts = Counts {
            unread: counts.counts_unread,
            unseen: counts.counts_unseen,
        };
        let event = notification.to_event(EventKind::Notification, self.seq, counts);
        Ok(event.data.to_string())
    }
}

/// Claims up to `limit` due rows of endpoint `webhook`, each the lowest seq
/// of its user (so a user's events go out in order, one at a time), and
/// leases them for `lease_ms`: until then no instance claims them again.
/// `SKIP LOCKED` lets several instances claim at once without waiting; a
/// head another instance is claiming is skipped, and the rows after it are
/// not heads.
pub async fn claim(
    conn: &mut PgConnection,
    webhook: Uuid,
    limit: i64,
    lease_ms: i64,
    claim: Uuid,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE webhook_outbox o
         SET next_attempt_at = now() + $3 * interval '1 millisecond', claim = $4
         FROM (
             SELECT h.webhook_id, h.user_id, h.seq
             FROM webhook_outbox h
             WHERE h.webhook_id = $1 AND h.next_attempt_at <= now()
               AND NOT EXISTS (SELECT 1 FROM webhook_outbox p
                               WHERE p.webhook_id = h.webhook_id AND p.user_id = h.user_id
                                 AND p.seq < h.seq)
             ORDER BY h.next_attempt_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ) c
         WHERE o.webhook_id = c.webhook_id AND o.user_id = c.user_id AND o.seq = c.seq
         RETURNING o.user_id, o.seq, o.kind, o.payload::text AS payload, o.created_at, o.attempts",
    )
    .bind(webhook)
    .bind(limit)
    .bind(lease_ms)
    .bind(claim)
    .fetch_all(conn)
    .await
}

/// A 2xx accepted the row: it leaves the outbox, and the endpoint counts as
/// healthy again.
pub async fn delivered(
    pool: &PgPool,
    webhook: Uuid,
    user: &str,
    seq: i64,
    claim: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH gone AS (
             DELETE FROM webhook_outbox
             WHERE webhook_id = $1 AND user_id = $2 AND seq = $3 AND claim = $4
         )
         UPDATE webhooks SET failing_since = NULL
         WHERE id = $1 AND failing_since IS NOT NULL",
    )
    .bind(webhook)
    .bind(user)
    .bind(seq)
    .bind(claim)
    .execute(pool)
    .await
    .map(|_| ())
}

/// An attempt failed: the row is due again after `retry_ms`, and the
/// endpoint records the error. Answers for how many seconds the endpoint
/// has been failing (by the database's clock, like every other time here).
pub async fn failed(
    pool: &PgPool,
    webhook: Uuid,
    user: &str,
    seq: i64,
    claim: Uuid,
    retry_ms: i64,
    error: &str,
) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH retry AS (
             UPDATE webhook_outbox
             SET attempts = attempts + 1, claim = NULL, last_error = $6,
                 next_attempt_at = now() + $5 * interval '1 millisecond'
             WHERE webhook_id = $1 AND user_id = $2 AND seq = $3 AND claim = $4
         )
         UPDATE webhooks
         SET failing_since = coalesce(failing_since, now()), last_error = $6, last_error_at = now()
         WHERE id = $1
         RETURNING extract(epoch FROM now() - failing_since)::float8",
    )
    .bind(webhook)
    .bind(user)
    .bind(seq)
    .bind(claim)
    .bind(retry_ms)
    .bind(error)
    .fetch_optional(pool)
    .await
}

/// Disables an endpoint that kept failing and drops its outbox rows (no
/// route enables it again); whether this call disabled it.
pub async fn disable(
    conn: &mut PgConnection,
    webhook: Uuid,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "WITH off AS (
             UPDATE webhooks SET disabled_at = now(), disabled_reason = $2
             WHERE id = $1 AND disabled_at IS NULL
             RETURNING id
         ), gone AS (
             DELETE FROM webhook_outbox WHERE webhook_id IN (SELECT id FROM off)
         )
         SELECT count(*) = 1 FROM off",
    )
    .bind(webhook)
    .bind(reason)
    .fetch_one(conn)
    .await
}

/// Rows in the outbox, and the age in seconds of the oldest.
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*),
                coalesce(extract(epoch FROM now() - min(enqueued_at)), 0)::float8
         FROM webhook_outbox",
    )
    .fetch_one(pool)
    .await
}
