//! The reads a live connection makes — where to start, then the events it
//! missed — and the reads of long-polls, shared between connections:
//! concurrent ones go to the database together (see [`crate::live::coalesce`]).
//! A replay storm of thousands of reconnecting clients then costs tens of
//! queries instead of thousands, and so does a wake-up from another instance
//! that reaches many streams or waiting polls at once.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::db;
use crate::db::events::LogPage;
use crate::db::users::Positions;
use crate::domain::UserId;
use crate::domain::event::Event;
use crate::live::coalesce::{BatchFailed, Batcher};

/// Concurrent batches of each kind: enough to keep reads flowing while one
/// batch waits on the database, few enough to leave the pool to publishers.
const WORKERS: usize = 4;
/// Long-polls are fewer and cheaper to delay than replays.
const POLL_WORKERS: usize = 2;
/// Most requests answered by one query.
const MAX_BATCH: usize = 500;
/// Bytes of log pages being read or handed over at once, across every
/// connection and poll: with each page bounded by bytes too, a replay storm
/// of maximal notifications holds this much, not a page per connection.
const MAX_IN_FLIGHT_BYTES: i64 = 32 << 20;

/// A long-poll's read: up to `limit` events after `after`.
struct PollRead {
    user: UserId,
    after: i64,
    limit: i64,
}

#[derive(Clone)]
pub struct LogReader {
    positions: Batcher<UserId, Positions>,
    reads: Batcher<(UserId, i64), LogPage>,
    polls: Batcher<PollRead, (Vec<Event>, i64)>,
    /// One permit per page that may be in flight.
    in_flight: Arc<Semaphore>,
}

impl LogReader {
    /// `page` and `page_bytes`: the most events, and about the most bytes,
    /// one read returns for one connection.
    pub fn start(pool: PgPool, page: i64, page_bytes: i64) -> Self {
        let positions = Batcher::start(WORKERS, MAX_BATCH, {
            let pool = pool.clone();
            move |users: Vec<UserId>| {
                let pool = pool.clone();
                async move {
                    let mut conn = pool.acquire().await?;
                    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
                    let found = db::users::positions_many(&mut conn, &names).await?;
                    let unknown: Vec<&str> = names
                        .iter()
                        .zip(&found)
                        .filter(|(_, p)| p.is_none())
                        .map(|(n, _)| *n)
                        .collect();
                    if !unknown.is_empty() {
                        db::users::ensure_known(&mut conn, &unknown).await?;
                    }
                    Ok(found
                        .into_iter()
                        .map(|p| {
                            p.unwrap_or(Positions {
                                last_seq: 0,
                                purged_seq: 0,
                                counts: Default::default(),
                            })
                        })
                        .collect())
                }
            }
        });
        let reads = Batcher::start(WORKERS, MAX_BATCH, {
            let pool = pool.clone();
            move |readers: Vec<(UserId, i64)>| {
                let pool = pool.clone();
                async move {
                    let mut conn = pool.acquire().await?;
                    let readers: Vec<(&str, i64, i64)> = readers
                        .iter()
                        .map(|(u, a)| (u.as_str(), *a, page))
                        .collect();
                    db::events::read_after_many(&mut conn, &readers, page_bytes).await
                }
            }
        });
        let polls = Batcher::start(POLL_WORKERS, MAX_BATCH, move |reads: Vec<PollRead>| {
            let pool = pool.clone();
            async move {
                // One snapshot for the events and the seqs: a poll answered
                // with no events must be able to trust its `last_seq`.
                let mut tx = db::snapshot(&pool).await?;
                let readers: Vec<(&str, i64, i64)> = reads
                    .iter()
                    .map(|r| (r.user.as_str(), r.after, r.limit))
                    .collect();
                let pages = db::events::read_after_many(&mut tx, &readers, page_bytes).await?;
                let users: Vec<&str> = reads.iter().map(|r| r.user.as_str()).collect();
                let positions = db::users::positions_many(&mut tx, &users).await?;
                tx.commit().await?;
                Ok(pages
                    .into_iter()
                    .zip(positions)
                    .map(|(page, p)| (page.events, p.map_or(0, |p| p.last_seq)))
                    .collect())
            }
        });
        let pages_in_flight = (MAX_IN_FLIGHT_BYTES / page_bytes.max(1)).max(1) as usize;
        Self {
            positions,
            reads,
            polls,
            in_flight: Arc::new(Semaphore::new(pages_in_flight)),
        }
    }

    /// Where `user`'s log stands; a user not seen before becomes known
    /// (broadcasts reach everyone who has opened a connection).
    pub async fn positions(&self, user: &UserId) -> Result<Positions, BatchFailed> {
        self.positions.call(user.clone()).await
    }

    /// Up to a page of `user`'s events after `after`, in seq order.
    pub async fn read_after(&self, user: &UserId, after: i64) -> Result<LogPage, BatchFailed> {
        let _page = self.in_flight.acquire().await.expect("never closed");
        self.reads.call((user.clone(), after)).await
    }

    /// Up to `limit` events of `user` after `after`, and the user's current
    /// seq, from one snapshot: when no events come back, nothing visible lies
    /// between `after` and that seq. For long-polls.
    pub async fn read_with_last_seq(
        &self,
        user: &UserId,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<Event>, i64), BatchFailed> {
        let _page = self.in_flight.acquire().await.expect("never closed");
        self.polls
            .call(PollRead {
                user: user.clone(),
                after,
                limit,
            })
            .await
    }
}
