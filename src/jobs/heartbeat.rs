//! Each instance records that it is alive in `instances`, so
//! `/v1/admin/stats` can list the running ones.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db;

/// How often an instance says it is alive.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// An instance seen this recently counts as running.
pub const ALIVE_SECS: i64 = 60;
/// Rows of instances not seen for this long are removed.
const FORGET_AFTER_SECS: i64 = 24 * 3600;

pub async fn run(
    pool: PgPool,
    instance: String,
    started_at: DateTime<Utc>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = db::instances::heartbeat(&pool, &instance, started_at).await {
            tracing::warn!(error = %e, "cannot record this instance as alive");
            continue;
        }
        if let Err(e) = db::instances::forget_stale(&pool, FORGET_AFTER_SECS).await {
            tracing::warn!(error = %e, "cannot remove instances that are gone");
        }
    }
    // A clean stop leaves the list at once rather than after a minute.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        db::instances::forget(&pool, &instance),
    )
    .await;
}
