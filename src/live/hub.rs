//! Per-user wake-ups inside one process.
//!
//! A wake-up says "user U has committed events up to seq N" and, when they
//! were committed by this process, may carry them so connections need not
//! read them back. It is held in a `watch` channel: memory per user is one
//! value however far behind a connection is, and a connection that wakes up
//! reads whatever it has not sent yet from the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::UserId;
use crate::domain::event::Event;
use crate::live::connection_stats::ConnectionStats;

#[derive(Debug, Clone, Default)]
pub struct Wake {
    /// Highest committed seq known for the user.
    pub seq: i64,
    /// The committed events up to `seq`, when this process published them.
    pub events: Option<Arc<[Event]>>,
}

impl Wake {
    /// The events after `cursor`, if this wake-up holds all of them.
    pub fn events_after(&self, cursor: i64) -> Option<&[Event]> {
        let events = self.events.as_deref()?;
        let first = events.first()?.seq;
        if first > cursor + 1 || self.seq <= cursor {
            return None;
        }
        let skip = (cursor + 1 - first) as usize;
        events.get(skip..)
    }
}

struct Entry {
    tx: Arc<watch::Sender<Wake>>,
    /// Live connections and waiting polls of the user.
    streams: usize,
    kick: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
#[error("this user already has {0} open streams and waiting polls")]
pub struct TooManyStreams(pub usize);

pub struct Hub {
    /// Connection and delivery counters of this process.
    pub stats: Arc<ConnectionStats>,
    users: DashMap<UserId, Entry>,
    max_streams_per_user: usize,
    streams: AtomicUsize,
}

/// A connection's or waiting poll's subscription to one user's wake-ups.
/// Dropping it unsubscribes.
pub struct Watch {
    hub: Arc<Hub>,
    pub user: UserId,
    pub rx: watch::Receiver<Wake>,
    /// Cancelled when an admin disconnects the user.
    pub kicked: CancellationToken,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.release(&self.user);
    }
}

impl Hub {
    pub fn new(max_streams_per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            stats: Arc::default(),
            users: DashMap::new(),
            max_streams_per_user,
            streams: AtomicUsize::new(0),
        })
    }

    /// Subscribes a live connection or a waiting long-poll: at most
    /// `max_streams_per_user` of them per user, so one user cannot hold
    /// an unbounded share of this process.
    pub fn watch_stream(self: &Arc<Self>, user: &UserId) -> Result<Watch, TooManyStreams> {
        let mut entry = self.users.entry(user.clone()).or_insert_with(|| Entry {
            tx: Arc::new(watch::Sender::new(Wake::default())),
            streams: 0,
            kick: CancellationToken::new(),
        });
        if entry.streams >= self.max_streams_per_user {
            let max = self.max_streams_per_user;
            drop(entry);
            self.remove_if_unused(user);
            return Err(TooManyStreams(max));
        }
        entry.streams += 1;
        self.streams.fetch_add(1, Ordering::Relaxed);
        Ok(Watch {
            hub: Arc::clone(self),
            user: user.clone(),
            rx: entry.tx.subscribe(),
            kicked: entry.kick.clone(),
        })
    }

    fn release(&self, user: &UserId) {
        if let Some(mut entry) = self.users.get_mut(user) {
            entry.streams -= 1;
            self.streams.fetch_sub(1, Ordering::Relaxed);
        }
        self.remove_if_unused(user);
    }

    fn remove_if_unused(&self, user: &UserId) {
        self.users.remove_if(user, |_, e| e.streams == 0);
    }

    /// Whether anyone in this process listens for `user`.
    pub fn is_watched(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    /// Announces committed events up to `seq`. Older news than what the
    /// channel holds is dropped: connections read the log from their own
    /// cursor, so the newest seq is all they need.
    pub fn wake(&self, user: &UserId, seq: i64, events: Option<Arc<[Event]>>) {
        let Some(tx) = self.users.get(user).map(|e| Arc::clone(&e.tx)) else {
            return;
        };
        tx.send_if_modified(|w| {
            if seq > w.seq {
                *w = Wake { seq, events };
                true
            } else {
                false
            }
        });
    }

    /// Makes every subscriber check the log, e.g. after the cross-instance
    /// listener was down and wake-ups may have been lost.
    pub fn wake_all(&self) {
        let senders: Vec<_> = self.users.iter().map(|e| Arc::clone(&e.tx)).collect();
        for tx in senders {
            tx.send_modify(|w| w.events = None);
        }
    }

    /// Ends every live connection of `user` in this process.
    pub fn kick(&self, user: &UserId) -> bool {
        match self.users.get_mut(user) {
            Some(mut entry) => {
                entry.kick.cancel();
                entry.kick = CancellationToken::new();
                true
            }
            None => false,
        }
    }

    /// Live connections and waiting polls in this process.
    pub fn stream_count(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Users with at least one stream or waiting poll in this process.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventKind;

    fn ev(seq: i64) -> Event {
        Event {
            seq,
            kind: EventKind::Deleted,
            data: "{}".into(),
            published_at: None,
        }
    }

    #[test]
    fn events_after_uses_only_contiguous_events() {
        let wake = Wake {
            seq: 7,
            events: Some(Arc::from(vec![ev(5), ev(6), ev(7)])),
        };
        assert_eq!(wake.events_after(4).map(|e| e.len()), Some(3));
        assert_eq!(wake.events_after(5).map(|e| e[0].seq), Some(6));
        assert!(
            wake.events_after(3).is_none(),
            "seq 4 is missing: read the log"
        );
        assert!(wake.events_after(7).is_none(), "nothing new");
    }

    #[test]
    fn stream_cap_and_cleanup() {
        let hub = Hub::new(2);
        let user = UserId::parse("u").unwrap();
        let a = hub.watch_stream(&user).unwrap();
        let _b = hub.watch_stream(&user).unwrap();
        assert!(hub.watch_stream(&user).is_err());
        drop(a);
        let c = hub.watch_stream(&user).unwrap();
        assert_eq!(hub.stream_count(), 2);
        drop(c);
        drop(_b);
        assert_eq!(hub.user_count(), 0);
    }
}
