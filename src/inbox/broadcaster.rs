//! Broadcasts: one notification for every known user, sent in the
//! background in chunks of `publish.broadcast_chunk` users.
//!
//! A broadcast is a row of `broadcasts` with a cursor (the last user id done,
//! in `user_id` order). Each chunk goes through the publisher like any
//! publish (seqs, NOTIFY, local wake-ups), and the publisher moves the cursor
//! in the chunk's own transaction, only if it is still where this worker read
//! it: a chunk is committed exactly once, whatever crashes. One instance at a
//! time works on a broadcast (a session-level advisory lock, released when
//! the session ends); unfinished broadcasts are picked up at start and by a
//! periodic check, so another instance finishes what a dead one began.
//!
//! Users who become known while a broadcast runs get it if their id sorts
//! after the cursor, and not otherwise.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db;
use crate::domain::{
    Actions, Body, Category, NotificationData, NotificationKey, Title, TopicName, UserId,
    now_micros,
};
use crate::inbox::InboxError;
use crate::inbox::group_commit::GroupCommit;
use crate::inbox::publishing::{BroadcastChunk, Content, IdempotencyKey, Part, PublishRequest};

/// How often unfinished broadcasts are looked for when nothing wakes the
/// worker (another instance's broadcast, or one a dead instance left).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Creates broadcasts and wakes this instance's broadcast worker.
#[derive(Clone)]
pub struct Broadcaster {
    pool: PgPool,
    wake: Arc<Notify>,
}

impl Broadcaster {
    /// Starts the worker; it stops when `shutdown` is cancelled.
    pub fn start(
        pool: PgPool,
        publisher: GroupCommit,
        chunk: usize,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let wake = Arc::new(Notify::new());
        let worker = BroadcastWorker {
            pool: pool.clone(),
            publisher,
            chunk: chunk.max(1) as i64,
            wake: Arc::clone(&wake),
        };
        (Self { pool, wake }, tokio::spawn(worker.run(shutdown)))
    }

    /// Stores a broadcast of `content` by `created_by` and starts on it. The
    /// answer does not wait for any user to receive it.
    pub async fn create(
        &self,
        content: &Content,
        created_by: &UserId,
    ) -> Result<db::broadcasts::Broadcast, InboxError> {
        self.create_for(content, created_by, None, None).await
    }

    /// Stores a broadcast to the subscribers of `topics` and the `named`
    /// users (a publish too large for one transaction). With an idempotency
    /// key, a retry answers the first broadcast instead of sending again.
    pub async fn create_for_topics(
        &self,
        content: &Content,
        created_by: &UserId,
        (topics, named): (&[TopicName], &[UserId]),
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<db::broadcasts::Broadcast, InboxError> {
        let topics: Vec<&str> = topics.iter().map(TopicName::as_str).collect();
        let named: Vec<&str> = named.iter().map(UserId::as_str).collect();
        self.create_for(content, created_by, Some((&topics, &named)), idempotency)
            .await
    }

    async fn create_for(
        &self,
        content: &Content,
        created_by: &UserId,
        targets: Option<(&[&str], &[&str])>,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<db::broadcasts::Broadcast, InboxError> {
        let id = match idempotency {
            Some(k) => k.id_for("broadcast", created_by),
            None => Uuid::now_v7(),
        };
        let created = db::broadcasts::create(
            &self.pool,
            &db::broadcasts::New {
                id,
                title: content.title.as_str(),
                body: content.body.as_ref().map(Body::as_str),
                category: content.category.as_ref().map(Category::as_str),
                data: content.data.as_ref().map(NotificationData::as_json),
                expires_at: content.expires_at,
                actions: &content.actions.to_json(),
                key: content.key.as_ref().map(NotificationKey::as_str),
                renotify: content.renotify,
                critical: content.critical,
                topics: targets.map(|(t, _)| t),
                named: targets.map(|(_, n)| n),
                request_hash: idempotency.map(|k| k.request_hash.as_slice()),
                created_by: created_by.as_str(),
                created_at: now_micros(),
            },
        )
        .await?;
        let Some(broadcast) = created else {
            // A retry: the same request gets the first answer.
            let first = db::broadcasts::request_hash(&self.pool, id).await?;
            if first.as_deref() != idempotency.map(|k| k.request_hash.as_slice()) {
                return Err(InboxError::Rejected(
                    "this Idempotency-Key was used with a different request body",
                ));
            }
            // The first answer again, as created (its progress is at
            // `GET /v1/admin/broadcasts/{id}`).
            let first = self.get(id).await?;
            return Ok(db::broadcasts::Broadcast {
                status: "pending".into(),
                recipients: 0,
                ..first
            });
        };
        // Start on it now rather than at the next check.
        self.wake.notify_one();
        Ok(broadcast)
    }

    /// A broadcast's progress.
    pub async fn get(&self, id: Uuid) -> Result<db::broadcasts::Broadcast, InboxError> {
        db::broadcasts::get(&self.pool, id)
            .await?
            .ok_or(InboxError::NotFound("no such broadcast"))
    }
}

struct BroadcastWorker {
    pool: PgPool,
    publisher: GroupCommit,
    chunk: i64,
    wake: Arc<Notify>,
}

impl BroadcastWorker {
    async fn run(self, shutdown: CancellationToken) {
        loop {
            // Stopping mid-chunk is safe: the chunk commits with its cursor
            // or not at all, and the lock goes with the connection.
            let worked = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.work_once() => r,
            };
            match worked {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "broadcast worker failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }

    /// Finishes the oldest unfinished broadcast no other instance is working
    /// on; `false` when there was none.
    async fn work_once(&self) -> anyhow::Result<bool> {
        let candidates = db::broadcasts::unfinished(&self.pool, 32).await?;
        if candidates.is_empty() {
            return Ok(false);
        }
        // The lock lives in its own session, so a pooled connection never
        // carries it and a crash (or a lost connection) releases it.
        let mut lock = PgConnection::connect_with(&self.pool.connect_options()).await?;
        for id in candidates {
            if !db::broadcasts::try_lock(&mut lock, id).await? {
                continue;
            }
            let sent = self.send(id).await;
            let _ = lock.close().await;
            sent?;
            return Ok(true);
        }
        let _ = lock.close().await;
        Ok(false)
    }

    /// Sends broadcast `id` to everyone after its cursor, chunk by chunk.
    async fn send(&self, id: Uuid) -> anyhow::Result<()> {
        let Some(stored) = db::broadcasts::load(&self.pool, id).await? else {
            return Ok(());
        };
        if stored.status == "done" {
            return Ok(());
        }
        db::broadcasts::mark_running(&self.pool, id).await?;
        tracing::info!(broadcast = %id, resume_after = ?stored.cursor, "broadcast running");
        let publisher = UserId::parse(&stored.created_by).map_err(anyhow::Error::msg)?;
        let mut cursor = stored.cursor.clone();
        let targets = stored.topics.clone().map(|topics| {
            let named = stored.named.clone().unwrap_or_default();
            (topics, named)
        });
        let content = content_of(stored)?;
        loop {
            let (users, via) = match &targets {
                None => {
                    let users =
                        db::broadcasts::recipients_after(&self.pool, cursor.as_deref(), self.chunk)
                            .await?;
                    (users, Vec::new())
                }
                Some((topics, named)) => {
                    let audience = db::broadcasts::audience_after(
                        &self.pool,
                        topics,
                        named,
                        cursor.as_deref(),
                        self.chunk,
                    )
                    .await?;
                    let via = audience
                        .iter()
                        .map(|(_, t)| t.as_deref().and_then(|t| TopicName::parse(t).ok()))
                        .collect();
                    (audience.into_iter().map(|(u, _)| u).collect(), via)
                }
            };
            let Some(last) = users.last().cloned() else {
                if db::broadcasts::finish(&self.pool, id, cursor.as_deref()).await? {
                    tracing::info!(broadcast = %id, "broadcast done");
                }
                return Ok(());
            };
            let (recipients, via): (Vec<UserId>, Vec<Option<TopicName>>) = users
                .iter()
                .zip(via.into_iter().chain(std::iter::repeat(None)))
                .filter_map(|(u, t)| UserId::parse(u).ok().map(|u| (u, t)))
                .unzip();
            let via = if targets.is_some() { via } else { Vec::new() };
            self.publisher
                .publish(PublishRequest {
                    broadcast: Some(BroadcastChunk {
                        id,
                        from: cursor.clone(),
                        to: last.clone(),
                    }),
                    ..PublishRequest::single(
                        publisher.clone(),
                        Part {
                            recipients,
                            via,
                            topics: Vec::new(),
                            content: content.clone(),
                        },
                    )
                })
                .await?;
            cursor = Some(last);
        }
    }
}

/// The stored content, checked again as a publish would check it.
fn content_of(b: db::broadcasts::Stored) -> anyhow::Result<Content> {
    let data = match b.data {
        None => None,
        Some(text) => Some(
            NotificationData::parse(serde_json::from_str(&text)?).map_err(anyhow::Error::msg)?,
        ),
    };
    Ok(Content {
        title: Title::parse(b.title).map_err(anyhow::Error::msg)?,
        body: b
            .body
            .map(Body::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        category: b
            .category
            .map(Category::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        data,
        expires_at: b.expires_at,
        actions: Actions::parse(serde_json::from_str(&b.actions)?).map_err(anyhow::Error::msg)?,
        key: b
            .key
            .map(NotificationKey::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        renotify: b.renotify,
        critical: b.critical,
    })
}
