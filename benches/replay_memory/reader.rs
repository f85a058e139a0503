//! A slow SSE client: resumes its user's stream from 0, reads at a fixed
//! pace so the server's queues and the TCP buffers between them fill, and
//! checks that it receives every notification exactly once, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::content::Received;

/// What every reader shares.
pub struct Readers {
    pub http: reqwest::Client,
    pub stream_url: String,
    pub per_user: usize,
    /// Bytes a reader may take per second.
    pub bytes_per_sec: f64,
    pub stop: CancellationToken,
    pub tally: Tally,
}

#[derive(Default)]
pub struct Tally {
    /// Notifications received in order, all readers together.
    pub delivered: AtomicU64,
    /// Bytes of event data received.
    pub data_bytes: AtomicU64,
    /// Readers that have every notification.
    pub complete: AtomicU64,
    /// Streams that ended or broke before their reader had everything; the
    /// reader resumes from its last seq.
    pub reconnects: AtomicU64,
    pub resets: AtomicU64,
    /// Wrong order, a repeat, a gap, a truncated event, an error answer.
    pub failures: AtomicU64,
}

/// Reads `user`'s stream until it has `per_user` notifications, or until
/// `stop`. Returns a description of the first failure, if any.
pub async fn read_all(readers: Arc<Readers>, token: String) -> Option<String> {
    let r = &*readers;
    let mut last_seq = 0i64;
    let mut next = 0usize;
    while next < r.per_user {
        let request = r
            .http
            .get(&r.stream_url)
            .bearer_auth(&token)
            .header("Last-Event-ID", last_seq.to_string())
            .send();
        let response = tokio::select! {
            _ = r.stop.cancelled() => return None,
            response = request => response,
        };
        let response = match response {
            Ok(response) if response.status() == 200 => response,
            Ok(response) => {
                r.tally.failures.fetch_add(1, Ordering::Relaxed);
                return Some(format!("the stream answered {}", response.status()));
            }
            Err(e) => {
                // A refused or reset connection under load: try again.
                r.tally.reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                if r.stop.is_cancelled() {
                    return Some(format!("connecting: {e}"));
                }
                continue;
            }
        };
        let mut events = paced(response.bytes_stream(), r.bytes_per_sec).eventsource();
        loop {
            let event = tokio::select! {
                _ = r.stop.cancelled() => return None,
                event = events.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(_)) | None => {
                    r.tally.reconnects.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            match event.event.as_str() {
                "notification" => {}
                "reset" => {
                    r.tally.resets.fetch_add(1, Ordering::Relaxed);
                    r.tally.failures.fetch_add(1, Ordering::Relaxed);
                    return Some(format!("reset after seq {last_seq}: {}", event.data));
                }
                other => {
                    r.tally.failures.fetch_add(1, Ordering::Relaxed);
                    return Some(format!("unexpected event {other:?}"));
                }
            }
            let seq: i64 = event.id.parse().unwrap_or(0);
            let received = serde_json::from_str::<Received>(&event.data);
            let problem = match &received {
                Err(e) => Some(format!("seq {seq}: unreadable data: {e}")),
                Ok(_) if seq <= last_seq => Some(format!("seq {seq} after seq {last_seq}")),
                Ok(n) if n.n() != next => Some(format!(
                    "seq {seq} is notification {} where {next} was due",
                    n.n()
                )),
                Ok(n) if !n.is_whole() => Some(format!("seq {seq} arrived cut short")),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                r.tally.failures.fetch_add(1, Ordering::Relaxed);
                return Some(problem);
            }
            last_seq = seq;
            next += 1;
            r.tally.delivered.fetch_add(1, Ordering::Relaxed);
            r.tally
                .data_bytes
                .fetch_add(event.data.len() as u64, Ordering::Relaxed);
            if next == r.per_user {
                break;
            }
        }
    }
    r.tally.complete.fetch_add(1, Ordering::Relaxed);
    // Dropping the stream closes the connection: this reader is done.
    None
}

/// Passes on the response body no faster than `bytes_per_sec` on average:
/// after each chunk it waits until the bytes received so far are within the
/// budget, and the connection is read again only after that (hyper reads the
/// socket when the body is polled), so the server's writes back up.
fn paced<S, B, E>(body: S, bytes_per_sec: f64) -> impl Stream<Item = Result<B, E>> + Send + Unpin
where
    S: Stream<Item = Result<B, E>> + Send + Unpin,
    B: AsRef<[u8]> + Send,
    E: Send,
{
    let start = Instant::now();
    Box::pin(futures_util::stream::unfold(
        (body, 0u64),
        move |(mut body, taken)| async move {
            let chunk = body.next().await?;
            let taken = taken + chunk.as_ref().map_or(0, |c| c.as_ref().len() as u64);
            tokio::time::sleep_until(start + Duration::from_secs_f64(taken as f64 / bytes_per_sec))
                .await;
            Some((chunk, (body, taken)))
        },
    ))
}
