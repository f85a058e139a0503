//! Counters of this process, for `/v1/admin/stats` (Prometheus has its own).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ConnectionStats {
    sse: AtomicI64,
    ws: AtomicI64,
    poll: AtomicI64,
    publishes: AtomicU64,
    deliveries: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Sse,
    Ws,
    Poll,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::Ws => "ws",
            Self::Poll => "poll",
        }
    }
}

/// Counts one open connection (or waiting poll) for as long as it lives.
pub struct ConnectionGuard {
    stats: Arc<ConnectionStats>,
    transport: Transport,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.stats
            .gauge(self.transport)
            .fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("herald_connections", "transport" => self.transport.as_str())
            .decrement(1.0);
    }
}

impl ConnectionStats {
    fn gauge(&self, transport: Transport) -> &AtomicI64 {
        match transport {
            Transport::Sse => &self.sse,
            Transport::Ws => &self.ws,
            Transport::Poll => &self.poll,
        }
    }

    /// Counts a connection from now until the guard is dropped.
    pub fn connection(self: &Arc<Self>, transport: Transport) -> ConnectionGuard {
        self.gauge(transport).fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("herald_connections", "transport" => transport.as_str()).increment(1.0);
        ConnectionGuard {
            stats: Arc::clone(self),
            transport,
        }
    }

    pub fn connections(&self, transport: Transport) -> i64 {
        self.gauge(transport).load(Ordering::Relaxed)
    }

    pub fn published(&self, n: u64) {
        self.publishes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn delivered(&self, transport: Transport) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("herald_delivered_events_total", "transport" => transport.as_str())
            .increment(1);
    }

    /// Notifications created since start.
    pub fn publishes(&self) -> u64 {
        self.publishes.load(Ordering::Relaxed)
    }

    /// Events handed to live connections and polls since start.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }
}
