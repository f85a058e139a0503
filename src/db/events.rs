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
use crate::domain::event::{Event, EventKind, Notification};

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
}

impl LogRow {
    fn into_event(self) -> Event {
        let kind = EventKind::parse(&self.kind).unwrap_or(EventKind::Notification);
        match (kind, self.event_data) {
            (EventKind::Notification, _) | (_, None) => Notification {
                id: self.id.unwrap_or_default(),
                seq: self.seq,
                title: self.title.unwrap_or_default(),
                body: self.body,
                category: self.category,
                data: self.data,
                created_at: self.created_at.unwrap_or_default(),
                read_at: self.read_at,
                expires_at: self.expires_at,
            }
            .to_event(),
            (kind, Some(data)) => Event {
                seq: self.seq,
                kind,
                data: Arc::from(data),
                published_at: None,
            },
        }
    }
}

/// A log row tagged with the position of the reader it answers.
#[derive(sqlx::FromRow)]
struct ReaderRow {
    reader: i64,
    #[sqlx(flatten)]
    row: LogRow,
}

/// Up to `limit` events of `user` with seq > `after`, in seq order. Expired
/// notifications are left out; deleted ones are gone (their `deleted` event
/// remains).
pub async fn read_after(
    conn: &mut PgConnection,
    user: &UserId,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    let mut logs = read_after_many(conn, &[(user.as_str(), after, limit)]).await?;
    Ok(logs.pop().unwrap_or_default())
}

/// [`read_after`] for many readers at once, in one statement: for each
/// (user, after, limit), up to `limit` events, in seq order. The answer has
/// one list per reader, in the readers' order.
pub async fn read_after_many(
    conn: &mut PgConnection,
    readers: &[(&str, i64, i64)],
) -> Result<Vec<Vec<Event>>, sqlx::Error> {
    let users: Vec<&str> = readers.iter().map(|(u, _, _)| *u).collect();
    let afters: Vec<i64> = readers.iter().map(|(_, a, _)| *a).collect();
    let limits: Vec<i64> = readers.iter().map(|(_, _, l)| *l).collect();
    let rows: Vec<ReaderRow> = sqlx::query_as(
        "SELECT r.reader, log.*
         FROM unnest($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS r(user_id, after, lim, reader)
         CROSS JOIN LATERAL (
             SELECT seq, kind, event_data, id, title, body, category, data, created_at, read_at, expires_at
             FROM (
                 SELECT n.seq, 'notification' AS kind, NULL::text AS event_data, n.id, n.title, n.body,
                        n.category, n.data, n.created_at, n.read_at, n.expires_at
                 FROM notifications n
                 WHERE n.user_id = r.user_id AND n.seq > r.after
                   AND (n.expires_at IS NULL OR n.expires_at > now())
                 UNION ALL
                 SELECT e.seq, e.kind, e.data::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
                 FROM events e
                 WHERE e.user_id = r.user_id AND e.seq > r.after
             ) AS one
             ORDER BY seq
             LIMIT r.lim
         ) AS log
         ORDER BY r.reader, log.seq",
    )
    .bind(&users)
    .bind(&afters)
    .bind(&limits)
    .fetch_all(conn)
    .await?;
    let mut logs: Vec<Vec<Event>> = (0..readers.len()).map(|_| Vec::new()).collect();
    for ReaderRow { reader, row } in rows {
        // WITH ORDINALITY counts from 1.
        if let Some(log) = logs.get_mut(reader as usize - 1) {
            log.push(row.into_event());
        }
    }
    Ok(logs)
}

/// Appends a state-change event (not a notification: those are rows of
/// `notifications`).
pub async fn append(
    conn: &mut PgConnection,
    user: &UserId,
    seq: i64,
    kind: EventKind,
    data: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO events (user_id, seq, kind, data) VALUES ($1, $2, $3, $4)")
        .bind(user.as_str())
        .bind(seq)
        .bind(kind.as_str())
        .bind(Json(data))
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
