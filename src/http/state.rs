//! What every request handler shares.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::http::limits::PublishLimiter;
use crate::http::readiness::Readiness;
use crate::inbox::Inbox;
use crate::inbox::broadcaster::Broadcaster;
use crate::inbox::group_commit::GroupCommit;
use crate::inbox::schedules::Schedules;
use crate::inbox::webhooks::Webhooks;
use crate::live::Hub;
use crate::live::subscription::Subscriptions;
use crate::settings::Settings;

pub struct AppState {
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    pub publisher: GroupCommit,
    /// A user's own changes and reads of their center.
    pub inbox: Inbox,
    /// Opens live connections (SSE, WebSocket) and serves long-polls.
    pub live: Arc<Subscriptions>,
    pub settings: Arc<Settings>,
    /// This process's id in wake-ups.
    pub instance: String,
    /// When this process started (listed in `/v1/admin/stats`).
    pub started_at: DateTime<Utc>,
    /// Wakes the broadcast worker when a broadcast is created.
    pub broadcaster: Broadcaster,
    /// Scheduled publishes.
    pub schedules: Schedules,
    /// Webhook endpoints (their deliveries are `jobs::webhooks`).
    pub webhooks: Webhooks,
    pub publish_limit: PublishLimiter,
    /// `/readyz` checks, one at a time.
    pub readiness: Readiness,
}
