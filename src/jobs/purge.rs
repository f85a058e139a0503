//! The background purge: small batches, so it never holds long locks.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::retention::{self, AgedLog};
use crate::inbox::{Inbox, InboxError};
use crate::settings::RetentionSettings;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub events: u64,
    pub notifications: u64,
    pub idempotency_keys: u64,
}

pub async fn run(
    pool: PgPool,
    inbox: Inbox,
    settings: RetentionSettings,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(settings.interval_secs.max(1)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match purge_once(&pool, &inbox, &settings).await {
            Ok(p) if p != Purged::default() => tracing::info!(?p, "retention purge"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
    }
}

/// Purges everything past its horizon now, one batch per statement.
/// Notifications leave through `inbox`, each with its `expired` event, so
/// users' counts and devices follow.
pub async fn purge_once(
    pool: &PgPool,
    inbox: &Inbox,
    settings: &RetentionSettings,
) -> Result<Purged, InboxError> {
    let now = Utc::now();
    let events_cutoff = now - chrono::Duration::days(settings.events_days);
    let keys_cutoff = now - chrono::Duration::hours(settings.idempotency_hours);
    let mut purged = Purged::default();
    let mut conn = pool.acquire().await?;
    loop {
        let n = retention::purge_before(&mut conn, AgedLog::Events, events_cutoff, settings.batch)
            .await?;
        purged.events += n;
        if n < settings.batch as u64 {
            break;
        }
    }
    if settings.notifications_days > 0 {
        let cutoff = now - chrono::Duration::days(settings.notifications_days);
        loop {
            let n = inbox.purge_aged(cutoff, settings.batch).await? as u64;
            purged.notifications += n;
            if n < settings.batch as u64 {
                break;
            }
        }
    }
    loop {
        let n = retention::purge_idempotency_keys(&mut conn, keys_cutoff, settings.batch).await?;
        purged.idempotency_keys += n;
        if n < settings.batch as u64 {
            break;
        }
    }
    Ok(purged)
}
