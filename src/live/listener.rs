//! LISTEN for other instances' wake-ups. Whenever the listening connection is
//! (re)established, every local subscriber re-reads the log, because
//! notifications sent while it was down are lost for good.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::{Hub, wakeup};
use crate::db::events::CHANNEL;
use crate::domain::UserId;

pub async fn run(pool: PgPool, hub: Arc<Hub>, instance: String, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&pool) => c,
        };
        let mut listener = match connected {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for wake-ups; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        metrics::counter!("herald_listener_connects_total").increment(1);
        tracing::info!("listening for wake-ups");
        // Anything committed while we were not listening is in the log.
        hub.wake_all();
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.try_recv() => r,
            };
            match received {
                Ok(Some(n)) => dispatch(&hub, &instance, n.payload()),
                // Lost and already re-established: catch everyone up.
                Ok(None) => {
                    metrics::counter!("herald_listener_connects_total").increment(1);
                    tracing::warn!("wake-up listener reconnected");
                    hub.wake_all();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up listener failed");
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

fn dispatch(hub: &Hub, instance: &str, payload: &str) {
    let Some(payload) = wakeup::decode(payload) else {
        tracing::warn!("ignoring a malformed wake-up payload");
        return;
    };
    // This instance's own wake-ups too: normally its connections were woken
    // in-process with the events and this one is older news that the hub
    // drops, but when a commit succeeded while its answer was lost (the
    // connection broke on the way back) this is the only wake-up they get.
    for (user, seq) in payload.wakes {
        if let Ok(user) = UserId::parse(&user) {
            hub.wake(&user, seq, None);
        }
    }
    // An administrator's disconnect already ended this instance's
    // connections; doing it again would end those opened since.
    if payload.instance == instance {
        return;
    }
    for user in payload.kicks {
        if let Ok(user) = UserId::parse(&user) {
            hub.kick(&user);
        }
    }
}
