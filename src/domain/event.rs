//! What the log holds and what live connections receive.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::types::Json;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Notification,
    Read,
    Unread,
    ReadAll,
    Deleted,
    /// Not in the log: what a client gets instead of its events when its
    /// resume point is unusable (see [`Event::reset`]).
    Reset,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::Read => "read",
            Self::Unread => "unread",
            Self::ReadAll => "read_all",
            Self::Deleted => "deleted",
            Self::Reset => "reset",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "notification" => Self::Notification,
            "read" => Self::Read,
            "unread" => Self::Unread,
            "read_all" => Self::ReadAll,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

/// One committed change of a user's message center. `data` is JSON text, so
/// transports frame it without parsing it again.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub kind: EventKind,
    pub data: Arc<str>,
    /// When the publish request that created it arrived, if this process
    /// took it (events read from the log do not know).
    pub published_at: Option<std::time::Instant>,
}

/// `{"seq", "type", "data"}`: the frame of WebSocket and long-poll clients.
#[derive(Serialize)]
pub struct EventFrame<'a> {
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: &'a RawValue,
}

impl Event {
    /// The `reset` every transport sends when a resume point is unusable:
    /// reload through REST, then continue after `last_seq`. Built here only,
    /// so SSE, WebSocket and long-poll say exactly the same.
    pub fn reset(last_seq: i64) -> Self {
        Self {
            seq: last_seq,
            kind: EventKind::Reset,
            data: format!(r#"{{"last_seq":{last_seq}}}"#).into(),
            published_at: None,
        }
    }

    pub fn frame(&self) -> EventFrame<'_> {
        EventFrame {
            seq: self.seq,
            kind: self.kind.as_str(),
            // `data` was produced by serde_json, so it is valid JSON.
            data: serde_json::from_str(&self.data).expect("event data is JSON"),
        }
    }
}

/// The notification object of the contract.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Notification {
    pub id: Uuid,
    pub seq: i64,
    pub title: String,
    pub body: Option<String>,
    pub category: Option<String>,
    pub data: Option<Json<Box<RawValue>>>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Notification {
    pub fn to_event(&self) -> Event {
        Event {
            seq: self.seq,
            kind: EventKind::Notification,
            data: serde_json::to_string(self)
                .expect("a notification serializes")
                .into(),
            published_at: None,
        }
    }
}
