//! Each instance records that it is alive in `instances`, so
//! `/v1/admin/stats` can list the running ones.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::db::instances::Instance;
use crate::domain::now_micros;

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
    super::every(INTERVAL, shutdown, || async {
        if let Err(e) = db::instances::heartbeat(&pool, &instance, started_at).await {
            tracing::warn!(error = %e, "cannot record this instance as alive");
            return;
        }
        if let Err(e) = db::instances::forget_stale(&pool, FORGET_AFTER_SECS).await {
            tracing::warn!(error = %e, "cannot remove instances that are gone");
        }
    })
    .await;
    // A clean stop leaves the list at once rather than after a minute.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        db::instances::forget(&pool, &instance),
    )
    .await;
}

/// The instances seen alive within [`ALIVE_SECS`], oldest first. `me` is
/// among them even before its first heartbeat is stored: it is answering.
pub async fn running(
    pool: &PgPool,
    me: &str,
    started_at: DateTime<Utc>,
) -> Result<Vec<Instance>, sqlx::Error> {
    let mut instances = db::instances::seen_within(pool, ALIVE_SECS).await?;
    if !instances.iter().any(|i| i.id == me) {
        instances.push(Instance {
            id: me.to_owned(),
            started_at,
            last_seen_at: now_micros(),
        });
        instances.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    }
    Ok(instances)
}
