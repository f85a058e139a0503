//! Notification rows: publishing inserts them, users list and change them.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::UserId;
use crate::domain::event::Notification;

const COLUMNS: &str = "id, seq, title, body, category, data, created_at, read_at, expires_at";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unread,
    Read,
    All,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unread => "unread",
            Self::Read => "read",
            Self::All => "all",
        }
    }
}

pub struct ListFilter<'a> {
    pub status: Status,
    pub category: Option<&'a str>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// Newest first; expired notifications are hidden.
pub async fn list(
    conn: &mut PgConnection,
    user: &UserId,
    f: &ListFilter<'_>,
) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications
         WHERE user_id = $1
           AND ($2::int8 IS NULL OR seq < $2)
           AND ($3::text IS NULL OR category = $3)
           AND ($4 = 'all' OR ($4 = 'unread') = (read_at IS NULL))
           AND (expires_at IS NULL OR expires_at > now())
         ORDER BY seq DESC
         LIMIT $5"
    )))
    .bind(user.as_str())
    .bind(f.before)
    .bind(f.category)
    .bind(f.status.as_str())
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// The user's current seq and unread count (0 and 0 for an unknown user).
pub async fn summary(conn: &mut PgConnection, user: &UserId) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT COALESCE((SELECT last_seq FROM users WHERE user_id = $1), 0),
                (SELECT count(*) FROM notifications
                 WHERE user_id = $1 AND read_at IS NULL
                   AND (expires_at IS NULL OR expires_at > now()))",
    )
    .bind(user.as_str())
    .fetch_one(conn)
    .await
}

pub async fn get(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
) -> Result<Option<Notification>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications
         WHERE user_id = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > now())"
    )))
    .bind(user.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Rows of one publish batch. Content is passed once per request and joined
/// by index, so a publish to 10,000 users does not send its body 10,000 times.
#[derive(Default)]
pub struct NewRows<'a> {
    pub ids: Vec<Uuid>,
    /// Per row, in the order their seqs are given out.
    pub users: Vec<&'a str>,
    /// 1-based index into the content arrays.
    pub content: Vec<i32>,
    pub titles: Vec<&'a str>,
    pub bodies: Vec<Option<&'a str>>,
    pub categories: Vec<Option<&'a str>>,
    pub data: Vec<Option<&'a str>>,
    pub expires: Vec<Option<DateTime<Utc>>>,
}

/// The distinct recipients of a batch: how many rows each gets, and which
/// wake-up payload it goes in (`live::wakeup::split`).
pub struct Recipients<'a> {
    pub users: Vec<&'a str>,
    pub counts: Vec<i64>,
    pub payloads: Vec<i32>,
}

/// One batch as one statement, so it costs one round trip (and, outside an
/// explicit transaction, is its own transaction: one commit, one fsync):
///
/// 1. reserves `counts[i]` seqs for `users[i]` by bumping the per-user
///    counter (`db::users`), taking the rows in user order so concurrent
///    batches cannot deadlock; the row locks are held until commit, so each
///    user's changes commit in seq order;
/// 2. inserts the rows, a user's rows getting that user's reserved seqs in
///    row order: `last_seq - count + 1 ..= last_seq`;
/// 3. queues one NOTIFY per wake-up payload (`live::wakeup`), which
///    PostgreSQL delivers only if this commits.
///
/// Returns every user's new `last_seq`.
pub async fn publish_batch(
    conn: &mut PgConnection,
    rows: &NewRows<'_>,
    recipients: &Recipients<'_>,
    created_at: DateTime<Utc>,
    instance: &str,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let reserved: Vec<(Vec<String>, Vec<i64>)> = sqlx::query_as(
        r#"WITH reserved AS (
             INSERT INTO users (user_id, last_seq)
             SELECT u, n FROM unnest($1::text[], $2::int8[]) AS t(u, n) ORDER BY u
             ON CONFLICT (user_id) DO UPDATE SET last_seq = users.last_seq + EXCLUDED.last_seq
             RETURNING user_id, last_seq
         ), numbered AS (
             SELECT r.id, r.user_id, r.content,
                    row_number() OVER (PARTITION BY r.user_id ORDER BY r.ord) AS nth,
                    count(*) OVER (PARTITION BY r.user_id) AS n
             FROM unnest($4::uuid[], $5::text[], $6::int4[]) WITH ORDINALITY AS r(id, user_id, content, ord)
         ), inserted AS (
             INSERT INTO notifications (id, user_id, seq, title, body, category, data, created_at, expires_at)
             SELECT r.id, r.user_id, w.last_seq - r.n + r.nth,
                    c.title, c.body, c.category, c.data::jsonb, $7, c.expires_at
             FROM numbered AS r
             JOIN reserved AS w ON w.user_id = r.user_id
             JOIN unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[])
                  WITH ORDINALITY AS c(title, body, category, data, expires_at, idx)
               ON c.idx = r.content
         ), payloads AS (
             SELECT array_agg(w.user_id) AS users, array_agg(w.last_seq) AS last_seqs,
                    '{"i":' || to_json($13::text)::text || ',"w":['
                      || string_agg('[' || to_json(w.user_id)::text || ',' || w.last_seq || ']', ',')
                      || ']}' AS payload
             FROM reserved AS w
             JOIN unnest($1::text[], $3::int4[]) AS p(u, part) ON p.u = w.user_id
             GROUP BY p.part
         )
         SELECT users, last_seqs, pg_notify($14, payload)::text FROM payloads"#,
    )
    .bind(&recipients.users)
    .bind(&recipients.counts)
    .bind(&recipients.payloads)
    .bind(&rows.ids)
    .bind(&rows.users)
    .bind(&rows.content)
    .bind(created_at)
    .bind(&rows.titles)
    .bind(&rows.bodies)
    .bind(&rows.categories)
    .bind(&rows.data)
    .bind(&rows.expires)
    .bind(instance)
    .bind(super::events::CHANNEL)
    .fetch_all(conn)
    .await?;
    Ok(reserved
        .into_iter()
        .flat_map(|(users, seqs)| users.into_iter().zip(seqs))
        .collect())
}

/// Sets or clears `read_at` if it is not already so; `None` when nothing changed.
pub async fn set_read_at(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
    read_at: Option<DateTime<Utc>>,
) -> Result<Option<Notification>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE notifications SET read_at = $3
         WHERE user_id = $1 AND id = $2 AND (read_at IS NULL) = ($3::timestamptz IS NOT NULL)
           AND (expires_at IS NULL OR expires_at > now())
         RETURNING {COLUMNS}"
    )))
    .bind(user.as_str())
    .bind(id)
    .bind(read_at)
    .fetch_optional(conn)
    .await
}

/// Marks every unread notification with seq <= `up_to` read; returns how many.
pub async fn mark_all_read(
    conn: &mut PgConnection,
    user: &UserId,
    up_to: i64,
    at: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    sqlx::query("UPDATE notifications SET read_at = $3 WHERE user_id = $1 AND read_at IS NULL AND seq <= $2")
        .bind(user.as_str())
        .bind(up_to)
        .bind(at)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
}

pub async fn delete(conn: &mut PgConnection, user: &UserId, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM notifications WHERE user_id = $1 AND id = $2")
        .bind(user.as_str())
        .bind(id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1)
}
