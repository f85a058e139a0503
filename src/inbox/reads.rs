//! What a user reads of their own center: pages of notifications and single
//! notifications. A page carries `last_seq` from the same snapshot, so a
//! client that resumes its stream from there misses nothing.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::db;
use crate::db::notifications::ListFilter;
use crate::domain::event::Notification;
use crate::domain::{TopicName, UserId};
use crate::inbox::{Inbox, InboxError};

#[derive(Debug, Serialize)]
pub struct Page {
    pub items: Vec<Notification>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<i64>,
    /// The user's current seq: resume the stream from here with no gap.
    pub last_seq: i64,
    /// The user's totals, whatever the filter.
    pub unread_count: i64,
    pub unseen_count: i64,
}

/// `GET /v1/me/counts`.
#[derive(Debug, Serialize)]
pub struct CountsAnswer {
    pub last_seq: i64,
    pub unread: i64,
    pub unseen: i64,
    pub total: i64,
    pub archived: i64,
    pub snoozed: i64,
    pub categories: BTreeMap<String, CategoryCounts>,
}

#[derive(Debug, Serialize)]
pub struct CategoryCounts {
    pub unread: i64,
    pub unseen: i64,
    pub total: i64,
}

impl Inbox {
    /// One page of a user's notifications with `last_seq` and `unread_count`
    /// from the same snapshot, so resuming from `last_seq` loses nothing.
    pub async fn page(&self, user: &UserId, filter: ListFilter<'_>) -> Result<Page, InboxError> {
        let mut tx = db::snapshot(&self.pool).await?;
        let (last_seq, counts) = db::notifications::summary(&mut tx, user).await?;
        let limit = filter.limit;
        let mut items = db::notifications::list(
            &mut tx,
            user,
            &ListFilter {
                limit: limit + 1,
                ..filter
            },
        )
        .await?;
        tx.commit().await?;
        let next_before = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|n| n.seq)
        } else {
            None
        };
        Ok(Page {
            items,
            next_before,
            last_seq,
            unread_count: counts.unread,
            unseen_count: counts.unseen,
        })
    }

    /// The user's counts at `last_seq`, from one snapshot: unread and unseen
    /// as every event carries them, and the rest counted per category.
    pub async fn counts(&self, user: &UserId) -> Result<CountsAnswer, InboxError> {
        let mut tx = db::snapshot(&self.pool).await?;
        let (last_seq, counts) = db::notifications::summary(&mut tx, user).await?;
        let per_category = db::notifications::category_counts(&mut tx, user).await?;
        tx.commit().await?;
        let mut answer = CountsAnswer {
            last_seq,
            unread: counts.unread,
            unseen: counts.unseen,
            total: 0,
            archived: 0,
            snoozed: 0,
            categories: BTreeMap::new(),
        };
        for c in per_category {
            answer.total += c.total;
            answer.archived += c.archived;
            answer.snoozed += c.snoozed;
            if c.unread + c.unseen + c.total > 0 {
                answer.categories.insert(
                    c.category,
                    CategoryCounts {
                        unread: c.unread,
                        unseen: c.unseen,
                        total: c.total,
                    },
                );
            }
        }
        Ok(answer)
    }

    /// How many distinct users `recipients` and the subscribers of `topics`
    /// are, counting no further than `cap`.
    pub async fn audience(
        &self,
        recipients: &[UserId],
        topics: &[TopicName],
        cap: i64,
    ) -> Result<i64, InboxError> {
        let recipients: Vec<&str> = recipients.iter().map(UserId::as_str).collect();
        let topics: Vec<&str> = topics.iter().map(TopicName::as_str).collect();
        let mut conn = self.pool.acquire().await?;
        Ok(db::topics::audience_size(&mut conn, &recipients, &topics, cap).await?)
    }

    /// One notification of the user's, if it is in their center.
    pub async fn get(&self, user: &UserId, id: Uuid) -> Result<Notification, InboxError> {
        let mut conn = self.pool.acquire().await?;
        db::notifications::get(&mut conn, user, id)
            .await?
            .ok_or(InboxError::NotFound("no such notification"))
    }
}
