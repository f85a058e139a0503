//! LISTEN for other instances' wake-ups. Whenever the listening connection is
//! (re)established, every local subscriber re-reads the log, because
//! notifications sent while it was down are lost for good.
//!
//! A LISTEN connection only ever reads, so a network path that died without
//! a reset (a frozen NAT entry, a dead peer) would leave it waiting for ever
//! while other instances' wake-ups go unheard. So the listener proves it is
//! alive: every check period it sends itself a probe through NOTIFY, from
//! the main pool, and reconnects when the previous probe never came back.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::{Hub, wakeup};
use crate::db;
use crate::db::events::CHANNEL;
use crate::domain::UserId;

/// What the listener needs: its own one-connection pool, the main pool (to
/// send probes), this instance's id and how often to check.
pub struct ListenerConfig {
    pub listen_pool: PgPool,
    pub pool: PgPool,
    pub instance: String,
    pub check_every: Duration,
}

pub async fn run(config: ListenerConfig, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(50);
    let mut probe = 0u64;
    loop {
        let listen_pool = db::fresh_pool_like(&config.listen_pool);
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&listen_pool) => c,
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
        let mut check = tokio::time::interval(config.check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        // The probe sent and not heard back yet.
        let mut outstanding: Option<u64> = None;
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.try_recv() => r,
                _ = check.tick() => {
                    if outstanding.is_some() {
                        metrics::counter!("herald_listener_stalls_total").increment(1);
                        tracing::warn!("the wake-up listener did not hear its own probe; reconnecting");
                        break;
                    }
                    probe += 1;
                    // When the database cannot be reached the probe proves
                    // nothing either way: the next check tries again.
                    if send_probe(&config.pool, &config.instance, probe).await.is_ok() {
                        outstanding = Some(probe);
                    }
                    continue;
                }
            };
            match received {
                Ok(Some(n)) => {
                    let heard = dispatch(&hub, &config.instance, n.payload());
                    if heard.is_some() && heard == outstanding {
                        outstanding = None;
                    }
                }
                // Lost and already re-established: catch everyone up.
                Ok(None) => {
                    metrics::counter!("herald_listener_connects_total").increment(1);
                    tracing::warn!("wake-up listener reconnected");
                    hub.wake_all();
                    outstanding = None;
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

async fn send_probe(pool: &PgPool, instance: &str, n: u64) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    db::events::notify(&mut conn, &[wakeup::encode_probe(instance, n)]).await
}

/// How long this instance's own wake-ups wait before they are applied: long
/// enough for the in-process wake of the same commit to have come first.
const OWN_WAKE_DELAY: Duration = Duration::from_millis(500);

/// Wakes and disconnects what the payload names; returns the probe it
/// carries if this instance sent it.
fn dispatch(hub: &Arc<Hub>, instance: &str, payload: &str) -> Option<u64> {
    let Some(payload) = wakeup::decode(payload) else {
        tracing::warn!("ignoring a malformed wake-up payload");
        return None;
    };
    let wakes: Vec<(UserId, i64)> = payload
        .wakes
        .into_iter()
        .filter_map(|(user, seq)| UserId::parse(&user).ok().map(|u| (u, seq)))
        .collect();
    if payload.instance == instance {
        // This instance's own commits: their connections were normally woken
        // in-process with the events, and this is older news the hub drops.
        // But when a commit succeeded while its answer was lost (the
        // connection broke on the way back) this is the only wake-up they
        // get. Applied a moment later, so that it never overtakes the
        // in-process wake, which carries the events themselves.
        if !wakes.is_empty() {
            let hub = Arc::clone(hub);
            tokio::spawn(async move {
                tokio::time::sleep(OWN_WAKE_DELAY).await;
                for (user, seq) in wakes {
                    hub.wake(&user, seq, None);
                }
            });
        }
        // An administrator's disconnect already ended this instance's
        // connections; doing it again would end those opened since.
        return payload.probe;
    }
    for (user, seq) in wakes {
        hub.wake(&user, seq, None);
    }
    for user in payload.kicks {
        if let Ok(user) = UserId::parse(&user) {
            hub.kick(&user);
        }
    }
    None
}
