//! What every request handler shares.

use crate::live::log_reader::LogReader;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::http::limits::PublishLimiter;
use crate::http::readiness::Readiness;
use crate::inbox::broadcaster::Broadcaster;
use crate::inbox::group_commit::Publisher;
use crate::live::Hub;
use crate::settings::Settings;

pub struct AppState {
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    pub publisher: Publisher,
    /// Live connections' reads of the log, batched across connections.
    pub log: LogReader,
    pub settings: Arc<Settings>,
    /// Cancelled on shutdown: live connections end so clients reconnect elsewhere.
    pub shutdown: CancellationToken,
    /// This process's id in wake-ups.
    pub instance: String,
    /// When this process started (listed in `/v1/admin/stats`).
    pub started_at: DateTime<Utc>,
    /// Wakes the broadcast worker when a broadcast is created.
    pub broadcaster: Broadcaster,
    pub publish_limit: PublishLimiter,
    /// `/readyz` checks, one at a time.
    pub readiness: Readiness,
}
