//! The well-behaved client whose latency every attack must leave alone: it
//! publishes a notification to its own user a few times a second and times
//! each one until it arrives on that user's SSE stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::Percentiles;
use crate::target::Target;

const USER: &str = "attack-good";
/// Probes per second.
const RATE: f64 = 5.0;
/// A probe not delivered this long after it was sent counts as lost, and
/// as this latency.
const LOST_AFTER: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Shared {
    /// Probe number → when its publish was sent.
    pending: Mutex<HashMap<u64, Instant>>,
    /// Publish sent → event received, microseconds, since the last `take`.
    samples: Mutex<Vec<u64>>,
    lost: AtomicU64,
    publish_errors: AtomicU64,
    reconnects: AtomicU64,
    delivered_total: AtomicU64,
}

/// What the good client saw during one window.
#[derive(Debug, Default, Clone, Copy)]
pub struct Probes {
    pub sent: usize,
    pub latency: Percentiles,
    pub lost: u64,
    pub publish_errors: u64,
    pub reconnects: u64,
}

pub struct GoodClient {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl GoodClient {
    pub async fn start(target: &Target) -> anyhow::Result<Self> {
        // Its own connection pool: attacks never share its connections.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()?;
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let token = target.token(USER, None);
        let url = target.url("/v1/me/stream");
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(receive(
            http.clone(),
            url,
            token,
            shared.clone(),
            stop.clone(),
            opened_tx,
        ));
        if tokio::time::timeout(Duration::from_secs(30), opened_rx)
            .await
            .is_err()
        {
            bail!("the good client's stream did not open within 30 s");
        }
        tokio::spawn(publish(
            http,
            target.url("/v1/notifications"),
            target.publisher.clone(),
            shared.clone(),
            stop.clone(),
        ));
        Ok(Self { shared, stop })
    }

    /// Waits until `n` probes have been delivered in all.
    pub async fn wait_for_probes(&self, n: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.shared.delivered_total.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                bail!("fewer than {n} probes delivered within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Probes delivered since the start.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered_total.load(Ordering::Relaxed)
    }

    /// The window since the last call; probes still in flight (younger than
    /// `LOST_AFTER`) are left for the next window.
    pub fn take(&self) -> Probes {
        let mut samples = std::mem::take(&mut *self.shared.samples.lock().unwrap());
        Probes {
            sent: samples.len(),
            latency: Percentiles::of(&mut samples),
            lost: self.shared.lost.swap(0, Ordering::Relaxed),
            publish_errors: self.shared.publish_errors.swap(0, Ordering::Relaxed),
            reconnects: self.shared.reconnects.swap(0, Ordering::Relaxed),
        }
    }
}

impl Drop for GoodClient {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn publish(
    http: reqwest::Client,
    url: String,
    token: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for probe in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        expire_lost(&shared);
        shared.pending.lock().unwrap().insert(probe, Instant::now());
        let request = http
            .post(&url)
            .bearer_auth(&token)
            .timeout(LOST_AFTER)
            .json(&json!({"recipients": [USER], "title": "probe", "data": {"probe": probe}}));
        // Sent from its own task so a slow answer does not delay the next probe.
        let shared = shared.clone();
        tokio::spawn(async move {
            let ok = matches!(request.send().await, Ok(r) if r.status() == 201);
            if !ok {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Probes older than `LOST_AFTER` count as lost, at that latency.
fn expire_lost(shared: &Shared) {
    let mut pending = shared.pending.lock().unwrap();
    let before = pending.len();
    pending.retain(|_, sent| sent.elapsed() < LOST_AFTER);
    let lost = before - pending.len();
    if lost > 0 {
        shared.lost.fetch_add(lost as u64, Ordering::Relaxed);
        let mut samples = shared.samples.lock().unwrap();
        samples.extend(std::iter::repeat_n(LOST_AFTER.as_micros() as u64, lost));
    }
}

/// Reads the stream, reconnecting with `Last-Event-ID` if it ends.
async fn receive(
    http: reqwest::Client,
    url: String,
    token: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
    opened: tokio::sync::oneshot::Sender<()>,
) {
    let mut opened = Some(opened);
    let mut last_id: Option<String> = None;
    loop {
        let mut request = http.get(&url).bearer_auth(&token);
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = tokio::select! {
            _ = stop.cancelled() => return,
            r = request.send() => r,
        };
        if let Ok(response) = response
            && response.status() == 200
        {
            if let Some(opened) = opened.take() {
                let _ = opened.send(());
            }
            let mut events = response.bytes_stream().eventsource();
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = events.next() => e,
                };
                let Some(Ok(event)) = event else { break };
                if !event.id.is_empty() {
                    last_id = Some(event.id.clone());
                }
                if event.event != "notification" {
                    continue;
                }
                let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                let Some(probe) = data["data"]["probe"].as_u64() else {
                    continue;
                };
                if let Some(sent) = shared.pending.lock().unwrap().remove(&probe) {
                    shared
                        .samples
                        .lock()
                        .unwrap()
                        .push(sent.elapsed().as_micros() as u64);
                    shared.delivered_total.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
