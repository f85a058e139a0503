//! A user's message center: the state changes a user makes to their own
//! notifications. Each one that changes something appends its event in the
//! same transaction, after taking the user's seq (and so the user's row
//! lock) first, the same order publishing locks in. The statement that
//! makes the change also moves the user's counts, and the event carries
//! them.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::db;
use crate::db::changes::{Bulk, Change};
use crate::domain::event::{Counts, Event, EventKind, Notification, with_counts};
use crate::domain::{ActionId, Category, UserId, now_micros};
use crate::inbox::{Inbox, InboxError};
use crate::live::wakeup;

fn not_found() -> InboxError {
    InboxError::NotFound("no such notification")
}

/// The longest snooze.
pub const MAX_SNOOZE_DAYS: i64 = 30;

/// What a user can do to one of their notifications.
#[derive(Debug, Clone)]
pub enum UserChange {
    Read,
    Unread,
    Seen,
    Archive,
    Unarchive,
    /// Out of the inbox until then; in the future, at most 30 days ahead.
    Snooze(DateTime<Utc>),
    Unsnooze,
    /// Take the action with this id: the first one wins.
    Act(ActionId),
}

impl UserChange {
    fn kind(&self) -> EventKind {
        match self {
            Self::Read => EventKind::Read,
            Self::Unread => EventKind::Unread,
            Self::Seen => EventKind::Seen,
            Self::Archive => EventKind::Archived,
            Self::Unarchive => EventKind::Unarchived,
            Self::Snooze(_) => EventKind::Snoozed,
            Self::Unsnooze => EventKind::Unsnoozed,
            Self::Act(_) => EventKind::Action,
        }
    }

    /// The event's data (without counts), from the notification after it.
    fn event_data(&self, n: &Notification) -> Value {
        match self {
            Self::Read | Self::Unread => json!({ "id": n.id, "read_at": n.read_at }),
            Self::Seen => json!({ "id": n.id, "seen_at": n.seen_at }),
            Self::Archive => json!({ "id": n.id, "archived_at": n.archived_at }),
            Self::Snooze(until) => json!({ "id": n.id, "until": until }),
            Self::Unarchive | Self::Unsnooze => json!({ "id": n.id }),
            Self::Act(action) => json!({
                "id": n.id,
                "action_id": action.as_str(),
                "at": n.action_taken.as_ref().map(|t| t.at),
                "read_at": n.read_at,
            }),
        }
    }
}

/// The bulk operations; each applies to the notifications with seq <=
/// `up_to_seq` (of one category, when given) and emits one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkOp {
    ReadAll,
    SeenAll,
    ArchiveAll,
    DeleteAll,
}

/// Appends the event (its data with the counts after it), wakes other
/// instances and commits; then wakes this process's connections with the
/// event itself.
pub(super) async fn commit_change(
    inbox: &Inbox,
    mut tx: Transaction<'_, Postgres>,
    user: &UserId,
    seq: i64,
    kind: EventKind,
    data: Value,
    counts: Counts,
) -> Result<(), InboxError> {
    let data = with_counts(data.to_string(), counts);
    db::events::append(&mut tx, user, seq, kind, &data).await?;
    let wake = wakeup::encode(&inbox.instance, [(user.to_string(), seq)]);
    db::events::notify(&mut tx, &wake).await?;
    tx.commit().await?;
    let event = Event {
        seq,
        kind,
        data: data.into(),
        published_at: None,
    };
    inbox.hub.wake(user, seq, Some(Arc::from([event])));
    Ok(())
}

impl Inbox {
    /// Applies a user's change to one notification and answers the
    /// notification after it. A change that is already so (read twice,
    /// unarchive of one not archived) changes nothing and emits nothing.
    pub async fn change(
        &self,
        user: &UserId,
        id: Uuid,
        change: UserChange,
    ) -> Result<Notification, InboxError> {
        let at = now_micros();
        if let UserChange::Snooze(until) = change {
            if until <= at {
                return Err(InboxError::Invalid("until must be in the future".into()));
            }
            if until > at + Duration::days(MAX_SNOOZE_DAYS) {
                return Err(InboxError::Invalid(format!(
                    "until must be at most {MAX_SNOOZE_DAYS} days ahead"
                )));
            }
        }
        let mut tx = self.pool.begin().await?;
        let Some(seq) = db::users::reserve_next_seq(&mut tx, user).await? else {
            return Err(not_found());
        };
        let db_change = match &change {
            UserChange::Read => Change::Read(at),
            UserChange::Unread => Change::Unread,
            UserChange::Seen => Change::Seen(at),
            UserChange::Archive => Change::Archive(at),
            UserChange::Unarchive => Change::Unarchive,
            UserChange::Snooze(until) => Change::Snooze(*until),
            UserChange::Unsnooze => Change::Unsnooze,
            UserChange::Act(action) => Change::Act(action.as_str(), at),
        };
        if let Some(changed) = db::changes::apply(&mut tx, user, id, &db_change).await? {
            let data = change.event_data(&changed.notification);
            commit_change(self, tx, user, seq, change.kind(), data, changed.counts).await?;
            return Ok(changed.notification);
        }
        // Nothing changed. Why, is read under the same lock.
        let current = db::notifications::get(&mut tx, user, id).await?;
        tx.rollback().await?;
        let current = current.ok_or_else(not_found)?;
        match change {
            UserChange::Act(_) if current.action_taken.is_some() => Err(InboxError::Conflict(
                "an action was already taken on this notification",
            )),
            UserChange::Act(_) => Err(InboxError::NotFound("this notification has no such action")),
            _ => Ok(current),
        }
    }

    /// Applies a bulk operation up to `up_to_seq` (default: the user's
    /// current seq) and emits its event, even when nothing matched. The
    /// user's row lock is held, so no publish can slip in between choosing
    /// `up_to_seq` and applying it.
    pub async fn bulk(
        &self,
        user: &UserId,
        op: BulkOp,
        category: Option<&Category>,
        up_to_seq: Option<i64>,
    ) -> Result<Value, InboxError> {
        let at = now_micros();
        let mut tx = self.pool.begin().await?;
        let seq = db::users::reserve_next_seq_creating(&mut tx, user).await?;
        let current = seq - 1;
        let up_to_seq = up_to_seq.unwrap_or(current);
        if up_to_seq > current {
            tx.rollback().await?;
            return Err(InboxError::Invalid(format!(
                "up_to_seq {up_to_seq} is above the user's current seq {current}"
            )));
        }
        let category_name = category.map(Category::as_str);
        let (kind, bulk, at_member) = match op {
            BulkOp::ReadAll => (EventKind::ReadAll, Bulk::ReadAll(at), Some("read_at")),
            BulkOp::SeenAll => (EventKind::SeenAll, Bulk::SeenAll(at), Some("seen_at")),
            BulkOp::ArchiveAll => (
                EventKind::ArchivedAll,
                Bulk::ArchiveAll(at),
                Some("archived_at"),
            ),
            BulkOp::DeleteAll => (EventKind::DeletedAll, Bulk::DeleteAll, None),
        };
        let (updated, counts) =
            db::changes::apply_bulk(&mut tx, user, up_to_seq, category_name, bulk).await?;
        let mut data = json!({ "up_to_seq": up_to_seq, "category": category_name });
        if let Some(member) = at_member {
            data[member] = json!(at);
        }
        let mut answer = data.clone();
        answer["updated"] = json!(updated);
        commit_change(self, tx, user, seq, kind, data, counts).await?;
        Ok(answer)
    }

    /// Deletes a notification (the user's own, or by an administrator).
    pub async fn delete(&self, user: &UserId, id: Uuid) -> Result<(), InboxError> {
        let mut tx = self.pool.begin().await?;
        let Some(seq) = db::users::reserve_next_seq(&mut tx, user).await? else {
            return Err(not_found());
        };
        let Some(counts) = db::changes::delete(&mut tx, user, id).await? else {
            tx.rollback().await?;
            return Err(not_found());
        };
        let data = json!({ "id": id });
        commit_change(self, tx, user, seq, EventKind::Deleted, data, counts).await
    }
}
