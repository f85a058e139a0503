//! Reading a user's notifications: pages, single ones and counts.
//! Writing them is in `publish` (new and updated by key), `changes` (what
//! a user does) and `timers` (what time does).

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::UserId;
use crate::domain::event::{Counts, Notification};

/// The columns of the notification object, in its order.
pub const COLUMNS: &str = "id, seq, title, body, category, data, created_at, read_at, expires_at, \
     seen_at, archived_at, snoozed_until, actions, action_taken, key, updated_at, topic";

/// `COLUMNS`, each under prefix `p` (`n.id, n.seq, …`).
pub fn columns_of(p: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{p}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a row (its columns under prefix `p`) counts as unread, or
/// unseen, in the user's counts (0 or 1). Archived and snoozed ones are out
/// of the inbox, so they count in neither. Every statement that changes
/// notifications adds the difference of these before and after to the
/// user's counters (`users.unread`, `users.unseen`), which is how the counts
/// stay exact without ever being recounted.
pub fn unread_flag(p: &str) -> String {
    format!(
        "({p}read_at IS NULL AND {p}archived_at IS NULL AND {p}snoozed_until IS NULL)::int4::int8"
    )
}

pub fn unseen_flag(p: &str) -> String {
    format!(
        "({p}seen_at IS NULL AND {p}archived_at IS NULL AND {p}snoozed_until IS NULL)::int4::int8"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unread,
    Read,
    Unseen,
    All,
    Archived,
    Snoozed,
}

impl Status {
    /// Which rows the status lists. The inbox ones leave out archived and
    /// snoozed notifications; an archived one lists as archived even while
    /// snoozed.
    fn condition(self) -> &'static str {
        match self {
            Self::Unread => "archived_at IS NULL AND snoozed_until IS NULL AND read_at IS NULL",
            Self::Read => "archived_at IS NULL AND snoozed_until IS NULL AND read_at IS NOT NULL",
            Self::Unseen => "archived_at IS NULL AND snoozed_until IS NULL AND seen_at IS NULL",
            Self::All => "archived_at IS NULL AND snoozed_until IS NULL",
            Self::Archived => "archived_at IS NOT NULL",
            Self::Snoozed => "archived_at IS NULL AND snoozed_until IS NOT NULL",
        }
    }
}

pub struct ListFilter<'a> {
    pub status: Status,
    pub category: Option<&'a str>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(
    conn: &mut PgConnection,
    user: &UserId,
    f: &ListFilter<'_>,
) -> Result<Vec<Notification>, sqlx::Error> {
    // The condition comes from the enum above, never from input.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications
         WHERE user_id = $1
           AND ($2::int8 IS NULL OR seq < $2)
           AND ($3::text IS NULL OR category = $3)
           AND {}
         ORDER BY seq DESC
         LIMIT $4",
        f.status.condition()
    )))
    .bind(user.as_str())
    .bind(f.before)
    .bind(f.category)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// The user's current seq and live counts (zeros for an unknown user).
pub async fn summary(conn: &mut PgConnection, user: &UserId) -> Result<(i64, Counts), sqlx::Error> {
    let row: Option<(i64, i64, i64)> =
        sqlx::query_as("SELECT last_seq, unread, unseen FROM users WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_optional(conn)
            .await?;
    let (last_seq, unread, unseen) = row.unwrap_or_default();
    Ok((last_seq, Counts { unread, unseen }))
}

/// Per category (`""` for none), the counts of `GET /v1/me/counts`. This
/// one is a recount, but only when asked for, never per event.
#[derive(Debug, sqlx::FromRow)]
pub struct CategoryCounts {
    pub category: String,
    pub unread: i64,
    pub unseen: i64,
    pub total: i64,
    pub archived: i64,
    pub snoozed: i64,
}

pub async fn category_counts(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Vec<CategoryCounts>, sqlx::Error> {
    sqlx::query_as(
        "SELECT coalesce(category, '') AS category,
                count(*) FILTER (WHERE archived_at IS NULL AND snoozed_until IS NULL AND read_at IS NULL) AS unread,
                count(*) FILTER (WHERE archived_at IS NULL AND snoozed_until IS NULL AND seen_at IS NULL) AS unseen,
                count(*) FILTER (WHERE archived_at IS NULL AND snoozed_until IS NULL) AS total,
                count(*) FILTER (WHERE archived_at IS NOT NULL) AS archived,
                count(*) FILTER (WHERE archived_at IS NULL AND snoozed_until IS NOT NULL) AS snoozed
         FROM notifications WHERE user_id = $1
         GROUP BY 1",
    )
    .bind(user.as_str())
    .fetch_all(conn)
    .await
}

pub async fn get(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
) -> Result<Option<Notification>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND id = $2"
    )))
    .bind(user.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await
}
