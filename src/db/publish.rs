//! Publishing: new notifications, and updates in place by `key`.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::notifications::{COLUMNS, unread_flag, unseen_flag};
use crate::domain::event::{Counts, Notification};

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
    /// JSON arrays; `None` for none.
    pub actions: Vec<Option<String>>,
    pub keys: Vec<Option<&'a str>>,
    pub renotify: Vec<bool>,
}

/// The distinct recipients of a batch: how many rows each gets, and which
/// wake-up payload it goes in (`live::wakeup::split`).
pub struct Recipients<'a> {
    pub users: Vec<&'a str>,
    pub counts: Vec<i64>,
    pub payloads: Vec<i32>,
}

/// A recipient after the batch: its new `last_seq` and counts.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub user: String,
    pub last_seq: i64,
    pub counts: Counts,
}

/// A batch without keys as one statement, so it costs one round trip (and,
/// outside an explicit transaction, is its own transaction: one commit, one
/// fsync):
///
/// 1. reserves `counts[i]` seqs for `users[i]` by bumping the per-user
///    counter (`db::users`), taking the rows in user order so concurrent
///    batches cannot deadlock; the row locks are held until commit, so each
///    user's changes commit in seq order. The same update adds the new
///    notifications to the user's unread and unseen counts;
/// 2. inserts the rows, a user's rows getting that user's reserved seqs in
///    row order: `last_seq - count + 1 ..= last_seq`, each with the counts
///    just after it;
/// 3. queues one NOTIFY per wake-up payload (`live::wakeup`), which
///    PostgreSQL delivers only if this commits.
///
/// Returns every user's new `last_seq` and counts.
pub async fn publish_batch(
    conn: &mut PgConnection,
    rows: &NewRows<'_>,
    recipients: &Recipients<'_>,
    created_at: DateTime<Utc>,
    instance: &str,
) -> Result<Vec<Reserved>, sqlx::Error> {
    type Part = (Vec<String>, Vec<i64>, Vec<i64>, Vec<i64>);
    let parts: Vec<Part> = sqlx::query_as(
        r#"WITH reserved AS (
             INSERT INTO users (user_id, last_seq, unread, unseen)
             SELECT u, n, n, n FROM unnest($1::text[], $2::int8[]) AS t(u, n) ORDER BY u
             ON CONFLICT (user_id) DO UPDATE SET last_seq = users.last_seq + EXCLUDED.last_seq,
                                                 unread = users.unread + EXCLUDED.unread,
                                                 unseen = users.unseen + EXCLUDED.unseen
             RETURNING user_id, last_seq, unread, unseen
         ), numbered AS (
             SELECT r.id, r.user_id, r.content,
                    row_number() OVER (PARTITION BY r.user_id ORDER BY r.ord) AS nth,
                    count(*) OVER (PARTITION BY r.user_id) AS n
             FROM unnest($4::uuid[], $5::text[], $6::int4[]) WITH ORDINALITY AS r(id, user_id, content, ord)
         ), inserted AS (
             INSERT INTO notifications (id, user_id, seq, title, body, category, data, created_at,
                                        expires_at, actions, counts_unread, counts_unseen)
             SELECT r.id, r.user_id, w.last_seq - r.n + r.nth,
                    c.title, c.body, c.category, c.data::jsonb, $7, c.expires_at,
                    coalesce(c.actions::jsonb, '[]'), w.unread - r.n + r.nth, w.unseen - r.n + r.nth
             FROM numbered AS r
             JOIN reserved AS w ON w.user_id = r.user_id
             JOIN unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $15::text[])
                  WITH ORDINALITY AS c(title, body, category, data, expires_at, actions, idx)
               ON c.idx = r.content
         ), payloads AS (
             SELECT array_agg(w.user_id) AS users, array_agg(w.last_seq) AS last_seqs,
                    array_agg(w.unread) AS unread, array_agg(w.unseen) AS unseen,
                    '{"i":' || to_json($13::text)::text || ',"w":['
                      || string_agg('[' || to_json(w.user_id)::text || ',' || w.last_seq || ']', ',')
                      || ']}' AS payload
             FROM reserved AS w
             JOIN unnest($1::text[], $3::int4[]) AS p(u, part) ON p.u = w.user_id
             GROUP BY p.part
         )
         SELECT users, last_seqs, unread, unseen FROM payloads, pg_notify($14, payload)"#,
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
    .bind(&rows.actions)
    .fetch_all(conn)
    .await?;
    Ok(parts
        .into_iter()
        .flat_map(|(users, seqs, unread, unseen)| {
            users
                .into_iter()
                .zip(seqs)
                .zip(unread.into_iter().zip(unseen))
                .map(|((user, last_seq), (unread, unseen))| Reserved {
                    user,
                    last_seq,
                    counts: Counts { unread, unseen },
                })
        })
        .collect())
}

/// Step one of a batch with keys: reserves `counts[i]` seqs for `users[i]`,
/// in user order, and so takes their row locks until commit. With the locks
/// held, nothing else changes these users' notifications, so step two finds
/// each key's notification reliably. Returns each user's new `last_seq` and
/// counts before the batch.
pub async fn reserve(
    conn: &mut PgConnection,
    users: &[&str],
    counts: &[i64],
) -> Result<Vec<Reserved>, sqlx::Error> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "INSERT INTO users (user_id, last_seq)
         SELECT u, n FROM unnest($1::text[], $2::int8[]) AS t(u, n) ORDER BY u
         ON CONFLICT (user_id) DO UPDATE SET last_seq = users.last_seq + EXCLUDED.last_seq
         RETURNING user_id, last_seq, unread, unseen",
    )
    .bind(users)
    .bind(counts)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, last_seq, unread, unseen)| Reserved {
            user,
            last_seq,
            counts: Counts { unread, unseen },
        })
        .collect())
}

/// A row of a keyed batch as written: the notification after the batch,
/// the seq of its event (`notification`, or `updated` when `updated`) and
/// the user's counts just after that event.
#[derive(Debug, sqlx::FromRow)]
pub struct Written {
    pub ord: i64,
    pub updated: bool,
    pub event_seq: i64,
    pub unread: i64,
    pub unseen: i64,
    #[sqlx(flatten)]
    pub notification: Notification,
}

/// Step two of a batch with keys, with the users locked by `reserve`: each
/// row whose user already has a notification with its key (not expired)
/// updates that one in place; the others are inserted. `seqs` are the
/// rows' event seqs, `before` each user's counts before the batch. The
/// counts of each event are the user's counts before the batch plus the
/// running sum of the changes of the user's earlier rows; the users'
/// counters move by the sums. One (user, key) appears at most once in a
/// batch (`inbox::group_commit` defers repeats to the next one).
pub async fn write_keyed(
    conn: &mut PgConnection,
    rows: &NewRows<'_>,
    seqs: &[i64],
    before: &[Reserved],
    now: DateTime<Utc>,
) -> Result<Vec<Written>, sqlx::Error> {
    let users: Vec<&str> = before.iter().map(|r| r.user.as_str()).collect();
    let unread: Vec<i64> = before.iter().map(|r| r.counts.unread).collect();
    let unseen: Vec<i64> = before.iter().map(|r| r.counts.unseen).collect();
    let (old_unread, old_unseen) = (unread_flag("o."), unseen_flag("o."));
    let n_columns = COLUMNS
        .split(", ")
        .map(|c| format!("n.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"WITH r AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int4[])
                  WITH ORDINALITY AS r(id, user_id, seq, content, ord)
         ), c AS (
             SELECT * FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                                  $10::text[], $11::text[], $12::bool[])
                  WITH ORDINALITY AS c(title, body, category, data, expires_at, actions, key, renotify, idx)
         ), old AS (
             SELECT DISTINCT ON (n.user_id, n.key) n.user_id, n.key, n.id, n.read_at, n.seen_at,
                    n.archived_at, n.snoozed_until
             FROM r JOIN c ON c.idx = r.content
             JOIN notifications n ON n.user_id = r.user_id AND n.key = c.key
             WHERE n.expires_at IS NULL OR n.expires_at > $13
             ORDER BY n.user_id, n.key, n.seq DESC
         ), plan AS (
             SELECT r.id, r.user_id, r.seq, r.ord, c.title, c.body, c.category, c.data, c.expires_at,
                    c.actions, c.key, c.renotify, o.id AS old_id,
                    CASE WHEN o.id IS NULL THEN 1
                         WHEN c.renotify THEN (o.snoozed_until IS NULL)::int4::int8 - {old_unread}
                         ELSE 0 END AS du,
                    CASE WHEN o.id IS NULL THEN 1
                         WHEN c.renotify THEN (o.snoozed_until IS NULL)::int4::int8 - {old_unseen}
                         ELSE 0 END AS dn
             FROM r JOIN c ON c.idx = r.content
             LEFT JOIN old o ON o.user_id = r.user_id AND o.key = c.key
         ), counted AS (
             SELECT p.*, (b.unread + sum(p.du) OVER w)::int8 AS unread,
                    (b.unseen + sum(p.dn) OVER w)::int8 AS unseen
             FROM plan p
             JOIN unnest($14::text[], $15::int8[], $16::int8[]) AS b(user_id, unread, unseen)
               ON b.user_id = p.user_id
             WINDOW w AS (PARTITION BY p.user_id ORDER BY p.seq)
         ), inserted AS (
             INSERT INTO notifications (id, user_id, seq, title, body, category, data, created_at,
                                        expires_at, actions, key, counts_unread, counts_unseen)
             SELECT id, user_id, seq, title, body, category, data::jsonb, $13, expires_at,
                    coalesce(actions::jsonb, '[]'), key, unread, unseen
             FROM counted WHERE old_id IS NULL
             RETURNING {COLUMNS}
         ), updated AS (
             UPDATE notifications n
             SET title = k.title, body = k.body, category = k.category, data = k.data::jsonb,
                 expires_at = k.expires_at, actions = coalesce(k.actions::jsonb, '[]'),
                 updated_at = $13,
                 read_at = CASE WHEN k.renotify THEN NULL ELSE n.read_at END,
                 seen_at = CASE WHEN k.renotify THEN NULL ELSE n.seen_at END,
                 archived_at = CASE WHEN k.renotify THEN NULL ELSE n.archived_at END,
                 action_taken = CASE WHEN k.renotify THEN NULL ELSE n.action_taken END
             FROM counted k
             WHERE k.old_id IS NOT NULL AND n.id = k.old_id
             RETURNING {n_columns}
         ), totals AS (
             SELECT user_id, sum(du) AS du, sum(dn) AS dn FROM plan GROUP BY user_id
         ), moved AS (
             UPDATE users u SET unread = u.unread + t.du, unseen = u.unseen + t.dn
             FROM totals t WHERE u.user_id = t.user_id
         )
         SELECT k.ord, k.old_id IS NOT NULL AS updated, k.seq AS event_seq, k.unread, k.unseen, w.*
         FROM counted k
         JOIN (SELECT * FROM inserted UNION ALL SELECT * FROM updated) AS w
           ON w.id = coalesce(k.old_id, k.id)
         ORDER BY k.ord"#
    )))
    .bind(&rows.ids)
    .bind(&rows.users)
    .bind(seqs)
    .bind(&rows.content)
    .bind(&rows.titles)
    .bind(&rows.bodies)
    .bind(&rows.categories)
    .bind(&rows.data)
    .bind(&rows.expires)
    .bind(&rows.actions)
    .bind(&rows.keys)
    .bind(&rows.renotify)
    .bind(now)
    .bind(&users)
    .bind(&unread)
    .bind(&unseen)
    .fetch_all(conn)
    .await
}
