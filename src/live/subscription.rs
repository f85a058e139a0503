//! The subscription core shared by every transport (SSE, WebSocket).
//!
//! A connection subscribes to its user's wake-ups *before* it reads the log,
//! so nothing committed between the read and the subscription is missed; it
//! keeps a cursor (the last seq it sent) and sends only events above it, so
//! nothing is sent twice. Events are handed to the transport through a small
//! bounded queue: a client that leaves it full for `slow_client_timeout` is
//! disconnected and resumes from the log later, instead of being buffered
//! without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::domain::event::Event;
use crate::domain::{ResumePoint, UserId};
use crate::live::coalesce::BatchFailed;
use crate::live::connection_stats::{ConnectionGuard, Transport};
use crate::live::log_reader::LogReader;
use crate::live::{Hub, Watch};
use crate::settings::StreamSettings;

/// What a transport writes to its client.
#[derive(Debug)]
pub enum Frame {
    /// Boxed to keep the frame at two words: tokio's queue allocates its
    /// first block of 32 slots up front, so every idle connection pays
    /// 32 frames' worth of memory (1.5 KiB with the event inline, 0.5 boxed).
    /// A `reset` (see [`Event::reset`]) is an event too: every transport
    /// writes it like any other.
    Event(Box<Queued>),
    /// The last frame: why the server ends the connection.
    Closing(End),
}

/// An event on its way to the client. It holds its share of the
/// connection's byte budget (`stream.buffer_bytes`) until the transport has
/// written it and dropped it, so a slow client's queue is bounded in bytes,
/// not only in events.
#[derive(Debug)]
pub struct Queued {
    pub event: Event,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl Queued {
    fn unbudgeted(event: Event) -> Box<Self> {
        Box::new(Self {
            event,
            _bytes: None,
        })
    }
}

impl std::ops::Deref for Queued {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    TokenExpired,
    Disconnected,
    Shutdown,
    SlowClient,
    ClientGone,
}

impl End {
    pub fn reason(self) -> &'static str {
        match self {
            Self::TokenExpired => "token expired",
            Self::Disconnected => "disconnected by an administrator",
            Self::Shutdown => "server shutting down",
            Self::SlowClient => "client too slow",
            Self::ClientGone => "client gone",
        }
    }
}

/// Where a connection starts.
pub struct Start {
    /// The last seq the client has: send what comes after it.
    pub cursor: i64,
    /// `Some(reset)`: the client must reset to the user's current seq; the
    /// event carries it and the counts at it.
    pub reset: Option<Event>,
    /// The user's seq when the connection opened: nothing to read up to it
    /// when the cursor is there already.
    pub last_seq: i64,
}

/// Why a live connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The user has as many live connections as allowed.
    #[error("{0}")]
    TooManyStreams(String),
    /// Where the connection starts could not be read.
    #[error(transparent)]
    Read(#[from] BatchFailed),
}

/// What every live connection of this process shares: the hub it waits on,
/// the batched log reader it replays from, its settings, and the signal that
/// ends it on shutdown.
pub struct Subscriptions {
    hub: Arc<Hub>,
    log: LogReader,
    settings: StreamSettings,
    shutdown: CancellationToken,
}

impl Subscriptions {
    pub fn new(
        hub: Arc<Hub>,
        log: LogReader,
        settings: StreamSettings,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            hub,
            log,
            settings,
            shutdown,
        })
    }

    /// Long-polls read through the same reader as streams.
    pub fn log(&self) -> &LogReader {
        &self.log
    }

    /// Cancelled when the service stops.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Where a stream starts: the cursor, and whether the client must reset.
    pub async fn start_position(
        &self,
        watch: &Watch,
        resume: ResumePoint,
    ) -> Result<Start, BatchFailed> {
        let positions = self.log.positions(&watch.user).await?;
        let last_seq = positions.last_seq;
        let (cursor, reset) = match resume {
            ResumePoint::Live => (last_seq, None),
            ResumePoint::After(n) if n <= last_seq && n >= positions.purged_seq => (n, None),
            ResumePoint::After(_) | ResumePoint::Invalid => {
                metrics::counter!("herald_resets_total").increment(1);
                (last_seq, Some(Event::reset(last_seq, positions.counts)))
            }
        };
        Ok(Start {
            cursor,
            reset,
            last_seq,
        })
    }

    /// Opens a live subscription for `user`, whose token expires at
    /// `expires_at` (Unix seconds), and returns the frames to write.
    pub async fn open(
        self: &Arc<Self>,
        user: &UserId,
        expires_at: i64,
        resume: ResumePoint,
        transport: Transport,
    ) -> Result<mpsc::Receiver<Frame>, SubscribeError> {
        let watch = self
            .hub
            .watch_stream(user)
            .map_err(|e| SubscribeError::TooManyStreams(e.to_string()))?;
        let Start {
            cursor,
            reset,
            last_seq,
        } = self.start_position(&watch, resume).await?;
        // Counted from here, so the connection shows in stats as soon as the
        // client has its answer.
        let counted = self.hub.stats.connection(transport);
        let (tx, rx) = mpsc::channel(self.settings.buffer);
        if let Some(reset) = reset {
            tx.try_send(Frame::Event(Queued::unbudgeted(reset)))
                .expect("a new queue has room");
        }
        let pump = Pump {
            live: Arc::clone(self),
            watch,
            cursor,
            // The watch was registered before the position was read, so
            // anything committed after it wakes this connection: with the
            // cursor at the user's seq there is nothing to read yet.
            need_read: cursor < last_seq,
            tx,
            bytes: None,
            expires_at,
            transport,
            sent: 0,
            _counted: counted,
        };
        tokio::spawn(pump.run());
        Ok(rx)
    }
}

struct Pump {
    live: Arc<Subscriptions>,
    watch: Watch,
    cursor: i64,
    need_read: bool,
    tx: mpsc::Sender<Frame>,
    /// The byte budget of the queue, made at the first event: an idle
    /// connection does not pay for it.
    bytes: Option<Arc<Semaphore>>,
    expires_at: i64,
    transport: Transport,
    sent: u64,
    _counted: ConnectionGuard,
}

/// Why sending stopped: the connection is over.
struct Stop(End);

impl Pump {
    async fn run(mut self) {
        let opened = Instant::now();
        tracing::info!(
            transport = self.transport.as_str(),
            user = %self.watch.user,
            cursor = self.cursor,
            "live connection opened"
        );
        let remaining = self.expires_at - chrono::Utc::now().timestamp();
        let expiry = tokio::time::sleep(Duration::from_secs(remaining.max(0) as u64));
        tokio::pin!(expiry);
        let shutdown = self.live.shutdown.clone();
        let kicked = self.watch.kicked.clone();

        let mut need_read = self.need_read;
        let mut backoff = Duration::from_millis(250);
        let end = loop {
            if need_read {
                let caught_up = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Err(Stop(End::Shutdown)),
                    _ = kicked.cancelled() => Err(Stop(End::Disconnected)),
                    _ = &mut expiry => Err(Stop(End::TokenExpired)),
                    // Boxed, like the delivery below: a replay holds a
                    // database query in flight, and if it were inlined every
                    // idle connection's task would keep room for one (it
                    // tripled the task's size).
                    r = Box::pin(self.catch_up()) => r,
                };
                match caught_up {
                    // Caught up: the next wake-up decides `need_read` again.
                    Ok(true) => backoff = Duration::from_millis(250),
                    // The database failed: keep the connection, try again soon.
                    Ok(false) => {
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.tx.closed() => break End::ClientGone,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    Err(Stop(end)) => break end,
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break End::Shutdown,
                _ = kicked.cancelled() => break End::Disconnected,
                _ = &mut expiry => break End::TokenExpired,
                _ = self.tx.closed() => break End::ClientGone,
                changed = self.watch.rx.changed() => {
                    if changed.is_err() {
                        break End::Shutdown;
                    }
                    match Box::pin(self.on_wake()).await {
                        Ok(read) => need_read = read,
                        Err(Stop(end)) => break end,
                    }
                }
            }
        };
        if end == End::SlowClient {
            metrics::counter!("herald_slow_client_disconnects_total", "transport" => self.transport.as_str()).increment(1);
        }
        let _ = self.tx.try_send(Frame::Closing(end));
        tracing::info!(
            transport = self.transport.as_str(),
            user = %self.watch.user,
            duration_ms = opened.elapsed().as_millis() as u64,
            events_sent = self.sent,
            reason = end.reason(),
            "live connection closed"
        );
    }

    /// Sends what a wake-up carries, or says the log must be read (`Ok(true)`)
    /// because it does not hold everything after the cursor.
    async fn on_wake(&mut self) -> Result<bool, Stop> {
        let wake = self.watch.rx.borrow_and_update().clone();
        match wake.events_after(self.cursor) {
            Some(events) => {
                for event in events {
                    self.send_event(event.clone()).await?;
                }
                Ok(false)
            }
            None => Ok(wake.seq > self.cursor || wake.events.is_none()),
        }
    }

    /// Sends everything in the log after the cursor, a page at a time.
    /// `Ok(false)` when the database failed.
    async fn catch_up(&mut self) -> Result<bool, Stop> {
        loop {
            let read = self.live.log.read_after(&self.watch.user, self.cursor);
            let page = match read.await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the log for a live connection failed");
                    return Ok(false);
                }
            };
            metrics::counter!("herald_replayed_events_total").increment(page.events.len() as u64);
            for event in page.events {
                self.send_event(event).await?;
            }
            if !page.more {
                return Ok(true);
            }
        }
    }

    async fn send_event(&mut self, event: Event) -> Result<(), Stop> {
        if event.seq <= self.cursor {
            return Ok(());
        }
        let seq = event.seq;
        let published_at = event.published_at;
        let timeout = self.live.settings.slow_client_timeout();
        let capacity = self.live.settings.buffer_bytes.clamp(1, u32::MAX as usize);
        let bytes = Arc::clone(
            self.bytes
                .get_or_insert_with(|| Arc::new(Semaphore::new(capacity))),
        );
        // An event larger than the whole budget waits for an empty queue.
        let cost = event.data.len().clamp(1, capacity) as u32;
        let tx = &self.tx;
        let queued = tokio::time::timeout(timeout, async move {
            let permit = bytes
                .acquire_many_owned(cost)
                .await
                .expect("the semaphore is never closed");
            let frame = Frame::Event(Box::new(Queued {
                event,
                _bytes: Some(permit),
            }));
            tx.send(frame).await.map_err(|_| Stop(End::ClientGone))
        })
        .await;
        match queued {
            Ok(Ok(())) => {
                self.cursor = seq;
                self.sent += 1;
                self.live.hub.stats.delivered(self.transport);
                if let Some(t) = published_at {
                    metrics::histogram!("herald_publish_to_deliver_seconds")
                        .record(t.elapsed().as_secs_f64());
                }
                Ok(())
            }
            Ok(Err(stop)) => Err(stop),
            Err(_elapsed) => Err(Stop(End::SlowClient)),
        }
    }
}
