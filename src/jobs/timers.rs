//! The timer loop: every `timers.poll_ms`, each instance fires what is
//! due (snoozes that end, notifications that expire). Instances share the
//! work through the database's row locks, so each timer fires once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::inbox::Inbox;
use crate::settings::TimerSettings;

pub async fn run(inbox: Inbox, settings: TimerSettings, shutdown: CancellationToken) {
    let period = Duration::from_millis(settings.poll_ms);
    super::every(period, shutdown, || async {
        // A full round may leave more due: go again at once.
        loop {
            match inbox.fire_due(settings.batch).await {
                Ok(n) if n as i64 >= settings.batch => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "timers: firing failed; retrying");
                    break;
                }
            }
        }
    })
    .await
}
