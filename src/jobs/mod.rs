//! Background work that runs on a timer in every instance: purging what is
//! past its retention, firing timers (snoozes, expiries), delivering
//! webhooks, and recording that this instance is alive.
//!
//! Owns: loops and their schedules; the SQL they run is in `db`. It may use
//! `db`, `domain` and `settings`; never HTTP.

pub mod heartbeat;
pub mod purge;
pub mod schedules;
pub mod timers;
mod webhook_delivery;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `round` every `period` until shutdown. A round that ends late
/// delays the next rather than bunching them up.
pub(crate) async fn every<F, Fut>(period: Duration, shutdown: CancellationToken, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        round().await;
    }
}
