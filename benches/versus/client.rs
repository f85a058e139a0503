//! The client side, the same code for both targets: SSE readers that count
//! and time what arrives, and the publishers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// What all readers of one measurement saw.
#[derive(Default)]
pub struct Tally {
    /// Streams whose response headers arrived with 200.
    pub opened: AtomicU64,
    /// Streams that could not be opened.
    pub failed: AtomicU64,
    /// Streams that ended before the measurement let them go.
    pub ended: AtomicU64,
    /// Messages received (Herald's `notification` events, nchan's messages).
    pub received: AtomicU64,
    /// Herald `reset` events (a resume point the server could not serve).
    pub resets: AtomicU64,
    /// Arrival time minus the `t` the message carries, µs.
    pub latencies: Mutex<Vec<u64>>,
    /// Unix µs at which each stream had received `expect` messages.
    pub completions: Mutex<Vec<i64>>,
}

impl Tally {
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
    pub fn completed(&self) -> usize {
        self.completions.lock().unwrap().len()
    }
}

/// Reads one SSE stream until `stop`; returns the last event id it saw (to
/// resume from). `expect`: record the moment the stream has that many
/// messages. `opening` is released once the response headers are in, so a
/// caller can bound how many connections are being set up at once.
pub async fn read_stream(
    request: reqwest::RequestBuilder,
    tally: Arc<Tally>,
    expect: usize,
    stop: CancellationToken,
    opening: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Option<String> {
    let response = tokio::select! {
        r = request.send() => r,
        () = stop.cancelled() => return None,
    };
    drop(opening);
    let response = match response {
        Ok(r) if r.status() == 200 => r,
        _ => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    tally.opened.fetch_add(1, Ordering::Relaxed);
    let mut events = response.bytes_stream().eventsource();
    let mut last_id = None;
    let mut count = 0usize;
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            () = stop.cancelled() => return last_id,
        };
        let Some(Ok(event)) = event else {
            if !stop.is_cancelled() {
                tally.ended.fetch_add(1, Ordering::Relaxed);
            }
            return last_id;
        };
        let now = unix_micros();
        match event.event.as_str() {
            // Herald names its events; nchan sends unnamed ones.
            "notification" | "message" => {}
            "reset" => {
                tally.resets.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            _ => continue,
        }
        last_id = Some(event.id.clone());
        count += 1;
        tally.received.fetch_add(1, Ordering::Relaxed);
        let sent = serde_json::from_str::<Value>(&event.data)
            .ok()
            .and_then(|v| v["data"]["t"].as_i64());
        if let Some(t) = sent {
            tally
                .latencies
                .lock()
                .unwrap()
                .push((now - t).max(0) as u64);
        }
        if count == expect {
            tally.completions.lock().unwrap().push(now);
        }
    }
}

/// Opens one stream per request, at most `parallel` being set up at a time,
/// and returns their tasks once every one has either opened or failed.
pub async fn open_streams(
    requests: Vec<reqwest::RequestBuilder>,
    tally: &Arc<Tally>,
    expect: usize,
    stop: &CancellationToken,
    parallel: usize,
) -> Vec<JoinHandle<Option<String>>> {
    let n = requests.len() as u64;
    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let before = tally.opened() + tally.failed();
    let mut tasks = Vec::with_capacity(requests.len());
    for request in requests {
        let permit = gate.clone().acquire_owned().await.expect("open");
        tasks.push(tokio::spawn(read_stream(
            request,
            tally.clone(),
            expect,
            stop.clone(),
            Some(permit),
        )));
    }
    while tally.opened() + tally.failed() - before < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tasks
}

/// Waits until `done()` holds, checking every 10 ms; false after `within`.
pub async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publish outcomes: latency of each accepted publish, and errors.
#[derive(Default)]
pub struct Published {
    pub accepted: AtomicU64,
    pub errors: AtomicU64,
    pub latencies: Mutex<Vec<u64>>,
}

impl Published {
    pub fn record(&self, outcome: anyhow::Result<()>, took_micros: u64) {
        match outcome {
            Ok(()) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                self.latencies.lock().unwrap().push(took_micros);
            }
            Err(e) => {
                if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("  publish error: {e:#}");
                }
            }
        }
    }
    /// A request that carried `n` notifications (a batch).
    pub fn record_many(&self, outcome: anyhow::Result<u64>, took_micros: u64) {
        match outcome {
            Ok(n) => {
                self.accepted.fetch_add(n, Ordering::Relaxed);
                self.latencies.lock().unwrap().push(took_micros);
            }
            Err(e) => {
                if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("  publish error: {e:#}");
                }
            }
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}
