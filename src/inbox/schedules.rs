//! Scheduled publishes. A schedule is stored when accepted and delivered by
//! whichever instance finds it due: `deliver_due` hands it to the group
//! commit, whose transaction claims it (`FOR UPDATE SKIP LOCKED`), creates
//! the notifications and marks it delivered, all or nothing. A cancel takes
//! the same row lock, so a schedule ends delivered or canceled, never both.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db;
use crate::db::schedules::Schedule;
use crate::domain::{UserId, now_micros};
use crate::inbox::InboxError;
use crate::inbox::group_commit::GroupCommit;
use crate::inbox::publishing::{IdempotencyKey, Part, PublishRequest};

#[derive(Clone)]
pub struct Schedules {
    pool: PgPool,
}

/// Who asks: a publisher sees only its own schedules, an administrator all.
pub struct Asker<'a> {
    pub user: &'a UserId,
    pub admin: bool,
}

impl Schedules {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Stores `part` for delivery at `deliver_at`. With an idempotency key
    /// the schedule's id comes from the publisher and the key, so a retry
    /// finds the first one (and the same key with another request is
    /// refused) rather than scheduling it twice.
    pub async fn create(
        &self,
        publisher: &UserId,
        deliver_at: DateTime<Utc>,
        part: &Part,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<Schedule, InboxError> {
        let id = match idempotency {
            Some(k) => k.id_for("schedule", publisher),
            None => Uuid::now_v7(),
        };
        let request = part.to_stored();
        let who = publisher.as_str();
        if let Some(created) =
            db::schedules::create(&self.pool, id, who, deliver_at, &request).await?
        {
            return Ok(created);
        }
        if !db::schedules::same(&self.pool, id, who, deliver_at, &request).await? {
            return Err(InboxError::Rejected(
                "this Idempotency-Key was used with a different request body",
            ));
        }
        // The first answer again, as created (its progress is at
        // `GET /v1/schedules/{id}`).
        let first = db::schedules::get(&self.pool, id)
            .await?
            .ok_or(InboxError::NotFound("no such schedule"))?;
        Ok(Schedule {
            status: "scheduled".into(),
            notifications: None,
            skipped: None,
            ..first
        })
    }

    pub async fn get(&self, asker: Asker<'_>, id: Uuid) -> Result<Schedule, InboxError> {
        db::schedules::get(&self.pool, id)
            .await?
            .filter(|s| asker.admin || s.created_by == asker.user.as_str())
            .ok_or(InboxError::NotFound("no such schedule"))
    }

    /// Cancels a schedule that has not been delivered. Canceling it again
    /// changes nothing.
    pub async fn cancel(&self, asker: Asker<'_>, id: Uuid) -> Result<(), InboxError> {
        let schedule = self.get(asker, id).await?;
        if schedule.status == "canceled" || db::schedules::cancel(&self.pool, id).await? {
            return Ok(());
        }
        // Delivered meanwhile (or before).
        Err(InboxError::Conflict(
            "this schedule was delivered already and cannot be canceled",
        ))
    }

    /// Delivers up to `limit` due schedules through the group commit;
    /// returns how many it handed over.
    pub async fn deliver_due(
        &self,
        publisher: &GroupCommit,
        limit: i64,
    ) -> Result<usize, InboxError> {
        let due = db::schedules::due(&self.pool, now_micros(), limit).await?;
        let n = due.len();
        let deliveries = due.into_iter().filter_map(|d| {
            let part = match Part::from_stored(d.request.0) {
                Ok(part) => part,
                Err(e) => {
                    tracing::error!(schedule = %d.id, error = %e, "a stored schedule is unreadable");
                    return None;
                }
            };
            let publisher_id = UserId::parse(&d.created_by).ok()?;
            let request = PublishRequest {
                schedule: Some(d.id),
                ..PublishRequest::single(publisher_id, part)
            };
            Some(async move {
                match publisher.publish(request).await {
                    // Claimed elsewhere, or canceled: nothing to do here.
                    Ok(_) | Err(InboxError::Rejected(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            })
        });
        for result in join_all(deliveries).await {
            result?;
        }
        Ok(n)
    }

    /// The number scheduled, and how late the oldest due one is.
    pub async fn backlog(&self) -> Result<(i64, f64), InboxError> {
        Ok(db::schedules::backlog(&self.pool).await?)
    }
}
