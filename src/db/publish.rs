//! Publishing: new notifications, and updates in place by `key`. Both
//! apply the recipients' preferences in the statement that writes, after
//! the recipients' rows are locked, so a notification that follows a
//! user's `preferences` event obeys it.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::notifications::{COLUMNS, columns_of, unread_flag, unseen_flag};
use crate::domain::event::{Counts, Notification};

/// Rows of one publish batch. Content is passed once per part and joined by
/// index, so a publish to 10,000 users does not send its body 10,000 times.
#[derive(Default)]
pub struct NewRows<'a> {
    pub ids: Vec<Uuid>,
    /// Per row, in the order their seqs are given out.
    pub users: Vec<&'a str>,
    /// 1-based index into the content arrays.
    pub content: Vec<i32>,
    /// Per row: the topic it was sent through. Empty when no row has one.
    pub topics: Vec<Option<&'a str>>,
    pub titles: Vec<&'a str>,
    pub bodies: Vec<Option<&'a str>>,
    pub categories: Vec<Option<&'a str>>,
    pub data: Vec<Option<&'a str>>,
    pub expires: Vec<Option<DateTime<Utc>>>,
    /// JSON arrays; `None` for none.
    pub actions: Vec<Option<String>>,
    pub keys: Vec<Option<&'a str>>,
    pub renotify: Vec<bool>,
    pub critical: Vec<bool>,
}

/// The distinct recipients of a batch and which wake-up payload each goes
/// in (`live::wakeup::split`).
pub struct Recipients<'a> {
    pub users: Vec<&'a str>,
    pub payloads: Vec<i32>,
}

/// A recipient after the batch: its new `last_seq` and counts.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub user: String,
    pub last_seq: i64,
    pub counts: Counts,
}

/// What `publish_batch` did: each recipient's new position, and the rows
/// (0-based) that were not written because their recipient turned the
/// category off.
#[derive(Debug, Default)]
pub struct BatchWritten {
    pub reserved: Vec<Reserved>,
    pub skipped: Vec<usize>,
}

/// Whether a row (`r`, with `critical` and `category`) goes to its user
/// (`l`, the user's row): not if the user turned its category off, unless
/// it is critical.
const WANTED: &str =
    "(r.critical OR NOT coalesce(l.preferences -> r.category = 'false'::jsonb, false))";

/// The statement of `publish_batch`. Preferences only concern rows with a
/// category that are not critical: a batch without any (most of them)
/// takes a statement that neither locks ahead nor filters.
fn publish_sql(preferences: bool) -> String {
    let (locked, kept, skipped, guard) = if preferences {
        (
            "locked AS (
             -- A join, not `user_id = ANY($1)`: when a row was changed by a
             -- commit this one waited for, PostgreSQL rechecks the row; with
             -- an array condition each recheck sorted the whole array again.
             SELECT u.user_id, u.preferences
             FROM unnest($1::text[]) AS q(user_id)
             JOIN users u ON u.user_id = q.user_id
             ORDER BY u.user_id FOR UPDATE OF u
         ), ",
            format!("SELECT r.* FROM r LEFT JOIN locked l ON l.user_id = r.user_id WHERE {WANTED}"),
            "SELECT array_agg(r.ord - 1) AS ords FROM r WHERE r.ord NOT IN (SELECT ord FROM kept)",
            // A recipient `locked` did not find (no row yet) whose row has
            // preferences once the upsert took it: another transaction made
            // it meanwhile. What was kept may be wrong, so start again.
            "SELECT herald_retry('a recipient appeared during the publish')
             FROM reserved w LEFT JOIN locked l ON l.user_id = w.user_id
             WHERE l.user_id IS NULL AND w.preferences <> '{}'::jsonb",
        )
    } else {
        (
            "",
            "SELECT r.* FROM r".to_owned(),
            "SELECT NULL::int8[] AS ords",
            "SELECT true WHERE false",
        )
    };
    format!(
        r#"WITH {locked}c AS (
             SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[],
                                  $14::text[], $15::bool[])
                  WITH ORDINALITY AS c(title, body, category, data, expires_at, actions, critical, idx)
         ), r AS (
             SELECT r.id, r.user_id, r.content, r.topic, r.ord, c.category, c.critical
             FROM unnest($3::uuid[], $4::text[], $5::int4[], $16::text[])
                  WITH ORDINALITY AS r(id, user_id, content, topic, ord)
             JOIN c ON c.idx = r.content
         ), kept AS (
             {kept}
         ), per_user AS (
             SELECT user_id, count(*) AS n FROM kept GROUP BY user_id
         ), reserved AS (
             INSERT INTO users (user_id, last_seq, unread, unseen)
             SELECT user_id, n, n, n FROM per_user ORDER BY user_id
             ON CONFLICT (user_id) DO UPDATE SET last_seq = users.last_seq + EXCLUDED.last_seq,
                                                 unread = users.unread + EXCLUDED.unread,
                                                 unseen = users.unseen + EXCLUDED.unseen
             RETURNING user_id, last_seq, unread, unseen, preferences
         ), guard AS (
             {guard}
         ), numbered AS (
             SELECT k.id, k.user_id, k.content, k.topic,
                    row_number() OVER (PARTITION BY k.user_id ORDER BY k.ord) AS nth,
                    count(*) OVER (PARTITION BY k.user_id) AS n
             FROM kept k
             WHERE NOT EXISTS (SELECT 1 FROM guard)
         ), inserted AS (
             INSERT INTO notifications (id, user_id, seq, title, body, category, data, created_at,
                                        expires_at, actions, topic, counts_unread, counts_unseen)
             SELECT r.id, r.user_id, w.last_seq - r.n + r.nth,
                    c.title, c.body, c.category, c.data::jsonb, $6, c.expires_at,
                    coalesce(c.actions::jsonb, '[]'), r.topic,
                    w.unread - r.n + r.nth, w.unseen - r.n + r.nth
             FROM numbered AS r
             JOIN reserved AS w ON w.user_id = r.user_id
             JOIN c ON c.idx = r.content
         ), payloads AS (
             SELECT array_agg(w.user_id) AS users, array_agg(w.last_seq) AS last_seqs,
                    array_agg(w.unread) AS unread, array_agg(w.unseen) AS unseen,
                    '{{"i":' || to_json($12::text)::text || ',"w":['
                      || string_agg('[' || to_json(w.user_id)::text || ',' || w.last_seq || ']', ',')
                      || ']}}' AS payload
             FROM reserved AS w
             JOIN unnest($1::text[], $2::int4[]) AS p(u, part) ON p.u = w.user_id
             GROUP BY p.part
         ), skipped AS (
             {skipped}
         )
         SELECT users, last_seqs, unread, unseen, NULL::int8[] AS skipped
         FROM payloads, pg_notify($13, payload)
         UNION ALL
         SELECT NULL, NULL, NULL, NULL, ords FROM skipped WHERE ords IS NOT NULL"#
    )
}

/// A batch without keys as one statement, so it costs one round trip (and,
/// outside an explicit transaction, is its own transaction: one commit, one
/// fsync):
///
/// 1. locks the recipients' rows in user order (so concurrent batches cannot
///    deadlock) and reads their preferences as they are once locked; drops
///    the rows whose recipient turned their category off;
/// 2. reserves as many seqs per user as rows remain by bumping the per-user
///    counter (`db::users`); the row locks are held until commit, so each
///    user's changes commit in seq order. The same update adds the new
///    notifications to the user's unread and unseen counts;
/// 3. inserts the rows, a user's rows getting that user's reserved seqs in
///    row order: `last_seq - count + 1 ..= last_seq`, each with the counts
///    just after it;
/// 4. queues one NOTIFY per wake-up payload (`live::wakeup`), which
///    PostgreSQL delivers only if this commits.
pub async fn publish_batch(
    conn: &mut PgConnection,
    rows: &NewRows<'_>,
    recipients: &Recipients<'_>,
    created_at: DateTime<Utc>,
    instance: &str,
) -> Result<BatchWritten, sqlx::Error> {
    static WITH_PREFERENCES: LazyLock<String> = LazyLock::new(|| publish_sql(true));
    static WITHOUT: LazyLock<String> = LazyLock::new(|| publish_sql(false));
    let wanted = rows
        .categories
        .iter()
        .zip(&rows.critical)
        .any(|(category, critical)| category.is_some() && !critical);
    let sql = if wanted { &WITH_PREFERENCES } else { &WITHOUT };
    type Part = (
        Option<Vec<String>>,
        Option<Vec<i64>>,
        Option<Vec<i64>>,
        Option<Vec<i64>>,
        Option<Vec<i64>>,
    );
    let parts: Vec<Part> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(&recipients.users)
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
        .bind(&rows.critical)
        .bind(&rows.topics)
        .fetch_all(conn)
        .await?;
    let mut written = BatchWritten::default();
    for (users, seqs, unread, unseen, skipped) in parts {
        if let Some(skipped) = skipped {
            written
                .skipped
                .extend(skipped.into_iter().map(|i| i as usize));
            continue;
        }
        let fields = users.zip(seqs).zip(unread.zip(unseen));
        let Some(((users, seqs), (unread, unseen))) = fields else {
            continue;
        };
        for (i, user) in users.into_iter().enumerate() {
            written.reserved.push(Reserved {
                user,
                last_seq: seqs[i],
                counts: Counts {
                    unread: unread[i],
                    unseen: unseen[i],
                },
            });
        }
    }
    written.skipped.sort_unstable();
    Ok(written)
}

/// Step one of a batch with keys: locks the recipients' rows in user order
/// (creating those that do not exist yet), until commit. With the locks
/// held, nothing else changes these users' notifications or preferences, so
/// step two reads both as they are.
pub async fn lock_users(conn: &mut PgConnection, users: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (user_id) SELECT u FROM unnest($1::text[]) AS u ORDER BY u
         ON CONFLICT (user_id) DO UPDATE SET last_seq = users.last_seq",
    )
    .bind(users)
    .execute(conn)
    .await
    .map(|_| ())
}

/// A row of a keyed batch as written: the notification after the batch,
/// the seq of its event (`notification`, or `updated` when `updated`) and
/// the user's counts just after that event. Rows skipped for preferences
/// do not come back.
#[derive(Debug, sqlx::FromRow)]
pub struct Written {
    /// The row's index in the batch, from 1.
    pub ord: i64,
    pub updated: bool,
    pub event_seq: i64,
    pub unread: i64,
    pub unseen: i64,
    #[sqlx(flatten)]
    pub notification: Notification,
}

/// Step two of a batch with keys, with the users locked by `lock_users`:
/// drops the rows whose recipient turned their category off; each other row
/// whose user already has a notification with its key (not expired)
/// updates that one in place, the rest are inserted. Each row's event takes
/// the user's next seq in row order; its counts are the user's counts
/// before the batch plus the running sum of the changes of the user's rows
/// up to it; the users' counters move by the sums. One (user, key) appears
/// at most once in a batch (`inbox::group_commit` defers repeats to the
/// next one).
pub async fn write_keyed(
    conn: &mut PgConnection,
    rows: &NewRows<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Written>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let (old_unread, old_unseen) = (unread_flag("o."), unseen_flag("o."));
        let n_columns = columns_of("n.");
        format!(
            r#"WITH c AS (
             SELECT * FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                                  $10::text[], $11::text[], $12::bool[], $14::bool[])
                  WITH ORDINALITY AS c(title, body, category, data, expires_at, actions, key, renotify,
                                       critical, idx)
         ), r AS (
             SELECT r.id, r.user_id, r.topic, r.ord, c.*
             FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::text[])
                  WITH ORDINALITY AS r(id, user_id, content, topic, ord)
             JOIN c ON c.idx = r.content
         ), kept AS (
             SELECT r.*, l.last_seq + row_number() OVER (PARTITION BY r.user_id ORDER BY r.ord) AS seq
             FROM r JOIN users l ON l.user_id = r.user_id
             WHERE {WANTED}
         ), old AS (
             SELECT DISTINCT ON (n.user_id, n.key) n.user_id, n.key, n.id, n.read_at, n.seen_at,
                    n.archived_at, n.snoozed_until
             FROM kept k
             JOIN notifications n ON n.user_id = k.user_id AND n.key = k.key
             WHERE n.expires_at IS NULL OR n.expires_at > $13
             ORDER BY n.user_id, n.key, n.seq DESC
         ), plan AS (
             SELECT k.*, o.id AS old_id,
                    CASE WHEN o.id IS NULL THEN 1
                         WHEN k.renotify THEN (o.snoozed_until IS NULL)::int4::int8 - {old_unread}
                         ELSE 0 END AS du,
                    CASE WHEN o.id IS NULL THEN 1
                         WHEN k.renotify THEN (o.snoozed_until IS NULL)::int4::int8 - {old_unseen}
                         ELSE 0 END AS dn
             FROM kept k
             LEFT JOIN old o ON o.user_id = k.user_id AND o.key = k.key
         ), counted AS (
             SELECT p.*, (l.unread + sum(p.du) OVER w)::int8 AS unread,
                    (l.unseen + sum(p.dn) OVER w)::int8 AS unseen
             FROM plan p JOIN users l ON l.user_id = p.user_id
             WINDOW w AS (PARTITION BY p.user_id ORDER BY p.seq)
         ), inserted AS (
             INSERT INTO notifications (id, user_id, seq, title, body, category, data, created_at,
                                        expires_at, actions, key, topic, counts_unread, counts_unseen)
             SELECT id, user_id, seq, title, body, category, data::jsonb, $13, expires_at,
                    coalesce(actions::jsonb, '[]'), key, topic, unread, unseen
             FROM counted WHERE old_id IS NULL
             RETURNING {COLUMNS}
         ), updated AS (
             UPDATE notifications n
             SET title = k.title, body = k.body, category = k.category, data = k.data::jsonb,
                 expires_at = k.expires_at, actions = coalesce(k.actions::jsonb, '[]'),
                 topic = k.topic, updated_at = $13,
                 read_at = CASE WHEN k.renotify THEN NULL ELSE n.read_at END,
                 seen_at = CASE WHEN k.renotify THEN NULL ELSE n.seen_at END,
                 archived_at = CASE WHEN k.renotify THEN NULL ELSE n.archived_at END,
                 action_taken = CASE WHEN k.renotify THEN NULL ELSE n.action_taken END
             FROM counted k
             WHERE k.old_id IS NOT NULL AND n.id = k.old_id
             RETURNING {n_columns}
         ), totals AS (
             SELECT user_id, count(*) AS k, sum(du) AS du, sum(dn) AS dn FROM plan GROUP BY user_id
         ), moved AS (
             UPDATE users u SET last_seq = u.last_seq + t.k, unread = u.unread + t.du,
                                unseen = u.unseen + t.dn
             FROM totals t WHERE u.user_id = t.user_id
         )
         SELECT k.ord, k.old_id IS NOT NULL AS updated, k.seq AS event_seq, k.unread, k.unseen, w.*
         FROM counted k
         JOIN (SELECT * FROM inserted UNION ALL SELECT * FROM updated) AS w
           ON w.id = coalesce(k.old_id, k.id)
         ORDER BY k.ord"#
        )
    });
    sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(&rows.ids)
        .bind(&rows.users)
        .bind(&rows.content)
        .bind(&rows.topics)
        .bind(&rows.titles)
        .bind(&rows.bodies)
        .bind(&rows.categories)
        .bind(&rows.data)
        .bind(&rows.expires)
        .bind(&rows.actions)
        .bind(&rows.keys)
        .bind(&rows.renotify)
        .bind(now)
        .bind(&rows.critical)
        .fetch_all(conn)
        .await
}
