//! The webhook delivery loop, in every instance. It claims the due heads of
//! the outbox (each the earliest undelivered event of one user for one
//! endpoint), sends each in its own task, deletes it on a 2xx and otherwise
//! schedules a retry with exponential backoff and jitter. Instances share
//! the outbox through row locks and leases, so each head is in flight from
//! one instance at a time and a user's events reach an endpoint in seq order.
//!
//! It wakes when the outbox triggers NOTIFY, when a delivery ends (the
//! user's next event may be waiting), and every `webhooks.poll_ms` (retries
//! that came due, a lost NOTIFY).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::webhook_delivery::{Message, Sender};
use crate::db;
use crate::db::webhooks::{Delivery, Target};
use crate::domain::webhook::WebhookSecret;
use crate::settings::WebhookSettings;

pub async fn run(
    pool: PgPool,
    listen_pool: PgPool,
    settings: WebhookSettings,
    shutdown: CancellationToken,
) {
    let sender = match Sender::new(settings.timeout(), settings.allow_private_urls) {
        Ok(sender) => sender,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: no HTTP client; webhooks are not delivered");
            return;
        }
    };
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen(
        listen_pool,
        Arc::clone(&wake),
        settings.poll(),
        shutdown.clone(),
    ));
    let worker = Worker {
        pool,
        sender,
        settings: Arc::new(settings),
        wake,
        slots: HashMap::new(),
    };
    worker.run(shutdown).await;
}

struct Worker {
    pool: PgPool,
    sender: Sender,
    settings: Arc<WebhookSettings>,
    wake: Arc<Notify>,
    /// Per endpoint: this instance's requests in flight to it.
    slots: HashMap<Uuid, Arc<Semaphore>>,
}

impl Worker {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.poll());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.record_backlog().await,
                _ = self.wake.notified() => {}
            }
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "webhooks: claiming deliveries failed; retrying");
            }
        }
    }

    /// Claims what each endpoint has due, as far as its free slots go, and
    /// starts sending it.
    async fn round(&mut self) -> Result<(), sqlx::Error> {
        let targets = db::webhooks::targets(&self.pool).await?;
        self.slots
            .retain(|id, _| targets.iter().any(|target| target.id == *id));
        for target in targets {
            let per_endpoint = self.settings.concurrency_per_endpoint;
            let slots = Arc::clone(
                self.slots
                    .entry(target.id)
                    .or_insert_with(|| Arc::new(Semaphore::new(per_endpoint))),
            );
            let free = slots.available_permits();
            if free == 0 {
                continue;
            }
            let claim = Uuid::new_v4();
            let mut conn = self.pool.acquire().await?;
            let claimed =
                db::webhooks::claim(&mut conn, target.id, free as i64, self.lease_ms(), claim)
                    .await?;
            drop(conn);
            let target = Arc::new(target);
            for delivery in claimed {
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    break;
                };
                tokio::spawn(attempt(
                    self.pool.clone(),
                    self.sender.clone(),
                    Arc::clone(&self.settings),
                    Arc::clone(&target),
                    delivery,
                    claim,
                    Attempt {
                        _permit: permit,
                        wake: Arc::clone(&self.wake),
                    },
                ));
            }
        }
        Ok(())
    }

    /// How long a claim holds a row: past the attempt's timeout with room to
    /// record the outcome, so only a crashed instance's claim runs out.
    fn lease_ms(&self) -> i64 {
        (2 * self.settings.timeout_ms + 1_000) as i64
    }

    async fn record_backlog(&self) {
        match db::webhooks::backlog(&self.pool).await {
            Ok((pending, lag)) => {
                metrics::gauge!("herald_webhook_outbox_pending").set(pending as f64);
                metrics::gauge!("herald_webhook_outbox_lag_seconds").set(lag);
            }
            Err(e) => tracing::debug!(error = %e, "webhooks: backlog unknown"),
        }
    }
}

/// Held while a delivery is in flight: frees its slot and wakes the loop
/// when the delivery ends, however it ends.
struct Attempt {
    _permit: OwnedSemaphorePermit,
    wake: Arc<Notify>,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

async fn attempt(
    pool: PgPool,
    sender: Sender,
    settings: Arc<WebhookSettings>,
    target: Arc<Target>,
    delivery: Delivery,
    claim: Uuid,
    _slot: Attempt,
) {
    let outcome = match (Message::of(&delivery), WebhookSecret::parse(&target.secret)) {
        (Ok(message), Some(secret)) => sender.send(&target.url, &secret, &message).await,
        (Err(e), _) => Err(e),
        (_, None) => Err("the stored secret is unreadable".into()),
    };
    let recorded = match outcome {
        Ok(()) => {
            metrics::counter!("herald_webhook_deliveries_total").increment(1);
            db::webhooks::delivered(&pool, target.id, &delivery.user_id, delivery.seq, claim).await
        }
        Err(why) => {
            metrics::counter!("herald_webhook_delivery_failures_total").increment(1);
            failed(&pool, &settings, &target, &delivery, claim, &why).await
        }
    };
    if let Err(e) = recorded {
        // The lease runs out and the row is sent again: at least once.
        tracing::warn!(error = %e, webhook = %target.id, "webhooks: outcome not recorded");
    }
}

/// Schedules the retry, and disables the endpoint once it has been failing
/// for `disable_after_secs`.
async fn failed(
    pool: &PgPool,
    settings: &WebhookSettings,
    target: &Target,
    delivery: &Delivery,
    claim: Uuid,
    why: &str,
) -> Result<(), sqlx::Error> {
    let retry = backoff(settings, delivery.attempts);
    tracing::debug!(webhook = %target.id, seq = delivery.seq, attempts = delivery.attempts + 1, error = why, "webhooks: attempt failed");
    let failing = db::webhooks::failed(
        pool,
        target.id,
        &delivery.user_id,
        delivery.seq,
        claim,
        retry.as_millis() as i64,
        why,
    )
    .await?;
    if failing.is_some_and(|secs| secs >= settings.disable_after_secs as f64) {
        let reason = format!(
            "deliveries failed for {} s without one accepted; last error: {why}",
            settings.disable_after_secs
        );
        let mut conn = pool.acquire().await?;
        if db::webhooks::disable(&mut conn, target.id, &reason).await? {
            tracing::warn!(webhook = %target.id, error = why, "webhooks: endpoint disabled after failing too long");
            // The last enabled endpoint gone, the triggers have nothing to
            // do: drop them. Should that wait too long, they stay (returning
            // at once) until the next change of endpoints.
            drop(conn);
            let mut tx = pool.begin().await?;
            db::webhooks::limit_lock_wait(&mut tx).await?;
            match db::webhooks::sync_triggers(&mut tx).await {
                Ok(()) => tx.commit().await?,
                Err(e) => tracing::debug!(error = %e, "webhooks: outbox triggers kept"),
            }
        }
    }
    Ok(())
}

/// The delay before attempt `attempts + 1`: the initial delay doubled per
/// failed attempt, capped, then a random part of its upper half dropped so
/// that many rows failing together do not retry together.
pub fn backoff(settings: &WebhookSettings, attempts: i32) -> Duration {
    let doubled = settings
        .backoff_initial_ms
        .saturating_mul(1u64 << attempts.clamp(0, 40));
    let ceiling = doubled.min(settings.backoff_max_ms).max(1);
    let jitter = getrandom::u64().unwrap_or(0) % (ceiling / 2 + 1);
    Duration::from_millis(ceiling - jitter)
}

/// LISTENs for the outbox triggers' NOTIFY and wakes the loop. Without a
/// listening connection the poll still delivers, only later.
async fn listen(pool: PgPool, wake: Arc<Notify>, retry: Duration, shutdown: CancellationToken) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(db::webhooks::CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connected => match c {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::debug!(error = %e, "webhooks: cannot LISTEN; polling");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => continue,
                    }
                }
            },
        };
        // Anything queued before the LISTEN is found by this round.
        wake.notify_one();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                heard = listener.recv() => match heard {
                    Ok(_) => wake.notify_one(),
                    Err(e) => {
                        tracing::debug!(error = %e, "webhooks: LISTEN connection lost");
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let settings = WebhookSettings {
            backoff_initial_ms: 1_000,
            backoff_max_ms: 10_000,
            ..Default::default()
        };
        for (attempts, ceiling) in [
            (0, 1_000),
            (1, 2_000),
            (3, 8_000),
            (4, 10_000),
            (60, 10_000),
        ] {
            let d = backoff(&settings, attempts).as_millis() as u64;
            assert!(d <= ceiling && d >= ceiling / 2, "{attempts}: {d}");
        }
    }
}
