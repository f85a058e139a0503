//! A user's message center: the state changes a user makes to their own
//! notifications. Each one that changes something appends its event in the
//! same transaction, after taking the user's seq (and so the user's row
//! lock) first, the same order publishing locks in.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::db;
use crate::domain::UserId;
use crate::domain::event::{Event, EventKind, Notification};
use crate::domain::now_micros;
use crate::inbox::{Inbox, InboxError};
use crate::live::wakeup;

fn not_found() -> InboxError {
    InboxError::NotFound("no such notification")
}

/// Appends the event, wakes other instances and commits; then wakes this
/// process's connections with the event itself.
async fn commit_change(
    inbox: &Inbox,
    mut tx: Transaction<'_, Postgres>,
    user: &UserId,
    seq: i64,
    kind: EventKind,
    data: serde_json::Value,
) -> Result<(), InboxError> {
    db::events::append(&mut tx, user, seq, kind, &data).await?;
    let wake = wakeup::encode(&inbox.instance, [(user.to_string(), seq)]);
    db::events::notify(&mut tx, &wake).await?;
    tx.commit().await?;
    let event = Event {
        seq,
        kind,
        data: data.to_string().into(),
        published_at: None,
    };
    inbox.hub.wake(user, seq, Some(Arc::from([event])));
    Ok(())
}

impl Inbox {
    /// Marks a notification read (`Some(now)`) or unread (`None`). Doing it twice
    /// changes nothing and emits nothing.
    pub async fn set_read(
        &self,
        user: &UserId,
        id: Uuid,
        read: bool,
    ) -> Result<Notification, InboxError> {
        let mut tx = self.pool.begin().await?;
        let Some(seq) = db::users::reserve_next_seq(&mut tx, user).await? else {
            return Err(not_found());
        };
        let read_at = read.then(now_micros);
        match db::notifications::set_read_at(&mut tx, user, id, read_at).await? {
            Some(n) => {
                let kind = if read {
                    EventKind::Read
                } else {
                    EventKind::Unread
                };
                commit_change(
                    self,
                    tx,
                    user,
                    seq,
                    kind,
                    json!({ "id": id, "read_at": read_at }),
                )
                .await?;
                Ok(n)
            }
            None => {
                tx.rollback().await?;
                let mut conn = self.pool.acquire().await?;
                db::notifications::get(&mut conn, user, id)
                    .await?
                    .ok_or_else(not_found)
            }
        }
    }

    /// Marks everything up to the user's current seq read. The user's row lock
    /// is held, so no publish can slip in between choosing `up_to_seq` and
    /// updating.
    pub async fn read_all(&self, user: &UserId) -> Result<ReadAll, InboxError> {
        let read_at = now_micros();
        let mut tx = self.pool.begin().await?;
        let Some(seq) = db::users::reserve_next_seq(&mut tx, user).await? else {
            return Ok(ReadAll {
                up_to_seq: 0,
                read_at,
                updated: 0,
            });
        };
        let up_to_seq = seq - 1;
        let updated = db::notifications::mark_all_read(&mut tx, user, up_to_seq, read_at).await?;
        if updated == 0 {
            tx.rollback().await?;
        } else {
            let data = json!({ "up_to_seq": up_to_seq, "read_at": read_at });
            commit_change(self, tx, user, seq, EventKind::ReadAll, data).await?;
        }
        Ok(ReadAll {
            up_to_seq,
            read_at,
            updated,
        })
    }

    pub async fn delete(&self, user: &UserId, id: Uuid) -> Result<(), InboxError> {
        let mut tx = self.pool.begin().await?;
        let Some(seq) = db::users::reserve_next_seq(&mut tx, user).await? else {
            return Err(not_found());
        };
        if !db::notifications::delete(&mut tx, user, id).await? {
            tx.rollback().await?;
            return Err(not_found());
        }
        commit_change(self, tx, user, seq, EventKind::Deleted, json!({ "id": id })).await
    }
}

#[derive(Debug, Serialize)]
pub struct ReadAll {
    /// Everything with seq <= this is read.
    pub up_to_seq: i64,
    pub read_at: DateTime<Utc>,
    /// How many notifications this call marked read.
    pub updated: u64,
}
