//! Writing one batch of publishes in the caller's connection or
//! transaction: the rows, the recipients' preferences, updates in place by
//! key, and the events this process's connections receive without reading
//! them back.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::db;
use crate::db::publish::{NewRows, Recipients};
use crate::domain::event::{Counts, Event, EventKind, Notification};
use crate::domain::{Body, Category, NotificationData, NotificationKey, TopicName, UserId};
use crate::inbox::publishing::{Content, Published, PublishedItem, SkipReason, Skipped};
use crate::live::{Hub, wakeup};

/// One part of a request, with everyone it goes to.
pub struct Unit<'a> {
    /// The request it belongs to (its index in the batch).
    pub request: usize,
    pub content: &'a Content,
    /// Each user once: the named recipients (no topic), then the
    /// subscribers its topics added.
    pub recipients: Vec<(UserId, Option<TopicName>)>,
}

/// Committed events of watched users, for this process's connections.
#[derive(Default)]
pub struct LocalEvents(HashMap<UserId, Vec<Event>>);

impl LocalEvents {
    fn push(&mut self, user: &UserId, event: Event) {
        self.0.entry(user.clone()).or_default().push(event);
    }
}

pub struct BatchWriter {
    pub hub: Arc<Hub>,
    pub instance: String,
}

/// Per row of a batch: its unit and recipient.
struct Row<'u> {
    unit: usize,
    user: &'u UserId,
    topic: Option<&'u TopicName>,
}

impl BatchWriter {
    /// Writes the units' notifications (with seqs reserved and other
    /// instances woken in the same transaction) and returns one answer per
    /// unit, and the events for this process's connections: built only for
    /// users someone here watches.
    pub async fn write(
        &self,
        conn: &mut PgConnection,
        units: &[Unit<'_>],
        created_at: DateTime<Utc>,
        received: &[std::time::Instant],
    ) -> Result<(Vec<Published>, LocalEvents), sqlx::Error> {
        let mut rows = NewRows::default();
        let mut placed: Vec<Row<'_>> = Vec::new();
        let any_topic = units
            .iter()
            .any(|u| u.recipients.iter().any(|(_, t)| t.is_some()));
        for (k, unit) in units.iter().enumerate() {
            let c = unit.content;
            rows.titles.push(c.title.as_str());
            rows.bodies.push(c.body.as_ref().map(Body::as_str));
            rows.categories
                .push(c.category.as_ref().map(Category::as_str));
            rows.data
                .push(c.data.as_ref().map(NotificationData::as_json));
            rows.expires.push(c.expires_at);
            rows.actions
                .push((!c.actions.is_empty()).then(|| c.actions.to_json()));
            rows.keys.push(c.key.as_ref().map(NotificationKey::as_str));
            rows.renotify.push(c.renotify);
            rows.critical.push(c.critical);
            let content = rows.titles.len() as i32;
            for (user, topic) in &unit.recipients {
                rows.ids.push(Uuid::now_v7());
                rows.users.push(user.as_str());
                rows.content.push(content);
                if any_topic {
                    rows.topics.push(topic.as_ref().map(TopicName::as_str));
                }
                placed.push(Row {
                    unit: k,
                    user,
                    topic: topic.as_ref(),
                });
            }
        }
        let mut out = Out {
            answers: units.iter().map(|_| Published::default()).collect(),
            local: LocalEvents::default(),
        };
        if rows.ids.is_empty() {
            return Ok((out.answers, out.local));
        }
        let mut users: Vec<&str> = rows.users.clone();
        users.sort_unstable();
        users.dedup();
        let batch = Batch {
            units,
            rows: &rows,
            placed: &placed,
            users,
            created_at,
            received,
        };
        if rows.keys.iter().all(Option::is_none) {
            self.write_plain(conn, &batch, &mut out).await?;
        } else {
            self.write_keyed(conn, &batch, &mut out).await?;
        }
        Ok((out.answers, out.local))
    }

    /// New notifications only: one statement (`db::publish::publish_batch`).
    async fn write_plain(
        &self,
        conn: &mut PgConnection,
        batch: &Batch<'_>,
        out: &mut Out,
    ) -> Result<(), sqlx::Error> {
        let Batch {
            units,
            rows,
            placed,
            ..
        } = *batch;
        let recipients = Recipients {
            payloads: wakeup::split(&self.instance, &batch.users),
            users: batch.users.clone(),
        };
        let written =
            db::publish::publish_batch(conn, rows, &recipients, batch.created_at, &self.instance)
                .await?;
        let mut skipped = vec![false; rows.ids.len()];
        for &i in &written.skipped {
            skipped[i] = true;
        }
        // A user's kept rows got its reserved seqs in row order, as here,
        // and each added one to both counts.
        let mut kept: HashMap<&str, i64> = HashMap::new();
        for (i, user) in rows.users.iter().enumerate() {
            if !skipped[i] {
                *kept.entry(user).or_default() += 1;
            }
        }
        let mut next: HashMap<&str, (i64, Counts)> = written
            .reserved
            .iter()
            .map(|r| {
                let k = kept.get(r.user.as_str()).copied().unwrap_or(0);
                let first = Counts {
                    unread: r.counts.unread - k + 1,
                    unseen: r.counts.unseen - k + 1,
                };
                (r.user.as_str(), (r.last_seq - k + 1, first))
            })
            .collect();
        for (i, row) in placed.iter().enumerate() {
            let answer = &mut out.answers[row.unit];
            if skipped[i] {
                answer.skipped.push(skipped_user(row.user));
                continue;
            }
            let (seq, counts) = next.get_mut(row.user.as_str()).expect("reserved");
            let item = PublishedItem {
                id: rows.ids[i],
                user_id: row.user.to_string(),
                seq: *seq,
                updated: false,
            };
            if self.hub.is_watched(row.user) {
                let unit = &units[row.unit];
                let mut event = notification(unit.content, &item, row.topic, batch.created_at)
                    .to_event(EventKind::Notification, item.seq, *counts);
                event.published_at = Some(batch.received[unit.request]);
                out.local.push(row.user, event);
            }
            answer.notifications.push(item);
            *seq += 1;
            counts.unread += 1;
            counts.unseen += 1;
        }
        Ok(())
    }

    /// A batch in which some content has a `key`: the users are locked
    /// first, then each row is inserted or updates its key's notification,
    /// the `updated` events are appended and other instances are woken, all
    /// in the caller's transaction.
    async fn write_keyed(
        &self,
        conn: &mut PgConnection,
        batch: &Batch<'_>,
        out: &mut Out,
    ) -> Result<(), sqlx::Error> {
        let Batch {
            units,
            rows,
            placed,
            ..
        } = *batch;
        db::publish::lock_users(conn, &batch.users).await?;
        let written = db::publish::write_keyed(conn, rows, batch.created_at).await?;
        let mut by_row: Vec<Option<db::publish::Written>> =
            (0..rows.ids.len()).map(|_| None).collect();
        for w in written {
            let i = w.ord as usize - 1;
            by_row[i] = Some(w);
        }
        let mut updated = Updated::default();
        let mut last_seq: HashMap<&str, i64> = HashMap::new();
        for (row, w) in placed.iter().zip(by_row) {
            let answer = &mut out.answers[row.unit];
            let Some(w) = w else {
                answer.skipped.push(skipped_user(row.user));
                continue;
            };
            let kind = if w.updated {
                EventKind::Updated
            } else {
                EventKind::Notification
            };
            let counts = Counts {
                unread: w.unread,
                unseen: w.unseen,
            };
            let seq = last_seq.entry(row.user.as_str()).or_default();
            *seq = (*seq).max(w.event_seq);
            let watched = self.hub.is_watched(row.user);
            if w.updated || watched {
                let mut event = w.notification.to_event(kind, w.event_seq, counts);
                event.published_at = Some(batch.received[units[row.unit].request]);
                if w.updated {
                    updated.users.push(row.user.as_str());
                    updated.seqs.push(w.event_seq);
                    updated.data.push(Arc::clone(&event.data));
                }
                if watched {
                    out.local.push(row.user, event);
                }
            }
            answer.notifications.push(PublishedItem {
                id: w.notification.id,
                user_id: row.user.to_string(),
                seq: w.event_seq,
                updated: w.updated,
            });
        }
        if !updated.users.is_empty() {
            let data: Vec<&str> = updated.data.iter().map(|d| &**d).collect();
            db::events::append_many(
                conn,
                &updated.users,
                &updated.seqs,
                EventKind::Updated,
                &data,
            )
            .await?;
        }
        let wakes = last_seq.into_iter().map(|(u, s)| (u.to_owned(), s));
        db::events::notify(conn, &wakeup::encode(&self.instance, wakes)).await
    }

    pub fn wake_local(&self, local: LocalEvents) {
        for (user, mut events) in local.0 {
            events.sort_by_key(|e| e.seq);
            let last = events.last().map_or(0, |e| e.seq);
            self.hub.wake(&user, last, Some(Arc::from(events)));
        }
    }
}

/// One batch as rows: its units, the rows' columns, each row's place, the
/// distinct recipients (in order), the batch's time and when each request
/// arrived.
struct Batch<'a> {
    units: &'a [Unit<'a>],
    rows: &'a NewRows<'a>,
    placed: &'a [Row<'a>],
    users: Vec<&'a str>,
    created_at: DateTime<Utc>,
    received: &'a [std::time::Instant],
}

/// What writing a batch gives: one answer per unit, and the events for this
/// process's connections.
struct Out {
    answers: Vec<Published>,
    local: LocalEvents,
}

/// The `updated` events of a batch, to append in one statement.
#[derive(Default)]
struct Updated<'a> {
    users: Vec<&'a str>,
    seqs: Vec<i64>,
    data: Vec<Arc<str>>,
}

fn skipped_user(user: &UserId) -> Skipped {
    Skipped {
        user_id: user.to_string(),
        reason: SkipReason::Preferences,
    }
}

fn notification(
    c: &Content,
    item: &PublishedItem,
    topic: Option<&TopicName>,
    created_at: DateTime<Utc>,
) -> Notification {
    Notification {
        id: item.id,
        seq: item.seq,
        title: c.title.as_str().to_owned(),
        body: c.body.as_ref().map(|b| b.as_str().to_owned()),
        category: c.category.as_ref().map(|c| c.as_str().to_owned()),
        data: c.data.as_ref().map(NotificationData::to_raw),
        created_at,
        read_at: None,
        expires_at: c.expires_at,
        seen_at: None,
        archived_at: None,
        snoozed_until: None,
        actions: Json(RawValue::from_string(c.actions.to_json()).expect("actions are JSON")),
        action_taken: None,
        key: c.key.as_ref().map(|k| k.as_str().to_owned()),
        updated_at: None,
        topic: topic.map(|t| t.as_str().to_owned()),
    }
}
