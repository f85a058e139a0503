//! The schedule loop: every `timers.poll_ms`, each instance delivers what
//! is due. Instances share the work through the database's row locks, so a
//! schedule is delivered once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::inbox::group_commit::GroupCommit;
use crate::inbox::schedules::Schedules;
use crate::settings::TimerSettings;

pub async fn run(
    schedules: Schedules,
    publisher: GroupCommit,
    settings: TimerSettings,
    shutdown: CancellationToken,
) {
    let period = Duration::from_millis(settings.poll_ms);
    super::every(period, shutdown, || async {
        loop {
            match schedules.deliver_due(&publisher, settings.batch).await {
                Ok(n) if n as i64 >= settings.batch => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "schedules: delivery failed; retrying");
                    break;
                }
            }
        }
        match schedules.backlog().await {
            Ok((pending, lag)) => {
                metrics::gauge!("herald_schedules_pending").set(pending as f64);
                metrics::gauge!("herald_schedules_due_lag_seconds").set(lag);
            }
            Err(e) => tracing::debug!(error = %e, "schedules: backlog unknown"),
        }
    })
    .await
}
