//! Resuming subscribers: each reads one user's events over SSE, WebSocket
//! or long-poll and, whenever its connection ends, is refused or is dropped
//! on purpose, connects again from the last seq it received. It records what
//! it received and everything odd, and judges nothing: whoever runs it
//! decides what is acceptable.
//!
//! Shared by the soak benchmark and the fault tests (which include this file
//! by path), so it assumes nothing about either.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

/// Refusals kept per subscriber (all are counted in `failures`), so a
/// service that refuses for minutes cannot grow the record without bound.
const REFUSALS_KEPT: usize = 1000;

/// How long a WebSocket handshake may take before it counts as failed.
const HANDSHAKE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Sse,
    Ws,
    Poll,
}

impl Transport {
    pub const ALL: [Self; 3] = [Self::Sse, Self::Ws, Self::Poll];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::Ws => "ws",
            Self::Poll => "poll",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Drop each connection after a time drawn uniformly from this range
    /// (seconds) and resume; `None`: keep it until the server ends it.
    pub hold_secs: Option<RangeInclusive<f64>>,
    /// The long-poll's `wait`, in seconds.
    pub poll_wait_secs: u64,
    /// How long past its `wait` a long-poll may go unanswered before it is
    /// abandoned and counted as hung.
    pub poll_slack: Duration,
    /// The pause after a failed connect or poll.
    pub retry_after: Duration,
    /// How many of its failures each subscriber prints to stderr.
    pub print_failures: u64,
}

/// A notification as a subscriber received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub seq: i64,
    pub id: String,
    pub title: String,
}

/// An HTTP answer other than success to a connect or a poll.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub transport: Transport,
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// What one subscriber has seen so far; readable while it runs.
#[derive(Default)]
pub struct Progress {
    last_seq: AtomicI64,
    /// Events received, of any kind.
    pub events: AtomicU64,
    /// Connections (for long-poll: polls) opened.
    pub connects: AtomicU64,
    /// Open streams that ended (closed by the server, or the connection
    /// broke) before the subscriber dropped them.
    pub server_closed: AtomicU64,
    /// Connects or polls that failed (no connection, no answer, or an answer
    /// other than success); each is retried after `retry_after`.
    pub failures: AtomicU64,
    /// Long-polls not answered within their wait plus `poll_slack`.
    pub hung_polls: AtomicU64,
    pub resets: AtomicU64,
    /// Notifications whose seq was not above the last one received.
    pub out_of_order: AtomicU64,
    /// Notifications whose id had been received before.
    pub duplicates: AtomicU64,
    /// Events that are not notifications or resets, malformed events, and
    /// poll answers whose `last_seq` is behind what was received.
    pub unexpected: AtomicU64,
    record: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    received: Vec<Received>,
    ids: HashSet<String>,
    refusals: Vec<Refusal>,
}

impl Progress {
    /// The last seq received (or skipped to by a reset).
    pub fn last_seq(&self) -> i64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// The notifications received, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.record.lock().unwrap().received.clone()
    }

    pub fn received_count(&self) -> usize {
        self.record.lock().unwrap().received.len()
    }

    /// The first `REFUSALS_KEPT` refusals.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.record.lock().unwrap().refusals.clone()
    }

    fn on_event(&self, seq: Option<i64>, kind: &str, data: &Value) {
        self.events.fetch_add(1, Ordering::Relaxed);
        let last = self.last_seq();
        if kind == "reset" {
            self.resets.fetch_add(1, Ordering::Relaxed);
            if let Some(current) = data["last_seq"].as_i64() {
                self.last_seq.store(current.max(last), Ordering::Relaxed);
            }
            return;
        }
        let (Some(seq), Some(id), "notification") = (seq, data["id"].as_str(), kind) else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if data["seq"].as_i64() != Some(seq) {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
        }
        if seq <= last {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        let mut record = self.record.lock().unwrap();
        if !record.ids.insert(id.to_owned()) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        record.received.push(Received {
            seq,
            id: id.to_owned(),
            title: data["title"].as_str().unwrap_or_default().to_owned(),
        });
        self.last_seq.store(seq.max(last), Ordering::Relaxed);
    }

    fn refused(&self, refusal: Refusal) {
        let mut record = self.record.lock().unwrap();
        if record.refusals.len() < REFUSALS_KEPT {
            record.refusals.push(refusal);
        }
    }
}

/// A running subscriber.
pub struct Subscriber {
    progress: Arc<Progress>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Starts reading `user`'s events from seq 0 from the service at `base`
    /// (`http://host:port`), until `stop` is cancelled or `stop()` is called.
    pub fn start(
        base: &str,
        http: &reqwest::Client,
        user: &str,
        token: String,
        transport: Transport,
        options: Options,
        stop: CancellationToken,
    ) -> Self {
        let progress = Arc::new(Progress::default());
        let reader = Reader {
            base: base.to_owned(),
            http: http.clone(),
            user: user.to_owned(),
            token,
            options,
            progress: Arc::clone(&progress),
            stop: stop.clone(),
        };
        Self {
            progress,
            stop,
            task: tokio::spawn(reader.run(transport)),
        }
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Stops it (its connection is dropped) and waits for it to end.
    pub async fn stop(self) -> Result<Arc<Progress>, tokio::task::JoinError> {
        self.stop.cancel();
        self.task.await?;
        Ok(self.progress)
    }
}

/// How one connection (or, for long-poll, one hold of polls) ended.
enum Session {
    /// Stop was called.
    Stopped,
    /// The subscriber dropped it on purpose (its hold ran out).
    Held,
    /// An open stream ended (server closed it, or the connection broke).
    Ended,
    /// No connection, no answer, or an answer other than success.
    Failed(String),
}

struct Reader {
    base: String,
    http: reqwest::Client,
    user: String,
    token: String,
    options: Options,
    progress: Arc<Progress>,
    stop: CancellationToken,
}

impl Reader {
    async fn run(self, transport: Transport) {
        let progress = &self.progress;
        while !self.stop.is_cancelled() {
            let hold =
                self.options.hold_secs.clone().map(|range| {
                    Instant::now() + Duration::from_secs_f64(rand::random_range(range))
                });
            let session = match transport {
                Transport::Sse => self.sse(hold).await,
                Transport::Ws => self.ws(hold).await,
                Transport::Poll => self.poll(hold).await,
            };
            match session {
                Session::Stopped => return,
                Session::Held => {}
                Session::Ended => {
                    progress.server_closed.fetch_add(1, Ordering::Relaxed);
                }
                Session::Failed(what) => {
                    let n = progress.failures.fetch_add(1, Ordering::Relaxed);
                    if n < self.options.print_failures {
                        eprintln!("  subscriber {}: {what}", self.user);
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(self.options.retry_after) => {}
                    }
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Records a refused connect or poll.
    fn refusal(
        &self,
        transport: Transport,
        status: u16,
        content_type: &str,
        body: String,
    ) -> Session {
        self.progress.refused(Refusal {
            transport,
            status,
            content_type: content_type.to_owned(),
            body,
        });
        Session::Failed(format!("{} answered {status}", transport.name()))
    }

    async fn refused_response(&self, transport: Transport, response: reqwest::Response) -> Session {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        self.refusal(transport, status, &content_type, body)
    }

    async fn sse(&self, hold: Option<Instant>) -> Session {
        let from = self.progress.last_seq();
        self.progress.connects.fetch_add(1, Ordering::Relaxed);
        let request = self
            .http
            .get(self.url("/v1/me/stream"))
            .bearer_auth(&self.token)
            .header("Last-Event-ID", from.to_string())
            .send();
        let response = tokio::select! {
            _ = self.stop.cancelled() => return Session::Stopped,
            r = request => r,
        };
        let response = match response {
            Ok(r) if r.status() == 200 => r,
            Ok(r) => return self.refused_response(Transport::Sse, r).await,
            Err(e) => return Session::Failed(format!("SSE: {e}")),
        };
        let mut events = response.bytes_stream().eventsource();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Session::Stopped,
                _ = until(hold) => return Session::Held,
                event = events.next() => match event {
                    Some(Ok(e)) => {
                        let data = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                        self.progress.on_event(e.id.parse().ok(), &e.event, &data);
                    }
                    Some(Err(_)) | None => return Session::Ended,
                },
            }
        }
    }

    async fn ws(&self, hold: Option<Instant>) -> Session {
        let from = self.progress.last_seq();
        self.progress.connects.fetch_add(1, Ordering::Relaxed);
        let url = format!(
            "{}?access_token={}&last_event_id={from}",
            self.url("/v1/me/ws").replacen("http", "ws", 1),
            self.token
        );
        let connected = tokio::select! {
            _ = self.stop.cancelled() => return Session::Stopped,
            r = tokio::time::timeout(HANDSHAKE, tokio_tungstenite::connect_async(url)) => r,
        };
        let mut socket = match connected {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(tungstenite::Error::Http(response))) => {
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned();
                let status = response.status().as_u16();
                return self.refusal(Transport::Ws, status, &content_type, body);
            }
            Ok(Err(e)) => return Session::Failed(format!("WebSocket: {e}")),
            Err(_) => return Session::Failed("WebSocket handshake timed out".into()),
        };
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Session::Stopped,
                _ = until(hold) => break,
                message = socket.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        let kind = frame["type"].as_str().unwrap_or_default();
                        self.progress.on_event(frame["seq"].as_i64(), kind, &frame["data"]);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Binary(_))) => {
                        self.progress.unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Session::Ended,
                },
            }
        }
        // Half the time a clean close, else the TCP connection just goes.
        if rand::random_bool(0.5) {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        }
        Session::Held
    }

    /// Long-polls one after another until the hold runs out (the poll in
    /// flight then is abandoned mid-wait) or one fails.
    async fn poll(&self, hold: Option<Instant>) -> Session {
        let wait = self.options.poll_wait_secs;
        loop {
            let from = self.progress.last_seq();
            self.progress.connects.fetch_add(1, Ordering::Relaxed);
            let request = self
                .http
                .get(self.url(&format!("/v1/me/events?after={from}&wait={wait}")))
                .bearer_auth(&self.token)
                .timeout(Duration::from_secs(wait) + self.options.poll_slack)
                .send();
            let answered = async {
                let response = request.await?;
                if response.status() != 200 {
                    return Ok(Err(response));
                }
                response.json::<Value>().await.map(Ok)
            };
            let answer = tokio::select! {
                _ = self.stop.cancelled() => return Session::Stopped,
                _ = until(hold) => return Session::Held,
                answer = answered => answer,
            };
            let body = match answer {
                Ok(Ok(body)) => body,
                Ok(Err(response)) => return self.refused_response(Transport::Poll, response).await,
                Err(e) if e.is_timeout() && !e.is_connect() => {
                    self.progress.hung_polls.fetch_add(1, Ordering::Relaxed);
                    return Session::Failed(format!("a poll hung beyond its wait: {e}"));
                }
                Err(e) => return Session::Failed(format!("poll: {e}")),
            };
            for event in body["events"].as_array().into_iter().flatten() {
                let kind = event["type"].as_str().unwrap_or_default();
                self.progress
                    .on_event(event["seq"].as_i64(), kind, &event["data"]);
            }
            if body["last_seq"]
                .as_i64()
                .is_none_or(|last| last < self.progress.last_seq())
            {
                self.progress.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Resolves at `deadline`; never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
