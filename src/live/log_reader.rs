//! The reads a live connection makes — where to start, then the events it
//! missed — shared between connections: concurrent ones go to the database
//! together (see [`crate::live::coalesce`]). A replay storm of thousands of
//! reconnecting clients then costs tens of queries instead of thousands, and
//! so does a wake-up from another instance that reaches many streams at once.

use sqlx::PgPool;

use crate::db;
use crate::db::users::Positions;
use crate::domain::UserId;
use crate::domain::event::Event;
use crate::live::coalesce::{BatchFailed, Batcher};

/// Concurrent batches of each kind: enough to keep reads flowing while one
/// batch waits on the database, few enough to leave the pool to publishers.
const WORKERS: usize = 4;
/// Most requests answered by one query.
const MAX_BATCH: usize = 500;

#[derive(Clone)]
pub struct LogReader {
    pool: PgPool,
    positions: Batcher<UserId, Positions>,
    reads: Batcher<(UserId, i64), Vec<Event>>,
}

impl LogReader {
    /// `page`: the most events one read returns for one connection.
    pub fn start(pool: PgPool, page: i64) -> Self {
        let positions = {
            let pool = pool.clone();
            Batcher::start(WORKERS, MAX_BATCH, move |users: Vec<UserId>| {
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
                            })
                        })
                        .collect())
                }
            })
        };
        let reads = Batcher::start(WORKERS, MAX_BATCH, {
            let pool = pool.clone();
            move |readers: Vec<(UserId, i64)>| {
                let pool = pool.clone();
                async move {
                    let mut conn = pool.acquire().await?;
                    let readers: Vec<(&str, i64)> =
                        readers.iter().map(|(u, a)| (u.as_str(), *a)).collect();
                    db::events::read_after_many(&mut conn, &readers, page).await
                }
            }
        });
        Self {
            pool,
            positions,
            reads,
        }
    }

    /// Where `user`'s log stands; a user not seen before becomes known
    /// (broadcasts reach everyone who has opened a connection).
    pub async fn positions(&self, user: &UserId) -> Result<Positions, BatchFailed> {
        self.positions.call(user.clone()).await
    }

    /// Up to a page of `user`'s events after `after`, in seq order.
    pub async fn read_after(&self, user: &UserId, after: i64) -> Result<Vec<Event>, BatchFailed> {
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
        let read = async {
            let mut tx = db::snapshot(&self.pool).await?;
            let events = db::events::read_after(&mut tx, user, after, limit).await?;
            let last_seq = db::users::positions(&mut tx, user)
                .await?
                .map_or(0, |p| p.last_seq);
            tx.commit().await?;
            Ok::<_, sqlx::Error>((events, last_seq))
        };
        read.await.map_err(|e| BatchFailed::from(&e))
    }
}
