//! Publishing with group commit.
//!
//! A durable commit costs an fsync and, with NOTIFY, takes a global lock, so
//! one transaction per request caps throughput (about 4,200/s, or 2,000/s
//! with NOTIFY, on the reference machine). Requests are instead queued and a
//! few workers each commit whatever is waiting as one transaction with one
//! round of NOTIFY. Nobody waits for a batch to fill: an idle worker takes
//! the first request at once, so batches only grow under load. A request is
//! answered after its batch commits; if the batch fails, all of it fails and
//! nothing of it is visible.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::db;
use crate::db::publish::{NewRows, Recipients, Reserved};
use crate::domain::event::{Counts, Event, EventKind, Notification};
use crate::domain::{
    Actions, Body, Category, NotificationData, NotificationKey, Title, UserId, now_micros,
};
use crate::inbox::InboxError;
use crate::live::{Hub, wakeup};
use crate::settings::PublishSettings;

#[derive(Debug, Clone)]
pub struct Content {
    pub title: Title,
    pub body: Option<Body>,
    pub category: Option<Category>,
    pub data: Option<NotificationData>,
    pub expires_at: Option<DateTime<Utc>>,
    pub actions: Actions,
    /// Update the recipient's notification with this key in place, if any.
    pub key: Option<NotificationKey>,
    /// An update in place also makes it unread, unseen and unarchived again.
    pub renotify: bool,
}

#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    /// SHA-256 of the request, to tell a retry from a different request.
    pub request_hash: Vec<u8>,
}

impl IdempotencyKey {
    pub fn new(key: String, canonical_request: &[u8]) -> Self {
        Self {
            key,
            request_hash: Sha256::digest(canonical_request).to_vec(),
        }
    }
}

#[derive(Debug)]
pub struct PublishRequest {
    /// The publishing token's subject: idempotency keys are scoped to it.
    pub publisher: UserId,
    pub idempotency: Option<IdempotencyKey>,
    /// Distinct recipients, in the order given.
    pub recipients: Vec<UserId>,
    pub content: Content,
    /// Set when this request is one chunk of a broadcast.
    pub broadcast: Option<BroadcastChunk>,
}

/// A broadcast's progress, recorded in the transaction that commits the
/// chunk's notifications: the chunk and the move of the broadcast's cursor
/// commit together or not at all, so a crash never repeats or skips a chunk.
#[derive(Debug, Clone)]
pub struct BroadcastChunk {
    pub id: Uuid,
    /// The broadcast's cursor before this chunk (`None`: nothing sent yet).
    pub from: Option<String>,
    /// The last user id of this chunk: the cursor after it.
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub notifications: Vec<PublishedItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedItem {
    pub id: Uuid,
    pub user_id: String,
    /// The seq of its event: `notification`, or `updated` for an update in
    /// place (the notification keeps its first seq).
    pub seq: i64,
    /// Present, and true, for an update in place by `key`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub updated: bool,
}

type Reply = oneshot::Sender<Result<Published, InboxError>>;

struct Job {
    request: PublishRequest,
    reply: Reply,
    /// When the request was handed over, for the publish→deliver latency.
    received: std::time::Instant,
}

/// The handle request handlers publish through.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

struct CommitWorker {
    pool: PgPool,
    hub: Arc<Hub>,
    instance: String,
    settings: PublishSettings,
}

impl GroupCommit {
    pub fn start(pool: PgPool, hub: Arc<Hub>, instance: String, settings: PublishSettings) -> Self {
        let (queue, rx) = mpsc::channel(settings.max_batch_requests * settings.workers * 4);
        let rx = Arc::new(Mutex::new(rx));
        let worker = Arc::new(CommitWorker {
            pool,
            hub,
            instance,
            settings,
        });
        for _ in 0..worker.settings.workers {
            tokio::spawn(Arc::clone(&worker).run(Arc::clone(&rx)));
        }
        Self { queue }
    }

    pub async fn publish(&self, request: PublishRequest) -> Result<Published, InboxError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                request,
                reply,
                received: std::time::Instant::now(),
            })
            .await
            .map_err(|_| InboxError::ShuttingDown)?;
        answer.await.map_err(|_| InboxError::ShuttingDown)?
    }
}

impl CommitWorker {
    async fn run(self: Arc<Self>, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
        // Requests that reuse an idempotency key already in the batch wait
        // for the next one, where they find the first answer committed.
        let mut deferred: Vec<Job> = Vec::new();
        loop {
            let mut batch = std::mem::take(&mut deferred);
            if batch.is_empty() {
                let mut rx = rx.lock().await;
                match rx.recv().await {
                    Some(job) => batch.push(job),
                    None => return,
                }
                self.fill(&mut rx, &mut batch);
            } else if let Ok(mut rx) = rx.try_lock() {
                // With deferred work in hand, never wait for the queue: an
                // idle worker may hold it while waiting for new requests.
                self.fill(&mut rx, &mut batch);
            }
            let mut seen = HashSet::new();
            let mut keyed = HashSet::new();
            // A key may be updated once per batch and user (`write_keyed`
            // finds the notification as it was before the batch): a repeat
            // waits for the next batch, which finds this one's.
            let (batch, later): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|job| {
                let r = &job.request;
                let fresh_key = match &r.idempotency {
                    Some(k) => seen.insert((r.publisher.clone(), k.key.clone())),
                    None => true,
                };
                let fresh_updates = match &r.content.key {
                    Some(key) => {
                        let pairs: Vec<(UserId, NotificationKey)> = r
                            .recipients
                            .iter()
                            .map(|u| (u.clone(), key.clone()))
                            .collect();
                        let fresh = pairs.iter().all(|p| !keyed.contains(p));
                        if fresh && fresh_key {
                            keyed.extend(pairs);
                        }
                        fresh
                    }
                    None => true,
                };
                fresh_key && fresh_updates
            });
            deferred = later;
            self.commit(batch).await;
        }
    }

    /// Adds whatever is already queued, up to the batch limits.
    fn fill(&self, rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
        let mut rows: usize = batch.iter().map(|j| j.request.recipients.len()).sum();
        while batch.len() < self.settings.max_batch_requests && rows < self.settings.max_batch_rows
        {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.request.recipients.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
    }

    async fn commit(&self, jobs: Vec<Job>) {
        let started = std::time::Instant::now();
        let requests: Vec<&PublishRequest> = jobs.iter().map(|j| &j.request).collect();
        let received: Vec<std::time::Instant> = jobs.iter().map(|j| j.received).collect();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match self.try_commit(&requests, &received).await {
                Err(e) if attempt < 3 && is_retryable(&e) => continue,
                other => break other,
            }
        };
        metrics::histogram!("herald_publish_batch_requests").record(jobs.len() as f64);
        match result {
            Ok(committed) => {
                self.wake_local(committed.local);
                self.hub.stats.published(committed.created);
                let elapsed = started.elapsed().as_secs_f64();
                for (job, outcome) in jobs.into_iter().zip(committed.outcomes) {
                    metrics::histogram!("herald_publish_commit_seconds").record(elapsed);
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                let unavailable = crate::db::is_unavailable(&e);
                tracing::warn!(error = %e, requests = jobs.len(), "publish batch failed");
                let cause: std::sync::Arc<str> = format!("publish batch failed: {e}").into();
                for job in jobs {
                    let err = if unavailable {
                        InboxError::Unavailable
                    } else {
                        InboxError::Failed(cause.clone())
                    };
                    let _ = job.reply.send(Err(err));
                }
            }
        }
    }

    /// One transaction for the whole batch. A batch of plain publishes is a
    /// single statement, its own transaction; idempotency keys and broadcast
    /// cursors need a few statements, in an explicit transaction.
    async fn try_commit(
        &self,
        requests: &[&PublishRequest],
        received: &[std::time::Instant],
    ) -> Result<Committed, sqlx::Error> {
        let created_at = now_micros();
        let mut outcomes: Vec<Option<Result<Published, InboxError>>> =
            requests.iter().map(|_| None).collect();
        let plain = requests
            .iter()
            .all(|r| r.idempotency.is_none() && r.broadcast.is_none() && r.content.key.is_none());
        let (published, local) = if plain {
            let mut conn = self.pool.acquire().await?;
            self.insert(&mut conn, requests, &outcomes, created_at, received)
                .await?
        } else {
            let mut tx = self.pool.begin().await?;
            let claimed_keys = claim_keys(&mut tx, requests, &mut outcomes).await?;
            advance_broadcasts(&mut tx, requests, &mut outcomes).await?;
            let inserted = self
                .insert(&mut tx, requests, &outcomes, created_at, received)
                .await?;
            store_responses(&mut tx, requests, &claimed_keys, &inserted.0).await?;
            tx.commit().await?;
            inserted
        };
        let created = published
            .iter()
            .flatten()
            .map(|p| p.notifications.len() as u64)
            .sum();
        let outcomes = outcomes
            .into_iter()
            .zip(published)
            .map(|(done, fresh)| done.unwrap_or_else(|| Ok(fresh.expect("published"))))
            .collect();
        Ok(Committed {
            outcomes,
            local,
            created,
        })
    }

    /// Writes the notifications of the requests not yet answered (with seqs
    /// reserved and other instances woken in the same transaction) and
    /// returns their answers, by request index, and the events for this
    /// process's connections: built only for users someone here watches.
    async fn insert(
        &self,
        conn: &mut sqlx::PgConnection,
        requests: &[&PublishRequest],
        outcomes: &[Option<Result<Published, InboxError>>],
        created_at: DateTime<Utc>,
        received: &[std::time::Instant],
    ) -> Result<(Vec<Option<Published>>, LocalEvents), sqlx::Error> {
        let mut rows = NewRows::default();
        let mut counts: HashMap<&str, i64> = HashMap::new();
        let mut published: Vec<Option<Published>> = requests.iter().map(|_| None).collect();
        // Per row: its request and recipient.
        let mut row_request: Vec<usize> = Vec::new();
        let mut row_user: Vec<&UserId> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let c = &r.content;
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
            let content = rows.titles.len() as i32;
            let mut items = Vec::with_capacity(r.recipients.len());
            for user in &r.recipients {
                let id = Uuid::now_v7();
                rows.ids.push(id);
                rows.users.push(user.as_str());
                rows.content.push(content);
                row_request.push(i);
                row_user.push(user);
                *counts.entry(user.as_str()).or_default() += 1;
                items.push(PublishedItem {
                    id,
                    user_id: user.to_string(),
                    seq: 0,
                    updated: false,
                });
            }
            published[i] = Some(Published {
                notifications: items,
            });
        }
        let mut local = LocalEvents::default();
        if rows.ids.is_empty() {
            return Ok((published, local));
        }
        let (users, n): (Vec<&str>, Vec<i64>) = counts.iter().map(|(u, n)| (*u, *n)).unzip();
        if rows.keys.iter().all(Option::is_none) {
            let recipients = Recipients {
                payloads: wakeup::split(&self.instance, &users),
                users,
                counts: n,
            };
            let reserved =
                db::publish::publish_batch(conn, &rows, &recipients, created_at, &self.instance)
                    .await?;
            // A user's rows got its reserved seqs in row order, as here, and
            // each added one to both counts.
            let mut next: HashMap<String, (i64, Counts)> = reserved
                .into_iter()
                .map(|r| {
                    let k = counts[r.user.as_str()];
                    let first = Counts {
                        unread: r.counts.unread - k + 1,
                        unseen: r.counts.unseen - k + 1,
                    };
                    (r.user, (r.last_seq - k + 1, first))
                })
                .collect();
            for (i, p) in published.iter_mut().enumerate() {
                let Some(p) = p else { continue };
                let r = requests[i];
                for (user, item) in r.recipients.iter().zip(&mut p.notifications) {
                    let (seq, counts) = next.get_mut(user.as_str()).expect("reserved");
                    item.seq = *seq;
                    if self.hub.is_watched(user) {
                        let mut event = notification(&r.content, item, created_at).to_event(
                            EventKind::Notification,
                            item.seq,
                            *counts,
                        );
                        event.published_at = Some(received[i]);
                        local.push(user, event);
                    }
                    *seq += 1;
                    counts.unread += 1;
                    counts.unseen += 1;
                }
            }
            return Ok((published, local));
        }
        let placed = RowPlaces {
            request: &row_request,
            user: &row_user,
            received,
            created_at,
        };
        self.insert_keyed(
            conn,
            &rows,
            (&users, &n),
            &placed,
            &mut published,
            &mut local,
        )
        .await?;
        Ok((published, local))
    }

    /// A batch in which some content has a `key`: seqs are reserved (and the
    /// users locked) first, then each row is inserted or updates its key's
    /// notification, the `updated` events are appended and other instances
    /// are woken, all in the caller's transaction.
    async fn insert_keyed(
        &self,
        conn: &mut sqlx::PgConnection,
        rows: &NewRows<'_>,
        (users, counts): (&[&str], &[i64]),
        places: &RowPlaces<'_>,
        published: &mut [Option<Published>],
        local: &mut LocalEvents,
    ) -> Result<(), sqlx::Error> {
        let reserved: Vec<Reserved> = db::publish::reserve(conn, users, counts).await?;
        let rows_of: HashMap<&str, i64> =
            users.iter().copied().zip(counts.iter().copied()).collect();
        let mut next: HashMap<&str, i64> = reserved
            .iter()
            .map(|r| (r.user.as_str(), r.last_seq - rows_of[r.user.as_str()] + 1))
            .collect();
        let seqs: Vec<i64> = rows
            .users
            .iter()
            .map(|u| {
                let seq = next.get_mut(u).expect("reserved");
                *seq += 1;
                *seq - 1
            })
            .collect();
        let written =
            db::publish::write_keyed(conn, rows, &seqs, &reserved, places.created_at).await?;
        let mut updated_users = Vec::new();
        let mut updated_seqs = Vec::new();
        let mut updated_data = Vec::new();
        let mut items = published
            .iter_mut()
            .flatten()
            .flat_map(|p| p.notifications.iter_mut());
        for (j, w) in written.iter().enumerate() {
            let (i, user) = (places.request[j], places.user[j]);
            let item = items.next().expect("one item per row");
            item.id = w.notification.id;
            item.seq = w.event_seq;
            item.updated = w.updated;
            let kind = if w.updated {
                EventKind::Updated
            } else {
                EventKind::Notification
            };
            let counts = Counts {
                unread: w.unread,
                unseen: w.unseen,
            };
            let watched = self.hub.is_watched(user);
            if w.updated || watched {
                let mut event = w.notification.to_event(kind, w.event_seq, counts);
                event.published_at = Some(places.received[i]);
                if w.updated {
                    updated_users.push(item.user_id.clone());
                    updated_seqs.push(w.event_seq);
                    updated_data.push(event.data.clone());
                }
                if watched {
                    local.push(user, event);
                }
            }
        }
        if !updated_users.is_empty() {
            let users: Vec<&str> = updated_users.iter().map(String::as_str).collect();
            let data: Vec<&str> = updated_data.iter().map(|d| &**d).collect();
            db::events::append_many(conn, &users, &updated_seqs, EventKind::Updated, &data).await?;
        }
        let wakes = reserved.iter().map(|r| (r.user.clone(), r.last_seq));
        db::events::notify(conn, &wakeup::encode(&self.instance, wakes)).await
    }

    fn wake_local(&self, local: LocalEvents) {
        for (user, mut events) in local.0 {
            events.sort_by_key(|e| e.seq);
            let last = events.last().map_or(0, |e| e.seq);
            self.hub.wake(&user, last, Some(Arc::from(events)));
        }
    }
}

/// Claims the free idempotency keys of a batch and answers the requests
/// whose key is taken (a retry gets the stored answer). Returns the indexes
/// of the requests whose key this batch claimed.
async fn claim_keys(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    outcomes: &mut [Option<Result<Published, InboxError>>],
) -> Result<Vec<usize>, sqlx::Error> {
    let keyed: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].idempotency.is_some())
        .collect();
    let mut claimed_keys = Vec::new();
    if keyed.is_empty() {
        return Ok(claimed_keys);
    }
    let key = |i: usize| requests[i].idempotency.as_ref().expect("keyed");
    let publishers: Vec<&str> = keyed
        .iter()
        .map(|&i| requests[i].publisher.as_str())
        .collect();
    let keys: Vec<&str> = keyed.iter().map(|&i| key(i).key.as_str()).collect();
    let hashes: Vec<Vec<u8>> = keyed.iter().map(|&i| key(i).request_hash.clone()).collect();
    let claimed: HashSet<i64> = db::idempotency::claim(tx, &publishers, &keys, &hashes)
        .await?
        .into_iter()
        .collect();
    for (n, &i) in keyed.iter().enumerate() {
        if claimed.contains(&(n as i64)) {
            claimed_keys.push(i);
            continue;
        }
        let stored = db::idempotency::find(tx, publishers[n], keys[n]).await?;
        outcomes[i] = Some(match stored {
            Some(s) if s.request_hash == hashes[n] => {
                match s.response.and_then(|r| serde_json::from_value(r.0).ok()) {
                    Some(published) => Ok(published),
                    None => Err(InboxError::Failed(
                        "idempotency record without a response".into(),
                    )),
                }
            }
            _ => Err(InboxError::Rejected(
                "this Idempotency-Key was used with a different request body",
            )),
        });
    }
    Ok(claimed_keys)
}

/// Broadcast chunks: moves each broadcast's cursor in the batch's
/// transaction. A chunk whose broadcast is no longer at the cursor it was
/// read at (another instance sent it) is dropped, alone. Rows are locked in
/// id order, after idempotency keys and before users, as in every batch.
async fn advance_broadcasts(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    outcomes: &mut [Option<Result<Published, InboxError>>],
) -> Result<(), sqlx::Error> {
    let mut chunks: Vec<usize> = (0..requests.len())
        .filter(|&i| outcomes[i].is_none() && requests[i].broadcast.is_some())
        .collect();
    chunks.sort_by_key(|&i| requests[i].broadcast.as_ref().map(|b| b.id));
    for i in chunks {
        let r = requests[i];
        let b = r.broadcast.as_ref().expect("a broadcast chunk");
        let sent = r.recipients.len() as i64;
        if !db::broadcasts::advance(tx, b.id, b.from.as_deref(), &b.to, sent).await? {
            outcomes[i] = Some(Err(InboxError::Rejected(
                "this broadcast chunk was already sent",
            )));
        }
    }
    Ok(())
}

/// Remembers the answers of newly claimed idempotency keys.
async fn store_responses(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    claimed_keys: &[usize],
    published: &[Option<Published>],
) -> Result<(), sqlx::Error> {
    if claimed_keys.is_empty() {
        return Ok(());
    }
    let publishers: Vec<&str> = claimed_keys
        .iter()
        .map(|&i| requests[i].publisher.as_str())
        .collect();
    let keys: Vec<&str> = claimed_keys
        .iter()
        .map(|&i| {
            requests[i]
                .idempotency
                .as_ref()
                .expect("keyed")
                .key
                .as_str()
        })
        .collect();
    let responses: Vec<String> = claimed_keys
        .iter()
        .map(|&i| {
            serde_json::to_string(published[i].as_ref().expect("published")).expect("serializes")
        })
        .collect();
    db::idempotency::store_responses(tx, &publishers, &keys, &responses).await
}

fn notification(c: &Content, item: &PublishedItem, created_at: DateTime<Utc>) -> Notification {
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
        actions: sqlx::types::Json(
            serde_json::value::RawValue::from_string(c.actions.to_json())
                .expect("actions are JSON"),
        ),
        action_taken: None,
        key: c.key.as_ref().map(|k| k.as_str().to_owned()),
        updated_at: None,
        topic: None,
    }
}

/// Committed events of watched users, for this process's connections.
#[derive(Default)]
struct LocalEvents(HashMap<UserId, Vec<Event>>);

impl LocalEvents {
    fn push(&mut self, user: &UserId, event: Event) {
        self.0.entry(user.clone()).or_default().push(event);
    }
}

/// Per row of a batch: its request, its recipient, and when its request
/// arrived; and the batch's time.
struct RowPlaces<'a> {
    request: &'a [usize],
    user: &'a [&'a UserId],
    received: &'a [std::time::Instant],
    created_at: DateTime<Utc>,
}

struct Committed {
    outcomes: Vec<Result<Published, InboxError>>,
    local: LocalEvents,
    /// Notifications created.
    created: u64,
}

fn is_retryable(e: &sqlx::Error) -> bool {
    // 40001 serialization failure, 40P01 deadlock: the batch can simply rerun.
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}
