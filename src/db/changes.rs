//! What a user changes in their own center, one statement per change. Each
//! runs after `users::reserve_next_seq` has taken the user's row lock, so
//! nothing else changes the user's notifications meanwhile, and each moves
//! the user's counters by exactly the difference it made (see
//! `notifications::unread_flag`).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::notifications::{columns_of, unread_flag, unseen_flag};
use crate::domain::UserId;
use crate::domain::event::{Counts, Notification};

/// A notification after a change, and the user's counts after it.
#[derive(Debug, sqlx::FromRow)]
pub struct Changed {
    #[sqlx(flatten)]
    pub notification: Notification,
    #[sqlx(flatten)]
    pub counts: Counts,
}

/// The statement of a change to one notification (`$1` user, `$2` id):
/// `set` applies where `when` holds (both may use `n.` for the row before
/// and `$3`…). No row comes back when nothing changed.
fn one(set: &str, when: &str) -> String {
    let (new_unread, old_unread) = (unread_flag("n."), unread_flag("o."));
    let (new_unseen, old_unseen) = (unseen_flag("n."), unseen_flag("o."));
    let returned = columns_of("new.");
    format!(
        "WITH o AS (
             SELECT id, read_at, seen_at, archived_at, snoozed_until FROM notifications
             WHERE user_id = $1 AND id = $2
         ), new AS (
             UPDATE notifications n SET {set}
             FROM o WHERE n.user_id = $1 AND n.id = o.id AND ({when})
             RETURNING n.*, {new_unread} - {old_unread} AS du, {new_unseen} - {old_unseen} AS dn
         ), counted AS (
             UPDATE users u SET unread = u.unread + new.du, unseen = u.unseen + new.dn
             FROM new WHERE u.user_id = $1
             RETURNING u.unread, u.unseen
         )
         SELECT {returned}, counted.unread, counted.unseen FROM new, counted"
    )
}

/// `UPDATE … SET` reads the row's values before the update, so `n.` in
/// `set` is the old row; in `RETURNING`, `n.` is the new one.
static READ: LazyLock<String> = LazyLock::new(|| {
    one(
        "read_at = $3, seen_at = coalesce(n.seen_at, $3)",
        "n.read_at IS NULL",
    )
});
static UNREAD: LazyLock<String> = LazyLock::new(|| one("read_at = NULL", "n.read_at IS NOT NULL"));
static SEEN: LazyLock<String> = LazyLock::new(|| one("seen_at = $3", "n.seen_at IS NULL"));
static ARCHIVE: LazyLock<String> =
    LazyLock::new(|| one("archived_at = $3", "n.archived_at IS NULL"));
static UNARCHIVE: LazyLock<String> =
    LazyLock::new(|| one("archived_at = NULL", "n.archived_at IS NOT NULL"));
static SNOOZE: LazyLock<String> =
    LazyLock::new(|| one("snoozed_until = $3", "n.snoozed_until IS DISTINCT FROM $3"));
static UNSNOOZE: LazyLock<String> =
    LazyLock::new(|| one("snoozed_until = NULL", "n.snoozed_until IS NOT NULL"));
static ACT: LazyLock<String> = LazyLock::new(|| {
    one(
        "action_taken = jsonb_build_object('id', $4::text, 'at', $3::timestamptz),
         read_at = coalesce(n.read_at, $3), seen_at = coalesce(n.seen_at, $3)",
        "n.action_taken IS NULL AND n.actions @> jsonb_build_array(jsonb_build_object('id', $4::text))",
    )
});

/// The state changes of one notification.
#[derive(Debug, Clone)]
pub enum Change<'a> {
    /// Read (and seen, if it was not) at this time.
    Read(DateTime<Utc>),
    Unread,
    Seen(DateTime<Utc>),
    Archive(DateTime<Utc>),
    Unarchive,
    Snooze(DateTime<Utc>),
    Unsnooze,
    /// An action taken at this time: the first one wins, and it reads.
    Act(&'a str, DateTime<Utc>),
}

/// Applies a change; `None` when it changed nothing (already so, or no such
/// notification, or, for an action, one was taken or the id is not its).
pub async fn apply(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
    change: &Change<'_>,
) -> Result<Option<Changed>, sqlx::Error> {
    let sql: &str = match change {
        Change::Read(_) => &READ,
        Change::Unread => &UNREAD,
        Change::Seen(_) => &SEEN,
        Change::Archive(_) => &ARCHIVE,
        Change::Unarchive => &UNARCHIVE,
        Change::Snooze(_) => &SNOOZE,
        Change::Unsnooze => &UNSNOOZE,
        Change::Act(..) => &ACT,
    };
    let query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(user.as_str())
        .bind(id);
    let query = match *change {
        Change::Read(at) | Change::Seen(at) | Change::Archive(at) | Change::Snooze(at) => {
            query.bind(at)
        }
        Change::Act(action, at) => query.bind(at).bind(action),
        Change::Unread | Change::Unarchive | Change::Unsnooze => query,
    };
    query.fetch_optional(conn).await
}

/// Deletes one notification; the user's counts after it, or `None` if
/// there was no such notification.
pub async fn delete(
    conn: &mut PgConnection,
    user: &UserId,
    id: Uuid,
) -> Result<Option<Counts>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH gone AS (
                 DELETE FROM notifications WHERE user_id = $1 AND id = $2
                 RETURNING {} AS du, {} AS dn
             )
             UPDATE users u SET unread = u.unread - gone.du, unseen = u.unseen - gone.dn
             FROM gone WHERE u.user_id = $1
             RETURNING u.unread, u.unseen",
            unread_flag(""),
            unseen_flag("")
        )
    });
    sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(user.as_str())
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The bulk operations: they apply to the user's notifications with
/// seq <= `up_to_seq` (and of `category`, when given), archived and snoozed
/// ones included.
#[derive(Debug, Clone, Copy)]
pub enum Bulk {
    ReadAll(DateTime<Utc>),
    SeenAll(DateTime<Utc>),
    ArchiveAll(DateTime<Utc>),
    DeleteAll,
}

fn bulk_update(set: &str, when: &str) -> String {
    let (new_unread, old_unread) = (unread_flag("n."), unread_flag("o."));
    let (new_unseen, old_unseen) = (unseen_flag("n."), unseen_flag("o."));
    format!(
        "WITH o AS (
             SELECT id, read_at, seen_at, archived_at, snoozed_until FROM notifications
             WHERE user_id = $1 AND seq <= $2 AND ($3::text IS NULL OR category = $3)
         ), new AS (
             UPDATE notifications n SET {set}
             FROM o WHERE n.user_id = $1 AND n.id = o.id AND ({when})
             RETURNING {new_unread} - {old_unread} AS du, {new_unseen} - {old_unseen} AS dn
         ), total AS (
             SELECT count(*) AS n, coalesce(sum(du), 0) AS du, coalesce(sum(dn), 0) AS dn FROM new
         )
         UPDATE users u SET unread = u.unread + total.du, unseen = u.unseen + total.dn
         FROM total WHERE u.user_id = $1
         RETURNING total.n, u.unread, u.unseen"
    )
}

static READ_ALL: LazyLock<String> = LazyLock::new(|| {
    bulk_update(
        "read_at = $4, seen_at = coalesce(n.seen_at, $4)",
        "n.read_at IS NULL",
    )
});
static SEEN_ALL: LazyLock<String> =
    LazyLock::new(|| bulk_update("seen_at = $4", "n.seen_at IS NULL"));
static ARCHIVE_ALL: LazyLock<String> =
    LazyLock::new(|| bulk_update("archived_at = $4", "n.archived_at IS NULL"));
static DELETE_ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH gone AS (
             DELETE FROM notifications
             WHERE user_id = $1 AND seq <= $2 AND ($3::text IS NULL OR category = $3)
             RETURNING {} AS du, {} AS dn
         ), total AS (
             SELECT count(*) AS n, coalesce(sum(du), 0) AS du, coalesce(sum(dn), 0) AS dn FROM gone
         )
         UPDATE users u SET unread = u.unread - total.du, unseen = u.unseen - total.dn
         FROM total WHERE u.user_id = $1
         RETURNING total.n, u.unread, u.unseen",
        unread_flag(""),
        unseen_flag("")
    )
});

/// Applies a bulk operation; how many notifications it changed and the
/// user's counts after it.
pub async fn apply_bulk(
    conn: &mut PgConnection,
    user: &UserId,
    up_to_seq: i64,
    category: Option<&str>,
    bulk: Bulk,
) -> Result<(u64, Counts), sqlx::Error> {
    let sql: &str = match bulk {
        Bulk::ReadAll(_) => &READ_ALL,
        Bulk::SeenAll(_) => &SEEN_ALL,
        Bulk::ArchiveAll(_) => &ARCHIVE_ALL,
        Bulk::DeleteAll => &DELETE_ALL,
    };
    let query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(user.as_str())
        .bind(up_to_seq)
        .bind(category);
    let query = match bulk {
        Bulk::ReadAll(at) | Bulk::SeenAll(at) | Bulk::ArchiveAll(at) => query.bind(at),
        Bulk::DeleteAll => query,
    };
    let (n, unread, unseen): (i64, i64, i64) = query.fetch_one(conn).await?;
    Ok((n as u64, Counts { unread, unseen }))
}
