//! What time does to a user's center: snoozes that end and notifications
//! that expire. The due times are columns of the notifications themselves
//! (`snoozed_until`, `expires_at`), so the timers are as durable as the
//! notifications and need no rows of their own.
//!
//! Exactly once, across instances and crashes: a firing claims the due
//! notifications with `FOR UPDATE SKIP LOCKED` (another instance skips them
//! while this one holds them), then locks their users, skipping users that
//! are busy (a user's own change holds the user's row and may wait for a
//! notification this firing holds: waiting for it here could deadlock). The
//! change, its event and the users' counters commit together; a crash rolls
//! all of it back, and the notification is due again.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::notifications::{unread_flag, unseen_flag};

/// What happens to a due notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// `snoozed_until` came: back in the inbox, event `unsnoozed`.
    Unsnooze,
    /// `expires_at` came, or retention aged it out: removed, event `expired`.
    Expire,
}

impl Firing {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unsnooze => "unsnooze",
            Self::Expire => "expire",
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub user_id: String,
    pub id: Uuid,
}

/// Claims up to `limit` notifications whose snooze ended, and up to `limit`
/// that expired, by `now`. The claim lasts until the transaction ends.
pub async fn claim_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Due, Firing)>, sqlx::Error> {
    let rows: Vec<(String, Uuid, bool)> = sqlx::query_as(
        "WITH woken AS (
             SELECT user_id, id FROM notifications
             WHERE snoozed_until <= $1 ORDER BY snoozed_until LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), expired AS (
             SELECT user_id, id FROM notifications
             WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
             FOR UPDATE SKIP LOCKED
         )
         SELECT user_id, id, true FROM expired
         UNION ALL
         SELECT user_id, id, false FROM woken WHERE id NOT IN (SELECT id FROM expired)",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, id, expired)| {
            let firing = if expired {
                Firing::Expire
            } else {
                Firing::Unsnooze
            };
            (Due { user_id, id }, firing)
        })
        .collect())
}

/// The statement of `claim_aged` (`$1` cutoff, `$2` batch); public so the
/// retention benchmark and tests explain exactly what runs.
pub const CLAIM_AGED: &str = "SELECT user_id, id FROM notifications WHERE created_at < $1
     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED";

/// Claims up to `limit` notifications created before `cutoff`, for
/// retention to remove (as `Firing::Expire`).
pub async fn claim_aged(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(CLAIM_AGED)
        .bind(cutoff)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Locks those of `users` that nobody else holds now, in user order, and
/// returns them.
pub async fn lock_free_users(
    conn: &mut PgConnection,
    users: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM users WHERE user_id = ANY($1)
         ORDER BY user_id FOR UPDATE SKIP LOCKED",
    )
    .bind(users)
    .fetch_all(conn)
    .await
}

/// An event a firing appended.
#[derive(Debug, sqlx::FromRow)]
pub struct Fired {
    pub user_id: String,
    pub seq: i64,
    pub kind: String,
    pub data: String,
    /// The seq of the notification's own event (for retention's horizon).
    pub notification_seq: i64,
}

static FIRE: LazyLock<String> = LazyLock::new(|| {
    let (unread, unseen) = (unread_flag("n."), unseen_flag("n."));
    format!(
        r#"WITH t AS (
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[]) WITH ORDINALITY AS t(user_id, id, op, ord)
         ), o AS (
             SELECT t.ord, t.op, n.user_id, n.id, n.seq AS notification_seq,
                    CASE WHEN t.op = 'expire' THEN -{unread}
                         ELSE (n.archived_at IS NULL AND n.read_at IS NULL)::int4::int8 END AS du,
                    CASE WHEN t.op = 'expire' THEN -{unseen}
                         ELSE (n.archived_at IS NULL AND n.seen_at IS NULL)::int4::int8 END AS dn
             FROM t JOIN notifications n ON n.user_id = t.user_id AND n.id = t.id
             -- Checked again under the users' locks: a firing changes only
             -- what is still due.
             WHERE (t.op = 'expire') OR (n.snoozed_until <= $4)
         ), ev AS (
             SELECT o.*, row_number() OVER w AS nth, sum(du) OVER w AS cu, sum(dn) OVER w AS cn
             FROM o
             WINDOW w AS (PARTITION BY user_id ORDER BY ord)
         ), woken AS (
             UPDATE notifications n SET snoozed_until = NULL
             FROM ev WHERE ev.op = 'unsnooze' AND n.id = ev.id
         ), gone AS (
             DELETE FROM notifications n USING ev WHERE ev.op = 'expire' AND n.id = ev.id
         ), totals AS (
             SELECT user_id, count(*) AS k, sum(du) AS du, sum(dn) AS dn FROM ev GROUP BY user_id
         ), moved AS (
             UPDATE users u SET last_seq = u.last_seq + t.k, unread = u.unread + t.du,
                                unseen = u.unseen + t.dn
             FROM totals t WHERE u.user_id = t.user_id
             RETURNING u.user_id, u.last_seq - t.k AS seq0, u.unread - t.du AS unread0,
                       u.unseen - t.dn AS unseen0
         ), logged AS (
             INSERT INTO events (user_id, seq, kind, data)
             SELECT ev.user_id, m.seq0 + ev.nth,
                    CASE ev.op WHEN 'expire' THEN 'expired' ELSE 'unsnoozed' END,
                    ('{{"id":"' || ev.id || '","counts":{{"unread":' || (m.unread0 + ev.cu)
                       || ',"unseen":' || (m.unseen0 + ev.cn) || '}}}}')::json
             FROM ev JOIN moved m ON m.user_id = ev.user_id
             RETURNING user_id, seq, kind, data::text AS data
         )
         SELECT l.user_id, l.seq, l.kind, l.data, ev.notification_seq
         FROM logged l JOIN moved m ON m.user_id = l.user_id
         JOIN ev ON ev.user_id = l.user_id AND m.seq0 + ev.nth = l.seq
         ORDER BY l.user_id, l.seq"#
    )
});

/// Fires the claimed notifications of locked users, in the given order
/// per user: changes them, moves the users' seqs and counters, and appends
/// one event each with the counts just after it. Returns the events.
pub async fn fire(
    conn: &mut PgConnection,
    due: &[(&Due, Firing)],
    now: DateTime<Utc>,
) -> Result<Vec<Fired>, sqlx::Error> {
    let users: Vec<&str> = due.iter().map(|(d, _)| d.user_id.as_str()).collect();
    let ids: Vec<Uuid> = due.iter().map(|(d, _)| d.id).collect();
    let ops: Vec<&str> = due.iter().map(|(_, f)| f.as_str()).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(FIRE.as_str()))
        .bind(&users)
        .bind(&ids)
        .bind(&ops)
        .bind(now)
        .fetch_all(conn)
        .await
}

/// Moves users' retention horizons past notifications retention removed:
/// a client resuming from before them gets `reset`.
pub async fn move_horizons(
    conn: &mut PgConnection,
    users: &[&str],
    seqs: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users u SET purged_seq = GREATEST(u.purged_seq, h.seq)
         FROM (SELECT user_id, max(seq) AS seq FROM unnest($1::text[], $2::int8[]) AS t(user_id, seq)
               GROUP BY user_id) AS h
         WHERE u.user_id = h.user_id",
    )
    .bind(users)
    .bind(seqs)
    .execute(conn)
    .await
    .map(|_| ())
}
