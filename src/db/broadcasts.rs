//! The `broadcasts` table: a notification for every known user, sent in
//! chunks by a background worker (see `crate::inbox::broadcaster`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// What `POST /v1/broadcasts` and `GET /v1/admin/broadcasts/{id}` answer.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Broadcast {
    pub id: Uuid,
    pub status: String,
    /// Users reached so far.
    pub recipients: i64,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub created_by: String,
}

/// Everything the worker needs to send the next chunk.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stored {
    pub status: String,
    pub title: String,
    pub body: Option<String>,
    pub category: Option<String>,
    /// The JSON text of `data`.
    pub data: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The JSON text of `actions`.
    pub actions: String,
    pub key: Option<String>,
    pub renotify: bool,
    pub critical: bool,
    /// A broadcast to the subscribers of these topics and the `named`
    /// users, not to everyone.
    pub topics: Option<Vec<String>>,
    pub named: Option<Vec<String>>,
    pub created_by: String,
    pub cursor: Option<String>,
}

pub struct New<'a> {
    pub id: Uuid,
    pub title: &'a str,
    pub body: Option<&'a str>,
    pub category: Option<&'a str>,
    /// JSON text.
    pub data: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
    /// JSON text.
    pub actions: &'a str,
    pub key: Option<&'a str>,
    pub renotify: bool,
    pub critical: bool,
    /// `None`: every known user.
    pub topics: Option<&'a [&'a str]>,
    pub named: Option<&'a [&'a str]>,
    pub request_hash: Option<&'a [u8]>,
    pub created_by: &'a str,
    pub created_at: DateTime<Utc>,
}

/// Stores a broadcast; `None` if one with its id exists already (a retry
/// with the same Idempotency-Key: see `request_hash`).
pub async fn create(pool: &PgPool, b: &New<'_>) -> Result<Option<Broadcast>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO broadcasts (id, title, body, category, data, expires_at, created_by, created_at,
                                 actions, key, renotify, critical, topics, named, request_hash)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (id) DO NOTHING
         RETURNING id, status, recipients, created_at, created_by",
    )
    .bind(b.id)
    .bind(b.title)
    .bind(b.body)
    .bind(b.category)
    .bind(b.data)
    .bind(b.expires_at)
    .bind(b.created_by)
    .bind(b.created_at)
    .bind(b.actions)
    .bind(b.key)
    .bind(b.renotify)
    .bind(b.critical)
    .bind(b.topics)
    .bind(b.named)
    .bind(b.request_hash)
    .fetch_optional(pool)
    .await
}

/// The request hash a broadcast was made with, if it exists.
pub async fn request_hash(pool: &PgPool, id: Uuid) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let row: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT request_hash FROM broadcasts WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.flatten())
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Broadcast>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, status, recipients, created_at, created_by FROM broadcasts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn load(pool: &PgPool, id: Uuid) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, title, body, category, data::text AS data, expires_at,
                actions::text AS actions, key, renotify, critical, topics, named, created_by, cursor
         FROM broadcasts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Broadcasts not done yet, oldest first.
pub async fn unfinished(pool: &PgPool, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM broadcasts WHERE status <> 'done' ORDER BY created_at, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Takes the session-level advisory lock that makes one instance at a time
/// work on broadcast `id`; `false` if another session holds it. It is
/// released when the session ends (a crash included).
pub async fn try_lock(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT pg_try_advisory_lock(hashtext('herald.broadcast'), hashtext($1::text))",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// `pending` becomes `running` (a worker took it).
pub async fn mark_running(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE broadcasts SET status = 'running' WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ())
}

/// The next `limit` known users after `cursor` (from the first when `None`:
/// the empty string sorts before every user id), in `user_id` order.
pub async fn recipients_after(
    pool: &PgPool,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM users WHERE user_id > COALESCE($1, '') ORDER BY user_id LIMIT $2",
    )
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The next `limit` users of a broadcast to topics after `cursor`: the
/// `named` ones and the topics' subscribers, each once, by byte value; with
/// the first listed topic each belongs to (none for a named one).
pub async fn audience_after(
    pool: &PgPool,
    topics: &[String],
    named: &[String],
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT user_id, topic FROM (
             SELECT DISTINCT ON (user_id) user_id, topic FROM (
                 SELECT u COLLATE "C" AS user_id, NULL::text AS topic, 0::int8 AS pos
                 FROM unnest($2::text[]) AS u
                 WHERE u COLLATE "C" > COALESCE($3, '')
                 UNION ALL
                 -- Each topic's next users: the chunk is among them.
                 SELECT s.user_id, t.topic, t.pos
                 FROM unnest($1::text[]) WITH ORDINALITY AS t(topic, pos)
                 CROSS JOIN LATERAL (
                     SELECT user_id FROM topic_subscribers
                     WHERE topic = t.topic AND user_id > COALESCE($3, '')
                     ORDER BY user_id LIMIT $4
                 ) AS s
             ) AS a
             ORDER BY user_id, pos
         ) AS d
         ORDER BY user_id
         LIMIT $4"#,
    )
    .bind(topics)
    .bind(named)
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Records one more chunk as sent, in the transaction that inserts its
/// notifications: moves the cursor from `from` to `to` and adds `sent` to
/// `recipients`. `false` (nothing changed) if the cursor is no longer at
/// `from`: that chunk was already sent, so this one must not be.
pub async fn advance(
    conn: &mut PgConnection,
    id: Uuid,
    from: Option<&str>,
    to: &str,
    sent: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE broadcasts SET cursor = $3, recipients = recipients + $4, status = 'running'
         WHERE id = $1 AND status <> 'done' AND cursor IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(sent)
    .execute(conn)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// Marks the broadcast done if its cursor is still at `at` (no user left
/// after it).
pub async fn finish(pool: &PgPool, id: Uuid, at: Option<&str>) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE broadcasts SET status = 'done', finished_at = now()
         WHERE id = $1 AND status <> 'done' AND cursor IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(at)
    .execute(pool)
    .await
    .map(|r| r.rows_affected() == 1)
}
