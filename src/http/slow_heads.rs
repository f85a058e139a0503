//! A deadline for every request head, not only a connection's first.
//!
//! actix-http times the head of a connection's first request
//! (`client_request_timeout`) and the idle time after a response (its
//! keep-alive timer). But the keep-alive timer stops at the first byte of
//! the next request, and nothing times the rest of that head: a client can
//! trickle a second request head a byte at a time, for hours, on every
//! connection it has kept alive.
//!
//! So each plain connection is watched from outside the HTTP codec: a
//! middleware counts the requests in progress on it, and a sweep closes a
//! connection that has had none for longer than the head deadline (an idle
//! connection that honestly waits is closed by the keep-alive timer long
//! before). Closing means shutting the socket down through a duplicate of
//! its descriptor, taken when the connection is accepted; the dispatcher
//! then sees the end of the stream and drops the connection.
//!
//! A connection whose request is a live stream (SSE, WebSocket, long-poll)
//! gives its duplicate back at once: streams are what an instance holds by
//! the ten thousand, and a second descriptor each would halve how many fit.

use std::any::Any;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use tokio_util::sync::CancellationToken;

/// The paths whose requests become live streams.
const STREAMS: [&str; 3] = ["/v1/me/stream", "/v1/me/ws", "/v1/me/events"];

/// How often connections are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One accepted connection, as the sweep sees it.
struct Watched {
    /// A duplicate of the connection's descriptor; `None` once given back.
    fd: Mutex<Option<OwnedFd>>,
    /// Requests in progress on the connection.
    in_flight: AtomicU32,
    /// When the last request ended (ms since the watch started).
    idle_since_ms: AtomicU64,
}

/// The connection's watch, in its connection data.
#[derive(Clone)]
struct ConnectionWatch(Arc<Watched>);

/// Every watched connection of this process, swept together.
#[derive(Clone)]
pub struct SlowHeads {
    inner: Arc<Registry>,
}

struct Registry {
    started: Instant,
    connections: Mutex<Vec<Weak<Watched>>>,
}

impl Default for SlowHeads {
    fn default() -> Self {
        Self {
            inner: Arc::new(Registry {
                started: Instant::now(),
                connections: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl SlowHeads {
    fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    /// For `HttpServer::on_connect`: starts watching a new TCP connection.
    pub fn on_connect(&self, connection: &dyn Any, data: &mut Extensions) {
        let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        // Without a descriptor to spare the connection goes unwatched, as
        // it would have before; the first head still has its deadline.
        let Ok(fd) = tcp.as_fd().try_clone_to_owned() else {
            return;
        };
        let watched = Arc::new(Watched {
            fd: Mutex::new(Some(fd)),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
        });
        self.inner
            .connections
            .lock()
            .expect("not poisoned")
            .push(Arc::downgrade(&watched));
        data.insert(ConnectionWatch(watched));
    }

    /// Shuts down the connections that have waited longer than `deadline`
    /// with no request in progress, until `shutdown`.
    pub async fn sweep(self, deadline: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.sweep_once(deadline);
        }
    }

    fn sweep_once(&self, deadline: Duration) {
        let now = self.now_ms();
        let deadline = deadline.as_millis() as u64;
        let mut connections = self.inner.connections.lock().expect("not poisoned");
        connections.retain(|weak| {
            let Some(watched) = weak.upgrade() else {
                return false;
            };
            let mut fd = watched.fd.lock().expect("not poisoned");
            let Some(socket) = fd.as_ref() else {
                return false;
            };
            let idle = now.saturating_sub(watched.idle_since_ms.load(Ordering::Relaxed));
            if watched.in_flight.load(Ordering::Relaxed) == 0 && idle > deadline {
                metrics::counter!("herald_slow_heads_closed_total").increment(1);
                let _ = socket2::SockRef::from(socket).shutdown(Shutdown::Both);
                *fd = None;
                return false;
            }
            true
        });
    }
}

/// Middleware: counts the requests in progress on their connection, and
/// lets a live stream's connection go unwatched. A request is in progress
/// until its answer's body has been written (or dropped), so a client that
/// downloads a large page slowly is not taken for a slow head.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    heads: SlowHeads,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let watch = req.conn_data::<ConnectionWatch>().cloned();
    let Some(ConnectionWatch(watched)) = watch else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if STREAMS.contains(&req.path()) {
        *watched.fd.lock().expect("not poisoned") = None;
    }
    watched.in_flight.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight { watched, heads };
    let response = next.call(req).await?;
    Ok(response.map_body(|_, body| {
        BoxBody::new(GuardedBody {
            body: body.boxed(),
            _in_flight: guard,
        })
    }))
}

/// A request in progress; when dropped, its connection is idle from now.
struct InFlight {
    watched: Arc<Watched>,
    heads: SlowHeads,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.watched
            .idle_since_ms
            .store(self.heads.now_ms(), Ordering::Relaxed);
        self.watched.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body that keeps its request in progress until it is gone.
struct GuardedBody {
    body: BoxBody,
    _in_flight: InFlight,
}

impl MessageBody for GuardedBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}
