//! Reading and appending the per-user event log.
//!
//! The log of a user is the union of their notifications (each row is the
//! `notification` event of its seq) and the `events` table (state changes).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::UserId;
use crate::domain::event::{ActionTaken, Counts, Event, EventKind, Notification};

/// The channel that carries wake-ups between instances.
pub const CHANNEL: &str = "herald_events";

#[derive(sqlx::FromRow)]
struct LogRow {
    seq: i64,
    kind: String,
    event_data: Option<String>,
    id: Option<Uuid>,
    title: Option<String>,
    body: Option<String>,
    category: Option<String>,
    data: Option<Json<Box<RawValue>>>,
    created_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    seen_at: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
    snoozed_until: Option<DateTime<Utc>>,
    actions: Option<Json<Box<RawValue>>>,
    action_taken: Option<Json<ActionTaken>>,
    key: Option<String>,
    updated_at: Option<DateTime<Utc>>,
    topic: Option<String>,
    counts_unread: Option<i64>,
    counts_unseen: Option<i64>,
}

impl LogRow {
    fn into_event(self) -> Event {
        let kind = EventKind::parse(&self.kind).unwrap_or(EventKind::Notification);
        match (kind, self.event_data) {
            (EventKind::Notification, _) | (_, None) => {
                let counts = Counts {
                    unread: self.counts_unread.unwrap_or_default(),
                    unseen: self.counts_unseen.unwrap_or_default(),
                };
                Notification {
                    id: self.id.unwrap_or_default(),
                    seq: self.seq,
                    title: self.title.unwrap_or_default(),
                    body: self.body,
                    category: self.category,
                    data: self.data,
                    created_at: self.created_at.unwrap_or_default(),
                    read_at: self.read_at,
                    expires_at: self.expires_at,
                    seen_at: self.seen_at,
                    archived_at: self.archived_at,
                    snoozed_until: self.snoozed_until,
                    actions: self.actions.unwrap_or_else(no_actions),
                    action_taken: self.action_taken,
                    key: self.key,
                    updated_at: self.updated_at,
                    topic: self.topic,
                }
                .to_event(EventKind::Notification, self.seq, counts)
            }
            (kind, Some(data)) => Event {
                seq: self.seq,
                kind,
                data: Arc::from(data),
                published_at: None,
            },
        }
    }
}

fn no_actions() -> Json<Box<RawValue>> {
    Json(RawValue::from_string("[]".into()).expect("[] is JSON"))
}

/// A log row tagged with the position of the reader it answers, and the
/// bytes of its reader's page up to and including it.
#[derive(sqlx::FromRow)]
struct ReaderRow {
    reader: i64,
    running: i64,
    #[sqlx(flatten)]
    row: LogRow,
}

/// One reader's part of a log read.
#[derive(Debug, Default)]
pub struct LogPage {
    pub events: Vec<Event>,
    /// The read stopped at its row or byte limit: more may follow.
    pub more: bool,
}

/// For each reader `(user, after, limit)`, in one statement: the user's
/// events with seq > `after`, in seq order, at most `limit` of them and no
/// more than about `max_bytes` (a page always has at least one event if
/// there is one). Deleted and expired notifications are gone (their `deleted`
/// or `expired` event remains). A notification row carries its state now and
/// the counts of its own moment. The answer has one page per reader, in
/// the readers' order.
///
/// The byte bound is what keeps replay memory in proportion: a page of
/// maximal notifications is 20 KiB an event, so rows alone do not bound it.
pub async fn read_after_many(
    conn: &mut PgConnection,
    readers: &[(&str, i64, i64)],
    max_bytes: i64,
) -> Result<Vec<LogPage>, sqlx::Error> {
    let users: Vec<&str> = readers.iter().map(|(u, _, _)| *u).collect();
    let afters: Vec<i64> = readers.iter().map(|(_, a, _)| *a).collect();
    let limits: Vec<i64> = readers.iter().map(|(_, _, l)| *l).collect();
    let rows: Vec<ReaderRow> = sqlx::query_as(
        "SELECT r.reader, log.*
         FROM unnest($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS r(user_id, after, lim, reader)
         CROSS JOIN LATERAL (
             SELECT page.*, sum(page.size) OVER (ORDER BY page.seq) AS running
             FROM (
                 SELECT * FROM (
                     SELECT n.seq, 'notification' AS kind, NULL::text AS event_data, n.id, n.title, n.body,
                            n.category, n.data, n.created_at, n.read_at, n.expires_at,
                            n.seen_at, n.archived_at, n.snoozed_until, n.actions, n.action_taken,
                            n.key, n.updated_at, n.topic, n.counts_unread, n.counts_unseen,
                            512 + octet_length(n.title) + coalesce(octet_length(n.body), 0)
                                + coalesce(octet_length(n.category), 0)
                                + coalesce(octet_length(n.data::text), 0)
                                + octet_length(n.actions::text)
                                + coalesce(octet_length(n.key), 0) AS size
                     FROM notifications n
                     WHERE n.user_id = r.user_id AND n.seq > r.after
                     UNION ALL
                     SELECT e.seq, e.kind, e.data::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                            64 + octet_length(e.data::text)
                     FROM events e
                     WHERE e.user_id = r.user_id AND e.seq > r.after
                 ) AS one
                 ORDER BY seq
                 LIMIT r.lim
             ) AS page
         ) AS log
         WHERE log.running - log.size < $4
         ORDER BY r.reader, log.seq",
    )
    .bind(&users)
    .bind(&afters)
    .bind(&limits)
    .bind(max_bytes)
    .fetch_all(conn)
    .await?;
    let mut pages: Vec<LogPage> = (0..readers.len()).map(|_| LogPage::default()).collect();
    for ReaderRow {
        reader,
        running,
        row,
    } in rows
    {
        // WITH ORDINALITY counts from 1.
        let i = reader as usize - 1;
        if let Some(page) = pages.get_mut(i) {
            page.events.push(row.into_event());
            page.more = page.events.len() as i64 >= readers[i].2 || running >= max_bytes;
        }
    }
    Ok(pages)
}

/// Appends a state-change event (not a notification: those are rows of
/// `notifications`); `data` is its JSON text.
pub async fn append(
    conn: &mut PgConnection,
    user: &UserId,
    seq: i64,
    kind: EventKind,
    data: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO events (user_id, seq, kind, data) VALUES ($1, $2, $3, $4::json)")
        .bind(user.as_str())
        .bind(seq)
        .bind(kind.as_str())
        .bind(data)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Appends many events of one kind at once (a batch's `updated` events).
pub async fn append_many(
    conn: &mut PgConnection,
    users: &[&str],
    seqs: &[i64],
    kind: EventKind,
    data: &[&str],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (user_id, seq, kind, data)
         SELECT u, s, $3, d::json FROM unnest($1::text[], $2::int8[], $4::text[]) AS t(u, s, d)",
    )
    .bind(users)
    .bind(seqs)
    .bind(kind.as_str())
    .bind(data)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Queues wake-ups for other instances; PostgreSQL delivers them on commit,
/// and only if the transaction commits.
pub async fn notify(conn: &mut PgConnection, payloads: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind(CHANNEL)
        .bind(payloads)
        .execute(conn)
        .await
        .map(|_| ())
}
