//! What time does to users' centers, as events like any other: a snooze
//! that ends emits `unsnoozed`, a notification that expires (or that
//! retention ages out) leaves with `expired`. The claiming and the
//! exactly-once argument are in `db::timers`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use crate::db;
use crate::db::timers::{Due, Firing};
use crate::domain::event::{Event, EventKind};
use crate::domain::{UserId, now_micros};
use crate::inbox::{Inbox, InboxError};
use crate::live::wakeup;

impl Inbox {
    /// Fires what is due now, up to `limit` snoozes and `limit` expiries;
    /// returns how many events it emitted.
    pub async fn fire_due(&self, limit: i64) -> Result<usize, InboxError> {
        let now = now_micros();
        let mut tx = self.pool.begin().await?;
        let due = db::timers::claim_due(&mut tx, now, limit).await?;
        self.fire(tx, due, now, false).await
    }

    /// Removes up to `limit` notifications created before `cutoff`, each
    /// with its `expired` event, and moves the users' retention horizons
    /// past them. Returns how many it removed.
    pub async fn purge_aged(&self, cutoff: DateTime<Utc>, limit: i64) -> Result<usize, InboxError> {
        let now = now_micros();
        let mut tx = self.pool.begin().await?;
        let aged = db::timers::claim_aged(&mut tx, cutoff, limit).await?;
        let due = aged.into_iter().map(|d| (d, Firing::Expire)).collect();
        self.fire(tx, due, now, true).await
    }

    async fn fire(
        &self,
        mut tx: Transaction<'_, Postgres>,
        due: Vec<(Due, Firing)>,
        now: DateTime<Utc>,
        move_horizons: bool,
    ) -> Result<usize, InboxError> {
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut users: Vec<&str> = due.iter().map(|(d, _)| d.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        // Busy users wait for the next round (see `db::timers`).
        let locked: HashSet<String> = db::timers::lock_free_users(&mut tx, &users)
            .await?
            .into_iter()
            .collect();
        let ready: Vec<(&Due, Firing)> = due
            .iter()
            .filter(|(d, _)| locked.contains(&d.user_id))
            .map(|(d, f)| (d, *f))
            .collect();
        if ready.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let fired = db::timers::fire(&mut tx, &ready, now).await?;
        if move_horizons {
            let users: Vec<&str> = fired.iter().map(|f| f.user_id.as_str()).collect();
            let seqs: Vec<i64> = fired.iter().map(|f| f.notification_seq).collect();
            db::timers::move_horizons(&mut tx, &users, &seqs).await?;
        }
        let mut per_user: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
        for f in &fired {
            let kind = EventKind::parse(&f.kind).unwrap_or(EventKind::Expired);
            per_user.entry(&f.user_id).or_default().push(Event {
                seq: f.seq,
                kind,
                data: f.data.as_str().into(),
                published_at: None,
            });
        }
        let wakes = per_user
            .iter()
            .map(|(u, events)| (u.to_string(), events.last().map_or(0, |e| e.seq)));
        db::events::notify(&mut tx, &wakeup::encode(&self.instance, wakes)).await?;
        tx.commit().await?;
        for f in &fired {
            metrics::counter!("herald_timer_events_total", "kind" => f.kind.clone()).increment(1);
        }
        for (user, events) in per_user {
            if let Ok(user) = UserId::parse(user) {
                let last = events.last().map_or(0, |e| e.seq);
                self.hub.wake(&user, last, Some(Arc::from(events)));
            }
        }
        Ok(fired.len())
    }
}
