//! Notification rows: publishing inserts them, users list and change them.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::UserId;
use crate::event::Notification;

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
    pub users: Vec<&'a str>,
    pub seqs: Vec<i64>,
    /// 1-based index into the content arrays.
    pub content: Vec<i32>,
    pub titles: Vec<&'a str>,
    pub bodies: Vec<Option<&'a str>>,
    pub categories: Vec<Option<&'a str>>,
    pub data: Vec<Option<&'a str>>,
    pub expires: Vec<Option<DateTime<Utc>>>,
}

pub async fn insert_batch(
    conn: &mut PgConnection,
    rows: &NewRows<'_>,
    created_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notifications (id, user_id, seq, title, body, category, data, created_at, expires_at)
         SELECT r.id, r.user_id, r.seq, c.title, c.body, c.category, c.data::jsonb, $5, c.expires_at
         FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int4[]) AS r(id, user_id, seq, content)
         JOIN unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])
              WITH ORDINALITY AS c(title, body, category, data, expires_at, idx)
           ON c.idx = r.content",
    )
    .bind(&rows.ids)
    .bind(&rows.users)
    .bind(&rows.seqs)
    .bind(&rows.content)
    .bind(created_at)
    .bind(&rows.titles)
    .bind(&rows.bodies)
    .bind(&rows.categories)
    .bind(&rows.data)
    .bind(&rows.expires)
    .execute(conn)
    .await
    .map(|_| ())
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
