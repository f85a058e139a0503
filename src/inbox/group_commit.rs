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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::db;
use crate::domain::{NotificationKey, TopicName, UserId, now_micros};
use crate::inbox::InboxError;
use crate::inbox::batch_write::{BatchWriter, Unit};
pub use crate::inbox::publishing::{
    BroadcastChunk, Content, IdempotencyKey, Part, PublishRequest, Published, PublishedItem,
    SkipReason, Skipped,
};
use crate::live::Hub;
use crate::settings::PublishSettings;

type Answer = Result<Vec<Published>, InboxError>;
type Reply = oneshot::Sender<Answer>;

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
    writer: BatchWriter,
    settings: PublishSettings,
    /// Spare workers running now (see [`CommitWorker::spare`]).
    spares: AtomicUsize,
}

type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

/// How long a commit may wait before the queue gets a spare worker. A batch
/// commits in milliseconds; one that waits this long is held up by a lock
/// another transaction holds (an application's transaction that called
/// `herald_publish` keeps its recipients' rows until it commits), and
/// without a spare every worker could end up waiting so, with other users'
/// publishes queued behind them.
const STALL: Duration = Duration::from_secs(1);
/// How long a spare worker waits for work before it ends.
const SPARE_IDLE: Duration = Duration::from_secs(5);

impl GroupCommit {
    pub fn start(pool: PgPool, hub: Arc<Hub>, instance: String, settings: PublishSettings) -> Self {
        let (queue, rx) = mpsc::channel(settings.max_batch_requests * settings.workers * 4);
        let rx = Arc::new(Mutex::new(rx));
        let worker = Arc::new(CommitWorker {
            pool,
            writer: BatchWriter { hub, instance },
            settings,
            spares: AtomicUsize::new(0),
        });
        for _ in 0..worker.settings.workers {
            tokio::spawn(Arc::clone(&worker).run(Arc::clone(&rx), false));
        }
        Self { queue }
    }

    /// Commits a request (all of its parts, or none) and answers each part.
    pub async fn publish(&self, request: PublishRequest) -> Answer {
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

/// What a batch must not hold twice: an idempotency key (a retry waits for
/// the first answer to commit) and an update of one user's key (the update
/// finds the notification as it was before the batch). A part with topics
/// and a key may reach anyone, so it conflicts with every use of its key.
#[derive(Default)]
struct Conflicts {
    idempotency: HashSet<(UserId, String)>,
    updates: HashSet<(UserId, NotificationKey)>,
    keys: HashSet<NotificationKey>,
    open_keys: HashSet<NotificationKey>,
}

impl Conflicts {
    /// Takes the request's claims if none conflicts; `false` otherwise.
    fn admit(&mut self, r: &PublishRequest) -> bool {
        let idempotency = r
            .idempotency
            .as_ref()
            .map(|k| (r.publisher.clone(), k.key.clone()));
        if idempotency
            .as_ref()
            .is_some_and(|k| self.idempotency.contains(k))
        {
            return false;
        }
        let mut updates = Vec::new();
        let mut open = Vec::new();
        for part in &r.parts {
            let Some(key) = &part.content.key else {
                continue;
            };
            if self.open_keys.contains(key) || (!part.topics.is_empty() && self.keys.contains(key))
            {
                return false;
            }
            if !part.topics.is_empty() {
                open.push(key.clone());
            }
            for user in &part.recipients {
                let pair = (user.clone(), key.clone());
                if self.updates.contains(&pair) {
                    return false;
                }
                updates.push(pair);
            }
        }
        self.idempotency.extend(idempotency);
        for (user, key) in updates {
            self.keys.insert(key.clone());
            self.updates.insert((user, key));
        }
        self.keys.extend(open.iter().cloned());
        self.open_keys.extend(open);
        true
    }
}

impl CommitWorker {
    /// Commits batches from the queue until it closes; a spare worker also
    /// ends after [`SPARE_IDLE`] without work.
    async fn run(self: Arc<Self>, rx: Queue, spare: bool) {
        // Requests that conflict with one already in the batch wait for the
        // next one (see `Conflicts`).
        let mut deferred: Vec<Job> = Vec::new();
        loop {
            let mut batch = std::mem::take(&mut deferred);
            if batch.is_empty() {
                // Cancelled only while waiting for the lock or a request
                // (both cancel-safe): once one arrives, the rest is sync.
                let next = async {
                    let mut rx = rx.lock().await;
                    let job = rx.recv().await?;
                    batch.push(job);
                    self.fill(&mut rx, &mut batch);
                    Some(())
                };
                let got = if spare {
                    tokio::time::timeout(SPARE_IDLE, next).await.ok().flatten()
                } else {
                    next.await
                };
                if got.is_none() {
                    if spare {
                        self.spares.fetch_sub(1, Ordering::Relaxed);
                    }
                    return;
                }
            } else if let Ok(mut rx) = rx.try_lock() {
                // With deferred work in hand, never wait for the queue: an
                // idle worker may hold it while waiting for new requests.
                self.fill(&mut rx, &mut batch);
            }
            let mut conflicts = Conflicts::default();
            let (batch, later): (Vec<Job>, Vec<Job>) = batch
                .into_iter()
                .partition(|job| conflicts.admit(&job.request));
            deferred = later;
            let commit = self.commit(batch);
            tokio::pin!(commit);
            if tokio::time::timeout(STALL, &mut commit).await.is_err() {
                Arc::clone(&self).spare(&rx);
                commit.await;
            }
        }
    }

    /// Starts a spare worker unless `publish.spare_workers` are running.
    fn spare(self: Arc<Self>, rx: &Queue) {
        let running = self.spares.fetch_add(1, Ordering::Relaxed);
        if running >= self.settings.spare_workers {
            self.spares.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        tracing::info!(
            spares = running + 1,
            "a publish commit has waited {STALL:?}; starting a spare commit worker"
        );
        tokio::spawn(self.run(Arc::clone(rx), true));
    }

    /// Adds whatever is already queued, up to the batch limits.
    fn fill(&self, rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
        let rows_of =
            |job: &Job| -> usize { job.request.parts.iter().map(|p| p.recipients.len()).sum() };
        let mut rows: usize = batch.iter().map(rows_of).sum();
        while batch.len() < self.settings.max_batch_requests && rows < self.settings.max_batch_rows
        {
            match rx.try_recv() {
                Ok(job) => {
                    rows += rows_of(&job);
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
                self.writer.wake_local(committed.local);
                self.writer.hub.stats.published(committed.created);
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
    /// single statement, its own transaction; idempotency keys, broadcast
    /// cursors, schedules, topics and keys need a few statements, in an
    /// explicit transaction.
    async fn try_commit(
        &self,
        requests: &[&PublishRequest],
        received: &[std::time::Instant],
    ) -> Result<Committed, sqlx::Error> {
        let created_at = now_micros();
        let mut outcomes: Vec<Option<Answer>> = requests.iter().map(|_| None).collect();
        let plain = requests.iter().all(|r| {
            r.idempotency.is_none()
                && r.broadcast.is_none()
                && r.schedule.is_none()
                && r.parts
                    .iter()
                    .all(|p| p.content.key.is_none() && p.topics.is_empty() && p.via.is_empty())
        });
        let (mut by_request, local) = if plain {
            let units = units(requests, &outcomes, &HashMap::new());
            let mut conn = self.pool.acquire().await?;
            let (answers, local) = self
                .writer
                .write(&mut conn, &units, created_at, received)
                .await?;
            (collect(&units, answers), local)
        } else {
            let mut tx = self.pool.begin().await?;
            let claimed_keys = claim_keys(&mut tx, requests, &mut outcomes).await?;
            advance_broadcasts(&mut tx, requests, &mut outcomes).await?;
            claim_schedules(&mut tx, requests, &mut outcomes).await?;
            let expanded = expand_topics(&mut tx, requests, &outcomes).await?;
            let units = units(requests, &outcomes, &expanded);
            let (answers, local) = self
                .writer
                .write(&mut tx, &units, created_at, received)
                .await?;
            let by_request = collect(&units, answers);
            store_responses(&mut tx, requests, &claimed_keys, &by_request).await?;
            mark_delivered(&mut tx, requests, &by_request).await?;
            tx.commit().await?;
            (by_request, local)
        };
        let created = by_request
            .values()
            .flatten()
            .map(|p| p.notifications.len() as u64)
            .sum();
        let outcomes = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, done)| done.unwrap_or_else(|| Ok(by_request.remove(&i).unwrap_or_default())))
            .collect();
        Ok(Committed {
            outcomes,
            local,
            created,
        })
    }
}

/// The parts to write, in request order: each with its recipients, then the
/// subscribers its topics added (`expanded`, by (request, part)).
fn units<'a>(
    requests: &[&'a PublishRequest],
    outcomes: &[Option<Answer>],
    expanded: &HashMap<(usize, usize), Vec<(UserId, TopicName)>>,
) -> Vec<Unit<'a>> {
    let mut units = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        for (j, part) in r.parts.iter().enumerate() {
            let via = |k: usize| part.via.get(k).cloned().flatten();
            let mut recipients: Vec<(UserId, Option<TopicName>)> = part
                .recipients
                .iter()
                .enumerate()
                .map(|(k, u)| (u.clone(), via(k)))
                .collect();
            if let Some(more) = expanded.get(&(i, j)) {
                recipients.extend(more.iter().map(|(u, t)| (u.clone(), Some(t.clone()))));
            }
            units.push(Unit {
                request: i,
                content: &part.content,
                recipients,
            });
        }
    }
    units
}

/// Each request's answers, one per part (in order), from the units'.
fn collect(units: &[Unit<'_>], answers: Vec<Published>) -> HashMap<usize, Vec<Published>> {
    let mut by_request: HashMap<usize, Vec<Published>> = HashMap::new();
    for (unit, answer) in units.iter().zip(answers) {
        by_request.entry(unit.request).or_default().push(answer);
    }
    by_request
}

/// Topics expand to their subscribers in one statement for the whole
/// batch, in the batch's transaction. A user a part names as a recipient
/// gets it as a recipient, not through a topic.
async fn expand_topics(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    outcomes: &[Option<Answer>],
) -> Result<HashMap<(usize, usize), Vec<(UserId, TopicName)>>, sqlx::Error> {
    let mut index: Vec<(usize, usize)> = Vec::new();
    let (mut parts, mut topics, mut positions) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in requests.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        for (j, part) in r.parts.iter().enumerate() {
            if part.topics.is_empty() {
                continue;
            }
            for (pos, topic) in part.topics.iter().enumerate() {
                parts.push(index.len() as i32);
                topics.push(topic.as_str());
                positions.push(pos as i32);
            }
            index.push((i, j));
        }
    }
    let mut expanded: HashMap<(usize, usize), Vec<(UserId, TopicName)>> = HashMap::new();
    if index.is_empty() {
        return Ok(expanded);
    }
    for (part, user, topic) in db::topics::expand(tx, &parts, &topics, &positions).await? {
        let (i, j) = index[part as usize];
        let named = &requests[i].parts[j].recipients;
        let (Ok(user), Ok(topic)) = (UserId::parse(&user), TopicName::parse(&topic)) else {
            continue;
        };
        if !named.contains(&user) {
            expanded.entry((i, j)).or_default().push((user, topic));
        }
    }
    Ok(expanded)
}

/// Claims the free idempotency keys of a batch and answers the requests
/// whose key is taken (a retry gets the stored answer). Returns the indexes
/// of the requests whose key this batch claimed.
async fn claim_keys(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    outcomes: &mut [Option<Answer>],
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
                match s.response.and_then(|r| stored_answer(r.0)) {
                    Some(answers) => Ok(answers),
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

/// A stored answer: the answers of the request's parts (earlier versions
/// stored the one answer of a single publish).
fn stored_answer(value: serde_json::Value) -> Option<Vec<Published>> {
    if value.is_array() {
        serde_json::from_value(value).ok()
    } else {
        serde_json::from_value(value).ok().map(|one| vec![one])
    }
}

/// Broadcast chunks: moves each broadcast's cursor in the batch's
/// transaction. A chunk whose broadcast is no longer at the cursor it was
/// read at (another instance sent it) is dropped, alone. Rows are locked in
/// id order, after idempotency keys and before users, as in every batch.
async fn advance_broadcasts(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    outcomes: &mut [Option<Answer>],
) -> Result<(), sqlx::Error> {
    let mut chunks: Vec<usize> = (0..requests.len())
        .filter(|&i| outcomes[i].is_none() && requests[i].broadcast.is_some())
        .collect();
    chunks.sort_by_key(|&i| requests[i].broadcast.as_ref().map(|b| b.id));
    for i in chunks {
        let r = requests[i];
        let b = r.broadcast.as_ref().expect("a broadcast chunk");
        let sent = r.parts.iter().map(|p| p.recipients.len() as i64).sum();
        if !db::broadcasts::advance(tx, b.id, b.from.as_deref(), &b.to, sent).await? {
            outcomes[i] = Some(Err(InboxError::Rejected(
                "this broadcast chunk was already sent",
            )));
        }
    }
    Ok(())
}

/// Schedules coming due: claimed with `FOR UPDATE SKIP LOCKED` in the
/// batch's transaction. One that is no longer scheduled (delivered or
/// canceled), or that someone else holds (a cancel, another instance's
/// delivery), is dropped from this batch.
async fn claim_schedules(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    outcomes: &mut [Option<Answer>],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = (0..requests.len())
        .filter(|&i| outcomes[i].is_none())
        .filter_map(|i| requests[i].schedule)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let claimed: HashSet<Uuid> = db::schedules::claim(tx, &ids).await?.into_iter().collect();
    for (i, r) in requests.iter().enumerate() {
        if let Some(id) = r.schedule
            && outcomes[i].is_none()
            && !claimed.contains(&id)
        {
            outcomes[i] = Some(Err(InboxError::Rejected(
                "this schedule is not due for delivery here",
            )));
        }
    }
    Ok(())
}

/// Marks the delivered schedules, with their answers, in the batch's
/// transaction.
async fn mark_delivered(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    answers: &HashMap<usize, Vec<Published>>,
) -> Result<(), sqlx::Error> {
    let mut ids = Vec::new();
    let mut results = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if let (Some(id), Some(answer)) = (r.schedule, answers.get(&i)) {
            ids.push(id);
            let one = answer.first().cloned().unwrap_or_default();
            results.push(serde_json::to_string(&one).expect("serializes"));
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    db::schedules::delivered(tx, &ids, &results).await
}

/// Remembers the answers of newly claimed idempotency keys.
async fn store_responses(
    tx: &mut sqlx::PgConnection,
    requests: &[&PublishRequest],
    claimed_keys: &[usize],
    answers: &HashMap<usize, Vec<Published>>,
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
        .map(|i| {
            let answer = answers.get(i).cloned().unwrap_or_default();
            serde_json::to_string(&answer).expect("serializes")
        })
        .collect();
    db::idempotency::store_responses(tx, &publishers, &keys, &responses).await
}

struct Committed {
    outcomes: Vec<Answer>,
    local: crate::inbox::batch_write::LocalEvents,
    /// Notifications created.
    created: u64,
}

fn is_retryable(e: &sqlx::Error) -> bool {
    // 40001 serialization failure, 40P01 deadlock: the batch can simply rerun.
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}
